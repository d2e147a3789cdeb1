"""The trainer works over the documented model protocol and nothing else.

``Delegating`` is a model class that is not ``Sequential``: it has the
members of ``cdl.training.protocol.TrainableModel`` (forwarded to a
Sequential it keeps to itself) and nothing more, so a trainer reaching for
anything else of the model fails here. Trained through the same loops, it
must give bit for bit the numbers of the Sequential itself.
"""
import inspect

import numpy as np
import pytest

import cdl
from cdl import layers
from cdl.training import TrainingMixin
from cdl.training.protocol import TrainableModel
from cdl.training.strategy import SingleProcess, Strategy

PROTOCOL_DATA = ("name", "dtype", "rng", "input_shape", "output_shape", "built", "params",
                 "grads", "param_buffer", "grad_buffer", "layers", "chain", "output_layers",
                 "input_names", "output_names", "graph")
PROTOCOL_METHODS = ("build", "ensure_built", "count_params", "check_input", "forward_checked",
                    "backward_checked", "regularization_loss", "has_regularization",
                    "add_regularization_gradients")


class Delegating(TrainingMixin):
    """A model made only of the protocol's members."""

    def __init__(self, inner):
        object.__setattr__(self, "_inner", inner)


def _forwarding(name):
    return property(lambda self: getattr(self._inner, name))


for _name in PROTOCOL_DATA:
    setattr(Delegating, _name, _forwarding(_name))
for _name in PROTOCOL_METHODS:
    setattr(Delegating, _name, (lambda n: lambda self, *a, **k: getattr(self._inner, n)(*a, **k))(
        _name))


def _sequential(dropout):
    stack = [layers.Dense(16, activation="relu"), layers.Dense(3)]
    if dropout:
        stack.insert(1, layers.Dropout(0.2))
    return cdl.Sequential(stack, input_shape=(5,), seed=3)


def _data():
    rng = np.random.default_rng(1)
    return rng.normal(size=(70, 5)), rng.integers(0, 3, size=70)


def test_the_protocol_lists_the_members_the_trainer_uses():
    declared = {name for name, _ in inspect.getmembers(TrainableModel)
                if not name.startswith("_")} | set(TrainableModel.__annotations__)
    assert declared == set(PROTOCOL_DATA) | set(PROTOCOL_METHODS)
    assert isinstance(_sequential(False), TrainableModel)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "layer-by-layer"])
@pytest.mark.parametrize("dropout", [False, True], ids=["dense", "dropout"])
def test_a_model_of_the_protocol_trains_bit_identically(fused, dropout):
    x, y = _data()
    reference, inner = _sequential(dropout), _sequential(dropout)
    model = Delegating(inner)
    for m in (reference, model):
        m.use_fused_step = fused
        m.compile(cdl.optimizers.Adam(lr=0.01), "cross_entropy", metrics=["accuracy"])
    logs = [m.fit(x, y, epochs=3, batch_size=16, verbose=0, validation_split=0.2).history
            for m in (reference, model)]
    assert logs[0] == logs[1]
    for a, b in zip(reference.params, model.params):
        np.testing.assert_array_equal(a, b)
    assert reference.evaluate(x, y) == model.evaluate(x, y)
    np.testing.assert_array_equal(reference.predict(x), model.predict(x))
    np.testing.assert_array_equal(reference.predict_classes(x), model.predict_classes(x))
    assert reference.train_step(x[:8], y[:8]) == model.train_step(x[:8], y[:8])


def test_outside_fit_the_strategy_is_a_single_process():
    model = _sequential(False)
    assert isinstance(model.strategy, SingleProcess)
    assert isinstance(model.strategy, Strategy) and model.strategy.writes


def test_a_callback_sees_the_strategy_of_the_running_fit():
    seen = []
    model = _sequential(False)
    model.compile("sgd", "cross_entropy")
    probe = cdl.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: seen.append(model.strategy))
    x, y = _data()
    model.fit(x, y, epochs=2, verbose=0, callbacks=[probe])
    assert len(seen) == 2 and seen[0] is seen[1] and isinstance(seen[0], SingleProcess)


def test_a_strategy_must_implement_every_method():
    class Partial(Strategy):
        def run(self, body):
            return body()

    with pytest.raises(TypeError, match="abstract"):
        Partial()


class _Counting(cdl.callbacks.Callback):
    """A user callback with a state: the number of batches it has seen."""

    def __init__(self, stop_after=None):
        super().__init__()
        self.count, self.stop_after = 0, stop_after

    def on_train_batch_end(self, batch, logs=None):
        self.count += 1
        if self.count == self.stop_after:
            raise KeyboardInterrupt

    def get_state(self):
        return {"count": self.count}

    def set_state(self, state):
        self.count = state["count"]


def test_a_user_callback_with_get_state_resumes_with_the_backup(tmp_path):
    x, y = _data()

    def run(counter):
        model = _sequential(True)
        model.compile("adam", "cross_entropy")
        backup = cdl.callbacks.BackupAndRestore(tmp_path / "backup", save_freq=2)
        model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[counter, backup])
        return model

    with pytest.raises(KeyboardInterrupt):
        run(_Counting(stop_after=7))
    resumed_counter = _Counting()
    resumed = run(resumed_counter)
    straight_counter = _Counting()
    model = _sequential(True)
    model.compile("adam", "cross_entropy")
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[straight_counter])
    assert resumed_counter.count == straight_counter.count == 10
    for a, b in zip(resumed.params, model.params):
        np.testing.assert_array_equal(a, b)
