"""Recurrent layers' call-time options: any number of time steps, padding
(lengths, mask_value, a model's padding mask), initial_state and
return_state, against PyTorch's packed sequences and finite differences."""
import numpy as np
import pytest

import cdl
from cdl import layers
from helpers import assert_allclose, random_array

CELLS = [layers.SimpleRNN, layers.LSTM, layers.GRU]
IDS = [cls.__name__ for cls in CELLS]
LENGTHS = np.array([5, 2, 4, 1])


def _n_states(cls):
    return 2 if cls is layers.LSTM else 1


def _layer(cls, features, bidirectional=False, seed=5, **kwargs):
    """A float64 layer (or Bidirectional) built for ``features``, with
    non-zero biases."""
    rnn = cls(3, dtype="float64", **kwargs)
    layer = layers.Bidirectional(rnn, dtype="float64") if bidirectional else rnn
    layer.forward(np.zeros((1, 2, features)))
    rng = np.random.default_rng(seed)
    subs = [layer.forward_layer, layer.backward_layer] if bidirectional else [layer]
    for sub in subs:
        sub.input_bias[...] = rng.normal(0, 0.3, sub.input_bias.shape)
        sub.recurrent_bias[...] = rng.normal(0, 0.3, sub.recurrent_bias.shape)
    return layer


def _torch_module(torch, cls, layer, features, bidirectional):
    kind = {layers.SimpleRNN: torch.nn.RNN, layers.LSTM: torch.nn.LSTM,
            layers.GRU: torch.nn.GRU}[cls]
    module = kind(features, 3, batch_first=True, bidirectional=bidirectional).double()
    subs = ([("", layer.forward_layer), ("_reverse", layer.backward_layer)] if bidirectional
            else [("", layer)])
    with torch.no_grad():
        for suffix, sub in subs:
            getattr(module, "weight_ih_l0" + suffix).copy_(torch.from_numpy(sub.input_kernel.T.copy()))
            getattr(module, "weight_hh_l0" + suffix).copy_(
                torch.from_numpy(sub.recurrent_kernel.T.copy()))
            getattr(module, "bias_ih_l0" + suffix).copy_(torch.from_numpy(sub.input_bias.copy()))
            getattr(module, "bias_hh_l0" + suffix).copy_(torch.from_numpy(sub.recurrent_bias.copy()))
    return module, subs


# --- PyTorch parity with packed sequences -------------------------------------

@pytest.mark.parametrize("cls", CELLS, ids=IDS)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("return_sequences", [False, True], ids=["last", "seq"])
@pytest.mark.parametrize("source", ["lengths", "mask_value"])
def test_packed_sequences_match_pytorch(cls, bidirectional, return_sequences, source):
    """Outputs, final states and every gradient (weights, input, initial
    state) equal PyTorch's on pack_padded_sequence, with an initial state
    given at call time and the final state returned."""
    torch = pytest.importorskip("torch")
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
    n, steps, features = 4, 5, 3
    x = random_array((n, steps, features), seed=11)
    real = np.arange(steps)[None, :] < LENGTHS[:, None]
    kwargs = {"mask_value": -7.0} if source == "mask_value" else {}
    x[~real] = -7.0 if source == "mask_value" else 0.0
    layer = _layer(cls, features, bidirectional, return_sequences=return_sequences,
                   return_state=True, **kwargs)
    directions = 2 if bidirectional else 1
    k = _n_states(cls)
    h0 = random_array((directions, n, 3), seed=12)
    c0 = random_array((directions, n, 3), seed=13)
    initial = []
    for d in range(directions):
        initial += [h0[d], c0[d]][:k]
    outs = layer.forward(x, initial_state=initial,
                         lengths=LENGTHS if source == "lengths" else None)
    y, states = outs[0], outs[1:]
    ry = random_array(y.shape, seed=14)
    rs = [random_array(s.shape, seed=15 + i) for i, s in enumerate(states)]
    dx, *dinitial = layer.backward([ry, *rs])

    module, subs = _torch_module(torch, cls, layer, features, bidirectional)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    h0t = torch.from_numpy(h0).requires_grad_(True)
    c0t = torch.from_numpy(c0).requires_grad_(True)
    packed = pack_padded_sequence(xt, torch.from_numpy(LENGTHS), batch_first=True,
                                  enforce_sorted=False)
    out, hn = module(packed, (h0t, c0t) if cls is layers.LSTM else h0t)
    hn, cn = hn if cls is layers.LSTM else (hn, None)
    padded, _ = pad_packed_sequence(out, batch_first=True, total_length=steps)
    yt = padded if return_sequences else torch.cat(list(hn), dim=-1)
    st = []
    for d in range(directions):
        st += [hn[d], cn[d]][:k] if cn is not None else [hn[d]]
    loss = (yt * torch.from_numpy(ry)).sum() + sum(
        (s * torch.from_numpy(r)).sum() for s, r in zip(st, rs))
    loss.backward()

    assert_allclose(y, yt.detach().numpy())
    for mine, theirs in zip(states, st):
        assert_allclose(mine, theirs.detach().numpy())
    assert_allclose(dx, xt.grad.numpy())
    expected = []
    for d in range(directions):
        expected += [h0t.grad[d], c0t.grad[d]] if k == 2 else [h0t.grad[d]]
    assert len(dinitial) == len(expected)
    for mine, theirs in zip(dinitial, expected):
        assert_allclose(mine, theirs.numpy())
    for suffix, sub in subs:
        assert_allclose(sub.input_kernel_grad, getattr(module, "weight_ih_l0" + suffix).grad.numpy().T)
        assert_allclose(sub.recurrent_kernel_grad,
                        getattr(module, "weight_hh_l0" + suffix).grad.numpy().T)
        assert_allclose(sub.input_bias_grad, getattr(module, "bias_ih_l0" + suffix).grad.numpy())
        assert_allclose(sub.recurrent_bias_grad,
                        getattr(module, "bias_hh_l0" + suffix).grad.numpy())


# --- finite differences ---------------------------------------------------------

def _numeric_check(layer, x, initial, lengths, seed=20):
    """Central differences of sum(outputs * R) w.r.t. the input (real steps),
    every weight and the initial states, against ``backward``."""
    def outputs():
        out = layer.forward(x, initial_state=initial, lengths=lengths)
        return out if isinstance(out, list) else [out]
    first = outputs()
    rs = [random_array(o.shape, seed=seed + i) for i, o in enumerate(first)]
    grads = layer.backward(rs if layer.return_state else rs[0])
    if initial is not None:
        dx, dinitial = grads[0], grads[1:]
    else:
        dx, dinitial = grads, []
    analytic = {owner.name + "." + name: getattr(owner, name + "_grad").copy()
                for owner, name in layer.weight_owners()}

    def numeric(array):
        out = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            saved = array[index]
            array[index] = saved + 1e-6
            up = sum(np.sum(o * r) for o, r in zip(outputs(), rs))
            array[index] = saved - 1e-6
            down = sum(np.sum(o * r) for o, r in zip(outputs(), rs))
            array[index] = saved
            out[index] = (up - down) / 2e-6
        return out

    for owner, name in layer.weight_owners():
        assert_allclose(analytic[owner.name + "." + name], numeric(getattr(owner, name)),
                        rtol=1e-6, atol=1e-8)
    assert_allclose(dx, numeric(x), rtol=1e-6, atol=1e-8)
    for mine, state in zip(dinitial, initial or []):
        assert_allclose(mine, numeric(state), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("cls", CELLS, ids=IDS)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("return_sequences", [False, True], ids=["last", "seq"])
def test_gradcheck_lengths_initial_state_return_state(cls, bidirectional, return_sequences):
    x = random_array((3, 4, 2), seed=21)
    lengths = np.array([4, 1, 3])
    layer = _layer(cls, 2, bidirectional, return_sequences=return_sequences,
                   return_state=True)
    count = _n_states(cls) * (2 if bidirectional else 1)
    initial = [random_array((3, 3), seed=22 + i) for i in range(count)]
    _numeric_check(layer, x, initial, lengths)


@pytest.mark.parametrize("cls", CELLS, ids=IDS)
def test_gradcheck_go_backwards_with_lengths(cls):
    x = random_array((3, 4, 2), seed=31)
    layer = _layer(cls, 2, go_backwards=True, return_sequences=True)
    _numeric_check(layer, x, None, np.array([2, 4, 0]))


# --- any number of time steps --------------------------------------------------

@pytest.mark.parametrize("cls", CELLS, ids=IDS)
def test_any_number_of_steps_per_call(cls):
    layer = _layer(cls, 3, return_sequences=True)
    x = random_array((2, 6, 3), seed=1)
    long = layer.forward(x)
    short = layer.forward(x[:, :4])
    assert long.shape == (2, 6, 3) and short.shape == (2, 4, 3)
    assert_allclose(short, long[:, :4])
    # Steps past a sequence's length change nothing before them.
    assert_allclose(layer.forward(x, lengths=[4, 4])[:, :4], short)
    with pytest.raises(ValueError, match=r"expects 3-D inputs \(batch, time steps, 3\)"):
        layer.forward(random_array((2, 6, 4)))


def test_embedding_and_dense_take_a_free_time_axis():
    ids = cdl.Input(shape=(None,), name="ids")
    seq = layers.Dense(2, name="d")(layers.Embedding(7, 3, mask_zero=True, name="e")(ids))
    out = layers.LSTM(2, name="rnn")(seq)
    model = cdl.Model(ids, out, dtype="float64", seed=0)
    tokens = np.array([[1, 2, 0], [3, 0, 0]])
    short = model.predict(tokens)
    # Padding past each sequence's end changes nothing.
    assert_allclose(model.predict(np.pad(tokens, ((0, 0), (0, 4)))), short)


def test_sequential_and_graph_with_a_free_time_axis(tmp_path):
    model = cdl.Sequential([layers.GRU(4, return_sequences=True), layers.Dense(2),
                            layers.LSTM(3), layers.Dense(1)],
                           input_shape=(None, 5), dtype="float64", seed=0)
    for steps in (3, 7):
        assert model.predict(random_array((2, steps, 5))).shape == (2, 1)
    x = cdl.Input(shape=(None, 5), name="x")
    out = layers.Dense(1, name="out")(layers.LSTM(3, name="rnn")(x))
    graph = cdl.Model(x, out, dtype="float64", seed=0)
    assert graph.predict(random_array((2, 9, 5))).shape == (2, 1)
    for m in (model, graph):
        path = tmp_path / f"{type(m).__name__}.cdl"
        m.save(path)
        loaded = cdl.load_model(path)
        x3 = random_array((3, 4, 5), seed=3)
        assert_allclose(loaded.predict(x3), m.predict(x3))
    cdl.gradcheck(graph, random_array((2, 3, 5), seed=4))


def test_a_free_axis_is_refused_by_layers_that_need_its_size():
    x = cdl.Input(shape=(None, 4))
    with pytest.raises(ValueError, match="cannot call layer"):
        layers.Flatten()(x)
    with pytest.raises(ValueError, match="free axis"):
        cdl.Sequential([layers.Flatten(), layers.Dense(2)], input_shape=(None, 4)).build()
    with pytest.raises(ValueError, match="only the time axis may be None"):
        layers.LSTM(2)(cdl.Input(shape=(4, None)))


# --- masks through models ---------------------------------------------------------

@pytest.mark.parametrize("cls", CELLS, ids=IDS)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_embedding_mask_equals_lengths(cls, bidirectional):
    tokens = np.array([[3, 1, 4, 0, 0], [2, 0, 0, 0, 0], [5, 6, 2, 1, 3]])
    lengths = (tokens != 0).sum(axis=1)
    rnn = cls(3, return_sequences=True)
    rnn_layer = layers.Bidirectional(rnn) if bidirectional else rnn
    ids = cdl.Input(shape=(5,), name="ids")
    emb = layers.Embedding(7, 4, mask_zero=True, name="emb")
    seq = rnn_layer(emb(ids))
    pooled = layers.GlobalAvgPool1D(name="pool")(seq)
    model = cdl.Model(ids, [seq, pooled], dtype="float64", seed=1)
    y, p = model.predict(tokens)
    expected = rnn_layer.forward(emb.forward(tokens), lengths=lengths)
    assert_allclose(y, expected)
    # The padding mask reached the pooling: the mean over real steps only.
    means = np.stack([expected[i, :lengths[i]].mean(axis=0) for i in range(3)])
    assert_allclose(p, means)
    # Every weight's gradient through the masked recurrence and pooling.
    cdl.gradcheck(model, tokens)


def test_a_convolution_drops_the_padding_mask():
    """Conv1D mixes real and padded steps, so no mask follows it (as Keras):
    the pooling after it averages every step."""
    tokens = np.array([[3, 1, 0, 0], [2, 5, 6, 0]])
    ids = cdl.Input(shape=(4,))
    conv = layers.Conv1D(2, 3, padding="same", name="conv")(
        layers.Embedding(7, 3, mask_zero=True, name="emb")(ids))
    pooled = layers.GlobalAvgPool1D()(layers.GRU(2, return_sequences=True, name="gru")(conv))
    model = cdl.Model(ids, pooled, dtype="float64", seed=0)
    gru, conv_layer, emb = (model.get_layer(n) for n in ("gru", "conv", "emb"))
    expected = gru.forward(conv_layer.forward(emb.forward(tokens))).mean(axis=1)
    assert_allclose(model.predict(tokens), expected)


def test_mask_value_starts_a_mask_for_the_layers_after():
    x = random_array((2, 4, 3), seed=7)
    x[0, 2:] = 0.0
    inp = cdl.Input(shape=(4, 3))
    seq = layers.GRU(2, return_sequences=True, mask_value=0.0, name="gru")(inp)
    model = cdl.Model(inp, layers.GlobalAvgPool1D()(seq), dtype="float64", seed=0)
    gru = model.layers[0]
    y = gru.forward(x)
    assert_allclose(model.predict(x)[0], y[0, :2].mean(axis=0))
    assert_allclose(model.predict(x)[1], y[1].mean(axis=0))
    # go_backwards: the output (and its mask) are in step order.
    back = layers.GRU(2, return_sequences=True, mask_value=0.0, go_backwards=True,
                      dtype="float64")
    yb = back.forward(x)
    assert np.all(yb[0, :2] == 0) and np.all(yb[0, 2:] != 0)
    assert back.compute_mask(None).tolist() == [[False, False, True, True], [True] * 4]


# --- initial_state and return_state in graph models ---------------------------------

@pytest.mark.parametrize("cls", CELLS, ids=IDS)
def test_graph_initial_state_and_return_state(cls, tmp_path):
    """An encoder's final state starts a decoder; gradients flow from the
    returned states and into the initial state (finite differences)."""
    k = _n_states(cls)
    src = cdl.Input(shape=(None, 3), name="src")
    tgt = cdl.Input(shape=(None, 2), name="tgt")
    encoded = cls(4, return_state=True, name="encoder")(src)
    assert isinstance(encoded, list) and len(encoded) == 1 + k
    assert [t.shape for t in encoded] == [(4,)] * (1 + k)
    decoded = cls(4, return_sequences=True, return_state=True, name="decoder")(
        tgt, initial_state=encoded[1:])
    out = layers.Dense(1, name="out")(decoded[0])
    model = cdl.Model([src, tgt], [out, decoded[1]], dtype="float64", seed=2)
    xs = [random_array((2, 5, 3), seed=8), random_array((2, 3, 2), seed=9)]
    cdl.gradcheck(model, xs)
    # The same as the layers called on arrays.
    enc, dec = model.layers[0], model.layers[1]
    states = enc.forward(xs[0])[1:]
    seq, h = dec.forward(xs[1], initial_state=states)[:2]
    y, hy = model.predict(xs)
    assert_allclose(hy, h)
    path = tmp_path / "seq2seq.cdl"
    model.save(path)
    loaded = cdl.load_model(path)
    for mine, theirs in zip(loaded.predict(xs), model.predict(xs)):
        assert_allclose(mine, theirs)
    model.summary(print_fn=lambda line: None)


def test_bidirectional_return_state_in_a_graph():
    x = cdl.Input(shape=(None, 3))
    outs = layers.Bidirectional(layers.LSTM(2, return_state=True), name="bi")(x)
    assert len(outs) == 5 and outs[0].shape == (4,)
    model = cdl.Model(x, [outs[0], outs[2], outs[4]], dtype="float64", seed=0)
    cdl.gradcheck(model, random_array((2, 4, 3), seed=5))


def test_trainable_initial_state_is_replaced_by_a_call_time_one():
    layer = _layer(layers.GRU, 2, trainable_initial_state=True)
    x = random_array((2, 3, 2), seed=1)
    h0 = random_array((2, 3), seed=2)
    y = layer.forward(x, initial_state=[h0])
    dx, dh0 = layer.backward(np.ones_like(y))
    assert np.all(layer.initial_h_grad == 0) and dh0.shape == (2, 3)
    layer.initial_h[...] = 5.0
    assert_allclose(layer.forward(x, initial_state=[h0]), y)


# --- bad calls ---------------------------------------------------------------------

def test_bad_call_arguments_raise():
    lstm = _layer(layers.LSTM, 2)
    x = random_array((2, 3, 2))
    with pytest.raises(ValueError, match=r"lengths of .* has shape \(3,\), expected \(2,\)"):
        lstm.forward(x, lengths=[1, 2, 3])
    with pytest.raises(ValueError, match="between 0 and the 3 time steps"):
        lstm.forward(x, lengths=[1, 4])
    with pytest.raises(TypeError, match="must be integers"):
        lstm.forward(x, lengths=[1.5, 2.0])
    with pytest.raises(TypeError, match="must be an array of ints"):
        lstm.forward(x, lengths="12")
    with pytest.raises(ValueError, match=r"must be a list \[h, c\]"):
        lstm.forward(x, initial_state=[np.zeros((2, 3))])
    with pytest.raises(ValueError, match=r"initial state c .* has shape \(2, 2\), expected"):
        lstm.forward(x, initial_state=[np.zeros((2, 3)), np.zeros((2, 2))])
    with pytest.raises(ValueError, match="padding mask of"):
        lstm.input_mask = np.ones((2, 4), dtype=bool)
        try:
            lstm.forward(x)
        finally:
            lstm.input_mask = None
    stateful = _layer(layers.GRU, 2, return_state=True)
    stateful.forward(x)
    with pytest.raises(ValueError, match="its gradient is a list of 2"):
        stateful.backward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="several outputs"):
        cdl.Sequential([layers.GRU(2, return_state=True)], input_shape=(3, 2)).build()
    with pytest.raises(TypeError, match="lengths is given with arrays"):
        layers.GRU(2)(cdl.Input(shape=(3, 2)), lengths=[1])
    with pytest.raises(TypeError, match="return_state must be"):
        layers.GRU(2, return_state="yes")


def test_old_configs_load_without_the_new_arguments():
    config = layers.LSTM(3, return_sequences=True).get_config()
    del config["return_state"]
    layer = layers.LSTM.from_config(config)
    assert layer.return_state is False
    bi = layers.Bidirectional.from_config(
        {"name": "bi", "merge_mode": "sum", "layer": {"class_name": "GRU", "config": config}})
    assert bi.return_state is False and not bi.forward_layer.return_state
