"""A ``TextVectorizer``'s configuration: checking it, and its JSON file.

The file is one JSON object, UTF-8 with every other character escaped
(``\\uXXXX``), written atomically (``cdl.saving.atomic.atomic_write``)::

    {"format": "cdl.text.TextVectorizer", "version": 1, "vocabulary_size": 5,
     "config": {"max_tokens": null, "output_sequence_length": 8,
                "split": "whitespace", "lowercase": true, "standardize": null,
                "oov_token": "[UNK]", "pad_token": "",
                "vocabulary": ["", "[UNK]", "the", "cat", "sat"]}}

``config`` is what ``TextVectorizer.get_config`` returns. A model file
holds vectorizers too (``model.preprocessors``, see ``cdl.saving.format``):
the config without its vocabulary in the header, the vocabulary as arrays,
checked by ``check_config`` as a file is. A wrapped Hugging Face tokenizer adds ``"tokenizer"`` (its
own JSON form, as a string) and ``"add_special_tokens"``. Nothing in the
file is executed or imported: a split or standardize function is recorded
as ``"callable"`` only, and is passed again when loading.

Reading is bounded before any JSON is parsed: the file's size (at most
``max_bytes``), and then, counted on the raw bytes by
``cdl.saving.jsonscan.scan_json``, the number of JSON values (at most
``MAX_VOCABULARY`` tokens and a few fields), the nesting (three levels) and
the digits of any number. A file whose fields have the wrong types, repeat a
key, repeat a token, leave the padding and OOV tokens out of their places,
disagree with ``vocabulary_size`` or hold more tokens than ``max_tokens`` is
refused with a ``ValueError`` naming the problem.
"""
import json
import os

from cdl._validation import BLAS_INT_MAX
from cdl.saving.atomic import atomic_write
from cdl.saving.jsonscan import scan_json

__all__ = ["FORMAT", "VERSION", "MAX_VOCABULARY", "MAX_BYTES", "SPLITS", "STANDARDIZERS",
           "check_config", "check_vocabulary", "write", "read"]

#: The value of the file's ``"format"`` field.
FORMAT = "cdl.text.TextVectorizer"
#: The version of the file layout this code writes and reads.
VERSION = 1
#: The largest vocabulary a file or config may hold (special tokens included).
MAX_VOCABULARY = 2 ** 22
#: The default largest file ``read`` opens, in bytes.
MAX_BYTES = 256 * 2 ** 20
#: The split modes a config may name ("callable": a function given again on
#: loading; "tokenizer": a wrapped Hugging Face tokenizer, stored with it).
SPLITS = ("whitespace", "character", "callable", "tokenizer")
#: The standardize modes a config may name.
STANDARDIZERS = (None, "strip_punctuation", "callable")

_REQUIRED = ("max_tokens", "output_sequence_length", "split", "lowercase", "standardize",
             "oov_token", "pad_token", "vocabulary")
_TOKENIZER_KEYS = ("tokenizer", "add_special_tokens")
#: Nesting of the file: the object, its config, the vocabulary list.
_DEPTH = 3
#: Digits of the longest number a valid file holds (an int64).
_DIGITS = 19
#: JSON values and keys besides the tokens: the fields, with room to spare.
_FIELDS = 64


def check_config(config, where="config"):
    """Check a vectorizer's config and return it as a new dict.

    Parameters
    ----------
    config : dict
        As ``TextVectorizer.get_config`` returns it.
    where : str
        What the config is, for the messages (a file's path, for instance).

    Returns
    -------
    dict

    Raises
    ------
    ValueError
        Naming the first problem: a missing or unknown key, a value of the
        wrong type or out of range, a repeated token, or special tokens out
        of their places.

    Examples
    --------
    >>> config = {"max_tokens": None, "output_sequence_length": None, "split": "whitespace",
    ...           "lowercase": True, "standardize": None, "oov_token": "[UNK]",
    ...           "pad_token": "", "vocabulary": ["", "[UNK]", "cat"]}
    >>> check_config(config)["vocabulary"]
    ['', '[UNK]', 'cat']
    >>> check_config({**config, "vocabulary": ["", "[UNK]", "cat", "cat"]})
    Traceback (most recent call last):
    ...
    ValueError: config: the vocabulary holds 'cat' twice (at 2 and 3)
    """
    def fail(message):
        raise ValueError(f"{where}: {message}")

    if not isinstance(config, dict):
        fail(f"a vectorizer's config is a dict, got {type(config).__name__}")
    missing = [key for key in _REQUIRED if key not in config]
    if missing:
        fail(f"the config has no {', '.join(map(repr, missing))}")
    allowed = _REQUIRED + (_TOKENIZER_KEYS if config.get("split") == "tokenizer" else ())
    unknown = sorted(str(key) for key in config if key not in allowed)
    if unknown:
        fail(f"the config has unknown keys {', '.join(map(repr, unknown))}")
    checked = {}
    for key, low, high in (("max_tokens", 2, MAX_VOCABULARY),
                           ("output_sequence_length", 1, BLAS_INT_MAX)):
        value = config[key]
        if value is not None and (type(value) is not int or not low <= value <= high):
            fail(f"{key} must be null or an integer in [{low}, {high}], got {_short(value)}")
        checked[key] = value
    if config["split"] not in SPLITS:
        fail(f"split must be one of {', '.join(map(repr, SPLITS))}, got {_short(config['split'])}")
    checked["split"] = config["split"]
    if type(config["lowercase"]) is not bool:
        fail(f"lowercase must be true or false, got {_short(config['lowercase'])}")
    checked["lowercase"] = config["lowercase"]
    if config["standardize"] not in STANDARDIZERS:
        fail(f"standardize must be one of {', '.join(map(repr, STANDARDIZERS))}, got "
             f"{_short(config['standardize'])}")
    checked["standardize"] = config["standardize"]
    for key in ("oov_token", "pad_token"):
        if type(config[key]) is not str:
            fail(f"{key} must be a string, got {_short(config[key])}")
        checked[key] = config[key]
    if checked["oov_token"] == checked["pad_token"]:
        fail(f"oov_token and pad_token are both {_short(checked['oov_token'])}")
    if checked["split"] == "tokenizer":
        missing = [key for key in _TOKENIZER_KEYS if key not in config]
        if missing:
            fail(f"a config with split 'tokenizer' needs {', '.join(map(repr, missing))}")
        if type(config["tokenizer"]) is not str:
            fail(f"tokenizer must be the tokenizer's JSON as a string, got "
                 f"{type(config['tokenizer']).__name__}")
        if type(config["add_special_tokens"]) is not bool:
            fail(f"add_special_tokens must be true or false, got "
                 f"{_short(config['add_special_tokens'])}")
        checked.update({key: config[key] for key in _TOKENIZER_KEYS})
    checked["vocabulary"] = None if config["vocabulary"] is None else check_vocabulary(
        config["vocabulary"], checked["pad_token"], checked["oov_token"],
        checked["max_tokens"], fail)
    return checked


def check_vocabulary(vocabulary, pad_token, oov_token, max_tokens, fail):
    """A full vocabulary (padding, OOV, then the learned tokens) as a list of
    distinct strings, or ``fail(message)``, which raises.

    Examples
    --------
    >>> def fail(message):
    ...     raise ValueError(message)
    >>> check_vocabulary(["", "[UNK]", "a"], "", "[UNK]", None, fail)
    ['', '[UNK]', 'a']
    >>> check_vocabulary(["", "[UNK]", "a", "b"], "", "[UNK]", 3, fail)
    Traceback (most recent call last):
    ...
    ValueError: the vocabulary holds 4 tokens, more than max_tokens 3
    """
    if not isinstance(vocabulary, list):
        fail(f"the vocabulary must be a list of strings, got {type(vocabulary).__name__}")
    if len(vocabulary) > MAX_VOCABULARY:
        fail(f"the vocabulary holds {len(vocabulary)} tokens, more than the "
             f"{MAX_VOCABULARY} cdl reads")
    if max_tokens is not None and len(vocabulary) > max_tokens:
        fail(f"the vocabulary holds {len(vocabulary)} tokens, more than max_tokens {max_tokens}")
    if vocabulary[:2] != [pad_token, oov_token]:
        fail(f"the vocabulary must start with the padding and OOV tokens "
             f"[{_short(pad_token)}, {_short(oov_token)}], got "
             f"{_short(vocabulary[:2])}")
    # The common, valid case in two passes of C loops; the Python loop below
    # only names the first problem.
    if all(type(token) is str for token in vocabulary) and \
            len(set(vocabulary)) == len(vocabulary):
        return list(vocabulary)
    seen = {}
    for i, token in enumerate(vocabulary):
        if type(token) is not str:
            fail(f"the vocabulary's token {i} is {_short(token)}, not a string")
        if token in seen:
            fail(f"the vocabulary holds {_short(token)} twice (at {seen[token]} and {i})")
        seen[token] = i
    return list(vocabulary)


def write(path, config):
    """Write ``config`` (a checked vectorizer config) to the JSON file ``path``,
    atomically.

    Examples
    --------
    >>> config = {"max_tokens": None, "output_sequence_length": None, "split": "character",
    ...           "lowercase": False, "standardize": None, "oov_token": "?",
    ...           "pad_token": "", "vocabulary": ["", "?", "a", "b"]}
    >>> write("chars.json", config)
    >>> read("chars.json") == config
    True
    """
    document = {"format": FORMAT, "version": VERSION,
                "vocabulary_size": None if config["vocabulary"] is None
                else len(config["vocabulary"]),
                "config": config}
    data = json.dumps(document, ensure_ascii=True, allow_nan=False).encode("ascii")
    atomic_write(path, lambda f: f.write(data))


def read(path, max_bytes=MAX_BYTES):
    """The checked config of the vectorizer file ``path`` (see the module's
    description for what is checked, and in what order).

    Parameters
    ----------
    path : str or os.PathLike
    max_bytes : int
        The largest file read; a larger one is refused before it is read.

    Returns
    -------
    dict

    Raises
    ------
    ValueError
        For a file that is not a valid vectorizer file, naming the problem.
    OSError
        If the file cannot be read.

    Examples
    --------
    >>> with open("forged.json", "w") as f:
    ...     _ = f.write('{"format": "cdl.text.TextVectorizer", "version": 1, "config": 5}')
    >>> read("forged.json")
    Traceback (most recent call last):
    ...
    ValueError: forged.json: the file has no 'vocabulary_size'
    """
    shown = os.fspath(path)

    def fail(message):
        raise ValueError(f"{shown}: {message}")

    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > max_bytes:
            fail(f"the file holds {size} bytes, more than max_bytes={max_bytes}; a "
                 "vectorizer file is JSON of its vocabulary (pass a larger max_bytes "
                 "for a larger one you trust)")
        raw = f.read(max_bytes + 1)
    if len(raw) > max_bytes:
        fail(f"the file grew past max_bytes={max_bytes} while it was read")
    head = raw.lstrip(b" \t\r\n")[:1]
    if head != b"{":
        kind = ("is a Python pickle, which cdl never unpickles (unpickling can run any code "
                "the file names)") if raw[:1] == b"\x80" else \
            f"is not a vectorizer file (JSON written by TextVectorizer.save): it starts with " \
            f"{raw[:16]!r}"
        fail(f"the file {kind}")
    items, _, depth, digits, paired = scan_json(raw, MAX_VOCABULARY + _FIELDS, _DEPTH, _DIGITS)
    if depth > _DEPTH:
        fail(f"the file nests JSON {depth} levels deep; a vectorizer file has {_DEPTH}")
    if digits > _DIGITS:
        fail(f"the file holds a number of more than {_DIGITS} digits")
    if items > MAX_VOCABULARY + _FIELDS:
        fail(f"the file holds more than {MAX_VOCABULARY + _FIELDS} JSON values; a vectorizer "
             f"file holds at most {MAX_VOCABULARY} tokens and a few fields")
    if not paired:
        fail("the file is not valid JSON (its brackets do not pair up)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        fail(f"the file is not valid UTF-8 ({error.reason} at byte {error.start})")
    del raw
    try:
        document = json.loads(text, object_pairs_hook=_no_repeated_keys,
                              parse_constant=_no_constants)
    except _Refused as error:
        fail(str(error))
    except RecursionError:
        fail("the file nests JSON too deeply")
    except ValueError as error:
        fail(f"the file is not valid JSON ({error})")
    if not isinstance(document, dict):
        fail(f"the file holds a JSON {type(document).__name__}, not an object")
    for key in ("format", "version", "vocabulary_size", "config"):
        if key not in document:
            fail(f"the file has no {key!r}")
    unknown = sorted(key for key in document if key not in ("format", "version",
                                                            "vocabulary_size", "config"))
    if unknown:
        fail(f"the file has unknown keys {', '.join(map(repr, unknown))}")
    if document["format"] != FORMAT:
        fail(f"the file's format is {_short(document['format'])}, not {FORMAT!r}")
    if type(document["version"]) is not int or document["version"] != VERSION:
        fail(f"the file has version {_short(document['version'])}; this cdl reads version "
             f"{VERSION}")
    config = check_config(document["config"], shown)
    declared = document["vocabulary_size"]
    actual = None if config["vocabulary"] is None else len(config["vocabulary"])
    if declared is not None and (type(declared) is not int or declared < 0):
        fail(f"vocabulary_size must be null or an integer >= 0, got {_short(declared)}")
    if declared != actual:
        fail(f"the file declares vocabulary_size {_short(declared)} but holds "
             f"{'no vocabulary' if actual is None else f'{actual} tokens'}")
    return config


class _Refused(ValueError):
    """A JSON construct a vectorizer file never holds."""


def _no_repeated_keys(pairs):
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise _Refused(f"the file repeats the key {_short(key)} in one JSON object "
                           "(readers could disagree on its value)")
        obj[key] = value
    return obj


def _no_constants(name):
    raise _Refused(f"the file holds {name}, which is not JSON")


def _short(value, limit=60):
    """``repr(value)``, cut to ``limit`` characters for messages."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
