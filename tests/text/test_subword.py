"""TextVectorizer.from_tokenizer: a Hugging Face tokenizer as the split, its
vocabulary, decoding through it, saving it, and its absence.

The tests with a real ``tokenizers.Tokenizer`` (trained here, offline, on a
few sentences) skip without the package (``pip install 'cdl[text]'``); those
with a stand-in object of the same methods run everywhere."""
import json
import sys

import numpy as np
import numpy.testing as npt
import pytest

from cdl.text import TextVectorizer

SENTENCES = ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog"] * 10


@pytest.fixture
def tokenizer():
    """A BPE tokenizer with SentencePiece-style spaces, so that its decoder
    gives the (lowercased) text back."""
    tokenizers = pytest.importorskip("tokenizers", reason="needs tokenizers "
                                                          "(pip install 'cdl[text]')")
    from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=80,
                                  special_tokens=["[UNK]", "[PAD]", "[CLS]", "[SEP]"])
    tok.train_from_iterator(SENTENCES, trainer)
    return tok


def test_the_vocabulary_is_the_tokenizers_with_padding_and_oov_first(tokenizer):
    vectorizer = TextVectorizer.from_tokenizer(tokenizer, pad_token="[PAD]")
    by_id = [t for t, _ in sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])]
    assert vectorizer.vocabulary() == ["[PAD]", "[UNK]"] + [
        t for t in by_id if t not in ("[PAD]", "[UNK]")]
    assert vectorizer.vocabulary_size() == tokenizer.get_vocab_size()
    assert vectorizer.split == "tokenizer" and vectorizer.tokenizer is tokenizer
    default = TextVectorizer.from_tokenizer(tokenizer)
    assert default.vocabulary()[:3] == ["", "[UNK]", "[PAD]"]


def test_texts_become_the_ids_of_the_tokenizers_tokens(tokenizer):
    vectorizer = TextVectorizer.from_tokenizer(tokenizer, output_sequence_length=12)
    texts = ["The cats sat", "a dog, on the log"]
    ids = vectorizer(texts)
    vocabulary = vectorizer.vocabulary()
    for row, text in zip(ids, texts):
        tokens = tokenizer.encode(text, add_special_tokens=False).tokens
        assert [vocabulary[i] for i in row[:len(tokens)]] == tokens
        assert not row[len(tokens):].any()
    assert 1 in ids[1]   # "," is not in the tokenizer's alphabet: its [UNK], our OOV


def test_decode_goes_through_the_tokenizers_decoder(tokenizer):
    vectorizer = TextVectorizer.from_tokenizer(tokenizer, output_sequence_length=10)
    assert vectorizer.decode(vectorizer(["The cats sat on a mat"])) == ["the cats sat on a mat"]
    assert vectorizer.decode(vectorizer("a dog, sat")) == "a dog[UNK] sat"
    assert vectorizer.decode(vectorizer("the cat"), separator="|") == "▁the|▁cat"


def test_special_tokens_and_lowercasing_are_the_callers_choice(tokenizer):
    from tokenizers import processors

    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    vectorizer = TextVectorizer.from_tokenizer(tokenizer, add_special_tokens=True)
    vocabulary = vectorizer.vocabulary()
    assert [vocabulary[i] for i in vectorizer("the cat")] == ["[CLS]", "▁the", "▁cat", "[SEP]"]
    plain = TextVectorizer.from_tokenizer(tokenizer)
    assert [vocabulary[i] for i in plain("the cat")] == ["▁the", "▁cat"]


def test_with_max_tokens_adapt_learns_the_most_frequent_subwords(tokenizer):
    vectorizer = TextVectorizer.from_tokenizer(tokenizer, max_tokens=6)
    assert repr(vectorizer) == "TextVectorizer(not adapted)"
    vectorizer.adapt(SENTENCES)
    counts = {}
    for sentence in SENTENCES:
        for token in tokenizer.encode(sentence).tokens:
            counts[token] = counts.get(token, 0) + 1
    learned = sorted(counts, key=lambda t: (counts[t], t), reverse=True)[:4]
    assert vectorizer.vocabulary() == ["", "[UNK]"] + learned


def test_save_and_load_keep_the_tokenizer(tokenizer, tmp_path):
    vectorizer = TextVectorizer.from_tokenizer(tokenizer, output_sequence_length=8,
                                               pad_token="[PAD]")
    vectorizer.save(tmp_path / "v.json")
    saved = json.loads((tmp_path / "v.json").read_text())["config"]
    assert saved["split"] == "tokenizer" and saved["add_special_tokens"] is False
    assert json.loads(saved["tokenizer"])["model"]["type"] == "BPE"
    loaded = TextVectorizer.load(tmp_path / "v.json")
    assert loaded.get_config() == vectorizer.get_config()
    texts = ["the dog sat on a cat", "mats and logs"]
    npt.assert_array_equal(loaded(texts), vectorizer(texts))
    assert loaded.decode(loaded(texts)) == vectorizer.decode(vectorizer(texts))
    adapted = TextVectorizer.from_tokenizer(tokenizer, max_tokens=5).adapt(SENTENCES)
    adapted.save(tmp_path / "a.json")
    assert TextVectorizer.load(tmp_path / "a.json").vocabulary() == adapted.vocabulary()


def test_a_forged_tokenizer_is_refused(tokenizer, tmp_path):
    vectorizer = TextVectorizer.from_tokenizer(tokenizer)
    config = vectorizer.get_config()
    config["tokenizer"] = '{"model": "not a model"'
    with pytest.raises(ValueError, match="config: the stored tokenizer could not be read"):
        TextVectorizer.from_config(config)


# --- without the tokenizers package ------------------------------------------

class Letters:
    """A stand-in with a tokenizers.Tokenizer's methods: one token per letter,
    ids by alphabet, '#' for anything else."""

    alphabet = "#abcdefghijklmnopqrstuvwxyz"

    def encode(self, text, add_special_tokens=False):
        tokens = [c if c in self.alphabet else "#" for c in text if c != " "]
        return type("Encoding", (), {"tokens": tokens})()

    def decode(self, ids, skip_special_tokens=True):
        return "".join(self.alphabet[i] for i in ids)

    def get_vocab(self, with_added_tokens=True):
        return {c: i for i, c in enumerate(self.alphabet)}

    def token_to_id(self, token):
        return self.alphabet.index(token) if len(token) == 1 and token in self.alphabet else None

    def to_str(self):
        return json.dumps({"model": {"type": "Letters"}})


def test_any_object_with_the_methods_can_be_wrapped():
    vectorizer = TextVectorizer.from_tokenizer(Letters(), oov_token="#")
    assert vectorizer.vocabulary() == ["", "#"] + list("abcdefghijklmnopqrstuvwxyz")
    ids = vectorizer(["ab c!"])
    npt.assert_array_equal(ids, [[2, 3, 4, 1]])
    assert vectorizer.decode(ids) == ["abc#"]
    other = TextVectorizer.from_tokenizer(Letters())   # its "#" is an ordinary token here
    assert other.decode([3, 1, 2]) == "a [UNK] #"


def test_loading_a_stored_tokenizer_without_the_package_says_what_to_install(
        tmp_path, monkeypatch):
    TextVectorizer.from_tokenizer(Letters()).save(tmp_path / "v.json")
    monkeypatch.setitem(sys.modules, "tokenizers", None)   # makes ``import tokenizers`` fail
    with pytest.raises(ImportError, match=r"needs the tokenizers package: pip install "
                                          r"'cdl\[text\]'"):
        TextVectorizer.load(tmp_path / "v.json")


@pytest.mark.parametrize("tokenizer, match", [
    ("bert-base-uncased", "got a str \\(a name or a path\\?\\): load it first"),
    (object(), "got a object, without encode, decode, get_vocab, token_to_id, to_str"),
])
def test_things_that_are_not_tokenizers_are_refused(tokenizer, match):
    with pytest.raises(TypeError, match=match):
        TextVectorizer.from_tokenizer(tokenizer)


def test_a_tokenizer_given_as_split_points_to_from_tokenizer():
    with pytest.raises(TypeError, match="wrap a tokenizers.Tokenizer with "
                                        "TextVectorizer.from_tokenizer"):
        TextVectorizer(split=Letters())


def test_bad_tokenizer_outputs_are_named():
    class Broken(Letters):
        def encode(self, text, add_special_tokens=False):
            return type("Encoding", (), {"tokens": [1, 2]})()

    with pytest.raises(TypeError, match="the tokenizer gave a token that is not a str: 1"):
        TextVectorizer.from_tokenizer(Broken())(["a"])

    class Empty(Letters):
        def get_vocab(self, with_added_tokens=True):
            return {}

    with pytest.raises(ValueError, match="the tokenizer's vocabulary is empty"):
        TextVectorizer.from_tokenizer(Empty())
    assert TextVectorizer.from_tokenizer(Empty(), max_tokens=5).adapt(["ab"]).vocabulary() == \
        ["", "[UNK]", "b", "a"]


def test_flags_of_from_tokenizer_are_checked():
    with pytest.raises(TypeError, match="add_special_tokens must be True or False"):
        TextVectorizer.from_tokenizer(Letters(), add_special_tokens="yes")
    assert TextVectorizer.from_tokenizer(Letters(), add_special_tokens=np.True_).get_config()[
        "add_special_tokens"] is True
