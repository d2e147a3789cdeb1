"""What reading a model file costs is bounded by what the file holds: files
built to make a naive reader spend seconds or gigabytes are accepted or
refused within generous bounds (10 s, 150 MB of peak RSS growth, measured
in a fresh process), and the header scanner agrees with ``json`` exactly.
"""
import errno
import hashlib
import json
import os
import random
import socket
import struct
import subprocess
import sys

import numpy as np
import pytest

import cdl
from cdl import io, layers, optimizers
from cdl.saving import format as spec
from cdl.saving import reader, writer

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads /proc and makes sparse files and sockets")

SECONDS, MEGABYTES = 10.0, 150.0


def _model():
    model = cdl.Sequential([layers.Dense(8, activation="relu"), layers.BatchNorm(),
                            layers.Dense(3)], input_shape=(5,), seed=1)
    model.compile(optimizers.Adam(lr=0.01), "cross_entropy")
    rng = np.random.default_rng(0)
    model.fit(rng.standard_normal((16, 5)), rng.integers(0, 3, 16), epochs=1, batch_size=8,
              verbose=0)
    return model


def _forge(path, header_bytes, data):
    body = struct.pack("<8sIQ", io.MAGIC, 1, len(header_bytes)) + header_bytes + data
    path.write_bytes(body + hashlib.sha256(body).digest())
    return path


def _with_key(header, value_text):
    return json.dumps(header).encode()[:-1] + b', "future": ' + value_text + b"}"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The costly files, written once: {name: (path, expected message or None)}."""
    d = tmp_path_factory.mktemp("costs")
    base = d / "base.cdl"
    _model().save(base)
    raw = base.read_bytes()
    length = struct.unpack("<Q", raw[12:20])[0]
    header, data = json.loads(raw[20:20 + length]), raw[20 + length:-32]
    deep = b"[" * 62 + b"0" + b"]" * 62
    out = {
        "deep lists, 500 K items": (_forge(d / "deep.cdl", _with_key(header, b"[" + b",".join(
            [deep] * (2 ** 19 // 63 - 20)) + b"]"), data), None),
        "16 MiB of strings": (_forge(d / "strings.cdl", _with_key(header, b"[" + b",".join(
            [b'"' + b"x" * 29 + b'"'] * (2 ** 19 - 1000)) + b"]"), data), None),
        "260 K distinct keys": (_forge(d / "keys.cdl", _with_key(header, b"{" + b",".join(
            b'"k%d":0' % i for i in range(260_000)) + b"}"), data), None),
        "2 M empty objects": (_forge(d / "objects.cdl", _with_key(
            header, b"[" + b"{}," * 2 * 10 ** 6 + b"0]"), data), "JSON values and keys"),
        "3 M rng integers": (_forge(d / "rng.cdl", json.dumps(dict(header, rng={
            "bit_generator": "MT19937", "state": {"key": [1] * 3 * 10 ** 6, "pos": 0}}))
            .encode(), data), "JSON values and keys"),
        "16 MiB of backslashes": (_forge(d / "escapes.cdl", _with_key(
            header, b'"' + b"\\\\" * (8 * 2 ** 20 - 4096) + b'"'), data), None),
    }
    out.update(_graph_files(d))
    for size in (2 ** 30, 2 ** 34):
        path = d / f"sparse-{size >> 30}.cdl"
        with open(path, "wb") as f:
            f.write(raw[:-32])
            f.truncate(size)
        out[f"{size >> 30} GiB sparse"] = (path, "bytes outside its arrays")
    return out


def _graph_file(path, layer_specs, n_calls, layer_of, params=(), layout=()):
    """A graph model file: one input through ``n_calls`` calls in a row, call
    ``j`` of layer ``layer_of(j)``."""
    graph = {"inputs": [{"name": "x", "shape": [2], "dtype": None}], "layers": layer_specs,
             "nodes": [{"layer": layer_of(j), "inputs": [["input", 0] if j == 0 else
                                                         ["node", j - 1]], "list": False}
                       for j in range(n_calls)],
             "outputs": [["node", n_calls - 1]], "output_names": ["out"]}
    header = {"format": "cdl-model", "format_version": 1, "kind": "model",
              "model": {"class_name": "Model", "name": "m", "dtype": "float32", "seed": 0,
                        "graph": graph},
              "built": True, "param_layout": list(layout), "buffers": [], "compile": None,
              "optimizer": None, "rng": None}
    with open(path, "wb") as f:
        writer.write_file(f, header, [("params", np.zeros(len(params), np.float32))])
    return path


def _graph_files(d):
    """Graphs at and past the bound on calls (``MAX_LAYERS``, a later call of
    a shared layer, which makes a copy of it, counting ``COPY_WEIGHT``)."""
    dense = {"class_name": "Dense", "config": {"name": "d", "units": 2}}
    flat = {"class_name": "Flatten", "config": {"name": "f"}}
    block = {"class_name": "Residual", "config": {"name": "r", "layers": [flat] * 999}}
    at_bound = 1 + (spec.MAX_LAYERS - 1) // spec.COPY_WEIGHT
    layout = [{"layer": "d", "weight": "kernel", "shape": [2, 2]},
              {"layer": "d", "weight": "bias", "shape": [2]}]
    distinct = [{"class_name": "Flatten", "config": {"name": f"f{i}"}} for i in range(28_000)]
    return {
        "graph: 12.5 K calls of one Dense": (_graph_file(
            d / "shared.cdl", [dense], at_bound, lambda j: 0, range(6), layout), None),
        "graph: 28 K distinct layers": (_graph_file(
            d / "distinct.cdl", distinct, len(distinct), lambda j: j), None),
        "graph: 50 K calls of one layer": (_graph_file(
            d / "calls.cdl", [flat], spec.MAX_LAYERS, lambda j: 0),
            "calls that cost more than 50,000 layers"),
        "graph: a block of 1,000 layers called 60 times": (_graph_file(
            d / "block.cdl", [block], 60, lambda j: 0), "calls that cost more than"),
    }


_MEASURE = """
import json, sys, time
import cdl
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
cdl.load_model(sys.argv[1])
results = []
for path in sys.argv[2:]:
    open("/proc/self/clear_refs", "w").write("5")
    before, start = status("VmRSS"), time.perf_counter()
    try:
        cdl.load_model(path)
        outcome = ""
    except Exception as err:
        outcome = type(err).__name__ + ": " + str(err)
    results.append([outcome, time.perf_counter() - start, (status("VmHWM") - before) / 1e6])
print(json.dumps(results))
"""


def test_costly_files_are_read_within_bounds(files, tmp_path):
    """One process loads each file in turn (the peak is reset before each)."""
    names = list(files)
    source = os.path.dirname(os.path.dirname(os.path.abspath(cdl.__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [source, os.environ.get("PYTHONPATH")]))}
    base = files[names[0]][0].parent / "base.cdl"
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(base)]
                          + [str(files[name][0]) for name in names], capture_output=True,
                          text=True, timeout=600, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    problems = []
    for name, (outcome, seconds, megabytes) in zip(names, json.loads(done.stdout)):
        expected = files[name][1]
        if expected is None and outcome:
            problems.append(f"{name}: refused: {outcome}")
        if expected is not None and not (outcome.startswith("ModelFileError")
                                         and expected in outcome):
            problems.append(f"{name}: expected a ModelFileError with {expected!r}: {outcome}")
        if seconds > SECONDS or megabytes > MEGABYTES:
            problems.append(f"{name}: {seconds:.2f} s, +{megabytes:.0f} MB")
    assert not problems, "\n".join(problems)


def _random_json(rng, depth=0):
    choice = rng.random()
    if depth > 5 or choice < 0.3:
        return rng.choice([0, 12345, -7, 1.5, True, None, "".join(
            rng.choice('ab"\\[]{},:1') for _ in range(rng.randint(0, 6)))])
    if choice < 0.65:
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {"".join(rng.choice('k"\\[:,') for _ in range(rng.randint(0, 3))) + str(i):
            _random_json(rng, depth + 1) for i in range(rng.randint(0, 4))}


def _truth(value, depth=1):
    """(object members, deepest nesting) of a parsed JSON value."""
    if isinstance(value, (list, dict)):
        children = list(value.values()) if isinstance(value, dict) else value
        found = [_truth(child, depth + 1) for child in children]
        members = (len(value) if isinstance(value, dict) else 0) + sum(m for m, _ in found)
        return members, max([depth] + [d for _, d in found])
    return 0, depth - 1


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 2 ** 18])
def test_the_header_scanner_agrees_with_json_across_chunk_boundaries(chunk, monkeypatch):
    """Strings with quotes, backslashes and brackets inside, split anywhere
    between chunks: members, depth and pairing are exact."""
    monkeypatch.setattr(reader, "SCAN_CHUNK", chunk)
    rng = random.Random(chunk)
    for _ in range(300):
        value = [_random_json(rng)]
        text = json.dumps(value).encode()
        items, members, depth, digits, paired = reader.scan_json(bytearray(text))
        assert (members, depth, paired) == (*_truth(value), True), text
        assert items >= members


def test_a_repeated_key_is_named_and_a_non_ascii_header_refused(tmp_path):
    path = tmp_path / "m.cdl"
    _model().save(path)
    raw = path.read_bytes()
    length = struct.unpack("<Q", raw[12:20])[0]
    text, data = raw[20:20 + length].rstrip(), raw[20 + length:-32]
    _forge(path, text[:-1] + b', "rng": null}', data)
    with pytest.raises(io.ModelFileError, match="repeats the key 'rng'"):
        cdl.load_model(path)
    _forge(path, text[:-1] + ', "note": "é"}'.encode(), data)
    with pytest.raises(io.ModelFileError, match="non-ASCII character"):
        cdl.load_model(path)


def test_paths_that_are_not_files_are_refused_with_the_os_error_chained(tmp_path):
    loop = tmp_path / "loop.cdl"
    os.symlink(loop, loop)
    with pytest.raises(io.ModelFileError, match="symbolic link loop") as info:
        cdl.load_model(loop)
    assert isinstance(info.value.__cause__, OSError) and info.value.__cause__.errno == errno.ELOOP
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "model.sock"))
    try:
        with pytest.raises(io.ModelFileError, match="unix socket"):
            _model().load_weights(tmp_path / "model.sock")
    finally:
        server.close()
    with pytest.raises(FileNotFoundError):   # a missing file is not a bad file
        cdl.load_model(tmp_path / "missing.cdl")


def test_a_valid_file_loads_bit_identically_after_streaming(tmp_path, monkeypatch):
    """Arrays read chunk by chunk (chunks smaller than the arrays) are the saved ones."""
    monkeypatch.setattr(reader, "CHUNK", 7)
    model = _model()
    path = tmp_path / "m.cdl"
    model.save(path)
    loaded = cdl.load_model(path)
    assert np.array_equal(loaded.param_buffer, model.param_buffer)
    for name in model.optimizer.state:
        assert np.array_equal(loaded.optimizer.state[name], model.optimizer.state[name])
    assert loaded.rng.bit_generator.state == model.rng.bit_generator.state
