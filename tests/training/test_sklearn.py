"""cdl.sklearn: scikit-learn's estimator checks, meta-estimators, pickling, options."""
import importlib
import pickle
import sys
import warnings

import numpy as np
import pytest

import cdl

try:
    import sklearn  # noqa: F401
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.utils.estimator_checks import parametrize_with_checks
except ImportError:
    sklearn = None

SKIP_REASON = ('scikit-learn is an optional extra of cdl, not installed here: '
               'pip install "cdl[sklearn]"')
needs_sklearn = pytest.mark.skipif(sklearn is None, reason=SKIP_REASON)

if sklearn is not None:
    from cdl.sklearn import MLPClassifier, MLPRegressor

    class _SkipConnections:
        """The estimators' network as a ``cdl.Model`` graph: each hidden layer
        adds a linear projection of its input (a skip connection) to its
        Dense layer's output, through a merge."""

        def _build_model(self, settings, n_features, n_outputs, batch_weight, seed):
            penalty = (cdl.regularizers.L2(0.5 * self.alpha / batch_weight)
                       if self.alpha > 0 else None)
            h = inputs = cdl.Input(shape=(n_features,), name="features")
            for units, activation, rate in zip(settings["sizes"], settings["activations"],
                                               settings["dropout"]):
                body = cdl.layers.Dense(units, activation=activation,
                                        kernel_regularizer=penalty)(h)
                skip = cdl.layers.Dense(units, use_bias=False, kernel_regularizer=penalty)(h)
                h = cdl.layers.Add()([body, skip])
                if rate > 0:
                    h = cdl.layers.Dropout(rate)(h)
            outputs = cdl.layers.Dense(n_outputs, kernel_regularizer=penalty)(h)
            model = cdl.Model(inputs, outputs, seed=seed, dtype=settings["dtype"],
                              name="skip_mlp")
            model.compile(self._make_optimizer(), self._LOSSES[self.loss]())
            return model

    class SkipMLPClassifier(_SkipConnections, MLPClassifier):
        """MLPClassifier training the graph of ``_SkipConnections``."""

    class SkipMLPRegressor(_SkipConnections, MLPRegressor):
        """MLPRegressor training the graph of ``_SkipConnections``."""


def test_import_error_names_the_extra(monkeypatch):
    # None in sys.modules makes an import fail, as if scikit-learn were absent.
    for name in [name for name in sys.modules if name.split(".")[0] == "sklearn"]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.delitem(sys.modules, "cdl.sklearn", raising=False)
    with pytest.raises(ImportError, match=r'pip install "cdl\[sklearn\]"'):
        importlib.import_module("cdl.sklearn")


# --- scikit-learn's own estimator checks ------------------------------------------------

#: Float32 training agrees with repeating samples to float32 rounding (about
#: 1e-7 relative, see test_float32_weights_match_repeated_samples), while the
#: check asks for rtol 1e-7; in float64 the check passes.
FLOAT32_LIMITS = {
    "check_sample_weight_equivalence_on_dense_data":
        "float32 rounding: weighting equals repeating samples to ~1e-7, the check's rtol",
    "check_sample_weight_equivalence_on_sparse_data":
        "float32 rounding: weighting equals repeating samples to ~1e-7, the check's rtol",
}


def _expected_failures(estimator):
    return FLOAT32_LIMITS if estimator.dtype == "float32" else {}


if sklearn is not None:
    @parametrize_with_checks(
        [MLPClassifier(), MLPRegressor(),
         MLPClassifier(dtype="float32"), MLPRegressor(dtype="float32"),
         # A graph network (cdl.Model, one input, one output) keeps the contract too.
         SkipMLPClassifier(), SkipMLPRegressor()],
        expected_failed_checks=_expected_failures)
    def test_sklearn_estimator_checks(estimator, check):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", sklearn.exceptions.ConvergenceWarning)
            check(estimator)
else:
    @needs_sklearn
    def test_sklearn_estimator_checks():
        pass


# --- data -------------------------------------------------------------------------------


def digits(n=600):
    x, y = cdl.datasets.load_digits(return_X_y=True)
    return x[:n].astype(np.float64), y[:n]


def regression(n=200, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4))
    y = x @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.1 * rng.standard_normal(n)
    return x, y


pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning") \
    if sklearn is not None else []


# --- meta-estimators ----------------------------------------------------------------------


@needs_sklearn
def test_pipeline_grid_search_and_cross_val_score():
    x, y = digits(1797)
    pipe = make_pipeline(StandardScaler(),
                         MLPClassifier(hidden_layer_sizes=(32,), learning_rate_init=0.01,
                                       max_iter=40, random_state=0))
    search = GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1e-1],
                                 "mlpclassifier__hidden_layer_sizes": [(16,), (32,)]}, cv=3)
    search.fit(x, y)
    assert search.best_params_["mlpclassifier__alpha"] in (1e-4, 1e-1)
    assert search.best_score_ > 0.85
    scores = cross_val_score(pipe, x, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.85


@needs_sklearn
def test_regressor_in_pipeline_and_cross_val_score():
    x, y = regression()
    pipe = make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(16,),
                                                        learning_rate_init=0.01,
                                                        max_iter=200, random_state=0))
    assert cross_val_score(pipe, x, y, cv=3).min() > 0.9


@needs_sklearn
def test_clone_copies_parameters_not_the_fit():
    x, y = digits(200)
    clf = MLPClassifier(hidden_layer_sizes=(8, 4), dropout=[0.1, 0.0], max_iter=5,
                        random_state=1).fit(x, y)
    copy = clone(clf)
    assert copy.get_params() == clf.get_params()
    assert not hasattr(copy, "model_") and not hasattr(copy, "classes_")


# --- pickling -------------------------------------------------------------------------------


@needs_sklearn
@pytest.mark.parametrize("estimator_class", ["classifier", "regressor"])
def test_pickle_round_trip_predicts_and_trains_on_identically(estimator_class):
    if estimator_class == "classifier":
        x, y = digits(300)
        est = MLPClassifier(hidden_layer_sizes=(16,), batch_norm=True, dropout=0.2,
                            max_iter=5, random_state=0)
    else:
        x, y = regression()
        est = MLPRegressor(hidden_layer_sizes=(16,), batch_norm=True, dropout=0.2,
                           max_iter=5, random_state=0)
    est.fit(x, y)
    copy = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(copy.predict(x), est.predict(x))
    # The optimizer state and the random generator travel too.
    est.partial_fit(x, y)
    copy.partial_fit(x, y)
    np.testing.assert_array_equal(copy.predict(x), est.predict(x))
    assert copy.loss_curve_ == est.loss_curve_


@needs_sklearn
def test_pickle_carries_a_cdl_model_file_not_a_pickled_model():
    x, y = digits(200)
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(x, y)
    state = clf.__getstate__()
    assert "model_" not in state
    assert state["_model_file"].startswith(cdl.io.MAGIC)
    assert hasattr(clf, "model_")  # getting the state leaves the estimator intact


# --- graph networks -------------------------------------------------------------------------


@needs_sklearn
def test_a_graph_network_trains_in_pipelines_and_cross_validation():
    x, y = digits(900)
    pipe = make_pipeline(StandardScaler(),
                         SkipMLPClassifier(hidden_layer_sizes=(32,), dropout=0.1,
                                           learning_rate_init=0.01, max_iter=30,
                                           random_state=0))
    scores = cross_val_score(pipe, x, y, cv=3)
    assert scores.min() > 0.85
    clf = pipe.fit(x, y)[-1]
    assert type(clf.model_) is cdl.Model and clf.model_.chain is None
    assert [type(layer).__name__ for layer in clf.model_.layers].count("Add") == 1
    proba = pipe.predict_proba(x[:5])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    x, y = regression()
    reg = SkipMLPRegressor(hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=200,
                           random_state=0)
    assert cross_val_score(reg, x, y, cv=3).min() > 0.9


@needs_sklearn
@pytest.mark.parametrize("estimator_class", ["classifier", "regressor"])
def test_a_graph_network_pickles_and_trains_on_identically(estimator_class):
    if estimator_class == "classifier":
        x, y = digits(300)
        est = SkipMLPClassifier(hidden_layer_sizes=(16, 8), dropout=0.2, max_iter=5,
                                random_state=0)
    else:
        x, y = regression()
        est = SkipMLPRegressor(hidden_layer_sizes=(16,), dropout=0.2, max_iter=5,
                               random_state=0)
    est.fit(x, y)
    state = est.__getstate__()
    assert state["_model_file"].startswith(cdl.io.MAGIC) and "model_" not in state
    copy = pickle.loads(pickle.dumps(est))
    assert type(copy.model_) is cdl.Model
    assert [layer.name for layer in copy.model_.layers] == \
        [layer.name for layer in est.model_.layers]
    np.testing.assert_array_equal(copy.predict(x), est.predict(x))
    est.partial_fit(x, y)
    copy.partial_fit(x, y)
    np.testing.assert_array_equal(copy.predict(x), est.predict(x))
    assert copy.loss_curve_ == est.loss_curve_


@needs_sklearn
def test_a_graph_network_stops_early_and_warm_starts():
    x, y = digits(600)
    clf = SkipMLPClassifier(hidden_layer_sizes=(32,), early_stopping=True, n_iter_no_change=3,
                            validation_fraction=0.2, learning_rate_init=0.01, max_iter=200,
                            random_state=0).fit(x / 16, y)
    assert clf.n_iter_ < 200
    assert clf.best_validation_score_ == max(clf.validation_scores_) > 0.9
    x, y = regression()
    reg = SkipMLPRegressor(hidden_layer_sizes=(8,), warm_start=True, max_iter=3,
                           random_state=0)
    model = reg.fit(x, y).model_
    assert reg.fit(x, y).model_ is model and len(reg.loss_curve_) == 6


@needs_sklearn
def test_a_network_with_several_inputs_or_outputs_is_refused():
    class TwoHeads(MLPClassifier):
        def _build_model(self, settings, n_features, n_outputs, batch_weight, seed):
            inputs = cdl.Input(shape=(n_features,), name="features")
            h = cdl.layers.Dense(8, activation="relu")(inputs)
            model = cdl.Model(inputs, {"cls": cdl.layers.Dense(n_outputs)(h),
                                       "aux": cdl.layers.Dense(1)(h)}, seed=seed)
            model.compile("adam", {"cls": "cross_entropy", "aux": None})
            return model

    class WrongWidth(MLPClassifier):
        def _build_model(self, settings, n_features, n_outputs, batch_weight, seed):
            inputs = cdl.Input(shape=(n_features,))
            model = cdl.Model(inputs, cdl.layers.Dense(n_outputs + 1)(inputs), seed=seed)
            model.compile("adam", "cross_entropy")
            return model

    x, y = digits(50)
    refused = TwoHeads(max_iter=1)
    with pytest.raises(ValueError, match=r"1 input\(s\) \(features\) and 2 output\(s\) "
                                         r"\(cls, aux\); a scikit-learn estimator trains one"):
        refused.fit(x, y)
    assert not hasattr(refused, "model_")
    with pytest.raises(ValueError, match=r"gives \(11,\); X has 64 features and the "
                                         r"estimator needs 10 outputs"):
        WrongWidth(max_iter=1).fit(x, y)


# --- fitting --------------------------------------------------------------------------------


@needs_sklearn
def test_random_state_makes_fit_reproducible():
    x, y = digits(300)

    def make(seed):
        return MLPClassifier(hidden_layer_sizes=(16,), dropout=0.1, max_iter=5,
                             random_state=seed).fit(x, y)

    first, again, other = make(3), make(3), make(4)
    assert first.loss_curve_ == again.loss_curve_
    np.testing.assert_array_equal(first.predict_proba(x), again.predict_proba(x))
    assert first.loss_curve_ != other.loss_curve_


@needs_sklearn
def test_fitted_attributes_follow_sklearn():
    x, y = digits(300)
    clf = MLPClassifier(hidden_layer_sizes=(16, 8), max_iter=7, random_state=0).fit(x, y)
    assert clf.n_features_in_ == 64
    np.testing.assert_array_equal(clf.classes_, np.arange(10))
    assert clf.n_iter_ == 7 == len(clf.loss_curve_)
    assert clf.t_ == 7 * 300
    assert clf.loss_ == clf.loss_curve_[-1] and clf.best_loss_ == min(clf.loss_curve_)
    assert clf.validation_scores_ is None and clf.best_validation_score_ is None
    assert clf.n_layers_ == 4 and clf.n_outputs_ == 1
    assert [type(layer).__name__ for layer in clf.model_.layers] == ["Dense"] * 3
    assert clf.model_.dtype == np.float64   # scikit-learn's precision by default


@needs_sklearn
def test_stops_when_the_loss_stops_improving():
    x, y = digits(300)
    clf = MLPClassifier(hidden_layer_sizes=(16,), tol=10.0, n_iter_no_change=2,
                        max_iter=100, random_state=0).fit(x, y)
    # Only the first epoch improves (on the initial infinity) by tol = 10; as in
    # scikit-learn, training stops once n_iter_no_change + 1 epochs more have not.
    assert clf.n_iter_ == 1 + 3


@needs_sklearn
def test_max_iter_warns_when_not_converged():
    x, y = digits(200)
    with pytest.warns(sklearn.exceptions.ConvergenceWarning, match="Maximum iterations"):
        MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0).fit(x, y)


@needs_sklearn
def test_early_stopping_keeps_the_best_validation_weights():
    x, y = digits(600)
    clf = MLPClassifier(hidden_layer_sizes=(32,), early_stopping=True, n_iter_no_change=3,
                        validation_fraction=0.2, learning_rate_init=0.01, max_iter=200,
                        random_state=0).fit(x / 16, y)
    assert clf.n_iter_ < 200
    assert len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_) > 0.9
    # The split is the one train_test_split makes with the same random state.
    from sklearn.model_selection import train_test_split
    rs = np.random.RandomState(0)
    rs.randint(np.iinfo(np.int32).max)  # the draw that seeds the network
    _, x_val, _, y_val = train_test_split(x / 16, y, random_state=rs, test_size=0.2,
                                          stratify=y)
    assert clf.score(x_val, y_val) == clf.best_validation_score_


@needs_sklearn
def test_regressor_early_stopping_scores_r2():
    x, y = regression(300)
    reg = MLPRegressor(hidden_layer_sizes=(16,), early_stopping=True, learning_rate_init=0.01,
                       max_iter=300, random_state=0).fit(x, y)
    assert reg.best_validation_score_ == max(reg.validation_scores_) > 0.9


@needs_sklearn
def test_partial_fit_needs_classes_first_and_then_continues():
    x, y = digits(300)
    clf = MLPClassifier(hidden_layer_sizes=(16,), random_state=0)
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(x, y)
    clf.partial_fit(x[:100], y[:100], classes=np.arange(10))
    first = clf.model_.get_weights()
    clf.partial_fit(x[100:], y[100:])
    assert clf.t_ == 300 and len(clf.loss_curve_) == 2 and clf.n_iter_ == 1
    assert any((a != b).any() for a, b in zip(first, clf.model_.get_weights()))
    with pytest.raises(ValueError, match="not in classes_"):
        clf.partial_fit(x[:5], np.full(5, 11))


@needs_sklearn
def test_partial_fit_refuses_early_stopping():
    x, y = regression()
    with pytest.raises(ValueError, match="early_stopping"):
        MLPRegressor(early_stopping=True).partial_fit(x, y)


@needs_sklearn
def test_warm_start_continues_from_the_previous_fit():
    x, y = regression()
    reg = MLPRegressor(hidden_layer_sizes=(8,), warm_start=True, max_iter=3, random_state=0)
    reg.fit(x, y)
    model = reg.model_
    reg.fit(x, y)
    assert reg.model_ is model and len(reg.loss_curve_) == 6
    assert reg.model_.optimizer.iterations == 6 * 1  # one batch of 200 per epoch
    cold = MLPRegressor(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(x, y)
    assert len(cold.loss_curve_) == 3


# --- options scikit-learn's MLP lacks ------------------------------------------------------


@needs_sklearn
def test_dropout_batch_norm_and_per_layer_activations_build_the_network():
    x, y = digits(200)
    clf = MLPClassifier(hidden_layer_sizes=(16, 8), activation=["tanh", "logistic"],
                        dropout=[0.3, 0.1], batch_norm=True, max_iter=2,
                        random_state=0).fit(x, y)
    layers = clf.model_.layers
    assert [type(layer).__name__ for layer in layers] == [
        "Dense", "BatchNorm", "Activation", "Dropout",
        "Dense", "BatchNorm", "Activation", "Dropout", "Dense"]
    assert [layers[2].activation, layers[6].activation] == ["tanh", "sigmoid"]
    assert [layers[3].rate, layers[7].rate] == [0.3, 0.1]
    assert not layers[0].use_bias


@needs_sklearn
def test_batch_norm_never_trains_on_a_single_sample_batch():
    x, y = regression(201)  # 201 = 200 + 1 would leave a batch of one sample
    MLPRegressor(hidden_layer_sizes=(4,), batch_norm=True, batch_size=100, max_iter=2,
                 random_state=0).fit(x, y)


@needs_sklearn
def test_dtype_float64_trains_a_float64_network():
    x, y = regression()
    reg = MLPRegressor(hidden_layer_sizes=(4,), max_iter=2, dtype="float64",
                       random_state=0).fit(x, y)
    assert reg.model_.dtype == np.float64 and reg.predict(x).dtype == np.float64


@needs_sklearn
def test_class_weight_shifts_predictions_towards_a_class():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 2))
    y = np.where(x[:, 0] + 0.5 * rng.standard_normal(400) > 1.0, "rare", "common")

    def make(weight):
        return MLPClassifier(hidden_layer_sizes=(8,), class_weight=weight,
                             learning_rate_init=0.01, max_iter=100, random_state=0).fit(x, y)

    def count(clf):
        return int((clf.predict(x) == "rare").sum())

    plain, balanced = make(None), make("balanced")
    heavy = make({"rare": 10.0})
    assert count(plain) < count(balanced) and count(plain) < count(heavy)
    with pytest.raises(ValueError, match="not in classes_"):
        make({"unknown": 2.0})


@needs_sklearn
def test_integer_sample_weights_act_as_repeated_samples_in_float32():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((15, 6))
    y = rng.integers(0, 3, 15)
    w = rng.integers(0, 4, 15)
    weighted = MLPClassifier(hidden_layer_sizes=(8,), max_iter=20, random_state=0,
                             dtype="float32")
    weighted.fit(x, y, sample_weight=w)
    repeated = MLPClassifier(hidden_layer_sizes=(8,), max_iter=20, random_state=0,
                             dtype="float32")
    repeated.fit(np.repeat(x, w, axis=0), np.repeat(y, w))
    np.testing.assert_allclose(weighted.predict_proba(x), repeated.predict_proba(x),
                               rtol=1e-5, atol=1e-6)


@needs_sklearn
def test_hinge_loss_has_no_probabilities():
    x, y = digits(300)
    clf = MLPClassifier(hidden_layer_sizes=(32,), loss="hinge", learning_rate_init=0.01,
                        max_iter=60, random_state=0).fit(x / 16, y)
    assert clf.score(x / 16, y) > 0.9
    assert not hasattr(clf, "predict_proba")


@needs_sklearn
@pytest.mark.parametrize("loss", ["absolute_error", "huber", "poisson"])
def test_regression_losses(loss):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (300, 2))
    y = np.exp(x[:, 0]) if loss == "poisson" else 3.0 * x[:, 0] - x[:, 1]
    reg = MLPRegressor(hidden_layer_sizes=(16,), loss=loss, learning_rate_init=0.01,
                       max_iter=200, random_state=0).fit(x, y)
    assert reg.score(x, y) > 0.8
    if loss == "poisson":
        assert (reg.predict(x) > 0).all()
        with pytest.raises(ValueError, match="non-negative"):
            reg.fit(x, -y)


@needs_sklearn
def test_multi_output_regression():
    x, y = regression()
    targets = np.stack([y, -y], axis=1)
    reg = MLPRegressor(hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=100,
                       random_state=0).fit(x, targets)
    assert reg.predict(x).shape == (200, 2) and reg.n_outputs_ == 2
    assert reg.score(x, targets) > 0.9


@needs_sklearn
@pytest.mark.parametrize("solver", ["sgd", "adam", "adamw", "nadam", "radam", "adamax",
                                    "rmsprop", "adagrad"])
def test_every_solver_trains(solver):
    x, y = regression()
    reg = MLPRegressor(hidden_layer_sizes=(16,), solver=solver, learning_rate_init=0.01,
                       batch_size=32, max_iter=50, random_state=0).fit(x, y)
    assert reg.score(x, y) > 0.8
    assert type(reg.model_.optimizer).__name__.lower() == solver


@needs_sklearn
def test_an_optimizer_instance_is_copied_not_used():
    x, y = regression()
    opt = cdl.optimizers.SGD(lr=0.05, momentum=0.5)
    reg = MLPRegressor(hidden_layer_sizes=(8,), solver=opt, max_iter=5, random_state=0)
    reg.fit(x, y)
    assert opt.iterations == 0 and reg.model_.optimizer is not opt
    assert reg.model_.optimizer.get_config() == opt.get_config()


@needs_sklearn
def test_learning_rate_schedules():
    x, y = regression()
    reg = MLPRegressor(hidden_layer_sizes=(8,), solver="sgd", learning_rate="invscaling",
                       learning_rate_init=0.1, power_t=0.5, max_iter=4,
                       random_state=0).fit(x, y)
    assert reg.model_.optimizer.lr == pytest.approx(0.1 / (reg.t_ + 1) ** 0.5)
    adaptive = MLPRegressor(hidden_layer_sizes=(8,), solver="sgd", learning_rate="adaptive",
                            tol=10.0, n_iter_no_change=1, learning_rate_init=0.01,
                            max_iter=100, random_state=0).fit(x, y)
    # Every second epoch "fails" to improve by tol: the rate is divided by 5
    # until it falls below 1e-6, then training stops.
    assert adaptive.model_.optimizer.lr <= 1e-6
    assert adaptive.n_iter_ < 100


@needs_sklearn
@pytest.mark.parametrize("params, match", [
    ({"hidden_layer_sizes": (4, 0)}, "hidden_layer_sizes"),
    ({"activation": "nope"}, "activation"),
    ({"activation": ["relu"], "hidden_layer_sizes": (4, 4)}, "one per hidden layer"),
    ({"solver": "lbfgs", "dropout": 0.5}, "lbfgs"),
    ({"solver": "lbfgs", "loss": "hinge"}, "lbfgs"),
    ({"n_iter_no_change": 0}, "n_iter_no_change"),
    ({"max_fun": 0}, "max_fun"),
    ({"solver": "newton"}, "solver"),
    ({"dropout": 1.0}, "dropout"),
    ({"loss": "squared_error"}, "loss"),
    ({"dtype": "float16"}, "dtype"),
    ({"learning_rate": "fast"}, "learning_rate"),
    ({"validation_fraction": 1.0}, "validation_fraction"),
    ({"class_weight": "even"}, "class_weight"),
])
def test_invalid_parameters_raise_at_fit(params, match):
    x, y = digits(50)
    clf = MLPClassifier(**params)  # no checks in __init__, as scikit-learn requires
    with pytest.raises(ValueError, match=match):
        clf.fit(x, y)
