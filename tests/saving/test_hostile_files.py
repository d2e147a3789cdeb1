"""Hostile model files: a corpus of crafted files, each of which ``load_model``
and ``load_weights`` must refuse with one ``ModelFileError`` naming the
problem, while running no code from the file, touching no other file and
allocating no more memory than a small file needs.

The corpus is built by the ``make_*`` functions below. The loads run in a
separate process (this module run as ``python test_hostile_files.py audit
<manifest> <results>``) with an audit hook (``sys.addaudithook``) that records
imports of new modules, ``exec``/``compile``, process creation, unpickling,
and every ``open`` of another file or for writing; a snapshot of the watched
directories is compared before and after each load, and the process's peak
RSS and traced allocations are measured.
"""
import bz2
import gzip
import hashlib
import io as _io
import json
import lzma
import os
import pickle
import re
import shutil
import socket
import struct
import subprocess
import sys
import tarfile
import zipfile
import zlib

import numpy as np
import pytest

import cdl
from cdl import callbacks, io, layers, optimizers

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the audit reads /proc and makes a FIFO")

MEMORY_LIMIT = 50 * 2 ** 20   # bytes a refused file may make the loading process grow
BOMB_SIZE = 128 * 2 ** 20     # what the compression bombs expand to


# --- the corpus ---------------------------------------------------------------------


class Case:
    """One corpus file and the ModelFileError messages expected from each loader
    (``weights=None``: load_weights rightly accepts it, see the case's note)."""

    def __init__(self, name, path, match, weights="same", note="", weights_loader="weights"):
        self.name, self.path, self.match = name, str(path), match
        self.weights = match if weights == "same" else weights
        self.note = note
        # "graph_weights" loads into a built model: a graph file with two
        # inputs gives no input shape to build an unbuilt one for.
        self.weights_loader = weights_loader


def architecture(input_shape=None):
    return cdl.Sequential([layers.Dense(8, activation="relu"), layers.BatchNorm(),
                           layers.Dropout(0.3), layers.Dense(3)], input_shape=input_shape,
                          seed=1)


class _Stop(Exception):
    pass


def make_base_file(path):
    """A valid backup, mid-epoch: every header section and every kind of array
    (parameters, buffers, optimizer state, training state with a boolean one)."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((40, 5)), rng.integers(0, 3, 40)
    model = architecture((5,))
    model.compile(optimizers.Adam(lr=0.01, amsgrad=True), "cross_entropy",
                  metrics=["accuracy", "f1"])

    def stop(batch, logs):
        if batch == 2:
            raise _Stop

    try:
        model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[
            callbacks.BackupAndRestore(path.parent / "base-backup", save_freq=1),
            callbacks.LambdaCallback(on_train_batch_begin=stop)])
    except _Stop:
        pass
    os.replace(path.parent / "base-backup" / "backup.cdl", path)
    os.rmdir(path.parent / "base-backup")
    return path.read_bytes()


def split(raw):
    """(header dict, data section) of a valid file's bytes."""
    length = struct.unpack("<Q", raw[12:20])[0]
    return json.loads(raw[20:20 + length]), raw[20 + length:-32]


def forge(path, header=None, data=b"", version=1, magic=io.MAGIC, header_bytes=None):
    """A file around the given parts, with a correct checksum."""
    text = header_bytes if header_bytes is not None else json.dumps(header).encode()
    body = struct.pack("<8sIQ", magic, version, len(text)) + text + data
    path.write_bytes(body + hashlib.sha256(body).digest())
    return path


class Payload:
    """Unpickling this calls ``function(*args)``: the classic pickle exploit."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def make_pickles(d, outside):
    marker = outside / "pickle-ran"
    exploit = Payload(os.system, f"touch {marker}")
    write_marker = Payload(exec, f"open({str(marker)!r}, 'w').write('pwned')")
    torch_magic = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
    cdl_with_pickle_header = forge(d / "pickle_as_header.cdl",
                                   header_bytes=pickle.dumps(exploit, protocol=4))
    pickled = "is a Python pickle; cdl never unpickles"
    files = {
        "pickle_os_system.pkl": pickle.dumps(exploit, protocol=4),
        "pickle_exec_protocol2.pkl": pickle.dumps(write_marker, protocol=2),
        "pickle_protocol0.pkl": f"cos\nsystem\n(S'touch {marker}'\ntR.".encode(),
        "torch_legacy.pt": torch_magic + pickle.dumps(exploit, protocol=2),
    }
    cases = []
    for name, raw in files.items():
        (d / name).write_bytes(raw)
        cases.append(Case(name, d / name, pickled))
    cases.append(Case("pickle_as_header.cdl", cdl_with_pickle_header, "not valid UTF-8"))
    return cases


def make_archives(d, outside, base):
    """What a user might pass by mistake, booby-trapped: members escaping the
    directory, absolute paths, links, pickles inside, compression bombs."""
    zip_msg = "is a ZIP archive, not a cdl model file"
    exploit = pickle.dumps(Payload(os.system, f"touch {outside / 'zip-ran'}"))
    with zipfile.ZipFile(d / "torch_model.pt", "w") as z:
        z.writestr("archive/data.pkl", exploit)
        z.writestr("archive/version", "3\n")
        z.writestr("../outside/zip_escape.txt", "escaped")
    with zipfile.ZipFile(d / "keras_model.keras", "w") as z:
        z.writestr("config.json", json.dumps({"module": "os", "class_name": "system",
                                              "config": {"command": "id"}}))
        z.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n" + bytes(64))
        z.writestr(zipfile.ZipInfo(str(outside / "zip_absolute.txt")), "escaped")
    with zipfile.ZipFile(d / "zip_bomb.zip", "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("model.cdl", "w", force_zip64=True) as member:
            zeros = bytes(2 ** 20)
            for _ in range(BOMB_SIZE // len(zeros)):
                member.write(zeros)
    np.savez(d / "weights.npz", w=np.array([Payload(print, "ran")], dtype=object))
    (d / "empty.zip").write_bytes(b"PK\x05\x06" + bytes(18))
    with tarfile.open(d / "model.tar", "w") as t:
        for name, kind in (("../outside/tar_escape.txt", tarfile.REGTYPE),
                           (str(outside / "tar_absolute.txt"), tarfile.REGTYPE),
                           ("model.cdl", tarfile.SYMTYPE)):
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.SYMTYPE:
                info.linkname = "/etc/passwd"
                t.addfile(info)
            else:
                info.size = 7
                t.addfile(info, _io.BytesIO(b"escaped"))
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)   # gzip framing
    zeros = bytes(2 ** 20)
    chunks = [compressor.compress(zeros) for _ in range(BOMB_SIZE // len(zeros))]
    (d / "gzip_bomb.cdl.gz").write_bytes(b"".join(chunks) + compressor.flush())
    (d / "model.tar.gz").write_bytes(gzip.compress((d / "model.tar").read_bytes()))
    (d / "model.cdl.bz2").write_bytes(bz2.compress(base))
    (d / "model.cdl.xz").write_bytes(lzma.compress(base))
    return [
        Case("torch_model.pt (zip, ../ member, pickle)", d / "torch_model.pt", zip_msg),
        Case("keras_model.keras (zip, absolute member)", d / "keras_model.keras", zip_msg),
        Case("zip_bomb.zip", d / "zip_bomb.zip", zip_msg),
        Case("weights.npz (zip of pickled npy)", d / "weights.npz", zip_msg),
        Case("empty.zip", d / "empty.zip", "is a ZIP archive"),
        Case("model.tar (../, absolute, symlink)", d / "model.tar", "is a tar archive"),
        Case("gzip_bomb.cdl.gz", d / "gzip_bomb.cdl.gz", "is gzip-compressed"),
        Case("model.tar.gz", d / "model.tar.gz", "is gzip-compressed"),
        Case("model.cdl.bz2", d / "model.cdl.bz2", "is bzip2-compressed"),
        Case("model.cdl.xz", d / "model.cdl.xz", "is xz-compressed"),
    ]


def make_other_formats(d):
    (d / "model.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(200))
    np.save(d / "weights.npy", np.array([Payload(print, "ran")], dtype=object),
            allow_pickle=True)
    meta = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    (d / "model.safetensors").write_bytes(struct.pack("<Q", len(meta)) + meta + bytes(8))
    (d / "model.json").write_text(json.dumps(
        {"class_name": "os.system", "config": {"layers": [{"class_name": "subprocess.Popen"}]}}))
    (d / "random.bin").write_bytes(bytes(range(256)) * 4)
    (d / "saved_model").mkdir()
    (d / "saved_model" / "saved_model.pb").write_bytes(b"\x08\x01")
    os.mkfifo(d / "model.fifo")
    return [
        Case("model.h5", d / "model.h5", "is an HDF5 file"),
        Case("weights.npy (pickled objects)", d / "weights.npy", "is a NumPy .npy file"),
        Case("model.safetensors", d / "model.safetensors", "is a safetensors file"),
        Case("model.json (a Keras config)", d / "model.json", "is a JSON text file"),
        Case("random.bin", d / "random.bin", "wrong magic bytes"),
        Case("saved_model/ (a directory)", d / "saved_model", "is a directory"),
        Case("model.fifo (would block a reader)", d / "model.fifo", "not a regular file"),
    ]


def make_damaged(d, base):
    header, data = split(base)
    length = struct.unpack("<Q", base[12:20])[0]
    cases = [Case("empty.cdl", _write(d / "empty.cdl", b""), "the file is empty")]
    cuts = {"magic_half": 4, "magic_only": 8, "no_header_length": 12, "prefix_only": 20,
            "header_half": 20 + length // 2, "data_half": 20 + length + len(data) // 2,
            "no_digest": len(base) - 32, "digest_half": len(base) - 16,
            "last_byte": len(base) - 1}
    for name, cut in cuts.items():
        cases.append(Case(f"truncated_{name}", _write(d / f"cut_{name}.cdl", base[:cut]),
                          "truncated|checksum mismatch"))
    past_end = bytearray(base)
    past_end[12:20] = struct.pack("<Q", 2 ** 63)
    cases.append(Case("header_length_past_end", _write(d / "past_end.cdl", past_end),
                      "header claims 9223372036854775808 bytes"))
    for version in (0, 2, 2 ** 32 - 1):
        cases.append(Case(f"format_version_{version}",
                          forge(d / f"version_{version}.cdl", header, data, version=version),
                          f"unsupported format version {version}"))
    flipped = bytearray(base)
    flipped[20 + length + 10] ^= 0x40
    cases.append(Case("bad_checksum_data", _write(d / "flipped.cdl", flipped),
                      "checksum mismatch"))
    cases.append(Case("bad_checksum_digest", _write(d / "zero_digest.cdl",
                                                    base[:-32] + bytes(32)),
                      "checksum mismatch"))
    return cases


def _write(path, raw):
    path.write_bytes(bytes(raw))
    return path


def make_bad_json(d, base):
    header, data = split(base)
    text = json.dumps(header)
    units = '"units": 8'
    assert units in text
    deep = "[" * 200 + "]" * 200
    files = {
        "invalid_utf8": (text.replace('"cdl-model"', '"cdl-model\udcff"').encode(
            "utf-8", "surrogateescape"), "not valid UTF-8"),
        "duplicate_key_kind": (('{"kind": "weights", ' + text[1:]).encode(),
                               "repeats the key 'kind'"),
        "duplicate_key_units": (text.replace(units, units + ', "units": 800000000', 1)
                                .encode(), "repeats the key 'units'"),
        "nested_100000_levels": (b"[" * 100000, "nests JSON more than 64 levels"),
        "nested_200_levels_in_config": (text.replace(units, units + f', "x": {deep}', 1)
                                        .encode(), "nests JSON more than 64 levels"),
        "not_json": (b"{not json", "not valid JSON"),
        "json_array": (b"[1, 2]", "the header must be dict"),
        "huge_integer": (text.replace(units, '"units": 1' + "0" * 5000, 1).encode(),
                         "a number of more than 100 digits"),
    }
    return [Case(name, forge(d / f"{name}.cdl", data=data, header_bytes=raw), match)
            for name, (raw, match) in files.items()]


def _entry(h, name):
    return next(e for e in h["arrays"] if e["name"] == name)


def _layer0(h):
    return h["model"]["layers"][0]


def _order_from_another_array(h):
    """Point the shuffle order at the int64 0/1 array of a metric's boolean state
    (and drop the order's own array, leaving its bytes as padding)."""
    state = h["training_state"]
    present = state["metrics"][1]["state"]["_present"]
    state["metrics"][1]["state"]["_present"] = None
    h["arrays"].remove(_entry(h, state["shuffle_order"]["$array"]))
    state["shuffle_order"] = {"$array": present["$array"]}


# (name, mutation of the header, expected message, expected from load_weights or
# None when load_weights rightly accepts the file: it uses the caller's layers,
# so it never reads the layers' configs or looks their classes up, nor the
# compile settings beyond their types).
MUTATIONS = [
    # sizes, offsets and shapes
    ("giant_shape_2e40", lambda h: _entry(h, "params").update(shape=[2 ** 40], nbytes=2 ** 42),
     "outside the data section"),
    ("giant_shape_32_axes", lambda h: _entry(h, "params").update(
        shape=[2 ** 62] * 32, nbytes=2 ** 1986), "a number of more than 100 digits"),
    ("giant_shape_32_axes_nbytes_fits", lambda h: _entry(h, "params").update(
        shape=[2 ** 62] * 32, nbytes=2 ** 60), "needs about 10\\*\\*597"),
    ("too_many_axes", lambda h: _entry(h, "params").update(shape=[1] * 40, nbytes=4),
     "40 axes"),
    ("giant_input_shape", lambda h: h["model"].update(input_shape=[10 ** 9]),
     "more weights than the .* values the file holds"),
    ("giant_units_1e9", lambda h: _layer0(h)["config"].update(units=10 ** 9),
     "more weights than the .* values the file holds", None),
    ("giant_units_3e7", lambda h: _layer0(h)["config"].update(units=3 * 10 ** 7),
     "more weights than the .* values the file holds", None),
    ("shape_bytes_mismatch", lambda h: _entry(h, "params").update(nbytes=8), "needs"),
    ("negative_offset", lambda h: _entry(h, "params").update(offset=-64), "at least 0"),
    ("overlapping_arrays", lambda h: _entry(h, "optimizer/exp_avg").update(
        offset=_entry(h, "params")["offset"]), "overlap"),
    ("array_past_the_end", lambda h: _entry(h, "optimizer/exp_avg").update(offset=10 ** 6),
     "outside the data section"),
    ("object_dtype", lambda h: _entry(h, "params").update(dtype="object"), "allowed are"),
    ("duplicate_array", lambda h: h["arrays"].append(dict(h["arrays"][0])), "twice"),
    ("unreferenced_array", lambda h: _entry(h, "optimizer/exp_avg").update(name="extra"),
     "nothing refers to|missing array"),
    ("no_params", lambda h: _entry(h, "params").update(name="weights"), "no 'params' array"),
    ("layout_mismatch", lambda h: h["param_layout"].pop(), "param_layout lists"),
    # classes named by path or not registered
    ("layer_os_system", lambda h: _layer0(h).update(class_name="os.system"), "dotted path"),
    ("layer_subprocess_popen", lambda h: _layer0(h).update(class_name="subprocess.Popen"),
     "dotted path"),
    ("layer_builtins_eval", lambda h: _layer0(h).update(class_name="builtins.eval"),
     "dotted path"),
    ("layer_cdl_private_path",
     lambda h: _layer0(h).update(class_name="cdl.saving.atomic._umask_mode"), "dotted path"),
    ("layer_module_colon", lambda h: _layer0(h).update(class_name="os:system"),
     "dotted path"),
    ("layer_dunder_import", lambda h: _layer0(h).update(class_name="__import__"),
     "not a class name"),
    ("layer_eval", lambda h: _layer0(h).update(class_name="eval"),
     "unknown layer class 'eval'", None),
    ("unregistered_layer", lambda h: _layer0(h).update(class_name="MyAttentionLayer"),
     "unknown layer class 'MyAttentionLayer'.*register_layer", None),
    ("nested_layer_os_system", lambda h: h["model"]["layers"].insert(0, {
        "class_name": "Residual", "config": {"layers": [
            {"class_name": "os.system", "config": {"command": "id"}}]}}),
     "cannot be created", None),
    ("layer_config_injection", lambda h: _layer0(h)["config"].update(
        __class__="os.system", activation="os.system"), "cannot be created", None),
    ("loss_os_system", lambda h: h["compile"]["loss"].update(class_name="os.system"),
     "dotted path"),
    ("optimizer_popen", lambda h: h["compile"]["optimizer"].update(
        class_name="subprocess.Popen"), "dotted path"),
    ("metric_os_system", lambda h: h["compile"].update(metrics=["os.system"]),
     "compile config", None),
    ("optimizer_state_exec", lambda h: h["optimizer"].update(class_name="builtins.exec"),
     "dotted path"),
    ("rng_os_system", lambda h: h["rng"].update(bit_generator="os.system"),
     "rng.bit_generator is 'os.system'"),
    # header-level identity
    ("format_zip", lambda h: h.update(format="zip"), "header field 'format'"),
    ("format_version_header_2", lambda h: h.update(format_version=2), "disagrees"),
    ("format_version_true", lambda h: h.update(format_version=True), "disagrees"),
    ("kind_exploit", lambda h: h.update(kind="exploit"), "header field 'kind'"),
    # NaN and infinity where numbers are required
    ("nan_shape", lambda h: _entry(h, "params").update(shape=[float("nan")]),
     "must be int, got float"),
    ("nan_offset", lambda h: _entry(h, "params").update(offset=float("nan")),
     "must be int, got float"),
    ("inf_nbytes", lambda h: _entry(h, "params").update(nbytes=float("inf")),
     "must be int, got float"),
    ("nan_seed", lambda h: h["model"].update(seed=float("nan")), "must be int, got float"),
    ("nan_lr", lambda h: h["compile"]["optimizer"]["config"].update(lr=float("nan")),
     "compile config.*finite", None),
    ("nan_clip_norm", lambda h: h["compile"].update(clip_norm=float("nan")),
     "must be a finite number"),
    ("nan_optimizer_scalar", lambda h: h["optimizer"]["scalars"].update(mu=float("nan")),
     "must be a finite number"),
    ("nan_lr_mult", lambda h: h["optimizer"].update(param_groups=[
        {"params": [0], "lr_mult": float("nan")}]), "must be a finite number"),
    ("nan_iterations", lambda h: h["optimizer"].update(iterations=float("nan")),
     "must be int, got float"),
    ("nan_rng_state", lambda h: h["rng"]["state"].update(state=float("nan")),
     "must be int, got float"),
    ("nan_dropout_rate", lambda h: h["model"]["layers"][2]["config"].update(
        rate=float("nan")), "cannot be created", None),
    ("nan_training_epoch", lambda h: h["training_state"].update(epoch=float("nan")),
     "must be int, got float"),
    # the training state
    ("training_negative_batch", lambda h: h["training_state"].update(batch=-1),
     "at least 0"),
    ("training_batch_past_epoch", lambda h: h["training_state"].update(batch=99),
     "past the epoch"),
    ("training_order_is_params", lambda h: h["training_state"].update(
        shuffle_order={"$array": "params"}), "not a training array"),
    ("training_order_not_permutation", lambda h: _order_from_another_array(h),
     "not a permutation"),
    ("training_array_ref_extra_field", lambda h: h["training_state"]["shuffle_order"].update(
        dtype="object"), "unknown fields"),
]


# Every header field given a value of a wrong type: (path, value, expected).
WRONG_TYPES = [
    ("format", 1, "'format' is 1"),
    ("format_version", "1", "format_version '1'"),
    ("kind", ["model"], "kind must be str"),
    ("cdl_version", 5, "cdl_version must be str"),
    ("model", "Sequential", "model must be dict"),
    ("model.name", 5, "name must be str"),
    ("model.dtype", 32, "dtype must be str"),
    ("model.seed", "0", "seed must be int"),
    ("model.input_shape", "5", "input_shape must be list"),
    ("model.layers", {}, "layers must be list"),
    ("model.layers.0", "Dense", "layer 0 must be dict"),
    ("model.layers.0.class_name", {"module": "os"}, "class_name must be str"),
    ("model.layers.0.config", [], "config must be dict"),
    ("built", "yes", "built must be bool"),
    ("param_layout", {}, "param_layout must be list"),
    ("param_layout.0", [], r"param_layout\[0\] must be dict"),
    ("param_layout.0.layer", 5, "layer must be str"),
    ("param_layout.0.weight", None, "weight must be str"),
    ("param_layout.0.shape", "5,8", "shape must be list"),
    ("buffers", {}, "buffers must be list"),
    ("buffers.0", "x", r"buffers\[0\] must be dict"),
    ("buffers.0.array", 3, "array must be str"),
    ("compile", "adam", "compile config must be dict"),
    ("compile.optimizer", "adam", "optimizer must be dict"),
    ("compile.loss", "mse", "loss must be dict"),
    ("compile.loss.config", [["reduction", "sum"]], "config must be dict"),
    ("compile.metrics", "accuracy", "metrics must be list"),
    ("compile.clip_norm", "1", "clip_norm must be int or float"),
    ("optimizer", [], "optimizer must be dict"),
    ("optimizer.class_name", 5, "class_name must be str"),
    ("optimizer.config", [], "config must be dict"),
    ("optimizer.iterations", 1.5, "iterations must be int"),
    ("optimizer.scalars", [], "scalars must be dict"),
    ("optimizer.state", [], "state must be dict"),
    ("optimizer.state.exp_avg", 5, "exp_avg must be str"),
    ("optimizer.param_groups", {}, "param_groups must be list"),
    ("rng", "seed", "rng must be dict"),
    ("rng.state", "x", "rng.state must be int"),
    ("rng.has_uint32", True, "has_uint32 must be int"),
    ("arrays", {}, "arrays must be list"),
    ("arrays.0", "params", "array table entry 0 must be dict"),
    ("arrays.0.name", 5, "name must be str"),
    ("arrays.0.dtype", 4, "dtype must be str"),
    ("arrays.0.shape", 5, "shape must be list"),
    ("arrays.0.offset", "0", "offset must be int"),
    ("arrays.0.nbytes", None, "nbytes must be int"),
    ("training_state", "x", "training_state must be dict"),
    ("training_state.epoch", "1", "epoch must be int"),
    ("training_state.loss_sum", "0.5", "loss_sum must be int or float"),
    ("training_state.shuffle_order", [3, 1, 2], "shuffle_order must be ndarray or null"),
    ("training_state.metrics", {}, "metrics must be list"),
    ("training_state.history", [], "history must be dict"),
    ("training_state.history.epoch", {}, "epoch must be list"),
    ("training_state.callbacks", "x", "callbacks must be list"),
]


def _set_path(header, path, value):
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]
    target = header
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = value


def make_lying_headers(d, base):
    header, data = split(base)
    cases = []
    for name, mutate, match, *weights in MUTATIONS:
        forged = json.loads(json.dumps(header))
        mutate(forged)
        path = forge(d / f"{name}.cdl", forged, data)
        cases.append(Case(name, path, match, *(weights or ["same"])))
    for field, value, match in WRONG_TYPES:
        forged = json.loads(json.dumps(header))
        _set_path(forged, field, value)
        cases.append(Case(f"wrong_type {field}",
                          forge(d / f"type_{field.replace('.', '_')}.cdl", forged, data),
                          match))
    return cases


def _with_key(header, key, value_text):
    """The header's JSON text with ``"key": value_text`` (raw JSON) added."""
    return json.dumps(header).encode()[:-1] + b', "' + key.encode() + b'": ' + value_text + b"}"


def _sparse(path, raw, size):
    """A file of ``size`` bytes (a hole, costing no disk) starting like ``raw``."""
    with open(path, "wb") as f:
        f.write(raw[:-32])
        f.truncate(size)
    return path


def make_costly(d, base):
    """Small or sparse files whose naive reading costs far more than their
    size: amplifying JSON, numbers NumPy or int() refuses, sizes that lie,
    paths that are not files."""
    header, data = split(base)

    def mutated(name, mutate, match):
        forged = json.loads(json.dumps(header))
        mutate(forged)
        return Case(name, forge(d / f"{name}.cdl", forged, data), match)

    def raw_header(name, text, match):
        return Case(name, forge(d / f"{name}.cdl", data=data, header_bytes=text), match)

    def zero_size(shape):
        return lambda h: h["arrays"].append({"name": "training/x", "dtype": "float32",
                                             "shape": shape, "offset": 0, "nbytes": 0})

    def rng_key(n):
        return json.dumps(dict(header, rng={"bit_generator": "MT19937",
                                            "state": {"key": [1] * n, "pos": 0}})).encode()

    def duplicate_groups(h):
        h["optimizer"]["param_groups"] = [{"params": [0, 1]}, {"params": [2, 3, 1]}]

    loop = d / "loop.cdl"
    os.symlink(loop, loop)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(d / "model.sock"))
    listener.close()
    corrupted = bytearray(base)
    corrupted[20:24] = b"[1, "   # the header is no object, and the digest does not match
    deep = "[" * 62 + "0" + "]" * 62
    return [
        mutated("zero_size_1e30_axis", zero_size([0, 10 ** 30]),
                r"shape\[1\] must be at most 9223372036854775807, got about 10\*\*30"),
        mutated("zero_size_axes_past_numpy", zero_size([0, 2 ** 62, 2 ** 62]),
                "more elements than any array can hold"),
        mutated("offset_4300_digits", lambda h: _entry(h, "params").update(
            offset=10 ** 4299), "a number of more than 100 digits"),
        mutated("offset_30_digits", lambda h: _entry(h, "params").update(offset=10 ** 29),
                r"bytes about 10\*\*29 to about 10\*\*29\) lies outside the data section"),
        mutated("layout_product_5000_digits", lambda h: h["param_layout"][0].update(
            shape=[10 ** 156] * 32), "a number of more than 100 digits"),
        mutated("layout_product_600_digits", lambda h: h["param_layout"][0].update(
            shape=[2 ** 62] * 32), r"param_layout lists about 10\*\*597 values"),
        mutated("param_group_200000_duplicates", lambda h: h["optimizer"].update(
            param_groups=[{"params": [0] * 200_000}]),
            r"param_groups\[0\].params lists parameter 0 twice"),
        mutated("param_in_two_groups", duplicate_groups,
                r"param_groups\[1\].params lists parameter 1 again"),
        mutated("iterations_past_int64", lambda h: h["optimizer"].update(
            iterations=2 ** 70), "iterations must be at most 9223372036854775807"),
        raw_header("rng_key_500000", rng_key(500_000),
                   "rng.state.key has 500000 values; NumPy's bit generators keep at most 624"),
        raw_header("rng_key_3000000", rng_key(3_000_000),
                   "more than 524288 JSON values and keys"),
        raw_header("ignored_ints_20mb", _with_key(header, "future", b"[" + b"0," * 10 ** 7
                                                  + b"0]"),
                   "cdl reads headers of at most 16777216 bytes"),
        raw_header("ignored_2m_empty_objects", _with_key(header, "future", b"[" + b"{},"
                                                         * 2 * 10 ** 6 + b"0]"),
                   "more than 524288 JSON values and keys"),
        raw_header("ignored_deep_lists", _with_key(header, "future", (
            "[" + ",".join([deep] * 10 ** 4) + "]").encode()), "more than 524288 JSON values"),
        raw_header("non_ascii_header", json.dumps(dict(header, note="é"), ensure_ascii=False)
                   .encode(), "holds a non-ASCII character"),
        raw_header("unpaired_brackets", json.dumps(header).encode()[:-1] + b"]]}",
                   "brackets do not pair up"),
        Case("trailing_bytes", forge(d / "trailing.cdl", header, data + bytes(4096)),
             "bytes outside its arrays .*larger than its header says"),
        Case("sparse_1GiB", _sparse(d / "sparse_1g.cdl", base, 2 ** 30),
             "bytes outside its arrays"),
        Case("sparse_16GiB", _sparse(d / "sparse_16g.cdl", base, 2 ** 34),
             "bytes outside its arrays"),
        Case("corrupted_header", _write(d / "corrupted.cdl", corrupted),
             "checksum mismatch: the file is corrupted .*header is invalid"),
        Case("symlink_loop", loop, "is a symbolic link loop"),
        Case("unix_socket", d / "model.sock", "not a regular file but a unix socket"),
    ]


def make_graph_base_file(path):
    """A valid graph model file (two inputs, a shared layer, a merge) whose
    weights and buffers have the shapes of ``architecture((5,))``'s, so that
    ``load_weights`` into that model accepts it."""
    a, b = cdl.Input(shape=(5,), name="a"), cdl.Input(shape=(8,), name="b")
    h = layers.BatchNorm(name="bn")(layers.Dense(8, activation="relu", name="d1")(a))
    shared = layers.Activation("tanh", name="shared")
    h = layers.Dropout(0.3, name="drop")(layers.Add(name="sum")([shared(h), shared(b)]))
    model = cdl.Model([a, b], layers.Dense(3, name="out")(h), seed=1)
    model.compile(optimizers.Adam(lr=0.01), "cross_entropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    model.fit([rng.standard_normal((16, 5)), rng.standard_normal((16, 8))],
              rng.integers(0, 3, 16), epochs=1, batch_size=8, verbose=0)
    model.save(path)
    return path.read_bytes()


def _graph_layer(h, name):
    return next(s for s in h["model"]["graph"]["layers"] if s["config"]["name"] == name)


def _many_calls(h):
    """13,000 more calls of the shared layer: past the bound on calls."""
    graph = h["model"]["graph"]
    index = graph["layers"].index(_graph_layer(h, "shared"))
    graph["nodes"] += [{"layer": index, "inputs": [["input", 1]], "list": False}] * 13_000


# Forged graphs: (name, mutation, expected message, and None when load_weights,
# which never replays the calls nor makes the file's layers, rightly accepts it).
GRAPH_MUTATIONS = [
    ("graph_layer_os_system", lambda h: _graph_layer(h, "d1").update(class_name="os.system"),
     "graph layer 0 class_name is 'os.system', a dotted path"),
    ("graph_model_class_popen", lambda h: h["model"].update(class_name="subprocess.Popen"),
     "model config class_name is 'subprocess.Popen', a dotted path"),
    ("graph_cycle", lambda h: h["model"]["graph"]["nodes"][1].update(inputs=[["node", 3]]),
     "which is not made before it: the graph would have a cycle"),
    ("graph_dangling_output", lambda h: h["model"]["graph"].update(outputs=[["node", 99]]),
     "refers to call 99"),
    ("graph_too_many_calls", _many_calls, "calls that cost more than 50,000 layers"),
    ("graph_shared_layer_two_shapes", lambda h: h["model"]["graph"]["inputs"][1].update(
        shape=[7]), "layer 'shared' .Activation. is shared", None),
    ("graph_unknown_layer", lambda h: _graph_layer(h, "drop").update(
        class_name="MyAttentionLayer"), "unknown layer class 'MyAttentionLayer'", None),
    ("graph_unknown_model_class", lambda h: h["model"].update(class_name="MyModel"),
     "unknown model class 'MyModel'", None),
    ("graph_nested_os_system", lambda h: _graph_layer(h, "drop").update(
        class_name="Residual", config={"name": "drop", "layers": [
            {"class_name": "os.system", "config": {"command": "id"}}]}),
     "cannot be created", None),
    ("graph_giant_units", lambda h: _graph_layer(h, "out")["config"].update(units=10 ** 9),
     "graph layer 5 .Dense 'out'.: weight out.kernel .* more weights than the .* values "
     "the file holds", None),
    ("graph_giant_input", lambda h: h["model"]["graph"]["inputs"][0].update(shape=[10 ** 9]),
     "more weights than the .* values the file holds", None),
]


def make_graphs(d, base_path):
    header, data = split(make_graph_base_file(base_path))
    cases = []
    for name, mutate, match, *weights in GRAPH_MUTATIONS:
        forged = json.loads(json.dumps(header))
        mutate(forged)
        cases.append(Case(name, forge(d / f"{name}.cdl", forged, data), match,
                          *(weights or ["same"]), weights_loader="graph_weights"))
    return cases


def build_corpus(root):
    """Write the corpus under ``root``; return (cases, directories to watch, markers)."""
    corpus, outside = root / "corpus", root / "outside"
    corpus.mkdir()
    outside.mkdir()
    base = make_base_file(root / "base.cdl")
    cases = (make_pickles(corpus, outside) + make_archives(corpus, outside, base)
             + make_other_formats(corpus) + make_damaged(corpus, base)
             + make_bad_json(corpus, base) + make_lying_headers(corpus, base)
             + make_costly(corpus, base) + make_graphs(corpus, root / "graph.cdl"))
    return cases, [str(corpus), str(outside)], str(root / "base.cdl")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    cases, watched, base = build_corpus(root)
    return {"root": root, "cases": cases, "watched": watched, "base": base}


# --- the audited loading process ------------------------------------------------------


def run_audit(root, jobs, watched, base, timeout=300):
    """Load each (name, path, loader) of ``jobs`` in a fresh, audited process."""
    manifest, results, cwd = root / "manifest.json", root / "results.json", root / "cwd"
    cwd.mkdir(exist_ok=True)
    manifest.write_text(json.dumps({"jobs": jobs, "watched": watched + [str(cwd)],
                                    "base": base}))
    source = os.path.dirname(os.path.dirname(os.path.abspath(cdl.__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [source, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, os.path.abspath(__file__), "audit", str(manifest),
                           str(results)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(results.read_text())


def audit_main(manifest_path, results_path):
    """The loading process: load every job's file and record what happened."""
    import tracemalloc

    import cdl.callbacks
    import cdl.metrics

    manifest = json.loads(open(manifest_path).read())
    loaders = {"model": cdl.load_model,
               "weights": lambda path: architecture().load_weights(path),
               "graph_weights": lambda path: architecture((5,)).load_weights(path),
               "naive_pickle": lambda path: pickle.loads(open(path, "rb").read()),
               "naive_unzip": lambda path: zipfile.ZipFile(path).extractall(
                   os.path.dirname(path)),
               "naive_gunzip": lambda path: gzip.decompress(open(path, "rb").read())}
    for warm_up in ("model", "weights"):   # first loads import what cdl imports lazily
        loaders[warm_up](manifest["base"])
    watch = _AuditHook(set(sys.modules))
    sys.addaudithook(watch)
    tracemalloc.start()
    results = []
    for name, path, loader in manifest["jobs"]:
        before = _snapshot(manifest["watched"])
        tracemalloc.reset_peak()
        rss_start = _reset_peak_rss()
        watch.start(path)
        try:
            loaders[loader](path)
            outcome, message = "accepted", ""
        except BaseException as err:  # noqa: BLE001 - record whatever happened
            outcome, message = type(err).__name__, str(err)
        finally:
            events = watch.stop()
        changed = sorted(set(before.items()) ^ set(_snapshot(manifest["watched"]).items()))
        results.append({"name": name, "loader": loader, "outcome": outcome,
                        "message": message, "events": events,
                        "changed": [entry[0] for entry in changed],
                        "traced_peak": tracemalloc.get_traced_memory()[1],
                        "rss_growth": _status_bytes("VmHWM") - rss_start})
    with open(results_path, "w") as f:
        json.dump(results, f)


class _AuditHook:
    """Records, while a load runs, the audit events that mean the file did
    more than being read: new imports, code compiled or run, processes,
    unpickling, and opening any other file or any file for writing."""

    FORBIDDEN = ("exec", "compile", "os.system", "os.exec", "os.spawn", "os.posix_spawn",
                 "os.fork", "os.forkpty", "subprocess.Popen", "pickle.find_class",
                 "marshal.loads", "marshal.load", "ctypes.dlopen", "socket.connect",
                 "os.remove", "os.rename", "os.mkdir", "os.rmdir", "os.symlink", "os.link",
                 "os.chmod", "os.truncate", "os.utime", "shutil.rmtree", "shutil.move",
                 "urllib.Request", "webbrowser.open")
    WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def __init__(self, allowed_modules):
        self.allowed = allowed_modules
        self.target = None
        self.events = []

    def start(self, path):
        self.target, self.events = os.path.realpath(path), []

    def stop(self):
        self.target = None
        return self.events

    def __call__(self, event, args):
        if self.target is None:
            return
        if event == "import":
            module = args[0]
            if module not in self.allowed and module.split(".")[0] != "cdl":
                self.events.append(f"import {module}")
        elif event == "open":
            path, mode, flags = args
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & self.WRITE_FLAGS)
            other = isinstance(path, (str, bytes)) and os.path.realpath(path) != self.target
            if writes or other:
                self.events.append(f"open {path!r} mode={mode!r} flags={flags!r}")
        elif event in self.FORBIDDEN or event.startswith(("os.exec", "os.spawn")):
            self.events.append(f"{event} {str(args)[:200]}")


def _status_bytes(field):
    """A memory figure of this process from /proc/self/status, in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def _reset_peak_rss():
    """Reset the peak RSS (VmHWM) to the current RSS, so that the next reading
    of VmHWM is the peak of the load alone; return the current RSS."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    return _status_bytes("VmRSS")


def _snapshot(directories):
    """{path: (size, mtime_ns, mode)} of everything under ``directories``."""
    entries = {}
    for top in directories:
        for parent, dirs, files in os.walk(top):
            for name in dirs + files:
                path = os.path.join(parent, name)
                info = os.lstat(path)
                entries[path] = (info.st_size, info.st_mtime_ns, info.st_mode)
    return entries


# --- the tests ---------------------------------------------------------------------------


def test_the_corpus_is_large_and_valid_files_load(corpus):
    cases = corpus["cases"]
    assert len(cases) >= 30, len(cases)
    assert len({case.name for case in cases}) == len(cases)
    cdl.load_model(corpus["base"])            # the files every forgery starts from are valid
    architecture().load_weights(corpus["base"])
    cdl.load_model(corpus["root"] / "graph.cdl")
    architecture((5,)).load_weights(corpus["root"] / "graph.cdl")


def test_every_hostile_file_is_refused_with_no_side_effects(corpus):
    cases = corpus["cases"]
    graph = str(corpus["root"] / "graph.cdl")
    jobs = [("base (valid)", corpus["base"], loader) for loader in ("model", "weights")]
    jobs += [("graph base (valid)", graph, loader) for loader in ("model", "graph_weights")]
    jobs += [(case.name, case.path, loader) for case in cases
             for loader in ("model", case.weights_loader)]
    results = run_audit(corpus["root"], jobs, corpus["watched"], corpus["base"])
    expected = {(case.name, "model"): case.match for case in cases}
    expected.update({(case.name, case.weights_loader): case.weights for case in cases})
    expected.update({(name, loader): None for name, _, loader in jobs[:4]})
    problems = []
    for result in results:
        key = (result["name"], result["loader"])
        match = expected[key]
        label = f"{key[0]} [load_{key[1]}]"
        if match is None:
            if result["outcome"] != "accepted":
                problems.append(f"{label}: expected to load, got {result['outcome']}: "
                                f"{result['message']}")
        elif result["outcome"] != "ModelFileError":
            problems.append(f"{label}: raised {result['outcome']}: {result['message']}")
        elif not re.search(match, result["message"]):
            problems.append(f"{label}: message {result['message']!r} does not match {match!r}")
        if result["events"]:
            problems.append(f"{label}: audit events {result['events']}")
        if result["changed"]:
            problems.append(f"{label}: files changed {result['changed']}")
        if result["traced_peak"] > MEMORY_LIMIT or result["rss_growth"] > MEMORY_LIMIT:
            problems.append(f"{label}: memory {result['traced_peak']} traced, "
                            f"{result['rss_growth']} RSS growth")
    assert len(results) == len(jobs)
    assert not problems, "\n".join(problems)
    root = corpus["root"]
    assert os.listdir(root / "outside") == []    # no payload ran, no member escaped


def test_the_audit_notices_what_it_looks_for(corpus, tmp_path):
    """The same audited process, given naive loaders, reports what they do:
    the checks above would see code running, files written and memory used."""
    files = tmp_path / "files"
    files.mkdir()
    marker = tmp_path / "payload-ran"
    (files / "payload.pkl").write_bytes(pickle.dumps(Payload(os.system, f"touch {marker}")))
    with zipfile.ZipFile(files / "model.pt", "w") as z:
        z.writestr("archive/data.pkl", b"...")
    shutil.copy(os.path.join(corpus["watched"][0], "gzip_bomb.cdl.gz"), files)
    jobs = [("unpickle", str(files / "payload.pkl"), "naive_pickle"),
            ("unzip", str(files / "model.pt"), "naive_unzip"),
            ("gunzip", str(files / "gzip_bomb.cdl.gz"), "naive_gunzip")]
    results = {r["name"]: r for r in run_audit(tmp_path, jobs, [str(files)], corpus["base"])}
    unpickle = results["unpickle"]
    assert any(e.startswith("pickle.find_class") for e in unpickle["events"])
    assert any(e.startswith("os.system") for e in unpickle["events"]) and marker.exists()
    unzip = results["unzip"]
    assert any(e.startswith("open") and "data.pkl" in e for e in unzip["events"])
    assert any(path.endswith("data.pkl") for path in unzip["changed"])
    gunzip = results["gunzip"]
    assert gunzip["traced_peak"] > MEMORY_LIMIT and gunzip["rss_growth"] > MEMORY_LIMIT


if __name__ == "__main__" and sys.argv[1:2] == ["audit"]:
    audit_main(sys.argv[2], sys.argv[3])
