"""The ``preprocessors`` section: text vectorizers saved inside a model file.

``encode_preprocessors`` turns ``model.preprocessors`` (a dict of
``cdl.text.TextVectorizer`` by name) into the header section and its
arrays: the small config in the header, the vocabulary in the data section
as the UTF-8 bytes of all tokens and their int64 offsets (a vocabulary of
2**22 tokens would not fit the header's bound on JSON values), and a
wrapped tokenizer's JSON as bytes. ``check_preprocessors`` checks the
section with the rest of the header, against the arrays' declared dtypes
and shapes; ``restore_preprocessors`` checks the arrays' contents once the
file is verified and makes the vectorizers. The layout is specified in
``cdl.saving.format``.
"""
import numpy as np

from cdl.saving import format as spec
from cdl.saving.format import short

__all__ = ["CLASS_NAME", "FUNCTION_NAMES", "encode_preprocessors", "check_preprocessors",
           "check_functions", "restore_preprocessors"]

#: The preprocessor class a file may name.
CLASS_NAME = "TextVectorizer"
#: The functions ``load_model``'s ``preprocessor_functions`` may give each preprocessor.
FUNCTION_NAMES = ("split", "standardize")
_FIELDS = ("name", "class_name", "config", "vocabulary_size", "token_bytes", "token_offsets",
           "tokenizer_json")
#: Config keys stored as arrays, not in the header.
_IN_ARRAYS = ("vocabulary", "tokenizer")


def encode_preprocessors(model):
    """The header's ``preprocessors`` list and the [(name, array)] it refers to.

    Raises
    ------
    TypeError
        If ``model.preprocessors`` is not a dict, a key is not a non-empty
        str or a value is not a ``cdl.text.TextVectorizer`` (naming the key).
    ValueError
        For a token that cannot be written as UTF-8 (a lone surrogate).
    """
    from cdl.text import storage
    from cdl.text.vectorizer import TextVectorizer

    preprocessors = getattr(model, "preprocessors", None)
    if preprocessors is None:
        return [], []
    if not isinstance(preprocessors, dict):
        raise TypeError(f"model.preprocessors must be a dict of name to TextVectorizer, got "
                        f"{type(preprocessors).__name__}")
    section, arrays = [], []
    for i, (name, value) in enumerate(preprocessors.items()):
        if not isinstance(name, str) or not name:
            raise TypeError(f"model.preprocessors keys must be non-empty strings, got {name!r}")
        if not isinstance(value, TextVectorizer):
            raise TypeError(f"model.preprocessors[{name!r}] is a {type(value).__name__}; a model "
                            "file holds only cdl.text.TextVectorizer preprocessors")
        config = storage.check_config(value.get_config(), f"model.preprocessors[{name!r}]")
        prefix = f"{spec.PREPROCESSOR_PREFIX}{i}/"
        entry = {"name": name, "class_name": CLASS_NAME,
                 "config": {k: v for k, v in config.items() if k not in _IN_ARRAYS},
                 "vocabulary_size": None, "token_bytes": None, "token_offsets": None,
                 "tokenizer_json": None}
        vocabulary = config["vocabulary"]
        if vocabulary is not None:
            data, offsets = _encode_tokens(vocabulary, name)
            entry.update(vocabulary_size=len(vocabulary), token_bytes=prefix + "token_bytes",
                         token_offsets=prefix + "token_offsets")
            arrays += [(entry["token_bytes"], data), (entry["token_offsets"], offsets)]
        if config["split"] == "tokenizer":
            entry["tokenizer_json"] = prefix + "tokenizer_json"
            arrays.append((entry["tokenizer_json"],
                           _utf8(config["tokenizer"], f"the tokenizer of {name!r}")))
        section.append(entry)
    return section, arrays


def _utf8(text, what):
    try:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    except UnicodeEncodeError as err:
        raise ValueError(f"{what} is not valid Unicode text ({err.reason} at character "
                         f"{err.start}); it cannot be saved as UTF-8") from None


def _encode_tokens(vocabulary, name):
    """The UTF-8 bytes of all tokens, one after another, and the int64
    offsets of each token's start (and of the end)."""
    try:
        encoded = [token.encode("utf-8") for token in vocabulary]
    except UnicodeEncodeError:
        i = next(i for i, t in enumerate(vocabulary) if not _encodes(t))
        raise ValueError(f"model.preprocessors[{name!r}]: token {i} "
                         f"({short(repr(vocabulary[i]), 60)}) is not valid Unicode text (a "
                         "lone surrogate); it cannot be saved as UTF-8") from None
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets


def _encodes(token):
    try:
        token.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_preprocessors(check, header, arrays):
    """Check the header's ``preprocessors`` section against the arrays'
    declared dtypes and shapes (stand-ins before the data section is read);
    return the names of the arrays it uses. Refuses ``"uint8"`` arrays that
    it does not use."""
    from cdl.text import storage

    section = header.get("preprocessors")
    used = set()
    names = set()
    for i, entry in enumerate(check.expect([] if section is None else section, list,
                                           "the header.preprocessors")):
        where = f"preprocessors[{i}]"
        check.expect(entry, dict, where)
        unknown = sorted(str(key) for key in entry if key not in _FIELDS)
        if unknown:
            check.fail(f"{where} has unknown fields {short(unknown)}")
        name = check.key(entry, "name", str, where)
        if not name:
            check.fail(f"{where}.name is empty")
        if name in names:
            check.fail(f"two preprocessors are named {short(repr(name))}")
        names.add(name)
        where = f"preprocessor {short(repr(name))}"
        class_name = check.key(entry, "class_name", str, where)
        if class_name != CLASS_NAME:
            check.fail(f"{where} has class_name {short(repr(class_name))}; a model file holds "
                       f"{CLASS_NAME!r} preprocessors only")
        config = check.key(entry, "config", dict, where)
        stored = [key for key in _IN_ARRAYS if key in config]
        if stored:
            check.fail(f"{where}.config holds {short(stored)}, which a file stores as arrays")
        full = dict(config, vocabulary=None)
        if config.get("split") == "tokenizer":
            full["tokenizer"] = ""   # its JSON is an array, checked once read
        try:
            full = storage.check_config(full, f"{where}.config")
        except ValueError as err:
            check.fail(str(err))
        size = check.key(entry, "vocabulary_size", (int, type(None)), where)
        fields = {key: check.key(entry, key, (str, type(None)), where)
                  for key in ("token_bytes", "token_offsets", "tokenizer_json")}
        if size is None:
            for key in ("token_bytes", "token_offsets"):
                if fields[key] is not None:
                    check.fail(f"{where} has no vocabulary_size but a {key} array")
        else:
            check.int(size, f"{where}.vocabulary_size", low=2, high=storage.MAX_VOCABULARY)
            if full["max_tokens"] is not None and size > full["max_tokens"]:
                check.fail(f"{where} has vocabulary_size {size}, more than its max_tokens "
                           f"{full['max_tokens']}")
            _array(check, fields, "token_bytes", arrays, used, where)
            _array(check, fields, "token_offsets", arrays, used, where, np.int64, (size + 1,))
        if full["split"] == "tokenizer":
            _array(check, fields, "tokenizer_json", arrays, used, where)
        elif fields["tokenizer_json"] is not None:
            check.fail(f"{where} has a tokenizer_json array but split {full['split']!r}")
    others = sorted(n for n, a in arrays.items() if a.dtype == np.uint8 and n not in used)
    if others:
        check.fail(f"the file has uint8 arrays that are not a preprocessor's: {short(others)}")
    return used


def _array(check, fields, key, arrays, used, where, dtype=np.uint8, shape=None):
    """The array named by ``fields[key]``: one of the file's preprocessor
    arrays, used by no other field, of ``dtype`` and ``shape`` (1-D by default)."""
    name = fields[key]
    if name is None:
        check.fail(f"{where} has no {key} array")
    if not name.startswith(spec.PREPROCESSOR_PREFIX) or name not in arrays:
        check.fail(f"{where}.{key} refers to {short(repr(name))}, which is not a preprocessor "
                   "array of the file")
    if name in used:
        check.fail(f"{where}.{key} refers to the array {short(repr(name))}, which another "
                   "field uses too")
    used.add(name)
    array = arrays[name]
    if array.dtype != dtype or array.ndim != 1 or (shape is not None and array.shape != shape):
        expected = f"of shape {list(shape)}" if shape is not None else "1-D"
        check.fail(f"{where}.{key} is {array.dtype} of shape {list(array.shape)}; expected "
                   f"{np.dtype(dtype).name} {expected}")
    return array


def check_functions(check, header, functions):
    """Check ``load_model``'s ``preprocessor_functions`` against the file's
    (checked) section: a dict of preprocessor name to a dict of
    ``"split"``/``"standardize"`` functions, given exactly for the
    functions the file records as ``"callable"``. Returns it as a new dict.

    Raises
    ------
    TypeError
        For values that are not dicts or not callable.
    ValueError
        For a function missing (naming the preprocessor and what to pass),
        a name the file does not hold, or a function given for a split or
        standardize the file stores itself.
    """
    functions = {} if functions is None else functions
    if not isinstance(functions, dict):
        raise TypeError(f"preprocessor_functions must be a dict of preprocessor name to "
                        f"{{'split': function, 'standardize': function}}, got "
                        f"{type(functions).__name__}")
    entries = {entry["name"]: entry for entry in header.get("preprocessors") or []}
    unknown = sorted(map(repr, set(functions) - set(entries)))
    if unknown:
        raise ValueError(f"{check.path}: preprocessor_functions names {', '.join(unknown)}, but "
                         f"the file's preprocessors are {sorted(entries) or 'none'}")
    checked = {}
    for name, entry in entries.items():
        given = functions.get(name, {})
        if not isinstance(given, dict):
            raise TypeError(f"preprocessor_functions[{name!r}] must be a dict such as "
                            f"{{'split': function}}, got {type(given).__name__}")
        bad = sorted(map(repr, set(given) - set(FUNCTION_NAMES)))
        if bad:
            raise ValueError(f"preprocessor_functions[{name!r}] has unknown keys "
                             f"{', '.join(bad)}; it takes 'split' and 'standardize'")
        for key in FUNCTION_NAMES:
            recorded = entry["config"][key]
            if recorded == "callable":
                if given.get(key) is None:
                    raise ValueError(
                        f"{check.path}: preprocessor {name!r} was saved with a {key} function, "
                        f"whose code a model file does not hold; pass it again: "
                        f"load_model(path, preprocessor_functions={{{name!r}: "
                        f"{{{key!r}: function}}}})")
                if not callable(given[key]):
                    raise TypeError(f"preprocessor_functions[{name!r}][{key!r}] must be a "
                                    f"function, got {type(given[key]).__name__}")
            elif given.get(key) is not None:
                raise ValueError(f"{check.path}: preprocessor {name!r} has {key} "
                                 f"{recorded!r} in the file; a {key} function replaces only "
                                 "one saved as a function")
        checked[name] = {key: given.get(key) for key in FUNCTION_NAMES}
    return checked


def restore_preprocessors(check, header, arrays, functions):
    """The file's preprocessors, a dict of name to ``TextVectorizer``: the
    arrays' contents checked (offsets in range and in order, tokens valid
    UTF-8, the vocabulary as ``cdl.text.storage.check_config`` checks it),
    then each vectorizer made with its functions (``check_functions``'s
    result). A bad file raises ``ModelFileError``."""
    from cdl.text.vectorizer import TextVectorizer

    configs = []
    for entry in header.get("preprocessors") or []:
        where = f"preprocessor {short(repr(entry['name']))}"
        config = dict(entry["config"])
        config["vocabulary"] = None if entry["vocabulary_size"] is None else _decode_tokens(
            check, arrays[entry["token_bytes"]], arrays[entry["token_offsets"]], where)
        if entry["tokenizer_json"] is not None:
            config["tokenizer"] = _decode_text(check, arrays[entry["tokenizer_json"]].tobytes(),
                                               f"{where}'s tokenizer JSON")
        configs.append((entry["name"], where, config))
    restored = {}
    for name, where, config in configs:
        try:
            restored[name] = TextVectorizer.from_config(
                config, where=f"{check.path}: {where}", **functions.get(name, {}))
        except ImportError:
            raise
        except (TypeError, ValueError) as err:
            check.fail(str(err).removeprefix(f"{check.path}: "))
    return restored


def _decode_text(check, raw, what):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        check.fail(f"{what} is not valid UTF-8 ({err.reason} at byte {err.start})")


def _decode_tokens(check, data, offsets, where):
    """The tokens of a vocabulary's bytes and offsets, checked."""
    if offsets[0] != 0 or offsets[-1] != data.size:
        check.fail(f"{where}: the token offsets must start at 0 and end at the "
                   f"{data.size} bytes of the tokens, got {offsets[0]} and {offsets[-1]}")
    steps = np.diff(offsets)
    if steps.size and steps.min() < 0:
        i = int(np.argmax(steps < 0))
        check.fail(f"{where}: the token offsets decrease at token {i} ({offsets[i]} to "
                   f"{offsets[i + 1]})")
    raw = data.tobytes()
    bounds = offsets.tolist()
    try:
        return [raw[a:b].decode("utf-8") for a, b in zip(bounds, bounds[1:])]
    except UnicodeDecodeError as err:
        i = next(i for i, (a, b) in enumerate(zip(bounds, bounds[1:]))
                 if not _decodes(raw[a:b]))
        check.fail(f"{where}: token {i} is not valid UTF-8 ({err.reason})")


def _decodes(raw):
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
