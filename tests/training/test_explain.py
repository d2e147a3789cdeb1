"""cdl.explain: gradients against finite differences, the completeness of
integrated gradients, permutation importance, and the saliency example."""
import re
import subprocess
import sys

import numpy as np
import pytest

import cdl
from cdl import explain, layers
from helpers import ROOT

EXAMPLES = ROOT / "examples"


def mlp(activation="tanh", dtype="float64", seed=0, extra=()):
    return cdl.Sequential([layers.Dense(12, activation=activation), *extra,
                           layers.Dense(12, activation=activation), layers.Dense(3)],
                          input_shape=(5,), dtype=dtype, seed=seed)


def cnn(dtype="float64"):
    return cdl.Sequential([layers.Conv2D(4, 3, padding="same", activation="gelu"),
                           layers.BatchNorm(), layers.AvgPool2D(2), layers.Flatten(),
                           layers.Dense(3)], input_shape=(6, 6, 2), dtype=dtype, seed=0)


def inputs(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def finite_difference_gradients(model, x, target, h=1e-6):
    grads = np.zeros_like(x)
    flat_x, flat_g = x.reshape(len(x), -1), grads.reshape(len(x), -1)
    rows = np.arange(len(x))
    for j in range(flat_x.shape[1]):
        up, down = flat_x.copy(), flat_x.copy()
        up[:, j] += h
        down[:, j] -= h
        f_up = model.predict(up.reshape(x.shape)).reshape(len(x), -1)[rows, target]
        f_down = model.predict(down.reshape(x.shape)).reshape(len(x), -1)[rows, target]
        flat_g[:, j] = (f_up - f_down) / (2 * h)
    return grads


# --- input gradients -------------------------------------------------------------------


@pytest.mark.parametrize("make, shape", [(mlp, (4, 5)), (cnn, (3, 6, 6, 2))],
                         ids=["mlp", "cnn"])
def test_input_gradients_match_finite_differences(make, shape):
    model = make()
    x = inputs(shape)
    target = np.array([0, 1, 2, 1][:shape[0]])
    grads = explain.input_gradients(model, x, target=target)
    np.testing.assert_allclose(grads, finite_difference_gradients(model, x, target),
                               rtol=1e-6, atol=1e-8)


def test_target_defaults_to_the_largest_output():
    model = mlp()
    x = inputs((6, 5))
    predicted = model.predict(x).argmax(axis=1)
    np.testing.assert_array_equal(explain.input_gradients(model, x),
                                  explain.input_gradients(model, x, target=predicted))
    one = explain.input_gradients(model, x, target=2)
    np.testing.assert_array_equal(one, explain.input_gradients(model, x, target=[2] * 6))


def test_saliency_and_gradient_x_input_follow_the_gradient():
    model = mlp()
    x = inputs((3, 5))
    grads = explain.input_gradients(model, x, target=1)
    np.testing.assert_array_equal(explain.saliency(model, x, target=1), np.abs(grads))
    np.testing.assert_array_equal(explain.gradient_x_input(model, x, target=1), grads * x)


def test_gradient_x_input_is_complete_for_a_linear_model():
    model = cdl.Sequential([layers.Dense(2, use_bias=False)], input_shape=(4,),
                           dtype="float64", seed=0)
    x = inputs((5, 4))
    contributions = explain.gradient_x_input(model, x, target=1)
    np.testing.assert_allclose(contributions.sum(axis=1), model.predict(x)[:, 1], rtol=1e-12)


def test_attributions_leave_the_model_as_it_was():
    model = mlp(extra=[layers.Dropout(0.5), layers.BatchNorm()])
    model.compile("adam", "cross_entropy")
    x = inputs((20, 5))
    model.fit(x, np.arange(20) % 3, epochs=1, verbose=0)
    weights, grads = model.param_buffer.copy(), model.grad_buffer.copy()
    stats = model.layers[2].running_mean.copy()
    first = explain.integrated_gradients(model, x, steps=8)
    second = explain.integrated_gradients(model, x, steps=8)
    np.testing.assert_array_equal(first, second)  # dropout is off: deterministic
    np.testing.assert_array_equal(model.param_buffer, weights)
    np.testing.assert_array_equal(model.grad_buffer, grads)
    np.testing.assert_array_equal(model.layers[2].running_mean, stats)


def test_batches_give_the_same_gradients_as_one_pass():
    model = mlp()
    x = inputs((10, 5))
    np.testing.assert_allclose(explain.input_gradients(model, x, batch_size=3),
                               explain.input_gradients(model, x), rtol=1e-12)


@pytest.mark.parametrize("target, error, match", [
    (3, ValueError, r"\[0, 3\)"),
    (-1, ValueError, r"\[0, 3\)"),
    ([0, 1], ValueError, "one index per sample"),
    (0.5, TypeError, "integer"),
])
def test_bad_targets_raise(target, error, match):
    with pytest.raises(error, match=match):
        explain.input_gradients(mlp(), inputs((3, 5)), target=target)


def test_bad_inputs_raise():
    model = mlp()
    with pytest.raises(ValueError, match="expects"):
        explain.saliency(model, inputs((3, 4)))
    with pytest.raises(ValueError, match="NaN|finite"):
        explain.saliency(model, np.full((2, 5), np.nan))
    embedded = cdl.Sequential([layers.Embedding(10, 3), layers.Flatten(), layers.Dense(2)],
                              input_shape=(4,), seed=0)
    with pytest.raises(ValueError, match="no input gradient"):
        explain.saliency(embedded, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="broadcast"):
        explain.integrated_gradients(model, inputs((3, 5)), baseline=np.zeros(4))


# --- integrated gradients ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation, steps", [("tanh", 50), ("gelu", 50), ("relu", 1000)])
def test_integrated_gradients_are_complete(activation, steps, dtype):
    # Smooth activations converge fast; across ReLU kinks the sum converges
    # only linearly in the number of steps.
    model = mlp(activation, dtype)
    x = inputs((8, 5))
    attributions = explain.integrated_gradients(model, x, steps=steps)
    assert attributions.shape == x.shape and attributions.dtype == np.float64
    check = explain.completeness(model, x, attributions)
    assert check.relative_error.max() < 1e-3
    np.testing.assert_allclose(check.attribution_sum, attributions.sum(axis=1))


@pytest.mark.parametrize("method, steps", [
    ("trapezoid", 100), ("riemann_middle", 100),
    # Left and right sums are first-order rules: many more steps for 1e-3.
    ("riemann_left", 2000), ("riemann_right", 2000)])
def test_integrated_gradients_methods_and_baselines(method, steps):
    model = cnn()
    x = inputs((3, 6, 6, 2))
    baseline = inputs((6, 6, 2), seed=1)  # one baseline for every sample
    attributions = explain.integrated_gradients(model, x, target=2, baseline=baseline,
                                                steps=steps, method=method)
    check = explain.completeness(model, x, attributions, target=2, baseline=baseline)
    assert check.relative_error.max() < 1e-3


def test_trapezoid_is_the_mean_of_the_left_and_right_sums():
    model = mlp()
    x = inputs((3, 5))
    ig = {method: explain.integrated_gradients(model, x, steps=7, method=method)
          for method in ("trapezoid", "riemann_left", "riemann_right")}
    np.testing.assert_allclose(ig["trapezoid"], (ig["riemann_left"] + ig["riemann_right"]) / 2,
                               rtol=1e-12, atol=1e-15)


def test_trapezoid_converges_quadratically():
    model = mlp("tanh")
    x = inputs((4, 5))
    errors = [explain.completeness(
        model, x, explain.integrated_gradients(model, x, steps=steps)).relative_error.max()
        for steps in (10, 20)]
    assert errors[1] < errors[0] / 3


def test_integrated_gradients_of_a_linear_model_are_exact_with_one_step():
    model = cdl.Sequential([layers.Dense(3)], input_shape=(4,), dtype="float64", seed=0)
    x = inputs((2, 4))
    attributions = explain.integrated_gradients(model, x, target=0, steps=1)
    kernel = model.layers[0].kernel[:, 0]
    np.testing.assert_allclose(attributions, x * kernel, rtol=1e-12)


# --- permutation importance ---------------------------------------------------------------


def linear_problem(n=300):
    x = inputs((n, 4))
    y = 3.0 * x[:, 0] + 1.0 * x[:, 1]  # features 2 and 3 do not matter
    model = cdl.Sequential([layers.Dense(1)], input_shape=(4,), dtype="float64", seed=0)
    model.layers[0].kernel[:, 0] = [3.0, 1.0, 0.0, 0.0]
    return model, x, y


def test_permutation_importance_ranks_the_features():
    model, x, y = linear_problem()
    result = explain.permutation_importance(model, x, y, scoring="r2", n_repeats=4, seed=0)
    assert result.importances.shape == (4, 4) and result.importances_mean.shape == (4,)
    assert result.baseline_score == pytest.approx(1.0)
    mean = result.importances_mean
    assert mean[0] > mean[1] > 0 and mean[2] == mean[3] == 0.0
    np.testing.assert_allclose(result.importances_std, result.importances.std(axis=1))


def test_permutation_importance_is_seeded():
    model, x, y = linear_problem()

    def run(seed):
        return explain.permutation_importance(model, x, y, scoring="r2", seed=seed).importances

    np.testing.assert_array_equal(run(5), run(5))
    assert not np.array_equal(run(5), run(6))


def test_permutation_importance_scorings():
    model, x, y = linear_problem()
    model.compile("sgd", "mse")
    by_loss = explain.permutation_importance(model, x, y[:, None], seed=0)
    by_mse = explain.permutation_importance(model, x, y, scoring="neg_mean_squared_error",
                                            seed=0)
    np.testing.assert_allclose(by_loss.importances, by_mse.importances, rtol=1e-10)
    custom = explain.permutation_importance(
        model, x, y, scoring=lambda t, out: -np.abs(t - out[:, 0]).mean(), seed=0)
    assert custom.importances_mean.argmax() == 0


def test_permutation_importance_of_a_classifier_on_images():
    x, y = cdl.datasets.load_digits(return_X_y=True)
    x = (x / 16.0).reshape(-1, 8, 8, 1)[:300]
    model = cdl.Sequential([layers.Flatten(), layers.Dense(10)], input_shape=(8, 8, 1),
                           seed=0)
    model.compile(cdl.optimizers.Adam(lr=1e-2), "cross_entropy")
    model.fit(x, y[:300], epochs=10, verbose=0)
    result = explain.permutation_importance(model, x, y[:300], scoring="accuracy",
                                            n_repeats=2, seed=0)
    assert result.importances_mean.shape == (8, 8, 1)
    assert result.baseline_score > 0.9
    # The always-blank corner pixel cannot matter.
    assert result.importances[0, 0, 0].tolist() == [0.0, 0.0]


def test_permutation_importance_needs_a_loss_or_a_scoring():
    model, x, y = linear_problem()
    with pytest.raises(ValueError, match="not compiled"):
        explain.permutation_importance(model, x, y)
    with pytest.raises(ValueError, match="scoring"):
        explain.permutation_importance(model, x, y, scoring="auc")
    with pytest.raises(ValueError, match="samples"):
        explain.permutation_importance(model, x, y[:10], scoring="r2")


# --- graph models ------------------------------------------------------------------------


def chain_twin(sequential):
    """The Sequential ``mlp()`` written as a graph Model, with its weights."""
    x = cdl.Input(shape=(5,), name="x")
    h = layers.Dense(12, activation="tanh")(x)
    h = layers.Dense(12, activation="tanh")(h)
    model = cdl.Model(x, layers.Dense(3)(h), dtype="float64", seed=1)
    model.set_weights(sequential.get_weights())
    return model


def two_headed(activation="tanh"):
    """Two inputs, a layer shared by both branches, a merge, two outputs."""
    a = cdl.Input(shape=(5,), name="a")
    b = cdl.Input(shape=(4,), name="b")
    shared = layers.Dense(6, activation=activation, name="shared")
    h = layers.Concatenate()([shared(layers.Dense(4, activation=activation)(a)), shared(b)])
    h = layers.Add()([layers.Dense(8, activation=activation)(h), layers.Dense(8)(h)])
    cls = layers.Dense(3, name="cls")(h)
    reg = layers.Dense(1, name="reg")(h)
    return cdl.Model([a, b], [cls, reg], dtype="float64", seed=0)


def two_inputs(seed=0, n=4):
    return [inputs((n, 5), seed), inputs((n, 4), seed + 1)]


def graph_finite_differences(model, xs, target, output, h=1e-6):
    """d output[target] / d input by central differences, one array per input."""
    index = model.output_names.index(output)
    rows = np.arange(len(xs[0]))
    grads = []
    for i, x in enumerate(xs):
        grad = np.zeros_like(x)
        flat_x, flat_g = x.reshape(len(x), -1), grad.reshape(len(x), -1)
        for j in range(flat_x.shape[1]):
            values = []
            for step in (h, -h):
                moved = flat_x.copy()
                moved[:, j] += step
                point = list(xs)
                point[i] = moved.reshape(x.shape)
                out = model.predict(point)[index]
                values.append(out.reshape(len(x), -1)[rows, target])
            flat_g[:, j] = (values[0] - values[1]) / (2 * h)
        grads.append(grad)
    return grads


def test_a_chain_graph_explains_as_the_sequential_does():
    sequential = mlp()
    graph = chain_twin(sequential)
    x = inputs((6, 5))
    for method in (explain.input_gradients, explain.saliency, explain.gradient_x_input):
        np.testing.assert_allclose(method(graph, x), method(sequential, x), rtol=1e-12,
                                   atol=1e-15)
    ig = explain.integrated_gradients(graph, x, target=1, steps=20)
    np.testing.assert_allclose(ig, explain.integrated_gradients(sequential, x, target=1,
                                                                steps=20), rtol=1e-12)
    np.testing.assert_allclose(explain.completeness(graph, x, ig, target=1).relative_error,
                               explain.completeness(sequential, x, ig, target=1).relative_error,
                               rtol=1e-9)
    y = np.arange(6) % 3
    np.testing.assert_array_equal(
        explain.permutation_importance(graph, x, y, scoring="accuracy", seed=0).importances,
        explain.permutation_importance(sequential, x, y, scoring="accuracy",
                                       seed=0).importances)


@pytest.mark.parametrize("output, target", [("cls", [0, 2, 1, 2]), ("reg", 0)])
def test_graph_input_gradients_match_finite_differences_per_input(output, target):
    model = two_headed()
    xs = two_inputs()
    grads = explain.input_gradients(model, xs, target=target, output=output)
    assert isinstance(grads, list) and [g.shape for g in grads] == [(4, 5), (4, 4)]
    expected = graph_finite_differences(model, xs, np.broadcast_to(target, (4,)), output)
    for grad, reference in zip(grads, expected):
        np.testing.assert_allclose(grad, reference, rtol=1e-6, atol=1e-8)


def test_graph_inputs_and_outputs_by_name_position_or_index():
    model = two_headed()
    xs = two_inputs()
    by_list = explain.input_gradients(model, xs, output="reg")
    by_dict = explain.input_gradients(model, {"b": xs[1], "a": xs[0]}, output=1)
    for left, right in zip(by_list, by_dict):
        np.testing.assert_array_equal(left, right)
    saliency = explain.saliency(model, xs, output="reg")
    times_input = explain.gradient_x_input(model, xs, output="reg")
    for grad, x, s, gx in zip(by_list, xs, saliency, times_input):
        np.testing.assert_array_equal(s, np.abs(grad))
        np.testing.assert_array_equal(gx, grad * x)


def test_graph_gradients_in_batches_leave_the_model_as_it_was():
    model = two_headed()
    model.compile("adam", {"cls": "cross_entropy", "reg": "mse"})
    xs = two_inputs(n=10)
    model.fit(xs, {"cls": np.arange(10) % 3, "reg": xs[0][:, :1]}, epochs=1, verbose=0)
    weights, grads = model.param_buffer.copy(), model.grad_buffer.copy()
    whole = explain.input_gradients(model, xs, output="cls")
    for left, right in zip(whole, explain.input_gradients(model, xs, output="cls",
                                                          batch_size=3)):
        np.testing.assert_allclose(left, right, rtol=1e-12)
    np.testing.assert_array_equal(model.param_buffer, weights)
    np.testing.assert_array_equal(model.grad_buffer, grads)


@pytest.mark.parametrize("baseline", [None, 0.5, "list", "dict"])
def test_graph_integrated_gradients_are_complete_over_all_inputs(baseline):
    model = two_headed()
    xs = two_inputs(n=6)
    if baseline == "list":
        baseline = [inputs((5,), seed=7), None]
    elif baseline == "dict":
        baseline = {"b": inputs((6, 4), seed=8)}
    attributions = explain.integrated_gradients(model, xs, baseline=baseline, steps=60,
                                                output="cls")
    assert [a.dtype for a in attributions] == [np.float64, np.float64]
    check = explain.completeness(model, xs, attributions, baseline=baseline, output="cls")
    assert check.relative_error.max() < 1e-3
    np.testing.assert_allclose(check.attribution_sum,
                               attributions[0].sum(axis=1) + attributions[1].sum(axis=1))
    # As a dict keyed by input names, the attributions check the same.
    again = explain.completeness(model, xs, {"a": attributions[0], "b": attributions[1]},
                                 baseline=baseline, output="cls")
    np.testing.assert_array_equal(again.relative_error, check.relative_error)


def test_integrated_gradients_of_a_linear_graph_are_exact_with_one_step():
    a = cdl.Input(shape=(3,), name="a")
    b = cdl.Input(shape=(2,), name="b")
    out = layers.Dense(2, name="out")(layers.Concatenate()([a, b]))
    model = cdl.Model([a, b], out, dtype="float64", seed=0)
    xs = [inputs((4, 3)), inputs((4, 2), seed=1)]
    ig_a, ig_b = explain.integrated_gradients(model, xs, target=1, steps=1)
    kernel = model.layers[-1].kernel[:, 1]
    np.testing.assert_allclose(ig_a, xs[0] * kernel[:3], rtol=1e-12)
    np.testing.assert_allclose(ig_b, xs[1] * kernel[3:], rtol=1e-12)


def test_an_input_the_output_does_not_depend_on_gets_zeros():
    a = cdl.Input(shape=(3,), name="a")
    b = cdl.Input(shape=(2,), name="b")
    first = layers.Dense(2, name="first")(a)
    both = layers.Dense(1, name="both")(layers.Concatenate()([first, b]))
    model = cdl.Model([a, b], [first, both], dtype="float64", seed=0)
    xs = [inputs((3, 3)), inputs((3, 2), seed=1)]
    grad_a, grad_b = explain.input_gradients(model, xs, target=1, output="first")
    np.testing.assert_array_equal(grad_b, np.zeros((3, 2)))
    np.testing.assert_array_equal(grad_a, np.broadcast_to(model.layers[0].kernel[:, 1], (3, 3)))


def embedded_graph():
    tokens = cdl.Input(shape=(4,), name="tokens", dtype="int64")
    features = cdl.Input(shape=(3,), name="features")
    h = layers.Concatenate()([layers.Flatten()(layers.Embedding(10, 2)(tokens)),
                              layers.Dense(4, activation="tanh")(features)])
    return cdl.Model([tokens, features], layers.Dense(2, name="out")(h), dtype="float64",
                     seed=0)


def test_an_input_without_input_gradient_is_none_and_held_on_the_path():
    model = embedded_graph()
    rng = np.random.default_rng(0)
    x = {"tokens": rng.integers(0, 10, (5, 4)), "features": inputs((5, 3))}
    none, grads = explain.input_gradients(model, x, target=1)
    assert none is None and grads.shape == (5, 3)
    assert explain.saliency(model, x, target=1)[0] is None
    assert explain.gradient_x_input(model, x, target=1)[0] is None
    held, ig = explain.integrated_gradients(model, x, target=1, steps=50)
    assert held is None
    # The tokens stay at their values: the features' attributions alone add
    # up to f(x) - f(tokens, zero features).
    check = explain.completeness(model, x, [None, ig], target=1)
    assert check.relative_error.max() < 1e-3
    with pytest.raises(ValueError, match="must be None"):
        explain.integrated_gradients(model, x, baseline={"tokens": 0.0})
    with pytest.raises(ValueError, match="must be None"):
        explain.completeness(model, x, [np.zeros((5, 4)), ig], target=1)


def test_graph_models_refuse_ambiguous_or_bad_outputs_and_attributions():
    model = two_headed()
    xs = two_inputs()
    with pytest.raises(ValueError, match=r"2 outputs \('cls', 'reg'\).*output="):
        explain.saliency(model, xs)
    with pytest.raises(ValueError, match="unknown output 'box'"):
        explain.saliency(model, xs, output="box")
    with pytest.raises(ValueError, match="out of range"):
        explain.saliency(model, xs, output=2)
    with pytest.raises(TypeError, match="output name or index"):
        explain.saliency(model, xs, output=1.0)
    with pytest.raises(ValueError, match="missing key.*'b'"):
        explain.saliency(model, {"a": xs[0]}, output="cls")
    with pytest.raises(ValueError, match="unknown key.*'c'"):
        explain.saliency(model, {"a": xs[0], "b": xs[1], "c": xs[1]}, output="cls")
    with pytest.raises(ValueError, match="in input order or a dict"):
        explain.integrated_gradients(model, xs, baseline=np.zeros(5), output="cls")
    with pytest.raises(ValueError, match="baseline of input 'b'"):
        explain.integrated_gradients(model, xs, baseline=[None, np.zeros(5)], output="cls")
    with pytest.raises(ValueError, match="attributions of input 'b' are missing"):
        explain.completeness(model, xs, {"a": np.zeros((4, 5))}, output="cls")
    with pytest.raises(ValueError, match="attributions of input 'a' have shape"):
        explain.completeness(model, xs, [np.zeros((4, 4)), np.zeros((4, 4))], output="cls")
    with pytest.raises(TypeError, match="cdl.Sequential or cdl.Model"):
        explain.saliency(layers.Dense(2), xs[0])


def test_graph_permutation_importance_per_input():
    a = cdl.Input(shape=(3,), name="a")
    b = cdl.Input(shape=(2,), name="b")
    out = layers.Dense(1, name="y")(layers.Concatenate()([a, b]))
    other = layers.Dense(2, name="other")(b)
    model = cdl.Model([a, b], [out, other], dtype="float64", seed=0)
    model.layers[-2].kernel[:, 0] = [3.0, 0.0, 0.0, 1.0, 0.0]   # a[0] and b[0] matter
    xs = [inputs((200, 3)), inputs((200, 2), seed=1)]
    y = 3.0 * xs[0][:, 0] + xs[1][:, 0] + model.layers[-2].bias[0]
    result_a, result_b = explain.permutation_importance(model, xs, y, scoring="r2",
                                                        n_repeats=3, seed=0, output="y")
    assert result_a.importances.shape == (3, 3) and result_b.importances.shape == (2, 3)
    assert result_a.baseline_score == result_b.baseline_score == pytest.approx(1.0)
    assert result_a.importances_mean[0] > result_b.importances_mean[0] > 0
    assert result_a.importances_mean[1] == result_a.importances_mean[2] == 0.0
    assert result_b.importances_mean[1] == 0.0
    # Scored by the compiled loss of the chosen output, targets given by name.
    model.compile("sgd", {"y": "mse", "other": "mse"})
    by_loss = explain.permutation_importance(model, xs, {"y": y[:, None]}, seed=0, output="y")
    by_mse = explain.permutation_importance(model, xs, y, scoring="neg_mean_squared_error",
                                            seed=0, output=0)
    for left, right in zip(by_loss, by_mse):
        np.testing.assert_allclose(left.importances, right.importances, rtol=1e-10)
    model.compile("sgd", {"y": "mse"})
    with pytest.raises(ValueError, match="output 'other' has no loss"):
        explain.permutation_importance(model, xs, y, output="other")
    with pytest.raises(ValueError, match="no targets for the explained output 'y'"):
        explain.permutation_importance(model, xs, {"other": y}, output="y")
    with pytest.raises(ValueError, match="2 outputs"):
        explain.permutation_importance(model, xs, y, scoring="r2")


# --- the example ------------------------------------------------------------------------------


def test_saliency_example_writes_a_png(tmp_path):
    png = tmp_path / "saliency.png"
    result = subprocess.run([sys.executable, str(EXAMPLES / "saliency_digits.py"),
                             "--png", str(png)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    error = float(re.search(r"relative error ([\d.e+-]+)\)", result.stdout).group(1))
    assert error < 1e-3
    assert float(re.search(r"test accuracy: ([\d.]+)", result.stdout).group(1)) > 0.9
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib is not installed" in result.stdout
    else:
        assert png.stat().st_size > 10_000
