"""Metric.get_state / set_state: what a checkpoint saves of a metric."""
import numpy as np
import pytest

import cdl
from cdl import callbacks, layers, metrics
from cdl.training.strategy import SingleProcess

RNG = np.random.default_rng(0)
LABELS = RNG.integers(0, 3, size=24)
SCORES = RNG.normal(size=(24, 3))
VALUES = RNG.normal(size=(24, 2))
TARGETS = VALUES + RNG.normal(scale=0.1, size=(24, 2))
WEIGHTS = RNG.uniform(0.5, 2.0, size=24)


def _fed(metric):
    """``(y_true, y_pred)`` that ``metric`` takes."""
    if isinstance(metric, metrics.Mean):
        return (VALUES[:, 0],)
    if isinstance(metric, metrics.BinaryAccuracy):
        return (LABELS % 2, SCORES[:, 0])
    if isinstance(metric, (metrics.MSE, metrics.MAE, metrics.RMSE, metrics.R2)):
        return TARGETS, VALUES
    return LABELS, SCORES


BUILT_IN = [metrics.Mean(), metrics.MeanMetricWrapper(metrics.accuracy), metrics.Accuracy(),
            metrics.BinaryAccuracy(), metrics.TopKAccuracy(k=2), metrics.Precision(),
            metrics.Recall(), metrics.F1Score(average="micro"), metrics.MSE(), metrics.MAE(),
            metrics.RMSE(), metrics.R2()]


def test_every_built_in_metric_class_is_covered():
    covered = {type(m) for m in BUILT_IN}
    exported = {getattr(metrics, name) for name in metrics.__all__}
    classes = {c for c in exported if isinstance(c, type) and issubclass(c, metrics.Metric)
               and c is not metrics.Metric}
    assert classes <= covered


@pytest.mark.parametrize("metric", BUILT_IN, ids=lambda m: type(m).__name__)
def test_a_metric_state_round_trips_and_the_metric_continues_exactly(metric):
    data = _fed(metric)
    half = [a[:12] for a in data]
    rest = [a[12:] for a in data]
    metric.reset()
    metric.update(*half)
    state = metric.get_state()
    restored = type(metric).__new__(type(metric))
    restored.__dict__.update(metric.__dict__)
    restored.reset()
    restored.set_state(state)
    assert restored.result() == metric.result()
    metric.update(*rest)
    restored.update(*rest)
    assert restored.result() == metric.result()
    # The state is a copy: updating the metric leaves a saved state alone.
    again = type(metric).__new__(type(metric))
    again.__dict__.update(metric.__dict__)
    again.set_state(state)
    assert again.get_state().keys() == state.keys()


def test_set_state_refuses_a_state_of_another_metric():
    acc, mse = metrics.Accuracy(), metrics.MSE()
    mse.update(TARGETS, VALUES)
    with pytest.raises(ValueError, match="does not fit"):
        acc.set_state(mse.get_state())


class _Listing(metrics.Metric):
    """A custom metric keeping its batches in a list (not saveable as it is)."""

    name = "listing"

    def reset(self):
        self._batches = []

    def update(self, y_true, y_pred, sample_weight=None):
        self._batches.append(float(np.mean(y_pred)))

    def result(self):
        return float(np.mean(self._batches)) if self._batches else 0.0


class _SavedListing(_Listing):
    def get_state(self):
        return {"batches": np.array(self._batches)}

    def set_state(self, state):
        self._batches = [float(v) for v in state["batches"]]


def test_a_custom_metric_without_get_state_names_what_to_add():
    metric = _Listing()
    metric.update(None, np.ones(3))
    with pytest.raises(TypeError, match="get_state and set_state"):
        metric.get_state()


def _fit_with_backup(metric, tmp_path):
    x = RNG.normal(size=(32, 3))
    y = x @ np.ones((3, 1))
    model = cdl.Sequential([layers.Dense(1)], input_shape=(3,), seed=0)
    model.compile("sgd", "mse", metrics=[metric])
    backup = callbacks.BackupAndRestore(tmp_path / "backup", save_freq=1,
                                        delete_checkpoint=False)
    return model.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[backup])


def test_a_checkpoint_needing_a_custom_metric_state_says_so(tmp_path):
    with pytest.raises(TypeError, match="listing.*get_state and set_state"):
        _fit_with_backup(_Listing(), tmp_path)


def test_a_custom_metric_with_get_state_gives_the_strategy_its_state():
    metric = _SavedListing()
    metric.update(None, np.ones(3))
    metric.update(None, np.zeros(3))
    [state] = SingleProcess().metric_states([metric])
    other = _SavedListing()
    other.set_state(state)
    assert other.result() == metric.result() == 0.5
