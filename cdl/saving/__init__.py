"""Saving and loading models, one job per module.

``format``
    The file format's specification (its docstring, which the docs render),
    its constants and ``ModelFileError``.
``atomic``
    ``atomic_write``, through which everything cdl writes goes.
``sniff``
    Naming other formats (pickles, archives, HDF5, ...) from their first bytes.
``reader``
    Reading a file: bounded work, hashed, verified before it is used.
``header``
    Checking the header's fields before any is used.
``writer``
    ``save_model``, ``save_weights`` and the header and arrays they write.
``models``
    The model classes files hold, registered by name (``Sequential``
    registers itself), so that this package never imports the model module.
``rebuild``
    ``load_model``, ``load_weights`` and restoring a file into a model.
``preprocessors``
    Encoding and checking the ``preprocessors`` section (text vectorizers
    saved with the model).
``training_state``
    Encoding and checking the ``training_state`` section.
``checkpoint``
    Files with a training state: ``save_checkpoint``, ``restore_checkpoint``,
    ``read_training_state``.

The public entry points are re-exported by ``cdl.io``.
"""
