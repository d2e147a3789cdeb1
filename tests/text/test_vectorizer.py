"""TextVectorizer: the vocabulary against hand counts, ids, padding, splits,
decoding, configs, streaming adapt in bounded memory, and bad input."""
import random
import tracemalloc
from collections import Counter

import numpy as np
import numpy.testing as npt
import pytest

import cdl
from cdl.data import NotFittedError
from cdl.text import TextVectorizer

CORPUS = ["The cat sat on the mat.", "the dog sat on the log", "A cat and a dog"]


def hand_vocabulary(texts, max_tokens=None, tokenize=str.split):
    """The vocabulary by the documented rule, computed independently: counts,
    then frequency descending with ties in reverse code-point order (Keras'
    lexsort of (tokens, counts), reversed)."""
    counts = Counter(token for text in texts for token in tokenize(text.lower()))
    counts.pop("", None)
    counts.pop("[UNK]", None)
    by_count = {}
    for token, count in counts.items():
        by_count.setdefault(count, []).append(token)
    learned = [token for count in sorted(by_count, reverse=True)
               for token in sorted(by_count[count], reverse=True)]
    if max_tokens is not None:
        learned = learned[:max_tokens - 2]
    return ["", "[UNK]"] + learned


def test_the_vocabulary_orders_tokens_by_count_then_as_keras_breaks_ties():
    vectorizer = TextVectorizer().adapt(CORPUS)
    # Counts: the 3, sat 2, on 2, cat 2, dog 2, a 2, then once each: mat., log, and.
    assert vectorizer.vocabulary() == [
        "", "[UNK]", "the", "sat", "on", "dog", "cat", "a", "mat.", "log", "and"]
    assert vectorizer.vocabulary() == hand_vocabulary(CORPUS)
    assert vectorizer.vocabulary_size() == 11
    assert vectorizer.vocabulary(include_special_tokens=False) == vectorizer.vocabulary()[2:]


@pytest.mark.parametrize("max_tokens", [2, 3, 5, 11, 100])
def test_max_tokens_keeps_the_most_frequent(max_tokens):
    vectorizer = TextVectorizer(max_tokens=max_tokens).adapt(CORPUS)
    assert vectorizer.vocabulary() == hand_vocabulary(CORPUS, max_tokens)
    assert vectorizer.vocabulary_size() == min(max_tokens, 11)


def test_the_vocabulary_does_not_depend_on_the_order_of_the_texts():
    rng = random.Random(0)
    words = [f"w{rng.randrange(40)}" for _ in range(2000)]
    texts = [" ".join(words[i:i + 10]) for i in range(0, 2000, 10)]
    shuffled = texts[:]
    rng.shuffle(shuffled)
    a = TextVectorizer(max_tokens=20).adapt(texts).vocabulary()
    b = TextVectorizer(max_tokens=20).adapt(shuffled).vocabulary()
    assert a == b == hand_vocabulary(texts, 20)


def test_ids_are_vocabulary_indices_and_unknown_tokens_are_one():
    vectorizer = TextVectorizer().adapt(CORPUS)
    vocab = vectorizer.vocabulary()
    ids = vectorizer(["the dog ate the cat"])
    expected = [vocab.index("the"), vocab.index("dog"), 1, vocab.index("the"), vocab.index("cat")]
    npt.assert_array_equal(ids, [expected])
    assert ids.dtype == np.int64


def test_the_special_tokens_in_texts_are_not_counted_and_map_to_their_indices():
    # Lowercasing comes first: "[UNK]" in a text becomes the ordinary token "[unk]".
    vectorizer = TextVectorizer().adapt(["[unk] x [UNK] [UNK] y y"])
    assert vectorizer.vocabulary() == ["", "[UNK]", "[unk]", "y", "x"]
    lower = TextVectorizer(lowercase=False).adapt(["[UNK] [UNK] z"])
    assert lower.vocabulary() == ["", "[UNK]", "z"]
    npt.assert_array_equal(lower(["z [UNK]"]), [[2, 1]])
    with pytest.raises(ValueError, match="adapt found no tokens"):
        TextVectorizer(lowercase=False).adapt(["[UNK] [UNK]"])


def test_output_sequence_length_pads_and_cuts_at_the_end():
    vectorizer = TextVectorizer(output_sequence_length=4).adapt(["a b c d e f"])
    index = {t: i for i, t in enumerate(vectorizer.vocabulary())}
    out = vectorizer(["a b", "a b c d e f", ""])
    npt.assert_array_equal(out, [[index["a"], index["b"], 0, 0],
                                 [index["a"], index["b"], index["c"], index["d"]],
                                 [0, 0, 0, 0]])
    vectorizer.output_sequence_length = 2
    assert vectorizer(["a b c"]).shape == (1, 2)


def test_without_a_length_each_batch_is_padded_to_its_longest_text():
    vectorizer = TextVectorizer().adapt(["a b c d e f"])
    assert vectorizer(["a", "a b c"]).shape == (2, 3)
    assert vectorizer(["a b c d e"]).shape == (1, 5)
    assert vectorizer([]).shape == (0, 0)
    assert vectorizer(["", ""]).shape == (2, 0)


def test_one_text_gives_one_row_and_batches_may_be_arrays_or_generators():
    vectorizer = TextVectorizer(output_sequence_length=3).adapt(["a b c"])
    single = vectorizer("a b")
    assert single.shape == (3,)
    npt.assert_array_equal(vectorizer(np.array(["a b", "c"])), vectorizer(["a b", "c"]))
    npt.assert_array_equal(vectorizer(t for t in ["a b", "c"]), vectorizer(["a b", "c"]))
    npt.assert_array_equal(vectorizer(["a b"])[0], single)


def test_decode_round_trips_known_tokens_and_skips_padding():
    vectorizer = TextVectorizer(output_sequence_length=12).adapt(CORPUS)
    texts = ["the cat sat on the mat.", "a dog and a cat"]
    ids = vectorizer(texts)
    assert vectorizer.decode(ids) == texts
    assert vectorizer.decode(ids[0]) == texts[0]
    assert vectorizer.decode(vectorizer(["the bird"])) == ["the [UNK]"]
    assert vectorizer.decode([0, 2, 0, 2]) == "the the"
    assert vectorizer.decode(ids.tolist(), separator="_") == [t.replace(" ", "_") for t in texts]
    assert vectorizer.decode([]) == ""


def test_character_split():
    vectorizer = TextVectorizer(split="character", lowercase=False).adapt(["abracadabra"])
    assert vectorizer.vocabulary() == hand_vocabulary(["abracadabra"], tokenize=list)
    assert vectorizer.vocabulary()[2] == "a"
    assert vectorizer.tokenize("Ab c") == ["A", "b", " ", "c"]
    text = "abc cab"
    assert vectorizer.decode(vectorizer(text)) == "abc[UNK]cab"   # the space is unknown
    unicode = TextVectorizer(split="character").adapt(["naïve café ☕"])
    assert unicode.decode(unicode("café")) == "café"


def test_callable_split_and_standardize():
    split = lambda text: text.split("-")   # noqa: E731
    vectorizer = TextVectorizer(split=split, standardize=lambda t: t.replace("_", "-"))
    vectorizer.adapt(["x-y_y", "Z"])
    assert vectorizer.vocabulary() == ["", "[UNK]", "y", "z", "x"]
    npt.assert_array_equal(vectorizer(["x_z-w"]), [[4, 3, 1]])
    assert vectorizer.decode([4, 3]) == "x z"
    assert vectorizer.decode([4, 3], separator="-") == "x-z"


def test_standardize_strip_punctuation_removes_ascii_punctuation_after_lowercasing():
    vectorizer = TextVectorizer(standardize="strip_punctuation")
    assert vectorizer.tokenize("Don't STOP, (now)! «ok»") == ["dont", "stop", "now", "«ok»"]
    assert TextVectorizer(lowercase=False).tokenize("A b") == ["A", "b"]


def test_adapt_again_replaces_the_vocabulary():
    vectorizer = TextVectorizer().adapt(["a a b"])
    vectorizer.adapt(["c"])
    assert vectorizer.vocabulary() == ["", "[UNK]", "c"]


def test_set_vocabulary_takes_learned_tokens_or_a_whole_vocabulary():
    vectorizer = TextVectorizer(max_tokens=4)
    assert vectorizer.set_vocabulary(["b", "a"]).vocabulary() == ["", "[UNK]", "b", "a"]
    assert vectorizer.set_vocabulary(["", "[UNK]", "c"]).vocabulary() == ["", "[UNK]", "c"]
    with pytest.raises(ValueError, match="holds 'a' twice"):
        vectorizer.set_vocabulary(["a", "a"])
    with pytest.raises(ValueError, match="the OOV token '\\[UNK\\]', which is always at index 1"):
        vectorizer.set_vocabulary(["a", "[UNK]"])
    with pytest.raises(ValueError, match="more than max_tokens 4"):
        vectorizer.set_vocabulary(["a", "b", "c"])
    with pytest.raises(ValueError, match="empty"):
        vectorizer.set_vocabulary([])
    with pytest.raises(TypeError, match=r"vocabulary\[1\] is a int"):
        vectorizer.set_vocabulary(["a", 1])
    with pytest.raises(TypeError, match="list of str"):
        vectorizer.set_vocabulary("abc")


def test_streaming_adapt_keeps_counts_not_texts():
    """100,000 lines, about 6 MB of text, from a generator: the peak of the
    memory Python allocates stays far below the text's size (it holds a
    count per distinct token and one line at a time)."""
    n_lines, words_per_line = 100_000, 8
    total = [0]

    def lines():
        rng = random.Random(0)
        for _ in range(n_lines):
            line = " ".join(f"word{rng.randrange(500)}" for _ in range(words_per_line))
            total[0] += len(line)
            yield line

    vectorizer = TextVectorizer(max_tokens=100)
    tracemalloc.start()
    try:
        vectorizer.adapt(lines())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total[0] > 5_000_000
    assert peak < total[0] / 20, f"peak {peak} bytes for {total[0]} bytes of text"
    assert vectorizer.vocabulary_size() == 100
    # The same vocabulary as counting the whole text at once.
    rng = random.Random(0)
    words = [f"word{rng.randrange(500)}" for _ in range(n_lines * words_per_line)]
    assert vectorizer.vocabulary() == hand_vocabulary([" ".join(words)], 100)


def test_configs_round_trip():
    vectorizer = TextVectorizer(max_tokens=9, output_sequence_length=6, split="character",
                                lowercase=False, oov_token="?", pad_token="_",
                                standardize="strip_punctuation").adapt(["Hello, world"])
    config = vectorizer.get_config()
    assert config == {"max_tokens": 9, "output_sequence_length": 6, "split": "character",
                      "lowercase": False, "standardize": "strip_punctuation",
                      "oov_token": "?", "pad_token": "_",
                      "vocabulary": vectorizer.vocabulary()}
    again = TextVectorizer.from_config(config)
    assert again.get_config() == config
    npt.assert_array_equal(again(["Hello there"]), vectorizer(["Hello there"]))
    assert TextVectorizer().get_config()["vocabulary"] is None
    assert TextVectorizer.from_config(TextVectorizer().get_config()).get_config() == \
        TextVectorizer().get_config()


def test_a_config_with_functions_needs_them_again():
    def split(text):
        return text.split(",")

    vectorizer = TextVectorizer(split=split, standardize=str.strip).adapt(["a,b"])
    config = vectorizer.get_config()
    assert config["split"] == config["standardize"] == "callable"
    with pytest.raises(ValueError, match="split function, which a config cannot hold"):
        TextVectorizer.from_config(config, standardize=str.strip)
    with pytest.raises(ValueError, match="standardize function"):
        TextVectorizer.from_config(config, split=split)
    again = TextVectorizer.from_config(config, split=split, standardize=str.strip)
    npt.assert_array_equal(again([" a,b "]), vectorizer([" a,b "]))
    with pytest.raises(ValueError, match="split is 'whitespace' in the config"):
        TextVectorizer.from_config(TextVectorizer().get_config(), split=split)


def test_cdl_exposes_the_package_lazily():
    assert cdl.text.TextVectorizer is TextVectorizer
    assert "text" in cdl.__all__


def test_repr():
    assert repr(TextVectorizer()) == "TextVectorizer(not adapted)"
    assert repr(TextVectorizer(output_sequence_length=3).adapt(["a"])) == \
        "TextVectorizer(vocabulary_size=3, output_sequence_length=3)"


# --- bad input -----------------------------------------------------------------

@pytest.mark.parametrize("texts, error, match", [
    ("one text", TypeError, "not a single str: wrap one text in a list"),
    (b"bytes", TypeError, "not a single bytes"),
    (None, TypeError, "iterable of str, got NoneType"),
    (5, TypeError, "iterable of str, got int"),
    (["ok", 5], TypeError, r"texts\[1\] must be a str, got int"),
    (["ok", None], TypeError, r"texts\[1\] must be a str, got None"),
    ([b"bytes"], TypeError, r"texts\[0\] is bytes; decode it first"),
    (np.array([["a"]]), ValueError, "1-D array of strings"),
    ([], ValueError, "adapt found no tokens"),
    (["", "   "], ValueError, "adapt found no tokens"),
])
def test_adapt_refuses_bad_texts(texts, error, match):
    with pytest.raises(error, match=match):
        TextVectorizer().adapt(texts)


@pytest.mark.parametrize("texts, error, match", [
    (["ok", 5], TypeError, r"texts\[1\] must be a str"),
    ([None], TypeError, r"texts\[0\] must be a str, got None"),
    (b"bytes", TypeError, "not a single bytes"),
    ([bytearray(b"x")], TypeError, "is bytes; decode it first"),
    (3.5, TypeError, "iterable of str, got float"),
])
def test_calls_refuse_bad_texts(texts, error, match):
    vectorizer = TextVectorizer().adapt(["ok"])
    with pytest.raises(error, match=match):
        vectorizer(texts)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"max_tokens": 1}, ValueError, "max_tokens must be >= 2"),
    ({"max_tokens": 0}, ValueError, "max_tokens must be >= 2"),
    ({"max_tokens": 2.5}, TypeError, "max_tokens must be an integer"),
    ({"max_tokens": True}, TypeError, "max_tokens must be a number"),
    ({"max_tokens": "10"}, TypeError, "max_tokens must be a number"),
    ({"output_sequence_length": 0}, ValueError, "output_sequence_length must be >= 1"),
    ({"split": "words"}, ValueError, "split must be 'whitespace', 'character' or a function"),
    ({"split": "tokenizer"}, ValueError, "TextVectorizer.from_tokenizer"),
    ({"split": 3}, TypeError, "split must be"),
    ({"lowercase": 1}, TypeError, "lowercase must be True or False"),
    ({"standardize": "lower"}, ValueError, "standardize must be None, 'strip_punctuation'"),
    ({"oov_token": None}, TypeError, "oov_token must be a str"),
    ({"pad_token": b""}, TypeError, "pad_token must be a str"),
    ({"oov_token": "x", "pad_token": "x"}, ValueError, "must differ"),
])
def test_the_constructor_refuses_bad_settings(kwargs, error, match):
    with pytest.raises(error, match=match):
        TextVectorizer(**kwargs)


def test_lowercase_accepts_numpy_bools():
    assert TextVectorizer(lowercase=np.False_).lowercase is False


def test_use_before_adapt_is_refused():
    vectorizer = TextVectorizer()
    for call in (lambda: vectorizer(["a"]), lambda: vectorizer.decode([1]),
                 vectorizer.vocabulary, vectorizer.vocabulary_size):
        with pytest.raises(NotFittedError, match="call adapt or set_vocabulary"):
            call()


def test_bad_split_and_standardize_functions_are_named():
    with pytest.raises(TypeError, match="returned a str; it must return the list"):
        TextVectorizer(split=lambda t: t).adapt(["ab"])
    with pytest.raises(TypeError, match="token that is not a str: 3"):
        TextVectorizer(split=lambda t: [3]).adapt(["ab"])
    with pytest.raises(TypeError, match="standardize function returned a list"):
        TextVectorizer(standardize=lambda t: [t]).adapt(["ab"])


@pytest.mark.parametrize("ids, error, match", [
    ([0, 99], ValueError, r"id 99 is outside the vocabulary \[0, 3\)"),
    ([-1], ValueError, "id -1 is outside"),
    ([1.0, 2.0], TypeError, "ids must be integers, got an array of float64"),
    (["a"], TypeError, "ids must be integers"),
    (np.zeros((1, 1, 1), dtype=int), ValueError, "1-D.*2-D"),
    (3, ValueError, r"got shape \(\)"),
])
def test_decode_refuses_bad_ids(ids, error, match):
    vectorizer = TextVectorizer().adapt(["a"])
    with pytest.raises(error, match=match):
        vectorizer.decode(ids)


def test_decode_refuses_a_separator_that_is_not_a_str():
    with pytest.raises(TypeError, match="separator must be a str"):
        TextVectorizer().adapt(["a"]).decode([2], separator=1)
