"""Saving and loading models and weights (cdl.io)."""
import hashlib
import json
import os
import struct

import numpy as np
import pytest

import cdl
from cdl import io, layers, optimizers
from cdl.io import ModelFileError
from cdl.saving import format as spec
from cdl.saving import writer
from helpers import forge, split

try:  # cdl.metrics may be missing in a partial checkout
    import cdl.metrics  # noqa: F401
    METRICS = ["accuracy"]
except ImportError:  # pragma: no cover
    METRICS = None


def data(n=64, features=5, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, features)), rng.integers(0, classes, n)


def reload(model, tmp_path, **kwargs):
    path = tmp_path / "model.cdl"
    model.save(path, **kwargs)
    return cdl.load_model(path)


# --- round trips of every layer ---------------------------------------------------

LAYER_CASES = {
    **{f"dense_{a}": (lambda a=a: [layers.Dense(4, activation=a), layers.Dense(3)], (5,))
       for a in (None, "relu", "leaky_relu", "sigmoid", "tanh", "gelu", "elu", "softmax")},
    "dense_no_bias": (lambda: [layers.Dense(4, use_bias=False)], (5,)),
    "relu": (lambda: [layers.Dense(4), layers.ReLU()], (5,)),
    "leaky_relu": (lambda: [layers.Dense(4), layers.LeakyReLU(0.2)], (5,)),
    "sigmoid": (lambda: [layers.Dense(4), layers.Sigmoid()], (5,)),
    "tanh": (lambda: [layers.Dense(4), layers.Tanh()], (5,)),
    "softmax": (lambda: [layers.Dense(4), layers.Softmax()], (5,)),
    "gelu": (lambda: [layers.Dense(4), layers.GELU()], (5,)),
    "elu": (lambda: [layers.Dense(4), layers.ELU(alpha=0.5)], (5,)),
    "activation": (lambda: [layers.Dense(4), layers.Activation("tanh")], (5,)),
    "dropout": (lambda: [layers.Dense(4), layers.Dropout(0.4), layers.Dense(2)], (5,)),
    "flatten": (lambda: [layers.Flatten(), layers.Dense(3)], (2, 3)),
    "pool_options": (lambda: [layers.ZeroPadding2D(((1, 0), (0, 1))),
                              layers.MaxPool2D(3, 2, padding=1, ceil_mode=True, dilation=(1, 2)),
                              layers.AvgPool2D(2, 1, padding=((1, 0), (0, 1)),
                                               divisor_override=3),
                              layers.UpSampling2D(2, interpolation="bilinear",
                                                  align_corners=True),
                              layers.Cropping2D((1, 0)), layers.AdaptiveMaxPool2D((2, None)),
                              layers.Flatten()], (6, 5, 2)),
    "pool_options_1d": (lambda: [layers.ZeroPadding1D(1), layers.AvgPool1D(2, padding=1),
                                 layers.UpSampling1D(2), layers.Cropping1D((0, 1)),
                                 layers.AdaptiveAvgPool1D(3), layers.Flatten()], (5, 2)),
    "layer_norm_axes": (lambda: [layers.LayerNorm(axis=(-2, -1), bias=False)], (2, 3)),
    "norms_without_affine": (lambda: [layers.LayerNorm(elementwise_affine=False),
                                      layers.GroupNorm(3, affine=False),
                                      layers.RMSNorm(affine=False)], (2, 3)),
    "batch_norm_options": (lambda: [layers.BatchNorm(momentum=None),
                                    layers.BatchNorm(track_running_stats=False)], (2, 3)),
    "conv2d_groups_asymmetric_padding": (
        lambda: [layers.Conv2D(4, 3, groups=2, padding=((1, 0), (0, 2)))], (4, 4, 2)),
    "depthwise_conv2d": (lambda: [layers.DepthwiseConv2D(3, depth_multiplier=2,
                                                         padding="same")], (4, 4, 2)),
    "separable_conv1d": (lambda: [layers.SeparableConv1D(3, 2, padding="causal")], (5, 2)),
    "conv1d_transpose": (lambda: [layers.Conv1DTranspose(2, 3, strides=2, padding=1,
                                                         output_padding=1)], (4, 2)),
}


@pytest.mark.parametrize("case", sorted(LAYER_CASES))
def test_every_layer_round_trips_bit_identically(case, dtype, tmp_path):
    make, input_shape = LAYER_CASES[case]
    model = cdl.Sequential(make(), input_shape=input_shape, dtype=dtype, seed=3, name="net")
    x = np.random.default_rng(1).standard_normal((7,) + input_shape)
    loaded = reload(model, tmp_path)
    assert loaded.get_config() == model.get_config()
    assert loaded.dtype == model.dtype and loaded.input_shape == model.input_shape
    assert loaded.param_buffer.dtype == np.dtype(dtype)
    assert np.array_equal(loaded.param_buffer, model.param_buffer)
    assert np.array_equal(loaded.predict(x), model.predict(x))
    assert loaded.optimizer is None


def test_unbuilt_model_round_trips_and_builds_like_the_original(tmp_path):
    model = cdl.Sequential([layers.Dense(4), layers.Dense(2)], seed=5)
    loaded = reload(model, tmp_path)
    assert not loaded.built
    x = np.ones((2, 3))
    assert np.array_equal(loaded.predict(x), model.predict(x))


def test_partly_built_model_is_refused(tmp_path):
    model = cdl.Sequential([layers.Dense(4)], input_shape=(3,), seed=0)
    model.add(layers.Dense(2))
    with pytest.raises(ValueError, match="partly built"):
        model.save(tmp_path / "m.cdl")


# --- continuing training exactly --------------------------------------------------

OPTIMIZERS = {
    "sgd_momentum": lambda: optimizers.SGD(lr=0.05, momentum=0.9, nesterov=True),
    "sgd_plain": lambda: optimizers.SGD(lr=0.05),
    "adagrad": lambda: optimizers.Adagrad(lr=0.05, lr_decay=0.01),
    "rmsprop": lambda: optimizers.RMSprop(lr=0.01, centered=True, momentum=0.5),
    "adam_amsgrad": lambda: optimizers.Adam(lr=0.01, amsgrad=True, weight_decay=1e-3),
    "adamw": lambda: optimizers.AdamW(lr=0.01),
    "adamax": lambda: optimizers.Adamax(lr=0.01),
    "nadam": lambda: optimizers.NAdam(lr=0.01),
    "radam": lambda: optimizers.RAdam(lr=0.01),
}


def trained_model(optimizer, dtype="float32", x=None, y=None):
    model = cdl.Sequential([layers.Dense(8, activation="relu"), layers.Dropout(0.3),
                            layers.Dense(3)], input_shape=(5,), dtype=dtype, seed=11)
    model.compile(optimizer, "cross_entropy", metrics=METRICS)
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, shuffle=True)
    return model


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_training_continues_exactly_after_loading(name, tmp_path):
    x, y = data()
    model = trained_model(OPTIMIZERS[name](), x=x, y=y)
    loaded = reload(model, tmp_path)
    assert type(loaded.optimizer) is type(model.optimizer)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert loaded.optimizer.iterations == model.optimizer.iterations
    assert loaded.compile_config() == model.compile_config()
    assert loaded.rng.bit_generator.state == model.rng.bit_generator.state
    h1 = model.fit(x, y, epochs=2, batch_size=16, verbose=0, shuffle=True)
    h2 = loaded.fit(x, y, epochs=2, batch_size=16, verbose=0, shuffle=True)
    assert np.array_equal(loaded.param_buffer, model.param_buffer)
    assert h1.history == h2.history
    for key, value in model.optimizer.state.items():
        other = loaded.optimizer.state[key]
        assert (value is None and other is None) or np.array_equal(value, other)


def test_float64_model_with_clipping_and_param_groups_continues_exactly(tmp_path):
    x, y = data(seed=4)
    model = cdl.Sequential([layers.Dense(6, activation="tanh"), layers.Dropout(0.2),
                            layers.Dense(3)], input_shape=(5,), dtype="float64", seed=2)
    opt = optimizers.Adam(lr=0.02, param_groups=[{"params": model.params[:2], "lr_mult": 0.1}])
    model.compile(opt, "cross_entropy", clip_norm=1.0)
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    loaded = reload(model, tmp_path)
    assert loaded.optimizer.param_groups[0]["params"][0] is loaded.params[0]
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    loaded.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert np.array_equal(loaded.param_buffer, model.param_buffer)


def test_compiled_but_untrained_and_without_optimizer_state(tmp_path):
    x, y = data()
    fresh = cdl.Sequential([layers.Dense(3)], input_shape=(5,), seed=0)
    fresh.compile(optimizers.SGD(lr=0.1, momentum=0.9), "cross_entropy")
    loaded = reload(fresh, tmp_path)
    fresh.fit(x, y, epochs=1, batch_size=16, verbose=0)
    loaded.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert np.array_equal(loaded.param_buffer, fresh.param_buffer)

    trained = trained_model(optimizers.Adam(lr=0.01), x=x, y=y)
    loaded = reload(trained, tmp_path, include_optimizer=False)
    assert isinstance(loaded.optimizer, optimizers.Adam) and loaded.optimizer.iterations == 0
    assert np.array_equal(loaded.param_buffer, trained.param_buffer)


# --- user layers --------------------------------------------------------------------


class Scale(layers.Layer):
    """y = x * w (per feature), a user layer with a weight and a config argument."""

    def __init__(self, init=1.0, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.init = init

    def get_config(self):
        return {**super().get_config(), "init": self.init}

    def build(self, input_shape):
        self.add_weight("w", input_shape, lambda shape, dtype, rng: np.full(shape, self.init,
                                                                           dtype=dtype))

    def forward(self, x, training=False):
        self._x = self._check_input(x)
        return self._x * self.w

    def backward(self, grad):
        self.w_grad[...] = (grad * self._x).sum(axis=0)
        return grad * self.w


@pytest.fixture
def clean_registry(monkeypatch):
    monkeypatch.setattr(layers, "_REGISTERED", {})


def test_registered_user_layer_round_trips(tmp_path, clean_registry):
    registered = cdl.register_layer(Scale)
    assert registered is Scale and layers.get("Scale") is Scale
    model = cdl.Sequential([Scale(0.5), layers.Dense(2)], input_shape=(4,), seed=0)
    model.params[0][...] = [1.0, 2.0, 3.0, 4.0]
    loaded = reload(model, tmp_path)
    assert isinstance(loaded.layers[0], Scale) and loaded.layers[0].init == 0.5
    x = np.random.default_rng(0).standard_normal((3, 4))
    assert np.array_equal(loaded.predict(x), model.predict(x))


def test_register_layer_as_decorator_and_its_refusals(clean_registry):
    @cdl.register_layer
    class Doubler(layers.Layer):
        def forward(self, x, training=False):
            return 2 * self._check_input(x)

    assert layers.get("Doubler") is Doubler
    assert layers.get("Dense") is layers.Dense

    with pytest.raises(ValueError, match="built-in"):
        @cdl.register_layer
        class Dense(layers.Layer):
            pass
    assert layers.get("Dense") is layers.Dense
    with pytest.raises(TypeError):
        cdl.register_layer(int)


def test_unregistered_user_layer_fails_clearly_at_load(tmp_path, clean_registry):
    model = cdl.Sequential([Scale(), layers.Dense(2)], input_shape=(4,), seed=0)
    model.save(tmp_path / "m.cdl")  # saving works: only loading needs the class
    with pytest.raises(ModelFileError, match="unknown layer class 'Scale'.*register_layer"):
        cdl.load_model(tmp_path / "m.cdl")


# --- damaged and hostile files ----------------------------------------------------


@pytest.fixture
def saved(tmp_path):
    x, y = data(n=32)
    model = trained_model(optimizers.Adam(lr=0.01, amsgrad=True), x=x, y=y)
    path = tmp_path / "model.cdl"
    model.save(path)
    return path


def load_fails(path, match=None):
    with pytest.raises(ModelFileError, match=match) as info:
        cdl.load_model(path)
    return str(info.value)


def test_truncated_files_are_rejected(saved, tmp_path):
    raw = saved.read_bytes()
    bad = tmp_path / "bad.cdl"
    for cut in sorted({0, 1, 7, 8, 12, 19, 20, 21, 51, 52, 100, len(raw) // 2,
                       len(raw) - 33, len(raw) - 32, len(raw) - 1}):
        bad.write_bytes(raw[:cut])
        message = load_fails(bad)
        assert ("truncated" in message or "empty" in message or "checksum" in message), message


def test_any_flipped_byte_is_detected(saved, tmp_path):
    raw = saved.read_bytes()
    bad = tmp_path / "bad.cdl"
    positions = list(range(0, len(raw), 97)) + list(range(len(raw) - 40, len(raw)))
    for pos in positions:
        flipped = bytearray(raw)
        flipped[pos] ^= 0x01
        bad.write_bytes(bytes(flipped))
        load_fails(bad)
    bad.write_bytes(raw)
    cdl.load_model(bad)  # the untouched copy still loads


def test_checksum_mismatch_names_the_problem(saved):
    raw = bytearray(saved.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    saved.write_bytes(bytes(raw))
    load_fails(saved, "checksum mismatch")


def test_wrong_magic_empty_file_and_unsupported_version(saved, tmp_path):
    raw = saved.read_bytes()
    bad = tmp_path / "bad.cdl"
    bad.write_bytes(b"")
    load_fails(bad, "empty")
    bad.write_bytes(b"PK\x03\x04" + raw[4:])
    load_fails(bad, "is a ZIP archive, not a cdl model file")
    bad.write_bytes(b"\x80\x04\x95" + b"\x00" * 100)  # a pickle stream
    load_fails(bad, "is a Python pickle; cdl never unpickles")
    bad.write_bytes(b"NOTCDL!!" + raw[8:])
    load_fails(bad, "wrong magic")
    version, header, section = split(raw)
    forge(bad, header, section, version=2)
    load_fails(bad, "unsupported format version 2")


def test_lying_headers_are_rejected_without_allocating(saved, tmp_path):
    raw = saved.read_bytes()
    _, header, section = split(raw)
    bad = tmp_path / "bad.cdl"

    def check(mutate, match):
        h = json.loads(json.dumps(header))
        mutate(h)
        forge(bad, h, section)
        return load_fails(bad, match)

    def table(h, name):
        return next(e for e in h["arrays"] if e["name"] == name)

    def huge(h):
        table(h, "params").update(shape=[2 ** 40], nbytes=2 ** 42)
    check(huge, "outside the data section")

    def enormous(h):
        table(h, "params").update(shape=[2 ** 62, 2 ** 62], nbytes=2 ** 126)
    check(enormous, "outside the data section")
    check(lambda h: table(h, "params").update(nbytes=8), "needs")
    check(lambda h: table(h, "params").update(offset=-64), "at least 0")
    check(lambda h: table(h, "params").update(dtype="object"), "allowed are")
    check(lambda h: table(h, "params").update(dtype="complex128"), "allowed are")
    check(lambda h: table(h, "params").update(shape="12"), "must be list")
    check(lambda h: table(h, "optimizer/exp_avg").update(offset=0), "overlap")
    check(lambda h: h["arrays"].append(dict(h["arrays"][0])), "twice")
    check(lambda h: h.pop("model"), "no 'model' field")
    check(lambda h: h.pop("arrays"), "no 'arrays' field")
    check(lambda h: h.update(format="zip"), "format")
    check(lambda h: h.update(format_version=3), "disagrees")
    check(lambda h: h["model"]["layers"][0].update(class_name="os.system"),
          "dotted path; cdl looks classes up by name")
    check(lambda h: h["model"]["layers"][0].update(class_name="__import__"),
          "not a class name")
    check(lambda h: h["model"]["layers"][0].update(class_name="Evil"),
          "unknown layer class")
    check(lambda h: h["model"]["layers"][0]["config"].update(units="eight"),
          "cannot be created")
    check(lambda h: h["model"]["layers"][0]["config"].update(evil=1), "cannot be created")
    check(lambda h: h["model"].update(dtype="float16"), "dtype")
    check(lambda h: h["model"].update(input_shape=[-5]), "at least 1")
    check(lambda h: h.update(rng={"bit_generator": "Evil"}), "bit_generator")
    check(lambda h: h["rng"]["state"].update(state="x"), "rng.state.state must be int")
    check(lambda h: h["rng"]["state"].update(state=-1), "random generator state")
    check(lambda h: h["optimizer"]["state"].update(bogus=None), "unknown Adam state")
    check(lambda h: h["optimizer"].update(iterations=-1), "at least 0")
    check(lambda h: h["optimizer"].update(class_name="SGD"), "for SGD")
    check(lambda h: h.update(kind="weights"), "weights file")
    check(lambda h: h.update(compile=None), "no compile config")
    check(lambda h: h["compile"]["loss"].update(class_name="Evil"), "compile config")

    def fewer_units(h):  # the architecture no longer fits the weights
        h["model"]["layers"][0]["config"]["units"] = 7
    check(fewer_units, "shape")

    def no_layout(h):
        h["param_layout"] = []
        h["model"]["layers"][0]["config"]["units"] = 7
    check(no_layout, "param_layout lists 0 values, the 'params' array holds 75")

    def short_layout(h):
        h["param_layout"] = h["param_layout"][:2]
        h["model"]["layers"] = h["model"]["layers"][:1]
    check(short_layout, "param_layout lists 48 values, the 'params' array holds 75")

    def fewer_layers(h):  # a consistent table that the architecture does not fill
        h["model"]["layers"] = h["model"]["layers"][:1]
    check(fewer_layers, "has 4 weights, the model 2")

    def more_layers(h):  # an architecture needing more weights than the file holds
        extra = json.loads(json.dumps(h["model"]["layers"][-1]))
        extra["config"]["name"] = "extra"
        h["model"]["layers"].append(extra)
    check(more_layers, "more weights than the 75 values the file holds")

    forge(bad, None, section, header_bytes=b"{not json")
    load_fails(bad, "not valid JSON")
    forge(bad, None, section, header_bytes=b"\xff\xfe")
    load_fails(bad, "not valid UTF-8")
    forge(bad, None, section, header_bytes=b"[" * 100000)
    load_fails(bad, "JSON")
    forge(bad, None, section, header_bytes=b"[1, 2]")
    load_fails(bad, "must be dict")


def test_duplicate_keys_an_oversized_header_and_unknown_keys(saved, tmp_path, monkeypatch):
    raw = saved.read_bytes()
    _, header, section = split(raw)
    bad = tmp_path / "bad.cdl"
    text = json.dumps(header)
    forge(bad, None, section, header_bytes=('{"built": false, ' + text[1:]).encode())
    load_fails(bad, "repeats the key 'built'")
    monkeypatch.setattr(spec, "MAX_HEADER", 1000)
    load_fails(saved, "cdl reads headers of at most 1000 bytes")
    monkeypatch.undo()
    # Keys a later version might add are ignored, at any level.
    later = json.loads(text)
    later["future_section"] = {"anything": [1, 2, {"x": None}]}
    later["model"]["future_option"] = True
    forge(bad, later, section)
    assert np.array_equal(cdl.load_model(bad).param_buffer, cdl.load_model(saved).param_buffer)


def test_header_length_beyond_the_file_is_rejected_before_reading(saved):
    raw = bytearray(saved.read_bytes())
    raw[12:20] = struct.pack("<Q", 2 ** 63)
    saved.write_bytes(bytes(raw))
    load_fails(saved, "truncated or corrupted")


def test_format_is_as_documented(saved):
    raw = saved.read_bytes()
    assert raw[:8] == io.MAGIC and struct.unpack("<I", raw[8:12])[0] == io.FORMAT_VERSION
    assert hashlib.sha256(raw[:-32]).digest() == raw[-32:]
    version, header, section = split(raw)
    assert header["format"] == "cdl-model" and header["format_version"] == 1
    assert header["cdl_version"] == cdl.__version__
    assert header["optimizer"]["state"] == {"exp_avg": "optimizer/exp_avg",
                                            "exp_avg_sq": "optimizer/exp_avg_sq",
                                            "max_exp_avg_sq": "optimizer/max_exp_avg_sq"}
    entry = header["arrays"][0]
    assert entry["name"] == "params" and entry["dtype"] == "float32"
    model = cdl.load_model(saved)
    stored = np.frombuffer(section, "<f4", count=entry["shape"][0], offset=entry["offset"])
    assert np.array_equal(stored, model.param_buffer)
    assert (20 + len(json.dumps(header, separators=(",", ":")).encode())) <= len(raw)


def test_null_optimizer_state_is_recorded_as_null(tmp_path):
    x, y = data(n=32)
    model = trained_model(optimizers.SGD(lr=0.1), x=x, y=y)
    model.save(tmp_path / "m.cdl")
    _, header, _ = split((tmp_path / "m.cdl").read_bytes())
    assert header["optimizer"]["state"] == {"momentum_buffer": None}
    assert [e["name"] for e in header["arrays"]] == ["params"]


# --- atomic writes ------------------------------------------------------------------


def test_failed_save_leaves_the_previous_file_and_no_temp_files(saved, monkeypatch):
    before = saved.read_bytes()
    other = cdl.Sequential([layers.Dense(2)], input_shape=(3,), seed=9)

    def broken(write, prepared):
        write(b"\x00" * 10)
        raise OSError("disk full")

    monkeypatch.setattr(writer, "write_arrays", broken)
    with pytest.raises(OSError, match="disk full"):
        other.save(saved)
    assert saved.read_bytes() == before
    with pytest.raises(OSError, match="disk full"):
        other.save_weights(saved.parent / "new.cdl")
    assert os.listdir(saved.parent) == [saved.name]
    monkeypatch.undo()
    other.save(saved)
    assert cdl.load_model(saved).get_config() == other.get_config()
    assert os.listdir(saved.parent) == [saved.name]


def test_overwriting_keeps_the_file_mode(tmp_path):
    path = tmp_path / "m.cdl"
    model = cdl.Sequential([layers.Dense(2)], input_shape=(3,), seed=0)
    model.save(path)
    os.chmod(path, 0o640)
    model.save(path)
    assert os.stat(path).st_mode & 0o777 == 0o640


# --- weights only -------------------------------------------------------------------


def small(units=4, dtype="float32", seed=0, **kwargs):
    return cdl.Sequential([layers.Dense(units, activation="relu"), layers.Dense(2)],
                          dtype=dtype, seed=seed, **kwargs)


def test_weights_round_trip(tmp_path, dtype):
    path = tmp_path / "w.cdl"
    source = small(dtype=dtype, input_shape=(3,))
    source.save_weights(path)
    target = small(dtype=dtype, seed=1, input_shape=(3,))
    assert not np.array_equal(target.param_buffer, source.param_buffer)
    target.load_weights(path)
    assert np.array_equal(target.param_buffer, source.param_buffer)
    unbuilt = small(dtype=dtype, seed=2)
    unbuilt.load_weights(path)  # built for the saved input shape
    assert unbuilt.input_shape == (3,)
    assert np.array_equal(unbuilt.param_buffer, source.param_buffer)
    _, header, _ = split(path.read_bytes())
    assert header["kind"] == "weights" and header["optimizer"] is None
    with pytest.raises(ModelFileError, match="weights file"):
        cdl.load_model(path)


def test_weights_load_from_a_full_model_file_and_convert_dtype(saved, tmp_path):
    model = cdl.load_model(saved)
    wide = cdl.Sequential([layers.Dense(8, activation="relu"), layers.Dropout(0.3),
                           layers.Dense(3)], input_shape=(5,), dtype="float64", seed=0)
    wide.load_weights(saved)
    assert np.array_equal(wide.param_buffer, model.param_buffer.astype(np.float64))


def test_weights_of_another_architecture_are_refused_naming_the_mismatch(tmp_path):
    path = tmp_path / "w.cdl"
    small(units=4, input_shape=(3,)).save_weights(path)
    target = small(units=5, input_shape=(3,))
    before = target.param_buffer.copy()
    with pytest.raises(ValueError, match=r"weight 0 has shape \[3, 4\].*\[3, 5\]"):
        target.load_weights(path)
    assert np.array_equal(target.param_buffer, before)
    deeper = cdl.Sequential([layers.Dense(4), layers.Dense(2), layers.Dense(2)],
                            input_shape=(3,))
    with pytest.raises(ValueError, match="has 4 weights, the model 6"):
        deeper.load_weights(path)
    with pytest.raises(ValueError, match="no weights yet"):
        cdl.Sequential([layers.Dense(2)]).save_weights(path)
