"""Convert models between PyTorch and cdl: ``from_torch`` and ``to_torch``.

``from_torch(module, input_shape)`` turns a PyTorch ``nn.Sequential`` (nested
Sequentials are flattened) into a built ``cdl.Sequential`` with the same
weights, running statistics and hyper-parameters; ``to_torch(model)`` does the
reverse. PyTorch is imported only inside these functions: ``cdl.convert``
imports without it.

Layout. PyTorch's convolutions, pools and batch norms take channels-first
data, (N, C, L) or (N, C, H, W); cdl's take channels-last data, (N, L, C) or
(N, H, W, C). A converted model whose modules start with such layers takes
channels-last input: feed it ``np.moveaxis(x, 1, -1)`` of PyTorch's input.
A ``Flatten`` after convolutions flattens the axes in another order in each
library; the converter permutes the input features of the ``Linear`` (or
``BatchNorm1d``) after it so that the outputs are the same. Models without
such layers (MLPs, embeddings and recurrent layers with ``batch_first=True``)
take the same arrays in both libraries.

Recurrent layers. In an ``nn.Sequential``, ``nn.LSTM``/``GRU``/``RNN``
returns ``(output, state)``, which the next module cannot take; the
converter reads a bare one as its output sequence (cdl's
``return_sequences=True``). ``recurrent_output(rnn, return_sequences)``
wraps a PyTorch recurrent module so that it returns one tensor: the output
sequence, or the last hidden state (the forward and backward ones joined
when bidirectional), which is cdl's ``return_sequences=False``. ``to_torch``
produces such wrappers, and they make a text classifier expressible as an
``nn.Sequential``.
Initial states are zero; ``num_layers > 1`` becomes one cdl layer per
PyTorch layer (with ``Dropout`` between them for PyTorch's ``dropout``);
``bidirectional=True`` becomes ``Bidirectional``.

Anything without an exact counterpart is refused with a ``ValueError``
naming the module's position in the Sequential, its class and the option.
"""
import warnings

import numpy as np

__all__ = ["from_torch", "to_torch", "recurrent_output"]


def _torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - exercised without torch only
        raise ImportError("cdl.convert needs PyTorch (the 'torch' package), which is not "
                          "installed: pip install torch") from exc
    return torch


_OUTPUT_CLASS = None


def _output_class():
    """The PyTorch module class that picks a recurrent module's output, made
    on first use (it subclasses ``torch.nn.Module``)."""
    global _OUTPUT_CLASS
    if _OUTPUT_CLASS is None:
        torch = _torch()

        class RecurrentOutput(torch.nn.Module):
            """Run ``rnn`` (batch_first) and return its output sequence, or
            its last hidden state (forward and backward ones concatenated
            when bidirectional): one tensor, which an ``nn.Sequential`` can
            pass on."""

            def __init__(self, rnn, return_sequences=False):
                super().__init__()
                self.rnn = rnn
                self.return_sequences = bool(return_sequences)

            def forward(self, x):
                y, state = self.rnn(x)
                if self.return_sequences:
                    return y
                h = state[0] if isinstance(state, tuple) else state
                if self.rnn.bidirectional:
                    return torch.cat([h[-2], h[-1]], dim=-1)
                return h[-1]

            def extra_repr(self):
                return f"return_sequences={self.return_sequences}"

        _OUTPUT_CLASS = RecurrentOutput
    return _OUTPUT_CLASS


def recurrent_output(rnn, return_sequences=False):
    """Wrap a PyTorch ``nn.LSTM``, ``nn.GRU`` or ``nn.RNN`` so that it returns
    one tensor, which an ``nn.Sequential`` can pass on: its last hidden state,
    shape (batch, hidden) (or (batch, 2 hidden) when bidirectional), or with
    ``return_sequences`` its output sequence.

    It is the PyTorch side of cdl's ``return_sequences``: ``from_torch``
    reads it so, and ``to_torch`` produces it.

    Parameters
    ----------
    rnn : torch.nn.LSTM, torch.nn.GRU or torch.nn.RNN
        With ``batch_first=True``.
    return_sequences : bool
        Return the output at every step instead of the last state.

    Returns
    -------
    torch.nn.Module

    Examples
    --------
    >>> import torch                                    # doctest: +SKIP
    >>> from cdl.convert import recurrent_output        # doctest: +SKIP
    >>> head = torch.nn.Sequential(
    ...     torch.nn.Embedding(100, 8),
    ...     recurrent_output(torch.nn.LSTM(8, 16, batch_first=True)),
    ...     torch.nn.Linear(16, 2))                     # doctest: +SKIP
    """
    torch = _torch()
    if not isinstance(rnn, (torch.nn.LSTM, torch.nn.GRU, torch.nn.RNN)):
        raise TypeError(f"recurrent_output wraps an nn.LSTM, nn.GRU or nn.RNN, got {rnn!r}")
    return _output_class()(rnn, return_sequences)


# --- from PyTorch -------------------------------------------------------------------------


def _refuse(path, module, why):
    raise ValueError(f"cdl.convert.from_torch cannot convert module {path!r} "
                     f"({type(module).__name__}): {why}")


def _flatten_modules(module, prefix=""):
    torch = _torch()
    for name, child in module.named_children():
        path = f"{prefix}{name}"
        if isinstance(child, torch.nn.Sequential):
            yield from _flatten_modules(child, path + ".")
        else:
            yield path, child


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _single(value):
    return value[0] if isinstance(value, (tuple, list)) else value


def _np(tensor, dtype):
    return tensor.detach().cpu().numpy().astype(dtype)


# Modules that work on channels-first data, which make the input spatial.
_SPATIAL = ("Conv1d", "Conv2d", "ConvTranspose2d", "MaxPool1d", "MaxPool2d", "AvgPool1d",
            "AvgPool2d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveMaxPool1d",
            "AdaptiveMaxPool2d", "BatchNorm2d", "Dropout1d", "Dropout2d", "Upsample",
            "UpsamplingNearest2d", "UpsamplingBilinear2d", "ZeroPad1d", "ZeroPad2d")
# Modules that end a spatial input's channels-first part or show it was not spatial.
_FLAT = ("Linear", "Flatten", "Embedding", "LSTM", "GRU", "RNN", "LayerNorm", "RMSNorm",
         "RecurrentOutput")
# Modules that act on each element alone: any layout, and a pending
# Flatten permutation passes through them.
_ELEMENTWISE = ("ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU", "ELU", "SELU", "SiLU",
                "Mish", "Softplus", "Softsign", "Hardsigmoid", "Hardswish", "ReLU6",
                "Hardtanh", "Dropout", "Identity", "AlphaDropout")


def _activation_layer(path, module, layers):
    """The cdl layer for a PyTorch activation module, or None if it is not one."""
    kind = type(module).__name__
    simple = {"ReLU": layers.ReLU, "Sigmoid": layers.Sigmoid, "Tanh": layers.Tanh,
              "SELU": layers.SELU, "SiLU": layers.SiLU, "Mish": layers.Mish,
              "Softsign": layers.Softsign, "Hardsigmoid": layers.HardSigmoid,
              "Hardswish": layers.HardSwish, "ReLU6": layers.ReLU6}
    if kind in simple:
        return simple[kind]()
    if kind == "LeakyReLU":
        return layers.LeakyReLU(negative_slope=float(module.negative_slope))
    if kind == "ELU":
        return layers.ELU(alpha=float(module.alpha))
    if kind == "GELU":
        if module.approximate != "none":
            _refuse(path, module, f"approximate={module.approximate!r} (cdl's GELU is the "
                    "exact, erf form only)")
        return layers.GELU()
    if kind == "Softplus":
        return layers.Softplus(beta=float(module.beta), threshold=float(module.threshold))
    if kind == "Hardtanh":
        if (float(module.min_val), float(module.max_val)) == (0.0, 6.0):
            return layers.ReLU6()
        _refuse(path, module, f"min_val={module.min_val}, max_val={module.max_val} (cdl "
                "has the clip to [0, 6] only, ReLU6)")
    return None


def _check_no(path, module, **values):
    """Refuse every option in ``values`` (name -> (value, default)) that is
    not at its default."""
    for name, (value, default) in values.items():
        if value != default:
            _refuse(path, module, f"{name}={value!r} is not supported (only {default!r})")


def from_torch(torch_module, input_shape, dtype=None):
    """Convert a PyTorch ``nn.Sequential`` into a built ``cdl.Sequential``.

    Parameters
    ----------
    torch_module : torch.nn.Sequential
        Nested Sequentials are flattened. Supported modules: Linear;
        Conv1d, Conv2d (groups=1, zero padding), ConvTranspose2d; MaxPool1d/2d,
        AvgPool1d/2d (padding, ceil_mode, count_include_pad,
        divisor_override); AdaptiveAvgPool1d/2d, AdaptiveMaxPool1d/2d;
        BatchNorm1d/2d (running statistics, momentum, eps, affine),
        LayerNorm, GroupNorm, RMSNorm; Embedding; LSTM, GRU, RNN
        (``batch_first=True``; also wrapped in ``recurrent_output``); ReLU,
        LeakyReLU, Sigmoid, Tanh, GELU (exact), ELU, SELU, SiLU, Mish,
        Softplus, Softsign, Hardsigmoid, Hardswish, ReLU6 (and Hardtanh(0, 6)),
        Softmax and LogSoftmax (over the features), PReLU; Dropout,
        Dropout1d, Dropout2d; Flatten; Identity; Upsample (nearest or
        bilinear, integer scale factors), ZeroPad1d, ZeroPad2d.
    input_shape : tuple of int
        PyTorch's per-sample input shape (without the batch axis), such as
        ``(1, 28, 28)`` for a CNN or ``(20,)`` for token ids; a time axis
        may be None. The cdl model takes channels-last input ((28, 28, 1))
        when the model starts with channels-first layers.
    dtype : {"float32", "float64"}, optional
        The cdl model's dtype; default: that of the module's first
        floating-point parameter or buffer (float32 without any).

    Returns
    -------
    cdl.Sequential
        Built, with PyTorch's weights: its outputs equal PyTorch's (in
        eval mode) on channels-last-permuted input, to float rounding.

    Raises
    ------
    ImportError
        Without PyTorch.
    ValueError
        For a module or an option cdl has no exact counterpart of, naming
        its position in the Sequential (``"3"``, ``"features.1"``), its
        class and the option.

    Examples
    --------
    >>> import torch, numpy as np                       # doctest: +SKIP
    >>> from cdl.convert import from_torch              # doctest: +SKIP
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(),
    ...                           torch.nn.Linear(8, 2))   # doctest: +SKIP
    >>> model = from_torch(net, (4,))                   # doctest: +SKIP
    """
    torch = _torch()
    import cdl
    from cdl import layers

    if not isinstance(torch_module, torch.nn.Sequential):
        raise TypeError("cdl.convert.from_torch takes a torch.nn.Sequential, got "
                        f"{type(torch_module).__name__}")
    if isinstance(input_shape, int):
        input_shape = (input_shape,)
    if not isinstance(input_shape, (tuple, list)) or not all(
            d is None or (isinstance(d, int) and d >= 1) for d in input_shape):
        raise ValueError(f"input_shape must be a tuple of positive ints (PyTorch's per-sample "
                         f"shape, without the batch axis), got {input_shape!r}")
    modules = list(_flatten_modules(torch_module))
    if not modules:
        raise ValueError("cdl.convert.from_torch: the Sequential is empty")
    if dtype is None:
        params = [p for p in [*torch_module.parameters(), *torch_module.buffers()]
                  if p.is_floating_point()]
        dtype = str(params[0].dtype).replace("torch.", "") if params else "float32"
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")

    # Is the input channels-first spatial data?
    spatial = False
    for _, module in modules:
        kind = type(module).__name__
        if kind in _SPATIAL or (kind == "BatchNorm1d" and len(input_shape) == 2):
            spatial = len(input_shape) >= 2
            break
        if kind in _FLAT:
            break
    cdl_input = tuple(input_shape[1:]) + (input_shape[0],) if spatial else tuple(input_shape)

    shapes = _torch_shapes(torch, modules, input_shape, dtype)
    out_layers = []      # the cdl layers, in order
    fills = []           # (cdl layer, fill function(layer, flatten_shape)) for the weights
    pending = None       # the Flatten layer whose permutation the next layer takes on
    for path, module in modules:
        kind = type(module).__name__
        new, fill = _convert_module(path, module, spatial, shapes.get(path), dtype,
                                    layers, torch)
        if kind == "Flatten":
            if spatial:
                pending = new[0]
            spatial = False
        elif kind in ("Linear", "BatchNorm1d") and pending is not None:
            flat = pending
            inner = fill

            def fill(layer, flat=flat, inner=inner):
                inner(layer, flat.input_shape)
            if kind == "Linear":      # a batch norm keeps the order for the next layer
                pending = None
        elif kind not in _ELEMENTWISE and pending is not None:
            _refuse(path, module, "it follows a Flatten of channels-first data whose "
                    "feature order only a Linear (or a BatchNorm1d before it) can take on")
        elif kind in _FLAT:
            spatial = False
        out_layers.extend(new)
        if fill is not None:
            fills.append((new, fill))

    model = cdl.Sequential(out_layers, input_shape=cdl_input, dtype=dtype.name, seed=0)
    for new, fill in fills:
        fill(new[0] if len(new) == 1 else new)
    return model


def _torch_shapes(torch, modules, input_shape, dtype):
    """PyTorch's per-sample input shape of each module (path -> shape), by
    running the modules in eval mode on zeros (restoring their modes); the
    shapes from the first module that fails on them on are left out."""
    shapes = {}
    first = modules[0][1]
    size = tuple(8 if d is None else d for d in input_shape)
    if isinstance(first, torch.nn.Embedding):
        x = torch.zeros((2,) + size, dtype=torch.long)
    else:
        x = torch.zeros((2,) + size, dtype=torch.float64 if dtype == np.float64
                        else torch.float32)
    modes = {id(m): m.training for _, top in modules for m in top.modules()}
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")      # PyTorch's performance notes
            for path, module in modules:
                shapes[path] = tuple(x.shape[1:])
                for m in module.modules():
                    m.train(False)
                x = module(x.to(next((p.dtype for p in module.parameters()), x.dtype))
                           if x.is_floating_point() else x)
                if isinstance(x, tuple):
                    x = x[0]
    except Exception:  # noqa: BLE001 - the converter names the module it refuses
        pass
    finally:
        for _, top in modules:
            for m in top.modules():
                m.training = modes[id(m)]
    return shapes


def _chw_to_hwc_columns(matrix, flat_shape):
    """The columns of ``matrix`` (..., C * prod(spatial)) in PyTorch's
    channels-first flattening order, reordered for cdl's channels-last one
    (``flat_shape``: the cdl Flatten's input shape, (*spatial, C))."""
    if flat_shape is None:
        return matrix
    *space, channels = flat_shape
    lead = matrix.shape[:-1]
    grid = matrix.reshape(lead + (channels, *space))
    return np.moveaxis(grid, len(lead), -1).reshape(lead + (-1,))


def _hwc_to_chw_columns(matrix, flat_shape):
    """The inverse of ``_chw_to_hwc_columns``."""
    if flat_shape is None:
        return matrix
    *space, channels = flat_shape
    lead = matrix.shape[:-1]
    grid = matrix.reshape(lead + (*space, channels))
    return np.moveaxis(grid, -1, len(lead)).reshape(lead + (-1,))


def _convert_module(path, module, spatial, shape, dtype, layers, torch):
    """``(cdl layers, fill)`` for one PyTorch module: the new layers and a
    function that copies the module's weights into the built layer(s)
    (``fill(layer)``, or ``fill(layer, flatten_shape)`` for Linear and
    BatchNorm1d), or None."""
    nn = torch.nn
    kind = type(module).__name__
    d = lambda t: _np(t, dtype)  # noqa: E731

    act = _activation_layer(path, module, layers)
    if act is not None:
        return [act], None
    if kind in ("Softmax", "LogSoftmax"):
        dim = module.dim
        rank = None if shape is None else len(shape)     # the sample's axes
        if dim is not None and dim < 0 and rank is not None:
            dim += rank + 1
        ok = dim == 1 if spatial else (dim == -1 or (rank is not None and dim == rank))
        if not ok:
            _refuse(path, module, f"dim={module.dim} (cdl's {kind} is over the features: the "
                    "last axis, or dim=1 on channels-first data)")
        return [layers.Softmax() if kind == "Softmax" else layers.LogSoftmax()], None
    if kind in ("PReLU", "BatchNorm1d", "GroupNorm") and not spatial and shape is not None \
            and len(shape) > 1 and not (kind == "PReLU" and module.num_parameters == 1):
        _refuse(path, module, f"an input of shape {shape} that is not channels-first image "
                "or signal data: PyTorch takes axis 1 as the channels, cdl the last axis")
    if kind == "PReLU":
        count = module.num_parameters
        if count == 1:
            if shape is None:
                _refuse(path, module, "num_parameters=1 where the input's shape is unknown")
            layer = layers.PReLU(shared_axes=list(range(1, len(shape) + 1)))
        else:
            channels = shape[0] if shape is not None and len(shape) > 1 else None
            if channels is not None and channels != count:
                _refuse(path, module, f"num_parameters={count} on {channels} channels")
            layer = layers.PReLU()

        def fill(layer):
            layer.alpha[...] = d(module.weight).reshape(layer.alpha.shape)
        return [layer], fill
    if kind in ("Dropout", "AlphaDropout") or kind in ("Dropout1d", "Dropout2d"):
        if kind == "AlphaDropout":
            _refuse(path, module, "cdl has no alpha dropout")
        if kind == "Dropout":
            return [layers.Dropout(float(module.p))], None
        cls = layers.SpatialDropout1D if kind == "Dropout1d" else layers.SpatialDropout2D
        return [cls(float(module.p))], None
    if kind == "Identity":
        return [layers.Activation("linear")], None
    if kind == "Flatten":
        _check_no(path, module, start_dim=(module.start_dim, 1), end_dim=(module.end_dim, -1))
        return [layers.Flatten()], None

    if kind == "Linear":
        if spatial:
            _refuse(path, module, "a Linear on channels-first data acts on the last spatial "
                    "axis, which cdl's channels-last layout does not have last")
        use_bias = module.bias is not None
        layer = layers.Dense(module.out_features, use_bias=use_bias)

        def fill(layer, flat_shape=None):
            layer.kernel[...] = _chw_to_hwc_columns(d(module.weight), flat_shape).T
            if use_bias:
                layer.bias[...] = d(module.bias)
        return [layer], fill

    if kind in ("Conv1d", "Conv2d"):
        rank = 1 if kind == "Conv1d" else 2
        _check_no(path, module, groups=(module.groups, 1),
                  padding_mode=(module.padding_mode, "zeros"))
        # PyTorch's "same" (stride 1) pads the odd pixel at the end, as cdl's.
        padding = module.padding
        if not isinstance(padding, str) and rank == 1:
            padding = padding[0]
        cls = layers.Conv1D if rank == 1 else layers.Conv2D
        use_bias = module.bias is not None
        layer = cls(module.out_channels, _single(module.kernel_size) if rank == 1
                    else tuple(module.kernel_size),
                    strides=_single(module.stride) if rank == 1 else tuple(module.stride),
                    padding=padding,
                    dilation_rate=_single(module.dilation) if rank == 1
                    else tuple(module.dilation), use_bias=use_bias)

        def fill(layer):
            w = d(module.weight)          # (F, C, k) or (F, C, kh, kw)
            layer.kernel[...] = (w.transpose(2, 1, 0) if rank == 1
                                 else w.transpose(2, 3, 1, 0))
            if use_bias:
                layer.bias[...] = d(module.bias)
        return [layer], fill

    if kind == "ConvTranspose2d":
        _check_no(path, module, groups=(module.groups, 1),
                  padding_mode=(module.padding_mode, "zeros"),
                  padding=(tuple(module.padding), (0, 0)))
        for a in range(2):
            span = module.dilation[a] * (module.kernel_size[a] - 1) + 1
            want = max(module.stride[a] - span, 0)
            if module.output_padding[a] != want:
                _refuse(path, module, f"output_padding={tuple(module.output_padding)} "
                        "(cdl's 'valid' transposed convolution has output size "
                        "h * stride + max(dilated kernel - stride, 0), PyTorch's "
                        f"output_padding {want} on that axis)")
        use_bias = module.bias is not None
        layer = layers.Conv2DTranspose(module.out_channels, tuple(module.kernel_size),
                                       strides=tuple(module.stride), padding="valid",
                                       dilation_rate=tuple(module.dilation), use_bias=use_bias)

        def fill(layer):
            layer.kernel[...] = d(module.weight).transpose(2, 3, 1, 0)   # (C, F, kh, kw)
            if use_bias:
                layer.bias[...] = d(module.bias)
        return [layer], fill

    if kind in ("MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d"):
        rank = 1 if kind.endswith("1d") else 2
        pick = _single if rank == 1 else _pair
        kwargs = dict(strides=pick(module.stride if module.stride else module.kernel_size),
                      padding=pick(module.padding), ceil_mode=bool(module.ceil_mode))
        if kind.startswith("Max"):
            _check_no(path, module, return_indices=(module.return_indices, False))
            kwargs["dilation"] = pick(module.dilation)
        else:
            kwargs["count_include_pad"] = bool(module.count_include_pad)
            if rank == 2:
                kwargs["divisor_override"] = module.divisor_override
        cls = getattr(layers, kind[:-2] + f"{rank}D")
        try:
            return [cls(pick(module.kernel_size), **kwargs)], None
        except (ValueError, TypeError) as exc:
            _refuse(path, module, str(exc))
    if kind.startswith("Adaptive") and kind[-2:] in ("1d", "2d"):
        rank = int(kind[-2])
        if getattr(module, "return_indices", False):
            _refuse(path, module, "return_indices=True is not supported")
        cls = getattr(layers, kind[:-2] + f"{rank}D")
        size = module.output_size
        return [cls(_single(size) if rank == 1 else _pair(size))], None

    if kind in ("BatchNorm1d", "BatchNorm2d"):
        affine = bool(module.affine)
        track = bool(module.track_running_stats)
        layer = layers.BatchNorm(momentum=module.momentum, eps=float(module.eps),
                                 center=affine, scale=affine, track_running_stats=track)

        def fill(layer, flat_shape=None):
            perm = lambda v: _chw_to_hwc_columns(v, flat_shape)  # noqa: E731
            if affine:
                layer.gamma[...] = perm(d(module.weight))
                layer.beta[...] = perm(d(module.bias))
            if track:
                layer.running_mean[...] = perm(d(module.running_mean))
                layer.running_var[...] = perm(d(module.running_var))
                if layer.num_batches_tracked is not None:
                    layer.num_batches_tracked[...] = float(module.num_batches_tracked)
        return [layer], fill
    if kind == "LayerNorm":
        shape = tuple(module.normalized_shape)
        affine = bool(module.elementwise_affine)
        bias = affine and module.bias is not None
        axis = -1 if len(shape) == 1 else tuple(range(-len(shape), 0))
        layer = layers.LayerNorm(eps=float(module.eps), axis=axis, elementwise_affine=affine,
                                 bias=bias if affine else True)

        def fill(layer):
            if affine:
                layer.gamma[...] = d(module.weight).reshape(layer.gamma.shape)
                if bias:
                    layer.beta[...] = d(module.bias).reshape(layer.beta.shape)
        return [layer], fill
    if kind == "RMSNorm":
        shape = tuple(module.normalized_shape)
        if len(shape) != 1:
            _refuse(path, module, f"normalized_shape={shape} (cdl's RMSNorm is over the last "
                    "axis only)")
        affine = bool(module.elementwise_affine)
        layer = layers.RMSNorm(eps=module.eps, affine=affine)

        def fill(layer):
            if affine:
                layer.gamma[...] = d(module.weight)
        return [layer], fill
    if kind == "GroupNorm":
        affine = bool(module.affine)
        layer = layers.GroupNorm(module.num_groups, eps=float(module.eps), affine=affine)

        def fill(layer):
            if affine:
                layer.gamma[...] = d(module.weight)
                layer.beta[...] = d(module.bias)
        return [layer], fill

    if kind == "Embedding":
        _check_no(path, module, max_norm=(module.max_norm, None),
                  scale_grad_by_freq=(module.scale_grad_by_freq, False),
                  sparse=(module.sparse, False))
        layer = layers.Embedding(module.num_embeddings, module.embedding_dim)

        def fill(layer):
            layer.embeddings[...] = d(module.weight)
        return [layer], fill

    if kind == "RecurrentOutput" or isinstance(module, (nn.LSTM, nn.GRU, nn.RNN)):
        wrapped = kind == "RecurrentOutput"
        rnn = module.rnn if wrapped else module
        sequences = module.return_sequences if wrapped else True
        return _convert_recurrent(path, rnn, sequences, dtype, layers)

    if kind in ("Upsample", "UpsamplingNearest2d", "UpsamplingBilinear2d"):
        if shape is not None and len(shape) != 3:
            _refuse(path, module, f"an input of shape {shape} (cdl upsamples images, "
                    "(C, H, W) in PyTorch)")
        if module.size is not None or module.scale_factor is None:
            _refuse(path, module, "size= (cdl upsamples by integer scale factors)")
        factors = _pair(module.scale_factor)
        if any(float(f) != int(f) for f in factors):
            _refuse(path, module, f"scale_factor={module.scale_factor} (integers only)")
        factors = tuple(int(f) for f in factors)
        mode = module.mode
        if mode not in ("nearest", "bilinear"):
            _refuse(path, module, f"mode={mode!r} (nearest and bilinear only)")
        if getattr(module, "recompute_scale_factor", None):
            _refuse(path, module, "recompute_scale_factor=True")
        return [layers.UpSampling2D(factors, interpolation=mode,
                                    align_corners=bool(module.align_corners))], None
    if kind in ("ZeroPad1d", "ZeroPad2d"):
        pads = tuple(module.padding)
        if kind == "ZeroPad1d":
            if min(pads) < 0:
                _refuse(path, module, f"padding={pads} (negative padding)")
            return [layers.ZeroPadding1D(pads)], None
        left, right, top, bottom = pads
        if min(pads) < 0:
            _refuse(path, module, f"padding={pads} (negative padding)")
        return [layers.ZeroPadding2D(((top, bottom), (left, right)))], None
    _refuse(path, module, "cdl has no converter for this module class")


_RNN_KINDS = {"LSTM": "LSTM", "GRU": "GRU", "RNN": "SimpleRNN"}


def _convert_recurrent(path, rnn, sequences, dtype, layers):
    kind = type(rnn).__name__
    if kind not in _RNN_KINDS:
        _refuse(path, rnn, "cdl has no converter for this module class")
    if not rnn.batch_first:
        _refuse(path, rnn, "batch_first=False (cdl's recurrent layers take (batch, time, "
                "features): use batch_first=True)")
    if not rnn.bias:
        _refuse(path, rnn, "bias=False (cdl's recurrent layers always have biases)")
    if getattr(rnn, "proj_size", 0):
        _refuse(path, rnn, f"proj_size={rnn.proj_size}")
    options = {}
    if kind == "RNN":
        options["activation"] = rnn.nonlinearity
    cls = getattr(layers, _RNN_KINDS[kind])
    new = []
    count = rnn.num_layers
    for index in range(count):
        last = index == count - 1
        inner = cls(rnn.hidden_size, return_sequences=sequences or not last, **options)
        new.append(layers.Bidirectional(inner) if rnn.bidirectional else inner)
        if not last and rnn.dropout:
            new.append(layers.Dropout(float(rnn.dropout)))

    def fill(new_layers):
        new_layers = new_layers if isinstance(new_layers, list) else [new_layers]
        recurrent = [layer for layer in new_layers if not isinstance(layer, layers.Dropout)]
        for index, layer in enumerate(recurrent):
            halves = ([(layer.forward_layer, ""), (layer.backward_layer, "_reverse")]
                      if rnn.bidirectional else [(layer, "")])
            for half, suffix in halves:
                get = lambda name: _np(getattr(rnn, f"{name}_l{index}{suffix}"),  # noqa: E731
                                       dtype)
                half.input_kernel[...] = get("weight_ih").T
                half.recurrent_kernel[...] = get("weight_hh").T
                half.input_bias[...] = get("bias_ih")
                half.recurrent_bias[...] = get("bias_hh")
    return new, fill


# --- to PyTorch ---------------------------------------------------------------------------


def _refuse_layer(layer, why):
    raise ValueError(f"cdl.convert.to_torch cannot convert layer {layer.name!r} "
                     f"({type(layer).__name__}): {why}")


def _torch_activation(name, param, layer, nn, threshold=20.0):
    """The PyTorch module for a cdl activation name (None for "linear")."""
    if name == "linear":
        return None
    simple = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "gelu": nn.GELU,
              "selu": nn.SELU, "silu": nn.SiLU, "swish": nn.SiLU, "mish": nn.Mish,
              "softsign": nn.Softsign, "hard_sigmoid": nn.Hardsigmoid,
              "hard_swish": nn.Hardswish, "relu6": nn.ReLU6}
    if name in simple:
        return simple[name]()
    if name == "leaky_relu":
        return nn.LeakyReLU(float(param))
    if name == "elu":
        return nn.ELU(float(param))
    if name == "softplus":
        return nn.Softplus(beta=float(param), threshold=float(threshold))
    if name == "softmax":
        return nn.Softmax(dim=-1)
    if name == "log_softmax":
        return nn.LogSoftmax(dim=-1)
    _refuse_layer(layer, f"activation {name!r} has no PyTorch module")


def to_torch(model):
    """Convert a built ``cdl.Sequential`` into a PyTorch ``nn.Sequential``.

    The reverse of ``from_torch``, for the same layers: the PyTorch model
    holds copies of the weights and running statistics, in the model's
    dtype, and is in training mode (call ``.eval()`` for inference). A
    model whose first layers are convolutions, pools or batch norms on
    channels-last data gives a PyTorch model taking channels-first input
    (``np.moveaxis(x, -1, 1)``); a ``Flatten`` after them is followed by a
    ``Linear`` whose input features are permuted to PyTorch's order. Fused
    activations (``Dense(..., activation="relu")``) become a module after
    the layer. Recurrent layers become ``batch_first`` modules wrapped in
    ``recurrent_output``.

    Parameters
    ----------
    model : cdl.Sequential
        Built (with an input shape).

    Returns
    -------
    torch.nn.Sequential

    Raises
    ------
    ImportError
        Without PyTorch.
    ValueError
        For a layer or option PyTorch's standard modules cannot express,
        naming the layer.

    Examples
    --------
    >>> import cdl                                      # doctest: +SKIP
    >>> from cdl import layers                          # doctest: +SKIP
    >>> from cdl.convert import to_torch                # doctest: +SKIP
    >>> model = cdl.Sequential([layers.Dense(8, activation="relu"), layers.Dense(2)],
    ...                        input_shape=(4,), seed=0)  # doctest: +SKIP
    >>> net = to_torch(model).eval()                    # doctest: +SKIP
    """
    torch = _torch()
    import cdl
    from cdl import layers

    if not isinstance(model, cdl.Sequential):
        raise TypeError(f"cdl.convert.to_torch takes a cdl.Sequential, got "
                        f"{type(model).__name__}")
    if not model.built:
        raise ValueError("cdl.convert.to_torch needs a built model (give input_shape or "
                         "call it once)")
    dtype = {np.dtype(np.float32): torch.float32,
             np.dtype(np.float64): torch.float64}[np.dtype(model.dtype)]
    modules = []
    spatial = False
    pending = None
    first = True
    for layer in model.layers:
        kind = type(layer).__name__
        shape = tuple(layer.input_shape) if not isinstance(layer.input_shape, list) else None
        if first:
            spatial = _is_spatial_start(model.layers, layers) and shape is not None \
                and len(shape) >= 2
            first = False
        new, permuted = _layer_to_torch(layer, spatial, pending, torch, layers)
        if kind == "Flatten":
            if spatial:
                pending = shape
            spatial = False
        elif permuted:
            pending = None
        elif pending is not None and kind not in _PASS_PERMUTATION:
            _refuse_layer(layer, "it follows a Flatten of convolution features, whose order "
                          "only a Dense (or a BatchNorm before it) can take on")
        elif kind in ("Dense", "Embedding", "LSTM", "GRU", "SimpleRNN", "Bidirectional",
                      "LayerNorm", "RMSNorm"):
            spatial = False
        modules.extend(new)
    net = torch.nn.Sequential(*modules).to(dtype)
    return net


# Layers between a Flatten and the Dense that takes on its permutation.
_PASS_PERMUTATION = ("Dropout", "Activation", "BatchNorm", "ReLU", "LeakyReLU", "Sigmoid",
                     "Tanh", "GELU", "ELU", "SELU", "SiLU", "Mish", "Softplus", "Softsign",
                     "HardSigmoid", "HardSwish", "ReLU6")
_SPATIAL_LAYERS = ("Conv1D", "Conv2D", "Conv2DTranspose", "MaxPool1D", "MaxPool2D",
                   "AvgPool1D", "AvgPool2D", "AdaptiveAvgPool1D", "AdaptiveAvgPool2D",
                   "AdaptiveMaxPool1D", "AdaptiveMaxPool2D", "SpatialDropout1D",
                   "SpatialDropout2D", "UpSampling2D", "ZeroPadding1D", "ZeroPadding2D")
_FLAT_LAYERS = ("Dense", "Flatten", "Embedding", "LSTM", "GRU", "SimpleRNN", "Bidirectional",
                "LayerNorm", "RMSNorm")


def _is_spatial_start(model_layers, layers):
    for layer in model_layers:
        kind = type(layer).__name__
        if kind in _SPATIAL_LAYERS:
            return True
        if kind == "BatchNorm" and len(layer.input_shape) >= 2:
            return True
        if kind in _FLAT_LAYERS:
            return False
    return False


def _set_param(torch, module, name, array):
    getattr(module, name).data = torch.from_numpy(np.array(array, copy=True))


def _layer_to_torch(layer, spatial, pending, torch, layers):
    """``(modules, took the pending Flatten permutation)`` for one cdl layer."""
    nn = torch.nn
    kind = type(layer).__name__
    fused = []
    if kind in ("Dense", "Conv1D", "Conv2D", "Conv2DTranspose"):
        act = _torch_activation(layer.activation, layer._param, layer, nn)
        fused = [] if act is None else [act]
    if kind in ("PReLU", "BatchNorm", "GroupNorm") and not spatial \
            and len(layer.input_shape) > 1 and not (kind == "PReLU"
                                                     and np.size(layer.alpha) == 1):
        _refuse_layer(layer, f"samples of shape {tuple(layer.input_shape)} that are not "
                      "convolution features: PyTorch's module would take axis 1 as the "
                      "channels")
    if kind == "Dense":
        if spatial:
            _refuse_layer(layer, "a Dense on channels-last convolution features has no "
                          "PyTorch Linear on channels-first data")
        units_in = layer.kernel.shape[0]
        module = nn.Linear(units_in, layer.units, bias=layer.use_bias)
        _set_param(torch, module, "weight", _hwc_to_chw_columns(layer.kernel.T, pending))
        if layer.use_bias:
            _set_param(torch, module, "bias", layer.bias)
        return [module] + fused, pending is not None
    if kind in ("Conv1D", "Conv2D"):
        rank = layer._rank
        padding = layer.padding
        if padding == "causal":
            _refuse_layer(layer, "padding='causal' (PyTorch's Conv1d pads both ends)")
        if padding == "same" and any(s != 1 for s in layer.strides):
            # The padding for this input size, if it is the same at both ends.
            pads = layer._geom[2]
            pairs = [(pads[2], pads[3])] if rank == 1 else [(pads[0], pads[1]),
                                                            (pads[2], pads[3])]
            if any(before != after for before, after in pairs):
                _refuse_layer(layer, "padding='same' with strides pads one end more, which "
                              "PyTorch's Conv does not")
            padding = tuple(int(before) for before, _ in pairs)
        cls = nn.Conv1d if rank == 1 else nn.Conv2d
        channels = layer.input_shape[-1]
        module = cls(channels, layer.filters, tuple(layer.kernel_size),
                     stride=tuple(layer.strides),
                     padding=padding if isinstance(padding, str) else tuple(padding),
                     dilation=tuple(layer.dilation_rate), bias=layer.use_bias)
        w = layer.kernel.transpose(2, 1, 0) if rank == 1 else layer.kernel.transpose(3, 2, 0, 1)
        _set_param(torch, module, "weight", w)
        if layer.use_bias:
            _set_param(torch, module, "bias", layer.bias)
        return [module] + fused, False
    if kind == "Conv2DTranspose":
        if layer.padding != "valid":
            _refuse_layer(layer, f"padding={layer.padding!r} (only 'valid' has a PyTorch "
                          "ConvTranspose2d of the same size)")
        out_pad = tuple(max(s - (dil * (k - 1) + 1), 0) for s, dil, k in zip(
            layer.strides, layer.dilation_rate, layer.kernel_size))
        module = nn.ConvTranspose2d(layer.input_shape[-1], layer.filters,
                                    tuple(layer.kernel_size), stride=tuple(layer.strides),
                                    output_padding=out_pad, dilation=tuple(layer.dilation_rate),
                                    bias=layer.use_bias)
        _set_param(torch, module, "weight", layer.kernel.transpose(3, 2, 0, 1))
        if layer.use_bias:
            _set_param(torch, module, "bias", layer.bias)
        return [module] + fused, False
    if kind == "Activation" or kind in ("ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU", "ELU",
                                        "SELU", "SiLU", "Mish", "Softplus", "Softsign",
                                        "HardSigmoid", "HardSwish", "ReLU6"):
        act = _torch_activation(layer.activation, layer._param, layer, nn,
                                getattr(layer, "threshold", 20.0))
        return [nn.Identity() if act is None else act], False
    if kind in ("Softmax", "LogSoftmax"):
        dim = 1 if spatial else -1
        return [nn.Softmax(dim=dim) if kind == "Softmax" else nn.LogSoftmax(dim=dim)], False
    if kind == "PReLU":
        alpha = np.asarray(layer.alpha)
        channels = layer.input_shape[-1]
        if alpha.size == 1:
            module = nn.PReLU(1)
            _set_param(torch, module, "weight", alpha.reshape(1))
        elif alpha.shape == (channels,):
            module = nn.PReLU(channels)
            _set_param(torch, module, "weight", alpha)
        else:
            _refuse_layer(layer, f"slopes of shape {alpha.shape} (PyTorch's PReLU has one "
                          "slope or one per channel)")
        if pending is not None and alpha.size != 1:
            _refuse_layer(layer, "per-feature slopes after a Flatten of convolution features")
        return [module], False
    if kind == "Dropout":
        return [nn.Dropout(layer.rate)], False
    if kind in ("SpatialDropout1D", "SpatialDropout2D"):
        return [(nn.Dropout1d if kind.endswith("1D") else nn.Dropout2d)(layer.rate)], False
    if kind == "Flatten":
        return [nn.Flatten()], False
    if kind in ("MaxPool1D", "MaxPool2D", "AvgPool1D", "AvgPool2D"):
        return [_pool_to_torch(layer, nn)], False
    if kind.startswith("Adaptive"):
        rank = layer._rank
        size = tuple(layer._sizes[2 - rank:])
        cls = getattr(nn, kind[:-2] + f"{rank}d")
        return [cls(size[0] if rank == 1 else size)], False
    if kind == "BatchNorm":
        channels = layer.input_shape[-1]
        cls = nn.BatchNorm2d if len(layer.input_shape) == 3 else nn.BatchNorm1d
        if len(layer.input_shape) > 3:
            _refuse_layer(layer, "inputs of more than two spatial axes")
        if layer.center != layer.scale:
            _refuse_layer(layer, "center and scale differ (PyTorch's affine sets both)")
        module = cls(channels, eps=layer.eps, momentum=layer.momentum, affine=layer.scale,
                     track_running_stats=layer.track_running_stats)
        perm = lambda v: _hwc_to_chw_columns(np.asarray(v), pending)  # noqa: E731
        if layer.scale:
            _set_param(torch, module, "weight", perm(layer.gamma))
            _set_param(torch, module, "bias", perm(layer.beta))
        if layer.track_running_stats:
            module.running_mean = torch.from_numpy(perm(layer.running_mean).copy())
            module.running_var = torch.from_numpy(perm(layer.running_var).copy())
            if layer.num_batches_tracked is not None:
                module.num_batches_tracked.fill_(int(layer.num_batches_tracked[0]))
        return [module], False
    if kind == "LayerNorm":
        if spatial:
            _refuse_layer(layer, "a LayerNorm on channels-last convolution features")
        shape = layer.gamma.shape if getattr(layer, "affine", True) else tuple(
            layer.input_shape[len(layer.input_shape) - layer._trailing(layer.input_shape):])
        has_bias = layer._has_shift()
        module = nn.LayerNorm(tuple(shape), eps=layer.eps, elementwise_affine=layer.affine,
                              bias=has_bias)
        if layer.affine:
            _set_param(torch, module, "weight", layer.gamma)
            if has_bias:
                _set_param(torch, module, "bias", layer.beta)
        return [module], False
    if kind == "RMSNorm":
        module = nn.RMSNorm(layer.input_shape[-1], eps=layer.eps, elementwise_affine=layer.affine)
        if layer.affine:
            _set_param(torch, module, "weight", layer.gamma)
        return [module], False
    if kind == "GroupNorm":
        module = nn.GroupNorm(layer.groups, layer.input_shape[-1], eps=layer.eps,
                              affine=layer.affine)
        if layer.affine:
            _set_param(torch, module, "weight", layer.gamma)
            _set_param(torch, module, "bias", layer.beta)
        return [module], False
    if kind == "Embedding":
        if layer.mask_zero:
            _refuse_layer(layer, "mask_zero=True (a padding mask PyTorch's modules do not "
                          "carry)")
        module = nn.Embedding(layer.input_dim, layer.output_dim)
        _set_param(torch, module, "weight", layer.embeddings)
        return [module], False
    if kind in ("LSTM", "GRU", "SimpleRNN", "Bidirectional"):
        return [_recurrent_to_torch(layer, torch, layers)], False
    if kind == "UpSampling2D":
        return [nn.Upsample(scale_factor=tuple(float(f) for f in layer.size),
                            mode=layer.interpolation,
                            align_corners=layer.align_corners
                            if layer.interpolation == "bilinear" else None)], False
    if kind == "ZeroPadding1D":
        (before, after), = layer._pads
        return [nn.ZeroPad1d((int(before), int(after)))], False
    if kind == "ZeroPadding2D":
        (top, bottom), (left, right) = layer._pads
        return [nn.ZeroPad2d((int(left), int(right), int(top), int(bottom)))], False
    _refuse_layer(layer, "cdl.convert has no PyTorch module for this layer class")


def _pool_to_torch(layer, nn):
    rank = layer._rank
    if layer.padding == "same":
        _refuse_layer(layer, "padding='same' (PyTorch's pools take explicit padding)")
    pool = tuple(layer._pool[2 - rank:])
    strides = tuple(layer._strides[2 - rank:])
    if layer._pads is None:
        pads = (0,) * rank
    else:
        pairs = layer._pads[2 - rank:]
        if any(before != after for before, after in pairs):
            _refuse_layer(layer, "asymmetric padding (PyTorch's pools pad both ends alike)")
        pads = tuple(int(before) for before, _ in pairs)
    one = (lambda v: v[0]) if rank == 1 else tuple
    if layer._max:
        cls = nn.MaxPool1d if rank == 1 else nn.MaxPool2d
        return cls(one(pool), stride=one(strides), padding=one(pads),
                   dilation=one(tuple(layer._dilation[2 - rank:])), ceil_mode=layer.ceil_mode)
    if any(dil != 1 for dil in layer._dilation):
        _refuse_layer(layer, "dilation (PyTorch's average pools have none)")
    kwargs = dict(stride=one(strides), padding=one(pads), ceil_mode=layer.ceil_mode,
                  count_include_pad=bool(layer._include_pad))
    if rank == 1:
        if layer.divisor_override is not None:
            _refuse_layer(layer, "divisor_override (PyTorch's AvgPool1d has none)")
        return nn.AvgPool1d(one(pool), **kwargs)
    return nn.AvgPool2d(one(pool), divisor_override=layer.divisor_override, **kwargs)


def _recurrent_to_torch(layer, torch, layers):
    nn = torch.nn
    bidirectional = isinstance(layer, layers.Bidirectional)
    halves = [layer.forward_layer, layer.backward_layer] if bidirectional else [layer]
    inner = halves[0]
    if bidirectional and layer.merge_mode != "concat":
        _refuse_layer(layer, f"merge_mode={layer.merge_mode!r} (PyTorch's bidirectional "
                      "layers concatenate)")
    kind = type(inner).__name__
    for half in halves:
        if half.mask_value is not None or half.trainable_initial_state or half.return_state:
            _refuse_layer(layer, "mask_value, trainable_initial_state or return_state (no "
                          "PyTorch module option)")
    if inner.go_backwards:
        _refuse_layer(layer, "go_backwards=True on its own (PyTorch runs backwards only in "
                      "a bidirectional layer)")
    options = {}
    if kind == "SimpleRNN":
        if inner.activation not in ("tanh", "relu"):
            _refuse_layer(layer, f"activation={inner.activation!r} (PyTorch's RNN has tanh "
                          "and relu)")
        options["nonlinearity"] = inner.activation
    cls = {"LSTM": nn.LSTM, "GRU": nn.GRU, "SimpleRNN": nn.RNN}[kind]
    features = layer.input_shape[-1] if not isinstance(layer.input_shape, list) \
        else layer.input_shape[0][-1]
    module = cls(features, inner.units, batch_first=True, bidirectional=bidirectional,
                 **options)
    for half, suffix in zip(halves, ("", "_reverse")):
        _set_param(torch, module, f"weight_ih_l0{suffix}", half.input_kernel.T)
        _set_param(torch, module, f"weight_hh_l0{suffix}", half.recurrent_kernel.T)
        _set_param(torch, module, f"bias_ih_l0{suffix}", half.input_bias)
        _set_param(torch, module, f"bias_hh_l0{suffix}", half.recurrent_bias)
    return _output_class()(module, inner.return_sequences)
