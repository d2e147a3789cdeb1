"""Saving and loading models: one self-checking binary file, no pickle.

``save_model`` writes everything needed to continue training exactly where
it stopped (architecture, weights, compile settings, optimizer state and
the model's random generator); ``save_weights`` writes the weights alone.
A graph model's architecture is its graph of layer calls (``cdl.Model``),
a ``Sequential``'s its list of layers.
``load_model`` and ``load_weights`` read them back, and
``read_training_state`` reads where a resumable ``fit`` stood. Loading
never runs code from the file: layer classes are looked up by name through
``cdl.layers.get`` (built-ins and classes registered with
``cdl.register_layer``), and every field is validated before it is used;
anything invalid raises ``ModelFileError``.

The file format is specified in ``cdl.saving.format`` (the "Model file
format" page of the documentation); the package ``cdl.saving`` implements
it, one job per module, and this module is its public face.
"""
from cdl.layers import register_layer
from cdl.saving import format as _format
from cdl.saving.checkpoint import read_training_state
from cdl.saving.format import ModelFileError
from cdl.saving.rebuild import load_model, load_weights
from cdl.saving.writer import save_model, save_weights

__all__ = ["save_model", "load_model", "save_weights", "load_weights", "read_training_state",
           "register_layer", "ModelFileError", "MAGIC", "FORMAT_VERSION", "MAX_LAYERS"]

#: The 8 bytes every model and weights file starts with.
MAGIC = _format.MAGIC
#: The version of the binary format that ``save_model`` and ``save_weights`` write.
FORMAT_VERSION = _format.FORMAT_VERSION
#: The most layers (counting those inside other layers) a model file may
#: describe; ``save_model`` refuses larger models, so that every file it
#: writes loads (see ``cdl.saving.format.MAX_LAYERS``).
MAX_LAYERS = _format.MAX_LAYERS
