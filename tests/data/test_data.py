"""Tests of cdl.data: batching, splitting, scaling and label encoding."""
import tracemalloc

import numpy as np
import numpy.testing as npt
import pytest

import cdl.data as data
from cdl.data import (
    BatchLoader, LabelEncoder, MinMaxScaler, NotFittedError, StandardScaler,
    iterate_batches, one_hot, train_test_split)
from helpers import assert_allclose


def read_only(a):
    a = np.array(a)
    a.flags.writeable = False
    return a


def make_memmap(tmp_path, array, mode="r", name="x.dat"):
    """Write ``array`` to a file and return a memmap of it opened with ``mode``."""
    path = tmp_path / name
    mm = np.memmap(path, dtype=array.dtype, mode="w+", shape=array.shape)
    mm[:] = array
    mm.flush()
    del mm
    return np.memmap(path, dtype=array.dtype, mode=mode, shape=array.shape)


def ids_data(n, d=3, dtype=np.float64):
    """x whose first column is the row number, and y = row number."""
    x = np.zeros((n, d), dtype=dtype)
    x[:, 0] = np.arange(n)
    x[:, 1:] = np.arange(1, d) / 10
    return x, np.arange(n)


# --- iterate_batches ---------------------------------------------------------

def test_iterate_batches_in_order_yields_slices():
    assert list(iterate_batches(7, 3, shuffle=False)) == [
        slice(0, 3), slice(3, 6), slice(6, 7)]
    assert list(iterate_batches(7, 3, shuffle=False, drop_last=True)) == [
        slice(0, 3), slice(3, 6)]
    assert list(iterate_batches(6, 3, shuffle=False, drop_last=True)) == [
        slice(0, 3), slice(3, 6)]
    assert list(iterate_batches(0, 3, shuffle=False)) == []
    assert list(iterate_batches(2, 10, shuffle=False)) == [slice(0, 2)]


def test_iterate_batches_shuffled_is_a_seeded_permutation():
    batches = list(iterate_batches(10, 4, seed=3))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert all(isinstance(b, np.ndarray) and b.dtype.kind == "i" for b in batches)
    order = np.concatenate(batches)
    npt.assert_array_equal(np.sort(order), np.arange(10))
    again = np.concatenate(list(iterate_batches(10, 4, seed=3)))
    npt.assert_array_equal(order, again)
    assert not np.array_equal(order, np.arange(10))
    dropped = list(iterate_batches(10, 4, seed=3, drop_last=True))
    assert [len(b) for b in dropped] == [4, 4]


def test_iterate_batches_generator_advances_between_epochs():
    rng = np.random.default_rng(0)
    first = np.concatenate(list(iterate_batches(50, 7, seed=rng)))
    second = np.concatenate(list(iterate_batches(50, 7, seed=rng)))
    assert not np.array_equal(first, second)
    npt.assert_array_equal(np.sort(second), np.arange(50))


@pytest.mark.parametrize("kwargs, error", [
    ({"batch_size": 0}, ValueError),
    ({"batch_size": 2.5}, TypeError),
    ({"n_samples": -1}, ValueError),
    ({"seed": "abc"}, TypeError),
    ({"seed": 1.5}, TypeError),
    ({"seed": -3}, ValueError),
    ({"shuffle": "yes"}, TypeError),
    ({"drop_last": None}, TypeError),
])
def test_iterate_batches_rejects_bad_arguments(kwargs, error):
    args = {"n_samples": 10, "batch_size": 3, **kwargs}
    with pytest.raises(error, match=next(iter(kwargs))):
        iterate_batches(**args)


# --- BatchLoader -------------------------------------------------------------

@pytest.mark.parametrize("n, batch_size, drop_last, expected", [
    (10, 3, False, 4), (10, 3, True, 3), (9, 3, False, 3), (9, 3, True, 3),
    (2, 32, False, 1), (2, 32, True, 0), (0, 4, False, 0),
])
def test_loader_len_is_number_of_batches(n, batch_size, drop_last, expected):
    loader = BatchLoader(np.zeros((n, 2)), batch_size=batch_size, drop_last=drop_last)
    assert len(loader) == expected
    assert sum(1 for _ in loader) == expected


def test_loader_in_order_yields_views_without_copy():
    x, y = ids_data(10)
    loader = BatchLoader(x, y, batch_size=4, shuffle=False)
    batches = list(loader)
    assert [len(xb) for xb, _ in batches] == [4, 4, 2]
    for (xb, yb), start in zip(batches, (0, 4, 8)):
        assert np.shares_memory(xb, x) and np.shares_memory(yb, y)
        npt.assert_array_equal(xb, x[start:start + 4])
        npt.assert_array_equal(yb, y[start:start + 4])


def test_loader_shuffled_rows_stay_paired_and_cover_everything():
    x, y = ids_data(103)
    w = np.linspace(0.5, 1.5, 103)
    loader = BatchLoader(x, y, batch_size=10, seed=0, sample_weight=w)
    seen = []
    for xb, yb, wb in loader:
        npt.assert_array_equal(xb[:, 0], yb)
        npt.assert_array_equal(xb[:, 1:], x[yb, 1:])
        npt.assert_array_equal(wb, w[yb])
        seen.append(yb.copy())
    seen = np.concatenate(seen)
    npt.assert_array_equal(np.sort(seen), np.arange(103))
    assert not np.array_equal(seen, np.arange(103))


def test_loader_reuses_its_buffers():
    x, y = ids_data(12)
    loader = BatchLoader(x, y, batch_size=4, seed=0)
    items = list(loader)  # kept without copying: all point to the same buffers
    first_x, first_y = items[0]
    for xb, yb in items[1:]:
        assert np.shares_memory(xb, first_x) and np.shares_memory(yb, first_y)
    # The first batch's arrays now hold the last batch's rows.
    npt.assert_array_equal(first_y, items[-1][1])
    assert not np.shares_memory(first_x, x)


def test_loader_same_seed_same_epochs_and_epochs_differ():
    x, y = ids_data(40)

    def epochs(loader, k=2):
        return [np.concatenate([yb.copy() for _, yb in loader]) for _ in range(k)]

    a = epochs(BatchLoader(x, y, batch_size=6, seed=7))
    b = epochs(BatchLoader(x, y, batch_size=6, seed=7))
    c = epochs(BatchLoader(x, y, batch_size=6, seed=8))
    for ea, eb in zip(a, b):
        npt.assert_array_equal(ea, eb)
    assert not np.array_equal(a[0], a[1])
    assert not np.array_equal(a[0], c[0])


def test_loader_converts_x_per_batch(dtype):
    x = np.arange(24, dtype=np.uint8).reshape(8, 3)
    y = np.arange(8, dtype=np.int32)
    for shuffle in (False, True):
        loader = BatchLoader(x, y, batch_size=3, shuffle=shuffle, seed=0, dtype=dtype)
        for xb, yb in loader:
            assert xb.dtype == dtype and yb.dtype == np.int32
            npt.assert_array_equal(xb, x[yb].astype(dtype))


def test_loader_default_dtype():
    assert BatchLoader(np.zeros((2, 2), np.float32)).dtype == np.float32
    assert BatchLoader(np.zeros((2, 2), ">f4")).dtype == np.float32
    assert BatchLoader(np.zeros((2, 2), np.float64)).dtype == np.float64
    assert BatchLoader(np.zeros((2, 2), np.uint8)).dtype == np.float64
    assert BatchLoader([[1, 2], [3, 4]]).dtype == np.float64


def test_loader_big_endian_input_is_converted():
    x = np.arange(12, dtype=">f8").reshape(6, 2)
    for shuffle in (False, True):
        for xb, yb in BatchLoader(x, np.arange(6), batch_size=4, shuffle=shuffle, seed=1):
            assert xb.dtype == np.dtype("=f8")
            npt.assert_array_equal(xb, x[yb])


def test_loader_reads_read_only_arrays():
    x, y = ids_data(9)
    x, y = read_only(x), read_only(y)
    for shuffle in (False, True):
        got = [yb.copy() for xb, yb in BatchLoader(x, y, batch_size=4, shuffle=shuffle)]
        npt.assert_array_equal(np.sort(np.concatenate(got)), np.arange(9))


def test_loader_without_y_yields_none():
    x = np.ones((5, 2))
    for xb, yb in BatchLoader(x, batch_size=2):
        assert yb is None and xb.shape[1] == 2


def test_loader_multidimensional_samples():
    x = np.arange(5 * 2 * 3, dtype=np.float32).reshape(5, 2, 3)
    y = np.arange(5)
    for xb, yb in BatchLoader(x, y, batch_size=2, seed=0):
        assert xb.shape[1:] == (2, 3)
        npt.assert_array_equal(xb, x[yb])


def test_loader_memmap_matches_in_memory_and_is_not_loaded_whole(tmp_path):
    n, d = 4000, 64
    x, y = ids_data(n, d)
    x_mm = make_memmap(tmp_path, x, mode="r")
    y_mm = make_memmap(tmp_path, y, mode="r", name="y.dat")
    reference = [(xb.copy(), yb.copy()) for xb, yb in
                 BatchLoader(x, y, batch_size=50, seed=5, dtype="float32")]
    loader = BatchLoader(x_mm, y_mm, batch_size=50, seed=5, dtype="float32")
    tracemalloc.start()
    try:
        got = []
        for xb, yb in loader:
            assert type(xb) is np.ndarray and type(yb) is np.ndarray
            got.append((xb[:2].copy(), yb[:2].copy()))
            npt.assert_array_equal(xb[:, 0], yb)  # rows in the shuffled order
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The whole of x is 2 MB (float64); the loader only ever holds a batch.
    assert peak < x.nbytes / 8
    assert len(got) == len(reference) == 80
    for (xb, yb), (xr, yr) in zip(got, reference):
        npt.assert_array_equal(xb, xr[:2])
        npt.assert_array_equal(yb, yr[:2])


def test_loader_memmap_in_order_is_copied_into_buffers(tmp_path):
    x, y = ids_data(10)
    x_mm = make_memmap(tmp_path, x, mode="r")
    loader = BatchLoader(x_mm, y, batch_size=4, shuffle=False)
    for (xb, yb), start in zip(loader, (0, 4, 8)):
        assert type(xb) is np.ndarray and not np.shares_memory(xb, x_mm)
        npt.assert_array_equal(xb, x[start:start + 4])


@pytest.mark.parametrize("kwargs, error, match", [
    ({"y": np.zeros(4)}, ValueError, "different numbers of samples"),
    ({"y": np.array(["a"] * 5)}, TypeError, "LabelEncoder"),
    ({"dtype": "int32"}, TypeError, "dtype"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"sample_weight": np.ones(4)}, ValueError, "sample_weight"),
    ({"sample_weight": -np.ones(5)}, ValueError, "non-negative"),
    ({"sample_weight": np.full(5, np.nan)}, ValueError, "NaN"),
    ({"seed": "x"}, TypeError, "seed"),
])
def test_loader_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        BatchLoader(np.zeros((5, 2)), **kwargs)


def test_loader_rejects_bad_x():
    with pytest.raises(TypeError, match="x must hold real numbers"):
        BatchLoader(np.array([["a", "b"]]))
    with pytest.raises(ValueError, match="at least one dimension"):
        BatchLoader(np.float64(3.0))


# --- train_test_split --------------------------------------------------------

def test_split_sizes_and_alignment():
    x, y = ids_data(10)
    x_train, x_test, y_train, y_test = train_test_split(x, y, seed=0)
    assert len(x_test) == 3 and len(x_train) == 7  # ceil(0.25 * 10)
    npt.assert_array_equal(x_train[:, 0], y_train)
    npt.assert_array_equal(x_test[:, 0], y_test)
    assert set(y_train) | set(y_test) == set(range(10))
    assert not set(y_train) & set(y_test)
    parts = train_test_split(x, test_size=4, seed=0)
    assert [len(p) for p in parts] == [6, 4]


def test_split_seeded_and_unshuffled():
    y = np.arange(20)
    a = train_test_split(y, seed=1)
    b = train_test_split(y, seed=1)
    npt.assert_array_equal(a[0], b[0])
    npt.assert_array_equal(a[1], b[1])
    train, test = train_test_split(y, test_size=0.2, shuffle=False)
    npt.assert_array_equal(train, np.arange(16))
    npt.assert_array_equal(test, np.arange(16, 20))


def test_split_accepts_lists_and_read_only():
    train, test = train_test_split([[1, 2], [3, 4], [5, 6], [7, 8]], test_size=0.5, seed=0)
    assert train.shape == test.shape == (2, 2)
    train, test = train_test_split(read_only(np.arange(8)), seed=0)
    assert len(train) + len(test) == 8


def test_split_stratified_keeps_proportions_exactly():
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    x = np.arange(100)
    x_train, x_test, y_train, y_test = train_test_split(
        x, labels, test_size=0.2, stratify=labels, seed=0)
    npt.assert_array_equal(np.bincount(y_test), [10, 6, 4])
    npt.assert_array_equal(np.bincount(y_train), [40, 24, 16])
    npt.assert_array_equal(labels[x_test], y_test)
    assert not set(x_train) & set(x_test)


def test_split_stratified_rounds_within_one_sample():
    rng = np.random.default_rng(0)
    labels = rng.choice(["a", "b", "c", "d"], size=137, p=[0.5, 0.3, 0.15, 0.05])
    _, test = train_test_split(labels, test_size=0.3, stratify=labels, seed=2)
    assert len(test) == 42  # ceil(0.3 * 137)
    classes, counts = np.unique(labels, return_counts=True)
    for cls, count in zip(classes, counts):
        assert abs((test == cls).sum() - count * 42 / 137) < 1


@pytest.mark.parametrize("kwargs, error, match", [
    ({"test_size": 0.0}, ValueError, "test_size"),
    ({"test_size": 1.0}, ValueError, "test_size"),
    ({"test_size": 1.5}, ValueError, "test_size"),
    ({"test_size": -0.1}, ValueError, "test_size"),
    ({"test_size": 0}, ValueError, "test_size"),
    ({"test_size": 10}, ValueError, "test_size"),
    ({"test_size": "half"}, TypeError, "test_size"),
    ({"test_size": True}, TypeError, "test_size"),
    ({"stratify": np.arange(10)}, ValueError, "at least 2 members"),
    ({"stratify": np.zeros(9)}, ValueError, "stratify has shape"),
    ({"stratify": np.repeat([0, 1], 5), "shuffle": False}, ValueError, "shuffle"),
    ({"stratify": np.repeat(np.arange(5), 2), "test_size": 0.2}, ValueError,
     "both parts need"),
])
def test_split_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        train_test_split(np.zeros((10, 2)), **kwargs)


def test_split_rejects_mismatched_or_missing_arrays():
    with pytest.raises(ValueError, match=r"different numbers of samples: \[10, 9\]"):
        train_test_split(np.zeros(10), np.zeros(9))
    with pytest.raises(ValueError, match="at least one array"):
        train_test_split()
    with pytest.raises(ValueError, match="cannot split 1"):
        train_test_split(np.zeros(1))


def test_split_names_single_member_classes():
    labels = np.array([0, 0, 1, 2, 2, 2, 3])
    with pytest.raises(ValueError, match=r"\[1, 3\] have only one"):
        train_test_split(labels, stratify=labels, test_size=0.5)


# --- StandardScaler ----------------------------------------------------------

X_HAND = np.array([[1.0, 2.0, -4.0], [3.0, 2.0, 0.0], [5.0, 2.0, 1.0]])


def test_standard_scaler_hand_computed(dtype):
    scaler = StandardScaler().fit(X_HAND)
    npt.assert_allclose(scaler.mean_, [3.0, 2.0, -1.0])
    npt.assert_allclose(scaler.var_, [8 / 3, 0.0, 14 / 3])
    npt.assert_allclose(scaler.scale_, [np.sqrt(8 / 3), 1.0, np.sqrt(14 / 3)])
    assert scaler.n_samples_seen_ == 3 and scaler.n_features_in_ == 3
    z = scaler.transform(X_HAND.astype(dtype))
    assert z.dtype == dtype
    expected = (X_HAND - [3.0, 2.0, -1.0]) / [np.sqrt(8 / 3), 1.0, np.sqrt(14 / 3)]
    assert_allclose(z, expected, dtype=dtype)
    assert_allclose(scaler.inverse_transform(z), X_HAND, dtype=dtype)
    assert_allclose(z.mean(axis=0), 0.0, dtype=dtype, atol=1e-6)


def test_standard_scaler_options():
    no_mean = StandardScaler(with_mean=False).fit(X_HAND)
    npt.assert_allclose(no_mean.transform(X_HAND), X_HAND / no_mean.scale_)
    no_std = StandardScaler(with_std=False).fit(X_HAND)
    assert no_std.scale_ is None
    npt.assert_allclose(no_std.transform(X_HAND), X_HAND - X_HAND.mean(axis=0))
    npt.assert_allclose(no_std.inverse_transform(no_std.transform(X_HAND)), X_HAND)
    neither = StandardScaler(with_mean=False, with_std=False).fit(X_HAND)
    npt.assert_array_equal(neither.transform(X_HAND), X_HAND)
    assert StandardScaler(with_std=False).get_config() == {
        "with_mean": True, "with_std": False}
    with pytest.raises(TypeError, match="with_mean"):
        StandardScaler(with_mean=1)


def test_standard_scaler_constant_features_do_not_divide_by_zero():
    x = np.column_stack([np.full(7, 0.1), np.full(7, 5.0), np.arange(7.0)])
    with np.errstate(all="raise"):
        scaler = StandardScaler().fit(x)
        z = scaler.transform(x)
    npt.assert_array_equal(scaler.scale_[:2], [1.0, 1.0])
    npt.assert_allclose(z[:, :2], 0.0, atol=1e-15)
    npt.assert_allclose(scaler.inverse_transform(z), x)


def test_standard_scaler_partial_fit_equals_fit():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(500, 4)) * [1, 10, 100, 0.1]
    full = StandardScaler().fit(x)
    streamed = StandardScaler()
    for start in range(0, 500, 37):
        streamed.partial_fit(x[start:start + 37])
    assert streamed.n_samples_seen_ == 500
    npt.assert_allclose(streamed.mean_, full.mean_, rtol=1e-12)
    npt.assert_allclose(streamed.var_, full.var_, rtol=1e-10)
    npt.assert_allclose(full.mean_, x.mean(axis=0), rtol=1e-12)
    npt.assert_allclose(full.var_, x.var(axis=0), rtol=1e-10)


def test_standard_scaler_merge_is_stable_with_a_large_offset():
    rng = np.random.default_rng(1)
    x = 1e9 + rng.standard_normal((4000, 2))
    scaler = StandardScaler()
    for start in range(0, 4000, 100):
        scaler.partial_fit(x[start:start + 100])
    npt.assert_allclose(scaler.var_, np.var(x - 1e9, axis=0), rtol=1e-6)


def test_standard_scaler_fit_streams_a_memmap_in_chunks(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(20000, 16))  # 2.5 MB
    x_mm = make_memmap(tmp_path, x, mode="r")
    monkeypatch.setattr(data.preprocessing, "FIT_CHUNK_ELEMENTS", 16 * 500)
    calls = []
    original = StandardScaler.partial_fit

    def spy(self, chunk):
        calls.append(len(chunk))
        return original(self, chunk)

    monkeypatch.setattr(StandardScaler, "partial_fit", spy)
    tracemalloc.start()
    try:
        scaler = StandardScaler().fit(x_mm)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert calls == [500] * 40
    assert peak < x.nbytes / 8
    npt.assert_allclose(scaler.mean_, x.mean(axis=0), rtol=1e-10, atol=1e-14)
    npt.assert_allclose(scaler.var_, x.var(axis=0), rtol=1e-10)


def test_scaler_transform_in_place():
    scaler = StandardScaler().fit(X_HAND)
    buf = X_HAND.copy()
    out = scaler.transform(buf, out=buf)
    assert out is buf
    npt.assert_allclose(buf, scaler.transform(X_HAND))
    with pytest.raises(ValueError, match="out must be"):
        scaler.transform(X_HAND, out=np.empty((2, 3)))
    with pytest.raises(ValueError, match="read-only"):
        scaler.transform(X_HAND, out=read_only(X_HAND))


def test_scalers_accept_read_only_input():
    x = read_only(X_HAND)
    for scaler in (StandardScaler(), MinMaxScaler()):
        z = scaler.fit_transform(x)
        npt.assert_allclose(scaler.inverse_transform(read_only(z)), X_HAND)


@pytest.mark.parametrize("cls", [StandardScaler, MinMaxScaler])
def test_scaler_errors(cls):
    scaler = cls()
    for method in ("transform", "inverse_transform", "state_dict"):
        with pytest.raises(NotFittedError, match=f"not fitted yet.*before {method}"):
            getattr(scaler, method)(*([X_HAND] if method != "state_dict" else []))
    assert issubclass(NotFittedError, ValueError)
    with pytest.raises(ValueError, match="contains NaN"):
        scaler.fit(np.array([[1.0, np.nan], [2.0, 3.0]]))
    with pytest.raises(ValueError, match="2-D"):
        scaler.fit(np.arange(3.0))
    with pytest.raises(TypeError, match="real numbers"):
        scaler.fit(np.array([["a", "b"]]))
    with pytest.raises(ValueError, match="no samples"):
        scaler.fit(np.zeros((0, 3)))
    scaler.fit(X_HAND)
    with pytest.raises(ValueError, match="has 2 features, but this .* was fitted with 3"):
        scaler.transform(X_HAND[:, :2])
    with pytest.raises(ValueError, match="has 2 features"):
        scaler.partial_fit(X_HAND[:, :2])
    with pytest.raises(ValueError, match="contains NaN"):
        scaler.transform(np.array([[np.nan, 1.0, 2.0]]))
    with pytest.raises(ValueError, match="contains infinity"):
        scaler.inverse_transform(np.array([[np.inf, 1.0, 2.0]]))
    # A new fit replaces the old one, even with another number of features.
    scaler.fit(X_HAND[:, :2])
    assert scaler.n_features_in_ == 2 and scaler.n_samples_seen_ == 3


@pytest.mark.parametrize("cls", [StandardScaler, MinMaxScaler])
def test_scaler_state_dict_round_trip_and_resume(cls):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 3))
    scaler = cls().partial_fit(x[:40])
    state = scaler.state_dict()
    assert all(isinstance(v, (int, np.ndarray)) for v in state.values())
    restored = cls(**scaler.get_config())
    restored.load_state_dict(state)
    npt.assert_allclose(restored.transform(x), scaler.transform(x))
    restored.partial_fit(x[40:])
    npt.assert_allclose(restored.transform(x), cls().fit(x).transform(x), rtol=1e-12)
    state["n_samples_seen_"] = 999  # the saved dict is a copy, not the live state
    assert scaler.n_samples_seen_ == 40


@pytest.mark.parametrize("cls", [StandardScaler, MinMaxScaler])
def test_scaler_load_state_dict_rejects_bad_states(cls):
    state = cls().fit(X_HAND).state_dict()
    key = next(k for k in state if k != "n_samples_seen_")
    with pytest.raises(TypeError, match="must be a dict"):
        cls().load_state_dict([1, 2])
    with pytest.raises(ValueError, match="missing keys"):
        cls().load_state_dict({k: v for k, v in state.items() if k != key})
    with pytest.raises(ValueError, match="unknown keys"):
        cls().load_state_dict({**state, "extra": 1})
    with pytest.raises(ValueError, match="different lengths"):
        cls().load_state_dict({**state, key: state[key][:2]})
    with pytest.raises(ValueError, match="n_samples_seen_"):
        cls().load_state_dict({**state, "n_samples_seen_": 0})
    with pytest.raises(ValueError, match="NaN"):
        cls().load_state_dict({**state, key: np.full(3, np.nan)})


def test_scaler_load_state_dict_checks_values_before_changing_anything():
    scaler = StandardScaler().fit(X_HAND)
    state = scaler.state_dict()
    with pytest.raises(ValueError, match="var_ must be >= 0"):
        scaler.load_state_dict({**state, "var_": -np.ones(3)})
    npt.assert_array_equal(scaler.mean_, [3.0, 2.0, -1.0])  # unchanged
    minmax = MinMaxScaler().fit(X_HAND)
    state = minmax.state_dict()
    state["data_min_"], state["data_max_"] = state["data_max_"], state["data_min_"]
    with pytest.raises(ValueError, match="data_min_ is larger than data_max_"):
        minmax.load_state_dict(state)
    npt.assert_array_equal(minmax.data_min_, X_HAND.min(axis=0))


# --- MinMaxScaler ------------------------------------------------------------

def test_minmax_scaler_hand_computed(dtype):
    x = np.array([[1.0, -1.0], [3.0, 1.0], [5.0, 3.0]])
    scaler = MinMaxScaler().fit(x)
    npt.assert_array_equal(scaler.data_min_, [1.0, -1.0])
    npt.assert_array_equal(scaler.data_max_, [5.0, 3.0])
    npt.assert_array_equal(scaler.data_range_, [4.0, 4.0])
    npt.assert_array_equal(scaler.scale_, [0.25, 0.25])
    npt.assert_array_equal(scaler.min_, [-0.25, 0.25])
    z = scaler.transform(x.astype(dtype))
    assert z.dtype == dtype
    assert_allclose(z, [[0.0, 0.0], [0.5, 0.5], [1.0, 1.0]], dtype=dtype)
    assert_allclose(scaler.inverse_transform(z), x, dtype=dtype)

    wide = MinMaxScaler(feature_range=(-1, 1)).fit(x)
    npt.assert_allclose(wide.transform(x), [[-1, -1], [0, 0], [1, 1]])
    npt.assert_allclose(wide.transform([[9.0, -5.0]]), [[3.0, -3.0]])
    clipped = MinMaxScaler(feature_range=(-1, 1), clip=True).fit(x)
    npt.assert_allclose(clipped.transform([[9.0, -5.0]]), [[1.0, -1.0]])
    assert clipped.get_config() == {"feature_range": (-1.0, 1.0), "clip": True}


def test_minmax_scaler_constant_feature_maps_to_low():
    x = np.array([[2.0, 0.0], [2.0, 1.0]])
    with np.errstate(all="raise"):
        scaler = MinMaxScaler(feature_range=(-2, 2)).fit(x)
        z = scaler.transform(x)
    npt.assert_array_equal(scaler.scale_, [4.0, 4.0])
    npt.assert_array_equal(z, [[-2.0, -2.0], [-2.0, 2.0]])
    npt.assert_array_equal(scaler.inverse_transform(z), x)


def test_minmax_scaler_partial_fit_equals_fit():
    rng = np.random.default_rng(4)
    x = rng.uniform(-5, 7, size=(300, 5))
    full = MinMaxScaler().fit(x)
    streamed = MinMaxScaler()
    for start in range(0, 300, 41):
        streamed.partial_fit(x[start:start + 41])
    for attr in ("data_min_", "data_max_", "scale_", "min_"):
        npt.assert_array_equal(getattr(streamed, attr), getattr(full, attr))


@pytest.mark.parametrize("feature_range, error", [
    ((1, 0), ValueError), ((0, 0), ValueError), ((0,), TypeError), (5, TypeError),
    ((0, float("nan")), ValueError), (("a", 1), TypeError),
])
def test_minmax_scaler_rejects_bad_feature_range(feature_range, error):
    with pytest.raises(error, match="feature_range"):
        MinMaxScaler(feature_range=feature_range)


# --- one_hot -----------------------------------------------------------------

def test_one_hot():
    out = one_hot([0, 2, 1, 2])
    assert out.dtype == np.float32 and out.shape == (4, 3)
    npt.assert_array_equal(out, np.eye(3)[[0, 2, 1, 2]])
    out = one_hot(np.array([[1], [0]]), num_classes=4, dtype="float64")
    assert out.dtype == np.float64 and out.shape == (2, 1, 4)
    npt.assert_array_equal(out[:, 0], [[0, 1, 0, 0], [1, 0, 0, 0]])
    npt.assert_array_equal(one_hot(np.array([1.0, 0.0])), [[0, 1], [1, 0]])
    npt.assert_array_equal(one_hot(read_only([1, 1]), 2), [[0, 1], [0, 1]])
    assert one_hot(np.array([], dtype=int), num_classes=3).shape == (0, 3)


@pytest.mark.parametrize("labels, kwargs, error, match", [
    ([0, -1], {}, ValueError, ">= 0"),
    ([0, 3], {"num_classes": 3}, ValueError, "< num_classes=3"),
    ([0.5], {}, ValueError, "whole numbers"),
    (["a"], {}, TypeError, "LabelEncoder"),
    ([0], {"num_classes": 0}, ValueError, "num_classes"),
    ([0], {"dtype": "int64"}, TypeError, "dtype"),
])
def test_one_hot_rejects(labels, kwargs, error, match):
    with pytest.raises(error, match=match):
        one_hot(labels, **kwargs)


# --- LabelEncoder ------------------------------------------------------------

def test_label_encoder_strings_and_numbers():
    enc = LabelEncoder()
    codes = enc.fit_transform(["dog", "cat", "bird", "cat"])
    npt.assert_array_equal(enc.classes_, ["bird", "cat", "dog"])
    npt.assert_array_equal(codes, [2, 1, 0, 1])
    assert codes.dtype == np.int64
    npt.assert_array_equal(enc.inverse_transform(codes), ["dog", "cat", "bird", "cat"])
    npt.assert_array_equal(one_hot(codes).argmax(axis=1), codes)

    enc = LabelEncoder().fit(np.array([10, 3, 7, 3]))
    npt.assert_array_equal(enc.transform([3, 7, 10]), [0, 1, 2])
    npt.assert_array_equal(enc.transform(np.array([7.0])), [1])
    npt.assert_array_equal(enc.inverse_transform(np.array([2, 0], dtype=np.uint8)), [10, 3])
    assert enc.transform([]).shape == (0,)


def test_label_encoder_names_unseen_labels():
    enc = LabelEncoder().fit(["a", "b"])
    with pytest.raises(ValueError, match=r"not seen in fit: \['c', 'zz'\]"):
        enc.transform(["a", "zz", "c", "zz"])
    with pytest.raises(ValueError, match=r"not seen in fit: \[1\]"):
        enc.transform([1])
    enc = LabelEncoder().fit([1, 2])
    with pytest.raises(ValueError, match=r"not seen in fit: \[0, 5\]"):
        enc.transform([5, 1, 0])
    with pytest.raises(ValueError, match=r"not seen in fit: \['1'\]"):
        enc.transform(["1"])


def test_label_encoder_errors_and_state():
    enc = LabelEncoder()
    with pytest.raises(NotFittedError, match="before transform"):
        enc.transform([1])
    with pytest.raises(NotFittedError, match="before inverse_transform"):
        enc.inverse_transform([0])
    with pytest.raises(ValueError, match="1-D"):
        enc.fit([[1, 2]])
    with pytest.raises(ValueError, match="NaN"):
        enc.fit([1.0, np.nan])
    enc.fit(["x", "y"])
    with pytest.raises(ValueError, match=r"codes must be in \[0, 2\), got \[-1, 2\]"):
        enc.inverse_transform([0, 2, -1])
    with pytest.raises(TypeError, match="integers"):
        enc.inverse_transform([0.5])
    other = LabelEncoder()
    other.load_state_dict(enc.state_dict())
    npt.assert_array_equal(other.transform(["y", "x"]), [1, 0])
    with pytest.raises(ValueError, match="sorted and distinct"):
        other.load_state_dict({"classes_": np.array(["b", "a"])})
    with pytest.raises(ValueError, match="classes_"):
        other.load_state_dict({"labels": np.array(["a"])})
