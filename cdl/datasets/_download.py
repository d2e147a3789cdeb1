"""Fetching the standard data sets' files into a local cache, verified.

Every file's SHA-256 and size are pinned in :data:`REGISTRY`. A file is
downloaded with ``pooch`` (the optional extra ``datasets``): into a
temporary file in the cache folder, hashed, and only then renamed to its
final name, so that a killed or failed download never leaves a file that
looks complete. A cached file is hashed again on every load; one whose
hash is wrong (damaged, cut short, tampered with) is downloaded again.

Where the files are looked for:

* the cache folder: ``data_home`` if given, else the environment variable
  ``CDL_DATA``, else ``~/.cache/cdl``; each data set in its own sub-folder
  (``<cache>/mnist/train-images-idx3-ubyte.gz``, ...);
* the server: ``mirror`` if given, else the environment variable
  ``CDL_DATASETS_URL``, else each data set's official address. A mirror
  holds the files under the data set's name:
  ``<mirror>/<data set>/<file name>``, the layout of the cache folder.

:data:`REGISTRY` is also the hook the tests use: they replace its entries
(with ``monkeypatch.setitem``) by small files of their own, with those
files' hashes. It is not a public API.
"""
import hashlib
import os

__all__ = []

#: For each data set: its official base URL, and for each file the SHA-256
#: of its content and its size in bytes. The values were taken from
#: TensorFlow Datasets' recorded checksums
#: (tensorflow_datasets/url_checksums/<name>.txt in
#: https://github.com/tensorflow/datasets), which list the URL, size and
#: SHA-256 of each file as downloaded from these same addresses.
REGISTRY = {
    # MNIST (LeCun, Cortes and Burges), the copy on Google's CVDF mirror that
    # TensorFlow Datasets uses (yann.lecun.com no longer serves the files).
    # Hashes: tensorflow_datasets/url_checksums/mnist.txt.
    "mnist": {
        "url": "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "files": {
            "train-images-idx3-ubyte.gz": (
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422),
            "train-labels-idx1-ubyte.gz": (
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881),
            "t10k-images-idx3-ubyte.gz": (
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877),
            "t10k-labels-idx1-ubyte.gz": (
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542),
        },
        "counts": {"train": 60000, "test": 10000},
    },
    # Fashion-MNIST (Zalando Research), from the S3 bucket its README links.
    # That endpoint serves plain HTTP only; the pinned hash is what makes the
    # transfer safe. Hashes: tensorflow_datasets/url_checksums/fashion_mnist.txt.
    "fashion_mnist": {
        "url": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "files": {
            "train-images-idx3-ubyte.gz": (
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", 26421880),
            "train-labels-idx1-ubyte.gz": (
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", 29515),
            "t10k-images-idx3-ubyte.gz": (
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", 4422102),
            "t10k-labels-idx1-ubyte.gz": (
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", 5148),
        },
        "counts": {"train": 60000, "test": 10000},
    },
    # CIFAR-10 (Krizhevsky), the binary version (never the Python pickles).
    # Hash: tensorflow_datasets/url_checksums/cifar10.txt.
    "cifar10": {
        "url": "https://www.cs.toronto.edu/~kriz/",
        "files": {
            "cifar-10-binary.tar.gz": (
                "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd", 170052171),
        },
        # Records per batch file: 5 training batches and one test batch.
        "counts": {"batch": 10000},
    },
    # The Large Movie Review Dataset (Maas et al., 2011), plain-text release.
    # Hash: tensorflow_datasets/url_checksums/imdb_reviews.txt (recorded from
    # the http:// address; the https:// one serves the same file).
    "imdb": {
        "url": "https://ai.stanford.edu/~amaas/data/sentiment/",
        "files": {
            "aclImdb_v1.tar.gz": (
                "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe", 84125825),
        },
        # Reviews per split and label (pos and neg).
        "counts": {"per_label": 12500},
    },
}

_INSTALL_HINT = "pip install 'cdl[datasets]'"


def data_home(data_home=None):
    """The cache folder: ``data_home``, else ``$CDL_DATA``, else ``~/.cache/cdl``."""
    if data_home is None:
        data_home = os.environ.get("CDL_DATA") or os.path.join("~", ".cache", "cdl")
    if not isinstance(data_home, (str, os.PathLike)):
        raise TypeError(f"data_home must be a path (str or os.PathLike) or None, got "
                        f"{type(data_home).__name__}")
    return os.path.abspath(os.path.expanduser(os.fspath(data_home)))


def _base_url(name, mirror):
    if mirror is None:
        mirror = os.environ.get("CDL_DATASETS_URL") or None
    if mirror is None:
        return REGISTRY[name]["url"]
    if not isinstance(mirror, str):
        raise TypeError(f"mirror must be a URL (str) or None, got {type(mirror).__name__}")
    if not mirror.startswith(("http://", "https://", "ftp://")):
        raise ValueError(f"mirror must be an http://, https:// or ftp:// URL, got {mirror!r}")
    return mirror.rstrip("/") + "/" + name + "/"


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _by_hand(name, filename, url, target, sha, size):
    return (f"To install it by hand, download {url} and put it at {target} "
            f"({size} bytes, SHA-256 {sha}); or serve the data sets from a mirror "
            f"(mirror=<base URL> or the environment variable CDL_DATASETS_URL, the file "
            f"at <base URL>/{name}/{filename}), or choose another cache folder "
            f"(data_home=... or CDL_DATA).")


def fetch(name, filename, data_home_=None, download=True, mirror=None):
    """Return the path of ``filename`` of data set ``name`` in the cache,
    downloading it first if it is missing or its hash is wrong.

    Raises
    ------
    FileNotFoundError
        If the file is not in the cache (or is damaged) and ``download`` is
        False.
    ImportError
        If a download is needed and ``pooch`` is not installed.
    ConnectionError
        If the download fails (no network, server down or refusing, the
        transfer cut short), naming the URL and how to install the file by
        hand.
    ValueError
        If the downloaded file's hash is not the pinned one (nothing is kept).
    """
    from cdl._validation import check_bool

    download = check_bool(download, "download")
    sha, size = REGISTRY[name]["files"][filename]
    folder = os.path.join(data_home(data_home_), name)
    target = os.path.join(folder, filename)
    url = _base_url(name, mirror) + filename
    if os.path.isfile(target) and os.path.getsize(target) == size and _sha256(target) == sha:
        return target
    if not download:
        state = "is damaged (its SHA-256 is not the pinned one)" if os.path.exists(target) \
            else "is not in the cache"
        raise FileNotFoundError(f"{filename} of the {name} data set {state} and download=False. "
                                + _by_hand(name, filename, url, target, sha, size))
    try:
        import pooch
    except ImportError:
        raise ImportError(
            f"downloading the {name} data set needs the pooch package: {_INSTALL_HINT} "
            f"(or pip install pooch). "
            + _by_hand(name, filename, url, target, sha, size)) from None
    import requests

    progressbar = False
    try:
        import sys

        import tqdm  # noqa: F401 -- pooch draws its progress bar with tqdm
        progressbar = sys.stderr is not None and sys.stderr.isatty()
    except ImportError:
        pass
    os.makedirs(folder, exist_ok=True)
    try:
        # pooch writes to a temporary file in `folder`, checks the hash and
        # only then renames it over `target`: a failure leaves no new file
        # there, and a damaged copy is replaced in one step (not deleted
        # first, which would pull the file from under another process that
        # has just put a good copy in place).
        path = pooch.retrieve(url, known_hash=f"sha256:{sha}", fname=filename, path=folder,
                              progressbar=progressbar)
    except requests.exceptions.RequestException as err:
        raise ConnectionError(
            f"could not download {url} ({type(err).__name__}: {err}). "
            + _by_hand(name, filename, url, target, sha, size)) from None
    except ValueError as err:
        if "hash" not in str(err).lower():
            raise
        raise ValueError(
            f"the file downloaded from {url} is not the expected one: its SHA-256 differs "
            f"from the pinned {sha} (a damaged transfer, or the server serves another "
            f"file); nothing was kept. " + _by_hand(name, filename, url, target, sha, size)
        ) from None
    if os.path.getsize(path) != size:  # pragma: no cover - the hash already pins the size
        raise ValueError(f"{path}: {os.path.getsize(path)} bytes, expected {size}")
    return path
