"""cdl.explain.attention_scores and attention_rollout: the weights against a
hand-written softmax(Q K^T / sqrt(d)), names inside Transformer blocks,
batches, masks, the rollout against a hand computation, the model left as
it was, and the refused cases."""
import numpy as np
import pytest

import cdl
from cdl import explain, layers


def tiny(**keywords):
    return cdl.Sequential([layers.MultiHeadAttention(2, 3, name="att", **keywords)],
                          input_shape=(4, 6), dtype="float64", seed=0)


def x_of(n=5, t=4, e=6, seed=0):
    return np.random.default_rng(seed).standard_normal((n, t, e))


def manual_scores(mha, x, causal=False):
    """softmax(Q K^T / sqrt(d)) per head, from the layer's weights."""
    h, d = mha.num_heads, mha.key_dim
    q = (x @ mha.query_kernel + mha.query_bias).reshape(x.shape[0], x.shape[1], h, d)
    k = (x @ mha.key_kernel + mha.key_bias).reshape(x.shape[0], x.shape[1], h, d)
    s = np.einsum("nqhd,nkhd->nhqk", q, k) / np.sqrt(d)
    if causal:
        s = np.where(np.tril(np.ones(s.shape[-2:], bool)), s, -np.inf)
    s = np.exp(s - s.max(axis=-1, keepdims=True))
    return s / s.sum(axis=-1, keepdims=True)


def test_scores_are_the_softmax_of_the_scaled_products():
    model = tiny()
    x = x_of()
    scores = explain.attention_scores(model, x)
    assert list(scores) == ["att"]
    np.testing.assert_allclose(scores["att"], manual_scores(model.layers[0], x), rtol=1e-12)
    causal = tiny(causal=True)
    got = explain.attention_scores(causal, x)["att"]
    np.testing.assert_allclose(got, manual_scores(causal.layers[0], x, causal=True),
                               rtol=1e-12, atol=1e-300)
    assert (got[..., np.triu_indices(4, 1)[0], np.triu_indices(4, 1)[1]] == 0).all()


def test_batches_give_the_same_scores_and_inference_has_no_dropout():
    model = tiny(dropout=0.5)
    x = x_of(7)
    whole = explain.attention_scores(model, x)["att"]
    np.testing.assert_array_equal(explain.attention_scores(model, x, batch_size=3)["att"],
                                  whole)
    np.testing.assert_allclose(whole, manual_scores(model.layers[0], x), rtol=1e-12)


@pytest.mark.parametrize("flag", [False, True])
def test_the_model_is_left_as_it_was(flag):
    model = tiny(return_attention_scores=flag)
    layer = model.layers[0]
    before = model.forward(x_of(2, seed=3))
    kept = layer.last_attention_scores
    params, grads = model.param_buffer.copy(), model.grad_buffer.copy()
    explain.attention_scores(model, x_of(5))
    explain.attention_rollout(model, x_of(5))
    assert layer.return_attention_scores is flag
    assert layer.last_attention_scores is kept
    np.testing.assert_array_equal(model.param_buffer, params)
    np.testing.assert_array_equal(model.grad_buffer, grads)
    np.testing.assert_array_equal(model.forward(x_of(2, seed=3)), before)


def test_blocks_are_named_by_block_and_role():
    target, memory = cdl.Input((4, 8), name="target"), cdl.Input((6, 8), name="memory")
    encoded = layers.TransformerEncoder(2, dim_feedforward=8, name="encoder")(memory)
    decoded = layers.TransformerDecoder(2, dim_feedforward=8, name="decoder")(
        [target, encoded])
    out = layers.MultiHeadAttention(1, 4, name="top")(decoded)
    model = cdl.Model([target, memory], out, seed=0, dtype="float64")
    xs = {"target": x_of(3, 4, 8), "memory": x_of(3, 6, 8, seed=1)}
    scores = explain.attention_scores(model, xs)
    assert list(scores) == ["encoder/self_attention", "decoder/self_attention",
                            "decoder/cross_attention", "top"]
    assert scores["encoder/self_attention"].shape == (3, 2, 6, 6)
    assert scores["decoder/cross_attention"].shape == (3, 2, 4, 6)
    decoder_self = scores["decoder/self_attention"]
    assert (decoder_self[..., 0, 1:] == 0).all()            # causal by default
    for s in scores.values():
        np.testing.assert_allclose(s.sum(axis=-1), 1.0)
    only = explain.attention_scores(model, xs, layers="decoder/cross_attention")
    np.testing.assert_array_equal(only["decoder/cross_attention"],
                                  scores["decoder/cross_attention"])
    with pytest.raises(ValueError, match="cross-attention"):
        explain.attention_rollout(model, xs)
    with pytest.raises(ValueError, match="one sequence length"):
        explain.attention_rollout(model, xs, layers=["encoder/self_attention", "top"])
    rollout = explain.attention_rollout(model, xs, layers=["decoder/self_attention", "top"])
    assert rollout.shape == (3, 4, 4)


def test_padded_keys_get_weight_zero():
    model = cdl.Sequential([layers.Embedding(10, 8, mask_zero=True),
                            layers.TransformerEncoder(2, dim_feedforward=8, name="enc"),
                            layers.TransformerEncoder(2, dim_feedforward=8, name="enc2")],
                           input_shape=(5,), dtype="float64", seed=0)
    tokens = np.array([[3, 4, 5, 0, 0], [1, 2, 3, 4, 0]])
    scores = explain.attention_scores(model, tokens)
    for s in scores.values():
        assert (s[0, :, :, 3:] == 0).all() and (s[1, :, :, 4:] == 0).all()
        assert (s[0, :, :, :3] > 0).all()
    rollout = explain.attention_rollout(model, tokens)
    assert (rollout[0, :3, 3:] == 0).all() and (rollout[1, :4, 4:] == 0).all()
    np.testing.assert_allclose(rollout.sum(axis=-1), 1.0)


def test_rollout_is_the_hand_computed_product():
    model = cdl.Sequential([layers.MultiHeadAttention(3, 2, name="a"),
                            layers.MultiHeadAttention(2, 3, causal=True, name="b"),
                            layers.MultiHeadAttention(2, 2, name="c")],
                           input_shape=(4, 6), dtype="float64", seed=1)
    x = x_of(3)
    scores = explain.attention_scores(model, x)
    expected = np.empty((3, 4, 4))
    for n in range(3):
        result = np.eye(4)
        for name in ("a", "b", "c"):
            w = scores[name][n].mean(axis=0) + np.eye(4)
            w = w / w.sum(axis=1, keepdims=True)
            result = w @ result
        expected[n] = result
    np.testing.assert_allclose(explain.attention_rollout(model, x), expected, rtol=1e-12)
    maxed = explain.attention_rollout(model, x, layers=["b"], head_fusion="max")
    w = scores["b"].max(axis=1) + np.eye(4)
    np.testing.assert_allclose(maxed, w / w.sum(axis=-1, keepdims=True), rtol=1e-12)
    assert (maxed[:, np.triu_indices(4, 1)[0], np.triu_indices(4, 1)[1]] == 0).all()


def test_errors_name_what_is_wrong():
    plain = cdl.Sequential([layers.Dense(3)], input_shape=(4,), seed=0)
    with pytest.raises(ValueError, match="no attention layer"):
        explain.attention_scores(plain, np.ones((2, 4)))
    with pytest.raises(ValueError, match="no attention layer"):
        explain.attention_rollout(plain, np.ones((2, 4)))
    model = tiny()
    with pytest.raises(ValueError, match="unknown attention layer.*'nope'.*'att'"):
        explain.attention_scores(model, x_of(), layers="nope")
    with pytest.raises(TypeError, match="layers must be"):
        explain.attention_scores(model, x_of(), layers=3)
    with pytest.raises(ValueError, match="head_fusion"):
        explain.attention_rollout(model, x_of(), head_fusion="median")
    with pytest.raises(ValueError, match="batch_size"):
        explain.attention_scores(model, x_of(), batch_size=0)
    with pytest.raises(ValueError):
        explain.attention_scores(model, np.ones((2, 3, 6)))      # wrong length
    with pytest.raises(TypeError, match="cdl.Sequential or cdl.Model"):
        explain.attention_scores(model.layers[0], x_of())
    q, v = cdl.Input((4, 6), name="q"), cdl.Input((5, 6), name="v")
    cross = cdl.Model([q, v], layers.MultiHeadAttention(1, 2, name="x")([q, v]), seed=0)
    with pytest.raises(ValueError, match="'x' is a cross-attention"):
        explain.attention_rollout(cross, [x_of(2), x_of(2, 5)])
    a, b = cdl.Input((4, 6), name="a"), cdl.Input((4, 6), name="b")
    shared = layers.MultiHeadAttention(1, 2, name="shared")
    twice = cdl.Model([a, b], layers.Add()([shared(a), shared(b)]), seed=0)
    with pytest.raises(ValueError, match="'shared' is called 2 times"):
        explain.attention_scores(twice, [x_of(2), x_of(2)])


def test_a_free_time_axis_gives_scores_of_the_inputs_length():
    model = cdl.Sequential([layers.MultiHeadAttention(2, 4, name="att", rope=True),
                            layers.TransformerEncoder(2, 8, name="enc")],
                           input_shape=(None, 6), dtype="float64", seed=0)
    for steps in (2, 6):
        x = x_of(3, steps)
        scores = explain.attention_scores(model, x)
        assert scores["att"].shape == (3, 2, steps, steps)
        assert scores["enc/self_attention"].shape == (3, 2, steps, steps)
        assert explain.attention_rollout(model, x).shape == (3, steps, steps)
