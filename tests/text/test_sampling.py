"""generate: exact greedy decoding with models whose logits are set by hand,
the window a model reads, temperature and top_k semantics, seeds, bad input."""
import numpy as np
import numpy.testing as npt
import pytest

import cdl
from cdl import layers
from cdl.text import generate

V = 10


def counting_model(length=4, vocabulary=V):
    """A Sequential whose logits at each position are the one-hot vector of
    (token + 1) mod vocabulary: greedy decoding counts up."""
    model = cdl.Sequential([layers.Embedding(vocabulary, vocabulary),
                            layers.Dense(vocabulary, use_bias=False)],
                           input_shape=(length,), seed=0)
    model.set_weights([np.roll(np.eye(vocabulary), 1, axis=1), np.eye(vocabulary)])
    return model


def previous_token_model(length=5, vocabulary=V):
    """A causal Conv1D whose logits at position t are the one-hot vector of the
    token at t - 1 (of token 0 at t = 0): greedy decoding repeats the last
    two tokens."""
    model = cdl.Sequential([layers.Embedding(vocabulary, vocabulary),
                            layers.Conv1D(vocabulary, 2, padding="causal", use_bias=False)],
                           input_shape=(length,), seed=0)
    kernel = np.zeros((2, vocabulary, vocabulary))
    kernel[0] = np.eye(vocabulary)
    model.set_weights([np.eye(vocabulary), kernel])
    return model


class Recorder:
    """A model given as a callable: logits one-hot at (token + 1) mod V, and a
    record of every window it reads."""

    def __init__(self, input_shape=None):
        if input_shape is not None:
            self.input_shape = input_shape
        self.windows = []

    def __call__(self, x):
        self.windows.append(np.array(x))
        return np.eye(V)[(np.asarray(x) + 1) % V] * 10.0


class FixedDistribution:
    """Logits that are the same at every position: log(p)."""

    def __init__(self, p):
        with np.errstate(divide="ignore"):   # log(0) = -inf: a token never drawn
            self.logits = np.log(np.asarray(p, dtype=np.float64))

    def __call__(self, x):
        return np.broadcast_to(self.logits, x.shape + self.logits.shape).copy()


def test_greedy_decoding_follows_the_model_exactly():
    model = counting_model()
    npt.assert_array_equal(generate(model, [3], 5, temperature=0), [3, 4, 5, 6, 7, 8])
    npt.assert_array_equal(generate(model, [7, 8], 4, temperature=0), [7, 8, 9, 0, 1, 2])
    out = generate(model, np.array([[0, 1, 2], [5, 5, 5]]), 3, temperature=0)
    npt.assert_array_equal(out, [[0, 1, 2, 3, 4, 5], [5, 5, 5, 6, 7, 8]])
    assert out.dtype == np.int64


def test_greedy_decoding_with_a_graph_model():
    tokens = cdl.Input(shape=(4,))
    logits = layers.Dense(V, use_bias=False)(layers.Embedding(V, V)(tokens))
    model = cdl.Model(tokens, logits, seed=0)
    model.set_weights([np.roll(np.eye(V), 1, axis=1), np.eye(V)])
    npt.assert_array_equal(generate(model, [2], 3, temperature=0), [2, 3, 4, 5])


def test_a_model_of_earlier_positions_sees_the_right_ones_across_the_window():
    """The next token is the one before the last: the sequence alternates, also
    once it is longer than the model's 5 positions and is cut to the last 5,
    and with a context of 2 tokens (the window is padded at the end)."""
    model = previous_token_model(length=5)
    expected = [4, 7, 4, 7, 4, 7, 4, 7, 4, 7, 4, 7]
    npt.assert_array_equal(generate(model, [4, 7], 10, temperature=0), expected)
    npt.assert_array_equal(generate(model, [4, 7], 10, temperature=0, context_length=2),
                           expected)
    # With one token of context the model sees no earlier token: logits of token 0.
    npt.assert_array_equal(generate(model, [4, 7], 3, temperature=0, context_length=1),
                           [4, 7, 0, 0, 0])


def test_the_window_starts_at_position_0_and_is_padded_at_the_end():
    model = Recorder(input_shape=(4,))
    out = generate(model, [1, 2], 4, temperature=0)
    npt.assert_array_equal(out, [1, 2, 3, 4, 5, 6])
    npt.assert_array_equal(np.concatenate(model.windows), [
        [1, 2, 0, 0], [1, 2, 3, 0], [1, 2, 3, 4], [2, 3, 4, 5]])
    model = Recorder(input_shape=(4,))
    generate(model, [1, 2], 3, temperature=0, context_length=2)
    npt.assert_array_equal(np.concatenate(model.windows), [
        [1, 2, 0, 0], [2, 3, 0, 0], [3, 4, 0, 0]])


def test_a_model_without_an_input_length_reads_the_sequence_as_it_grows():
    model = Recorder()
    npt.assert_array_equal(generate(model, [[1], [5]], 3, temperature=0), [[1, 2, 3, 4],
                                                                           [5, 6, 7, 8]])
    assert [w.shape for w in model.windows] == [(2, 1), (2, 2), (2, 3)]
    model = Recorder()
    generate(model, [1, 2, 3], 2, temperature=0, context_length=2)
    assert [w.tolist() for w in model.windows] == [[[2, 3]], [[3, 4]]]


def test_an_unbuilt_model_needs_a_context_length():
    model = cdl.Sequential([layers.Embedding(V, V), layers.Dense(V)], seed=0)
    with pytest.raises(ValueError, match="no input shape yet.*pass context_length"):
        generate(model, [1], 2)
    assert generate(model, [1], 2, context_length=3, seed=0).shape == (3,)
    assert model.input_shape == (3,)


def test_no_new_tokens_returns_the_prompt():
    out = generate(counting_model(), [1, 2], 0)
    npt.assert_array_equal(out, [1, 2])
    assert out.dtype == np.int64


def test_top_k_1_and_temperature_0_are_greedy():
    rng = np.random.default_rng(0)
    model = cdl.Sequential([layers.Embedding(V, 8), layers.Dense(V)], input_shape=(6,), seed=1)
    prompts = rng.integers(0, V, size=(5, 3))
    greedy = generate(model, prompts, 8, temperature=0)
    for seed in range(3):
        npt.assert_array_equal(generate(model, prompts, 8, top_k=1, seed=seed), greedy)
        npt.assert_array_equal(generate(model, prompts, 8, top_k=1, temperature=5.0,
                                        seed=seed), greedy)


def test_ties_go_to_the_lowest_id_in_greedy_and_top_k():
    flat = FixedDistribution(np.ones(V) / V)
    npt.assert_array_equal(generate(flat, [3], 2, temperature=0), [3, 0, 0])
    npt.assert_array_equal(generate(flat, [3], 2, top_k=1, seed=0), [3, 0, 0])
    sampled = generate(flat, np.zeros((500, 1), dtype=int), 1, top_k=3, seed=0)[:, 1]
    assert set(sampled) == {0, 1, 2}


def test_seeds_make_sampling_reproducible():
    model = FixedDistribution(np.ones(V) / V)
    prompts = np.zeros((4, 2), dtype=int)
    a = generate(model, prompts, 20, seed=7)
    npt.assert_array_equal(a, generate(model, prompts, 20, seed=7))
    assert not np.array_equal(a, generate(model, prompts, 20, seed=8))
    npt.assert_array_equal(a, generate(model, prompts, 20, seed=np.random.default_rng(7)))
    # One uniform per sequence per step, in batch order: the first row of a
    # batch of one draws what the first row of the batch of four drew at step 0.
    assert generate(model, prompts[:1], 1, seed=7)[0, 2] == a[0, 2]


def _frequencies(model, n, **kwargs):
    tokens = generate(model, np.zeros((n, 1), dtype=int), 1, **kwargs)[:, 1]
    return np.bincount(tokens, minlength=V) / n


def _assert_close_to(frequencies, p, n):
    """Within 5 standard deviations of the binomial counts, for every token."""
    sigma = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(frequencies - p) <= 5 * sigma + 1e-12), (frequencies, p)


def test_temperature_one_samples_the_softmax_of_the_logits():
    p = np.array([0.4, 0.25, 0.15, 0.1, 0.05, 0.03, 0.02, 0.0, 0.0, 0.0])
    model, n = FixedDistribution(p), 20_000
    frequencies = _frequencies(model, n, seed=0)
    _assert_close_to(frequencies, p, n)
    assert frequencies[7:].sum() == 0   # probability 0 (logit -inf) is never drawn


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_temperature_divides_the_logits(temperature):
    p = np.array([0.4, 0.25, 0.15, 0.1, 0.05, 0.03, 0.01, 0.005, 0.003, 0.002])
    n = 20_000
    expected = p ** (1 / temperature)
    expected /= expected.sum()
    _assert_close_to(_frequencies(FixedDistribution(p), n, temperature=temperature, seed=1),
                     expected, n)


def test_top_k_samples_among_the_k_most_likely_renormalised():
    p = np.array([0.05, 0.3, 0.02, 0.2, 0.1, 0.08, 0.07, 0.06, 0.04, 0.08])
    n = 20_000
    expected = np.where(np.isin(np.arange(V), [1, 3, 4]), p, 0.0)
    expected /= expected.sum()
    frequencies = _frequencies(FixedDistribution(p), n, top_k=3, seed=2)
    _assert_close_to(frequencies, expected, n)
    assert set(np.flatnonzero(frequencies)) == {1, 3, 4}
    npt.assert_array_equal(_frequencies(FixedDistribution(p), 100, top_k=100, seed=2) > 0,
                           _frequencies(FixedDistribution(p), 100, seed=2) > 0)


def test_a_tiny_temperature_is_greedy_without_warnings():
    model = FixedDistribution(np.linspace(1, 2, V))
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        npt.assert_array_equal(generate(model, [0], 3, temperature=1e-300, seed=0),
                               [0, V - 1, V - 1, V - 1])


# --- bad input -----------------------------------------------------------------

@pytest.mark.parametrize("prompt, error, match", [
    ([], ValueError, "prompt_ids is empty"),
    ([[]], ValueError, "prompt_ids is empty"),
    (np.zeros((0, 3), dtype=int), ValueError, "prompt_ids is empty"),
    ([1, -2], ValueError, "negative id -2"),
    ([1.0, 2.0], TypeError, "prompt_ids must be integers, got float64"),
    ([True], TypeError, "prompt_ids must be integers, got bool"),
    ("hello", TypeError, "turn text into ids with a TextVectorizer"),
    (None, TypeError, "got None"),
    ([[1, 2], [3]], ValueError, "one length for every prompt"),
    (np.zeros((1, 1, 1), dtype=int), ValueError, r"got shape \(1, 1, 1\)"),
    ([2 ** 70], ValueError, "too large for int64"),
    (np.array([2 ** 64 - 1], dtype=np.uint64), ValueError, "too large for int64"),
])
def test_bad_prompts_are_refused(prompt, error, match):
    with pytest.raises(error, match=match):
        generate(counting_model(), prompt, 2)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"max_new_tokens": -1}, ValueError, "max_new_tokens must be >= 0"),
    ({"max_new_tokens": 1.5}, TypeError, "max_new_tokens must be an integer"),
    ({"temperature": -0.1}, ValueError, "temperature must be >= 0.0"),
    ({"temperature": float("nan")}, ValueError, "temperature must be finite"),
    ({"top_k": 0}, ValueError, "top_k must be >= 1"),
    ({"seed": -1}, ValueError, "seed must be >= 0"),
    ({"seed": "0"}, TypeError, "seed must be a number"),
    ({"context_length": 0}, ValueError, "context_length must be >= 1"),
    ({"context_length": 5}, ValueError, "context_length 5 exceeds the model's input length 4"),
])
def test_bad_settings_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        generate(counting_model(), [1], **{"max_new_tokens": 2, **kwargs})


def test_models_of_the_wrong_kind_are_refused():
    with pytest.raises(TypeError, match="model must be a cdl model or a callable"):
        generate("gpt", [1], 2)
    classifier = cdl.Sequential([layers.Embedding(V, 4), layers.Flatten(), layers.Dense(V)],
                                input_shape=(3,), seed=0)
    with pytest.raises(ValueError, match=r"output of shape \(1, 10\); generate needs logits of "
                                         r"shape \(batch, T, vocabulary_size\)"):
        generate(classifier, [1], 2)
    images = cdl.Sequential([layers.Dense(2)], input_shape=(3, 4), seed=0)
    with pytest.raises(ValueError, match=r"input shape is \(3, 4\).*of shape \(T,\)"):
        generate(images, [1], 2)
    with pytest.raises(ValueError, match="returned 2 outputs"):
        generate(lambda x: [x, x], [1], 2)


def test_nan_and_empty_distributions_are_refused():
    nan = FixedDistribution(np.ones(V))
    nan.logits[3] = np.nan
    with pytest.raises(ValueError, match="logits at step 0 hold NaN"):
        generate(nan, [1], 2)
    nothing = FixedDistribution(np.zeros(V))
    with pytest.raises(ValueError, match="all -inf for a sequence"):
        generate(nothing, [1], 2, seed=0)
