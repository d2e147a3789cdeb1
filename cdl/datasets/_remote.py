"""The standard data sets, downloaded on first use: MNIST, Fashion-MNIST,
CIFAR-10 and IMDB reviews.

The files come through :mod:`cdl.datasets._download` (pinned SHA-256,
cache, mirror); parsing is cdl's own bounded code: the IDX reader, the
binary (never the pickled) CIFAR-10 release and the plain-text IMDB
release, both read member by member from their tar archives in memory,
each member's name and size checked before it is read.
"""
import re
import tarfile
from collections import Counter

import numpy as np

from cdl._validation import check_number
from cdl.datasets._download import REGISTRY, fetch
from cdl.datasets._idx import load_idx_dataset

__all__ = ["load_fashion_mnist", "load_cifar10", "load_imdb", "load_imdb_word_index"]

def load_fashion_mnist(data_home=None, download=True, mirror=None):
    """Load Fashion-MNIST, downloading it on first use.

    70,000 grayscale 28x28 images of clothes in 10 classes (0 T-shirt/top,
    1 trouser, 2 pullover, 3 dress, 4 coat, 5 sandal, 6 shirt, 7 sneaker,
    8 bag, 9 ankle boot): 60,000 for training, 10,000 for testing. The four
    IDX files (30 MB) are fetched once, checked against pinned SHA-256
    hashes and kept in the cache folder; see :func:`load_mnist` for the
    ``data_home``, ``download`` and ``mirror`` settings, and the "Data sets"
    page of the documentation for the sources and licences.

    Parameters
    ----------
    data_home : str or os.PathLike, optional
        The cache folder; default ``$CDL_DATA``, else ``~/.cache/cdl``.
    download : bool, default True
        Download missing (or damaged) files; False raises
        ``FileNotFoundError`` instead.
    mirror : str, optional
        Base URL of a mirror holding ``<mirror>/fashion_mnist/<file>``;
        default ``$CDL_DATASETS_URL``, else the official address.

    Returns
    -------
    (x_train, y_train), (x_test, y_test)
        Images as uint8 arrays of shape (n, 28, 28), labels as int64
        arrays of shape (n,), as Keras' ``fashion_mnist.load_data()``.

    Raises
    ------
    ImportError
        If a download is needed and ``pooch`` is not installed
        (``pip install 'cdl[datasets]'``).
    ConnectionError
        If a download fails, naming the URL and where to put the file by
        hand.
    ValueError
        If a downloaded file's hash is not the pinned one.

    Notes
    -----
    Data: H. Xiao, K. Rasul and R. Vollgraf (2017), Fashion-MNIST,
    https://github.com/zalandoresearch/fashion-mnist, MIT License.

    Examples
    --------
    >>> from cdl import datasets
    >>> (x_train, y_train), (x_test, y_test) = datasets.load_fashion_mnist()  # doctest: +SKIP
    >>> x_train.shape, x_train.dtype, y_train.dtype                          # doctest: +SKIP
    ((60000, 28, 28), dtype('uint8'), dtype('int64'))
    """
    return load_idx_dataset("fashion_mnist", data_home, download, mirror)


# --- CIFAR-10 ------------------------------------------------------------------

_CIFAR_DIR = "cifar-10-batches-bin/"
_CIFAR_TRAIN = tuple(f"{_CIFAR_DIR}data_batch_{i}.bin" for i in range(1, 6))
_CIFAR_TEST = f"{_CIFAR_DIR}test_batch.bin"
_CIFAR_RECORD = 1 + 3 * 32 * 32


def _read_member(archive, member, size, path):
    f = archive.extractfile(member)
    if f is None:  # pragma: no cover - isreg() was checked
        raise ValueError(f"{path}: cannot read the archive member {member.name}")
    data = f.read(size + 1)
    if len(data) != size:
        raise ValueError(f"{path}: the archive member {member.name} holds {len(data)} bytes, "
                         f"expected {size}")
    return data


def _cifar_batches(path):
    per_batch = REGISTRY["cifar10"]["counts"]["batch"]
    size = per_batch * _CIFAR_RECORD
    wanted = set(_CIFAR_TRAIN) | {_CIFAR_TEST}
    found = {}
    try:
        # Stream mode: one pass through the gzip stream, nothing written to disk.
        with tarfile.open(path, mode="r|gz") as archive:
            for member in archive:
                if member.name not in wanted:
                    continue
                if member.name in found:
                    raise ValueError(f"{path}: the archive holds {member.name} twice")
                if not member.isreg() or member.size != size:
                    raise ValueError(
                        f"{path}: the archive member {member.name} should be a file of "
                        f"{size} bytes ({per_batch} records of {_CIFAR_RECORD}), found "
                        f"{'a file' if member.isreg() else 'a non-file'} of {member.size} bytes")
                found[member.name] = _read_member(archive, member, size, path)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ValueError(f"{path}: not a readable CIFAR-10 binary archive ({err})") from None
    missing = sorted(wanted - set(found))
    if missing:
        raise ValueError(f"{path}: the archive lacks {', '.join(missing)}")
    return found


def _cifar_records(raw, name, path):
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, _CIFAR_RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.size and labels.max() > 9:
        raise ValueError(f"{path}: {name} holds label {int(labels.max())}; CIFAR-10's are 0..9")
    # Each record stores the red, green and blue planes of a 32x32 image in
    # turn; channels-last puts the colour axis at the end.
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def load_cifar10(data_home=None, download=True, mirror=None):
    """Load CIFAR-10, downloading it on first use.

    60,000 colour 32x32 images in 10 classes (0 airplane, 1 automobile,
    2 bird, 3 cat, 4 deer, 5 dog, 6 frog, 7 horse, 8 ship, 9 truck): 50,000
    for training (the five training batches in order), 10,000 for testing.
    The binary release ``cifar-10-binary.tar.gz`` (170 MB) is fetched once,
    checked against its pinned SHA-256 and kept in the cache folder; the
    batches are read from it in memory (the Python release's pickles are
    never used). See :func:`load_mnist` for the settings.

    Parameters
    ----------
    data_home : str or os.PathLike, optional
        The cache folder; default ``$CDL_DATA``, else ``~/.cache/cdl``.
    download : bool, default True
        Download the file if missing (or damaged); False raises
        ``FileNotFoundError`` instead.
    mirror : str, optional
        Base URL of a mirror holding ``<mirror>/cifar10/cifar-10-binary.tar.gz``;
        default ``$CDL_DATASETS_URL``, else the official address.

    Returns
    -------
    (x_train, y_train), (x_test, y_test)
        Images as uint8 arrays of shape (n, 32, 32, 3) (channels last),
        labels as int64 arrays of shape (n,). Keras' labels have shape
        (n, 1); cdl's losses take them 1-D.

    Raises
    ------
    ImportError, ConnectionError, ValueError
        As :func:`load_fashion_mnist`; ``ValueError`` also for an archive
        whose members are not the expected batch files of the expected
        sizes.

    Notes
    -----
    Data: A. Krizhevsky (2009), Learning Multiple Layers of Features from
    Tiny Images, https://www.cs.toronto.edu/~kriz/cifar.html; no licence is
    stated, the page asks that the report be cited.

    Examples
    --------
    >>> from cdl import datasets
    >>> (x_train, y_train), (x_test, y_test) = datasets.load_cifar10()  # doctest: +SKIP
    >>> x_train.shape, x_test.shape                                     # doctest: +SKIP
    ((50000, 32, 32, 3), (10000, 32, 32, 3))
    """
    path = fetch("cifar10", "cifar-10-binary.tar.gz", data_home, download, mirror)
    batches = _cifar_batches(path)
    train = [_cifar_records(batches[name], name, path) for name in _CIFAR_TRAIN]
    x_train = np.concatenate([images for images, _ in train])
    y_train = np.concatenate([labels for _, labels in train])
    x_test, y_test = _cifar_records(batches[_CIFAR_TEST], _CIFAR_TEST, path)
    return (x_train, y_train), (x_test, y_test)


# --- IMDB ----------------------------------------------------------------------

_IMDB_MEMBER = re.compile(r"aclImdb/(train|test)/(pos|neg)/(\d+)_(\d+)\.txt")
#: The longest review of the release has about 14,000 bytes.
_IMDB_MAX_REVIEW = 1 << 20
_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)


def _imdb_reviews(path):
    """{split: (texts, labels)}, each split sorted by (label, review id)."""
    per_label = REGISTRY["imdb"]["counts"]["per_label"]
    found = {(split, label): {} for split in ("train", "test") for label in ("neg", "pos")}
    try:
        with tarfile.open(path, mode="r|gz") as archive:
            for member in archive:
                match = _IMDB_MEMBER.fullmatch(member.name)
                if match is None:
                    continue
                split, label, review_id = match.group(1), match.group(2), int(match.group(3))
                if not member.isreg() or member.size > _IMDB_MAX_REVIEW:
                    raise ValueError(f"{path}: the archive member {member.name} is not a file of "
                                     f"at most {_IMDB_MAX_REVIEW} bytes")
                reviews = found[split, label]
                if review_id in reviews:
                    raise ValueError(f"{path}: the archive holds review {review_id} of "
                                     f"{split}/{label} twice")
                raw = _read_member(archive, member, member.size, path)
                try:
                    reviews[review_id] = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise ValueError(f"{path}: {member.name} is not UTF-8 text ({err})") from None
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ValueError(f"{path}: not a readable IMDB reviews archive ({err})") from None
    out = {}
    for split in ("train", "test"):
        texts, labels = [], []
        for value, label in enumerate(("neg", "pos")):
            reviews = found[split, label]
            if len(reviews) != per_label:
                raise ValueError(f"{path}: the archive holds {len(reviews)} {split}/{label} "
                                 f"reviews, expected {per_label}")
            texts.extend(reviews[i] for i in sorted(reviews))
            labels.extend([value] * len(reviews))
        out[split] = (texts, np.asarray(labels, dtype=np.int64))
    return out


def _tokenizer():
    from cdl.text import TextVectorizer

    vectorizer = TextVectorizer(standardize="strip_punctuation")
    return vectorizer, (lambda text: vectorizer.tokenize(_BREAK.sub(" ", text)))


def _word_ranks(texts):
    """{word: rank}, rank 1 the most frequent word of ``texts``, ties broken
    by the word, descending (the order of ``TextVectorizer.adapt``)."""
    _, tokens = _tokenizer()
    counts = Counter()
    for text in texts:
        counts.update(tokens(text))
    order = sorted(counts.items(), key=lambda item: (item[1], item[0]), reverse=True)
    return {word: rank for rank, (word, _) in enumerate(order, start=1)}


def _check_optional_int(value, name, low):
    return None if value is None else check_number(value, name, low=low, integer=True)


def load_imdb(num_words=None, skip_top=0, maxlen=None, seed=113, start_char=1, oov_char=2,
              index_from=3, data_home=None, download=True, mirror=None):
    """Load the IMDB movie reviews for sentiment classification as word ids,
    downloading them on first use.

    50,000 reviews labelled 0 (negative) or 1 (positive), 25,000 for
    training and 25,000 for testing, half of each label. The plain-text
    release ``aclImdb_v1.tar.gz`` (84 MB) is fetched once, checked against
    its pinned SHA-256 and kept in the cache folder; the reviews are read
    from it in memory, and turned into word ids as Keras'
    ``imdb.load_data()`` does: each word is replaced by its frequency rank
    (1 the most frequent) plus ``index_from``, each review starts with
    ``start_char``, and words ranked outside ``[skip_top, num_words)``
    (after the shift) become ``oov_char``.

    Tokens: a review's ``<br />`` tags become spaces, then it is lowercased,
    stripped of ASCII punctuation and split on whitespace
    (``cdl.text.TextVectorizer(standardize="strip_punctuation")``). Ranks
    are counted on the 25,000 training reviews (ties broken by the word,
    descending); a test word never seen in training becomes ``oov_char``.
    Keras' ids come from its own preprocessed copy, so the same review has
    other ids in Keras; see :func:`load_imdb_word_index` for the mapping.

    Parameters
    ----------
    num_words : int, optional
        Keep the ids below ``num_words`` (the ``num_words - index_from``
        most frequent words); None keeps all.
    skip_top : int, default 0
        Ids below ``skip_top`` become ``oov_char`` too (the most frequent
        words).
    maxlen : int, optional
        Drop the reviews longer than ``maxlen`` ids (start token included).
    seed : int, default 113
        Seed of the shuffle of each split (the archive's order puts all
        negative reviews first). The same seed gives the same order.
    start_char : int or None, default 1
        Id put at the start of every review; None puts none.
    oov_char : int or None, default 2
        Id of the words cut by ``num_words``/``skip_top``; None drops them.
    index_from : int, default 3
        Added to every rank (ids below it are reserved: 0 padding, 1 start,
        2 out of vocabulary).
    data_home, download, mirror
        As :func:`load_mnist` (the mirror holds
        ``<mirror>/imdb/aclImdb_v1.tar.gz``).

    Returns
    -------
    (x_train, y_train), (x_test, y_test)
        ``x_*``: object arrays of int64 arrays, one per review, of various
        lengths (pad them with :func:`cdl.text.pad_sequences`); ``y_*``:
        int64 arrays of 0/1.

    Raises
    ------
    ImportError, ConnectionError, ValueError
        As :func:`load_fashion_mnist`; ``ValueError`` also for an archive
        whose reviews are not the expected ones, or a bad option.

    Notes
    -----
    Data: A. L. Maas, R. E. Daly, P. T. Pham, D. Huang, A. Y. Ng and
    C. Potts (2011), Learning Word Vectors for Sentiment Analysis, ACL 2011,
    https://ai.stanford.edu/~amaas/data/sentiment/ (cite the paper; the
    reviews come from IMDb).

    Examples
    --------
    >>> from cdl import datasets
    >>> (x_train, y_train), (x_test, y_test) = datasets.load_imdb(num_words=10000)  # doctest: +SKIP
    >>> len(x_train), x_train[0].dtype, x_train[0][0]                               # doctest: +SKIP
    (25000, dtype('int64'), np.int64(1))
    """
    num_words = _check_optional_int(num_words, "num_words", 1)
    skip_top = check_number(skip_top, "skip_top", low=0, integer=True)
    maxlen = _check_optional_int(maxlen, "maxlen", 1)
    seed = check_number(seed, "seed", low=0, integer=True)
    start_char = _check_optional_int(start_char, "start_char", 0)
    oov_char = _check_optional_int(oov_char, "oov_char", 0)
    index_from = check_number(index_from, "index_from", low=0, integer=True)
    path = fetch("imdb", "aclImdb_v1.tar.gz", data_home, download, mirror)
    reviews = _imdb_reviews(path)
    ranks = _word_ranks(reviews["train"][0])
    _, tokens = _tokenizer()

    def kept(w):
        return skip_top <= w and (num_words is None or w < num_words)

    # Each word's final id, Keras' filter applied once per word rather than
    # once per occurrence; None marks a word dropped (oov_char=None).
    final = {word: (rank + index_from if kept(rank + index_from) else oov_char)
             for word, rank in ranks.items()}
    start = None if start_char is None else (start_char if kept(start_char) else oov_char)
    rng = np.random.RandomState(seed)  # Keras' generator, for its order of calls
    out = []
    for split in ("train", "test"):
        texts, labels = reviews[split]
        order = np.arange(len(texts))
        rng.shuffle(order)
        sequences, rows = [], []
        for i in order:
            ids = [final.get(word, oov_char) for word in tokens(texts[i])]
            if start_char is not None:
                ids.insert(0, start)
            if maxlen is not None and len(ids) > maxlen:
                continue
            if oov_char is None:
                ids = [w for w in ids if w is not None]
            sequences.append(np.asarray(ids, dtype=np.int64))
            rows.append(i)
        x = np.empty(len(sequences), dtype=object)
        x[:] = sequences
        out.append((x, labels[np.asarray(rows, dtype=np.intp)]))
    return tuple(out)


def load_imdb_word_index(data_home=None, download=True, mirror=None):
    """The words of :func:`load_imdb` and their frequency ranks.

    As Keras' ``imdb.get_word_index()``: ``{word: rank}``, rank 1 the most
    frequent word of the training reviews. A word's id in
    :func:`load_imdb`'s sequences is its rank plus ``index_from`` (3 by
    default).

    Parameters
    ----------
    data_home, download, mirror
        As :func:`load_imdb`.

    Returns
    -------
    dict of str to int

    Examples
    --------
    >>> from cdl import datasets
    >>> index = datasets.load_imdb_word_index()               # doctest: +SKIP
    >>> words = {rank + 3: word for word, rank in index.items()}   # doctest: +SKIP
    >>> (x_train, _), _ = datasets.load_imdb()                # doctest: +SKIP
    >>> " ".join(words.get(i, "?") for i in x_train[0][1:6])  # doctest: +SKIP
    """
    path = fetch("imdb", "aclImdb_v1.tar.gz", data_home, download, mirror)
    return _word_ranks(_imdb_reviews(path)["train"][0])

