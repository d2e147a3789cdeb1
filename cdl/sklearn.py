"""scikit-learn estimators trained by cdl: ``MLPClassifier`` and ``MLPRegressor``.

They take the constructor arguments of ``sklearn.neural_network``'s MLPs
(``hidden_layer_sizes``, ``activation``, ``solver``, ``alpha``,
``batch_size``, ``learning_rate_init``, ``max_iter``, ``early_stopping``,
...) and add what those lack: ``dropout``, ``batch_norm``, ``loss``,
``dtype`` and, for the classifier, ``class_weight``. They follow
scikit-learn's estimator contract (they pass ``check_estimator``), so they
work inside ``Pipeline``, ``GridSearchCV`` and ``cross_val_score``, can be
cloned, and pickle: the fitted cdl model travels inside the pickle as the
bytes of a cdl model file (cdl's own files hold no pickle).

Graph models: scikit-learn's estimators take one 2-D array ``X`` of
features and one array ``y`` of targets, whose rows its splitters,
pipelines, scorers and meta-estimators index, split and score as single
arrays. A ``cdl.Model`` with several inputs or outputs takes a list or a
dict of arrays for each, which that contract has no room for: train such
a model with its own ``fit``. A graph with one input and one output fits
the contract as a ``Sequential`` does: a subclass may build one (a skip
connection, a shared layer...) by overriding ``_build_model`` (see
``MLPClassifier._build_model``), and fitting, early stopping, warm starts
and pickling (the model file stores the graph) work as with the default
network.

scikit-learn is an optional dependency: ``pip install "cdl[sklearn]"``.

Examples
--------
>>> import numpy as np
>>> from cdl.sklearn import MLPClassifier
>>> rng = np.random.default_rng(0)
>>> X = rng.standard_normal((60, 2))
>>> y = (X[:, 0] + X[:, 1] > 0).astype(int)
>>> clf = MLPClassifier(hidden_layer_sizes=(8,), learning_rate_init=0.05, tol=1e-2,
...                     random_state=0).fit(X, y)
>>> clf.score(X, y) > 0.9
True
"""
import numbers
import os
import tempfile
import warnings

import numpy as np
import scipy.optimize
import scipy.sparse
from scipy.special import xlogy

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import (
        _check_partial_fit_first_call, check_classification_targets, type_of_target,
        unique_labels)
    from sklearn.utils.validation import (
        _check_sample_weight, check_is_fitted, column_or_1d, validate_data)
except ImportError as _err:  # pragma: no cover - depends on the environment
    raise ImportError(
        "cdl.sklearn needs scikit-learn, an optional dependency of cdl: "
        'pip install "cdl[sklearn]"') from _err

from cdl import layers as _layers
from cdl import losses as _losses
from cdl import optimizers as _optimizers
from cdl import regularizers as _regularizers
from cdl._validation import check_bool, check_number
from cdl.callbacks import Callback
from cdl.layers.activation import resolve_activation
from cdl.model import Sequential

__all__ = ["MLPClassifier", "MLPRegressor"]

#: scikit-learn's activation names, as cdl names (others are cdl's own).
_SKLEARN_ACTIVATIONS = {"identity": None, "logistic": "sigmoid"}
_SOLVERS = ("adam", "sgd", "adamw", "nadam", "radam", "adamax", "rmsprop", "adagrad")
_LEARNING_RATES = ("constant", "invscaling", "adaptive")
#: The losses solver="lbfgs" minimises (scikit-learn's, with their exact objective).
_LBFGS_LOSSES = ("log_loss", "squared_error", "poisson")
#: The smallest rate "adaptive" divides down to before it stops (scikit-learn's).
_MIN_ADAPTIVE_LR = 1e-6
#: Rows per matrix product in predictions (see ``_BaseMLP._outputs``).
_PREDICT_BLOCK = 64


# --- checking the hyper-parameters ---------------------------------------------------


def _per_layer(value, n_layers, name, check):
    """``value`` for every hidden layer: one shared value or one per layer."""
    if isinstance(value, (list, tuple)):
        if len(value) != n_layers:
            raise ValueError(f"{name} has {len(value)} entries but there are {n_layers} "
                             "hidden layers; give one value or one per hidden layer")
        return [check(v) for v in value]
    return [check(value)] * n_layers


def _cdl_activation(name):
    if not isinstance(name, str):
        raise TypeError(f"activation must be a name, got {name!r}")
    cdl_name = _SKLEARN_ACTIVATIONS.get(name, name)
    resolve_activation(cdl_name)  # raises ValueError naming the known activations
    return cdl_name


def _hidden_sizes(hidden_layer_sizes):
    sizes = hidden_layer_sizes
    if isinstance(sizes, numbers.Integral) and not isinstance(sizes, (bool, np.bool_)):
        sizes = [sizes]
    try:
        sizes = list(sizes)
    except TypeError:
        raise TypeError("hidden_layer_sizes must be an int or a sequence of ints, got "
                        f"{hidden_layer_sizes!r}") from None
    return [check_number(s, "hidden_layer_sizes", low=1, integer=True) for s in sizes]


def _model_file_bytes(model):
    """The cdl model file of ``model``, as bytes (optimizer state included)."""
    from cdl import io

    with tempfile.TemporaryDirectory(prefix="cdl-sklearn-") as directory:
        path = os.path.join(directory, "model.cdl")
        io.save_model(model, path)
        with open(path, "rb") as f:
            return f.read()


def _model_from_bytes(data):
    """A cdl model from what ``_model_file_bytes`` returned."""
    from cdl import io

    with tempfile.TemporaryDirectory(prefix="cdl-sklearn-") as directory:
        path = os.path.join(directory, "model.cdl")
        with open(path, "wb") as f:
            f.write(data)
        return io.load_model(path)


class _EpochRules(Callback):
    """scikit-learn's per-epoch bookkeeping and stopping rules, run by ``fit``:
    the loss curve, validation scores with the best weights, the
    "no improvement for n_iter_no_change epochs by tol" rule and the
    "invscaling"/"adaptive" learning rates."""

    def __init__(self, estimator, n_train, validation, incremental):
        super().__init__()
        self.estimator = estimator
        self.n_train = n_train
        self.validation = validation
        self.incremental = incremental
        self.converged = False

    def on_epoch_end(self, epoch, logs=None):
        est = self.estimator
        model = self.model
        loss = float(logs["loss"])
        est.n_iter_ += 1
        est.t_ += self.n_train
        est.loss_ = loss
        est.loss_curve_.append(loss)
        if est.verbose:
            print("Iteration %d, loss = %.8f" % (est.n_iter_, loss))
        if self.validation is not None:
            score = est._score_outputs(model.predict(self.validation[0]),
                                       self.validation[1], self.validation[2])
            est.validation_scores_.append(score)
            if est.verbose:
                print("Validation score: %f" % score)
            if score < est.best_validation_score_ + est.tol:
                est._no_improvement_count += 1
            else:
                est._no_improvement_count = 0
            if score > est.best_validation_score_:
                est.best_validation_score_ = score
                est._best_state = _snapshot(model)
        else:
            if loss > est.best_loss_ - est.tol:
                est._no_improvement_count += 1
            else:
                est._no_improvement_count = 0
            est.best_loss_ = min(est.best_loss_, loss)
        if est.learning_rate == "invscaling":
            model.optimizer.lr = est.learning_rate_init / (est.t_ + 1) ** est.power_t
        if not np.isfinite(loss):
            model.stop_training = True
        elif est._no_improvement_count > est.n_iter_no_change and not self.incremental:
            if est.learning_rate == "adaptive" and model.optimizer.lr > _MIN_ADAPTIVE_LR:
                model.optimizer.lr /= 5.0
                est._no_improvement_count = 0
            else:
                self.converged = True
                model.stop_training = True


def _check_network(model, n_features, n_outputs):
    """Raise ValueError unless ``model`` has the one input of ``n_features``
    and the one output of ``n_outputs`` that X and y fit."""
    inputs, outputs = list(model.input_names), list(model.output_names)
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(
            f"the network has {len(inputs)} input(s) ({', '.join(inputs)}) and "
            f"{len(outputs)} output(s) ({', '.join(outputs)}); a scikit-learn estimator "
            "trains one input on X and one output on y: train a model with several inputs "
            "or outputs with its own fit")
    if tuple(model.input_shape) != (n_features,) or tuple(model.output_shape) != (n_outputs,):
        raise ValueError(f"the network takes samples of shape {tuple(model.input_shape)} and "
                         f"gives {tuple(model.output_shape)}; X has {n_features} features and "
                         f"the estimator needs {n_outputs} outputs per sample")


def _dense(X, dtype):
    """``X`` as a C-ordered array of ``dtype``; a scipy.sparse matrix is densified
    (cdl's kernels take dense rows)."""
    if scipy.sparse.issparse(X):
        return np.ascontiguousarray(X.toarray(), dtype=dtype)
    return np.asarray(X, dtype=dtype, order="C")


def _sigmoid(z):
    return np.exp(_log_sigmoid(z))


def _log_sigmoid(z):
    """log(sigmoid(z)) without overflow."""
    return -np.logaddexp(0.0, -z)


def _check_finite_weights(model):
    if not np.isfinite(model.param_buffer).all():
        raise ValueError("Solver produced non-finite parameter weights. The input data may "
                         "contain large values and need to be preprocessed.")


def _snapshot(model):
    """Copies of the weights and of the layers' buffers (BatchNorm statistics)."""
    return model.param_buffer.copy(), [
        {name: array.copy() for name, array in layer.buffers().items()}
        for layer in model.layers]


def _restore(model, snapshot):
    params, buffers = snapshot
    model.param_buffer[...] = params
    for layer, saved in zip(model.layers, buffers):
        for name, array in layer.buffers().items():
            array[...] = saved[name]


class _BaseMLP(BaseEstimator):
    """What MLPClassifier and MLPRegressor share; see their docstrings."""

    #: Loss names accepted by the subclass, mapped to cdl loss factories.
    _LOSSES = {}

    # --- configuration, checked at fit time (scikit-learn's convention) -------------

    def _settings(self):
        """Every hyper-parameter checked, as a dict of resolved values."""
        sizes = _hidden_sizes(self.hidden_layer_sizes)
        n = len(sizes)
        settings = {"sizes": sizes}
        settings["activations"] = _per_layer(self.activation, n, "activation", _cdl_activation)
        settings["dropout"] = _per_layer(
            self.dropout, n, "dropout",
            lambda v: check_number(v, "dropout", 0.0, 1.0, high_inclusive=False))
        for flag in ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping",
                     "batch_norm"):
            check_bool(getattr(self, flag), flag)
        # A level, as in scikit-learn: True/False or an int >= 0 (any true value prints).
        if not isinstance(self.verbose, (bool, np.bool_)):
            check_number(self.verbose, "verbose", low=0, integer=True)
        if self.loss not in self._LOSSES:
            raise ValueError(f"loss must be one of {sorted(self._LOSSES)}, got {self.loss!r}")
        if self.dtype not in ("float32", "float64", np.float32, np.float64):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        settings["dtype"] = np.dtype(self.dtype).name
        if isinstance(self.solver, _optimizers.Optimizer):
            pass
        elif self.solver == "lbfgs":
            if self.loss not in _LBFGS_LOSSES:
                raise ValueError(f"solver='lbfgs' trains the losses {', '.join(_LBFGS_LOSSES)}"
                                 f", not loss={self.loss!r}: use a stochastic solver")
            if any(rate > 0 for rate in settings["dropout"]):
                raise ValueError("solver='lbfgs' needs a deterministic objective: it does "
                                 "not train with dropout > 0")
        elif self.solver not in _SOLVERS:
            raise ValueError(f"solver must be one of {', '.join(_SOLVERS + ('lbfgs',))} or a "
                             f"cdl.optimizers.Optimizer, got {self.solver!r}")
        if self.learning_rate not in _LEARNING_RATES:
            raise ValueError(f"learning_rate must be one of {_LEARNING_RATES}, "
                             f"got {self.learning_rate!r}")
        check_number(self.alpha, "alpha", low=0.0)
        check_number(self.learning_rate_init, "learning_rate_init", low=0.0,
                     low_inclusive=False)
        check_number(self.power_t, "power_t", low=0.0)
        check_number(self.max_iter, "max_iter", low=1, integer=True)
        check_number(self.tol, "tol", low=0.0)
        check_number(self.momentum, "momentum", 0.0, 1.0)
        check_number(self.validation_fraction, "validation_fraction", 0.0, 1.0,
                     low_inclusive=False, high_inclusive=False)
        check_number(self.beta_1, "beta_1", 0.0, 1.0, high_inclusive=False)
        check_number(self.beta_2, "beta_2", 0.0, 1.0, high_inclusive=False)
        check_number(self.epsilon, "epsilon", low=0.0, low_inclusive=False)
        # np.inf, as in scikit-learn, never stops on a lack of improvement.
        if not (isinstance(self.n_iter_no_change, numbers.Real)
                and not isinstance(self.n_iter_no_change, (bool, np.bool_))
                and self.n_iter_no_change == np.inf):
            check_number(self.n_iter_no_change, "n_iter_no_change", low=1, integer=True)
        check_number(self.max_fun, "max_fun", low=1, integer=True)
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            check_number(self.batch_size, "batch_size", low=1, integer=True)
        return settings

    def _make_optimizer(self):
        if isinstance(self.solver, _optimizers.Optimizer):
            # A fresh copy: fitting must not change the estimator's parameters.
            return _optimizers.from_config({"class_name": type(self.solver).__name__,
                                            "config": self.solver.get_config()})
        lr = self.learning_rate_init
        if self.solver == "lbfgs":
            # The model is compiled with one; L-BFGS steps come from scipy.
            return _optimizers.SGD(lr=lr)
        if self.solver == "sgd":
            return _optimizers.SGD(lr=lr, momentum=self.momentum,
                                   nesterov=bool(self.nesterovs_momentum and self.momentum > 0))
        if self.solver in ("adam", "adamw", "nadam", "radam", "adamax"):
            return _optimizers.get(self.solver, lr=lr, betas=(self.beta_1, self.beta_2),
                                   eps=self.epsilon)
        return _optimizers.get(self.solver, lr=lr)

    def _build_model(self, settings, n_features, n_outputs, batch_weight, seed):
        """The cdl network: hidden Dense layers (with BatchNorm and dropout if
        asked) and a linear output layer, compiled with the loss and solver.

        A subclass may override it to train another network on the same
        terms, such as a ``cdl.Model`` graph with a skip connection: one
        input of ``(n_features,)`` and one output of ``(n_outputs,)``
        (logits of the classes, or the regression values).

        Parameters
        ----------
        settings : dict
            The checked hyper-parameters: ``sizes`` (units per hidden
            layer), ``activations`` and ``dropout`` (one per hidden layer,
            cdl's activation names) and ``dtype``.
        n_features, n_outputs : int
        batch_weight : float
            The weight of a batch, by which scikit-learn's L2 penalty
            ``alpha`` is divided (see ``alpha``).
        seed : int
            The model's seed, drawn from ``random_state``.

        Returns
        -------
        cdl.Model
            Compiled with ``self._make_optimizer()`` and the loss
            ``self._LOSSES[self.loss]()``.
        """
        # scikit-learn's penalty: 0.5 * alpha * ||W||^2 / (weight of a batch).
        penalty = (_regularizers.L2(0.5 * self.alpha / batch_weight) if self.alpha > 0
                   else None)
        stack = []
        for units, activation, rate in zip(settings["sizes"], settings["activations"],
                                           settings["dropout"]):
            if self.batch_norm:
                # Dense -> BatchNorm -> activation; BatchNorm's shift replaces the bias.
                stack.append(_layers.Dense(units, use_bias=False, kernel_regularizer=penalty))
                stack.append(_layers.BatchNorm())
                if activation is not None:
                    stack.append(_layers.Activation(activation))
            else:
                stack.append(_layers.Dense(units, activation=activation,
                                           kernel_regularizer=penalty))
            if rate > 0:
                stack.append(_layers.Dropout(rate))
        stack.append(_layers.Dense(n_outputs, kernel_regularizer=penalty))
        model = Sequential(stack, input_shape=(n_features,), dtype=settings["dtype"],
                           seed=seed, name=type(self).__name__.lower())
        model.compile(self._make_optimizer(), self._make_loss())
        return model

    def _make_loss(self):
        """The cdl loss the network trains with."""
        return self._LOSSES[self.loss]()

    # --- fitting ---------------------------------------------------------------

    def _batch_size(self, n_samples):
        if self.batch_size == "auto":
            size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn(f"batch_size {self.batch_size} is larger than the number of "
                              f"samples ({n_samples}); it is clipped to {n_samples}")
            size = min(self.batch_size, n_samples)
        if self.batch_norm:
            # BatchNorm cannot normalise a batch of one sample: move the last
            # sample of an epoch into the batch before it.
            while size < n_samples and n_samples % size == 1:
                size += 1
        return size

    def _fit(self, X, y, sample_weight=None, incremental=False):
        settings = self._settings()
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        first_pass = not hasattr(self, "model_") or (not self.warm_start and not incremental)
        X, targets = self._validate_input(X, y, incremental, reset=first_pass)
        n_samples = X.shape[0]
        dtype = np.dtype(settings["dtype"])
        X = _dense(X, dtype)
        weights, weight_mean = self._weights(sample_weight, X, targets)
        if first_pass:
            self._random_state = check_random_state(self.random_state)
            seed = int(self._random_state.randint(np.iinfo(np.int32).max))
            n_outputs = self._n_model_outputs(targets)
            # L-BFGS takes the whole data set as one batch.
            self._fit_batch_size = (n_samples if self.solver == "lbfgs"
                                    else self._batch_size(n_samples))
            # The penalty is divided by the total weight of a batch, as in
            # scikit-learn: batch_size samples of the mean weight.
            model = self._build_model(settings, X.shape[1], n_outputs,
                                      self._fit_batch_size * weight_mean, seed)
            _check_network(model, X.shape[1], n_outputs)
            self.model_ = model
            self.n_layers_ = len(settings["sizes"]) + 2
            self.n_outputs_ = self._n_outputs(targets)
            self.t_ = 0
            self.loss_curve_ = []
            self._no_improvement_count = 0
            self.best_loss_ = None if self.early_stopping else np.inf
            self.validation_scores_ = [] if self.early_stopping else None
            self.best_validation_score_ = -np.inf if self.early_stopping else None
        model = self.model_
        if self.solver == "lbfgs":
            self._fit_lbfgs(model, X, targets, weights)
            return self
        validation = None
        if self.early_stopping:
            # Not stratified for multilabel targets, as in scikit-learn.
            stratify = targets if self._is_classifier() and targets.ndim == 1 else None
            parts = train_test_split(
                X, targets, *([] if weights is None else [weights]),
                random_state=self._random_state, test_size=self.validation_fraction,
                stratify=stratify)
            X, X_val, targets, t_val = parts[:4]
            w_val = None
            if weights is not None:
                weights, w_val = parts[4], parts[5]
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small (fewer than 2 samples): "
                                 "increase validation_fraction or the number of samples")
            validation = (X_val, t_val, w_val)
            self._best_state = _snapshot(model)
        batch_size = self._batch_size(X.shape[0]) if incremental else min(
            self._fit_batch_size, X.shape[0])
        if self.batch_norm and X.shape[0] < 2:
            raise ValueError("batch_norm=True needs at least 2 samples (n_samples=1)")
        self.n_iter_ = 0
        rules = _EpochRules(self, X.shape[0], validation, incremental)
        model.fit(X, self._fit_targets(targets), epochs=1 if incremental else self.max_iter,
                  batch_size=batch_size, verbose=0, callbacks=[rules],
                  shuffle=self.shuffle, sample_weight=weights)
        if self.early_stopping:
            _restore(model, self._best_state)
            del self._best_state  # a copy of the weights, not needed any more
        _check_finite_weights(model)
        if not incremental and not rules.converged and self.n_iter_ == self.max_iter:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) "
                          "reached and the optimization hasn't converged yet.",
                          ConvergenceWarning)
        return self

    def _fit_lbfgs(self, model, X, targets, weights):
        """Minimise scikit-learn's full-batch objective with scipy's L-BFGS-B
        over the model's flat parameter buffer, gradients from cdl's backward."""
        params = model.param_buffer
        objective = self._lbfgs_objective(model, X, self._fit_targets(targets), weights)
        result = scipy.optimize.minimize(
            objective, params.astype(np.float64), method="L-BFGS-B", jac=True,
            options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol})
        params[...] = result.x
        self.n_iter_ = min(int(result.nit), self.max_iter)
        self.loss_ = float(result.fun)
        self.t_ += X.shape[0]
        if not result.success:
            message = result.message
            if isinstance(message, bytes):
                message = message.decode("latin1")
            warnings.warn(f"lbfgs failed to converge after {self.n_iter_} iteration(s) "
                          f"(status={result.status}): {message}; increase max_iter or "
                          "max_fun, or scale the data", ConvergenceWarning)
        _check_finite_weights(model)

    def _lbfgs_objective(self, model, X, targets, weights):
        """The function of the flat parameters that L-BFGS minimises: it sets
        them in the model and returns (loss, gradient) in float64."""
        params = model.param_buffer
        dtype = params.dtype
        total = float(X.shape[0] if weights is None else weights.sum())
        scale = (np.full((X.shape[0], 1), 1.0 / total) if weights is None
                 else (weights.astype(np.float64) / total).reshape(-1, 1))

        def objective(theta):
            params[...] = theta
            outputs = model.forward(X, training=True).astype(np.float64)
            loss, grad = self._lbfgs_loss(outputs, targets, scale)
            model.backward(grad.astype(dtype))
            if model.has_regularization():
                # scikit-learn's 0.5 * alpha * ||W||^2 / total weight (see _build_model)
                loss += float(model.regularization_loss())
                model.add_regularization_gradients()
            return loss, model.grad_buffer.astype(np.float64)

        return objective

    def _lbfgs_loss(self, outputs, targets, scale):
        """scikit-learn's loss of the outputs and its gradient with respect to
        them; ``scale`` holds each sample's weight over the total weight."""
        t = targets.reshape(outputs.shape)
        if self.loss == "poisson":
            rates = np.exp(outputs)
            loss = float(np.sum(scale * (xlogy(t, t) - t * outputs - t + rates)))
            return loss, scale * (rates - t)
        diff = outputs - t
        return 0.5 * float(np.sum(scale * diff * diff)), scale * diff

    def _weights(self, sample_weight, X, targets):
        """Per-sample weights scaled to mean 1 (times class weights) or None,
        and the mean of the given weights (1 without them).

        Scaling to mean 1 makes an integer weight act as that many copies of
        the sample: cdl's losses divide by the number of samples."""
        weights, mean = None, 1.0
        if sample_weight is not None:
            weights = _check_sample_weight(sample_weight, X, dtype=np.float64,
                                           ensure_non_negative=True)
            mean = float(weights.mean())
            weights = weights / mean
            if np.all(weights == 1.0):
                weights = None  # the same training as no weights, bit for bit
        extra = self._class_weights(targets)
        if extra is not None:
            weights = extra if weights is None else weights * extra
        if weights is not None:
            weights = np.ascontiguousarray(weights, dtype=X.dtype)
        return weights, mean

    def _class_weights(self, targets):
        return None

    def fit(self, X, y, sample_weight=None):
        """Train the network on (X, y) for up to ``max_iter`` epochs.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Class labels (classifier) or targets (regressor).
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weights, scaled to mean 1: a weight of 2 counts
            a sample as two copies of it would.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            For invalid hyper-parameters or data (NaN, wrong shapes, one
            class only, all-zero weights).
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    @property
    def coefs_(self):
        """The kernels of the network's Dense layers, views of shape
        (n_in, n_out) into its weights (scikit-learn's ``coefs_``)."""
        return [layer.kernel for layer in self._dense_layers()]

    @property
    def intercepts_(self):
        """The biases of the network's Dense layers, views of shape (n_out,)
        (scikit-learn's ``intercepts_``; a layer without bias has none)."""
        return [layer.bias for layer in self._dense_layers() if layer.use_bias]

    def _dense_layers(self):
        model = self.__dict__.get("model_")
        if model is None:
            raise AttributeError(f"{type(self).__name__} is not fitted: it has no coefs_ "
                                 "or intercepts_ yet")
        return [layer for layer in model.layers if isinstance(layer, _layers.Dense)]

    def _stochastic(self):
        return self.solver != "lbfgs"

    # --- predicting --------------------------------------------------------------

    def _outputs(self, X):
        """The network's outputs for checked ``X`` (logits or values).

        BLAS picks its kernels by matrix size, so a sample's outputs may
        differ in the last bit with the number of rows computed with it.
        Predicting in fixed blocks of ``_PREDICT_BLOCK`` rows (the last one
        padded) makes each sample's prediction independent of the rest of
        ``X``, as scikit-learn expects."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32),
                          accept_sparse=("csr", "csc", "coo"))
        X = _dense(X, self.model_.dtype)
        n = X.shape[0]
        padded = -(-n // _PREDICT_BLOCK) * _PREDICT_BLOCK
        rows = np.zeros((padded, X.shape[1]), dtype=self.model_.dtype)
        rows[:n] = X
        return self.model_.predict(rows, batch_size=_PREDICT_BLOCK)[:n]

    # --- pickling ------------------------------------------------------------------

    def __getstate__(self):
        # A copy: object.__getstate__ may return the instance's own __dict__.
        state = dict(super().__getstate__())
        model = state.pop("model_", None)
        if model is not None:
            # The network travels as a cdl model file: no pickle inside it.
            state["_model_file"] = _model_file_bytes(model)
        return state

    def __setstate__(self, state):
        state = dict(state)
        data = state.pop("_model_file", None)
        super().__setstate__(state)
        if data is not None:
            self.model_ = _model_from_bytes(data)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.allow_nan = False
        return tags


_COMMON_PARAMS_DOC = """
    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default (100,)
        Units of each hidden layer; ``()`` gives a linear model.
    activation : str or list of str, default "relu"
        Activation of the hidden layers, shared or one per layer:
        scikit-learn's "identity", "logistic", "tanh", "relu", or any cdl
        activation ("gelu", "elu", "leaky_relu", "silu", ...).
    solver : str or cdl.optimizers.Optimizer, default "adam"
        "adam", "sgd", "adamw", "nadam", "radam", "adamax", "rmsprop",
        "adagrad", or an optimizer instance (copied at each fit; its own
        ``lr`` is used); or "lbfgs": scipy's L-BFGS-B on the full-batch
        objective (losses "log_loss", "squared_error", "poisson"; no
        dropout, no ``partial_fit``), up to ``max_iter`` iterations and
        ``max_fun`` loss evaluations, stopping when the gradient is below
        ``tol``.
    alpha : float >= 0, default 1e-4
        L2 penalty on the weights (not the biases), scikit-learn's scaling:
        ``0.5 * alpha * sum(W ** 2) / batch_size`` is added to each batch's loss.
    batch_size : int or "auto", default "auto"
        "auto" is ``min(200, n_samples)``.
    learning_rate : {"constant", "invscaling", "adaptive"}, default "constant"
        Schedule of the learning rate (for every solver):
        "invscaling" sets it to ``learning_rate_init / (t + 1) ** power_t``
        after each epoch, t the samples seen; "adaptive" divides it by 5
        when ``n_iter_no_change`` epochs bring no improvement, and stops
        once it is below 1e-6.
    learning_rate_init : float > 0, default 1e-3
    power_t : float >= 0, default 0.5
    max_iter : int >= 1, default 200
        Maximum number of epochs.
    shuffle : bool, default True
        Reshuffle the samples every epoch.
    random_state : int, RandomState or None, default None
        Seeds the weights, shuffling, dropout and the validation split;
        an int makes ``fit`` reproducible.
    tol : float >= 0, default 1e-4
        An epoch improves if the training loss falls (or the validation
        score rises) by more than ``tol``.
    verbose : bool or int >= 0, default False
        Print one line per epoch if true (an int level, as scikit-learn
        accepts).
    warm_start : bool, default False
        ``fit`` continues from the previous fit instead of starting over.
    momentum : float in [0, 1], default 0.9
        Momentum of ``solver="sgd"``.
    nesterovs_momentum : bool, default True
        Nesterov momentum for ``solver="sgd"``.
    early_stopping : bool, default False
        Hold out ``validation_fraction`` of the data, stop when the
        validation score has not improved for ``n_iter_no_change`` epochs
        and keep the weights of the best epoch.
    validation_fraction : float in (0, 1), default 0.1
    beta_1, beta_2 : float in [0, 1), default 0.9, 0.999
        Moment decay rates of the Adam family.
    epsilon : float > 0, default 1e-8
        Adam's epsilon.
    n_iter_no_change : int >= 1 or np.inf, default 10
        Epochs without improvement (by ``tol``) before stopping; ``np.inf``
        never stops early.
    max_fun : int >= 1, default 15000
        Most loss evaluations of ``solver="lbfgs"``.
    dropout : float or list of float in [0, 1), default 0
        Dropout rate after each hidden layer, shared or one per layer.
    batch_norm : bool, default False
        Insert a BatchNorm between each hidden Dense layer and its activation.
    dtype : {"float32", "float64"}, default "float64"
        Precision of the network. float64, like scikit-learn's own MLP, is
        what scikit-learn's estimator checks hold to; float32 trains
        faster and agrees with them to float32 rounding."""


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier trained by cdl, scikit-learn's API.

    A softmax output over the classes (for two classes too), trained with
    cross-entropy or hinge loss; for multilabel targets (an indicator
    matrix) a logistic output per label, trained with binary
    cross-entropy.
    {params}
    loss : {{"log_loss", "hinge"}}, default "log_loss"
        Softmax cross-entropy, or the hinge loss on one-hot targets (no
        ``predict_proba`` then).
    class_weight : dict, "balanced" or None, default None
        Weight of each class (keyed by the class labels) in the loss;
        "balanced" uses ``n_samples / (n_classes * count(class))``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    model_ : cdl.Sequential
        The trained network (outputs are logits); the ``cdl.Model`` that
        ``_build_model`` returns in a subclass that overrides it.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        When X had string column names.
    n_iter_ : int
        Epochs run by the last ``fit`` (1 after ``partial_fit``).
    t_ : int
        Training samples seen, over all calls.
    loss_ : float
        Mean training loss of the last epoch (penalty included).
    loss_curve_ : list of float
        That loss for every epoch.
    best_loss_ : float
        Lowest training loss so far.
    validation_scores_ : list of float or None
        Validation accuracy per epoch with ``early_stopping``.
    best_validation_score_ : float or None
    n_layers_ : int
        Layers counted as scikit-learn does (input, hidden, output).
    n_outputs_ : int
    coefs_, intercepts_ : list of ndarray
        Views of the Dense layers' kernels, shaped (n_in, n_out), and
        biases (n_out,). A binary classifier has two output columns.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl.sklearn import MLPClassifier
    >>> X = np.array([[0., 0.], [0., 1.], [1., 0.], [1., 1.]] * 10)
    >>> y = np.array(["no", "yes", "yes", "no"] * 10)
    >>> clf = MLPClassifier(hidden_layer_sizes=(16,), activation="tanh",
    ...                     learning_rate_init=0.05, max_iter=300, random_state=0)
    >>> clf.fit(X, y).predict([[0., 1.], [1., 1.]]).tolist()
    ['yes', 'no']
    >>> clf.predict_proba([[0., 1.]]).shape
    (1, 2)
    """

    _LOSSES = {"log_loss": _losses.CrossEntropy, "hinge": _losses.Hinge}
    #: Set by fit: y was a label indicator matrix (one logistic output per label).
    _multilabel = False

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=1e-4, batch_size="auto", learning_rate="constant",
                 learning_rate_init=1e-3, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dropout=0.0,
                 batch_norm=False, loss="log_loss", class_weight=None, dtype="float64"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.loss = loss
        self.class_weight = class_weight
        self.dtype = dtype

    @staticmethod
    def _is_classifier():
        return True

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, reset=reset, dtype=(np.float64, np.float32),
                             y_numeric=False, multi_output=True,
                             accept_sparse=("csr", "csc", "coo"))
        multilabel = type_of_target(y) == "multilabel-indicator"
        if not multilabel:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        fresh = not hasattr(self, "classes_") or (not self.warm_start and not incremental)
        if not fresh and hasattr(self, "model_") and multilabel != self._multilabel:
            raise ValueError("y is multilabel (an indicator matrix) in one call and not in "
                             "the other; refit from scratch to change the kind of targets")
        self._multilabel = multilabel
        present = unique_labels(y)
        if fresh:
            self.classes_ = present
        elif self.warm_start and not incremental:
            if not np.array_equal(present, self.classes_):
                raise ValueError(
                    "warm_start can only be used where `y` has the same classes as in the "
                    f"previous call to fit. Previously got {self.classes_}, `y` has {present}")
        else:
            unknown = np.setdiff1d(present, self.classes_)
            if unknown.size:
                raise ValueError(f"y has classes {unknown.tolist()} that are not in "
                                 f"classes_ {self.classes_.tolist()}")
        if multilabel:
            if y.shape[1] != len(self.classes_):
                raise ValueError(f"y has {y.shape[1]} labels per sample, expected "
                                 f"{len(self.classes_)}")
            if self.loss != "log_loss":
                raise ValueError("multilabel targets train with loss='log_loss' (a "
                                 f"logistic output per label), not loss={self.loss!r}")
            return X, np.asarray(y, dtype=np.float64)
        if len(self.classes_) < 2:
            raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes; "
                             f"got 1 class ({self.classes_[0]!r})")
        return X, np.searchsorted(self.classes_, y).astype(np.int64)

    def _make_loss(self):
        if getattr(self, "_multilabel", False):
            # One logistic output per label, as scikit-learn's multilabel MLP.
            return _losses.BinaryCrossEntropy()
        return super()._make_loss()

    def _lbfgs_loss(self, outputs, targets, scale):
        if self._multilabel:
            # sum over labels of the binary cross-entropy, weighted mean over samples
            probs = _sigmoid(outputs)
            loss = -float(np.sum(scale * (targets * _log_sigmoid(outputs)
                                          + (1.0 - targets) * _log_sigmoid(-outputs))))
            return loss, scale * (probs - targets)
        shifted = outputs - outputs.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        rows = np.arange(outputs.shape[0])
        loss = -float(np.sum(scale[:, 0] * log_probs[rows, targets]))
        grad = np.exp(log_probs)
        grad[rows, targets] -= 1.0
        return loss, scale * grad

    def _n_model_outputs(self, targets):
        return len(self.classes_)

    def _n_outputs(self, targets):
        return len(self.classes_) if self._multilabel else 1

    def _fit_targets(self, labels):
        if self._multilabel:
            return np.ascontiguousarray(labels, dtype=self.model_.dtype)
        if self.loss == "hinge":
            one_hot = np.zeros((labels.size, len(self.classes_)), dtype=self.model_.dtype)
            one_hot[np.arange(labels.size), labels] = 1.0
            return one_hot
        return labels

    def _class_weights(self, labels):
        if self.class_weight is None:
            return None
        if self._multilabel:
            raise ValueError("class_weight is not supported with multilabel targets")
        if isinstance(self.class_weight, str):
            if self.class_weight != "balanced":
                raise ValueError(f"class_weight must be a dict, 'balanced' or None, "
                                 f"got {self.class_weight!r}")
            counts = np.bincount(labels, minlength=len(self.classes_)).astype(np.float64)
            table = np.zeros(len(self.classes_))
            present = counts > 0
            table[present] = labels.size / (present.sum() * counts[present])
        elif isinstance(self.class_weight, dict):
            table = np.ones(len(self.classes_))
            for label, weight in self.class_weight.items():
                index = np.searchsorted(self.classes_, label)
                if index >= len(self.classes_) or self.classes_[index] != label:
                    raise ValueError(f"class_weight names class {label!r}, which is not in "
                                     f"classes_ {self.classes_.tolist()}")
                table[index] = check_number(weight, f"class_weight[{label!r}]", low=0.0)
        else:
            raise TypeError(f"class_weight must be a dict, 'balanced' or None, "
                            f"got {self.class_weight!r}")
        return table[labels]

    def _score_outputs(self, outputs, labels, weights):
        if not np.isfinite(outputs).all():
            return np.nan
        if self._multilabel:
            return accuracy_score(labels, (outputs > 0).astype(int), sample_weight=weights)
        return accuracy_score(labels, outputs.argmax(axis=1), sample_weight=weights)

    @available_if(_BaseMLP._stochastic)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over (X, y), continuing from earlier calls.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), optional
        classes : array-like of shape (n_classes,)
            Every class of the problem; required on the first call.

        Returns
        -------
        self
        """
        if _check_partial_fit_first_call(self, classes):
            self.classes_ = unique_labels(classes)
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def predict(self, X):
        """Predicted class labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        outputs = self._outputs(X)
        if self._multilabel:
            return (outputs > 0).astype(int)
        return self.classes_[outputs.argmax(axis=1)]

    def _has_probabilities(self):
        return self.loss == "log_loss"

    @available_if(_has_probabilities)
    def predict_proba(self, X):
        """Class probabilities (softmax of the outputs, computed in float64).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Columns in the order of ``classes_``.

        Raises
        ------
        AttributeError
            With ``loss="hinge"``, which gives scores, not probabilities
            (``hasattr(clf, "predict_proba")`` is False then).
        """
        logits = self._outputs(X).astype(np.float64)
        if self._multilabel:
            return _sigmoid(logits)
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=1, keepdims=True)
        return logits

    @available_if(_has_probabilities)
    def predict_log_proba(self, X):
        """Logarithm of ``predict_proba`` (log-softmax of the outputs).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        logits = self._outputs(X).astype(np.float64)
        if self._multilabel:
            # The log of predict_proba (as scikit-learn's), whose ties it keeps.
            return np.log(_sigmoid(logits))
        logits -= logits.max(axis=1, keepdims=True)
        logits -= np.log(np.exp(logits).sum(axis=1, keepdims=True))
        return logits


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor trained by cdl, scikit-learn's API.

    A linear output per target (one or several).
    {params}
    loss : {{"squared_error", "absolute_error", "huber", "poisson"}}, default "squared_error"
        "poisson" trains log-rates (Poisson negative log-likelihood) and
        ``predict`` returns ``exp`` of them; targets must be non-negative.

    Attributes
    ----------
    model_ : cdl.Sequential
        The trained network; the ``cdl.Model`` that ``_build_model``
        returns in a subclass that overrides it.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        When X had string column names.
    n_iter_ : int
    t_ : int
    loss_ : float
    loss_curve_ : list of float
    best_loss_ : float
    validation_scores_ : list of float or None
        Validation R^2 per epoch with ``early_stopping``.
    best_validation_score_ : float or None
    n_layers_ : int
    n_outputs_ : int
    coefs_, intercepts_ : list of ndarray
        Views of the Dense layers' kernels, shaped (n_in, n_out), and
        biases (n_out,).

    Examples
    --------
    >>> import numpy as np
    >>> from cdl.sklearn import MLPRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-1, 1, (200, 1))
    >>> y = 2.0 * X[:, 0] + 1.0
    >>> reg = MLPRegressor(hidden_layer_sizes=(), learning_rate_init=0.05,
    ...                    max_iter=300, random_state=0).fit(X, y)
    >>> round(float(reg.predict([[0.5]])[0]), 1)
    2.0
    """

    _LOSSES = {"squared_error": _losses.MSE, "absolute_error": _losses.MAE,
               "huber": _losses.Huber, "poisson": _losses.Poisson}

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=1e-4, batch_size="auto", learning_rate="constant",
                 learning_rate_init=1e-3, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dropout=0.0,
                 batch_norm=False, loss="squared_error", dtype="float64"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.loss = loss
        self.dtype = dtype

    @staticmethod
    def _is_classifier():
        return False

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, reset=reset, dtype=(np.float64, np.float32),
                             multi_output=True, y_numeric=True,
                             accept_sparse=("csr", "csc", "coo"))
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        y = np.asarray(y, dtype=np.float64)
        if self.loss == "poisson" and (y < 0).any():
            raise ValueError("loss='poisson' needs non-negative targets")
        if not reset and hasattr(self, "model_"):
            expected = self.model_.output_shape[0]
            got = 1 if y.ndim == 1 else y.shape[1]
            if got != expected:
                raise ValueError(f"y has {got} targets per sample, the model was fitted "
                                 f"with {expected}")
        return X, y

    def _n_model_outputs(self, targets):
        return 1 if targets.ndim == 1 else targets.shape[1]

    def _n_outputs(self, targets):
        return self._n_model_outputs(targets)

    def _fit_targets(self, targets):
        return targets.reshape(targets.shape[0], -1)

    def _values(self, outputs):
        values = outputs.astype(np.float64)
        if self.loss == "poisson":
            np.exp(values, out=values)
        return values

    def _score_outputs(self, outputs, targets, weights):
        values = self._values(outputs)
        if not np.isfinite(values).all():
            return np.nan
        return r2_score(targets, values.reshape(targets.shape), sample_weight=weights)

    @available_if(_BaseMLP._stochastic)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y), continuing from earlier calls.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def predict(self, X):
        """Predicted values, in float64.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_outputs)
            One axis if the model was fitted on one-dimensional targets.
        """
        values = self._values(self._outputs(X))
        return values.ravel() if self.n_outputs_ == 1 else values

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


MLPClassifier.__doc__ = MLPClassifier.__doc__.format(params=_COMMON_PARAMS_DOC)
MLPRegressor.__doc__ = MLPRegressor.__doc__.format(params=_COMMON_PARAMS_DOC)
