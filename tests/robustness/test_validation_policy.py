"""One policy for flags: ``True``/``False`` (or NumPy's ``np.bool_``), nothing else.

Every public constructor and function of the modules below is walked; its
flags are found by introspection (a parameter whose default is a bool, or
one documented as ``name : bool``), so a new class or function with a flag
is covered without touching this file. Each flag is given a string, an int
and None, and must raise a ``TypeError`` naming it; ``np.bool_`` must be
accepted. Callables that need arguments to run at all take them from
``ARGUMENTS``: one that needs an argument missing from that table fails
(rather than being skipped).
"""
import importlib
import importlib.util
import inspect
import re

import numpy as np
import pytest

import cdl
from cdl import layers, optimizers
from cdl._validation import BLAS_INT_MAX, check_bool, check_number

MODULES = ["cdl.layers", "cdl.optimizers", "cdl.schedules", "cdl.callbacks", "cdl.losses",
           "cdl.metrics", "cdl.data", "cdl.regularizers", "cdl.initializers", "cdl.averaging",
           "cdl.datasets", "cdl.io", "cdl.distributed", "cdl.gradcheck"]

pytestmark = pytest.mark.filterwarnings("ignore:.*max_iter .* reached")

#: Values that are not flags: truthy and falsy strings, ints, None.
NOT_FLAGS = ["no", "False", 1, 0, None]

#: (module, parameter) pairs that take an int level as well as a bool:
#: only non-numbers are refused there.
LEVELS = {("cdl.sklearn", "verbose")}


def _model(compiled=True):
    model = cdl.Sequential([layers.Dense(2)], input_shape=(3,), seed=0)
    if compiled:
        model.compile("sgd", "mse")
    return model


def _xy():
    rng = np.random.default_rng(0)
    return rng.normal(size=(8, 3)), rng.normal(size=(8, 2))


#: Arguments each callable needs to run: ``name -> f(tmp_path) -> (args, kwargs)``.
ARGUMENTS = {
    "cdl.layers.Dense": lambda tmp: ((2,), {}),
    "cdl.layers.Conv1D": lambda tmp: ((2, 3), {}),
    "cdl.layers.Conv2D": lambda tmp: ((2, 3), {}),
    "cdl.layers.Conv2DTranspose": lambda tmp: ((2, 3), {}),
    "cdl.layers.Conv1DTranspose": lambda tmp: ((2, 3), {}),
    "cdl.layers.DepthwiseConv1D": lambda tmp: ((3,), {}),
    "cdl.layers.DepthwiseConv2D": lambda tmp: ((3,), {}),
    "cdl.layers.SeparableConv1D": lambda tmp: ((2, 3), {}),
    "cdl.layers.SeparableConv2D": lambda tmp: ((2, 3), {}),
    "cdl.layers.LSTM": lambda tmp: ((2,), {}),
    "cdl.layers.GRU": lambda tmp: ((2,), {}),
    "cdl.layers.Dot": lambda tmp: ((1,), {}),
    "cdl.layers.Embedding": lambda tmp: ((5, 2), {}),
    "cdl.layers.GroupNorm": lambda tmp: ((2,), {}),
    "cdl.layers.MultiHeadAttention": lambda tmp: ((2, 4), {}),
    "cdl.layers.PositionalEmbedding": lambda tmp: ((4,), {}),
    "cdl.layers.TransformerEncoder": lambda tmp: ((2,), {}),
    "cdl.layers.TransformerDecoder": lambda tmp: ((2,), {}),
    "cdl.optimizers.Optimizer": lambda tmp: ((), {"lr": 0.1}),
    "cdl.optimizers.clip_grad_norm": lambda tmp: (([np.ones(3)], 1.0), {}),
    "cdl.schedules.OneCycleLR": lambda tmp: ((optimizers.SGD(lr=0.1, momentum=0.9), 1.0),
                                             {"total_steps": 10}),
    "cdl.schedules.CyclicLR": lambda tmp: ((optimizers.SGD(lr=0.1, momentum=0.9), 0.01, 0.1),
                                           {}),
    "cdl.callbacks.ModelCheckpoint": lambda tmp: ((str(tmp / "ckpt.cdl"),), {}),
    "cdl.callbacks.CSVLogger": lambda tmp: ((str(tmp / "log.csv"),), {}),
    "cdl.callbacks.LossThreshold": lambda tmp: ((0.1,), {}),
    "cdl.callbacks.BackupAndRestore": lambda tmp: ((str(tmp / "backup"),), {}),
    "cdl.callbacks.StochasticWeightAveraging": lambda tmp: ((1,), {}),
    "cdl.averaging.StochasticWeightAveraging": lambda tmp: ((1,), {}),
    "cdl.metrics.binary_accuracy": lambda tmp: (([1, 0], [0.9, 0.2]), {}),
    "cdl.data.iterate_batches": lambda tmp: ((10, 4), {}),
    "cdl.data.BatchLoader": lambda tmp: ((np.zeros((10, 2)),), {}),
    "cdl.data.train_test_split": lambda tmp: ((np.arange(8.0),), {}),
    "cdl.io.save_model": lambda tmp: ((_model(), str(tmp / "m.cdl")), {}),
    "cdl.gradcheck.gradcheck": lambda tmp: ((layers.Dense(2), np.ones((2, 3))), {}),
    "cdl.use_deterministic_algorithms": lambda tmp: ((), {"mode": False}),
    "cdl.set_detect_anomaly": lambda tmp: ((), {"mode": False}),
    "cdl.sklearn.MLPClassifier": lambda tmp: ((), {"hidden_layer_sizes": (4,), "max_iter": 2,
                                                   "random_state": 0}),
    "cdl.sklearn.MLPRegressor": lambda tmp: ((), {"hidden_layer_sizes": (4,), "max_iter": 2,
                                                  "random_state": 0}),
    "Sequential.compile": lambda tmp: ((_model(compiled=False), "sgd", "mse"), {}),
    "Sequential.fit": lambda tmp: ((_model(), *_xy()), {"epochs": 1, "verbose": 0}),
    "Sequential.partial_fit": lambda tmp: ((_model(), *_xy()), {}),
    "Sequential.evaluate": lambda tmp: ((_model(), *_xy()), {}),
    "Sequential.forward": lambda tmp: ((_model(), np.ones((2, 3))), {}),
    "Sequential.save": lambda tmp: ((_model(), str(tmp / "s.cdl")), {}),
}

#: Calls whose valid run needs something this machine may lack, and the
#: exception they then raise after checking their arguments.
#: Callables that fail for want of something a test machine lacks, once
#: their flags were accepted: the exceptions and a word of the message.
UNAVAILABLE = {"cdl.distributed.init": (ImportError, "mpi4py"),
               "cdl.callbacks.TensorBoard": (ImportError, "cdl\\[tensorboard\\]")}
#: The standard data sets: with download=True they would fetch; their mirror
#: is a closed port of this machine, so they fail at once (or lack pooch).
_DATASETS_OFFLINE = ((ConnectionError, ImportError), "127.0.0.1:9|cdl\\[datasets\\]")
for _name in ("load_mnist", "load_fashion_mnist", "load_cifar10", "load_imdb",
              "load_imdb_word_index"):
    UNAVAILABLE[f"cdl.datasets.{_name}"] = _DATASETS_OFFLINE
    ARGUMENTS[f"cdl.datasets.{_name}"] = lambda tmp: ((), {"data_home": str(tmp / "data"),
                                                          "mirror": "http://127.0.0.1:9"})
del _name


def _flags(func, doc):
    """(name, default) of the flags of ``func``: bool defaults, or documented as bool."""
    found = []
    for p in inspect.signature(func).parameters.values():
        documented = doc and re.search(rf"^\s*{p.name} : bool\s*(,|$)", doc, re.M)
        if isinstance(p.default, bool) or documented:
            found.append((p.name, p.default if isinstance(p.default, bool) else None))
    return found


def _public_callables():
    """(key, callable, function whose signature holds the flags, docstring)."""
    found = []
    for module_name in MODULES + ["cdl.sklearn"]:
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # cdl.sklearn without scikit-learn
            if module_name != "cdl.sklearn":
                raise
            continue
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj):
                found.append((f"{module_name}.{name}", obj, obj.__init__, inspect.getdoc(obj)))
            elif inspect.isfunction(obj):
                found.append((f"{module_name}.{name}", obj, obj, inspect.getdoc(obj)))
    seen = {id(obj) for _, obj, _, _ in found}   # cdl.gradcheck is cdl.gradcheck.gradcheck
    for name in cdl.__all__:
        obj = getattr(cdl, name)
        if id(obj) not in seen and (
                inspect.isfunction(obj) or inspect.isclass(obj) and obj is not cdl.Sequential):
            func = obj.__init__ if inspect.isclass(obj) else obj
            found.append((f"cdl.{name}", obj, func, inspect.getdoc(obj)))
    found.append(("cdl.Sequential", cdl.Sequential, cdl.Sequential.__init__,
                  inspect.getdoc(cdl.Sequential)))
    for name, method in inspect.getmembers(cdl.Sequential, inspect.isfunction):
        if not name.startswith("_"):
            found.append((f"Sequential.{name}", method, method, inspect.getdoc(method)))
    return found


CASES = [(key, obj, flag, default)
         for key, obj, func, doc in _public_callables()
         for flag, default in _flags(func, doc)]


def _required(func):
    return [p.name for p in inspect.signature(func).parameters.values()
            if p.default is inspect.Parameter.empty and p.name != "self"
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _call(key, obj, tmp_path, **flags):
    """Call ``obj`` with its table arguments and ``flags``; for an estimator
    of cdl.sklearn, fit it (scikit-learn checks parameters in ``fit``)."""
    args, kwargs = ARGUMENTS[key](tmp_path) if key in ARGUMENTS else ((), {})
    kwargs = {**kwargs, **flags}
    if key.startswith("cdl.sklearn."):
        x = np.random.default_rng(0).normal(size=(12, 3))
        y = np.arange(12) % 2
        return obj(*args, **kwargs).fit(x, y)
    return obj(*args, **kwargs)


@pytest.fixture(autouse=True)
def _restore_process_settings():
    """Some callables switch process-wide settings; put them back."""
    deterministic, anomaly = cdl.are_deterministic_algorithms_enabled(), \
        cdl.is_anomaly_enabled()
    yield
    cdl.use_deterministic_algorithms(deterministic)
    cdl.set_detect_anomaly(anomaly)


def test_the_walk_finds_the_flags_of_every_kind_of_callable():
    keys = {(key, flag) for key, _, flag, _ in CASES}
    for expected in [("cdl.layers.Dense", "use_bias"), ("cdl.optimizers.SGD", "nesterov"),
                     ("cdl.schedules.OneCycleLR", "cycle_momentum"),
                     ("cdl.callbacks.EarlyStopping", "restore_best_weights"),
                     ("cdl.losses.KLDivergence", "log_target"),
                     ("cdl.metrics.BinaryAccuracy", "from_logits"),
                     ("cdl.data.BatchLoader", "shuffle"), ("cdl.datasets.load_digits", "return_X_y"),
                     ("cdl.use_deterministic_algorithms", "mode"),
                     ("Sequential.fit", "shuffle"), ("Sequential.save", "include_optimizer"),
                     ("Sequential.forward", "training")]:
        assert expected in keys
    # cdl.sklearn is walked only where scikit-learn (an optional extra) is installed.
    if importlib.util.find_spec("sklearn") is not None:
        assert ("cdl.sklearn.MLPClassifier", "early_stopping") in keys


@pytest.mark.parametrize("key, obj", sorted({(key, obj) for key, obj, _, _ in CASES},
                                            key=lambda case: case[0]),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_every_callable_with_a_flag_has_the_arguments_it_needs(key, obj):
    func = obj.__init__ if inspect.isclass(obj) else obj
    missing = [name for name in _required(func) if key not in ARGUMENTS]
    assert not missing, (f"{key} needs {missing}: add its minimal valid arguments to "
                         "ARGUMENTS in this file")


@pytest.mark.parametrize("key, obj, flag, default", CASES,
                         ids=[f"{key}-{flag}" for key, _, flag, _ in CASES])
def test_flags_accept_numpy_bools(key, obj, flag, default, tmp_path):
    value = np.bool_(False if default is None else default)
    try:
        _call(key, obj, tmp_path, **{flag: value})
    except UNAVAILABLE.get(key, ((), ""))[0] as error:
        assert re.search(UNAVAILABLE[key][1], str(error)), error


@pytest.mark.parametrize("key, obj, flag, default", CASES,
                         ids=[f"{key}-{flag}" for key, _, flag, _ in CASES])
@pytest.mark.parametrize("value", NOT_FLAGS, ids=repr)
def test_flags_refuse_everything_but_bools(key, obj, flag, default, value, tmp_path):
    module = key.rsplit(".", 1)[0]
    if (module, flag) in LEVELS and isinstance(value, int):
        _call(key, obj, tmp_path, **{flag: value})  # a level: ints are fine
        return
    with pytest.raises(TypeError, match=rf"\b{flag}\b"):
        _call(key, obj, tmp_path, **{flag: value})


@pytest.mark.parametrize("layer", [layers.Dropout(0.5), layers.SpatialDropout1D(0.5),
                                   layers.GaussianNoise(0.1), layers.BatchNorm()],
                         ids=lambda layer: type(layer).__name__)
@pytest.mark.parametrize("value", NOT_FLAGS, ids=repr)
def test_layers_whose_forward_depends_on_training_refuse_a_non_flag(layer, value):
    model = cdl.Sequential([layer], input_shape=(4, 3), seed=0)
    x = np.ones((2, 4, 3), dtype=np.float32)
    with pytest.raises(TypeError, match="training"):
        layer.forward(x, training=value)
    assert model.forward(x, training=np.True_).shape == x.shape


def test_a_string_flag_is_not_read_as_true():
    # The reason for the policy: bool("no") is True.
    with pytest.raises(TypeError, match="nesterov must be True or False, got 'no'"):
        optimizers.SGD(momentum=0.9, nesterov="no")
    with pytest.raises(TypeError, match="use_bias must be True or False, got 'no'"):
        layers.Dense(2, use_bias="no")
    assert optimizers.SGD(momentum=0.9, nesterov=np.True_).nesterov is True


def test_check_bool():
    assert check_bool(True, "f") is True and check_bool(np.False_, "f") is False
    for value in NOT_FLAGS + [np.int64(1), np.array([True]), 1.0]:
        with pytest.raises(TypeError, match=r"^f must be True or False, got "):
            check_bool(value, "f")


def test_check_number_bounds_and_infinity():
    assert check_number(0.5, "p", 0.0, 1.0, low_inclusive=False, high_inclusive=False) == 0.5
    for bad in (0.0, 1.0):
        with pytest.raises(ValueError, match="p must be"):
            check_number(bad, "p", 0.0, 1.0, low_inclusive=False, high_inclusive=False)
    assert check_number(float("inf"), "norm_type", low=0.0, finite=False) == float("inf")
    with pytest.raises(ValueError, match="norm_type must be a number, not NaN"):
        check_number(float("nan"), "norm_type", low=0.0, finite=False)
    with pytest.raises(ValueError, match="must be finite"):
        check_number(float("inf"), "lr")
    with pytest.raises(TypeError, match="must be an integer"):
        check_number(float("inf"), "n", integer=True, finite=False)
    for bad in ("2", np.True_, True, None):
        with pytest.raises(TypeError, match="n must be a number"):
            check_number(bad, "n")


def test_clip_grad_norm_refuses_a_string_norm_type():
    # float("2") used to turn it into a number.
    with pytest.raises(TypeError, match="norm_type"):
        optimizers.clip_grad_norm([np.ones(3)], 1.0, norm_type="2")
    assert optimizers.clip_grad_norm([np.ones(4)], 10.0, norm_type=float("inf")) == 1.0


def test_fit_distributed_takes_numpy_false_and_refuses_none():
    model, (x, y) = _model(), _xy()
    model.fit(x, y, verbose=0, distributed=np.False_)
    with pytest.raises(TypeError, match="distributed"):
        model.fit(x, y, verbose=0, distributed=None)


def test_csv_header_one_is_refused_and_numpy_true_reads_a_header(tmp_path):
    from cdl import data

    (tmp_path / "d.csv").write_text("1,2\n3,4\n5,6\n")
    with pytest.raises(TypeError, match="header"):
        data.csv_to_npy(tmp_path / "d.csv", tmp_path / "out", header=1)
    x, _ = data.csv_to_npy(tmp_path / "d.csv", tmp_path / "out", header=np.True_)
    assert x.shape == (2, 1)     # the first line was the header


def test_one_blas_limit_for_the_kernels_and_python():
    from cdl._kernels import _blas
    from cdl._validation import check_blas_size
    from cdl.optimizers import clip

    assert BLAS_INT_MAX == _blas.BLAS_INT_MAX == 2**31 - 1 == clip._CHUNK
    check_blas_size(BLAS_INT_MAX, "n")
    with pytest.raises(ValueError, match=f"n is {BLAS_INT_MAX + 1}, larger than BLAS's 32-bit "
                                         f"integer limit \\({BLAS_INT_MAX}\\)"):
        check_blas_size(BLAS_INT_MAX + 1, "n")
