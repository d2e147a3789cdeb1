"""Text vectorizers saved inside a model file (``model.preprocessors``).

Round trips of every kind of vectorizer in a ``Sequential`` and in a graph
model, with the same ids after loading; split and standardize functions
given again; hostile files (forged as in ``test_hostile_files.py``: a valid
file's header and data section, changed, with a correct checksum) refused
with ``ModelFileError`` before anything large is allocated; and what saving
refuses.
"""
import hashlib
import json
import re
import struct
import sys
import tracemalloc
import types

import numpy as np
import numpy.testing as npt
import pytest

import cdl
from cdl import callbacks, io, layers
from cdl.text import TextVectorizer, storage

TEXTS = ["The cat sat on the mat", "the dog sat on the log", "a cat and a dog",
         "Ünïcödé wörds ünd ëmöjï 🐈 too"]
PROBE = ["the cat and the dog", "a bird on a mat 🐈", "", "Ünïcödé"]
LENGTH = 12


def split_on_vowels(text):
    return [part for part in re.split("[aeiou]", text) if part]


def no_digits(text):
    return re.sub("[0-9]", "", text)


def sequential(vocabulary):
    return cdl.Sequential([layers.Embedding(vocabulary, 4), layers.GlobalAvgPool1D(),
                           layers.Dense(2)], input_shape=(LENGTH,), seed=0)


def graph(vocabulary):
    ids = cdl.Input(shape=(LENGTH,), dtype="int64", name="ids")
    hidden = layers.GlobalAvgPool1D()(layers.Embedding(vocabulary, 4)(ids))
    return cdl.Model(ids, layers.Dense(2, name="out")(hidden), seed=0)


def vectorizers():
    """name -> (vectorizer, the preprocessor_functions loading needs)."""
    return {
        "words": (TextVectorizer(output_sequence_length=LENGTH).adapt(TEXTS), None),
        "chars": (TextVectorizer(split="character", lowercase=False,
                                 output_sequence_length=LENGTH, max_tokens=40).adapt(TEXTS),
                  None),
        "vowels": (TextVectorizer(split=split_on_vowels, standardize=no_digits,
                                  output_sequence_length=LENGTH).adapt(TEXTS),
                   {"split": split_on_vowels, "standardize": no_digits}),
    }


def assert_same(loaded, original):
    assert loaded.get_config() == original.get_config()
    npt.assert_array_equal(loaded(PROBE), original(PROBE))
    ids = original(PROBE)
    assert loaded.decode(ids) == original.decode(ids)


@pytest.mark.parametrize("make", [sequential, graph])
@pytest.mark.parametrize("kind", ["words", "chars", "vowels"])
def test_a_vectorizer_comes_back_with_the_model(tmp_path, make, kind):
    vectorizer, functions = vectorizers()[kind]
    model = make(vectorizer.vocabulary_size())
    model.compile("adam", "cross_entropy")
    model.preprocessors["text"] = vectorizer
    model.save(tmp_path / "m.cdl")
    loaded = cdl.load_model(tmp_path / "m.cdl",
                            preprocessor_functions=functions and {"text": functions})
    assert list(loaded.preprocessors) == ["text"]
    assert_same(loaded.preprocessors["text"], vectorizer)
    ids = vectorizer(PROBE)
    npt.assert_array_equal(loaded.predict(ids), model.predict(ids))
    # Saved again from the loaded model: byte for byte the same section.
    loaded.save(tmp_path / "again.cdl")
    assert _header(tmp_path / "again.cdl")["preprocessors"] == \
        _header(tmp_path / "m.cdl")["preprocessors"]


def test_several_preprocessors_keep_their_names_and_order(tmp_path):
    model = sequential(50)
    made = vectorizers()
    for name in ("words", "chars"):
        model.preprocessors[name] = made[name][0]
    model.preprocessors["empty"] = TextVectorizer(max_tokens=10)   # not adapted: stored so
    io.save_model(model, tmp_path / "m.cdl")
    loaded = io.load_model(tmp_path / "m.cdl")
    assert list(loaded.preprocessors) == ["words", "chars", "empty"]
    for name in ("words", "chars"):
        assert_same(loaded.preprocessors[name], made[name][0])
    empty = loaded.preprocessors["empty"]
    assert empty.max_tokens == 10 and empty.get_config()["vocabulary"] is None


def test_the_vocabulary_is_in_the_data_section_not_the_header(tmp_path):
    vectorizer = TextVectorizer().set_vocabulary([f"token{i}" for i in range(30_000)])
    model = sequential(10)
    model.preprocessors["big"] = vectorizer
    model.save(tmp_path / "m.cdl")
    header = _header(tmp_path / "m.cdl")
    entry = header["preprocessors"][0]
    assert "vocabulary" not in entry["config"] and entry["vocabulary_size"] == 30_002
    assert len(json.dumps(header)) < 10_000
    tables = {a["name"]: a for a in header["arrays"]}
    assert tables[entry["token_bytes"]]["dtype"] == "uint8"
    assert tables[entry["token_offsets"]]["shape"] == [30_003]
    assert cdl.load_model(tmp_path / "m.cdl").preprocessors["big"].vocabulary() == \
        vectorizer.vocabulary()


def test_a_vocabulary_larger_than_the_header_could_hold_loads(tmp_path):
    # More tokens than the header's 524,288 JSON values.
    tokens = [f"w{i}" for i in range(600_000)]
    model = sequential(10)
    model.preprocessors["text"] = TextVectorizer().set_vocabulary(tokens)
    model.save(tmp_path / "m.cdl")
    assert cdl.load_model(tmp_path / "m.cdl").preprocessors["text"].vocabulary()[2:] == tokens


def test_weights_files_hold_no_preprocessors_and_old_files_give_an_empty_dict(tmp_path):
    model = sequential(50)
    model.preprocessors["text"] = vectorizers()["words"][0]
    model.save_weights(tmp_path / "w.cdl")
    assert "preprocessors" not in _header(tmp_path / "w.cdl")
    other = sequential(50)
    other.load_weights(tmp_path / "w.cdl")
    assert other.preprocessors == {}
    # A file written before the field existed: the same file without it.
    model.preprocessors.clear()
    model.save(tmp_path / "m.cdl")
    header, data = _split(tmp_path / "m.cdl")
    del header["preprocessors"]
    assert cdl.load_model(_forge(tmp_path / "old.cdl", header, data)).preprocessors == {}
    # load_weights reads a model file with preprocessors (and leaves them).
    model.preprocessors["text"] = vectorizers()["words"][0]
    model.save(tmp_path / "m.cdl")
    other.load_weights(tmp_path / "m.cdl")
    assert other.preprocessors == {}


def test_a_missing_function_names_the_preprocessor_and_what_to_pass(tmp_path):
    model = sequential(50)
    model.preprocessors["text"] = vectorizers()["vowels"][0]
    model.save(tmp_path / "m.cdl")
    path = tmp_path / "m.cdl"
    with pytest.raises(ValueError, match=r"preprocessor 'text' was saved with a split function.*"
                                         r"preprocessor_functions=\{'text': \{'split'"):
        cdl.load_model(path)
    with pytest.raises(ValueError, match="preprocessor 'text' was saved with a standardize"):
        cdl.load_model(path, preprocessor_functions={"text": {"split": split_on_vowels}})
    with pytest.raises(ValueError, match=r"names 'txet', but the file's preprocessors are "
                                         r"\['text'\]"):
        cdl.load_model(path, preprocessor_functions={"txet": {"split": split_on_vowels}})
    with pytest.raises(ValueError, match="unknown keys 'tokenize'"):
        cdl.load_model(path, preprocessor_functions={"text": {"tokenize": str.split}})
    with pytest.raises(TypeError, match=r"\['text'\]\['split'\] must be a function"):
        cdl.load_model(path, preprocessor_functions={"text": {"split": "vowels",
                                                              "standardize": no_digits}})
    with pytest.raises(TypeError, match="must be a dict"):
        cdl.load_model(path, preprocessor_functions=[split_on_vowels])
    model.preprocessors["text"] = vectorizers()["words"][0]
    model.save(path)
    with pytest.raises(ValueError, match="has split 'whitespace' in the file"):
        cdl.load_model(path, preprocessor_functions={"text": {"split": str.split}})


def test_checkpoints_carry_the_preprocessors(tmp_path):
    vectorizer = vectorizers()["words"][0]
    x = vectorizer(TEXTS * 4)
    y = np.arange(len(x)) % 2
    model = sequential(vectorizer.vocabulary_size())
    model.compile("adam", "cross_entropy")
    model.preprocessors["text"] = vectorizer
    model.fit(x, y, epochs=1, batch_size=4, verbose=0,
              callbacks=[callbacks.ModelCheckpoint(str(tmp_path / "ckpt.cdl")),
                         callbacks.BackupAndRestore(str(tmp_path / "backup"))])
    assert_same(cdl.load_model(tmp_path / "ckpt.cdl").preprocessors["text"], vectorizer)


@pytest.mark.parametrize("value, match", [
    ({"split": "whitespace"}, r"model.preprocessors\['text'\] is a dict; a model file holds "
                              "only cdl.text.TextVectorizer"),
    (str.split, r"model.preprocessors\['text'\] is a method_descriptor"),
    (layers.Dense(2), r"model.preprocessors\['text'\] is a Dense"),
])
def test_other_values_are_refused_at_save(tmp_path, value, match):
    model = sequential(10)
    model.preprocessors["text"] = value
    with pytest.raises(TypeError, match=match):
        model.save(tmp_path / "m.cdl")
    assert not (tmp_path / "m.cdl").exists()


def test_bad_keys_and_tokens_are_refused_at_save(tmp_path):
    model = sequential(10)
    model.preprocessors[3] = TextVectorizer().adapt(["a"])
    with pytest.raises(TypeError, match="keys must be non-empty strings, got 3"):
        model.save(tmp_path / "m.cdl")
    model.preprocessors = {"text": TextVectorizer().set_vocabulary(["ok", "bad\ud800"])}
    with pytest.raises(ValueError, match=r"'text'\]: token 3 .* lone surrogate"):
        model.save(tmp_path / "m.cdl")
    model.preprocessors = [TextVectorizer()]
    with pytest.raises(TypeError, match="model.preprocessors must be a dict"):
        model.save(tmp_path / "m.cdl")
    assert not (tmp_path / "m.cdl").exists()


# --- wrapped tokenizers ---------------------------------------------------------


class Letters:
    """A stand-in with a tokenizers.Tokenizer's methods: one token per letter."""

    alphabet = "#abcdefghijklmnopqrstuvwxyz"

    def encode(self, text, add_special_tokens=False):
        tokens = [c if c in self.alphabet else "#" for c in text if c != " "]
        return types.SimpleNamespace(tokens=tokens)

    def decode(self, ids, skip_special_tokens=True):
        return "".join(self.alphabet[i] for i in ids)

    def get_vocab(self, with_added_tokens=True):
        return {c: i for i, c in enumerate(self.alphabet)}

    def token_to_id(self, token):
        return self.alphabet.index(token) if len(token) == 1 and token in self.alphabet else None

    def to_str(self):
        return json.dumps({"model": {"type": "Letters", "note": "ünïcödé"}})


def test_a_wrapped_tokenizer_is_stored_as_its_json(tmp_path, monkeypatch):
    vectorizer = TextVectorizer.from_tokenizer(Letters(), oov_token="#",
                                               output_sequence_length=LENGTH)
    model = graph(vectorizer.vocabulary_size())
    model.preprocessors["text"] = vectorizer
    model.save(tmp_path / "m.cdl")
    header = _header(tmp_path / "m.cdl")
    assert "tokenizer" not in header["preprocessors"][0]["config"]
    # The stored JSON goes to tokenizers.Tokenizer.from_str: a stand-in module here.
    seen = []

    def from_str(text):
        seen.append(text)
        return Letters()

    monkeypatch.setitem(sys.modules, "tokenizers",
                        types.SimpleNamespace(Tokenizer=types.SimpleNamespace(from_str=from_str)))
    loaded = cdl.load_model(tmp_path / "m.cdl").preprocessors["text"]
    assert seen == [Letters().to_str()]
    assert_same(loaded, vectorizer)
    monkeypatch.setitem(sys.modules, "tokenizers", None)   # makes ``import tokenizers`` fail
    with pytest.raises(ImportError, match="needs the tokenizers package"):
        cdl.load_model(tmp_path / "m.cdl")


def test_a_stored_tokenizer_that_is_not_utf8_is_refused(tmp_path):
    model = sequential(10)
    model.preprocessors["text"] = TextVectorizer.from_tokenizer(Letters(), oov_token="#")
    model.save(tmp_path / "m.cdl")
    header, data = _split(tmp_path / "m.cdl")
    data = bytearray(data)
    _arrays(header, data)["preprocessors/0/tokenizer_json"][1][3] = 0xC3
    with pytest.raises(io.ModelFileError, match="preprocessor 'text''s tokenizer JSON is not "
                                                "valid UTF-8"):
        cdl.load_model(_forge(tmp_path / "forged.cdl", header, data))
    header["preprocessors"][0]["tokenizer_json"] = None
    with pytest.raises(io.ModelFileError, match="has no tokenizer_json array"):
        cdl.load_model(_forge(tmp_path / "forged.cdl", header, data))


@pytest.mark.parametrize("make", [sequential, graph])
def test_a_real_tokenizer_round_trips(tmp_path, make):
    tokenizers = pytest.importorskip("tokenizers", reason="needs tokenizers "
                                                          "(pip install 'cdl[text]')")
    from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(TEXTS * 10, trainers.BpeTrainer(
        vocab_size=80, special_tokens=["[UNK]", "[PAD]"]))
    vectorizer = TextVectorizer.from_tokenizer(tok, pad_token="[PAD]",
                                               output_sequence_length=LENGTH)
    model = make(vectorizer.vocabulary_size())
    model.preprocessors["text"] = vectorizer
    model.save(tmp_path / "m.cdl")
    assert_same(cdl.load_model(tmp_path / "m.cdl").preprocessors["text"], vectorizer)


# --- hostile files ----------------------------------------------------------------


def _split(path):
    """(header dict, data section) of a file."""
    raw = open(path, "rb").read()
    length = struct.unpack("<Q", raw[12:20])[0]
    return json.loads(raw[20:20 + length]), raw[20 + length:-32]


def _header(path):
    return _split(path)[0]


def _forge(path, header, data):
    """A file around the given parts, with a correct checksum."""
    text = json.dumps(header).encode()
    body = struct.pack("<8sIQ", io.MAGIC, 1, len(text)) + text + bytes(data)
    path.write_bytes(body + hashlib.sha256(body).digest())
    return path


@pytest.fixture
def base(tmp_path):
    """A valid file with a word vectorizer: (header, data section)."""
    model = sequential(20)
    model.compile("adam", "cross_entropy")
    model.preprocessors["text"] = TextVectorizer(max_tokens=20).set_vocabulary(
        ["cat", "dog", "mat", "ünï"])
    model.save(tmp_path / "base.cdl")
    return _split(tmp_path / "base.cdl")


def _arrays(header, data):
    """{name: (table entry, writable array view into ``data``)}."""
    out = {}
    for entry in header["arrays"]:
        dtype = {"uint8": np.uint8, "int64": np.int64, "float64": np.float64}.get(
            entry["dtype"], np.float32)
        view = np.frombuffer(data, dtype=dtype, count=int(np.prod(entry["shape"])),
                             offset=entry["offset"])
        out[entry["name"]] = (entry, view)
    return out


def _offsets_out_of_range(h, d):
    _arrays(h, d)["preprocessors/0/token_offsets"][1][-1] += 5


def _offsets_decreasing(h, d):
    _arrays(h, d)["preprocessors/0/token_offsets"][1][3] = 0


def _offsets_not_from_zero(h, d):
    _arrays(h, d)["preprocessors/0/token_offsets"][1][0] = 1


def _offsets_negative(h, d):
    offsets = _arrays(h, d)["preprocessors/0/token_offsets"][1]
    offsets[1:4] = [-2 ** 62, -2 ** 62, -2 ** 62]


def _not_utf8(h, d):
    token_bytes = _arrays(h, d)["preprocessors/0/token_bytes"][1]
    token_bytes[-1] = 0xFF


def _split_character(h, d):
    # "ünï" cut between the two bytes of "ü": each half is invalid alone.
    offsets = _arrays(h, d)["preprocessors/0/token_offsets"][1]
    offsets[-2] += 1


def _repeated_token(h, d):
    arrays = _arrays(h, d)
    token_bytes, offsets = arrays["preprocessors/0/token_bytes"][1], \
        arrays["preprocessors/0/token_offsets"][1]
    start = offsets[3]
    token_bytes[start:start + 3] = np.frombuffer(b"cat", np.uint8)   # "dog" -> "cat"


def _pad_token_moved(h, d):
    h["preprocessors"][0]["config"]["pad_token"] = "cat"


def _size_disagrees(h, d):
    h["preprocessors"][0]["vocabulary_size"] = 5


def _huge_size(h, d):
    h["preprocessors"][0]["vocabulary_size"] = 2 ** 40


def _huge_offsets_shape(h, d):
    h["preprocessors"][0]["vocabulary_size"] = 2 ** 22
    entry = _arrays(h, d)["preprocessors/0/token_offsets"][0]
    entry["shape"], entry["nbytes"] = [2 ** 22 + 1], (2 ** 22 + 1) * 8


def _huge_bytes_shape(h, d):
    entry = _arrays(h, d)["preprocessors/0/token_bytes"][0]
    entry["shape"], entry["nbytes"] = [2 ** 40], 2 ** 40


def _more_than_max_tokens(h, d):
    h["preprocessors"][0]["config"]["max_tokens"] = 4


def _vocabulary_in_header(h, d):
    h["preprocessors"][0]["config"]["vocabulary"] = ["", "[UNK]"] + ["x"] * 3


def _unknown_class(h, d):
    h["preprocessors"][0]["class_name"] = "os.system"


def _bad_config(h, d):
    h["preprocessors"][0]["config"]["split"] = "eval"


def _unknown_field(h, d):
    h["preprocessors"][0]["code"] = "import os"


def _offsets_wrong_dtype(h, d):
    _arrays(h, d)["preprocessors/0/token_offsets"][0]["dtype"] = "float64"


def _refers_to_params(h, d):
    h["preprocessors"][0]["token_bytes"] = "params"


def _same_array_twice(h, d):
    h["preprocessors"][0]["token_offsets"] = h["preprocessors"][0]["token_bytes"]


def _missing_array(h, d):
    h["preprocessors"][0]["token_bytes"] = "preprocessors/9/token_bytes"


def _uint8_elsewhere(h, d):
    h["buffers"] = h.get("buffers", [])
    entry = _arrays(h, d)["preprocessors/0/token_bytes"][0]
    h["preprocessors"][0].update(vocabulary_size=None, token_bytes=None, token_offsets=None)
    h["arrays"] = [a for a in h["arrays"] if a["name"] != "preprocessors/0/token_offsets"]
    entry["name"] = "optimizer/m"
    h["optimizer"]["state"]["m"] = "optimizer/m"


def _two_with_one_name(h, d):
    h["preprocessors"].append(dict(h["preprocessors"][0]))


def _not_a_list(h, d):
    h["preprocessors"] = {"text": h["preprocessors"][0]}


def _no_bytes_array(h, d):
    h["preprocessors"][0]["token_bytes"] = None


def _tokenizer_without_split(h, d):
    h["preprocessors"][0]["tokenizer_json"] = "preprocessors/0/token_bytes"


HOSTILE = [
    (_offsets_out_of_range, "offsets must start at 0 and end at the 19 bytes"),
    (_offsets_decreasing, "offsets decrease at token 2"),
    (_offsets_not_from_zero, "offsets must start at 0"),
    (_offsets_negative, "offsets decrease at token 0"),
    (_not_utf8, "token 5 is not valid UTF-8"),
    (_split_character, "token 4 is not valid UTF-8"),
    (_repeated_token, "the vocabulary holds 'cat' twice \\(at 2 and 3\\)"),
    (_pad_token_moved, "must start with the padding and OOV tokens"),
    (_size_disagrees, "token_offsets is int64 of shape \\[7\\]; expected int64 of shape \\[6\\]"),
    (_huge_size, "vocabulary_size must be at most 4194304"),
    (_huge_offsets_shape, "lies outside the data section"),
    (_huge_bytes_shape, "lies outside the data section"),
    (_more_than_max_tokens, "vocabulary_size 6, more than its max_tokens 4"),
    (_vocabulary_in_header, "config holds \\['vocabulary'\\], which a file stores as arrays"),
    (_unknown_class, "class_name 'os.system'; a model file holds 'TextVectorizer'"),
    (_bad_config, "split must be one of"),
    (_unknown_field, "unknown fields \\['code'\\]"),
    (_offsets_wrong_dtype, "token_offsets is float64"),
    (_refers_to_params, "refers to 'params', which is not a preprocessor array"),
    (_same_array_twice, "which another field uses too"),
    (_missing_array, "which is not a preprocessor array of the file"),
    (_uint8_elsewhere, "uint8 arrays that are not a preprocessor's: \\['optimizer/m'\\]"),
    (_two_with_one_name, "two preprocessors are named 'text'"),
    (_not_a_list, "preprocessors must be list, got dict"),
    (_tokenizer_without_split, "tokenizer_json array but split 'whitespace'"),
    (_no_bytes_array, "preprocessor 'text' has no token_bytes array"),
]


@pytest.mark.parametrize("mutate, match", HOSTILE, ids=[m.__name__[1:] for m, _ in HOSTILE])
def test_hostile_preprocessors_are_refused_before_large_allocation(tmp_path, base, mutate,
                                                                   match):
    header, data = base
    header = json.loads(json.dumps(header))
    data = bytearray(data)
    mutate(header, data)
    path = _forge(tmp_path / "forged.cdl", header, data)
    tracemalloc.start()
    try:
        with pytest.raises(io.ModelFileError, match=match):
            cdl.load_model(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2 ** 20, f"refusing the file allocated {peak} bytes"
    # load_weights checks the section too (everything but the vocabulary's contents).
    if "offsets" not in mutate.__name__ and mutate not in (
            _not_utf8, _split_character, _repeated_token, _pad_token_moved):
        with pytest.raises(io.ModelFileError, match=match):
            sequential(20).load_weights(path)


def test_the_base_file_of_the_hostile_cases_loads(tmp_path, base):
    loaded = cdl.load_model(_forge(tmp_path / "base.cdl", *base))
    assert loaded.preprocessors["text"].vocabulary() == ["", "[UNK]", "cat", "dog", "mat", "ünï"]


def test_the_storage_limit_is_the_files():
    assert storage.MAX_VOCABULARY == 2 ** 22
