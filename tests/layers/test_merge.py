"""The merge layers (Add, Subtract, Multiply, Average, Maximum, Minimum, Dot and
Concatenate's merge form): gradients, parity with PyTorch, dtypes, bad
input and configuration; and Concatenate's block form alongside."""
import json
import warnings

import numpy as np
import pytest

import cdl
from cdl import layers
from helpers import GRADCHECK_TOL, random_array

ELEMENTWISE = ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"]

#: (factory, per-sample input shapes, expected per-sample output shape) of Dot.
DOT_CASES = {
    "vectors": (lambda: layers.Dot(1), [(4,), (4,)], (1,)),
    "vectors_negative": (lambda: layers.Dot(-1), [(4,), (4,)], (1,)),
    "cosine": (lambda: layers.Dot(1, normalize=True), [(4,), (4,)], (1,)),
    "attention": (lambda: layers.Dot(2), [(3, 4), (5, 4)], (3, 5)),
    "attention_cosine": (lambda: layers.Dot(-1, normalize=True), [(3, 4), (5, 4)], (3, 5)),
    "first_axes": (lambda: layers.Dot(1), [(3, 4), (3, 5)], (4, 5)),
    "pair": (lambda: layers.Dot((2, 1)), [(3, 4), (4, 2)], (3, 2)),
    "pair_cosine": (lambda: layers.Dot((1, 2), normalize=True), [(3, 4), (2, 3)], (4, 2)),
    "rank3_vector": (lambda: layers.Dot((-1, 1)), [(2, 3, 4), (4,)], (2, 3)),
    "vector_matrix": (lambda: layers.Dot(1), [(4,), (4, 3)], (3,)),
    "middle_axes": (lambda: layers.Dot((2, 2)), [(2, 3, 4), (2, 3, 5)], (2, 4, 2, 5)),
}

#: (factory, per-sample input shapes, expected output shape) of Concatenate's merge form.
CONCAT_CASES = {
    "last": (lambda: layers.Concatenate(), [(2, 3), (2, 1)], (2, 4)),
    "first": (lambda: layers.Concatenate(axis=1), [(2, 3), (4, 3)], (6, 3)),
    "positional": (lambda: layers.Concatenate(1), [(3,), (2,), (1,)], (6,)),
    "middle": (lambda: layers.Concatenate(axis=-2), [(2, 1, 3), (2, 2, 3)], (2, 3, 3)),
}


def _elementwise(name):
    return getattr(layers, name)()


def _count(name):
    return (2,) if name == "Subtract" else (2, 3)


def _distinct_inputs(n, shape, seed):
    """n arrays of ``shape`` whose values all differ by at least 0.05, so
    that the finite differences of Maximum/Minimum never cross a tie."""
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    values = rng.permutation(n * size) * 0.1 - 0.05 * n * size + rng.uniform(0, 0.04, n * size)
    return [values[i * size:(i + 1) * size].reshape(shape) for i in range(n)]


# --- gradients ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ELEMENTWISE)
@pytest.mark.parametrize("shape", [(3,), (2, 3), (2, 1, 3)], ids=str)
def test_elementwise_gradcheck(name, shape):
    for n in _count(name):
        xs = _distinct_inputs(n, (4,) + shape, seed=n)
        errors = cdl.gradcheck(_elementwise(name), xs)
        assert sorted(errors) == [f"input_{i}" for i in range(n)]
        assert max(errors.values()) < GRADCHECK_TOL, errors


def test_multiply_gradcheck_of_many_inputs_and_zeros():
    xs = [random_array((3, 4), seed=s) for s in range(5)]
    xs[2][0, 1] = 0.0   # a zero input: no division in the gradient
    xs[3][0, 1] = 0.0
    errors = cdl.gradcheck(layers.Multiply(), xs)
    assert len(errors) == 5 and max(errors.values()) < GRADCHECK_TOL


@pytest.mark.parametrize("case", sorted(DOT_CASES))
def test_dot_gradcheck(case):
    make, shapes, out_shape = DOT_CASES[case]
    xs = [random_array((3,) + s, seed=i) for i, s in enumerate(shapes)]
    layer = make()
    assert layer(xs).shape == (3,) + out_shape
    errors = cdl.gradcheck(layer, xs)
    assert max(errors.values()) < GRADCHECK_TOL, errors


@pytest.mark.parametrize("case", sorted(CONCAT_CASES))
def test_concatenate_merge_gradcheck(case):
    make, shapes, out_shape = CONCAT_CASES[case]
    xs = [random_array((3,) + s, seed=i) for i, s in enumerate(shapes)]
    layer = make()
    y = layer(xs)
    assert y.shape == (3,) + out_shape
    errors = cdl.gradcheck(layer, xs)
    assert max(errors.values()) < GRADCHECK_TOL, errors


def test_gradcheck_of_a_list_layer_needs_a_list():
    with pytest.raises(TypeError, match="list of inputs"):
        cdl.gradcheck(layers.Add(), random_array((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        cdl.gradcheck(layers.Add(), [random_array((2, 3)), np.full((2, 3), np.nan)])


# --- parity with PyTorch ----------------------------------------------------------------

def _torch_elementwise(torch, name, ts):
    if name == "Add":
        out = ts[0]
        for t in ts[1:]:
            out = out + t
        return out
    if name == "Subtract":
        return ts[0] - ts[1]
    if name == "Multiply":
        out = ts[0]
        for t in ts[1:]:
            out = out * t
        return out
    stacked = torch.stack(ts)
    return {"Average": lambda: stacked.mean(0), "Maximum": lambda: stacked.amax(0),
            "Minimum": lambda: stacked.amin(0)}[name]()


def _torch_dot(torch, layer, ts):
    """Keras' Dot written with torch.einsum, independent of cdl's reshapes."""
    shapes = [tuple(t.shape[1:]) for t in ts]
    ax, ay = layer._resolve_axes(shapes)
    if layer.normalize:
        ts = [torch.nn.functional.normalize(ts[0], dim=ax + 1, eps=1e-7),
              torch.nn.functional.normalize(ts[1], dim=ay + 1, eps=1e-7)]
    letters = iter("cdefghijklmn")
    xs = [next(letters) for _ in shapes[0]]
    ys = [next(letters) for _ in shapes[1]]
    ys[ay] = xs[ax]
    out = [c for i, c in enumerate(xs) if i != ax] + [c for i, c in enumerate(ys) if i != ay]
    z = torch.einsum(f"b{''.join(xs)},b{''.join(ys)}->b{''.join(out)}", *ts)
    return z.reshape(z.shape[0], -1) if not out else z


def _check_torch_parity(torch64, layer, xs, reference):
    ts = [torch64.tensor(x, requires_grad=True) for x in xs]
    expected = reference(ts)
    y = layer(xs)
    np.testing.assert_allclose(y, expected.detach().numpy(), rtol=1e-12, atol=1e-12)
    grad = np.random.default_rng(5).standard_normal(y.shape)
    expected.backward(torch64.tensor(grad))
    dxs = layer.backward(grad)
    assert len(dxs) == len(xs)
    for dx, t in zip(dxs, ts):
        np.testing.assert_allclose(dx, t.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ELEMENTWISE)
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
def test_elementwise_matches_torch(torch64, name, ties):
    rng = np.random.default_rng(3)
    for n in _count(name):
        shape = (5, 2, 3)
        # Small whole numbers tie often: Maximum/Minimum must share as torch's amax does.
        xs = [rng.integers(-2, 3, shape).astype(np.float64) if ties
              else rng.standard_normal(shape) for _ in range(n)]
        if ties:
            xs[-1][0] = xs[0][0]   # whole rows tied
        _check_torch_parity(torch64, _elementwise(name), xs,
                            lambda ts: _torch_elementwise(torch64, name, ts))


@pytest.mark.parametrize("case", sorted(DOT_CASES))
def test_dot_matches_torch(torch64, case):
    make, shapes, _ = DOT_CASES[case]
    xs = [random_array((4,) + s, seed=10 + i) for i, s in enumerate(shapes)]
    layer = make()
    if layer.normalize:
        ax = layer._resolve_axes(shapes)[0]
        # A vector of zeros and a tiny one: their norms are below epsilon.
        np.moveaxis(xs[0], ax + 1, -1)[0, ...] = 0.0
        np.moveaxis(xs[0], ax + 1, -1)[1, ...] *= 1e-9
    _check_torch_parity(torch64, layer, xs, lambda ts: _torch_dot(torch64, layer, ts))


@pytest.mark.parametrize("case", sorted(CONCAT_CASES))
def test_concatenate_matches_torch(torch64, case):
    make, shapes, _ = CONCAT_CASES[case]
    xs = [random_array((3,) + s, seed=20 + i) for i, s in enumerate(shapes)]
    layer = make()
    _check_torch_parity(torch64, layer, xs, lambda ts: torch64.cat(ts, dim=layer.axis))


def test_nan_propagates_as_in_torch(torch64):
    xs = [np.array([[1.0, np.nan, 3.0]]), np.array([[2.0, 0.0, np.nan]])]
    for name in ("Maximum", "Minimum", "Add", "Multiply"):
        layer = _elementwise(name)
        ts = [torch64.tensor(x, requires_grad=True) for x in xs]
        expected = _torch_elementwise(torch64, name, ts)
        with warnings.catch_warnings():
            warnings.simplefilter("error")    # no division warnings either
            y = layer(xs)
            dxs = layer.backward(np.ones_like(y))
        expected.backward(torch64.ones_like(expected))
        np.testing.assert_array_equal(y, expected.detach().numpy())
        for dx, t in zip(dxs, ts):
            np.testing.assert_array_equal(dx, t.grad.numpy())


def test_dot_matches_keras_example():
    """Keras' documented example of Dot(axes=(1, 2))."""
    x = np.arange(10.0).reshape(1, 5, 2)
    y = np.arange(10.0, 20.0).reshape(1, 2, 5)
    np.testing.assert_array_equal(layers.Dot(axes=(1, 2))([x, y]),
                                  [[[260.0, 360.0], [320.0, 445.0]]])


# --- dtypes and layouts -----------------------------------------------------------------

def _all_merge_layers():
    cases = [(name, _elementwise, [(2, 3)] * 2) for name in ELEMENTWISE]
    cases += [(f"Dot_{case}", lambda _, c=case: DOT_CASES[c][0](), DOT_CASES[case][1])
              for case in ("vectors", "attention_cosine", "pair")]
    cases += [(f"Concatenate_{case}", lambda _, c=case: CONCAT_CASES[c][0](),
               CONCAT_CASES[case][1]) for case in ("last", "first")]
    return [pytest.param(name, make, shapes, id=name) for name, make, shapes in cases]


@pytest.mark.parametrize("name, make, shapes", _all_merge_layers())
def test_dtype_is_kept_and_outputs_are_contiguous(name, make, shapes, dtype):
    xs = [random_array((3,) + s, dtype, seed=i) for i, s in enumerate(shapes)]
    layer = make(name.split("_")[0])
    y = layer(xs)
    assert layer.dtype == dtype and y.dtype == dtype and y.flags.c_contiguous
    dxs = layer.backward(np.ones_like(y))
    for dx, x in zip(dxs, xs):
        assert dx.dtype == dtype and dx.shape == x.shape and dx.flags.c_contiguous
    # Odd layouts and another dtype give the same result as clean copies.
    odd = [np.asfortranarray(xs[0]), xs[1][::-1][::-1].astype(np.float64)]
    np.testing.assert_array_equal(layer(odd + xs[2:]), y)
    # The caller's arrays are untouched.
    for x, copy in zip(xs, [x.copy() for x in xs]):
        np.testing.assert_array_equal(x, copy)


def test_the_dtype_is_the_first_inputs_or_the_layers():
    a32, b64 = np.ones((2, 3), np.float32), np.ones((2, 3))
    assert layers.Add()([a32, b64]).dtype == np.float32
    assert layers.Add()([b64, a32]).dtype == np.float64
    assert layers.Add()([np.ones((2, 3), int), a32]).dtype == np.float32
    assert layers.Multiply(dtype="float64")([a32, a32]).dtype == np.float64


def test_no_input_gradient_when_not_needed():
    layer = layers.Dot(1)
    y = layer([np.ones((2, 3)), np.ones((2, 3))])
    layer._input_grad_needed = False
    try:
        assert layer.backward(np.ones_like(y)) == [None, None]
    finally:
        layer._input_grad_needed = True


def test_flops_per_sample():
    assert layers.Add().flops_per_sample([(3, 4)] * 3) == 2 * 12
    assert layers.Average().flops_per_sample([(5,)] * 2) == 5 + 5
    assert layers.Dot(2).flops_per_sample([(3, 4), (5, 4)]) == 3 * 5 * 4
    assert layers.Concatenate().flops_per_sample([(3,), (4,)]) == 0


# --- bad input --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_refuses_other_shapes_and_counts(name):
    a, b = np.ones((2, 3)), np.ones((2, 4))
    with pytest.raises(ValueError, match=rf"\({name}\).*one shape.*\(3,\), \(4,\)"):
        _elementwise(name)([a, b])
    with pytest.raises(ValueError, match=rf"\({name}\).*\(3,\), \(1, 3\)"):
        _elementwise(name)([a, np.ones((2, 1, 3))])    # no broadcasting
    with pytest.raises(ValueError, match=rf"\({name}\) takes .*inputs, got 1"):
        _elementwise(name)([a])
    if name == "Subtract":
        with pytest.raises(ValueError, match=r"takes exactly 2 inputs, got 3"):
            _elementwise(name)([a, a, a])
    with pytest.raises(TypeError, match="non-empty list of arrays, got ndarray"):
        _elementwise(name)(a)
    with pytest.raises(TypeError, match="non-empty list"):
        _elementwise(name)([])
    with pytest.raises(ValueError, match="different batch sizes"):
        _elementwise(name)([a, np.ones((3, 3))])
    with pytest.raises(TypeError, match="real numbers"):
        _elementwise(name)([a, a + 1j])
    built = _elementwise(name)
    built([a, a])
    with pytest.raises(ValueError, match="built for 2 inputs, got 3"):
        built([a, a, a])
    with pytest.raises(ValueError, match="shape"):
        built([a, np.ones((2, 4))])
    with pytest.raises(ValueError, match="gradient .* has shape"):
        built.backward(np.ones((2, 4)))
    with pytest.raises(RuntimeError, match="before forward"):
        _elementwise(name).backward(np.ones((2, 3)))


def test_dot_refuses_bad_axes_and_shapes():
    a = np.ones((2, 3))
    for axes in ("1", 1.0, True, (1,), (1, 2, 3), (1, "2")):
        with pytest.raises(TypeError, match="axes must be an int or a pair"):
            layers.Dot(axes)
    with pytest.raises(TypeError, match="normalize"):
        layers.Dot(1, normalize="yes")
    with pytest.raises(ValueError, match="batch axis"):
        layers.Dot(0)([a, a])
    with pytest.raises(ValueError, match="batch axis"):
        layers.Dot(-2)([a, a])
    with pytest.raises(ValueError, match="not an axis"):
        layers.Dot(2)([a, a])
    with pytest.raises(ValueError, match=r"differ in size, 3 .* and 4"):
        layers.Dot(1)([a, np.ones((2, 4))])
    with pytest.raises(ValueError, match="exactly 2 inputs, got 3"):
        layers.Dot(1)([a, a, a])


def test_concatenate_refuses_bad_axes_and_shapes():
    a = np.ones((2, 3))
    with pytest.raises(ValueError, match="batch axis"):
        layers.Concatenate(axis=0)
    with pytest.raises(TypeError, match="axis must be an int"):
        layers.Concatenate(axis=1.0)
    with pytest.raises(TypeError, match="axis twice"):
        layers.Concatenate(1, axis=2)
    with pytest.raises(ValueError, match="last axis"):
        layers.Concatenate([[layers.Dense(2)]], axis=1)
    with pytest.raises(ValueError, match="not an axis"):
        layers.Concatenate(axis=2)([a, a])
    with pytest.raises(ValueError, match=r"\(3,\), \(2, 3\) differ on an axis other"):
        layers.Concatenate()([a, np.ones((2, 2, 3))])
    with pytest.raises(ValueError, match=r"\(2, 3\), \(3, 3\) differ on an axis other "
                                         r"than axis -1"):
        layers.Concatenate()([np.ones((2, 2, 3)), np.ones((2, 3, 3))])
    with pytest.raises(ValueError, match="2 or more inputs, got 1"):
        layers.Concatenate()([a])
    with pytest.raises(TypeError, match="list of arrays"):
        layers.Concatenate()(a)


def test_graph_build_names_the_layer_and_the_shapes():
    a, b = cdl.Input(shape=(3,), name="a"), cdl.Input(shape=(4,), name="b")
    with pytest.raises(ValueError, match=r"cannot call layer 'sum' \(Add\) on inputs of shape "
                                         r"\[\(None, 3\), \(None, 4\)\]"):
        layers.Add(name="sum")([a, b])
    with pytest.raises(ValueError, match=r"'diff' \(Subtract\).*exactly 2 inputs, got 3"):
        layers.Subtract(name="diff")([a, a, a])
    with pytest.raises(ValueError, match=r"'cat' \(Concatenate\).*differ on an axis"):
        layers.Concatenate(axis=1, name="cat")([a, cdl.Input(shape=(3, 2))])
    with pytest.raises(ValueError, match=r"'dot' \(Dot\).*differ in size"):
        layers.Dot(1, name="dot")([a, b])
    with pytest.raises(TypeError, match="takes a list of tensors"):
        layers.Add()(a)
    assert layers.Dot(1)([a, a]).shape == (1,)
    assert layers.Concatenate()([a, b]).shape == (7,)


# --- configuration ----------------------------------------------------------------------

@pytest.mark.parametrize("layer", [
    layers.Add(name="add"), layers.Subtract(), layers.Multiply(), layers.Average(),
    layers.Maximum(), layers.Minimum(dtype="float64"), layers.Dot(1),
    layers.Dot((2, -1), normalize=True, name="cos"), layers.Concatenate(),
    layers.Concatenate(axis=2, name="join")], ids=lambda layer: type(layer).__name__)
def test_config_round_trip(layer):
    config = layer.get_config()
    clone = layers.get(type(layer).__name__).from_config(config)
    assert type(clone) is type(layer) and clone.get_config() == config
    assert clone.takes_list
    # Through JSON, as a model file stores it (tuples come back as lists).
    again = type(layer).from_config(json.loads(json.dumps(config)))
    assert again.get_config() == config


def test_config_contents():
    assert layers.Dot((1, 2), normalize=True, name="d").get_config() == {
        "name": "d", "axes": (1, 2), "normalize": True}
    assert layers.Concatenate(axis=1, name="c").get_config() == {"name": "c", "axis": 1}
    block = layers.Concatenate([[layers.Dense(2, name="d")]], name="b").get_config()
    assert set(block) == {"name", "branches"}   # as before merge layers existed


def test_an_old_block_config_loads_as_a_block():
    config = {"name": "cat", "branches": [
        [{"class_name": "Dense", "config": layers.Dense(2, name="d").get_config()}],
        [{"class_name": "ReLU", "config": layers.ReLU(name="r").get_config()}]]}
    block = layers.Concatenate.from_config(config)
    assert not block.takes_list and [len(b) for b in block.branches] == [1, 1]
    assert block.get_config() == config


# --- Concatenate: the block and the merge layer -----------------------------------------

def test_concatenate_block_still_works_in_sequential():
    block = layers.Concatenate([[layers.Dense(3, activation="tanh")], [layers.ReLU()]])
    assert not block.takes_list and not type(block).takes_list
    model = cdl.Sequential([block, layers.Dense(2)], input_shape=(4,), dtype="float64",
                           seed=0)
    assert model.output_shape == (2,) and block.output_shape == (7,)
    errors = cdl.gradcheck(model, random_array((5, 4)))
    assert max(errors.values()) < GRADCHECK_TOL


def test_concatenate_block_is_callable_on_a_graph_tensor_before_it_is_built():
    x = cdl.Input(shape=(4,))
    block = layers.Concatenate([[layers.Dense(3)], [layers.Dense(2), layers.ReLU()]])
    y = block(x)
    assert y.shape == (5,)
    model = cdl.Model(x, y, seed=0)
    assert model.predict(np.ones((2, 4))).shape == (2, 5)


def test_the_merge_form_is_an_instance_property():
    merge, block = layers.Concatenate(), layers.Concatenate([layers.ReLU()])
    assert merge.takes_list and not block.takes_list
    assert merge.sublayers() == [] and merge.count_params() == 0
    with pytest.raises(TypeError, match="list of per-sample shapes"):
        cdl.Sequential([layers.Dense(3), layers.Concatenate()], input_shape=(2,))


def test_merge_layers_on_arrays_eagerly():
    a, b = np.arange(6.0).reshape(2, 3), np.ones((2, 3))
    np.testing.assert_array_equal(layers.Add()([a, b]), a + b)
    np.testing.assert_array_equal(layers.Subtract()((a, b)), a - b)   # a tuple too
    np.testing.assert_array_equal(layers.Multiply()([a, b, a]), a * a)
    np.testing.assert_array_equal(layers.Average()([a, b]), (a + b) / 2)
    np.testing.assert_array_equal(layers.Maximum()([a, b]), np.maximum(a, b))
    np.testing.assert_array_equal(layers.Minimum()([a, b, a - 2]), np.minimum(a - 2, b))
    np.testing.assert_array_equal(layers.Concatenate()([a, b]), np.hstack([a, b]))
    np.testing.assert_array_equal(layers.Dot(1)([a, b]), a.sum(axis=1, keepdims=True))
    # Lists of lists are arrays too; an empty batch gives an empty batch.
    np.testing.assert_array_equal(layers.Add()([[[1.0, 2.0]], [[3.0, 4.0]]]), [[4.0, 6.0]])
    assert layers.Dot(2)([np.ones((0, 3, 2)), np.ones((0, 4, 2))]).shape == (0, 3, 4)


def test_a_graph_of_every_merge_layer_trains():
    a, b = cdl.Input(shape=(4,), name="a"), cdl.Input(shape=(4,), name="b")
    merged = [layers.Add()([a, b]), layers.Subtract()([a, b]), layers.Multiply()([a, b]),
              layers.Average()([a, b, a]), layers.Maximum()([a, b]), layers.Minimum()([a, b]),
              layers.Dot(1, normalize=True)([a, b])]
    out = layers.Dense(1)(layers.Concatenate()(merged))
    model = cdl.Model([a, b], out, seed=0, dtype="float64")
    rng = np.random.default_rng(0)
    xa, xb = rng.standard_normal((64, 4)), rng.standard_normal((64, 4))
    y = (xa * xb).sum(axis=1, keepdims=True)
    model.compile(cdl.optimizers.Adam(lr=0.05), "mse")
    history = model.fit([xa, xb], y, epochs=20, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
