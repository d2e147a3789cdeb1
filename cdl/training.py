"""Training, evaluation and prediction loops for models (Keras-style comfort).

``TrainingMixin`` gives a model ``compile``, ``fit``, ``evaluate``,
``predict``, ``train_step`` and friends on top of the model's explicit
``forward``/``backward`` and an optimizer's ``step``. The loops gather
each batch into buffers allocated once per ``fit``/``predict`` call and
validate the data once, up front, not per batch.
"""
import math
import time

import numpy as np

from cdl import _fused
from cdl import losses as _losses
from cdl import optimizers as _optimizers
from cdl._validation import as_float_array, check_finite, check_number, choose


def _is_streamed(x):
    """Memory-mapped arrays are read batch by batch instead of converted whole."""
    return isinstance(x, np.memmap)


class _Inputs:
    """Model inputs checked once, and gathered batch by batch into one buffer."""

    def __init__(self, model, x, name="x"):
        if _is_streamed(x):
            if x.dtype.kind not in "biuf":
                raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
            self.data = x
            self.streamed = True
        else:
            self.data = as_float_array(x, model.dtype, name)
            check_finite(self.data, name)
            self.streamed = False
        if self.data.ndim < 2:
            raise ValueError(f"{name} has shape {self.data.shape}; expected (n_samples, features...)")
        if model.input_shape is not None and self.data.shape[1:] != model.input_shape:
            raise ValueError(f"{name} has samples of shape {self.data.shape[1:]}, "
                             f"the model expects {model.input_shape}")
        self.name = name
        self.dtype = model.dtype
        self._buffer = None

    def __len__(self):
        return self.data.shape[0]

    def batch(self, index):
        """Rows ``index`` (a slice or an index array) as a contiguous array."""
        if not self.streamed:
            if isinstance(index, slice):
                return self.data[index]  # a contiguous view: no copy
            n = len(index)
            if self._buffer is None or self._buffer.shape[0] < n:
                self._buffer = np.empty((n,) + self.data.shape[1:], dtype=self.dtype)
            out = self._buffer[:n]
            np.take(self.data, index, axis=0, out=out)
            return out
        rows = np.asarray(self.data[index], dtype=self.dtype)
        check_finite(rows, self.name)
        return np.ascontiguousarray(rows)


def _whole_numbers(values):
    """True for a float array of finite whole numbers within int64's range."""
    return values.dtype.kind == "f" and bool(np.isfinite(values).all()) and bool(
        (np.abs(values) < 2 ** 62).all()) and np.array_equal(values, np.round(values))


class _Targets:
    """Targets (and per-sample weights) gathered batch by batch."""

    def __init__(self, y, n, loss, dtype, name="y"):
        if y is None:
            raise ValueError(f"{name} is required to train or evaluate")
        y = np.asarray(y) if not _is_streamed(y) else y
        self.loss, self.name, self.dtype = loss, name, dtype
        self._buffer = None
        if y.ndim == 0 or y.shape[0] != n:
            raise ValueError(f"{name} has {y.shape[0] if y.ndim else 0} samples, x has {n}")
        if y.dtype.kind not in "biuf":
            raise TypeError(f"{name} must hold numbers, got dtype {y.dtype}")
        if isinstance(loss, _losses.CrossEntropy) and not _is_streamed(y) and y.ndim == 1 \
                and (y.dtype.kind in "biu" or _whole_numbers(y)):
            # Class labels, converted once (the loss checks their range per batch).
            self.data = np.ascontiguousarray(y, dtype=np.int64)
        elif _is_streamed(y):
            self.data = y
        else:
            self.data = as_float_array(y, dtype, name)
            self._check(self.data)

    def _check(self, values):
        """What the losses check per batch, done once for the whole array."""
        if values.dtype.kind == "f":
            check_finite(values, self.name)
            if isinstance(self.loss, _losses.BinaryCrossEntropy) and values.size and (
                    values.min() < 0 or values.max() > 1):
                raise ValueError("binary cross-entropy targets must lie in [0, 1]")

    def batch(self, index):
        if isinstance(index, slice) or _is_streamed(self.data):
            rows = np.ascontiguousarray(self.data[index])
        else:
            # Shuffled in-memory targets: gather into one buffer reused by every batch.
            n = len(index)
            if self._buffer is None or self._buffer.shape[0] < n:
                self._buffer = np.empty((n,) + self.data.shape[1:], dtype=self.data.dtype)
            rows = self._buffer[:n]
            np.take(self.data, index, axis=0, out=rows)
            return rows
        if _is_streamed(self.data):
            rows = as_float_array(rows, self.dtype, self.name) if rows.dtype.kind == "f" \
                else rows
            self._check(rows)
        return rows


def _class_weights(class_weight, y):
    """Per-sample weights from ``class_weight`` (a dict or "balanced")."""
    y = np.asarray(y)
    labels = y.argmax(axis=1) if y.ndim == 2 and y.shape[1] > 1 else y.reshape(-1)
    if labels.dtype.kind == "f":
        if not np.array_equal(labels, np.round(labels)):
            raise ValueError("class_weight needs integer class labels (or one-hot targets)")
        labels = labels.astype(np.int64)
    if isinstance(class_weight, str):
        choose(class_weight, ("balanced",), "class_weight")
        classes, counts = np.unique(labels, return_counts=True)
        table = dict(zip(classes.tolist(), (len(labels) / (len(classes) * counts)).tolist()))
    elif isinstance(class_weight, dict):
        table = {int(k): check_number(v, f"class_weight[{k}]", low=0.0)
                 for k, v in class_weight.items()}
        missing = set(np.unique(labels).tolist()) - set(table)
        if missing:
            raise ValueError(f"class_weight has no weight for classes {sorted(missing)}")
    else:
        raise TypeError("class_weight must be a dict {class: weight} or 'balanced'")
    lookup = np.zeros(int(labels.max()) + 1 if labels.size else 1)
    for k, v in table.items():
        if 0 <= k < lookup.size:
            lookup[k] = v
    return lookup[labels]


def _sample_weights(sample_weight, class_weight, y, n, dtype):
    """Combined per-sample weights (sample_weight * class weight), or None."""
    weights = None
    if sample_weight is not None:
        weights = as_float_array(sample_weight, np.float64, "sample_weight")
        if weights.shape != (n,):
            raise ValueError(f"sample_weight has shape {weights.shape}, expected ({n},)")
        check_finite(weights, "sample_weight")
        if (weights < 0).any():
            raise ValueError("sample_weight must be non-negative")
    if class_weight is not None:
        per_class = _class_weights(class_weight, y)
        weights = per_class if weights is None else weights * per_class
    return None if weights is None else np.ascontiguousarray(weights, dtype=dtype)


def _batches(n, batch_size, shuffle, rng):
    """Slices (in order) or index arrays (shuffled) covering range(n)."""
    if not shuffle:
        return [slice(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    order = rng.permutation(n)
    return [order[start:start + batch_size] for start in range(0, n, batch_size)]


class TrainingMixin:
    """``compile``/``fit``/``evaluate``/``predict`` for a model that has
    ``forward``, ``backward``, ``params``, ``grads``, ``dtype``, ``rng``."""

    optimizer = None
    loss = None
    metrics = ()
    stop_training = False
    #: Use the fused compiled training step when the model supports it; the
    #: layer-by-layer path computes the same numbers and is kept for tests.
    use_fused_step = True
    _regularized = False
    _plan = None
    _plan_key = None
    _predict_plan = None
    _predict_plan_key = None

    # --- configuration ------------------------------------------------------

    def compile(self, optimizer="adam", loss=None, metrics=None, clip_norm=None,
                clip_value=None):
        """Choose how the model trains.

        Parameters
        ----------
        optimizer : str or cdl.optimizers.Optimizer
            A name ("sgd", "adam", ...; default hyper-parameters) or an instance.
        loss : str or cdl.losses.Loss
            E.g. "cross_entropy", "mse", or an instance.
        metrics : list of str or cdl.metrics.Metric, optional
            E.g. ["accuracy"]; reported by ``fit`` and ``evaluate`` under
            the names given here.
        clip_norm : float, optional
            Clip the gradients' global norm before each step.
        clip_value : float, optional
            Clamp every gradient element to [-clip_value, clip_value].
        """
        from cdl import metrics as _metrics

        if loss is None:
            raise ValueError("compile needs a loss, e.g. loss='cross_entropy' or 'mse'")
        self.optimizer = _optimizers.get(optimizer)
        self.loss = _losses.get(loss)
        self.metrics = [_metrics.get(m, loss=self.loss) for m in (metrics or [])]
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names) or "loss" in names:
            raise ValueError(f"metric names must be unique and not 'loss', got {names}")
        self.clip_norm = None if clip_norm is None else check_number(clip_norm, "clip_norm",
                                                                     low=0.0)
        self.clip_value = None if clip_value is None else check_number(
            clip_value, "clip_value", low=0.0)
        self._metric_specs = list(metrics or [])

    def compile_config(self):
        """What ``compile`` was given, as a JSON-friendly dict (None if not compiled).

        Parameter groups of the optimizer are not part of it.
        """
        if self.optimizer is None:
            return None
        metric_specs = []
        for spec, metric in zip(self._metric_specs, self.metrics):
            if not isinstance(spec, str):
                raise ValueError(
                    f"metric {metric.name!r} was given as an object; only metrics named "
                    "by a string can be saved with the model")
            metric_specs.append(spec)
        return {
            "optimizer": {"class_name": type(self.optimizer).__name__,
                          "config": self.optimizer.get_config()},
            "loss": {"class_name": type(self.loss).__name__, "config": self.loss.get_config()},
            "metrics": metric_specs,
            "clip_norm": self.clip_norm,
            "clip_value": self.clip_value,
        }

    def compile_from_config(self, config):
        """``compile`` again from what ``compile_config`` returned."""
        optimizer = _optimizers.from_config(config["optimizer"])
        loss = _losses.from_config(config["loss"])
        self.compile(optimizer, loss, config.get("metrics") or None,
                     clip_norm=config.get("clip_norm"), clip_value=config.get("clip_value"))

    def _require_compiled(self):
        if self.optimizer is None or self.loss is None:
            raise RuntimeError("the model must be compiled first: model.compile(optimizer, loss)")

    # --- weights --------------------------------------------------------------

    def get_weights(self):
        """Copies of every weight, in the order of ``params``."""
        self._ensure_built()
        return [p.copy() for p in self.params]

    def set_weights(self, weights):
        """Copy ``weights`` (as returned by ``get_weights``) into the model."""
        self._ensure_built()
        weights = list(weights)
        if len(weights) != len(self.params):
            raise ValueError(f"expected {len(self.params)} arrays, got {len(weights)}")
        for i, (p, w) in enumerate(zip(self.params, weights)):
            w = np.asarray(w)
            if w.shape != p.shape:
                raise ValueError(f"weight {i} has shape {w.shape}, expected {p.shape}")
            p[...] = w

    # --- one step ------------------------------------------------------------

    def _fused_plan(self, batch_size):
        """The fused training step for batches of up to ``batch_size``, or None
        if a layer or the loss is one it does not cover."""
        key = (batch_size, id(self.param_buffer), id(self.loss), len(self._layers))
        if key == self._plan_key:
            return self._plan
        self._plan, self._plan_key = _fused.build_plan(self, batch_size), key
        return self._plan

    def _inference_plan(self, batch_size):
        """The fused forward pass for ``predict``, or None (see ``_fused_plan``)."""
        key = (batch_size, id(self.param_buffer), len(self._layers))
        if key != self._predict_plan_key:
            self._predict_plan = _fused.build_plan(self, batch_size, training=False)
            self._predict_plan_key = key
        return self._predict_plan

    def _step(self, x, y, w, plan=None):
        """Forward, loss, backward, clip and update on one checked batch;
        ``plan`` is the fused step to use (None: layer by layer)."""
        targets = None if plan is None else _fused.plan_targets(plan, y, x.shape[0])
        if targets is not None:
            n = x.shape[0]
            for uniforms, width in zip(plan.uniforms, plan.dropout_widths):
                self.rng.random(out=uniforms[:n * width], dtype=self.dtype)
            loss = plan.train_step(x, targets, w)
            out = plan.output(n)
        else:
            out = self._forward_checked(x, True)
            loss = self.loss.forward(out, y, w)
            self._backward_checked(self.loss.backward(), input_grad=False)
        if self._regularized:
            loss += self.regularization_loss()
            self._add_regularization_gradients()
        if self.clip_value is not None:
            _optimizers.clip_grad_value(self.grad_buffer, self.clip_value)
        if self.clip_norm is not None:
            _optimizers.clip_grad_norm(self.grad_buffer, self.clip_norm)
        self.optimizer.step(self.params, self.grads)
        return loss, out

    def train_step(self, x, y, sample_weight=None):
        """One optimizer step on the batch (x, y); returns the batch loss.

        For custom training loops: equivalent to forward, loss, backward
        and ``optimizer.step``, with the compiled clipping.
        """
        self._require_compiled()
        x = self._check_batch(x)
        weights = None if sample_weight is None else _sample_weights(
            sample_weight, None, None, x.shape[0], self.dtype)
        plan = self._fused_plan(max(x.shape[0], 1)) if self.use_fused_step else None
        self._regularized = self._has_regularization()
        loss, _ = self._step(x, y, weights, plan)
        return loss

    # --- fit ------------------------------------------------------------------

    def fit(self, x, y=None, epochs=1, batch_size=32, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, max_time=None, loss_threshold=None,
            max_steps=None):
        """Train the model.

        Parameters
        ----------
        x : array_like of shape (n_samples, *input_shape)
            NumPy arrays, including read-only and memory-mapped ones (a
            ``np.memmap`` is read batch by batch, never whole).
        y : array_like
            Targets: class labels or probabilities for classification,
            values for regression.
        epochs : int
            Index of the last epoch (training runs ``initial_epoch`` ..
            ``epochs - 1``).
        batch_size : int
        verbose : {"auto", 0, 1, 2}
            0 silent; 1 progress bar (one line per epoch when not on a
            terminal); 2 one line per epoch. "auto" is 1.
        callbacks : list of cdl.callbacks.Callback
        validation_split : float in [0, 1)
            Fraction of the data, taken from the end before shuffling,
            held out for validation.
        validation_data : tuple (x_val, y_val) or (x_val, y_val, weights)
        shuffle : bool
            Reshuffle the samples every epoch (seeded by the model's seed).
        class_weight : dict or "balanced"
            Weight of each class in the loss; "balanced" uses
            n_samples / (n_classes * count(class)).
        sample_weight : array_like of shape (n_samples,)
        initial_epoch : int
        max_time : float, optional
            Stop after this many seconds (checked after every batch).
        loss_threshold : float, optional
            Stop at the end of the epoch whose training loss is below this
            (the "train until the loss is small enough" rule).
        max_steps : int, optional
            Stop after this many optimizer steps in total.

        Returns
        -------
        cdl.callbacks.History
        """
        from cdl import callbacks as _callbacks

        self._require_compiled()
        epochs = check_number(epochs, "epochs", low=0, integer=True)
        batch_size = check_number(batch_size, "batch_size", low=1, integer=True)
        initial_epoch = check_number(initial_epoch, "initial_epoch", low=0, integer=True)
        validation_split = check_number(validation_split, "validation_split", low=0.0,
                                        high=1.0, high_inclusive=False)
        verbose = 1 if verbose == "auto" else choose(verbose, (0, 1, 2), "verbose")
        if max_time is not None:
            max_time = check_number(max_time, "max_time", low=0.0)
        if max_steps is not None:
            max_steps = check_number(max_steps, "max_steps", low=1, integer=True)

        if not self.built and self.input_shape is None:
            self.build(np.shape(x)[1:])
        self._ensure_built()
        inputs = _Inputs(self, x)
        n = len(inputs)
        weights = _sample_weights(sample_weight, class_weight, y, n, self.dtype)
        targets = _Targets(y, n, self.loss, self.dtype)
        val = None
        if validation_data is not None:
            val = self._validation_set(validation_data)
        elif validation_split:
            split = int(n * (1.0 - validation_split))
            if split == 0 or split == n:
                raise ValueError(f"validation_split={validation_split} leaves no training or "
                                 f"no validation samples out of {n}")
            val = (inputs.data[split:], targets.data[split:],
                   None if weights is None else weights[split:])
            inputs.data, targets.data = inputs.data[:split], targets.data[:split]
            weights = None if weights is None else weights[:split]
            n = split
        if n == 0:
            raise ValueError("there are no training samples")

        history = _callbacks.History()
        cbs = [history] + list(callbacks or [])
        if verbose:
            cbs.append(_callbacks.ProgbarLogger(verbose))
        if loss_threshold is not None:
            cbs.append(_callbacks.LossThreshold(loss_threshold))
        steps = math.ceil(n / batch_size)
        cb = _callbacks.CallbackList(cbs, self, {"epochs": epochs, "steps": steps,
                                                 "verbose": verbose,
                                                 "batch_size": batch_size})
        batch_logs = cb.wants_batch_logs
        plan = self._fused_plan(min(batch_size, n)) if self.use_fused_step else None
        self._regularized = self._has_regularization()
        self.stop_training = False
        self.history = history
        start = time.perf_counter()
        total_steps = 0
        cb.on_train_begin({})
        for epoch in range(initial_epoch, epochs):
            for m in self.metrics:
                m.reset()
            cb.on_epoch_begin(epoch, {})
            loss_sum, seen = 0.0, 0
            for b, index in enumerate(_batches(n, batch_size, shuffle, self.rng)):
                if batch_logs:
                    cb.on_train_batch_begin(b, {})
                xb = inputs.batch(index)
                yb = targets.batch(index)
                wb = None if weights is None else weights[index]
                loss, out = self._step(xb, yb, wb, plan)
                size = xb.shape[0]
                loss_sum += loss * size
                seen += size
                if self.metrics and math.isfinite(loss):
                    # A diverged batch (NaN outputs) is left to the loss and
                    # TerminateOnNaN; metrics reject non-finite predictions.
                    for m in self.metrics:
                        m.update(yb, out, wb)
                total_steps += 1
                if batch_logs:
                    cb.on_train_batch_end(b, {"loss": loss})
                if max_time is not None and time.perf_counter() - start > max_time:
                    self.stop_training = True
                if max_steps is not None and total_steps >= max_steps:
                    self.stop_training = True
                if self.stop_training:
                    break
            logs = {"loss": loss_sum / seen}
            logs.update({m.name: float(m.result()) for m in self.metrics})
            if val is not None:
                val_logs = self._evaluate_arrays(*val, batch_size=max(batch_size, 256))
                logs.update({"val_" + k: v for k, v in val_logs.items()})
            logs["lr"] = self.optimizer.lr
            cb.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        cb.on_train_end({})
        return history

    def partial_fit(self, x, y, sample_weight=None, class_weight=None, batch_size=32,
                    shuffle=True):
        """One pass over (x, y), keeping the optimizer's state (momentum,
        moments, step count) from earlier calls; returns the mean loss."""
        history = self.fit(x, y, epochs=1, batch_size=batch_size, verbose=0, shuffle=shuffle,
                           sample_weight=sample_weight, class_weight=class_weight)
        return history.history["loss"][-1]

    def _validation_set(self, validation_data):
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise ValueError("validation_data must be (x_val, y_val) or (x_val, y_val, weights)")
        x_val, y_val = validation_data[:2]
        w_val = validation_data[2] if len(validation_data) == 3 else None
        inputs = _Inputs(self, x_val, "x_val")
        targets = _Targets(y_val, len(inputs), self.loss, self.dtype, "y_val")
        weights = _sample_weights(w_val, None, None, len(inputs), self.dtype)
        return inputs.data, targets.data, weights

    # --- evaluate and predict ---------------------------------------------------

    def evaluate(self, x, y, batch_size=256, sample_weight=None):
        """Loss and metrics on (x, y), in inference mode.

        Returns
        -------
        dict
            ``{"loss": ..., <metric name>: ...}`` with the names given to
            ``compile``.
        """
        self._require_compiled()
        self._ensure_built()
        inputs = _Inputs(self, x)
        weights = _sample_weights(sample_weight, None, None, len(inputs), self.dtype)
        targets = _Targets(y, len(inputs), self.loss, self.dtype)
        return self._evaluate_arrays(inputs.data, targets.data, weights, batch_size)

    def _evaluate_arrays(self, x, y, weights, batch_size=256):
        batch_size = check_number(batch_size, "batch_size", low=1, integer=True)
        n = x.shape[0]
        if n == 0:
            raise ValueError("cannot evaluate on zero samples")
        inputs = _Inputs.__new__(_Inputs)
        inputs.data, inputs.streamed = x, _is_streamed(x)
        inputs.dtype, inputs.name, inputs._buffer = self.dtype, "x", None
        for m in self.metrics:
            m.reset()
        total = 0.0
        for index in _batches(n, batch_size, False, None):
            xb = inputs.batch(index)
            yb = np.ascontiguousarray(y[index])
            wb = None if weights is None else weights[index]
            out = self._forward_checked(xb, False)
            total += self.loss.forward(out, yb, wb) * xb.shape[0]
            for m in self.metrics:
                m.update(yb, out, wb)
        # Weight penalties count in the reported loss, as in fit (and Keras).
        results = {"loss": total / n + sum(layer.regularization_loss()
                                           for layer in self._layers)}
        results.update({m.name: float(m.result()) for m in self.metrics})
        return results

    def predict(self, x, batch_size=256):
        """Model outputs for ``x``, computed in batches in inference mode.

        Returns
        -------
        ndarray of shape (n_samples, *output_shape)
            Raw outputs: logits for a classifier with a linear head.
        """
        if not self.built and self.input_shape is None:
            self.build(np.shape(x)[1:])
        self._ensure_built()
        batch_size = check_number(batch_size, "batch_size", low=1, integer=True)
        inputs = _Inputs(self, x)
        n = len(inputs)
        out = np.empty((n,) + tuple(self.output_shape), dtype=self.dtype)
        plan = self._inference_plan(min(batch_size, max(n, 1))) if self.use_fused_step \
            else None
        for index in _batches(n, batch_size, False, None):
            if plan is not None:
                plan._plan.predict(inputs.batch(index), out[index])
            else:
                out[index] = self._forward_checked(inputs.batch(index), False)
        return out

    def predict_proba(self, x, batch_size=256):
        """Class probabilities: softmax (or, for a binary cross-entropy model,
        sigmoid) of the outputs; outputs of a final Softmax/Sigmoid layer are
        returned as they are."""
        from cdl.layers.activation import Activation

        out = self.predict(x, batch_size)
        last = self._layers[-1]
        if isinstance(last, Activation) and last.activation in ("softmax", "sigmoid") or \
                getattr(last, "activation", None) in ("softmax", "sigmoid"):
            return out
        if isinstance(self.loss, _losses.BinaryCrossEntropy) or out.shape[-1] == 1:
            return 0.5 * (1.0 + np.tanh(0.5 * out))  # sigmoid without overflow
        shifted = out - out.max(axis=-1, keepdims=True)
        np.exp(shifted, out=shifted)
        shifted /= shifted.sum(axis=-1, keepdims=True)
        return shifted

    def predict_classes(self, x, batch_size=256):
        """Predicted class labels: argmax of the outputs, or output > 0 (a
        logit) for a single-output binary classifier."""
        out = self.predict(x, batch_size)
        if out.ndim == 2 and out.shape[1] == 1 or out.ndim == 1:
            threshold = 0.5 if getattr(self._layers[-1], "activation", None) == "sigmoid" else 0.0
            return (out.reshape(-1) > threshold).astype(np.int64)
        return out.argmax(axis=-1)

    # --- reporting ------------------------------------------------------------

    def summary(self, print_fn=print):
        """Print each layer's output shape, parameter count, FLOPs per sample
        and activation memory per sample, and the totals."""
        self._ensure_built()
        rows = []
        shape = self.input_shape
        for layer in self._layers:
            out_shape = layer.output_shape
            flops = layer.flops_per_sample(shape)
            memory = int(np.prod(out_shape)) * self.dtype.itemsize
            rows.append((f"{layer.name} ({type(layer).__name__})", str((None,) + out_shape),
                         layer.count_params(), flops, memory))
            shape = out_shape
        headers = ("Layer (type)", "Output shape", "Params", "FLOPs/sample", "Activations/sample")
        widths = [max(len(str(r[i])) for r in rows + [headers]) + 2 for i in range(5)]
        line = "-" * sum(widths)
        print_fn(f'Model "{self.name}" ({self.dtype.name}, input {(None,) + self.input_shape})')
        print_fn(line)
        print_fn("".join(h.ljust(w) for h, w in zip(headers, widths)))
        print_fn(line)
        for r in rows:
            print_fn("".join([r[0].ljust(widths[0]), r[1].ljust(widths[1]),
                              f"{r[2]:,}".ljust(widths[2]), f"{r[3]:,}".ljust(widths[3]),
                              _bytes(r[4]).ljust(widths[4])]))
        print_fn(line)
        print_fn(f"Total params: {self.count_params():,} "
                 f"({_bytes(self.count_params() * self.dtype.itemsize)})")
        print_fn(f"Forward FLOPs per sample: {sum(r[3] for r in rows):,}")
        print_fn(f"Activation memory per sample: {_bytes(sum(r[4] for r in rows))}")


def _bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
