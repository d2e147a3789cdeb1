"""The ``training_state`` section of a model file: where a ``fit`` stood.

``encode_training_state`` turns the state the resumable callbacks collect
(JSON values with ndarrays anywhere) into a header section and the arrays
it refers to; ``check_training_state`` checks a read section and puts the
arrays back. The fields are listed in the format's specification
(``cdl.saving.format``); ``cdl.saving.checkpoint`` saves and restores a
model together with this section.
"""
import numpy as np

from cdl.saving import format as spec

__all__ = ["encode_training_state", "check_training_state"]


def encode_training_state(state):
    """The ``training_state`` section and the arrays it refers to.

    Parameters
    ----------
    state : dict
        JSON values (NumPy scalars allowed), with ndarrays anywhere.

    Returns
    -------
    (dict, list of (str, ndarray))
        The JSON tree, in which every ndarray is replaced by a reference
        ``{"$array": "training/<path>"}`` (plus ``"dtype": "bool"`` for a
        boolean array, stored as int64), and the (name, array) pairs to
        write to the array table.

    Examples
    --------
    >>> import numpy as np
    >>> section, arrays = encode_training_state({"epoch": 2, "mask": np.array([True, False])})
    >>> section
    {'epoch': 2, 'mask': {'$array': 'training/mask', 'dtype': 'bool'}}
    >>> arrays
    [('training/mask', array([1, 0]))]
    """
    arrays = []
    names = set()

    def encode(value, path):
        if isinstance(value, dict):
            return {str(k): encode(v, path + (str(k),)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [encode(v, path + (str(i),)) for i, v in enumerate(value)]
        if isinstance(value, np.ndarray):
            name = spec.TRAINING_PREFIX + "/".join(path)
            while name in names:
                name += "_"
            names.add(name)
            ref = {"$array": name}
            if value.dtype == np.bool_:
                value = value.astype(np.int64)
                ref["dtype"] = "bool"
            arrays.append((name, value))
            return ref
        return spec.jsonable(value)

    return encode(state, ()), arrays


def check_training_state(check, state, arrays):
    """Check the ``training_state`` section's fields and decode its arrays.

    Parameters
    ----------
    check : cdl.saving.header.Checker
        Reports a failure as a ``ModelFileError`` naming the file; with
        ``check.values`` false the arrays are stand-ins and their contents
        are not checked.
    state : object
        The section as parsed from the header.
    arrays : dict
        The file's arrays by name.

    Returns
    -------
    (dict, set of str)
        The state with every array reference replaced by its array (a
        copy), and the names of the arrays it refers to.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl.saving.header import Checker
    >>> section, saved = encode_training_state(
    ...     {"epoch": 1, "batch": 0, "steps": 4, "batch_size": 8, "seen": 0, "loss_sum": 0.0,
    ...      "shuffle_order": np.array([1, 0]), "metrics": [],
    ...      "history": {"epoch": [0], "logs": {"loss": [0.5]}}, "callbacks": []})
    >>> state, used = check_training_state(Checker("m.cdl"), section, dict(saved))
    >>> state["shuffle_order"], used
    (array([1, 0]), {'training/shuffle_order'})
    """
    where = "training_state"
    check.expect(state, dict, where)
    used = set()
    state = _decode_arrays(check, state, arrays, used, where)
    for key, low in (("epoch", 0), ("batch", 0), ("steps", 1), ("batch_size", 1),
                     ("seen", 0)):
        check.int(check.key(state, key, int, where), f"{where}.{key}", low)
    if state["batch"] > state["steps"]:
        check.fail(f"{where}.batch is {state['batch']}, past the epoch's {state['steps']} "
                   "batches")
    check.number(check.key(state, "loss_sum", (int, float), where), f"{where}.loss_sum",
                 finite=False)
    order = check.key(state, "shuffle_order", (np.ndarray, type(None)), where)
    if order is not None and check.values and not _is_permutation(order):
        check.fail(f"{where}.shuffle_order is not a permutation of the sample indices")
    for i, entry in enumerate(check.key(state, "metrics", list, where)):
        at = f"{where}.metrics[{i}]"
        check.expect(entry, dict, at)
        check.key(entry, "name", str, at)
        check.key(entry, "class", str, at)
        check.key(entry, "state", dict, at)
    history = check.key(state, "history", dict, where)
    epochs = check.key(history, "epoch", list, f"{where}.history")
    if not all(type(epoch) is int and epoch >= 0 for epoch in epochs):
        for i, epoch in enumerate(epochs):
            check.int(epoch, f"{where}.history.epoch[{i}]")
    for key, values in check.key(history, "logs", dict, f"{where}.history").items():
        check.expect(values, list, f"{where}.history.logs.{key}")
    for i, entry in enumerate(check.key(state, "callbacks", list, where)):
        at = f"{where}.callbacks[{i}]"
        check.expect(entry, dict, at)
        check.key(entry, "class", str, at)
        check.key(entry, "state", dict, at)
    return state, used


def _is_permutation(order):
    if order.dtype != np.int64 or order.ndim != 1:
        return False
    seen = np.zeros(order.size, dtype=bool)
    if order.size and (order.min() < 0 or order.max() >= order.size):
        return False
    seen[order] = True
    return bool(seen.all())


def _decode_arrays(check, value, arrays, used, where):
    """``value`` with every ``{"$array": name}`` replaced by that array (a copy).
    Only containers are visited (a list of numbers is returned as it is), so
    the cost is one type test per value."""
    if isinstance(value, list):
        if all(type(v) not in (dict, list) for v in value):
            return value
        return [_decode_arrays(check, v, arrays, used, f"{where}[{i}]")
                if type(v) in (dict, list) else v for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    if "$array" not in value:
        return {k: _decode_arrays(check, v, arrays, used, f"{where}.{k}")
                if type(v) in (dict, list) else v for k, v in value.items()}
    name = check.expect(value["$array"], str, f"{where}.$array")
    if set(value) - {"$array", "dtype"} or value.get("dtype", "bool") != "bool":
        check.fail(f"{where} is an array reference with unknown fields {value!r}")
    if not name.startswith(spec.TRAINING_PREFIX) or name not in arrays:
        check.fail(f"{where} refers to {name!r}, which is not a training array of the file")
    if name in used:
        check.fail(f"{where} refers to the array {name!r}, which another field uses too")
    used.add(name)
    array = arrays[name]
    if value.get("dtype") == "bool":
        if array.dtype != np.int64 or (check.values and array.size and (
                array.min() < 0 or array.max() > 1)):
            check.fail(f"{where}: array {name!r} should hold 0/1 for a boolean array")
        array = array.astype(bool) if check.values \
            else np.broadcast_to(np.zeros((), dtype=bool), array.shape)
    return array
