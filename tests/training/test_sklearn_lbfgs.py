"""cdl.sklearn: solver="lbfgs", multilabel and multi-output targets, sparse input,
coefs_/intercepts_, n_iter_no_change=np.inf and the verbose lines."""
import warnings

import numpy as np
import pytest

try:
    import scipy.sparse
    import sklearn
    from sklearn.exceptions import ConvergenceWarning
except ImportError:
    sklearn = None

pytestmark = pytest.mark.skipif(
    sklearn is None, reason='scikit-learn is an optional extra of cdl, not installed here: '
                            'pip install "cdl[sklearn]"')

if sklearn is not None:
    from cdl.sklearn import MLPClassifier, MLPRegressor


def _data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 5))
    return rng, x


def _targets(kind, rng, x):
    if kind == "multiclass":
        return (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5).astype(int)
    if kind == "multilabel":
        return np.stack([x[:, 0] > 0, x[:, 1] > 0, x[:, 2] + x[:, 3] > 0], axis=1).astype(int)
    if kind == "poisson":
        return rng.poisson(np.exp(0.3 * x[:, 0]))
    return np.stack([x @ np.arange(5.0), x[:, 0] ** 2], axis=1)


@pytest.mark.parametrize("kind", ["multiclass", "multilabel", "squared_error", "poisson"])
def test_lbfgs_objective_gradient_matches_finite_differences(kind):
    rng, x = _data()
    y = _targets(kind, rng, x)
    weights = rng.uniform(0.5, 2.0, x.shape[0])
    if kind in ("multiclass", "multilabel"):
        est = MLPClassifier(hidden_layer_sizes=(4,), activation="tanh", solver="lbfgs",
                            alpha=0.3, max_iter=1, random_state=0)
    else:
        est = MLPRegressor(hidden_layer_sizes=(4,), activation="tanh", solver="lbfgs",
                           alpha=0.3, max_iter=1, random_state=0,
                           loss="poisson" if kind == "poisson" else "squared_error")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(x, y, sample_weight=weights)
    model = est.model_
    x_fit, t_fit = est._validate_input(x, y, incremental=False, reset=False)
    w, _ = est._weights(weights, x_fit, t_fit)
    objective = est._lbfgs_objective(model, x_fit, est._fit_targets(t_fit), w)
    theta = model.param_buffer.astype(np.float64).copy()
    _, grad = objective(theta)
    numeric = np.empty_like(theta)
    h = 1e-6
    for i in range(theta.size):
        step = np.zeros_like(theta)
        step[i] = h
        numeric[i] = (objective(theta + step)[0] - objective(theta - step)[0]) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-7)


def test_lbfgs_objective_is_scikit_learns_squared_loss_with_alpha():
    rng, x = _data()
    y = x @ np.arange(5.0)
    est = MLPRegressor(hidden_layer_sizes=(3,), solver="lbfgs", alpha=0.7, max_iter=1,
                       random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(x, y)
    objective = est._lbfgs_objective(est.model_, x, y.reshape(-1, 1), None)
    loss, _ = objective(est.model_.param_buffer.copy())
    (w1, w2), (b1, b2) = est.coefs_, est.intercepts_
    pred = np.maximum(x @ w1 + b1, 0.0) @ w2 + b2
    expected = 0.5 * np.mean((pred[:, 0] - y) ** 2) + 0.5 * 0.7 * (
        np.sum(w1 ** 2) + np.sum(w2 ** 2)) / x.shape[0]
    assert loss == pytest.approx(expected, rel=1e-12)


def test_lbfgs_fits_and_sample_weights_act_as_repeats():
    rng, x = _data(60)
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    counts = rng.integers(1, 3, x.shape[0])
    params = dict(hidden_layer_sizes=(6,), solver="lbfgs", max_iter=50, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        weighted = MLPClassifier(**params).fit(x, y, sample_weight=counts)
        repeated = MLPClassifier(**params).fit(np.repeat(x, counts, axis=0),
                                                np.repeat(y, counts))
    np.testing.assert_allclose(weighted.predict_proba(x), repeated.predict_proba(x),
                               rtol=1e-6, atol=1e-9)
    assert weighted.score(x, y) > 0.95
    assert 1 <= weighted.n_iter_ <= 50 and np.isfinite(weighted.loss_)


def test_lbfgs_warns_when_max_fun_stops_it():
    _, x = _data()
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
        MLPRegressor(solver="lbfgs", max_fun=5, tol=0.0, random_state=0).fit(x, x[:, 0])


@pytest.mark.parametrize("params, match", [
    ({"dropout": 0.2}, "dropout"),
    ({"loss": "absolute_error"}, "absolute_error"),
])
def test_lbfgs_refuses_what_it_cannot_minimise(params, match):
    _, x = _data()
    with pytest.raises(ValueError, match=match):
        MLPRegressor(solver="lbfgs", **params).fit(x, x[:, 0])


def test_lbfgs_has_no_partial_fit():
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")
    assert not hasattr(MLPRegressor(solver="lbfgs"), "partial_fit")
    assert hasattr(MLPRegressor(solver="adam"), "partial_fit")


def test_coefs_and_intercepts_are_views_of_the_weights():
    _, x = _data()
    reg = MLPRegressor(hidden_layer_sizes=(7, 3), max_iter=2, random_state=0)
    with pytest.raises(AttributeError, match="not fitted"):
        reg.coefs_
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(x, x[:, :2])
    assert [c.shape for c in reg.coefs_] == [(5, 7), (7, 3), (3, 2)]
    assert [b.shape for b in reg.intercepts_] == [(7,), (3,), (2,)]
    reg.intercepts_[-1][:] = 0.0
    reg.coefs_[-1][:] = 0.0
    np.testing.assert_array_equal(reg.predict(x), 0.0)


def test_multilabel_targets_give_a_probability_per_label():
    rng, x = _data(80)
    y = _targets("multilabel", rng, x)
    for solver in ("lbfgs", "adam"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf = MLPClassifier(hidden_layer_sizes=(16,), solver=solver, max_iter=300,
                                learning_rate_init=0.02, random_state=0).fit(x, y)
        proba = clf.predict_proba(x)
        assert proba.shape == y.shape and clf.predict(x).shape == y.shape
        np.testing.assert_array_equal(clf.predict(x), (proba > 0.5).astype(int))
        np.testing.assert_allclose(clf.predict_log_proba(x), np.log(proba))
        assert clf.score(x, y) > 0.8
    with pytest.raises(ValueError, match="multilabel"):
        clf.set_params(warm_start=True).fit(x, y[:, 0])


def test_sparse_input_equals_dense():
    _, x = _data()
    x[np.abs(x) < 0.7] = 0.0
    y = (x[:, 0] > 0).astype(int)
    clf = MLPClassifier(hidden_layer_sizes=(5,), solver="lbfgs", max_iter=30,
                        random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        dense = clf.fit(x, y).predict_proba(x)
        sparse = clf.fit(scipy.sparse.csr_matrix(x), y).predict_proba(
            scipy.sparse.csr_matrix(x))
    np.testing.assert_array_equal(dense, sparse)


def test_n_iter_no_change_inf_runs_every_epoch_and_verbose_lines(capsys):
    _, x = _data(20)
    y = (x[:, 0] > 0).astype(int)
    clf = MLPClassifier(hidden_layer_sizes=(3,), solver="sgd", tol=1e9, max_iter=7,
                        n_iter_no_change=np.inf, verbose=True, random_state=0)
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        clf.fit(x, y)
    assert clf.n_iter_ == 7
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 7
    assert lines[0] == "Iteration 1, loss = %.8f" % clf.loss_curve_[0]
