"""Graph models against the same graphs written in PyTorch, in float64: outputs,
input gradients, parameter gradients and several training steps (SGD with
momentum, Adam) agree to 1e-10.

Each case builds a ``cdl.Model`` and a ``torch.nn.Module`` whose submodules
carry the names of the cdl layers holding weights, copies cdl's initial
weights into torch (a cdl Dense kernel is ``(in, out)``, torch Linear's
weight its transpose) and compares the two.
"""
import numpy as np
import pytest

import cdl
from cdl import layers, optimizers
from helpers import random_array

torch = pytest.importorskip("torch")

RTOL, ATOL = 1e-10, 1e-12
N = 8
STEPS = 5


def _labels(n, classes, seed):
    return np.random.default_rng(seed).integers(0, classes, n)


class Case:
    """A graph in both frameworks.

    Parameters
    ----------
    build : callable
        ``build() -> cdl.Model`` (float64).
    modules : callable
        ``modules(nn) -> dict`` name -> torch module, one per cdl layer with
        weights, under the same name.
    forward : callable
        ``forward(m, inputs, training) -> list`` of torch outputs in the
        model's output order; ``m`` holds the modules as attributes.
    inputs : dict
        Input name -> per-sample shape.
    losses : dict
        Output name -> ``"cross_entropy"`` (targets: labels of as many
        classes as the output's width) or ``"mse"``; outputs left out are
        not trained.
    loss_weights : dict, optional
    """

    def __init__(self, build, modules, forward, inputs, losses, loss_weights=None):
        self.build, self.modules, self.forward = build, modules, forward
        self.inputs, self.losses, self.loss_weights = inputs, losses, loss_weights or {}


def _torch_module(case, model):
    """The torch module of ``case`` with ``model``'s weights, and its
    parameters aligned with ``model.params`` as ``(tensor, transposed)``."""
    nn = torch.nn
    module = nn.Module()
    for name, sub in case.modules(nn).items():
        setattr(module, name, sub)
    module.double()
    aligned = []
    for layer in model.layers:
        for owner, name in layer.weight_owners():
            sub = getattr(module, owner.name)
            tensor = sub.weight if name in ("kernel", "gamma") else sub.bias
            aligned.append((tensor, name == "kernel"))
    assert len(aligned) == len(model.params)
    with torch.no_grad():
        for (tensor, transposed), value in zip(aligned, model.params):
            value = value.T if transposed else value
            assert tuple(tensor.shape) == value.shape
            tensor.copy_(torch.from_numpy(np.ascontiguousarray(value)))
    return module, aligned


def _data(case, n=N, seed=0):
    return {name: random_array((n,) + shape, seed=seed + i)
            for i, (name, shape) in enumerate(case.inputs.items())}


def _targets(case, model, n=N, seed=0):
    widths = dict(zip(model.output_names, [s[-1] for s in (
        model.output_shape if isinstance(model.output_shape, list) else [model.output_shape])]))
    return {name: _labels(n, widths[name], seed + 50 + i) if loss == "cross_entropy"
            else random_array((n, widths[name]), seed=seed + 50 + i)
            for i, (name, loss) in enumerate(case.losses.items())}


def _torch_loss(case, model, outs, targets, sample_weight=None):
    F = torch.nn.functional
    total = 0.0
    for name, out in zip(model.output_names, outs):
        if name not in case.losses:
            continue
        w = None if sample_weight is None or name not in sample_weight else \
            torch.from_numpy(sample_weight[name])
        if case.losses[name] == "cross_entropy":
            per = F.cross_entropy(out, torch.from_numpy(targets[name]), reduction="none")
        else:
            per = ((out - torch.from_numpy(targets[name])) ** 2).mean(dim=1)
        per = per if w is None else per * w
        total = total + case.loss_weights.get(name, 1.0) * per.mean()
    return total


def _as_list(value):
    return value if isinstance(value, list) else [value]


# --- the graphs ----------------------------------------------------------------------


def _siamese():
    a, b = cdl.Input(shape=(5,), name="a"), cdl.Input(shape=(5,), name="b")
    encoder = layers.Dense(4, activation="tanh", name="encoder")
    diff = layers.Subtract()([encoder(a), encoder(b)])
    return cdl.Model([a, b], layers.Dense(3, name="out")(diff), seed=1, dtype="float64")


SIAMESE = Case(
    _siamese,
    lambda nn: {"encoder": nn.Linear(5, 4), "out": nn.Linear(4, 3)},
    lambda m, x, training: [m.out(torch.tanh(m.encoder(x["a"])) - torch.tanh(m.encoder(x["b"])))],
    {"a": (5,), "b": (5,)}, {"out": "cross_entropy"})


def _diamond():
    x = cdl.Input(shape=(6,), name="x")
    h = layers.Dense(5, activation="tanh", name="stem")(x)
    joined = layers.Add()([layers.Dense(4, activation="sigmoid", name="left")(h),
                           layers.Dense(4, activation="tanh", name="right")(h)])
    return cdl.Model(x, layers.Dense(2, name="out")(joined), seed=2, dtype="float64")


def _diamond_torch(m, x, training):
    h = torch.tanh(m.stem(x["x"]))
    return [m.out(torch.sigmoid(m.left(h)) + torch.tanh(m.right(h)))]


DIAMOND = Case(
    _diamond,
    lambda nn: {"stem": nn.Linear(6, 5), "left": nn.Linear(5, 4), "right": nn.Linear(5, 4),
                "out": nn.Linear(4, 2)},
    _diamond_torch, {"x": (6,)}, {"out": "mse"})


def _skip():
    x = cdl.Input(shape=(4,), name="x")
    first = h = layers.Dense(6, activation="tanh", name="d1")(x)
    for i in range(2, 5):
        h = layers.Dense(6, activation="tanh", name=f"d{i}")(h)
    return cdl.Model(x, layers.Dense(3, name="out")(layers.Add()([first, h])), seed=3,
                     dtype="float64")


def _skip_torch(m, x, training):
    first = h = torch.tanh(m.d1(x["x"]))
    for sub in (m.d2, m.d3, m.d4):
        h = torch.tanh(sub(h))
    return [m.out(first + h)]


SKIP = Case(
    _skip,
    lambda nn: {"d1": nn.Linear(4, 6), "d2": nn.Linear(6, 6), "d3": nn.Linear(6, 6),
                "d4": nn.Linear(6, 6), "out": nn.Linear(6, 3)},
    _skip_torch, {"x": (4,)}, {"out": "cross_entropy"})


def _mixer():
    """Every merge layer in one graph of three inputs."""
    a, b, c = (cdl.Input(shape=(3,), name=n) for n in "abc")
    da = layers.Dense(4, activation="tanh", name="da")(a)
    db = layers.Dense(4, activation="sigmoid", name="db")(b)
    dc = layers.Dense(4, activation="tanh", name="dc")(c)
    prod = layers.Multiply()([da, db, dc])
    top = layers.Maximum()([da, db])
    low = layers.Minimum()([db, dc, da])
    mean = layers.Average()([prod, top, low])
    diff = layers.Subtract()([mean, dc])
    cos = layers.Dot(axes=1, normalize=True)([da, dc])
    dot = layers.Dot(axes=1)([db, diff])
    joined = layers.Concatenate()([diff, cos, dot, c])
    return cdl.Model([a, b, c], layers.Dense(2, name="out")(joined), seed=4, dtype="float64")


def _mixer_torch(m, x, training):
    F = torch.nn.functional
    da, db, dc = torch.tanh(m.da(x["a"])), torch.sigmoid(m.db(x["b"])), torch.tanh(m.dc(x["c"]))
    prod = da * db * dc
    top = torch.maximum(da, db)
    low = torch.minimum(torch.minimum(db, dc), da)
    diff = (prod + top + low) / 3 - dc
    cos = (F.normalize(da, dim=1, eps=1e-7) * F.normalize(dc, dim=1, eps=1e-7)).sum(1, True)
    dot = (db * diff).sum(1, keepdim=True)
    return [m.out(torch.cat([diff, cos, dot, x["c"]], dim=1))]


MIXER = Case(
    _mixer,
    lambda nn: {"da": nn.Linear(3, 4), "db": nn.Linear(3, 4), "dc": nn.Linear(3, 4),
                "out": nn.Linear(9, 2)},
    _mixer_torch, {"a": (3,), "b": (3,), "c": (3,)}, {"out": "mse"})


def _two_heads():
    """The issue's example, smaller: two inputs, a shared layer, two heads."""
    a, b = cdl.Input(shape=(5,), name="a"), cdl.Input(shape=(3,), name="b")
    shared = layers.Dense(4, activation="relu", name="shared")
    h = layers.Concatenate()([shared(layers.Dense(3, name="pre")(a)), shared(b)])
    h = layers.Add()([layers.Dense(6, name="left")(h), layers.Dense(6, name="right")(h)])
    cls = layers.Dense(3, name="cls")(h)
    reg = layers.Dense(2, name="reg")(layers.Dense(4, activation="tanh", name="reg_hidden")(h))
    return cdl.Model([a, b], [cls, reg], seed=5, dtype="float64")


def _two_heads_modules(nn):
    return {"pre": nn.Linear(5, 3), "shared": nn.Linear(3, 4), "left": nn.Linear(8, 6),
            "right": nn.Linear(8, 6), "cls": nn.Linear(6, 3), "reg_hidden": nn.Linear(6, 4),
            "reg": nn.Linear(4, 2)}


def _two_heads_torch(m, x, training):
    h = torch.cat([torch.relu(m.shared(m.pre(x["a"]))), torch.relu(m.shared(x["b"]))], dim=1)
    h = m.left(h) + m.right(h)
    return [m.cls(h), m.reg(torch.tanh(m.reg_hidden(h)))]


TWO_HEADS = Case(_two_heads, _two_heads_modules, _two_heads_torch, {"a": (5,), "b": (3,)},
                 {"cls": "cross_entropy", "reg": "mse"}, {"cls": 1.0, "reg": 0.5})
#: The same graph with the regression head untrained (no loss).
ONE_HEAD_TRAINED = Case(_two_heads, _two_heads_modules, _two_heads_torch,
                        {"a": (5,), "b": (3,)}, {"cls": "cross_entropy"})


def _shared_norm():
    a, b = cdl.Input(shape=(4,), name="a"), cdl.Input(shape=(4,), name="b")
    norm = layers.BatchNorm(name="norm")
    left = norm(layers.Dense(5, activation="tanh", name="left")(a))
    right = norm(layers.Dense(5, activation="sigmoid", name="right")(b))
    return cdl.Model([a, b], layers.Dense(2, name="out")(layers.Multiply()([left, right])),
                     seed=6, dtype="float64")


def _shared_norm_torch(m, x, training):
    m.train(training)
    left = m.norm(torch.tanh(m.left(x["a"])))
    right = m.norm(torch.sigmoid(m.right(x["b"])))
    return [m.out(left * right)]


SHARED_NORM = Case(
    _shared_norm,
    lambda nn: {"left": nn.Linear(4, 5), "right": nn.Linear(4, 5),
                "norm": nn.BatchNorm1d(5, momentum=0.1, eps=1e-5), "out": nn.Linear(5, 2)},
    _shared_norm_torch, {"a": (4,), "b": (4,)}, {"out": "mse"})

CASES = {"siamese": SIAMESE, "diamond": DIAMOND, "skip": SKIP, "merges": MIXER,
         "two_heads": TWO_HEADS, "one_head_trained": ONE_HEAD_TRAINED,
         "shared_batchnorm": SHARED_NORM}


def _close(actual, expected, what):
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL, err_msg=what)


# --- tests ----------------------------------------------------------------------------


@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
@pytest.mark.parametrize("name", list(CASES))
def test_outputs_and_gradients_match_torch(name, training, torch64):
    case = CASES[name]
    model = case.build()
    module, aligned = _torch_module(case, model)
    x = _data(case, seed=1)
    outs = _as_list(model.forward(x, training=training))
    tx = {k: torch.from_numpy(v.copy()).requires_grad_(True) for k, v in x.items()}
    touts = case.forward(module, tx, training)
    assert len(outs) == len(touts) == len(model.output_names)
    for out, tout, output in zip(outs, touts, model.output_names):
        _close(out, tout.detach().numpy(), f"output {output}")

    # Gradients of sum(out_k * R_k) over the outputs.
    rng = np.random.default_rng(2)
    projections = [rng.standard_normal(out.shape) for out in outs]
    dx = _as_list(model.backward(projections if len(outs) > 1 else projections[0]))
    total = sum((t * torch.from_numpy(r)).sum() for t, r in zip(touts, projections))
    total.backward()
    for grad, input_name in zip(dx, model.input_names):
        _close(grad, tx[input_name].grad.numpy(), f"gradient of input {input_name}")
    for grad, (tensor, transposed) in zip(model.grads, aligned):
        expected = tensor.grad.numpy()
        _close(grad, expected.T if transposed else expected, "parameter gradient")


def test_loss_of_one_output_only_trains_its_branch(torch64):
    case = ONE_HEAD_TRAINED
    model = case.build()
    module, aligned = _torch_module(case, model)
    model.compile("sgd", loss=case.losses)
    x, y = _data(case, seed=3), _targets(case, model, seed=3)
    outs = model.forward(x, training=True)
    loss = model.loss.forward(outs, [y["cls"], None])
    model.backward(model.loss.backward())
    touts = case.forward(module, {k: torch.from_numpy(v) for k, v in x.items()}, True)
    tloss = _torch_loss(case, model, touts, y)
    tloss.backward()
    assert loss == pytest.approx(tloss.item(), rel=RTOL)
    names = [f"{o.name}.{n}" for layer in model.layers for o, n in layer.weight_owners()]
    for name, grad, (tensor, transposed) in zip(names, model.grads, aligned):
        # torch leaves .grad None for parameters the loss does not reach.
        expected = tensor.grad.numpy() if tensor.grad is not None else \
            np.zeros(tuple(tensor.shape))
        _close(grad, expected.T if transposed else expected, name)
        if name.startswith("reg"):
            assert not grad.any(), name


OPTIMIZERS = {
    "sgd-momentum": (lambda: optimizers.SGD(lr=0.05, momentum=0.9),
                     lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9,
                                                    foreach=False)),
    "sgd-nesterov": (lambda: optimizers.SGD(lr=0.05, momentum=0.8, nesterov=True),
                     lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.8,
                                                    nesterov=True, foreach=False)),
    "adam": (lambda: optimizers.Adam(lr=0.01),
             lambda params: torch.optim.Adam(params, lr=0.01, foreach=False)),
}


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("name", list(CASES))
def test_training_steps_match_torch(name, optimizer, torch64):
    case = CASES[name]
    model = case.build()
    module, aligned = _torch_module(case, model)
    make_cdl, make_torch = OPTIMIZERS[optimizer]
    model.compile(make_cdl(), loss=case.losses, loss_weights=case.loss_weights or None)
    topt = make_torch(list(module.parameters()))
    for step in range(STEPS):
        x, y = _data(case, seed=10 * step), _targets(case, model, seed=10 * step)
        # Per-output sample weights on one output of the two-head graph.
        weights = {"cls": random_array(N, seed=step, low=0.0, high=2.0)} \
            if name == "two_heads" else None
        loss = model.train_step(x, y, sample_weight=weights)
        topt.zero_grad()
        touts = case.forward(module, {k: torch.from_numpy(v) for k, v in x.items()}, True)
        tloss = _torch_loss(case, model, touts, y, weights)
        tloss.backward()
        topt.step()
        assert loss == pytest.approx(tloss.item(), rel=RTOL), f"loss of step {step}"
        for value, (tensor, transposed) in zip(model.params, aligned):
            expected = tensor.detach().numpy()
            _close(value, expected.T if transposed else expected, f"weights after step {step}")
    if name == "shared_batchnorm":
        # Both calls updated the one set of running statistics, in call order.
        norm = next(layer for layer in model.layers if layer.name == "norm")
        _close(norm.running_mean, module.norm.running_mean.numpy(), "running mean")
        _close(norm.running_var, module.norm.running_var.numpy(), "running variance")
    # Inference after training (the batch norm's running statistics).
    x = _data(case, seed=99)
    touts = case.forward(module, {k: torch.from_numpy(v) for k, v in x.items()}, False)
    for out, tout in zip(_as_list(model.predict(x)), touts):
        _close(out, tout.detach().numpy(), "predictions after training")
