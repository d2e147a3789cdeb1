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
