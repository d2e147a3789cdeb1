"""Saving and loading a TextVectorizer: round trips, atomic writes, and forged
files refused with a ValueError naming the problem."""
import json
import os
import pickle

import numpy as np
import numpy.testing as npt
import pytest

from cdl.text import TextVectorizer, storage

TEXTS = ["The quick brown fox", "jumps over the lazy dog", "the end"]


def saved(tmp_path, **kwargs):
    path = tmp_path / "vectorizer.json"
    TextVectorizer(**kwargs).adapt(TEXTS).save(path)
    return path


def document(path):
    return json.loads(path.read_text())


def write_document(path, doc):
    path.write_text(json.dumps(doc))
    return path


def test_save_and_load_round_trip(tmp_path):
    vectorizer = TextVectorizer(max_tokens=8, output_sequence_length=5, split="character",
                                lowercase=False, oov_token="<?>", pad_token="<pad>",
                                standardize="strip_punctuation").adapt(TEXTS)
    vectorizer.save(tmp_path / "v.json")
    loaded = TextVectorizer.load(tmp_path / "v.json")
    assert loaded.get_config() == vectorizer.get_config()
    npt.assert_array_equal(loaded(TEXTS), vectorizer(TEXTS))
    assert loaded.decode(loaded(TEXTS)) == vectorizer.decode(vectorizer(TEXTS))


def test_unusual_tokens_survive_the_file(tmp_path):
    tokens = ["é", "☕", "\ud800", "a\"b", "back\\slash", "new\nline", "\x00", "[", "{}"]
    vectorizer = TextVectorizer(split=lambda text: text.split("|"), lowercase=False)
    vectorizer.set_vocabulary(tokens)
    vectorizer.save(tmp_path / "v.json")
    assert (tmp_path / "v.json").read_bytes().isascii()
    loaded = TextVectorizer.load(tmp_path / "v.json", split=lambda text: text.split("|"))
    assert loaded.vocabulary() == vectorizer.vocabulary()


def test_an_unadapted_vectorizer_saves_and_loads(tmp_path):
    TextVectorizer(max_tokens=5).save(tmp_path / "v.json")
    loaded = TextVectorizer.load(tmp_path / "v.json")
    assert loaded.max_tokens == 5 and loaded.get_config()["vocabulary"] is None


def test_a_failed_save_leaves_the_old_file_and_no_temporary_file(tmp_path, monkeypatch):
    """Saving goes through cdl.saving.atomic.atomic_write: a write that fails
    after its contents are out leaves the previous file as it was."""
    from cdl.saving.atomic import atomic_write

    path = saved(tmp_path)
    before = path.read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["vectorizer.json"]

    def failing_atomic_write(target, write):
        def contents(f):
            write(f)
            raise RuntimeError("disk full")
        atomic_write(target, contents)

    monkeypatch.setattr(storage, "atomic_write", failing_atomic_write)
    with pytest.raises(RuntimeError, match="disk full"):
        TextVectorizer().adapt(["other"]).save(path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["vectorizer.json"]


def test_the_file_is_the_documented_json(tmp_path):
    doc = document(saved(tmp_path, output_sequence_length=4))
    assert doc["format"] == "cdl.text.TextVectorizer" and doc["version"] == 1
    assert doc["vocabulary_size"] == len(doc["config"]["vocabulary"])
    assert doc["config"]["output_sequence_length"] == 4


def test_a_pickle_is_never_unpickled(tmp_path):
    path = tmp_path / "v.pkl"
    path.write_bytes(pickle.dumps(TextVectorizer().adapt(["a"]).get_config()))
    with pytest.raises(ValueError, match="is a Python pickle, which cdl never unpickles"):
        TextVectorizer.load(path)


@pytest.mark.parametrize("raw, match", [
    (b"", "not a vectorizer file"),
    (b"PK\x03\x04zip", "not a vectorizer file"),
    (b"[1, 2]", "not a vectorizer file"),
    (b'{"format": ', "not valid JSON"),
    (b'{"a": [[[[1]]]]}', "nests JSON 5 levels deep"),
    (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nests JSON"),
    (b'{"a": ' + b"9" * 5000 + b"}", "number of more than 19 digits"),
    (b'{"a": NaN}', "NaN, which is not JSON"),
    (b'{"a": 1, "a": 2}', "repeats the key 'a'"),
    (b'{"a": "\xff"}', "not valid UTF-8"),
    (b'{"format": "cdl.text.TextVectorizer"}', "the file has no 'version'"),
])
def test_files_that_are_not_vectorizer_json_are_refused(tmp_path, raw, match):
    path = tmp_path / "v.json"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match=match):
        TextVectorizer.load(path)


def _set(doc, key, value):
    doc["config"][key] = value


#: Forgeries of a valid file: (a change to its JSON document, the message).
FORGERIES = {
    "wrong format": (lambda d: d.update(format="keras"), "format is 'keras'"),
    "future version": (lambda d: d.update(version=2), "version 2; this cdl reads version 1"),
    "version as text": (lambda d: d.update(version="1"), "has version '1'"),
    "unknown key": (lambda d: d.update(extra=1), "unknown keys 'extra'"),
    "config not a dict": (lambda d: d.update(config=[1]), "config is a dict, got list"),
    "missing config key": (lambda d: d["config"].pop("lowercase"), "has no 'lowercase'"),
    "unknown config key": (lambda d: _set(d, "ngrams", 2), "unknown keys 'ngrams'"),
    "max_tokens as text": (lambda d: _set(d, "max_tokens", "20"), "max_tokens must be null"),
    "max_tokens as bool": (lambda d: _set(d, "max_tokens", True), "max_tokens must be null"),
    "max_tokens 1": (lambda d: _set(d, "max_tokens", 1), "max_tokens must be null"),
    "max_tokens float": (lambda d: _set(d, "max_tokens", 20.0), "max_tokens must be null"),
    "huge max_tokens": (lambda d: _set(d, "max_tokens", 2 ** 40),
                        "max_tokens must be null or an integer in \\[2, 4194304\\]"),
    "huge length": (lambda d: _set(d, "output_sequence_length", 2 ** 62),
                    "output_sequence_length must be null or an integer"),
    "negative length": (lambda d: _set(d, "output_sequence_length", -1),
                        "output_sequence_length must be null"),
    "unknown split": (lambda d: _set(d, "split", "regex"), "split must be one of"),
    "split as list": (lambda d: _set(d, "split", ["whitespace"]), "split must be one of"),
    "lowercase as int": (lambda d: _set(d, "lowercase", 1), "lowercase must be true or false"),
    "unknown standardize": (lambda d: _set(d, "standardize", "lower"), "standardize must be"),
    "oov token not a string": (lambda d: _set(d, "oov_token", 1), "oov_token must be a string"),
    "same special tokens": (lambda d: _set(d, "pad_token", "[UNK]"),
                            "oov_token and pad_token are both"),
    "vocabulary as dict": (lambda d: _set(d, "vocabulary", {"a": 1}),
                           "vocabulary must be a list of strings, got dict"),
    "token not a string": (lambda d: d["config"]["vocabulary"].append(7),
                           "token 11 is 7, not a string"),
    "token as list": (lambda d: d["config"]["vocabulary"].append([]), "nests JSON 4 levels"),
    "repeated token": (lambda d: d["config"]["vocabulary"].append("the"),
                       "holds 'the' twice \\(at 2 and 11\\)"),
    "repeated special token": (lambda d: d["config"]["vocabulary"].append("[UNK]"),
                               "holds '\\[UNK\\]' twice"),
    "specials out of place": (lambda d: d["config"]["vocabulary"].reverse(),
                              "must start with the padding and OOV tokens"),
    "no specials": (lambda d: _set(d, "vocabulary", ["a"]),
                    "must start with the padding and OOV tokens"),
    "more tokens than max_tokens": (lambda d: _set(d, "max_tokens", 5),
                                    "holds 11 tokens, more than max_tokens 5"),
    "size beyond the file": (lambda d: d.update(vocabulary_size=2 ** 40),
                             "declares vocabulary_size 1099511627776 but holds 11 tokens"),
    "size too small": (lambda d: d.update(vocabulary_size=3), "declares vocabulary_size 3"),
    "size for no vocabulary": (lambda d: (_set(d, "vocabulary", None),
                                          d.update(vocabulary_size=5)),
                               "declares vocabulary_size 5 but holds no vocabulary"),
    "size negative": (lambda d: d.update(vocabulary_size=-1), "vocabulary_size must be null"),
    "size as text": (lambda d: d.update(vocabulary_size="11"), "vocabulary_size must be null"),
    "tokenizer keys without a tokenizer": (lambda d: _set(d, "tokenizer", "{}"),
                                           "unknown keys 'tokenizer'"),
    "tokenizer split without a tokenizer": (lambda d: _set(d, "split", "tokenizer"),
                                            "needs 'tokenizer', 'add_special_tokens'"),
    "tokenizer not a string": (lambda d: (_set(d, "split", "tokenizer"),
                                          _set(d, "tokenizer", {"model": 1}),
                                          _set(d, "add_special_tokens", False)),
                               "tokenizer must be the tokenizer's JSON as a string"),
    "add_special_tokens as text": (lambda d: (_set(d, "split", "tokenizer"),
                                              _set(d, "tokenizer", "{}"),
                                              _set(d, "add_special_tokens", "no")),
                                   "add_special_tokens must be true or false"),
}


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_forged_files_are_refused_naming_the_problem(tmp_path, name):
    change, match = FORGERIES[name]
    path = saved(tmp_path)
    doc = document(path)
    assert doc["vocabulary_size"] == 11
    change(doc)
    write_document(path, doc)
    with pytest.raises(ValueError, match=match) as raised:
        TextVectorizer.load(path)
    assert str(path) in str(raised.value)


def test_the_same_checks_guard_from_config():
    config = TextVectorizer().adapt(TEXTS).get_config()
    config["vocabulary"].append("the")
    with pytest.raises(ValueError, match="config: the vocabulary holds 'the' twice"):
        TextVectorizer.from_config(config)
    with pytest.raises(ValueError, match="a model file: .*config is a dict"):
        TextVectorizer.from_config([], where="a model file")


def test_a_file_larger_than_max_bytes_is_refused_before_it_is_read(tmp_path, monkeypatch):
    path = saved(tmp_path)
    size = path.stat().st_size
    assert TextVectorizer.load(path, max_bytes=size).vocabulary_size() == 11
    positions = []
    real_open = open

    class Watched:
        def __init__(self, *args, **kwargs):
            self.f = real_open(*args, **kwargs)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            positions.append(self.f.tell())
            self.f.close()

        def __getattr__(self, name):
            return getattr(self.f, name)

    monkeypatch.setattr("builtins.open", Watched)
    with pytest.raises(ValueError, match=f"holds {size} bytes, more than max_bytes={size - 1}"):
        TextVectorizer.load(path, max_bytes=size - 1)
    assert positions == [0]


def test_too_many_tokens_are_refused_before_parsing(tmp_path, monkeypatch):
    """The count of JSON values is taken on the raw bytes: a file listing more
    tokens than MAX_VOCABULARY never reaches json.loads."""
    monkeypatch.setattr(storage, "MAX_VOCABULARY", 100)
    vocabulary = ["", "[UNK]"] + [f"t{i}" for i in range(200)]
    doc = document(saved(tmp_path))
    doc["config"]["vocabulary"] = vocabulary
    doc["vocabulary_size"] = len(vocabulary)
    path = write_document(tmp_path / "big.json", doc)
    monkeypatch.setattr(storage.json, "loads", lambda *a, **k: pytest.fail("parsed"))
    with pytest.raises(ValueError, match="more than 164 JSON values"):
        TextVectorizer.load(path)


def test_a_file_of_more_tokens_than_a_model_header_holds_loads(tmp_path):
    """Values are counted against the vectorizer's own limit, not against the
    model header's 2**19 (at which counting used to stop, unpaired)."""
    tokens = [f"t{i}" for i in range(2 ** 19 + 10)]
    TextVectorizer().set_vocabulary(tokens).save(tmp_path / "big.json")
    assert TextVectorizer.load(tmp_path / "big.json").vocabulary()[2:] == tokens


def test_max_tokens_and_vocabularies_beyond_the_limit_are_refused(monkeypatch):
    config = TextVectorizer().set_vocabulary([f"t{i}" for i in range(10)]).get_config()
    monkeypatch.setattr(storage, "MAX_VOCABULARY", 10)
    with pytest.raises(ValueError, match="holds 12 tokens, more than the 10 cdl reads"):
        TextVectorizer.from_config(config)
    with pytest.raises(ValueError, match="holds 12 tokens, more than the 10 cdl reads"):
        TextVectorizer().set_vocabulary(config["vocabulary"])
    with pytest.raises(ValueError, match="max_tokens must be <= 10"):
        TextVectorizer(max_tokens=11)


def test_random_corruptions_load_or_raise_a_value_error(tmp_path):
    """Bytes flipped, cut or inserted anywhere in a valid file: loading either
    succeeds (a change inside a token, say) or raises ValueError, nothing else."""
    good = saved(tmp_path, output_sequence_length=6).read_bytes()
    rng = np.random.default_rng(0)
    path = tmp_path / "corrupt.json"
    outcomes = {"loaded": 0, "refused": 0}
    for trial in range(600):
        data = bytearray(good)
        kind = trial % 3
        at = int(rng.integers(len(data)))
        if kind == 0:
            data[at] = int(rng.integers(256))
        elif kind == 1:
            data = data[:at]
        else:
            data[at:at] = bytes([int(b) for b in rng.choice(list(b'{}[]",:0123456789 \\a'),
                                                             size=int(rng.integers(1, 4)))])
        path.write_bytes(bytes(data))
        try:
            TextVectorizer.load(path)
            outcomes["loaded"] += 1
        except ValueError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 300 and outcomes["loaded"] > 10, outcomes
