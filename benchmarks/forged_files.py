"""What loading forged model files costs: time and memory per file.

Writes a set of forged ``.cdl`` files (each with a correct checksum unless
it is not a file at all) into a temporary directory, loads each with
``cdl.load_model`` and with ``model.load_weights`` in a fresh Python
process, and prints a Markdown table: the file, its size, what the load
did (the error's type and message, or "accepted"), the seconds it took
and how much the process's peak resident memory grew::

    python benchmarks/forged_files.py                 # every file
    python benchmarks/forged_files.py --only lstm gru # files whose name contains a word
    python benchmarks/forged_files.py --keep DIR      # write the files to DIR and keep them

Memory is read from ``/proc/self/status`` (Linux): ``VmRSS`` before the load
and ``VmHWM`` after it, the high-water mark being reset first by writing
"5" to ``/proc/self/clear_refs`` (where that is not allowed, the peak
includes the interpreter's start-up). Sparse files cost no disk space.
"""
import argparse
import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

import cdl
from cdl import layers, optimizers

MIB = 2 ** 20


# --- the files ------------------------------------------------------------------------


def _base_model():
    model = cdl.Sequential([layers.Dense(8, activation="relu"), layers.BatchNorm(),
                            layers.Dense(3)], input_shape=(5,), seed=1)
    model.compile(optimizers.Adam(lr=0.01), "cross_entropy")
    rng = np.random.default_rng(0)
    model.fit(rng.standard_normal((32, 5)), rng.integers(0, 3, 32), epochs=1, batch_size=8,
              verbose=0)
    return model


def _split(raw):
    length = struct.unpack("<Q", raw[12:20])[0]
    return json.loads(raw[20:20 + length]), raw[20 + length:-32]


def _forge(path, header=None, data=b"", header_bytes=None):
    text = header_bytes if header_bytes is not None else json.dumps(
        header, separators=(",", ":")).encode()
    body = struct.pack("<8sIQ", b"CDLMODEL", 1, len(text)) + text + data
    with open(path, "wb") as f:
        f.write(body)
        f.write(hashlib.sha256(body).digest())


def _entry(header, name):
    return next(e for e in header["arrays"] if e["name"] == name)


def _header_with(header, key, value_text):
    """The header's JSON text with ``"key": value_text`` added (raw JSON)."""
    text = json.dumps(header, separators=(",", ":")).encode()
    return text[:-1] + b',"' + key.encode() + b'":' + value_text + b"}"


def _flatten_layers(header, count):
    """``count`` Flatten layers in front of the model (a flat input passes unchanged)."""
    spec = b'{"class_name":"Flatten","config":{}}'
    model = dict(header["model"], layers=[])
    text = json.dumps(dict(header, model=model), separators=(",", ":")).encode()
    marker = b'"layers":[]'
    layers_text = b",".join([spec] * count)
    originals = json.dumps(header["model"]["layers"], separators=(",", ":")).encode()[1:-1]
    return text.replace(marker, b'"layers":[' + layers_text + b"," + originals + b"]", 1)


def _only_params(header):
    """The header reduced to its parameters (no buffers, compile settings or
    optimizer state), the 'params' array first in the data section."""
    header["compile"] = header["optimizer"] = header["training_state"] = None
    header["buffers"] = []
    params = dict(_entry(header, "params"), offset=0)
    header["arrays"] = [params]
    return header, params["nbytes"]


def _recurrent(header, class_name, units):
    header = json.loads(json.dumps(header))
    header["model"]["input_shape"] = [4, 3]
    header["model"]["layers"] = [{"class_name": class_name, "config": {"units": units}}]
    return _only_params(header)


def _batchnorm(header, channels):
    header = json.loads(json.dumps(header))
    header["model"]["input_shape"] = [channels]
    header["model"]["layers"] = [{"class_name": "BatchNorm",
                                  "config": {"center": False, "scale": False}}]
    header["param_layout"] = []
    _entry(header, "params").update(shape=[0], nbytes=0)
    return _only_params(header)


def _sparse(path, raw, size):
    with open(path, "wb") as f:
        f.write(raw[:-32])
        f.truncate(size)


def make_files(d):
    """Write the forged files into ``d``; return [(name, path, loader target)]."""
    base_model = _base_model()
    base = os.path.join(d, "base.cdl")
    base_model.save(base)
    raw = open(base, "rb").read()
    header, data = _split(raw)
    files = [("valid model (base of the forgeries)", base, "base")]

    def forged(name, filename, target="base", **parts):
        path = os.path.join(d, filename)
        _forge(path, data=data, **parts)
        files.append((name, path, target))

    def mutated(name, filename, mutate, target="base"):
        h = json.loads(json.dumps(header))
        mutate(h)
        forged(name, filename, target, header=h)

    mutated("zero-size array with a 10**30 axis", "axis_1e30.cdl", lambda h: h["arrays"].append(
        {"name": "training/x", "dtype": "float32", "shape": [0, 10 ** 30], "offset": 0,
         "nbytes": 0}))
    mutated("offset of 4,300 digits", "offset_4300.cdl",
            lambda h: _entry(h, "params").update(offset=10 ** 4299))
    mutated("param_layout product of 5,000 digits", "layout_5000.cdl",
            lambda h: h["param_layout"][0].update(shape=[10 ** 156] * 32))
    mutated("param group listing one parameter 200,000 times", "duplicates.cdl",
            lambda h: h["optimizer"].update(param_groups=[{"params": [0] * 200_000}]))
    forged("16,000 Flatten layers", "flatten_16000.cdl", header_bytes=_flatten_layers(
        header, 16_000))
    forged("~1.8 M Flatten layers (64 MiB header)", "flatten_1800000.cdl",
           header_bytes=_flatten_layers(header, (64 * MIB - 4096) // 37))
    params_offset = _entry(header, "params")["offset"]
    for name, filename, (h, nbytes) in (
            ("LSTM with 3,000 units", "lstm_3000.cdl", _recurrent(header, "LSTM", 3000)),
            ("GRU with 4,000 units", "gru_4000.cdl", _recurrent(header, "GRU", 4000)),
            ("BatchNorm(center=False, scale=False), 10**8 channels", "batchnorm_1e8.cdl",
             _batchnorm(header, 10 ** 8))):
        path = os.path.join(d, filename)
        _forge(path, h, data[params_offset:params_offset + nbytes])
        files.append((name, path, "base"))
    forged("60 MB of small ints under an ignored key", "ignored_ints_60mb.cdl",
           header_bytes=_header_with(header, "future", b"[" + b"0," * (30 * 10 ** 6) + b"0]"))
    forged("6 MB rng key list", "rng_6mb.cdl", header_bytes=json.dumps(
        dict(header, rng=dict(header["rng"], state={"key": [1] * (3 * 10 ** 6),
                                                    "pos": 0}))).encode())
    forged("600,000-integer rng key list (1.2 MB)", "rng_600k.cdl", header_bytes=json.dumps(
        dict(header, rng=dict(header["rng"], state={"key": [1] * 600_000, "pos": 0}))).encode())
    deep = b"[" * 62 + b"0" + b"]" * 62   # 64 levels under the header object
    forged("64 MiB header of deep-but-legal JSON", "deep_64mib.cdl", header_bytes=_header_with(
        header, "future", b"[" + b",".join([deep] * (64 * MIB // (len(deep) + 1))) + b"]"))
    forged("500 K items at depth 64 under an ignored key", "deep_500k_items.cdl",
           header_bytes=_header_with(header, "future", b"[" + b",".join(
               [deep] * (2 ** 19 // 63 - 20)) + b"]"))
    forged("500 K strings of 29 bytes, 16 MiB header (largest accepted)", "strings_16mib.cdl",
           header_bytes=_header_with(header, "future", b"[" + b",".join(
               [b'"' + b"x" * 29 + b'"'] * (2 ** 19 - 1000)) + b"]"))
    forged("1 M small strings under an ignored key", "strings_1m.cdl",
           header_bytes=_header_with(header, "future", b"[" + b",".join(
               [b'"xy"'] * 2 ** 20) + b"]"))
    forged("260,000 distinct keys under an ignored key", "keys_260k.cdl",
           header_bytes=_header_with(header, "future", b"{" + b",".join(
               b'"k%d":0' % i for i in range(260_000)) + b"}"))
    forged("2 M empty objects under an ignored key", "dicts_2m.cdl",
           header_bytes=_header_with(header, "future", b"[" + b"{}," * (2 * 10 ** 6) + b"0]"))
    for name, size in (("1 GiB sparse file", 2 ** 30), ("16 GiB sparse file", 2 ** 34)):
        path = os.path.join(d, f"sparse_{size >> 30}g.cdl")
        _sparse(path, raw, size)
        files.append((name, path, "base"))
    big = cdl.Sequential([layers.Dense(2000), layers.Dense(2000)], input_shape=(2000,), seed=0)
    big.compile(optimizers.Adam(), "mse")
    big.optimizer.step(big.param_buffer, np.zeros_like(big.param_buffer))
    path = os.path.join(d, "valid_big.cdl")
    big.save(path)
    files.append(("valid model, 8 M weights with Adam state", path, "big"))
    loop = os.path.join(d, "loop.cdl")
    os.symlink(loop, loop)
    files.append(("symlink loop", loop, "base"))
    sock_path = os.path.join(d, "model.sock")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(sock_path)
    sock.close()
    files.append(("unix socket", sock_path, "base"))
    return files


# --- measuring one load in a fresh process ----------------------------------------------


def _targets():
    return {"base": lambda: cdl.Sequential([layers.Dense(8, activation="relu"),
                                            layers.BatchNorm(), layers.Dense(3)], seed=1),
            "big": lambda: cdl.Sequential([layers.Dense(2000), layers.Dense(2000)], seed=0)}


def _status(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def measure(path, loader, target):
    """Load ``path`` once in this process; return a dict of what happened."""
    cdl.load_model(os.environ["FORGED_WARM_UP"])   # what a first load imports is not counted
    load = cdl.load_model if loader == "load_model" else _targets()[target]().load_weights
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        pass
    before = _status("VmRSS")
    start = time.perf_counter()
    try:
        load(path)
        outcome = "accepted"
    except BaseException as err:  # noqa: BLE001 - the outcome is what is measured
        outcome = f"{type(err).__name__}: {str(err).replace(path, '<file>')}"
    seconds = time.perf_counter() - start
    return {"outcome": outcome, "seconds": seconds, "mb": (_status("VmHWM") - before) / 1e6}


def _size(path):
    try:
        info = os.lstat(path)
    except OSError:
        return "-"
    if not os.path.isfile(path) or os.path.islink(path):
        return "-"
    size = info.st_size
    return f"{size / MIB:.1f} MiB" if size >= MIB else f"{size / 1024:.1f} KiB"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", default=None,
                        help="measure only files whose description contains one of these")
    parser.add_argument("--keep", default=None, help="directory to write the files to")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(*args.worker)))
        return 0
    directory = args.keep or tempfile.mkdtemp(prefix="forged-")
    os.makedirs(directory, exist_ok=True)
    try:
        files = make_files(directory)
        env = dict(os.environ, FORGED_WARM_UP=files[0][1])
        print("| file | size | loader | outcome | s | +MB |")
        print("|---|---|---|---|---|---|")
        for name, path, target in files:
            if args.only and not any(word.lower() in name.lower() for word in args.only):
                continue
            for loader in ("load_model", "load_weights"):
                done = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker",
                                       path, loader, target], capture_output=True, text=True,
                                      env=env, timeout=args.timeout)
                if done.returncode:
                    result = {"outcome": f"process failed: {done.stderr.strip()[-300:]}",
                              "seconds": float("nan"), "mb": float("nan")}
                else:
                    result = json.loads(done.stdout.strip().splitlines()[-1])
                outcome = result["outcome"].replace("|", "/")
                if len(outcome) > 160:
                    outcome = outcome[:157] + "..."
                print(f"| {name} | {_size(path)} | {loader} | {outcome} | "
                      f"{result['seconds']:.2f} | {result['mb']:.0f} |", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
