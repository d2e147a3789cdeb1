"""Model files that carry a training state, so that ``fit`` resumes exactly.

``save_checkpoint`` writes ``save_model``'s file plus the ``training_state``
section (encoded by ``cdl.saving.training_state``); ``restore_checkpoint``
restores such a file into the model being trained and returns the state;
``read_training_state`` reads the state alone. ``ModelCheckpoint`` and
``BackupAndRestore`` (``cdl.callbacks``) use them.
"""
from cdl.saving.atomic import atomic_write
from cdl.saving.header import Checker, check_header
from cdl.saving.reader import read
from cdl.saving.rebuild import restore_model_state
from cdl.saving.training_state import encode_training_state
from cdl.saving.writer import model_header, write_file

__all__ = ["save_checkpoint", "restore_checkpoint", "read_training_state"]


def save_checkpoint(model, path, training_state):
    """Save ``model`` as ``save_model`` does, with its optimizer, and the
    ``training_state`` header section.

    Parameters
    ----------
    model : cdl.Model or cdl.Sequential
    path : str or os.PathLike
        Written atomically.
    training_state : dict
        Where ``fit`` stands (the fields are listed in the format's
        specification, ``cdl.saving.format``): JSON values in which
        ndarrays may appear anywhere (they are written to the array table).

    Examples
    --------
    >>> import cdl
    >>> from cdl import layers
    >>> model = cdl.Sequential([layers.Dense(2)], input_shape=(3,), seed=0)
    >>> model.compile("sgd", "mse")
    >>> state = {"epoch": 1, "batch": 0, "steps": 4, "batch_size": 8, "loss_sum": 0.0,
    ...          "seen": 0, "shuffle_order": None, "metrics": [],
    ...          "history": {"epoch": [0], "logs": {"loss": [0.25]}}, "callbacks": []}
    >>> save_checkpoint(model, "ckpt.cdl", state)
    >>> restore_checkpoint(model, "ckpt.cdl")["history"]
    {'epoch': [0], 'logs': {'loss': [0.25]}}
    """
    header, arrays = model_header(model, "model", True)
    header["training_state"], training_arrays = encode_training_state(training_state)
    arrays.extend(training_arrays)
    atomic_write(path, lambda f: write_file(f, header, arrays))


def restore_checkpoint(model, path):
    """Restore into the compiled, built ``model`` a file of ``save_checkpoint``:
    weights, buffers, optimizer state and hyper-parameters, and the random
    generator. Everything is checked before the model changes.

    Parameters
    ----------
    model : cdl.Model or cdl.Sequential
        Compiled and built like the model that was saved.
    path : str or os.PathLike

    Returns
    -------
    dict or None
        The file's training state (see ``read_training_state``), or None.

    Raises
    ------
    ModelFileError
        If the file is invalid or was saved from another kind of model.

    Examples
    --------
    >>> import cdl
    >>> from cdl import layers
    >>> model = cdl.Sequential([layers.Dense(2)], input_shape=(3,), seed=0)
    >>> model.compile("sgd", "mse")
    >>> model.save("plain.cdl")
    >>> restore_checkpoint(model, "plain.cdl") is None
    True
    """
    file = read(path)
    check = Checker(file.path)
    training = check_header(check, file)
    restore_model_state(check, file, model)
    return training


def read_training_state(path):
    """The training state saved with a model by ``ModelCheckpoint`` or
    ``BackupAndRestore``: where ``fit`` stood, the history so far and the
    callbacks' states.

    Parameters
    ----------
    path : str or os.PathLike
        A model file.

    Returns
    -------
    dict or None
        The ``training_state`` header section (see the format's
        specification, ``cdl.saving.format``), with its arrays as ndarrays;
        None if the file has none. ``epoch`` is the epoch to continue with:
        pass it to ``fit`` as ``initial_epoch`` after ``load_model``.

    Raises
    ------
    ModelFileError
        If the file is not valid.

    Examples
    --------
    >>> state = cdl.io.read_training_state("ckpt-05.cdl")        # doctest: +SKIP
    >>> model = cdl.load_model("ckpt-05.cdl")                    # doctest: +SKIP
    >>> model.fit(x, y, epochs=10, initial_epoch=state["epoch"])  # doctest: +SKIP
    """
    file = read(path)
    return check_header(Checker(file.path), file)
