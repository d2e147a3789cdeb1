"""The downloaded data sets: fetching, verifying, caching and parsing.

A loopback HTTP server started here (127.0.0.1, a port the OS picks) serves
small files written here in the real formats (IDX, CIFAR-10's binary tar,
the aclImdb tar); the pinned hashes are replaced by theirs through
``cdl.datasets._download.REGISTRY``. No test touches the internet.
"""
import gzip
import hashlib
import http.server
import io
import multiprocessing
import os
import socket
import tarfile
import threading

import numpy as np
import pytest

from cdl import datasets
from cdl.datasets import _download

pytest.importorskip("pooch", reason="downloads need pooch (pip install 'cdl[datasets]')")

N_TRAIN, N_TEST = 6, 4
CIFAR_PER_BATCH = 3


# --- files in the real formats ----------------------------------------------------

def idx_bytes(array):
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        d.to_bytes(4, "big") for d in array.shape)
    return gzip.compress(header + array.tobytes(), mtime=0)


def tar_gz(members):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def mnist_files(seed):
    rng = np.random.default_rng(seed)
    arrays = {
        "train": (rng.integers(0, 256, (N_TRAIN, 28, 28)), rng.integers(0, 10, N_TRAIN)),
        "test": (rng.integers(0, 256, (N_TEST, 28, 28)), rng.integers(0, 10, N_TEST)),
    }
    files = {}
    for kind, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = arrays[kind]
        files[f"{prefix}-images-idx3-ubyte.gz"] = idx_bytes(images)
        files[f"{prefix}-labels-idx1-ubyte.gz"] = idx_bytes(labels)
    return files, arrays


def cifar_file(seed, per_batch=CIFAR_PER_BATCH, drop=None, bad_size=None):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (6 * per_batch, 32, 32, 3)).astype(np.uint8)
    labels = rng.integers(0, 10, 6 * per_batch).astype(np.uint8)
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    members = [("cifar-10-batches-bin/batches.meta.txt", b"airplane\nautomobile\n")]
    for b, name in enumerate(names):
        part = slice(b * per_batch, (b + 1) * per_batch)
        planes = images[part].transpose(0, 3, 1, 2).reshape(per_batch, -1)  # R, G, B planes
        records = np.concatenate([labels[part, None], planes], axis=1)
        data = records.tobytes()
        if name == bad_size:
            data = data[:-1]
        if name != drop:
            members.append((f"cifar-10-batches-bin/{name}", data))
    members.append(("cifar-10-batches-bin/readme.html", b"<html></html>"))
    split = 5 * per_batch
    return tar_gz(members), ((images[:split], labels[:split]), (images[split:], labels[split:]))


IMDB_REVIEWS = {
    ("train", "pos"): ["A great film, great acting!", "Great fun.<br /><br />Great."],
    ("train", "neg"): ["A bad film.", "Bad, bad acting; a bad plot"],
    ("test", "pos"): ["Great plot", "a wonderful film"],
    ("test", "neg"): ["bad", "Bad film"],
}


def imdb_file(reviews=IMDB_REVIEWS):
    members = [("aclImdb/README", b"readme"), ("aclImdb/imdb.vocab", b"a\nthe\n"),
               ("aclImdb/train/unsup/0_0.txt", b"not labelled")]
    for (split, label), texts in reviews.items():
        for i, text in enumerate(texts):
            members.append((f"aclImdb/{split}/{label}/{i}_{7 if label == 'pos' else 2}.txt",
                            text.encode("utf-8")))
    return tar_gz(members)


# --- the loopback server ------------------------------------------------------------

class Server:
    """Serves ``files`` ({"<data set>/<file>": bytes}) on 127.0.0.1.

    ``mode``: "ok"; "truncate" sends half of each file after announcing its
    whole length, then closes the connection; "truncate_once" does that for
    the first request only.
    """

    def __init__(self, files):
        self.files = dict(files)
        self.mode = "ok"
        self.requests = []
        self.truncated = set()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                key = self.path.lstrip("/")
                server.requests.append(key)
                data = server.files.get(key)
                if data is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                cut = server.mode == "truncate" or (
                    server.mode == "truncate_once" and not server.truncated)
                if cut:
                    server.truncated.add(key)
                    self.wfile.write(data[:len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        if self.thread is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join()
            self.thread = None


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def pin(monkeypatch, name, files, counts):
    """Replace the pinned files of data set ``name`` by ``files``' hashes."""
    entry = dict(_download.REGISTRY[name])
    entry["files"] = {fname: (sha256(data), len(data)) for fname, data in files.items()}
    entry["counts"] = counts
    monkeypatch.setitem(_download.REGISTRY, name, entry)


@pytest.fixture
def served(monkeypatch, tmp_path):
    """A server holding small MNIST, Fashion-MNIST, CIFAR-10 and IMDB files,
    their hashes pinned; yields (server, expected arrays, cache folder)."""
    monkeypatch.delenv("CDL_DATA", raising=False)
    monkeypatch.delenv("CDL_DATASETS_URL", raising=False)
    mnist, mnist_arrays = mnist_files(0)
    fashion, fashion_arrays = mnist_files(1)
    cifar, cifar_arrays = cifar_file(2)
    imdb = imdb_file()
    pin(monkeypatch, "mnist", mnist, {"train": N_TRAIN, "test": N_TEST})
    pin(monkeypatch, "fashion_mnist", fashion, {"train": N_TRAIN, "test": N_TEST})
    pin(monkeypatch, "cifar10", {"cifar-10-binary.tar.gz": cifar}, {"batch": CIFAR_PER_BATCH})
    pin(monkeypatch, "imdb", {"aclImdb_v1.tar.gz": imdb}, {"per_label": 2})
    files = {f"mnist/{k}": v for k, v in mnist.items()}
    files.update({f"fashion_mnist/{k}": v for k, v in fashion.items()})
    files["cifar10/cifar-10-binary.tar.gz"] = cifar
    files["imdb/aclImdb_v1.tar.gz"] = imdb
    server = Server(files)
    expected = {"mnist": mnist_arrays, "fashion_mnist": fashion_arrays, "cifar10": cifar_arrays}
    yield server, expected, tmp_path / "cache"
    server.stop()


def check_idx(result, arrays):
    (x_train, y_train), (x_test, y_test) = result
    for (x, y), kind in (((x_train, y_train), "train"), ((x_test, y_test), "test")):
        images, labels = arrays[kind]
        assert x.dtype == np.uint8 and y.dtype == np.int64
        np.testing.assert_array_equal(x, images)
        np.testing.assert_array_equal(y, labels)


def cache_listing(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


# --- first download, cache, settings --------------------------------------------------

def test_first_download_then_cache_hit_with_the_server_stopped(served):
    server, expected, cache = served
    check_idx(datasets.load_mnist(data_home=cache, mirror=server.url), expected["mnist"])
    assert sorted(server.requests) == sorted(f"mnist/{f}" for f in _download.REGISTRY["mnist"]
                                             ["files"])
    assert cache_listing(cache / "mnist") == sorted(_download.REGISTRY["mnist"]["files"])
    server.stop()
    check_idx(datasets.load_mnist(data_home=cache, mirror=server.url), expected["mnist"])
    check_idx(datasets.load_mnist(data_home=cache, download=False), expected["mnist"])
    x, y = datasets.load_mnist(kind="test", data_home=cache, download=False)
    np.testing.assert_array_equal(x, expected["mnist"]["test"][0])


def test_environment_variables_choose_the_cache_and_the_mirror(served, monkeypatch):
    server, expected, cache = served
    monkeypatch.setenv("CDL_DATA", str(cache))
    monkeypatch.setenv("CDL_DATASETS_URL", server.url + "/")
    check_idx(datasets.load_fashion_mnist(), expected["fashion_mnist"])
    assert (cache / "fashion_mnist" / "train-images-idx3-ubyte.gz").is_file()
    assert all(r.startswith("fashion_mnist/") for r in server.requests)


def test_cifar10_is_read_channels_last_from_the_binary_archive(served):
    server, expected, cache = served
    (x_train, y_train), (x_test, y_test) = datasets.load_cifar10(data_home=cache,
                                                                 mirror=server.url)
    (images, labels), (test_images, test_labels) = expected["cifar10"]
    assert x_train.shape == (5 * CIFAR_PER_BATCH, 32, 32, 3) and x_train.dtype == np.uint8
    assert y_train.dtype == np.int64 and y_train.shape == (5 * CIFAR_PER_BATCH,)
    np.testing.assert_array_equal(x_train, images)
    np.testing.assert_array_equal(y_train, labels)
    np.testing.assert_array_equal(x_test, test_images)
    np.testing.assert_array_equal(y_test, test_labels)
    assert cache_listing(cache / "cifar10") == ["cifar-10-binary.tar.gz"]


def test_imdb_word_ids_follow_keras_conventions(served):
    server, _, cache = served
    kwargs = dict(data_home=cache, mirror=server.url)
    index = datasets.load_imdb_word_index(**kwargs)
    # Training counts: great 4, bad 4, a 3, film 2, acting 2, fun 1, plot 1;
    # ties go to the later word first.
    assert [w for w, _ in sorted(index.items(), key=lambda item: item[1])] == [
        "great", "bad", "a", "film", "acting", "plot", "fun"]
    ids = {word: rank + 3 for word, rank in index.items()}
    (x_train, y_train), (x_test, y_test) = datasets.load_imdb(seed=0, **kwargs)
    assert x_train.dtype == object and y_train.dtype == np.int64
    assert all(x.dtype == np.int64 and x[0] == 1 for x in x_train)
    words = {"pos": [["great", "plot"], ["a", "wonderful", "film"]], "neg": [["bad"],
                                                                          ["bad", "film"]]}
    got = sorted((int(y), x.tolist()) for x, y in zip(x_test, y_test))
    want = sorted([(0, [1] + [ids[w] for w in words["neg"][0]]),
                   (0, [1] + [ids[w] for w in words["neg"][1]]),
                   (1, [1] + [ids[w] for w in words["pos"][0]]),
                   # "wonderful" was never seen in training: out of vocabulary.
                   (1, [1, ids["a"], 2, ids["film"]])])
    assert got == want
    train = {tuple(x.tolist()): int(y) for x, y in zip(x_train, y_train)}
    great, bad = ids["great"], ids["bad"]
    assert train[(1, great, ids["fun"], great)] == 1
    assert train[(1, bad, bad, ids["acting"], ids["a"], bad, ids["plot"])] == 0
    # The same seed gives the same order; another seed shuffles differently.
    (again, y_again), _ = datasets.load_imdb(seed=0, **kwargs)
    assert [x.tolist() for x in again] == [x.tolist() for x in x_train]
    # num_words keeps the ids below it; skip_top sends the lowest to oov_char.
    (cut, _), _ = datasets.load_imdb(num_words=5, skip_top=4, seed=0, **kwargs)
    assert all(set(x[1:].tolist()) <= {2, 4} for x in cut)
    (dropped, _), _ = datasets.load_imdb(num_words=5, oov_char=None, start_char=None, seed=0,
                                         **kwargs)
    assert all(set(x.tolist()) <= {3, 4} for x in dropped)
    (short, y_short), _ = datasets.load_imdb(maxlen=4, seed=0, **kwargs)
    assert len(short) == 2 and all(len(x) <= 4 for x in short) and len(y_short) == 2


def test_bad_options_are_refused_before_any_download(served):
    server, _, cache = served
    with pytest.raises((TypeError, ValueError), match="num_words"):
        datasets.load_imdb(num_words="many", data_home=cache, mirror=server.url)
    with pytest.raises(TypeError, match="download"):
        datasets.load_mnist(data_home=cache, mirror=server.url, download="no")
    with pytest.raises(ValueError, match="mirror"):
        datasets.load_cifar10(data_home=cache, mirror="file:///tmp")
    with pytest.raises(ValueError, match="data_home"):
        datasets.load_mnist(cache, data_home=cache)
    assert server.requests == []


# --- failures ----------------------------------------------------------------------------

def test_hash_mismatch_raises_and_keeps_nothing(served):
    server, _, cache = served
    server.files["cifar10/cifar-10-binary.tar.gz"] = cifar_file(99)[0]
    with pytest.raises(ValueError, match="SHA-256") as info:
        datasets.load_cifar10(data_home=cache, mirror=server.url)
    assert f"{server.url}/cifar10/cifar-10-binary.tar.gz" in str(info.value)
    assert cache_listing(cache / "cifar10") == []


def test_a_damaged_cached_file_is_downloaded_again(served):
    server, expected, cache = served
    datasets.load_mnist(data_home=cache, mirror=server.url)
    target = cache / "mnist" / "train-labels-idx1-ubyte.gz"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(FileNotFoundError, match="damaged"):
        datasets.load_mnist(data_home=cache, download=False)
    before = len(server.requests)
    check_idx(datasets.load_mnist(data_home=cache, mirror=server.url), expected["mnist"])
    assert server.requests[before:] == ["mnist/train-labels-idx1-ubyte.gz"]


def test_a_truncated_transfer_raises_and_keeps_nothing(served):
    server, _, cache = served
    server.mode = "truncate"
    with pytest.raises(ConnectionError, match="IncompleteRead|Connection broken") as info:
        datasets.load_imdb(data_home=cache, mirror=server.url)
    assert f"{server.url}/imdb/aclImdb_v1.tar.gz" in str(info.value)
    assert cache_listing(cache / "imdb") == []


def test_an_interrupted_download_is_restarted(served):
    server, expected, cache = served
    server.mode = "truncate_once"
    with pytest.raises(ConnectionError):
        datasets.load_fashion_mnist(data_home=cache, mirror=server.url)
    # A killed download may also leave a partial file under the final name.
    folder = cache / "fashion_mnist"
    folder.mkdir(parents=True, exist_ok=True)
    data = server.files["fashion_mnist/t10k-images-idx3-ubyte.gz"]
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(data[:100])
    check_idx(datasets.load_fashion_mnist(data_home=cache, mirror=server.url),
              expected["fashion_mnist"])
    assert cache_listing(folder) == sorted(_download.REGISTRY["fashion_mnist"]["files"])


def test_server_down_gives_a_clear_error(served):
    server, _, cache = served
    server.stop()
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(ConnectionError) as info:
        datasets.load_mnist(data_home=cache, mirror=url)
    message = str(info.value)
    assert f"{url}/mnist/" in message
    assert str(cache / "mnist") in message
    assert "CDL_DATASETS_URL" in message and "by hand" in message
    assert cache_listing(cache / "mnist") == []


def test_missing_file_with_download_false(served):
    server, _, cache = served
    with pytest.raises(FileNotFoundError, match="not in the cache") as info:
        datasets.load_cifar10(data_home=cache, download=False)
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz" in str(info.value)
    assert server.requests == []


def test_without_pooch_a_download_names_the_extra(served, monkeypatch):
    server, _, cache = served
    monkeypatch.setitem(__import__("sys").modules, "pooch", None)
    with pytest.raises(ImportError, match=r"pip install 'cdl\[datasets\]'"):
        datasets.load_mnist(data_home=cache, mirror=server.url)


def test_without_pooch_cached_files_still_load(served, monkeypatch):
    server, expected, cache = served
    datasets.load_mnist(data_home=cache, mirror=server.url)
    monkeypatch.setitem(__import__("sys").modules, "pooch", None)
    server.stop()
    check_idx(datasets.load_mnist(data_home=cache, mirror=server.url), expected["mnist"])


@pytest.mark.parametrize("damage", ["drop", "size"])
def test_a_cifar_archive_without_the_right_batches_is_refused(served, monkeypatch, damage):
    server, _, cache = served
    data = cifar_file(3, drop="data_batch_4.bin" if damage == "drop" else None,
                      bad_size="test_batch.bin" if damage == "size" else None)[0]
    pin(monkeypatch, "cifar10", {"cifar-10-binary.tar.gz": data}, {"batch": CIFAR_PER_BATCH})
    server.files["cifar10/cifar-10-binary.tar.gz"] = data
    match = "lacks .*data_batch_4" if damage == "drop" else "test_batch.bin should be a file"
    with pytest.raises(ValueError, match=match):
        datasets.load_cifar10(data_home=cache, mirror=server.url)


def test_an_imdb_archive_with_missing_reviews_is_refused(served, monkeypatch):
    server, _, cache = served
    reviews = dict(IMDB_REVIEWS)
    reviews["test", "neg"] = ["bad"]
    data = imdb_file(reviews)
    pin(monkeypatch, "imdb", {"aclImdb_v1.tar.gz": data}, {"per_label": 2})
    server.files["imdb/aclImdb_v1.tar.gz"] = data
    with pytest.raises(ValueError, match="1 test/neg reviews, expected 2"):
        datasets.load_imdb(data_home=cache, mirror=server.url)


# --- two processes at once ---------------------------------------------------------------

def _load_in_child(args):
    cache, url, registry = args
    from cdl import datasets as child_datasets
    from cdl.datasets import _download as child_download

    child_download.REGISTRY.update(registry)
    (x_train, y_train), (x_test, y_test) = child_datasets.load_mnist(data_home=cache, mirror=url)
    return x_train.tobytes() + y_train.tobytes() + x_test.tobytes() + y_test.tobytes()


def test_two_processes_loading_at_once_both_get_the_data(served):
    server, expected, cache = served
    (images, labels), (test_images, test_labels) = (expected["mnist"]["train"],
                                                     expected["mnist"]["test"])
    want = (images.astype(np.uint8).tobytes() + labels.astype(np.int64).tobytes()
            + test_images.astype(np.uint8).tobytes() + test_labels.astype(np.int64).tobytes())
    registry = {"mnist": _download.REGISTRY["mnist"]}
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.map(_load_in_child, [(str(cache), server.url, registry)] * 2)
    assert results == [want, want]
    assert cache_listing(cache / "mnist") == sorted(_download.REGISTRY["mnist"]["files"])
