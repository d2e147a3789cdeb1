"""fit on iterables of batches: generators, loaders, re-iterable objects,
with steps_per_epoch, validation iterables and the errors they can meet."""
import warnings

import numpy as np
import pytest

import cdl
from cdl import callbacks, data, layers, optimizers


def make_data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    return x, (x[:, 0] - x[:, 1] > 0).astype(np.int64)


def make_model(dropout=True, input_shape=(4,)):
    stack = [layers.Dense(8, activation="tanh")]
    if dropout:
        stack.append(layers.Dropout(0.25))
    stack.append(layers.Dense(2))
    model = cdl.Sequential(stack, input_shape=input_shape, seed=3, dtype="float64")
    model.compile(optimizers.Adam(lr=0.01), "cross_entropy", metrics=["accuracy"])
    return model


class Batches:
    """A re-iterable source of batches (a new pass on every iter())."""

    def __init__(self, x, y, size, weights=None):
        self.x, self.y, self.size, self.weights = x, y, size, weights
        self.passes = 0

    def __iter__(self):
        self.passes += 1
        for start in range(0, len(self.x), self.size):
            rows = slice(start, start + self.size)
            if self.weights is None:
                yield self.x[rows], self.y[rows]
            else:
                yield self.x[rows], self.y[rows], self.weights[rows]


def generator(x, y, size, cycles=1):
    for _ in range(cycles):
        for start in range(0, len(x), size):
            yield x[start:start + size], y[start:start + size]


def assert_same_weights(a, b):
    for p, q in zip(a.params, b.params):
        np.testing.assert_array_equal(p, q)


def test_a_reiterable_gives_one_pass_per_epoch_as_arrays_do():
    x, y = make_data()
    arrays, iterated = make_model(), make_model()
    h1 = arrays.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0)
    source = Batches(x, y, 16)
    h2 = iterated.fit(source, epochs=3, verbose=0)
    assert source.passes == 3
    assert_same_weights(arrays, iterated)
    assert h1.history == h2.history


def test_sample_weights_and_class_weights_in_batches():
    x, y = make_data()
    w = np.linspace(0.2, 2.0, len(x))
    arrays, iterated = make_model(), make_model()
    arrays.fit(x, y, epochs=2, batch_size=20, shuffle=False, sample_weight=w,
               class_weight={0: 1.0, 1: 3.0}, verbose=0)
    iterated.fit(Batches(x, y, 20, w), epochs=2, class_weight={0: 1.0, 1: 3.0}, verbose=0)
    assert_same_weights(arrays, iterated)


def test_steps_per_epoch_continues_the_generator_across_epochs():
    x, y = make_data()
    model, reference = make_model(), make_model()
    history = model.fit(generator(x, y, 10, cycles=2), steps_per_epoch=4, epochs=3,
                        verbose=0)
    assert len(history.epoch) == 3
    for xb, yb in list(generator(x, y, 10, cycles=2))[:12]:
        reference.train_step(xb, yb)
    assert_same_weights(model, reference)


def test_steps_per_epoch_wraps_a_reiterable_around():
    x, y = make_data(n=30)
    source = Batches(x, y, 10)
    model = make_model()
    history = model.fit(source, steps_per_epoch=4, epochs=2, verbose=0)
    assert len(history.epoch) == 2 and source.passes == 3     # 8 steps of 3 per pass


def test_a_generator_that_runs_out_stops_training_with_a_warning():
    x, y = make_data()
    model = make_model()
    with pytest.warns(UserWarning, match="x ran out of batches in epoch 2 after 0 steps"):
        history = model.fit(generator(x, y, 16), epochs=4, verbose=0)
    assert history.epoch == [0]
    model = make_model()
    with pytest.warns(UserWarning, match="ran out of batches in epoch 2 after 1 steps"):
        history = model.fit(generator(x, y, 20), steps_per_epoch=2, epochs=3, verbose=0)
    assert history.epoch == [0, 1]     # the partial epoch still ends, with its logs


def test_a_batch_loader_trains_and_sets_the_steps():
    x, y = make_data()
    loader = data.BatchLoader(x, y, batch_size=16, shuffle=True, seed=0)
    model = make_model()
    seen = []

    class Steps(callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen.append(self.params["steps"])

    history = model.fit(loader, epochs=2, verbose=0, callbacks=[Steps()])
    assert seen == [4] and len(history.epoch) == 2


def test_the_model_builds_from_the_first_batch_and_memmaps_are_converted(tmp_path):
    x, y = make_data()
    np.save(tmp_path / "x.npy", x)
    xm = np.load(tmp_path / "x.npy", mmap_mode="r")
    model = cdl.Sequential([layers.Dense(2)], seed=0)        # float32, no input shape
    model.compile("sgd", "cross_entropy")
    model.fit(generator(xm, y, 16), epochs=1, verbose=0)
    assert model.input_shape == (4,)


def test_validation_iterables():
    x, y = make_data()
    xv, yv = make_data(n=25, seed=1)
    model = make_model(dropout=False)
    history = model.fit(Batches(x, y, 16), epochs=2, verbose=0,
                        validation_data=Batches(xv, yv, 7))
    expected = model.evaluate(xv, yv)
    assert history.history["val_loss"][-1] == pytest.approx(expected["loss"], rel=1e-12)
    assert history.history["val_accuracy"][-1] == pytest.approx(expected["accuracy"])
    model = make_model(dropout=False)
    history = model.fit(Batches(x, y, 16), epochs=2, verbose=0,
                        validation_data=generator(xv, yv, 5, cycles=4), validation_steps=2)
    assert len(history.history["val_loss"]) == 2
    with pytest.raises(ValueError, match="validation_data ran out of batches after 0"):
        make_model().fit(Batches(x, y, 16), epochs=2, verbose=0,
                         validation_data=generator(xv, yv, 5))


@pytest.mark.parametrize("kwargs, message", [
    (dict(y=np.zeros(3)), "pass neither y nor sample_weight"),
    (dict(sample_weight=np.ones(3)), "pass neither y nor sample_weight"),
    (dict(batch_size=16), "batch_size does not apply"),
    (dict(validation_split=0.2), "validation_split needs arrays"),
    (dict(class_weight="balanced"), "class_weight='balanced' needs all the labels"),
    (dict(validation_data=(np.zeros((2, 4)), np.zeros(2)), validation_steps=2),
     "validation_steps applies to validation_data given as an iterable"),
])
def test_arguments_that_do_not_apply_to_iterables(kwargs, message):
    x, y = make_data()
    with pytest.raises(ValueError, match=message):
        make_model().fit(Batches(x, y, 16), verbose=0, **kwargs)


def test_steps_per_epoch_needs_an_iterable():
    x, y = make_data()
    with pytest.raises(ValueError, match="steps_per_epoch applies to an iterable"):
        make_model().fit(x, y, steps_per_epoch=3, verbose=0)


@pytest.mark.parametrize("item, error, message", [
    (np.zeros((4, 4)), TypeError, "batch 0 of x must be a tuple"),
    ((np.zeros((4, 4)),), TypeError, "batch 0 of x must be a tuple"),
    ((np.full((4, 4), np.nan), np.zeros(4, dtype=int)), ValueError, "x of batch 0 contains NaN"),
    ((np.zeros((4, 5)), np.zeros(4, dtype=int)), ValueError, "the model expects"),
    ((np.zeros((4, 4)), np.zeros(3, dtype=int)), ValueError, "y of batch 0 has 3 samples"),
    ((np.zeros((0, 4)), np.zeros(0, dtype=int)), ValueError, "a batch has no samples"),
])
def test_bad_batches_are_named(item, error, message):
    with pytest.raises(error, match=message):
        make_model().fit(iter([item]), verbose=0)


def test_lists_and_tuples_stay_array_data():
    x, y = make_data(n=8)
    model = make_model()
    model.fit(x.tolist(), y.tolist(), epochs=1, verbose=0)    # samples, not batches


def test_mid_epoch_backups_need_arrays(tmp_path):
    x, y = make_data()
    with pytest.raises(ValueError, match="cannot be rewound to the middle of an epoch"):
        make_model().fit(Batches(x, y, 16), epochs=2, verbose=0,
                         callbacks=[callbacks.BackupAndRestore(tmp_path / "b", save_freq=2)])
    history = make_model().fit(Batches(x, y, 16), epochs=2, verbose=0,
                               callbacks=[callbacks.BackupAndRestore(tmp_path / "b")])
    assert len(history.epoch) == 2
