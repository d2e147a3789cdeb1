#!/usr/bin/env python
"""Property-based fuzzing of every public cdl entry point that takes arrays.

For each entry point (a layer's forward and backward, a loss, a metric, an
optimizer step, a clipping function, the training loops, the scalers and
other data helpers, ``gradcheck``) hypothesis draws a small, valid call and
then makes one or two of its array arguments odd: another dtype (ints,
bool, float16, longdouble, complex, object, str, datetime, big-endian), another
rank or shape (0-size axes, a missing or extra axis, a dimension that no
longer matches, a scalar), another memory layout (Fortran order, negative
strides, every other element, read-only, unaligned, zero strides, an
ndarray subclass), NaN or infinities, a (ragged) nested list, or None.
Graph models (``cdl.Input``, ``cdl.Model`` and its ``compile``) get
hostile values from catalogs instead, and their data methods lists and
dicts of arrays whose containers are drawn valid or not (see "graph
models" below).

The property, for every example:

* the call either returns, and then gives the same result (within the
  dtype's tolerance) as the same call on clean C-contiguous copies of the
  arguments in the dtype cdl would convert them to, or raises a
  ``ValueError``/``TypeError`` (``RuntimeError`` only for calls out of
  order) from an explicit ``raise`` in cdl's own code, so that the message
  names the problem instead of leaking a NumPy internal;
* inputs that hold no real numbers (complex, strings, None, ragged lists),
  NaN or infinity where cdl documents it rejects them, and shapes that do
  not fit together are rejected, never silently accepted;
* an odd memory layout or a lossless dtype of valid data is never rejected
  when the clean copy is accepted;
* the caller's input arrays are never modified (in-place outputs, such as
  an optimizer's parameters, must instead hold the clean call's result).

Run it as a script (the tests in ``test_fuzz.py`` run it in subprocesses,
so that a crash of the interpreter fails a test instead of the session)::

    python tests/fuzz_entry_points.py --examples 2000 [--only NAME[,NAME...]] [--seed S]

It prints one summary line per entry point (examples run and how many
were accepted with the clean copy's result, rejected with a clear error,
or failed, with the first failures described) and exits with status 1 if
any example failed. Failures with a cause listed in ``KNOWN_ISSUES`` are
counted as "known" instead. The examples come from a fixed seed per entry
point (``--seed`` shifts them all), so a run is reproducible and entry
points of the same kind still see different examples. ``--trace FILE``
keeps the description of the example being run in ``FILE`` (overwritten
each time), which names the input that crashed the interpreter if one
does. The environment variable ``CDL_FUZZ_CRASH_IN=NAME`` makes the first
example of entry point NAME kill the interpreter, to test that a crash is
reported.

Each hypothesis test case is a byte string that drives a few examples
(``EXAMPLES_PER_CASE``): drawing one byte string costs less than drawing
many values, and hypothesis's own work per test case costs more than a
small example. ``--examples`` counts examples, not test cases.
"""
import argparse
import copy
import dis
import faulthandler
import functools
import os
import re
import sys
import time
import warnings
import zlib

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

import cdl
from cdl import data, layers, losses, metrics, optimizers

CDL_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(cdl.__file__)))
CDL_PACKAGE = os.path.join(CDL_ROOT, "cdl") + os.sep

TOLERANCE = {np.dtype(np.float32): (1e-4, 1e-5), np.dtype(np.float64): (1e-9, 1e-12)}


# --- odd inputs ------------------------------------------------------------------

class Slot:
    """How one argument of an entry point is fuzzed and what its clean copy is.

    Parameters
    ----------
    kind : {"float", "labels", "any", "arrays"}
        "float": real numbers; "labels": whole class numbers; "any": any
        dtype is fine (the entry point only moves the values around);
        "arrays": a list of float arrays (an optimizer's params or grads).
    nan : {"allow", "reject"}
        Whether NaN and infinities are valid values or must be rejected.
    clean_dtype : callable(odd value) -> dtype, or None
        The dtype cdl converts this argument to; None keeps the odd
        value's dtype (for "any").
    converts : str
        Dtype kinds cdl converts for this argument (an odd value of such a
        kind and valid values must not be rejected if its clean copy is not).
    optional : bool
        None means "not given", so it is not an odd value.
    in_place : bool
        The entry point writes its result into this argument; it may
        reject any odd layout, and an accepted one must end up holding the
        clean call's result.
    paired : bool
        For "arrays": the list is paired element by element with another
        one, so a list of another length must be rejected.
    layouts : bool
        Whether every memory layout of valid values must be accepted (False
        where cdl documents that it takes C-contiguous arrays only).
    """

    def __init__(self, kind="float", nan="allow", clean_dtype=None, converts="biuf",
                 optional=False, in_place=False, paired=False, layouts=True):
        self.kind, self.nan, self.clean_dtype = kind, nan, clean_dtype
        self.converts, self.optional, self.in_place = converts, optional, in_place
        self.paired, self.layouts = paired, layouts


class Odd:
    """An odd argument: its value, a description, and what cdl must do with it."""

    def __init__(self, value, tags, must_reject=False, dtype_kind=None):
        self.value, self.tags, self.must_reject = value, tags, must_reject
        self.dtype_kind = dtype_kind  # kind of a converted dtype, None if unchanged


class _Subclass(np.ndarray):
    """An ndarray subclass, as array types of other libraries often are."""


def _axis(draw, a):
    return draw.integer(0, a.ndim - 1)


def _take(a, axis, index):
    return a[(slice(None),) * axis + (index,)]


SHAPE_CHANGES = ("add_axis_front", "add_axis_back", "drop_axis", "shorter", "longer",
                 "zero_size", "scalar", "scalar_0d")


def change_shape(draw, a):
    """A copy of ``a`` with another rank or a dimension changed."""
    how = draw.choice(SHAPE_CHANGES)
    if a.ndim == 0 and how not in ("add_axis_front", "add_axis_back"):
        how = "add_axis_front"
    if how == "add_axis_front":
        return a[None], how
    if how == "add_axis_back":
        return a[..., None], how
    axis = _axis(draw, a)
    if how == "drop_axis":
        if a.shape[axis] == 0:
            return np.zeros(a.shape[:axis] + a.shape[axis + 1:], a.dtype), how
        return _take(a, axis, 0), how
    if how == "shorter":
        return _take(a, axis, slice(0, max(a.shape[axis] - 1, 0))), how
    if how == "longer":
        extra = _take(a, axis, slice(0, 1))
        if extra.shape[axis] == 0:
            extra = np.zeros(a.shape[:axis] + (1,) + a.shape[axis + 1:], a.dtype)
        return np.concatenate([a, extra], axis=axis), how
    if how == "zero_size":
        return _take(a, axis, slice(0, 0)), how
    first = a.reshape(-1)[0] if a.size else a.dtype.type(0)
    return (first.item() if how == "scalar" else np.array(first)), how


NONFINITE = {"nan": np.nan, "inf": np.inf, "minus_inf": -np.inf, "huge": 1e300,
             "large": 1e30, "tiny": 1e-310}


def change_values(draw, rng, a):
    """A float copy of ``a`` with NaN, infinities or extreme values in some elements."""
    how = draw.choice(tuple(NONFINITE))
    out = np.array(a, dtype=np.float64 if a.dtype.kind != "f" else a.dtype)
    if out.size:
        flat = out.reshape(-1)
        count = int(rng.integers(1, flat.size + 1))
        flat[rng.choice(flat.size, size=count, replace=False)] = NONFINITE[how] * \
            rng.choice([1.0, -1.0]) if how in ("large", "tiny") else NONFINITE[how]
    return out, how


def _int_values(a, dtype):
    info = np.iinfo(dtype)
    return np.clip(np.round(np.nan_to_num(a.astype(np.float64))), info.min, info.max)


CONVERSIONS = {
    "int8": lambda a: _int_values(a, np.int8).astype(np.int8),
    "int64": lambda a: _int_values(a, np.int64).astype(np.int64),
    "uint8": lambda a: _int_values(a, np.uint8).astype(np.uint8),
    "bool": lambda a: a > 0 if a.dtype.kind == "f" else a != 0,
    "float16": lambda a: a.astype(np.float16),
    "float32": lambda a: a.astype(np.float32),
    "float64": lambda a: a.astype(np.float64),
    "longdouble": lambda a: a.astype(np.longdouble),
    "big_endian": lambda a: a.astype(a.dtype.newbyteorder(">")),
    "list": lambda a: a.tolist(),
    "tuple": lambda a: _as_tuples(a.tolist()),
    "object": lambda a: a.astype(object),
}
#: Conversions that keep NaN and infinities (the others are not applied to them).
FLOAT_CONVERSIONS = ("float16", "float32", "float64", "longdouble", "big_endian", "list",
                     "tuple", "object")


def _as_tuples(value):
    return tuple(_as_tuples(v) for v in value) if isinstance(value, list) else value


def convert(draw, a, finite):
    how = draw.choice(tuple(CONVERSIONS) if finite else FLOAT_CONVERSIONS)
    out = CONVERSIONS[how](a)
    kind = np.asarray(out).dtype.kind if how not in ("object", "list", "tuple") else how
    return out, how, kind


def _ragged(a):
    """A nested list like ``a.tolist()`` whose rows differ in length."""
    rows = a.tolist() if a.ndim else [a.item()]
    if a.ndim >= 2 and len(rows) >= 1:
        return rows + [rows[0] + [0.0]]
    return [rows, rows + [0.0]]


FOREIGN = {
    "complex": lambda a: a.astype(np.complex64) + 1j,
    "str": lambda a: a.astype(str),
    "object_str": lambda a: np.where(np.arange(a.size).reshape(a.shape) == 0, "a",
                                     a.astype(object)).astype(object),
    "none": lambda a: None,
    "ragged": _ragged,
    "datetime": lambda a: np.zeros(a.shape, dtype="datetime64[s]"),
    "bytes": lambda a: a.astype(bytes),
}


def _unaligned(a):
    buf = np.zeros(a.nbytes + 1, dtype=np.uint8)
    out = buf[1:].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def _read_only(a):
    a = np.array(a, copy=True)
    a.flags.writeable = False
    return a


def _every_other(draw, a):
    axis = _axis(draw, a)
    index = (slice(None),) * axis + (slice(None, None, 2),)
    return np.repeat(a, 2, axis=axis)[index]


LAYOUTS = ("fortran", "negative_strides", "every_other", "read_only", "unaligned",
           "broadcast", "subclass", "transposed")


def change_layout(draw, a):
    how = draw.choice(LAYOUTS)
    if a.ndim == 0:  # no strides to play with
        return _read_only(a), "read_only"
    if how == "fortran":
        return np.asfortranarray(a), how
    if how == "negative_strides":
        return np.flip(np.flip(a).copy()), how
    if how == "every_other" and a.ndim:
        return _every_other(draw, a), how
    if how == "read_only":
        return _read_only(a), how
    if how == "unaligned" and a.dtype.itemsize > 1 and a.dtype.kind != "O":
        return _unaligned(a), how
    if how == "broadcast" and a.ndim and a.shape[0]:
        return np.broadcast_to(a[:1], a.shape), how
    if how == "subclass":
        return np.array(a, copy=True).view(_Subclass), how
    if how == "transposed":
        return np.ascontiguousarray(a.T).T, how
    return np.asfortranarray(a), "fortran"


def mutate(draw, rng, clean, slot):
    """An odd version of the clean array ``clean`` for ``slot``."""
    plan = draw.choice(("shape", "values", "dtype", "foreign", "layout", "layout",
                                 "mixed"))
    a, tags, kind = clean, [], None
    if plan == "foreign":
        how = draw.choice(tuple(k for k in FOREIGN
                                         if not (k == "none" and slot.optional)))
        value = FOREIGN[how](np.asarray(a))
        must = slot.kind != "any" or how in ("none", "ragged")
        must = must and (np.size(a) > 0 or how in ("none", "ragged"))
        return Odd(value, [f"foreign:{how}"], must_reject=must, dtype_kind="foreign")
    if plan in ("shape", "mixed"):
        a, how = change_shape(draw, a)
        tags.append(f"shape:{how}->{np.shape(a)}")
        if not isinstance(a, np.ndarray):
            return Odd(a, tags)
    if plan in ("values", "mixed"):
        a, how = change_values(draw, rng, a)
        tags.append(f"values:{how}")
    if plan in ("dtype", "values", "mixed") and draw.boolean() or plan == "dtype":
        finite = a.dtype.kind != "f" or bool(np.isfinite(a).all())
        a, how, kind = convert(draw, a, finite)
        tags.append(f"dtype:{how}")
    if isinstance(a, np.ndarray) and (plan == "layout" or draw.boolean()):
        a, how = change_layout(draw, a)
        tags.append(f"layout:{how}")
        if plan == "layout" and draw.boolean():
            a, how = change_layout(draw, a)
            tags.append(f"layout:{how}")
    return Odd(a, tags, dtype_kind=kind)


def mutate_arrays(draw, rng, clean_list, slot):
    """An odd version of a list of arrays: one element odd, or the container."""
    how = draw.choice(("element", "element", "element", "tuple", "ndarray",
                                "empty", "missing", "extra", "none_element", "scalar"))
    items = list(clean_list)
    if how == "element":
        i = draw.integer(0, len(items) - 1)
        odd = mutate(draw, rng, items[i], slot)
        items[i] = odd.value
        return Odd(items, [f"[{i}]:" + t for t in odd.tags], must_reject=odd.must_reject,
                   dtype_kind=odd.dtype_kind), i
    if how == "tuple":
        return Odd(tuple(items), ["container:tuple"]), None
    if how == "ndarray" and len(items) == 1:
        return Odd(items[0], ["container:bare ndarray"]), None
    if how == "empty":
        return Odd([], ["container:empty"], must_reject=True), None
    if how == "missing" and len(items) > 1:
        return Odd(items[:-1], ["container:missing"], must_reject=slot.paired), None
    if how == "extra":
        return Odd(items + [items[0].copy()], ["container:extra"],
                   must_reject=slot.paired), None
    if how == "none_element":
        return Odd(items[:-1] + [None], ["container:None element"], must_reject=True), None
    return Odd(1.0, ["container:scalar"], must_reject=True), None


# --- clean copies, snapshots, comparisons ------------------------------------------

def clean_copy(value, slot):
    """The clean argument an odd one stands for: C-contiguous, in cdl's dtype."""
    if slot.kind == "arrays":
        if isinstance(value, np.ndarray):
            value = [value]
        return [np.array(v, dtype=slot.clean_dtype(v), order="C", copy=True) for v in value]
    if value is None:
        return None
    dtype = slot.clean_dtype(value) if slot.clean_dtype is not None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = np.array(value, dtype=dtype, order="C", copy=True)
    if type(out) is not np.ndarray:
        out = out.view(np.ndarray)
    return out


def float_like(value, default=np.float64):
    """float32 for float32 arrays (either byte order), else ``default``: the
    dtype cdl keeps for a prediction or a transformed array."""
    if isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.dtype.itemsize == 4:
        return np.dtype(np.float32)
    return np.dtype(default)


def label_dtype(value):
    """int64 for integer or bool labels, float64 for float ones (checked by cdl)."""
    kind = np.asarray(value).dtype.kind if not isinstance(value, np.ndarray) else value.dtype.kind
    return np.dtype(np.int64) if kind in "biu" else np.dtype(np.float64)


def snapshot(value):
    """A deep copy of an argument, to check that the call leaves it alone."""
    if isinstance(value, np.ndarray):
        return ("array", np.array(value, copy=True), value.flags.writeable, value.dtype,
                value.__array_interface__["data"][0])
    if isinstance(value, (list, tuple)):
        return ("seq", type(value), [snapshot(v) for v in value])
    return ("other", copy.deepcopy(value))


def unchanged(value, saved):
    """Describe how ``value`` differs from its snapshot, or return None."""
    kind = saved[0]
    if kind == "array":
        _, values, writeable, dtype, address = saved
        if not isinstance(value, np.ndarray) or value.dtype != dtype:
            return "the argument was replaced"
        if value.flags.writeable != writeable:
            return "the argument's writeable flag changed"
        if value.shape != values.shape or not _same_values(value, values):
            return "the argument's values were modified"
        return None
    if kind == "seq":
        if type(value) is not saved[1] or len(value) != len(saved[2]):
            return "the sequence argument was modified"
        for v, s in zip(value, saved[2]):
            change = unchanged(v, s)
            if change:
                return change
        return None
    try:
        same = value == saved[1] or (value != value and saved[1] != saved[1])
    except Exception:  # noqa: BLE001 - objects that do not compare
        same = True
    return None if same else "the argument was modified"


def _same_values(a, b):
    if a.dtype.kind == "O":
        return all(x == y or (x != x and y != y) for x, y in zip(a.reshape(-1).tolist(),
                                                                b.reshape(-1).tolist()))
    return np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")


def _tolerance(a):
    return TOLERANCE.get(np.dtype(a.dtype) if isinstance(a, np.ndarray) else None,
                         TOLERANCE[np.dtype(np.float32)])


def difference(actual, expected, path="result"):
    """Describe the first difference between two results, or return None."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict) or set(actual) != set(expected):
            return f"{path}: keys {sorted(actual) if isinstance(actual, dict) else actual!r}" \
                   f" != {sorted(expected)}"
        for key in expected:
            diff = difference(actual[key], expected[key], f"{path}[{key!r}]")
            if diff:
                return diff
        return None
    if isinstance(expected, (list, tuple)):
        if not isinstance(actual, (list, tuple)) or len(actual) != len(expected):
            return f"{path}: {type(actual).__name__} of another length"
        for i, (a, e) in enumerate(zip(actual, expected)):
            diff = difference(a, e, f"{path}[{i}]")
            if diff:
                return diff
        return None
    if expected is None or actual is None:
        return None if actual is expected else f"{path}: {actual!r} != {expected!r}"
    if isinstance(expected, np.ndarray) or isinstance(actual, np.ndarray):
        if not isinstance(actual, np.ndarray) or not isinstance(expected, np.ndarray):
            return f"{path}: {type(actual).__name__} != {type(expected).__name__}"
        if actual.shape != expected.shape:
            return f"{path}: shape {actual.shape} != {expected.shape}"
        if actual.dtype != expected.dtype:
            return f"{path}: dtype {actual.dtype} != {expected.dtype}"
        if actual.dtype.kind not in "fc":
            return None if _same_values(actual, expected) else f"{path}: values differ"
        return _close(actual, expected, _tolerance(expected), path)
    if isinstance(expected, (float, np.floating, int, np.integer, bool, np.bool_)):
        if isinstance(expected, (float, np.floating)):
            return _close(np.float64(actual), np.float64(expected),
                          TOLERANCE[np.dtype(np.float32)], path)
        return None if actual == expected else f"{path}: {actual!r} != {expected!r}"
    return None if actual == expected else f"{path}: {actual!r} != {expected!r}"


def _close(actual, expected, tol, path):
    rtol, atol = tol
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    if not np.array_equal(np.isnan(actual), np.isnan(expected)):
        return f"{path}: NaN in different places"
    finite = np.isfinite(expected)
    if not np.array_equal(actual[~finite], expected[~finite], equal_nan=True):
        return f"{path}: infinities differ"
    scale = np.abs(expected[finite]).max(initial=0.0)
    if not np.allclose(actual[finite], expected[finite], rtol=rtol, atol=atol + rtol * scale):
        err = np.abs(actual[finite] - expected[finite]).max(initial=0.0)
        return f"{path}: values differ by up to {err:.3g} (scale {scale:.3g})"
    return None


def _kernel_sources():
    """The Cython sources as they are now, for the line numbers in kernel
    tracebacks (read once: other people may edit them while this runs)."""
    folder = os.path.join(CDL_PACKAGE, "_kernels")
    sources = {}
    for name in os.listdir(folder):
        if name.endswith((".pyx", ".pxd")):
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                sources[os.path.join(folder, name)] = f.read().splitlines()
    return sources


KERNEL_SOURCES = _kernel_sources()


def explicit_raise_in_cdl(err):
    """True if ``err`` came from a ``raise`` statement in cdl's own code
    (Python or Cython), not from inside NumPy or another library."""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return False
    code = tb.tb_frame.f_code
    filename = code.co_filename
    if not os.path.isabs(filename):  # Cython records paths relative to the build root
        filename = os.path.join(CDL_ROOT, filename)
    if not filename.startswith(CDL_PACKAGE):
        return False
    if filename in KERNEL_SOURCES:
        lines = KERNEL_SOURCES[filename]
        return 0 < tb.tb_lineno <= len(lines) and "raise" in lines[tb.tb_lineno - 1]
    # The instruction that raised: a raise statement, or a call into a library.
    return tb.tb_lasti in _raise_offsets(code)


@functools.lru_cache(maxsize=None)
def _raise_offsets(code):
    return frozenset(i.offset for i in dis.get_instructions(code)
                     if i.opname in ("RAISE_VARARGS", "RERAISE"))


# --- the property ------------------------------------------------------------------

class Case:
    """One drawn call: clean arguments, how each may be fuzzed, how to run it.

    ``run(args)`` builds fresh objects, calls the entry point and returns
    the results (copies); ``compatible(args)``, given clean copies of the
    arguments, says whether their shapes fit together (None: no opinion).
    """

    def __init__(self, args, slots, run, compatible=None, desc=""):
        self.args, self.slots, self.run = args, slots, run
        self.compatible, self.desc = compatible, desc


class Outcome:
    OK, REJECTED, FAILED = "ok", "rejected", "failed"


def _call(run, args):
    """(result, error, warnings) of ``run(args)``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return run(args), None, caught
        except Exception as err:  # noqa: BLE001 - judged by the caller
            return None, err, caught


def _root(a):
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def private_copy(value):
    """A copy of an in-place argument (an array or a list of arrays) in which
    views of one buffer (a model's parameters) stay views of one new buffer."""
    if isinstance(value, (list, tuple)):
        roots = {}
        for item in value:
            if isinstance(item, np.ndarray) and item.base is not None:
                root = _root(item)
                roots.setdefault(id(root), (root, root.copy()))
        return type(value)(_rebased(item, roots) for item in value)
    return copy.deepcopy(value)


def _rebased(item, roots):
    if not isinstance(item, np.ndarray) or item.base is None:
        return copy.deepcopy(item)
    root, new_root = roots[id(_root(item))]
    offset = item.__array_interface__["data"][0] - root.__array_interface__["data"][0]
    return np.ndarray(item.shape, item.dtype, buffer=new_root, offset=offset,
                      strides=item.strides)


def _fresh(args, slots):
    """Arguments to pass to one call: private copies of in-place ones."""
    return {name: (private_copy(value) if slots[name].in_place else value)
            for name, value in args.items()}


def _acceptable_error(err):
    """None if ``err`` is an acceptable rejection, else what is wrong with it."""
    if isinstance(err, RuntimeError):
        if "before" in str(err) or "compiled" in str(err):
            return None
        return f"RuntimeError for a bad input: {err}"
    if not isinstance(err, (ValueError, TypeError)) or isinstance(err, IndexError):
        return f"{type(err).__name__} instead of ValueError/TypeError: {err}"
    if not explicit_raise_in_cdl(err):
        return f"unclear {type(err).__name__} from a library call, not from cdl: {err}"
    if len(str(err)) < 10:
        return f"too short a message: {err!r}"
    return None


def check_example(case, fuzzed):
    """Run one example; return (outcome, failure description or None)."""
    odd_args = _fresh(case.args, case.slots)
    odd_args.update({name: odd.value for name, odd in fuzzed.items()})
    saved = {name: snapshot(value) for name, value in odd_args.items()
             if not case.slots[name].in_place}
    clean_args = _clean_args(case, fuzzed)  # before the call writes into in-place ones
    result, err, caught = _call(case.run, odd_args)
    problem = _side_effect(odd_args, saved, caught)
    if problem:
        return Outcome.FAILED, problem
    if err is not None:
        return _judge_rejection(case, fuzzed, err, clean_args)
    return _judge_acceptance(case, fuzzed, result, clean_args)


def _clean_args(case, fuzzed):
    """The arguments with every odd one replaced by its clean copy, or None
    if one has none (a ragged list, strings...)."""
    clean_args = _fresh(case.args, case.slots)
    try:
        clean_args.update({name: clean_copy(odd.value, case.slots[name])
                           for name, odd in fuzzed.items()})
    except (ValueError, TypeError):
        return None
    return clean_args


def _side_effect(args, saved, caught):
    """A modified input or a complex number cast to real, or None."""
    for name, snap in saved.items():
        change = unchanged(args[name], snap)
        if change:
            return f"{name}: {change}"
    for w in caught:
        if issubclass(w.category, np.exceptions.ComplexWarning):
            return f"warning {w.category.__name__}: {w.message}"
    return None


def _judge_rejection(case, fuzzed, err, clean_args):
    problem = _acceptable_error(err)
    if problem:
        return Outcome.FAILED, problem
    if any(odd.must_reject for odd in fuzzed.values()) or clean_args is None:
        return Outcome.REJECTED, None
    _, ref_err, _ = _call(case.run, clean_args)
    if ref_err is None and all(_preserving(odd, case.slots[name])
                               for name, odd in fuzzed.items()):
        return Outcome.FAILED, (f"rejected an odd layout or dtype that its clean copy "
                                f"passes: {type(err).__name__}: {err}")
    return Outcome.REJECTED, None


def _judge_acceptance(case, fuzzed, result, clean_args):
    must_reject = [name for name, odd in fuzzed.items() if odd.must_reject]
    if must_reject:
        return Outcome.FAILED, f"accepted {', '.join(must_reject)} that must be rejected"
    if clean_args is None:
        return Outcome.FAILED, "accepted an argument that has no clean copy"
    for name in fuzzed:
        if case.slots[name].nan == "reject" and _has_nonfinite(clean_args[name]):
            return Outcome.FAILED, f"accepted NaN or infinity in {name}"
    if case.compatible is not None and case.compatible(clean_args) is False:
        return Outcome.FAILED, "accepted arguments whose shapes do not fit together"
    expected, ref_err, _ = _call(case.run, clean_args)
    if ref_err is not None:
        return Outcome.FAILED, (f"accepted, but the clean copy is rejected with "
                                f"{type(ref_err).__name__}: {ref_err}")
    diff = difference(result, expected)
    if diff:
        return Outcome.FAILED, f"result differs from the clean copy's: {diff}"
    return Outcome.OK, None


def _has_nonfinite(value):
    arrays = value if isinstance(value, list) else [value]
    for a in arrays:
        if isinstance(a, np.ndarray) and a.dtype.kind == "f" and not np.isfinite(a).all():
            return True
    return False


def _preserving(odd, slot):
    """True if cdl must accept ``odd`` whenever it accepts its clean copy."""
    if slot.in_place or odd.must_reject or not slot.layouts:
        return False
    if odd.dtype_kind is None:
        return True
    if odd.dtype_kind in ("list", "tuple"):
        return slot.kind != "arrays"  # elements of an array list must be arrays
    return odd.dtype_kind in slot.converts


# --- drawing helpers ---------------------------------------------------------------

def draw_dtype(draw):
    return np.dtype(draw.choice((np.float32, np.float64)))


def normal(rng, shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


def shape_of(value):
    return np.shape(value) if value is not None else None


def fixed(dtype):
    return lambda value: np.dtype(dtype)


def _own_float_or(dtype):
    """For outputs written in place: their own dtype if it is a native float32
    or float64 (the result is cast into it), else ``dtype``."""
    def clean_dtype(value):
        if isinstance(value, np.ndarray) and value.dtype in (np.float32, np.float64):
            return value.dtype
        return np.dtype(dtype)
    return clean_dtype


# --- layers ------------------------------------------------------------------------

ACTIVATIONS = ("linear", "relu", "leaky_relu", "sigmoid", "tanh", "gelu", "elu", "softmax",
               "selu", "silu", "mish", "softplus", "softsign", "hard_sigmoid",
               "hard_swish", "relu6", "log_softmax")


def _dense(draw):
    act = draw.choice((None,) + ACTIVATIONS)
    units, bias = draw.integer(1, 3), draw.boolean()
    features = draw.integer(1, 4)
    shape = draw.choice(((features,), (2, features)))
    return (lambda dt: layers.Dense(units, activation=act, use_bias=bias, dtype=dt)), shape


def _activation(draw):
    name = draw.choice(ACTIVATIONS + ("LeakyReLU(0.2)", "ELU(0.5)"))
    shape = draw.choice(((3,), (2, 3), (1,)))
    if name == "LeakyReLU(0.2)":
        return (lambda dt: layers.LeakyReLU(0.2, dtype=dt)), shape
    if name == "ELU(0.5)":
        return (lambda dt: layers.ELU(0.5, dtype=dt)), shape
    return (lambda dt: layers.Activation(name, dtype=dt)), shape


def _simple(factory, *shapes):
    return lambda draw: (factory, draw.choice(shapes))


def _conv1d(draw):
    padding = draw.choice(("valid", "same", 1))
    strides, dilation = draw.choice(((1, 1), (2, 1), (1, 2)))
    act = draw.choice((None, "relu", "gelu"))
    shape = (draw.integer(3, 5), draw.integer(1, 2))
    return (lambda dt: layers.Conv1D(2, 2, strides=strides, padding=padding,
                                     dilation_rate=dilation, activation=act, dtype=dt)), shape


def _conv2d(draw):
    padding = draw.choice(("valid", "same", ((1, 0), (0, 1))))
    strides = draw.choice((1, 2))
    groups = draw.choice((1, 2))
    shape = (draw.integer(2, 4), draw.integer(2, 4), draw.choice((1, 2) if groups == 1
                                                                  else (2, 4)))
    return (lambda dt: layers.Conv2D(2, 2, strides=strides, padding=padding, groups=groups,
                                     dtype=dt)), shape


def _conv1d_transpose(draw):
    strides = draw.choice((1, 2))
    padding, output_padding = draw.choice((("valid", None), ("same", None), (1, 0),
                                           (1, strides - 1)))
    shape = (draw.integer(1, 4), draw.integer(1, 2))
    return (lambda dt: layers.Conv1DTranspose(2, 3, strides=strides, padding=padding,
                                              output_padding=output_padding,
                                              dtype=dt)), shape


def _depthwise(cls):
    def spec(draw):
        rank = 1 if cls is layers.DepthwiseConv1D else 2
        multiplier, padding = draw.choice((1, 2)), draw.choice(("valid", "same", 1))
        act = draw.choice((None, "relu"))
        shape = tuple(draw.integer(2, 4) for _ in range(rank)) + (draw.integer(1, 3),)
        return (lambda dt: cls(2, depth_multiplier=multiplier, padding=padding,
                               activation=act, dtype=dt)), shape
    return spec


def _separable(cls):
    def spec(draw):
        rank = 1 if cls is layers.SeparableConv1D else 2
        strides, padding = draw.choice((1, 2)), draw.choice(("valid", "same"))
        shape = tuple(draw.integer(2, 4) for _ in range(rank)) + (draw.integer(1, 3),)
        return (lambda dt: cls(2, 2, strides=strides, padding=padding, dtype=dt)), shape
    return spec


def _window_pool(cls, rank):
    def spec(draw):
        kwargs = {}
        padding = draw.choice(("valid", "same", 1, "asymmetric"))
        if padding == "asymmetric":
            padding = (1, 0) if rank == 1 else ((1, 0), (0, 1))
        if padding != "same":
            kwargs["ceil_mode"] = draw.boolean()
        if cls in (layers.MaxPool1D, layers.MaxPool2D):
            kwargs["dilation"] = draw.choice((1, 2))
        else:
            kwargs["count_include_pad"] = draw.choice((None, True, False))
            kwargs["divisor_override"] = draw.choice((None, 3))
        strides = draw.choice((1, 2))
        shape = (draw.integer(3, 6),) * rank + (draw.integer(1, 2),)
        return (lambda dt: cls(2, strides=strides, padding=padding, dtype=dt,
                               **kwargs)), shape
    return spec


def _adaptive_pool(cls, rank):
    def spec(draw):
        size = draw.choice((1, 2, 5) if rank == 1 else (1, 3, (2, None), (4, 2)))
        shape = (draw.integer(1, 4),) * rank + (draw.integer(1, 2),)
        return (lambda dt: cls(size, dtype=dt)), shape
    return spec


def _upsampling2d(draw):
    size = draw.choice((2, (1, 3)))
    mode = draw.choice(("nearest", "bilinear", "corners"))
    corners = mode == "corners"
    mode = "bilinear" if corners else mode
    shape = (draw.integer(1, 3), draw.integer(1, 3), draw.integer(1, 2))
    return (lambda dt: layers.UpSampling2D(size, interpolation=mode, align_corners=corners,
                                           dtype=dt)), shape


LAYER_SPECS = {
    "Dense": _dense,
    "Activation": _activation,
    "PReLU": _simple(lambda dt: layers.PReLU(dtype=dt), (3,), (2, 2)),
    "Softplus": _simple(lambda dt: layers.Softplus(beta=2.0, threshold=1.0, dtype=dt), (3,)),
    "Dropout": _simple(lambda dt: layers.Dropout(0.5, dtype=dt), (3,), (2, 2)),
    "SpatialDropout1D": _simple(lambda dt: layers.SpatialDropout1D(0.5, dtype=dt), (3, 2)),
    "SpatialDropout2D": _simple(lambda dt: layers.SpatialDropout2D(0.5, dtype=dt), (2, 2, 2)),
    "GaussianNoise": _simple(lambda dt: layers.GaussianNoise(0.1, dtype=dt), (3,)),
    "Flatten": _simple(lambda dt: layers.Flatten(dtype=dt), (2, 3), (2, 1, 2), (3,)),
    "Reshape": _simple(lambda dt: layers.Reshape((2, -1), dtype=dt), (4,), (2, 3)),
    "Permute": _simple(lambda dt: layers.Permute((2, 1), dtype=dt), (2, 3)),
    "BatchNorm": _simple(lambda dt: layers.BatchNorm(dtype=dt), (3,), (2, 2, 2)),
    "LayerNorm": _simple(lambda dt: layers.LayerNorm(dtype=dt), (3,), (2, 3)),
    "GroupNorm": _simple(lambda dt: layers.GroupNorm(2, dtype=dt), (2, 4), (4,)),
    "RMSNorm": _simple(lambda dt: layers.RMSNorm(dtype=dt), (3,)),
    "LayerNorm.axes": _simple(lambda dt: layers.LayerNorm(axis=(-2, -1), bias=False, dtype=dt),
                              (2, 3), (2, 2, 3)),
    "LayerNorm.plain": _simple(lambda dt: layers.LayerNorm(elementwise_affine=False, dtype=dt),
                               (3,)),
    "GroupNorm.plain": _simple(lambda dt: layers.GroupNorm(2, affine=False, dtype=dt), (2, 4)),
    "RMSNorm.plain": _simple(lambda dt: layers.RMSNorm(eps=1e-5, affine=False, dtype=dt), (3,)),
    "BatchNorm.cumulative": _simple(lambda dt: layers.BatchNorm(momentum=None, dtype=dt),
                                    (3,), (2, 2)),
    "BatchNorm.batch_stats": _simple(
        lambda dt: layers.BatchNorm(track_running_stats=False, dtype=dt), (3,), (2, 2)),
    "Conv1D": _conv1d,
    "Conv2D": _conv2d,
    "Conv2DTranspose": _simple(lambda dt: layers.Conv2DTranspose(2, 2, strides=2, dtype=dt),
                               (2, 2, 1), (1, 3, 2)),
    "Conv1DTranspose": _conv1d_transpose,
    "DepthwiseConv1D": _depthwise(layers.DepthwiseConv1D),
    "DepthwiseConv2D": _depthwise(layers.DepthwiseConv2D),
    "SeparableConv1D": _separable(layers.SeparableConv1D),
    "SeparableConv2D": _separable(layers.SeparableConv2D),
    "MaxPool1D": _window_pool(layers.MaxPool1D, 1),
    "AvgPool1D": _window_pool(layers.AvgPool1D, 1),
    "MaxPool2D": _window_pool(layers.MaxPool2D, 2),
    "AvgPool2D": _window_pool(layers.AvgPool2D, 2),
    "AdaptiveMaxPool1D": _adaptive_pool(layers.AdaptiveMaxPool1D, 1),
    "AdaptiveAvgPool1D": _adaptive_pool(layers.AdaptiveAvgPool1D, 1),
    "AdaptiveMaxPool2D": _adaptive_pool(layers.AdaptiveMaxPool2D, 2),
    "AdaptiveAvgPool2D": _adaptive_pool(layers.AdaptiveAvgPool2D, 2),
    "ZeroPadding1D": _simple(lambda dt: layers.ZeroPadding1D((1, 2), dtype=dt), (3, 2)),
    "ZeroPadding2D": _simple(lambda dt: layers.ZeroPadding2D(((1, 0), (2, 1)), dtype=dt),
                             (2, 3, 1)),
    "Cropping1D": _simple(lambda dt: layers.Cropping1D((1, 0), dtype=dt), (3, 2)),
    "Cropping2D": _simple(lambda dt: layers.Cropping2D(((0, 1), (1, 1)), dtype=dt),
                          (3, 4, 1)),
    "UpSampling1D": _simple(lambda dt: layers.UpSampling1D(2, dtype=dt), (3, 2)),
    "UpSampling2D": _upsampling2d,
    "GlobalMaxPool1D": _simple(lambda dt: layers.GlobalMaxPool1D(dtype=dt), (3, 2)),
    "GlobalAvgPool1D": _simple(lambda dt: layers.GlobalAvgPool1D(keepdims=True, dtype=dt),
                               (3, 2)),
    "GlobalMaxPool2D": _simple(lambda dt: layers.GlobalMaxPool2D(dtype=dt), (2, 2, 2)),
    "GlobalAvgPool2D": _simple(lambda dt: layers.GlobalAvgPool2D(dtype=dt), (2, 3, 1)),
    "Residual": _simple(lambda dt: layers.Residual([layers.Dense(3, activation="tanh")],
                                                   dtype=dt), (3,)),
    "Concatenate": _simple(lambda dt: layers.Concatenate([[layers.Dense(2)], [layers.ReLU()]],
                                                         dtype=dt), (3,)),
}


#: Public layers without an entry of their own: (the entry that fuzzes the
#: same computation, the activation name it draws). Each of these classes,
#: with its defaults, is ``Activation(<name>)`` (the same kernel and
#: parameter); tests/layers/test_layer_declarations.py checks that every public
#: layer has an entry or is listed here.
LAYERS_FUZZED_AS = {
    cls: ("layers.Activation", name) for cls, name in [
        ("ReLU", "relu"), ("LeakyReLU", "leaky_relu"), ("Sigmoid", "sigmoid"),
        ("Tanh", "tanh"), ("Softmax", "softmax"), ("GELU", "gelu"), ("ELU", "elu"),
        ("SELU", "selu"), ("SiLU", "silu"), ("Mish", "mish"), ("Softsign", "softsign"),
        ("HardSigmoid", "hard_sigmoid"), ("HardSwish", "hard_swish"), ("ReLU6", "relu6"),
        ("LogSoftmax", "log_softmax")]}

#: Public names of cdl.metrics without an entry, and why.
METRICS_NOT_FUZZED = {
    "Metric": "the abstract base class: it takes no arrays",
    "MeanMetricWrapper": "the base of the metric classes made from a function (Accuracy, "
                         "MSE, ...), which are fuzzed",
}


def _layer_dtype_from_input(value):
    """The dtype an unbuilt layer without a dtype takes from its first input."""
    if isinstance(value, np.ndarray):
        native = value.dtype.newbyteorder("=")
        if native in (np.float32, np.float64):
            return native
    return np.dtype(np.float32)


def _layer_results(layer, y, dx):
    return {"y": np.array(y), "dx": None if dx is None else np.array(dx),
            "grads": [g.copy() for g in layer.grads],
            "buffers": {k: np.array(v) for k, v in layer.buffers().items()}}


def _output_shape(factory, sample_shape, dtype):
    layer = factory(dtype)
    layer._build(sample_shape, dtype, np.random.default_rng(0))
    return layer.output_shape


def recurrent_entry(cls, bidirectional=False):
    """A recurrent layer (or Bidirectional) called with any number of time
    steps, optional ``lengths`` and ``initial_state``, and
    ``return_state``; its states' gradients given to ``backward``."""
    def make(draw, rng):
        seq, back, state = draw.boolean(), draw.boolean(), draw.boolean()
        mask = draw.choice((None, 0.0))
        dtype = draw_dtype(draw)
        features, units = draw.integer(1, 2), 2
        n, steps = draw.integer(0, 3), draw.integer(0, 3)
        built_steps = draw.integer(1, 3)
        count = (2 if cls is layers.LSTM else 1) * (2 if bidirectional else 1)
        x = normal(rng, (n, steps, features))
        lengths = rng.integers(0, steps + 1, n) if draw.boolean() else None
        initial = ([normal(rng, (n, units)) for _ in range(count)]
                   if draw.boolean() else None)
        grad_seed = int(rng.integers(2**31))

        def factory():
            layer = cls(units, return_sequences=seq, go_backwards=back, mask_value=mask,
                        return_state=state, dtype=dtype)
            return layers.Bidirectional(layer, dtype=dtype) if bidirectional else layer

        def run(args):
            layer = factory()
            layer._build((built_steps, features), dtype, np.random.default_rng(0))
            out = layer.forward(args["x"], initial_state=args["initial_state"],
                                lengths=args["lengths"])
            outs = out if state else [out]
            g = np.random.default_rng(grad_seed)
            grads = [g.standard_normal(o.shape).astype(o.dtype) for o in outs]
            back_out = layer.backward(grads if state else grads[0])
            dx = back_out[0] if args["initial_state"] is not None else back_out
            results = _layer_results(layer, outs[0], dx)
            results["states"] = [np.array(o) for o in outs[1:]]
            if args["initial_state"] is not None:
                results["dinitial"] = [np.array(d) for d in back_out[1:]]
            return results

        def compatible(args):
            x_shape = shape_of(args["x"])
            if len(x_shape) != 3 or x_shape[2] != features:
                return False
            if args["lengths"] is not None and shape_of(args["lengths"]) != x_shape[:1]:
                return False
            if args["initial_state"] is not None and (
                    len(args["initial_state"]) != count or
                    any(shape_of(s) != (x_shape[0], units) for s in args["initial_state"])):
                return False
            return None

        slots = {"x": Slot(clean_dtype=fixed(dtype)),
                 "lengths": Slot(kind="labels", nan="reject", optional=True,
                                 clean_dtype=label_dtype, converts="iu"),
                 "initial_state": Slot(kind="arrays", optional=True, paired=True,
                                       clean_dtype=fixed(dtype))}
        fuzzable = ["x"] + [k for k in ("lengths", "initial_state")
                            if {"lengths": lengths, "initial_state": initial}[k] is not None]
        fuzz = (draw.choice(tuple(fuzzable)),)
        return Case({"x": x, "lengths": lengths, "initial_state": initial}, slots, run,
                    compatible, f"{dtype.name} {cls.__name__} bidirectional={bidirectional} "
                    f"seq={seq} back={back} state={state} mask={mask} steps={steps}"), fuzz
    return make


def layer_entry(spec):
    def make(draw, rng):
        factory, sample_shape = spec(draw)
        dtype = draw_dtype(draw)
        prebuilt = draw.choice((True, True, True, False))
        training = draw.boolean()
        n = draw.integer(0, 3)
        x = normal(rng, (n,) + tuple(sample_shape))
        grad_seed = int(rng.integers(2**31))
        fuzz_grad = prebuilt and draw.boolean()
        grad, out_shape = None, None
        if fuzz_grad:
            out_shape = _output_shape(factory, tuple(sample_shape), dtype)
            grad = normal(rng, (n,) + tuple(out_shape))

        def run(args):
            layer = factory(dtype if prebuilt else None)
            if prebuilt:
                layer._build(tuple(sample_shape), dtype, np.random.default_rng(0))
            else:
                layer._rng = np.random.default_rng(0)
            y = layer.forward(args["x"], training=training)
            g = args["grad"]
            if g is None:
                g = np.random.default_rng(grad_seed).standard_normal(y.shape).astype(y.dtype)
            dx = layer.backward(g)
            return _layer_results(layer, y, dx)

        def compatible(args):
            x_shape = shape_of(args["x"])
            if prebuilt and (len(x_shape) < 1 or x_shape[1:] != tuple(sample_shape)):
                return False
            if args["grad"] is not None and x_shape[:1] + tuple(out_shape) != \
                    shape_of(args["grad"]):
                return False
            return None

        x_dtype = fixed(dtype) if prebuilt else _layer_dtype_from_input
        slots = {"x": Slot(clean_dtype=x_dtype),
                 "grad": Slot(clean_dtype=fixed(dtype), optional=True)}
        fuzz = ("grad",) if fuzz_grad and draw.boolean() else ("x",)
        return Case({"x": x, "grad": grad}, slots, run, compatible,
                    f"{dtype.name} prebuilt={prebuilt} training={training} "
                    f"sample_shape={tuple(sample_shape)}"), fuzz
    return make


def embedding_entry(draw, rng):
    dtype = draw_dtype(draw)
    prebuilt = draw.boolean()
    shape = draw.choice(((3,), (2, 2), ()))
    n = draw.integer(0, 3)
    x = rng.integers(0, 5, size=(n,) + shape)

    def run(args):
        layer = layers.Embedding(5, 2, dtype=dtype)
        if prebuilt:
            layer._build(shape, dtype, np.random.default_rng(0))
        else:
            layer._rng = np.random.default_rng(0)
        y = layer.forward(args["x"])
        g = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
        return _layer_results(layer, y, layer.backward(g))

    def compatible(args):
        x_shape = shape_of(args["x"])
        return None if not prebuilt or x_shape[1:] == shape else False

    slots = {"x": Slot(kind="labels", nan="reject", clean_dtype=label_dtype, converts="iuf")}
    return Case({"x": x}, slots, run, compatible, f"{dtype.name} prebuilt={prebuilt}"), ("x",)


# --- merge layers ------------------------------------------------------------------

def _elementwise_merge(cls, counts=(2, 3)):
    def spec(draw):
        n = draw.choice(counts)
        shape = draw.choice(((3,), (2, 2), (1,)))
        return (lambda dt: cls(dtype=dt)), [shape] * n
    return spec


def _dot(draw):
    axes, shapes = draw.choice(((1, [(3,), (3,)]), (-1, [(2, 3), (4, 3)]),
                                ((2, 1), [(2, 3), (3, 2)]), ((1, 1), [(3,), (3, 2)])))
    normalize = draw.boolean()
    return (lambda dt: layers.Dot(axes, normalize=normalize, dtype=dt)), shapes


def _concatenate_merge(draw):
    axis, shapes = draw.choice(((-1, [(2,), (3,)]), (1, [(2, 2), (1, 2)]),
                                (-1, [(2, 1), (2, 2), (2, 1)])))
    return (lambda dt: layers.Concatenate(axis=axis, dtype=dt)), shapes


#: Layers that take a list of inputs: name -> draw -> (factory(dtype), the
#: per-sample shapes of its inputs). Concatenate's block form has its own
#: entry in LAYER_SPECS; its merge form is "Concatenate.merge".
MERGE_SPECS = {
    "Add": _elementwise_merge(layers.Add),
    "Subtract": _elementwise_merge(layers.Subtract, counts=(2,)),
    "Multiply": _elementwise_merge(layers.Multiply, counts=(2, 3, 4)),
    "Average": _elementwise_merge(layers.Average),
    "Maximum": _elementwise_merge(layers.Maximum),
    "Minimum": _elementwise_merge(layers.Minimum),
    "Dot": _dot,
    "Concatenate.merge": _concatenate_merge,
}


def merge_entry(spec):
    """forward then backward of a layer that takes a list of inputs, the list
    (or the upstream gradient) fuzzed; its dtype is given, since the clean
    copy of each element is made in the layer's dtype."""
    def make(draw, rng):
        factory, shapes = spec(draw)
        dtype = draw_dtype(draw)
        prebuilt = draw.choice((True, True, False))
        n = draw.integer(0, 3)
        xs = [normal(rng, (n,) + shape) for shape in shapes]
        out_shape = tuple(factory(dtype).compute_output_shape(shapes))
        grad_seed = int(rng.integers(2**31))
        fuzz_grad = prebuilt and draw.boolean()
        grad = normal(rng, (n,) + out_shape) if fuzz_grad else None

        def run(args):
            layer = factory(dtype)
            if prebuilt:
                layer._build(list(shapes), dtype, np.random.default_rng(0))
            y = layer.forward(args["xs"])
            g = args["grad"]
            if g is None:
                g = np.random.default_rng(grad_seed).standard_normal(y.shape).astype(y.dtype)
            dxs = layer.backward(g)
            return {"y": np.array(y), "dxs": [np.array(dx) for dx in dxs]}

        def compatible(args):
            arrays = args["xs"]
            if isinstance(arrays, np.ndarray) or not arrays:
                return False
            full = [shape_of(x) for x in arrays]
            if any(len(s) < 1 for s in full) or len({s[0] for s in full}) != 1:
                return False
            samples = [s[1:] for s in full]
            if prebuilt and samples != list(shapes):
                return False
            try:
                expected = tuple(factory(dtype).compute_output_shape(samples))
            except ValueError:
                return False
            if args["grad"] is not None and shape_of(args["grad"]) != full[0][:1] + expected:
                return False
            return None

        slots = {"xs": Slot(kind="arrays", clean_dtype=fixed(dtype)),
                 "grad": Slot(clean_dtype=fixed(dtype), optional=True)}
        fuzz = ("grad",) if fuzz_grad and draw.boolean() else ("xs",)
        return Case({"xs": xs, "grad": grad}, slots, run, compatible,
                    f"{dtype.name} prebuilt={prebuilt} sample_shapes={shapes}"), fuzz
    return make


# --- attention and Transformer blocks ---------------------------------------------

def _seeded(layer):
    """``layer`` with a seeded generator, so that built unbuilt (from its first
    input) it has the same weights in the fuzzed call and the clean one."""
    layer._rng = np.random.default_rng(0)
    return layer


def _attention(draw):
    heads, key_dim = draw.choice(((1, 2), (2, 1), (2, 3)))
    dropout, causal = draw.choice((0.0, 0.5)), draw.boolean()
    value_dim, output_dim = draw.choice((None, 2)), draw.choice((None, 3))
    shape = (draw.integer(1, 3), draw.integer(1, 4))
    return (lambda dt: _seeded(layers.MultiHeadAttention(
        heads, key_dim, value_dim=value_dim, dropout=dropout, causal=causal,
        output_dim=output_dim, dtype=dt))), shape


def _rope_attention(draw):
    heads, key_dim = draw.choice(((1, 2), (2, 4)))
    dropout, causal = draw.choice((0.0, 0.5)), draw.boolean()
    rope_base = draw.choice((10000.0, 7.0))
    shape = (draw.integer(1, 4), draw.integer(1, 3))
    return (lambda dt: _seeded(layers.MultiHeadAttention(
        heads, key_dim, dropout=dropout, causal=causal, rope=True, rope_base=rope_base,
        dtype=dt))), shape


def _rope_attention_list(draw):
    (factory, (tq, eq)), tk = _rope_attention(draw), draw.integer(1, 3)
    shapes = [(tq, eq), (tk, draw.integer(1, 3))]
    if draw.boolean():
        shapes.append((tk, draw.integer(1, 3)))
    return factory, shapes


def _attention_list(draw):
    (factory, (tq, eq)), tk = _attention(draw), draw.integer(1, 3)
    shapes = [(tq, eq), (tk, draw.integer(1, 3))]
    if draw.boolean():
        shapes.append((tk, draw.integer(1, 3)))
    return factory, shapes


def _positional(draw):
    learned = draw.boolean()
    shape = (draw.integer(1, 4), draw.integer(1, 3))
    return (lambda dt: layers.PositionalEmbedding(4, learned=learned, dtype=dt)), shape


def _encoder(draw):
    heads, width = draw.choice(((1, 2), (2, 2), (2, 4)))
    dropout, norm_first = draw.choice((0.0, 0.5)), draw.boolean()
    activation = draw.choice(("relu", "gelu"))
    shape = (draw.integer(1, 3), width)
    return (lambda dt: layers.TransformerEncoder(heads, 3, dropout=dropout,
                                                 activation=activation,
                                                 norm_first=norm_first, dtype=dt)), shape


def _decoder(draw):
    heads, width = draw.choice(((1, 2), (2, 2), (2, 4)))
    dropout, norm_first = draw.choice((0.0, 0.5)), draw.boolean()
    shapes = [(draw.integer(1, 3), width), (draw.integer(1, 3), draw.integer(1, 3))]
    return (lambda dt: _seeded(layers.TransformerDecoder(
        heads, 3, dropout=dropout, norm_first=norm_first, dtype=dt))), shapes


#: Attention layers on one sequence, fuzzed as LAYER_SPECS' layers are.
ATTENTION_LAYER_SPECS = {
    "MultiHeadAttention": _attention,
    "PositionalEmbedding": _positional,
    "TransformerEncoder": _encoder,
    "MultiHeadAttention.rope": _rope_attention,
}

#: Attention layers on a list of sequences, fuzzed as MERGE_SPECS' layers are.
ATTENTION_LIST_SPECS = {
    "MultiHeadAttention.list": _attention_list,
    "TransformerDecoder": _decoder,
    "MultiHeadAttention.rope.list": _rope_attention_list,
}


def attention_mask_entry(draw, rng):
    """MultiHeadAttention's forward and backward with its masks fuzzed: a bool
    ``attention_mask`` ((Tq, Tk) or (batch, Tq, Tk)) and ``key_padding_mask``
    ((batch, Tk)). Only bool masks are taken (an integer or float one could
    mean either convention), in any layout, or as nested lists of bools."""
    dtype = draw_dtype(draw)
    n, tq = draw.integer(0, 3), draw.integer(1, 3)
    cross = draw.boolean()
    tk = draw.integer(1, 3) if cross else tq
    causal, training = draw.boolean(), draw.boolean()
    dropout = draw.choice((0.0, 0.5))
    given = draw.choice((("mask",), ("kpad",), ("mask", "kpad")))
    mask_shape = draw.choice(((tq, tk), (n, tq, tk)))
    mask = rng.random(mask_shape) < 0.7 if "mask" in given else None
    kpad = rng.random((n, tk)) < 0.7 if "kpad" in given else None
    xs = [normal(rng, (n, tq, 3))] + ([normal(rng, (n, tk, 2))] if cross else [])
    grad_seed = int(rng.integers(2**31))

    def run(args):
        layer = layers.MultiHeadAttention(2, 2, dropout=dropout, causal=causal, dtype=dtype)
        layer._build([x.shape[1:] for x in xs] if cross else xs[0].shape[1:], dtype,
                     np.random.default_rng(0))
        y = layer.forward(xs if cross else xs[0], training,
                          attention_mask=args["mask"], key_padding_mask=args["kpad"])
        g = np.random.default_rng(grad_seed).standard_normal(y.shape).astype(dtype)
        dx = layer.backward(g)
        return {"y": y.copy(), "dx": [np.array(d) for d in (dx if cross else [dx])],
                "grads": [g.copy() for g in layer.grads]}

    def compatible(args):
        if args["mask"] is not None and \
                shape_of(args["mask"]) not in ((tq, tk), (n, tq, tk)):
            return False
        if args["kpad"] is not None and shape_of(args["kpad"]) != (n, tk):
            return False
        return None

    # The clean copy keeps the odd mask's dtype: cdl converts none to bool.
    mask_slot = Slot(clean_dtype=None, converts="b", optional=True)
    slots = {"mask": mask_slot, "kpad": mask_slot}
    fuzz = (draw.choice(given),) if len(given) == 1 or draw.boolean() else given
    return Case({"mask": mask, "kpad": kpad}, slots, run, compatible,
                f"{dtype.name} n={n} tq={tq} tk={tk} cross={cross} causal={causal} "
                f"training={training} dropout={dropout}"), fuzz


# --- losses ------------------------------------------------------------------------

def _labels(rng, n, classes):
    return rng.integers(0, classes, size=n)


def _probs(rng, n, classes):
    p = rng.random((n, classes)) + 0.05
    return p / p.sum(axis=1, keepdims=True)


def _log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True) if z.size else z
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True)) if z.size else z


LOSS_SPECS = {
    # name: (factory, target kind, pred kind)
    "MSE": (losses.MSE, "real", "any"),
    "MAE": (losses.MAE, "real", "any"),
    "Huber": (lambda: losses.Huber(delta=0.5), "real", "any"),
    "BinaryCrossEntropy": (losses.BinaryCrossEntropy, "unit", "any"),
    "CrossEntropy_labels": (losses.CrossEntropy, "labels", "matrix"),
    "CrossEntropy_probs": (losses.CrossEntropy, "probs", "matrix"),
    "CrossEntropy_smoothed": (lambda: losses.CrossEntropy(label_smoothing=0.1), "labels",
                              "matrix"),
    "CrossEntropy_weighted": (lambda: losses.CrossEntropy(weight=[1.0, 2.0, 0.5]), "labels",
                              "matrix3"),
    "NLL": (losses.NLL, "labels", "logmatrix"),
    "NLL_weighted": (lambda: losses.NLL(weight=[0.5, 1.0, 2.0]), "labels", "logmatrix3"),
    "KLDivergence": (losses.KLDivergence, "probs", "logmatrix"),
    "KLDivergence_log_target": (lambda: losses.KLDivergence(log_target=True), "logprobs",
                                "logmatrix"),
    "Poisson": (losses.Poisson, "counts", "any"),
    "Poisson_rates": (lambda: losses.Poisson(log_input=False), "counts", "positive"),
    "CosineSimilarity": (losses.CosineSimilarity, "real", "matrix"),
    "Hinge": (losses.Hinge, "signs", "any"),
    # Reductions and options as PyTorch's.
    "MSE_sum": (lambda: losses.MSE(reduction="sum"), "real", "any"),
    "Huber_none": (lambda: losses.Huber(delta=0.5, reduction="none"), "real", "any"),
    "BinaryCrossEntropy_pos_weight": (
        lambda: losses.BinaryCrossEntropy(pos_weight=2.0, reduction="none"), "unit", "any"),
    "CrossEntropy_ignore_sum": (lambda: losses.CrossEntropy(ignore_index=0, reduction="sum"),
                                "labels", "matrix"),
    "CrossEntropy_ignore_none": (
        lambda: losses.CrossEntropy(weight=[1.0, 2.0, 0.5], ignore_index=1, label_smoothing=0.1,
                                    reduction="none"), "labels", "matrix3"),
    "NLL_ignore_none": (lambda: losses.NLL(ignore_index=1, reduction="none"), "labels",
                        "logmatrix"),
    "KLDivergence_none": (lambda: losses.KLDivergence(reduction="none"), "probs", "logmatrix"),
    "Poisson_sum": (lambda: losses.Poisson(reduction="sum"), "counts", "any"),
    "CosineSimilarity_none": (lambda: losses.CosineSimilarity(reduction="none"), "real",
                              "matrix"),
    "Hinge_none": (lambda: losses.Hinge(reduction="none"), "signs", "any"),
    "TripletMarginLoss": (lambda: losses.TripletMarginLoss(swap=True), "unused", "triple"),
    "TripletMarginLoss_none": (lambda: losses.TripletMarginLoss(p=1, reduction="none"),
                               "unused", "triple"),
    "MarginRankingLoss": (lambda: losses.MarginRankingLoss(margin=0.1), "rank", "pair"),
    "MarginRankingLoss_none": (lambda: losses.MarginRankingLoss(reduction="none"), "rank",
                               "pair"),
}


def _loss_pred_shape(draw, kind, n):
    if kind in ("matrix3", "logmatrix3"):
        return (n, 3)
    if kind == "triple":  # three embeddings side by side
        return (n, 3 * draw.integer(1, 3))
    if kind == "pair":  # two scores side by side
        return (n, 2)
    classes = draw.integer(1, 4)
    if kind in ("matrix", "logmatrix"):
        return (n, classes)
    return draw.choice(((n, classes), (n,), (n, 2, 2)))


def _loss_target(rng, kind, shape):
    n = shape[0]
    if kind == "labels":
        return _labels(rng, n, shape[1])
    if kind == "probs":
        return _probs(rng, n, shape[1])
    if kind == "logprobs":
        return np.log(_probs(rng, n, shape[1]))
    if kind == "unit":
        return rng.random(shape)
    if kind == "counts":
        return rng.integers(0, 4, size=shape).astype(np.float64)
    if kind == "signs":
        return rng.choice([-1.0, 1.0], size=shape)
    if kind == "unused":
        return np.zeros(n)
    if kind == "rank":
        return rng.choice([-1.0, 1.0], size=n)
    return rng.standard_normal(shape)


def _loss_compatible(target_kind, takes_labels):
    """Whether the shapes fit: labels (n,) or (n, 1) for logits (n, classes),
    or (n, d1, ...) or (n, d1, ..., 1) for logits (n, d1, ..., classes)
    (also where a loss takes probabilities too, like CrossEntropy), else
    the shape of pred ((n,) for pred (n, 1))."""
    def compatible(args):
        pred, target = shape_of(args["pred"]), shape_of(args["target"])
        as_labels = len(pred) >= 2 and target in (pred[:-1], pred[:-1] + (1,))
        if target_kind in ("unused", "rank"):
            # (n, 3 * d) embeddings or (n, 2) scores side by side; one target per row.
            if len(pred) != 2 or not pred[1] or pred[1] % (3 if target_kind == "unused" else 2):
                return False
            if target_kind == "unused" and (not target or target[0] != pred[0]):
                return False
            if target_kind == "rank" and target not in ((pred[0],), (pred[0], 1)):
                return False
        elif target_kind == "labels" or (takes_labels and as_labels):
            if not as_labels:
                return False
        elif target != pred and not (len(pred) >= 1 and pred[-1] == 1
                                     and target == pred[:-1]):
            return False
        weight = args.get("sample_weight")
        if weight is not None and shape_of(weight) != ((pred[0] if pred else 1),):
            return False
        return None
    return compatible


def loss_entry(name):
    factory, target_kind, pred_kind = LOSS_SPECS[name]

    def make(draw, rng):
        n = draw.integer(0, 4)
        shape = _loss_pred_shape(draw, pred_kind, n)
        pred = rng.standard_normal(shape) * 2
        if pred_kind.startswith("logmatrix"):
            pred = _log_softmax(pred)
        if pred_kind == "positive":
            pred = np.abs(pred) + 0.1
        pred = pred.astype(draw_dtype(draw))
        target = _loss_target(rng, target_kind, shape)
        weight = rng.random(n) if draw.boolean() else None

        def run(args):
            loss = factory()
            value = loss.forward(args["pred"], args["target"], args["sample_weight"])
            if loss.reduction == "none":
                if not isinstance(value, np.ndarray):
                    raise AssertionError(f"the loss returned {type(value).__name__}, not an "
                                         "array")
                return {"loss": value, "grad": np.array(loss.backward(np.ones(value.shape)))}
            if not isinstance(value, float):
                raise AssertionError(f"the loss returned {type(value).__name__}, not float")
            return {"loss": value, "grad": np.array(loss.backward())}

        # CrossEntropy reads integer targets as labels, floats as probabilities.
        takes_labels = target_kind == "labels" or name.startswith("CrossEntropy")
        target_dtype = label_dtype if takes_labels else fixed(np.float64)
        converts = "biuf" if target_kind in ("labels", "real", "unit", "counts", "signs") \
            else "f"
        slots = {"pred": Slot(clean_dtype=float_like),
                 "target": Slot(kind="labels" if target_kind == "labels" else "float",
                                nan="allow" if target_kind == "logprobs" else "reject",
                                clean_dtype=target_dtype, converts=converts,
                                optional=target_kind == "unused"),  # checked, not used
                 "sample_weight": Slot(nan="reject", clean_dtype=fixed(np.float64),
                                       optional=True)}
        names = ("pred", "target") + (("sample_weight",) if weight is not None else ())
        fuzz = _draw_fuzzed(draw, names)
        return Case({"pred": pred, "target": target, "sample_weight": weight}, slots, run,
                    _loss_compatible(target_kind, name.startswith("CrossEntropy")),
                    f"pred {pred.dtype} {shape}"), fuzz
    return make


def _draw_fuzzed(draw, names):
    first = draw.choice(names)
    if len(names) > 1 and draw.integer(0, 3) == 0:
        second = draw.choice([n for n in names if n != first])
        return (first, second)
    return (first,)


# --- metrics -----------------------------------------------------------------------

def _metric_args(draw, rng, kind, n):
    """(y_true, y_pred) for a metric of ``kind``."""
    classes = draw.integer(2, 4)
    if kind == "classes":
        y_true = rng.integers(0, classes, size=n)
        if draw.boolean():
            y_true = np.eye(classes)[y_true]
        y_pred = rng.standard_normal((n, classes))
        if draw.integer(0, 3) == 0:
            y_pred = rng.integers(0, classes, size=n)
        return y_true, y_pred
    if kind == "binary":
        shape = draw.choice(((n,), (n, 1), (n, 2)))
        return rng.integers(0, 2, size=shape), rng.random(shape)
    if kind == "logits":
        return rng.integers(0, 2, size=n), rng.standard_normal((n, 1))
    shape = draw.choice(((n,), (n, 2), (n, 1)))
    return rng.standard_normal(shape), rng.standard_normal(shape)


def _metric_compatible(kind, per_position=False):
    """``per_position``: the metric also reads scores of shape (n, d1, ...,
    classes) with labels (n, d1, ...) (or (n, d1, ..., 1)) or one-hot rows."""
    def compatible(args):
        t, p = shape_of(args["y_true"]), shape_of(args["y_pred"])
        if not t or not p or t[0] != p[0]:
            return False
        if per_position and len(p) >= 3 and p[-1] >= 2:
            if t not in (p[:-1], p[:-1] + (1,), p):
                return False
            w = args.get("sample_weight")
            if w is not None and shape_of(w) not in ((t[0],), (t[0], 1)):
                return False
            return None
        w = args.get("sample_weight")
        if w is not None and shape_of(w) not in ((t[0],), (t[0], 1)):
            return False
        if kind == "regression" and t != p and not (
                len(t) <= 2 and len(p) <= 2 and t[1:] in ((), (1,)) and p[1:] in ((), (1,))):
            return False
        if kind == "binary" and t != p and not (
                len(t) <= 2 and len(p) <= 2 and t[1:] in ((), (1,)) and p[1:] in ((), (1,))):
            return False
        if kind in ("classes", "logits") and (len(t) > 2 or len(p) > 2):
            return False
        return None
    return compatible


def metric_entry(fn, kind, int_weights=False, per_position=False, **kwargs):
    def make(draw, rng):
        n = draw.integer(0, 5)
        y_true, y_pred = _metric_args(draw, rng, kind, n)
        weight = rng.random(n) if draw.boolean() else None

        def run(args):
            value = fn(args["y_true"], args["y_pred"], sample_weight=args["sample_weight"],
                       **kwargs)
            return value if isinstance(value, float) else np.array(value)

        label_kind = kind in ("classes", "logits", "binary")
        slots = {"y_true": Slot(kind="labels" if label_kind else "float", nan="reject",
                                clean_dtype=label_dtype if label_kind else fixed(np.float64)),
                 "y_pred": Slot(nan="reject", clean_dtype=(
                     label_dtype if np.asarray(y_pred).dtype.kind == "i" else fixed(np.float64))),
                 "sample_weight": Slot(nan="reject", clean_dtype=(
                     label_dtype if int_weights else fixed(np.float64)), optional=True)}
        names = ("y_true", "y_pred") + (("sample_weight",) if weight is not None else ())
        return Case({"y_true": y_true, "y_pred": y_pred, "sample_weight": weight}, slots, run,
                    _metric_compatible(kind, per_position), f"n={n}"), _draw_fuzzed(draw, names)
    return make


def metric_object_entry(factory, kind, per_position=False):
    def make(draw, rng):
        n = draw.integer(0, 5)
        y_true, y_pred = _metric_args(draw, rng, kind, n)
        if kind == "classes" and np.asarray(y_pred).ndim == 1:
            y_pred = rng.standard_normal((n, 3))
            y_true = rng.integers(0, 3, size=n)
        weight = rng.random(n) if draw.boolean() else None
        first_true, first_pred = y_true.copy(), y_pred.copy()

        def run(args):
            metric = factory()
            if first_true.shape[0]:
                metric.update(first_true, first_pred)
            metric.update(args["y_true"], args["y_pred"], args["sample_weight"])
            value = metric.result()
            return value if isinstance(value, float) else np.array(value)

        label_kind = kind in ("classes", "logits", "binary")
        slots = {"y_true": Slot(kind="labels" if label_kind else "float", nan="reject",
                                clean_dtype=label_dtype if label_kind else fixed(np.float64)),
                 "y_pred": Slot(nan="reject", clean_dtype=fixed(np.float64)),
                 "sample_weight": Slot(nan="reject", clean_dtype=fixed(np.float64),
                                       optional=True)}
        names = ("y_true", "y_pred") + (("sample_weight",) if weight is not None else ())
        return Case({"y_true": y_true, "y_pred": y_pred, "sample_weight": weight}, slots, run,
                    _metric_compatible(kind, per_position), f"n={n}"), _draw_fuzzed(draw, names)
    return make


def mean_metric_entry(draw, rng):
    shape = draw.choice(((3,), (2, 2), ()))
    values = rng.standard_normal(shape)
    weight = rng.random(shape) if draw.boolean() else None

    def run(args):
        metric = metrics.Mean()
        metric.update(args["values"], args["sample_weight"])
        return metric.result()

    slots = {"values": Slot(clean_dtype=fixed(np.float64)),
             "sample_weight": Slot(nan="reject", clean_dtype=fixed(np.float64), optional=True)}
    names = ("values",) + (("sample_weight",) if weight is not None else ())
    return Case({"values": values, "sample_weight": weight}, slots, run, None,
                f"shape={shape}"), _draw_fuzzed(draw, names)


# --- optimizers and clipping -------------------------------------------------------

OPTIMIZERS = {
    "SGD": lambda: optimizers.SGD(lr=0.1),
    "SGD_nesterov": lambda: optimizers.SGD(lr=0.1, momentum=0.9, nesterov=True,
                                           weight_decay=0.01),
    "Adagrad": lambda: optimizers.Adagrad(lr=0.1),
    "RMSprop": lambda: optimizers.RMSprop(lr=0.01, centered=True, momentum=0.5),
    "Adam": lambda: optimizers.Adam(lr=0.01, amsgrad=True),
    "AdamW": lambda: optimizers.AdamW(lr=0.01, exclude_bias_decay=True),
    "Adamax": lambda: optimizers.Adamax(lr=0.01),
    "NAdam": lambda: optimizers.NAdam(lr=0.01),
    "RAdam": lambda: optimizers.RAdam(lr=0.01),
    "SGD_maximize": lambda: optimizers.SGD(lr=0.1, momentum=0.9, maximize=True),
    "Adam_maximize": lambda: optimizers.Adam(lr=0.01, maximize=True),
}


def _param_arrays(draw, rng, dtype):
    """Parameters as separate arrays, or as consecutive views of one buffer (a model's)."""
    rows, cols = draw.integer(1, 3), draw.integer(1, 3)
    shapes = draw.choice(([(rows, cols), (cols,)], [(rows,)], [(rows, cols, 2)]))
    sizes = [int(np.prod(s)) for s in shapes]
    flat = normal(rng, sum(sizes), dtype)
    if draw.boolean():
        arrays, start = [], 0
        for shape, size in zip(shapes, sizes):
            arrays.append(flat[start:start + size].reshape(shape))
            start += size
        return arrays, flat
    return [normal(rng, s, dtype) for s in shapes], None


def _arrays_compatible(args):
    params, grads = args["params"], args["grads"]
    if len(params) != len(grads) or any(p.shape != g.shape for p, g in zip(params, grads)):
        return False
    if len({p.dtype for p in params + grads}) > 1:
        return False
    return None


def optimizer_entry(name):
    factory = OPTIMIZERS[name]

    def make(draw, rng):
        dtype = draw_dtype(draw)
        params, _ = _param_arrays(draw, rng, dtype)
        grads = [normal(rng, p.shape, dtype) for p in params]
        steps = draw.integer(1, 2)

        def run(args):
            opt = factory()
            for _ in range(steps):
                opt.step(args["params"], args["grads"])
            params_out = args["params"]
            params_out = [params_out] if isinstance(params_out, np.ndarray) else params_out
            return {"params": [np.array(p) for p in params_out],
                    "state": {k: None if v is None else v.copy() for k, v in opt.state.items()}}

        slots = {"params": Slot(kind="arrays", clean_dtype=fixed(dtype), in_place=True,
                                paired=True),
                 "grads": Slot(kind="arrays", clean_dtype=fixed(dtype), converts="",
                               paired=True, layouts=False)}
        return Case({"params": params, "grads": grads}, slots, run, _arrays_compatible,
                    f"{dtype.name} shapes={[p.shape for p in params]}"), \
            (draw.choice(("params", "grads")),)
    return make


def clip_entry(kind):
    def make(draw, rng):
        dtype = draw_dtype(draw)
        grads, _ = _param_arrays(draw, rng, dtype)
        limit = draw.choice((0.0, 0.5, 10.0))
        norm_type = draw.choice((2.0, 1.0, float("inf")))

        def run(args):
            if kind == "norm":
                total = optimizers.clip_grad_norm(args["grads"], limit, norm_type)
            else:
                total = optimizers.clip_grad_value(args["grads"], limit)
            out = args["grads"]
            out = [out] if isinstance(out, np.ndarray) else out
            return {"total": total, "grads": [np.array(g) for g in out]}

        slots = {"grads": Slot(kind="arrays", clean_dtype=_own_float_or(dtype), in_place=True)}
        return Case({"grads": grads}, slots, run, None,
                    f"{dtype.name} limit={limit} p={norm_type}"), ("grads",)
    return make


# --- models ------------------------------------------------------------------------

MODEL_LOSSES = ("mse", "cross_entropy", "binary_cross_entropy")


def _model_setup(draw, rng):
    """(factory, x, y, description) for a small compiled model."""
    dtype = draw_dtype(draw)
    loss = draw.choice(MODEL_LOSSES)
    features = draw.integer(1, 3)
    outputs = {"mse": draw.integer(1, 2), "cross_entropy": 3, "binary_cross_entropy": 1}[
        loss]
    n = draw.integer(0, 5)
    built = draw.choice((True, True, False))
    fused = draw.boolean()
    last = draw.choice((None, None, "sigmoid", "softmax"))
    x = rng.standard_normal((n, features))
    if loss == "mse":
        y = rng.standard_normal((n, outputs))
    elif loss == "cross_entropy":
        y = rng.integers(0, 3, size=n)
    else:
        y = rng.integers(0, 2, size=(n, 1)).astype(np.float64)

    def factory():
        model = cdl.Sequential([layers.Dense(3, activation="tanh"),
                                layers.Dense(outputs, activation=last)],
                               input_shape=(features,) if built else None, dtype=dtype.name,
                               seed=0)
        model.use_fused_step = fused
        model.compile(optimizers.SGD(lr=0.1), loss, metrics=["accuracy"]
                      if loss != "mse" else ["mae"])
        return model

    desc = f"{dtype.name} loss={loss} n={n} features={features} built={built} fused={fused}"
    return factory, x, y, dtype, loss, (features,), built, desc


def _model_compatible(features, built, with_y=True):
    def compatible(args):
        x = shape_of(args["x"])
        if len(x) < 2 or (built and x[1:] != features):
            return False
        n = x[0]
        if with_y:
            y = shape_of(args["y"])
            if not y or y[0] != n:
                return False
        w = args.get("sample_weight")
        if w is not None and shape_of(w) != (n,):
            return False
        return None
    return compatible


def _model_slots(dtype, loss, with_y=True):
    slots = {"x": Slot(nan="reject", clean_dtype=fixed(dtype)),
             "sample_weight": Slot(nan="reject", clean_dtype=fixed(np.float64), optional=True),
             "y": Slot(kind="labels" if loss == "cross_entropy" else "float", nan="reject",
                       clean_dtype=label_dtype if loss == "cross_entropy" else fixed(np.float64),
                       optional=not with_y)}
    return slots


def _weights(model):
    return [w.copy() for w in model.get_weights()]


def model_entry(method):
    def make(draw, rng):
        factory, x, y, dtype, loss, features, built, desc = _model_setup(draw, rng)
        n = x.shape[0]
        weight = rng.random(n) if method in ("fit", "evaluate", "train_step") and \
            draw.boolean() else None
        batch_size = draw.integer(1, 4)
        shuffle = draw.boolean()
        class_weight = draw.choice((None, "balanced")) \
            if loss == "cross_entropy" and method == "fit" else None
        validation_split = draw.choice((0.0, 0.0, 0.4)) if method == "fit" else 0.0

        def run(args):
            model = factory()
            if method == "fit":
                history = model.fit(args["x"], args["y"], epochs=2, batch_size=batch_size,
                                    verbose=0, shuffle=shuffle, class_weight=class_weight,
                                    sample_weight=args["sample_weight"],
                                    validation_split=validation_split)
                return {"history": history.history, "weights": _weights(model)}
            if method == "evaluate":
                return model.evaluate(args["x"], args["y"], batch_size=batch_size,
                                      sample_weight=args["sample_weight"])
            if method == "train_step":
                value = model.train_step(args["x"], args["y"], args["sample_weight"])
                return {"loss": value, "weights": _weights(model)}
            if method == "forward":
                out = model.forward(args["x"], training=True)
                g = np.random.default_rng(1).standard_normal(out.shape)
                dx = model.backward(g)
                return {"out": np.array(out), "dx": np.array(dx),
                        "grads": [g.copy() for g in model.grads]}
            out = getattr(model, method)(args["x"], batch_size=batch_size)
            return np.array(out)

        with_y = method in ("fit", "evaluate", "train_step")
        args = {"x": x, "y": y if with_y else None, "sample_weight": weight}
        names = ("x",) + (("y",) if with_y else ()) + \
            (("sample_weight",) if weight is not None else ())
        return Case(args, _model_slots(dtype, loss, with_y), run,
                    _model_compatible(features, built, with_y),
                    f"{desc} batch_size={batch_size} shuffle={shuffle} "
                    f"class_weight={class_weight} validation_split={validation_split}"), \
            _draw_fuzzed(draw, names)
    return make


def fit_validation_entry(draw, rng):
    factory, x, y, dtype, loss, features, _, desc = _model_setup(draw, rng)
    if x.shape[0] == 0:
        x, y = np.ones((1, x.shape[1])), (y[:0].tolist() + [0]) if loss == "cross_entropy" \
            else np.zeros((1,) + y.shape[1:])
        y = np.asarray(y)
    x_val, y_val = x[::-1].copy(), y[::-1].copy()

    def run(args):
        model = factory()
        history = model.fit(x, y, epochs=1, batch_size=2, verbose=0, shuffle=False,
                            validation_data=(args["x_val"], args["y_val"]))
        return {"history": history.history, "weights": _weights(model)}

    def compatible(args):
        xs, ys = shape_of(args["x_val"]), shape_of(args["y_val"])
        if len(xs) != 2 or xs[1:] != features or not ys or ys[0] != xs[0]:
            return False
        return None

    slots = _model_slots(dtype, loss)
    slots = {"x_val": slots["x"], "y_val": slots["y"]}
    return Case({"x_val": x_val, "y_val": y_val}, slots, run, compatible, desc), \
        _draw_fuzzed(draw, ("x_val", "y_val"))


# --- graph models ------------------------------------------------------------------
#
# cdl.Input, the cdl.Model constructor and compile take no arrays: their
# examples draw from catalogs of hostile values, each marked valid (True:
# must be accepted and work), invalid (False: must be rejected) or either
# (None); an example whose values are all valid must be accepted, one with
# an invalid value rejected, in both cases by the property's rules. The
# methods that take data (forward and backward, fit, evaluate, train_step,
# predict) get lists or dicts of arrays: each array is fuzzed like any
# other, and the container itself is drawn valid or invalid (a missing or
# unknown key, a list of another length, one array for two inputs...).


def _catalog_choice(draw, catalog):
    """``(value, valid)`` drawn from a catalog of such pairs: half the time
    among the valid ones, so that examples whose values are all valid (and
    must work) are common."""
    if draw.boolean():
        catalog = [entry for entry in catalog if entry[1] is True]
    return catalog[draw.integer(0, len(catalog) - 1)]


def _combined(*validities):
    """False if any value is invalid, None if any may go either way, else True."""
    if False in validities:
        return False
    return None if None in validities else True


def _expect(valid, call, what):
    """Run ``call``: a rejection of valid values, or an acceptance of
    invalid ones, raises AssertionError (which the property reports)."""
    try:
        result = call()
    except (ValueError, TypeError) as err:
        if valid is True:
            raise AssertionError(f"rejected valid {what}: {type(err).__name__}: {err}") from err
        raise
    if valid is False:
        raise AssertionError(f"accepted invalid {what}")
    return result


#: Input(shape=...): (value, valid); None: either is fine (a size too large
#: for BLAS, or no axis at all, is refused when the model is built).
INPUT_SHAPES = (((3,), True), ([2, 2], True), (4, True), ((np.int64(3),), True),
                ((np.uint8(2), 1), True), ((), None), ((0,), False), ((-1, 2), False),
                ((None, 3), True), ((3, None), True), ((3.0,), False), ((True,), False), ("3", False),
                (None, False), ((2 ** 40,), None), ({3: 1}, False), (((3,),), False),
                (np.array([3]), None), (np.int64(3), None), (b"3", False), (1.5, False))
INPUT_NAMES = ((None, True), ("x", True), ("a b", True), ("\u00fc", True), ("", False),
               (3, False), (b"x", False), (("x",), False))
INPUT_DTYPES = ((None, True), ("float32", True), (np.float64, True), ("int64", True),
                ("bool", True), ("uint8", True), ("float16", False), ("complex64", False),
                ("str", False), (object, False), ("nonsense", False), (3, False), ([], False),
                (">f8", None))


def input_entry(draw, rng):
    """``cdl.Input(shape, name, dtype)`` with hostile arguments, then a model
    built on it predicting a batch of ones."""
    shape, shape_ok = _catalog_choice(draw, INPUT_SHAPES)
    name, name_ok = _catalog_choice(draw, INPUT_NAMES)
    dtype, dtype_ok = _catalog_choice(draw, INPUT_DTYPES)
    valid = _combined(shape_ok, name_ok, dtype_ok)

    def run(args):
        tensor = _expect(valid, lambda: cdl.Input(shape, name=name, dtype=dtype),
                         f"Input(shape={shape!r}, name={name!r}, dtype={dtype!r})")
        sizes = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        if tensor.shape != tuple(None if s is None else int(s) for s in sizes) or \
                not all(type(s) is int or s is None for s in tensor.shape):
            raise AssertionError(f"Input(shape={shape!r}) has shape {tensor.shape!r}")
        if name is not None and tensor.name != name:
            raise AssertionError(f"Input(name={name!r}) is named {tensor.name!r}")
        if tensor.dtype != (None if dtype is None else np.dtype(dtype)):
            raise AssertionError(f"Input(dtype={dtype!r}) has dtype {tensor.dtype!r}")
        if None in tensor.shape:
            # A free axis: a recurrent layer takes any size there, on the
            # time axis; Flatten refuses any free axis.
            if tensor.shape[-1] is None:
                _expect(False, lambda: layers.Flatten()(tensor), "Flatten of a free axis")
                return {"shape": list(tensor.shape)}
            flat = layers.GRU(2, name="rnn")(tensor)
        else:
            flat = layers.Flatten()(tensor) if len(tensor.shape) > 1 else tensor
        model = cdl.Model(tensor, layers.Dense(2, name="out")(flat), seed=0)
        x = np.ones((2,) + tuple(4 if s is None else s for s in tensor.shape))
        out = model.predict({tensor.name: x})
        if not np.array_equal(out, model.forward(x)):
            raise AssertionError("predict and forward differ")
        return {"shape": list(tensor.shape), "out": out}

    # The values are the catalog's own (never written to): nothing to fuzz further.
    return Case({}, {}, run, None,
                f"shape={shape!r} name={name!r} dtype={dtype!r} valid={valid}"), ()


def _two_inputs():
    a = cdl.Input((3,), name="a")
    b = cdl.Input((2,), name="b")
    return a, b


def _heads(a, b):
    h = layers.Concatenate(name="join")([layers.Dense(2, name="pre")(a), b])
    return layers.Dense(3, name="cls")(h), layers.Dense(1, name="reg")(h)


def _ctor_case(kind):
    """``(inputs, outputs)`` of one kind of constructor call, with new tensors."""
    a, b = _two_inputs()
    cls, reg = _heads(a, b)
    other = cdl.Input((3,), name="other")
    return {
        "list": lambda: ([a, b], [cls, reg]),
        "tuple": lambda: ((a, b), (cls, reg)),
        "dict": lambda: ({"first": a, "second": b}, {"c": cls, "r": reg}),
        "one output": lambda: ([a, b], cls),
        "input as output": lambda: ([a, b], [cls, a]),
        "array input": lambda: (np.ones((2, 3)), [cls, reg]),
        "array output": lambda: ([a, b], [cls, np.ones((2, 1))]),
        "none": lambda: (None, [cls, reg]),
        "empty inputs": lambda: ([], [cls, reg]),
        "empty outputs": lambda: ([a, b], {}),
        "int key": lambda: ({0: a, 1: b}, [cls, reg]),
        "empty key": lambda: ({"": a, "b": b}, [cls, reg]),
        "layer": lambda: ([a, b], layers.Dense(2)),
        "nested": lambda: ([[a, b]], [cls, reg]),
        "input twice": lambda: ([a, a, b], [cls, reg]),
        "output twice": lambda: ([a, b], [cls, cls]),
        "intermediate input": lambda: ([a, b, cls], [reg]),
        "missing input": lambda: ([a], [cls, reg]),
        "unused input": lambda: ([a, b, other], [cls, reg]),
        "disconnected": lambda: ([a, b], [cls, layers.Dense(1)(other)]),
        "string": lambda: ("a", [cls, reg]),
    }[kind]()


#: Constructor calls: kind -> valid.
MODEL_CTOR_KINDS = {"list": True, "tuple": True, "dict": True, "one output": True,
                    "input as output": True, "array input": False, "array output": False,
                    "none": False, "empty inputs": False, "empty outputs": False,
                    "int key": False, "empty key": False, "layer": False, "nested": False,
                    "input twice": False, "output twice": False, "intermediate input": False,
                    "missing input": False, "unused input": False, "disconnected": False,
                    "string": False}
MODEL_SEEDS = ((None, True), (0, True), (np.int64(3), True), (2 ** 70, True), (-1, False),
               (1.5, False), ("a", False), (True, False), ([1, 2], False))
MODEL_DTYPES = (("float32", True), ("float64", True), (np.float64, True), ("float16", False),
                ("int32", False), ("complex128", False), (">f8", False), (None, None))
MODEL_NAMES = ((None, True), ("net", True), (3, False), (b"net", False))


def model_constructor_entry(draw, rng):
    """``cdl.Model(inputs, outputs, seed, dtype, name)`` with hostile
    arguments; an accepted model must predict, and save and load back."""
    kind, _ = _catalog_choice(draw, tuple(MODEL_CTOR_KINDS.items()))
    seed, seed_ok = _catalog_choice(draw, MODEL_SEEDS)
    dtype, dtype_ok = _catalog_choice(draw, MODEL_DTYPES)
    name, name_ok = _catalog_choice(draw, MODEL_NAMES)
    valid = _combined(MODEL_CTOR_KINDS[kind], seed_ok, dtype_ok, name_ok)
    xa, xb = rng.standard_normal((2, 3)), rng.standard_normal((2, 2))

    def run(args):
        inputs, outputs = _ctor_case(kind)
        model = _expect(valid, lambda: cdl.Model(inputs, outputs, seed=seed, dtype=dtype,
                                                 name=name),
                        f"Model({kind}, seed={seed!r}, dtype={dtype!r}, name={name!r})")
        # Known weights: without a seed they differ from call to call.
        model.param_buffer[...] = np.linspace(-1.0, 1.0, model.param_buffer.size)
        data = dict(zip(model.input_names, (xa, xb)))
        out = model.predict(data)
        out = out if isinstance(out, list) else [out]
        if len(out) != len(model.output_names):
            raise AssertionError(f"{len(model.output_names)} outputs, predict gave {len(out)}")
        if model.seed is not None and type(model.seed) is not int:
            raise AssertionError(f"seed kept as {type(model.seed).__name__}")
        return {"out": [np.array(o) for o in out], "names": list(model.output_names)}

    return Case({}, {}, run, None,
                f"{kind} seed={seed!r} dtype={dtype!r} name={name!r} valid={valid}"), ()


_BOTH = {"cls": "cross_entropy", "reg": "mse"}
#: compile(loss=...): (value, valid); None: compile may accept it and fit
#: then refuse it (one loss for every output, a Loss class).
COMPILE_LOSSES = ((_BOTH, True), ({"cls": "cross_entropy"}, True), (["cross_entropy", None], True),
                  (("cross_entropy", "mse"), True), ({"reg": "mse"}, True), ({}, False),
                  ({"box": "mse"}, False), ({"cls": "nonsense"}, False), ({"cls": 3}, False),
                  ({0: "mse"}, False), (["cross_entropy"], False), ([None, None], False),
                  ({"cls": None, "reg": None}, False), (None, False), ({"mse"}, False),
                  ({"cls": ["mse"]}, False), ({"cls": metrics.Accuracy()}, False),
                  (["mse"] * 3, False), ("mse", None), ({"cls": losses.MSE}, None),
                  ({"cls": losses.CrossEntropy(label_smoothing=0.1), "reg": losses.Huber()}, True))
COMPILE_WEIGHTS = ((None, True), ({"reg": 0.5}, True), ([1.0, 2.0], True),
                   ({"reg": np.float32(0.5)}, True), ({"cls": 0}, True), ({"reg": None}, True),
                   ({"reg": -1}, False), ({"reg": float("nan")}, False),
                   ({"reg": float("inf")}, False), ({"reg": "a"}, False), ({"reg": True}, False),
                   ({"box": 1.0}, False), ([1.0], False), (0.5, False),
                   (np.array([1.0, 0.5]), False), ("ab", False), ({"reg": 1j}, False))
COMPILE_METRICS = ((None, True), ({"cls": ["accuracy"]}, True), ({"cls": "accuracy"}, True),
                   ([["accuracy"], ["mae"]], True), ([None, ["mae"]], True), ({"cls": None}, True),
                   ({"box": ["mae"]}, False), ({"cls": ["nonsense"]}, False), ({"cls": [3]}, False),
                   ([["accuracy"]], False), ({"cls": ["accuracy", "accuracy"]}, False),
                   ("accuracy", False), (["mae", ["mae"]], False), ({0: ["mae"]}, False),
                   ({"cls": ["loss"]}, False), ({"cls": {"accuracy"}}, False),
                   ({"accuracy"}, False), (["mae"], None), ({"reg": ["mae"]}, None))


def _untrained(loss, names=("cls", "reg")):
    """The outputs a valid ``loss`` of the catalog leaves without a loss."""
    if isinstance(loss, dict):
        return {n for n in names if loss.get(n) is None}
    if isinstance(loss, (list, tuple)) and len(loss) == len(names):
        return {n for n, part in zip(names, loss) if part is None}
    return set()


def _measured(metrics_spec, names=("cls", "reg")):
    """The outputs that ``metrics_spec`` gives metrics by name or position
    (a flat list applies to the trained outputs only)."""
    if isinstance(metrics_spec, dict):
        return {n for n, m in metrics_spec.items() if m}
    if isinstance(metrics_spec, (list, tuple)) and metrics_spec and all(
            m is None or isinstance(m, (list, tuple)) for m in metrics_spec) and \
            len(metrics_spec) == len(names):
        return {n for n, m in zip(names, metrics_spec) if m}
    return set()


def model_compile_entry(draw, rng):
    """``compile`` of a two-output model with hostile loss, loss_weights and
    metrics, then a short fit: what compile accepted must train, each
    output weighted and reported as given."""
    loss, loss_ok = _catalog_choice(draw, COMPILE_LOSSES)
    weights, weights_ok = _catalog_choice(draw, COMPILE_WEIGHTS)
    chosen, metrics_ok = _catalog_choice(draw, COMPILE_METRICS)
    if _untrained(loss) & _measured(chosen):
        metrics_ok = False   # metrics of an output without a loss (no targets are read)
    valid = _combined(loss_ok, weights_ok, metrics_ok)
    n = draw.integer(1, 5)
    x = [rng.standard_normal((n, 3)), rng.standard_normal((n, 2))]
    y = [rng.integers(0, 3, n), rng.standard_normal((n, 1))]

    def run(args):
        a, b = _two_inputs()
        model = cdl.Model([a, b], list(_heads(a, b)), seed=0, dtype="float64")
        _expect(valid, lambda: model.compile(optimizers.SGD(lr=0.1), copy.deepcopy(loss),
                                             metrics=copy.deepcopy(chosen),
                                             loss_weights=copy.deepcopy(weights)),
                f"compile(loss={loss!r}, loss_weights={weights!r}, metrics={chosen!r})")
        trained = [i for i, part in enumerate(model.loss.losses) if part is not None]
        if valid and isinstance(weights, dict):
            for i, out in enumerate(model.output_names):
                given = weights.get(out)
                want = 1.0 if given is None else float(given)
                if model.loss.weights[i] != want:
                    raise AssertionError(f"output {out!r} weighted {model.loss.weights[i]}, "
                                         f"given {given!r}")
        history = model.fit(x, y, epochs=1, batch_size=2, verbose=0).history
        reported = {f"{model.output_names[i]}_loss" for i in trained}
        if not reported <= set(history):
            raise AssertionError(f"history {sorted(history)} lacks {sorted(reported)}")
        return {"history": history, "weights": model.get_weights()}

    return Case({}, {}, run, None,
                f"loss={loss!r} loss_weights={weights!r} metrics={chosen!r} n={n} "
                f"valid={valid}"), ()


#: Containers of a two-input model's x: name -> valid.
GRAPH_X_FORMS = {"dict": True, "list": True, "tuple": True, "reversed dict": True,
                 "missing key": False, "unknown key": False, "short list": False,
                 "long list": False, "one array": False, "swapped": False, "nested": False}
#: Containers of its targets: name -> valid (without a loss for "reg": None
#: means valid exactly when that output is untrained).
GRAPH_Y_FORMS = {"dict": True, "list": True, "tuple": True, "without reg": None,
                 "reg None": None, "missing cls": False, "unknown key": False,
                 "one array": False, "short list": False, "none": False}
#: Containers of sample weights: name -> valid.
GRAPH_W_FORMS = {"none": True, "shared": True, "dict": True, "dict cls": True, "list": True,
                 "unknown key": False, "all none": True}


def _graph_x(form, xa, xb):
    return {"dict": lambda: {"a": xa, "b": xb}, "list": lambda: [xa, xb],
            "tuple": lambda: (xa, xb), "reversed dict": lambda: {"b": xb, "a": xa},
            "missing key": lambda: {"a": xa}, "unknown key": lambda: {"a": xa, "b": xb, "c": xb},
            "short list": lambda: [xa], "long list": lambda: [xa, xb, xb],
            "one array": lambda: xa, "swapped": lambda: [xb, xa],
            "nested": lambda: [[xa, xb]]}[form]()


def _graph_y(form, y_cls, y_reg):
    return {"dict": lambda: {"cls": y_cls, "reg": y_reg}, "list": lambda: [y_cls, y_reg],
            "tuple": lambda: (y_cls, y_reg), "without reg": lambda: {"cls": y_cls},
            "reg None": lambda: [y_cls, None], "missing cls": lambda: {"reg": y_reg},
            "unknown key": lambda: {"cls": y_cls, "reg": y_reg, "box": y_reg},
            "one array": lambda: y_cls, "short list": lambda: [y_cls], "none": lambda: None}[form]()


def _graph_w(form, w):
    return {"none": lambda: None, "shared": lambda: w, "dict": lambda: {"cls": w, "reg": w},
            "dict cls": lambda: {"cls": w}, "list": lambda: [w, None],
            "unknown key": lambda: {"cls": w, "box": w}, "all none": lambda: [None, None]}[form]()


def _graph_model(dtype, untrained, fused):
    a, b = _two_inputs()
    shared = layers.Dense(2, activation="tanh", name="shared")
    h = layers.Concatenate(name="join")([shared(layers.Dense(2, name="pre")(a)), shared(b)])
    model = cdl.Model([a, b], [layers.Dense(3, name="cls")(h), layers.Dense(1, name="reg")(h)],
                      seed=0, dtype=dtype.name)
    model.use_fused_step = fused
    model.compile(optimizers.SGD(lr=0.1), {"cls": "cross_entropy"} if untrained else
                  {"cls": "cross_entropy", "reg": "mse"}, metrics={"cls": ["accuracy"]})
    return model


def graph_model_entry(method):
    """``method`` of a model with two inputs (one through a shared layer)
    and two outputs (one possibly without a loss), on data in lists or
    dicts: each array fuzzed, the containers drawn valid or not."""
    def make(draw, rng):
        dtype = draw_dtype(draw)
        untrained = draw.boolean()
        fused = draw.boolean()
        n = draw.integer(0, 5)
        with_y = method in ("fit", "evaluate", "train_step")
        x_form = draw.choice(tuple(GRAPH_X_FORMS)) if draw.integer(0, 3) == 0 else \
            draw.choice(("dict", "list"))
        y_form = draw.choice(tuple(GRAPH_Y_FORMS)) if draw.integer(0, 3) == 0 else \
            draw.choice(("dict", "list"))
        w_form = draw.choice(tuple(GRAPH_W_FORMS)) if with_y else "none"
        if untrained and y_form in ("dict", "list", "tuple"):
            y_form = "without reg" if y_form == "dict" else "reg None"
        y_ok = GRAPH_Y_FORMS[y_form]
        if y_ok is None:
            y_ok = untrained
        valid = _combined(GRAPH_X_FORMS[x_form], *((y_ok, GRAPH_W_FORMS[w_form]) if with_y
                                                    else ()))
        batch_size = draw.integer(1, 4)
        shuffle = draw.boolean()
        validation_split = draw.choice((0.0, 0.0, 0.4)) if method == "fit" else 0.0
        grads_form = draw.choice(("list", "dict", "first", "second", "none", "unknown"))
        args = {"xa": rng.standard_normal((n, 3)), "xb": rng.standard_normal((n, 2)),
                "y_cls": rng.integers(0, 3, n) if with_y else None,
                "y_reg": rng.standard_normal((n, 1)) if with_y and not untrained else None,
                "w": rng.random(n) if w_form not in ("none", "all none") else None,
                "g_cls": rng.standard_normal((n, 3)) if method == "forward" and
                grads_form in ("list", "dict", "first") else None}
        grad_seed = int(rng.integers(2 ** 31))

        def run(args):
            model = _graph_model(dtype, untrained, fused)
            expected = None if valid else False
            x = _graph_x(x_form, args["xa"], args["xb"])
            what = f"x as {x_form}"
            if method == "forward":
                outs = _expect(expected,
                               lambda: model.forward(x, training=True), what)
                g_reg = np.random.default_rng(grad_seed).standard_normal(outs[1].shape)
                g_cls = args["g_cls"]
                grads = {"list": [g_cls, g_reg], "dict": {"cls": g_cls, "reg": g_reg},
                         "first": [g_cls, None], "second": {"reg": g_reg},
                         "none": [None, None], "unknown": {"cls": g_cls, "box": g_reg}}
                # Valid containers of gradients that fit the outputs must be
                # taken; fuzzed ones are judged by the property.
                grads_ok = grads_form not in ("none", "unknown")
                if grads_ok and g_cls is not None and (
                        "g_cls" in fuzz or np.shape(g_cls) != outs[0].shape):
                    grads_ok = None
                dx = _expect(grads_ok, lambda: model.backward(grads[grads_form]),
                             f"backward grads as {grads_form}")
                return {"out": [np.array(o) for o in outs],
                        "dx": [None if d is None else np.array(d) for d in dx],
                        "grads": [p.copy() for p in model.grads]}
            if method == "predict":
                out = _expect(expected,
                              lambda: model.predict(x, batch_size=batch_size), what)
                return [np.array(o) for o in out]
            y = _graph_y(y_form, args["y_cls"], args["y_reg"])
            w = args["w"]
            if w_form == "shared" and isinstance(w, (list, tuple)) and len(w) == 2:
                # Two sequences are weights per output by design, where the
                # clean copy, one 2-D array, is refused: not the same call.
                try:
                    if any(np.ndim(v) for v in w):
                        w = np.asarray(w)
                except ValueError:
                    pass
            w = _graph_w(w_form, w)
            what = f"x as {x_form}, y as {y_form}, sample_weight as {w_form}"
            if method == "fit":
                history = _expect(expected, lambda: model.fit(
                    x, y, epochs=2, batch_size=batch_size, verbose=0, shuffle=shuffle,
                    sample_weight=w, validation_split=validation_split), what)
                return {"history": history.history, "weights": _weights(model)}
            if method == "evaluate":
                return _expect(expected, lambda: model.evaluate(
                    x, y, batch_size=batch_size, sample_weight=w), what)
            loss = _expect(expected, lambda: model.train_step(x, y, w), what)
            return {"loss": loss, "weights": _weights(model)}

        def compatible(args):
            xa, xb = shape_of(args["xa"]), shape_of(args["xb"])
            if len(xa) != 2 or len(xb) != 2 or xa[1:] != (3,) or xb[1:] != (2,) or \
                    xa[0] != xb[0]:
                return False
            rows = xa[:1]
            for name in ("y_cls", "y_reg", "w"):
                value = args[name]
                if value is not None and shape_of(value)[:1] != rows:
                    return False
            if args["w"] is not None and len(shape_of(args["w"])) != 1:
                return False
            if args["g_cls"] is not None and shape_of(args["g_cls"]) != rows + (3,):
                return False
            return None

        slots = {"xa": Slot(nan="reject", clean_dtype=fixed(dtype)),
                 "xb": Slot(nan="reject", clean_dtype=fixed(dtype)),
                 "y_cls": Slot(kind="labels", nan="reject", clean_dtype=label_dtype,
                               optional=True),
                 "y_reg": Slot(nan="reject", clean_dtype=fixed(np.float64), optional=True),
                 "w": Slot(nan="reject", clean_dtype=fixed(np.float64), optional=True),
                 "g_cls": Slot(clean_dtype=fixed(dtype), optional=True)}
        names = ("xa", "xb") + (("y_cls",) if with_y else ()) + \
            (("y_reg",) if args["y_reg"] is not None else ()) + \
            (("w",) if args["w"] is not None else ()) + \
            (("g_cls",) if args["g_cls"] is not None else ())
        # One array given for two inputs or outputs is refused whatever it
        # holds; odd, it may also read as a list of two (ragged rows, say).
        names = tuple(name for name in names
                      if not (name == "xa" and x_form == "one array"
                              or name == "y_cls" and y_form == "one array"))
        fuzz = _draw_fuzzed(draw, names)
        return Case(args, slots, run, compatible,
                    f"{dtype.name} n={n} untrained={untrained} fused={fused} x={x_form} "
                    f"y={y_form} w={w_form} grads={grads_form} batch_size={batch_size} "
                    f"shuffle={shuffle} validation_split={validation_split}"), fuzz
    return make


# --- data --------------------------------------------------------------------------

def scaler_entry(kind):
    def make(draw, rng):
        features = draw.integer(1, 3)
        x_fit = rng.standard_normal((draw.integer(1, 4), features)) * 3
        x = rng.standard_normal((draw.integer(0, 3), features)).astype(draw_dtype(draw))
        scaled = rng.standard_normal((draw.integer(0, 3), features)).astype(draw_dtype(draw))
        use_out = draw.integer(0, 3) == 0
        out = np.empty_like(x) if use_out else None
        option = draw.boolean()
        partial = draw.boolean()

        def run(args):
            scaler = data.StandardScaler(with_mean=option) if kind == "standard" else \
                data.MinMaxScaler(feature_range=(-1, 2), clip=option)
            if partial:
                scaler.partial_fit(args["x_fit"])
                scaler.partial_fit(args["x_fit"])
            else:
                scaler.fit(args["x_fit"])
            t = scaler.transform(args["x"], out=args["out"])
            if args["out"] is not None and t is not args["out"]:
                raise AssertionError("transform(out=...) did not return out")
            back = scaler.inverse_transform(args["scaled"])
            state = {k: np.array(v) for k, v in scaler.state_dict().items()}
            return {"t": np.array(t), "back": back, "state": state}

        def compatible(args):
            fit_shape = shape_of(args["x_fit"])
            for name in ("x", "scaled"):
                shape = shape_of(args[name])
                if len(fit_shape) != 2 or len(shape) != 2 or shape[1:] != fit_shape[1:]:
                    return False
            if args["out"] is not None and shape_of(args["out"]) != shape_of(args["x"]):
                return False
            return None

        slots = {"x_fit": Slot(nan="reject", clean_dtype=fixed(np.float64)),
                 "x": Slot(nan="reject", clean_dtype=float_like),
                 "scaled": Slot(nan="reject", clean_dtype=float_like),
                 "out": Slot(clean_dtype=_own_float_or(x.dtype), optional=True, in_place=True)}
        names = ("x_fit", "x", "scaled") + (("out",) if use_out else ())
        return Case({"x_fit": x_fit, "x": x, "scaled": scaled, "out": out}, slots, run,
                    compatible,
                    f"features={features} option={option} partial={partial}"), \
            _draw_fuzzed(draw, names)
    return make


def one_hot_entry(draw, rng):
    shape = draw.choice(((4,), (2, 2), (), (0,)))
    labels = rng.integers(0, 3, size=shape)
    num_classes = draw.choice((None, 3, 5))
    dtype = draw.choice(("float32", "float64"))

    def run(args):
        return data.one_hot(args["labels"], num_classes=num_classes, dtype=dtype)

    slots = {"labels": Slot(kind="labels", nan="reject", clean_dtype=label_dtype)}
    return Case({"labels": labels}, slots, run, None,
                f"shape={shape} num_classes={num_classes}"), ("labels",)


def train_test_split_entry(draw, rng):
    n = draw.integer(2, 8)
    x = rng.standard_normal((n, 2))
    y = rng.integers(0, 2, size=n)
    stratify = None
    if draw.boolean() and n >= 4:
        stratify = np.repeat([0, 1], [n // 2, n - n // 2])
    test_size = draw.choice((0.25, 0.5, 1))

    def run(args):
        kwargs = {"stratify": args["stratify"]} if args["stratify"] is not None else {}
        return data.train_test_split(args["x"], args["y"], test_size=test_size, seed=0,
                                     **kwargs)

    def compatible(args):
        xs, ys = shape_of(args["x"]), shape_of(args["y"])
        if not xs or not ys or xs[0] != ys[0]:
            return False
        if args["stratify"] is not None and shape_of(args["stratify"]) != xs[:1]:
            return False
        return None

    slots = {"x": Slot(kind="any", clean_dtype=None),
             "y": Slot(kind="any", clean_dtype=None),
             "stratify": Slot(kind="any", clean_dtype=None, optional=True)}
    names = ("x", "y") + (("stratify",) if stratify is not None else ())
    return Case({"x": x, "y": y, "stratify": stratify}, slots, run, compatible,
                f"n={n} test_size={test_size}"), _draw_fuzzed(draw, names)


def batch_loader_entry(draw, rng):
    n = draw.integer(0, 5)
    x = rng.standard_normal((n, 2))
    y = rng.integers(0, 3, size=n) if draw.boolean() else None
    weight = rng.random(n) if draw.boolean() else None
    batch_size, shuffle = draw.integer(1, 3), draw.boolean()
    dtype, drop_last = draw.choice((None, "float32", "float64")), draw.boolean()

    def run(args):
        loader = data.BatchLoader(args["x"], args["y"], batch_size=batch_size, shuffle=shuffle,
                                  seed=0, dtype=dtype, sample_weight=args["sample_weight"],
                                  drop_last=drop_last)
        return [[None if item is None else np.array(item) for item in batch]
                for _ in range(2) for batch in loader]

    def x_dtype(value):
        return np.dtype(dtype) if dtype is not None else float_like(value)

    def y_dtype(value):
        return np.asarray(value).dtype.newbyteorder("=") if not isinstance(value, np.ndarray) \
            else value.dtype

    def compatible(args):
        xs = shape_of(args["x"])
        if not xs:
            return False
        if args["y"] is not None and shape_of(args["y"])[:1] != xs[:1]:
            return False
        if args["sample_weight"] is not None and shape_of(args["sample_weight"]) != xs[:1]:
            return False
        return None

    slots = {"x": Slot(clean_dtype=x_dtype),
             "y": Slot(clean_dtype=y_dtype, optional=True),
             "sample_weight": Slot(nan="reject", clean_dtype=x_dtype, optional=True)}
    names = ("x",) + (("y",) if y is not None else ()) + \
        (("sample_weight",) if weight is not None else ())
    return Case({"x": x, "y": y, "sample_weight": weight}, slots, run, compatible,
                f"n={n} batch_size={batch_size} dtype={dtype}"), _draw_fuzzed(draw, names)


# --- gradcheck ---------------------------------------------------------------------

def gradcheck_entry(kind):
    def make(draw, rng):
        n = draw.integer(1, 2)
        x = rng.standard_normal((n, 2))
        target = rng.standard_normal((n, 2)) if kind != "layer" else None

        def run(args):
            if kind == "layer":
                obj = layers.Dense(2, activation="tanh", dtype="float64", name="dense")
                obj._rng = np.random.default_rng(0)
                return cdl.gradcheck(obj, args["x"], raise_on_error=False)
            if kind == "loss":
                return cdl.gradcheck(losses.MSE(), args["x"], args["target"],
                                     raise_on_error=False)
            model = cdl.Sequential([layers.Dense(2, activation="tanh", name="dense")],
                                   input_shape=(2,),
                                   dtype="float64", seed=0)
            return cdl.gradcheck(model, args["x"], args["target"], loss="mse",
                                 raise_on_error=False)

        def compatible(args):
            xs = shape_of(args["x"])
            if kind == "model" and (len(xs) != 2 or xs[1] != 2):
                return False
            if target is not None:
                ts = shape_of(args["target"])
                expected = xs if kind == "loss" else xs[:1] + (2,)
                if ts != expected and not (expected[-1:] == (1,) and ts == expected[:-1]):
                    return False
            return None

        slots = {"x": Slot(nan="reject", clean_dtype=fixed(np.float64)),
                 "target": Slot(nan="reject", clean_dtype=fixed(np.float64))}
        names = ("x",) + (("target",) if target is not None else ())
        return Case({"x": x, "target": target}, slots, run, compatible, f"n={n}"), \
            _draw_fuzzed(draw, names)
    return make


# --- the registry ------------------------------------------------------------------

def _entries():
    entries = {}
    for name, spec in LAYER_SPECS.items():
        entries[f"layers.{name}"] = layer_entry(spec)
    entries["layers.Embedding"] = embedding_entry
    for cls in (layers.SimpleRNN, layers.LSTM, layers.GRU):
        entries[f"layers.{cls.__name__}"] = recurrent_entry(cls)
    entries["layers.Bidirectional"] = recurrent_entry(layers.GRU, bidirectional=True)
    entries["layers.Bidirectional.LSTM"] = recurrent_entry(layers.LSTM, bidirectional=True)
    for name, spec in MERGE_SPECS.items():
        entries[f"layers.{name}"] = merge_entry(spec)
    for name, spec in ATTENTION_LAYER_SPECS.items():
        entries[f"layers.{name}"] = layer_entry(spec)
    for name, spec in ATTENTION_LIST_SPECS.items():
        entries[f"layers.{name}"] = merge_entry(spec)
    entries["layers.MultiHeadAttention.masks"] = attention_mask_entry
    for name in LOSS_SPECS:
        entries[f"losses.{name}"] = loss_entry(name)
    for fn, kind, kwargs in [
            (metrics.accuracy, "classes", {"per_position": True}),
            (metrics.binary_accuracy, "binary", {}),
            (metrics.top_k_accuracy, "classes", {"k": 2, "per_position": True}),
            (metrics.confusion_matrix, "classes", {"int_weights": True}),
            (metrics.precision, "classes", {}),
            (metrics.recall, "classes", {"average": "micro"}),
            (metrics.f1_score, "classes", {"average": None}),
            (metrics.mean_squared_error, "regression", {}),
            (metrics.mean_absolute_error, "regression", {}),
            (metrics.root_mean_squared_error, "regression", {}),
            (metrics.r2_score, "regression", {})]:
        entries[f"metrics.{fn.__name__}"] = metric_entry(fn, kind, **kwargs)
    for cls, kind in [(metrics.Accuracy, "classes"), (metrics.BinaryAccuracy, "binary"),
                      (lambda: metrics.TopKAccuracy(k=2), "classes"),
                      (metrics.Precision, "classes"), (metrics.Recall, "classes"),
                      (lambda: metrics.F1Score(average="weighted"), "classes"),
                      (metrics.MSE, "regression"), (metrics.MAE, "regression"),
                      (metrics.RMSE, "regression"), (metrics.R2, "regression")]:
        name = cls.__name__ if isinstance(cls, type) else cls().__class__.__name__
        entries[f"metrics.{name}"] = metric_object_entry(
            cls, kind, per_position=name in ("Accuracy", "TopKAccuracy"))
    entries["metrics.Mean"] = mean_metric_entry
    for name in OPTIMIZERS:
        entries[f"optimizers.{name}.step"] = optimizer_entry(name)
    entries["optimizers.clip_grad_norm"] = clip_entry("norm")
    entries["optimizers.clip_grad_value"] = clip_entry("value")
    for method in ("forward", "fit", "evaluate", "train_step", "predict", "predict_proba",
                   "predict_classes"):
        entries[f"Sequential.{method}"] = model_entry(method)
    entries["Sequential.fit_validation_data"] = fit_validation_entry
    entries["Input"] = input_entry
    entries["Model"] = model_constructor_entry
    entries["Model.compile"] = model_compile_entry
    for method in ("forward", "fit", "evaluate", "train_step", "predict"):
        entries[f"Model.{method}"] = graph_model_entry(method)
    entries["data.StandardScaler"] = scaler_entry("standard")
    entries["data.MinMaxScaler"] = scaler_entry("minmax")
    entries["data.one_hot"] = one_hot_entry
    entries["data.train_test_split"] = train_test_split_entry
    entries["data.BatchLoader"] = batch_loader_entry
    for kind in ("layer", "loss", "model"):
        entries[f"gradcheck.{kind}"] = gradcheck_entry(kind)
    return entries


ENTRIES = _entries()


# --- running -----------------------------------------------------------------------

#: Failures whose cause is known and not yet fixed: (entry point pattern,
#: pattern searched in the problem and the example's description, cause).
#: They are counted and printed as "known", not as failures. Empty: every
#: finding so far is fixed; an entry is removed once its cause is fixed, and
#: the fuzz then checks that it stays fixed.
KNOWN_ISSUES = []


def known_issue(name, problem, description):
    """The cause of a known failure of entry point ``name``, or None."""
    for entry_pattern, pattern, cause in KNOWN_ISSUES:
        if re.match(entry_pattern, name) and (re.search(pattern, problem)
                                              or re.search(pattern, description)):
            return cause
    return None


class Tally:
    """Outcomes of one entry point's examples and its first distinct failures."""

    def __init__(self, name):
        self.name = name
        self.counts = {Outcome.OK: 0, Outcome.REJECTED: 0, Outcome.FAILED: 0}
        self.known = {}
        self.failures = {}

    def add(self, outcome, problem, description):
        cause = None if problem is None else known_issue(self.name, problem, description)
        if cause is not None:
            self.counts[Outcome.REJECTED] += 1
            self.known[cause] = self.known.get(cause, 0) + 1
            return
        self.counts[outcome] += 1
        if problem is not None:
            key = problem.split(":")[0][:80]
            self.failures.setdefault(key, (problem, description, 0))
            first, desc, count = self.failures[key]
            self.failures[key] = (first, desc, count + 1)


class Choices:
    """The choices of one example, read from bytes that hypothesis draws (so
    that it varies and replays them) and, past their end, from a generator
    they seed. One byte string is much cheaper to draw than many values."""

    def __init__(self, tape):
        self.tape, self.position = tape, 8
        self.rng = np.random.default_rng(int.from_bytes(tape[:8], "little"))

    def _below(self, n):
        if self.position + 2 <= len(self.tape):
            value = int.from_bytes(self.tape[self.position:self.position + 2], "little")
            self.position += 2
            return value % n
        return int(self.rng.integers(n))

    def choice(self, options):
        options = tuple(options)
        return options[self._below(len(options))]

    def integer(self, low, high):
        return low + self._below(high - low + 1)

    def boolean(self):
        return bool(self._below(2))


#: An entry point whose first example kills the interpreter with SIGSEGV, so
#: that test_fuzz.py can check that it reports a crash as it should.
CRASH_IN = os.environ.get("CDL_FUZZ_CRASH_IN")

#: Bytes of choices per example, and examples per hypothesis test case:
#: hypothesis's own work per test case costs more than a small example, so
#: each test case checks a few examples, each driven by its own bytes.
TAPE_BYTES = 72
EXAMPLES_PER_CASE = 4


def _draw_example(entry, tape):
    draw = Choices(tape)
    rng = np.random.default_rng(draw.rng.integers(2**63))
    case, fuzz = entry(draw, rng)
    fuzzed = {}
    for name in fuzz:
        slot = case.slots[name]
        clean = case.args[name]
        if slot.in_place:  # the odd value is written to: never the clean original
            clean = private_copy(clean)
        if slot.kind == "arrays":
            odd, _ = mutate_arrays(draw, rng, clean, slot)
        else:
            odd = mutate(draw, rng, np.asarray(clean), slot)
        fuzzed[name] = odd
    return case, fuzzed


def _describe(case, fuzzed):
    parts = [case.desc] + [f"{name}: {' + '.join(odd.tags) or 'clean'}"
                           for name, odd in fuzzed.items()]
    return "; ".join(parts)


def run_entry(name, examples, seed_value=None, trace=None):
    """Fuzz one entry point; return its Tally."""
    entry = ENTRIES[name]
    tally = Tally(name)

    cases = -(-examples // EXAMPLES_PER_CASE)
    size = TAPE_BYTES * EXAMPLES_PER_CASE

    @settings(max_examples=cases, derandomize=False, deadline=None,
              database=None, phases=[Phase.generate], report_multiple_bugs=False,
              suppress_health_check=list(HealthCheck))
    @given(st.binary(min_size=size, max_size=size))
    def fuzz(tapes):
        for start in range(0, size, TAPE_BYTES):
            if sum(tally.counts.values()) >= examples:
                return
            run_example(entry, name, tapes[start:start + TAPE_BYTES], tally, trace)

    # A fixed seed per entry point: runs are reproducible, and entry points
    # that take the same kind of arguments still see different examples.
    fuzz = hypothesis_seed((seed_value or 0) + zlib.crc32(name.encode()))(fuzz)
    fuzz()
    return tally


def run_example(entry, name, tape, tally, trace):
    """Draw one example from ``tape``, check it and count its outcome."""
    description = f"tape {tape.hex()}"
    try:
        case, fuzzed = _draw_example(entry, tape)
        description = _describe(case, fuzzed)
        if trace is not None:
            os.ftruncate(trace, 0)
            os.pwrite(trace, f"{name}: {description}\n".encode(), 0)
        if name == CRASH_IN:
            faulthandler._sigsegv()  # what a kernel bug would do, for test_fuzz's own test
        outcome, problem = check_example(case, fuzzed)
    except Exception as err:  # noqa: BLE001 - a bug of this harness, reported as one
        outcome, problem = Outcome.FAILED, f"harness error {type(err).__name__}: {err}"
    tally.add(outcome, problem, description)


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=2000,
                        help="examples per entry point (default 2000)")
    parser.add_argument("--only", default=None,
                        help="comma-separated entry point names (default: all)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the examples (default 0; each entry point adds "
                             "its own to it)")
    parser.add_argument("--trace", default=None,
                        help="file that holds the description of the running example")
    parser.add_argument("--list", action="store_true", help="list the entry points and exit")
    parser.add_argument("--show", type=int, default=3,
                        help="distinct failures to print per entry point (default 3)")
    return parser.parse_args(argv)


def main(argv=None):
    args = _parse(argv)
    if args.list:
        print("\n".join(ENTRIES))
        return 0
    names = list(ENTRIES) if not args.only else args.only.split(",")
    unknown = [n for n in names if n not in ENTRIES]
    if unknown:
        print(f"unknown entry points: {', '.join(unknown)}", file=sys.stderr)
        return 2
    faulthandler.enable()
    trace = os.open(args.trace, os.O_WRONLY | os.O_CREAT, 0o644) if args.trace else None
    np.seterr(all="ignore")  # overflow in extreme values is part of the fuzz, not news
    failed = 0
    for name in names:
        print(f"START {name}", flush=True)
        start = time.perf_counter()
        tally = run_entry(name, args.examples, args.seed, trace)
        seconds = time.perf_counter() - start
        c = tally.counts
        total = sum(c.values())
        print(f"DONE {name}: examples={total} ok={c[Outcome.OK]} "
              f"rejected={c[Outcome.REJECTED]} failures={c[Outcome.FAILED]} "
              f"known={sum(tally.known.values())} time={seconds:.1f}s", flush=True)
        for cause, count in tally.known.items():
            print(f"  KNOWN x{count}: {cause}", flush=True)
        for first, description, count in list(tally.failures.values())[:args.show]:
            print(f"  FAILURE x{count}: {first}\n    example: {description}", flush=True)
        failed += bool(c[Outcome.FAILED])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
