"""Scenarios that tests/training/test_distributed.py runs under ``mpiexec -n P``.

``python distributed_worker.py SCENARIO OUT_DIR [ARGS...]``: each process
writes what the test compares into ``OUT_DIR/<scenario>-rank<r>.npz`` (or
prints it). The single-process references are computed by the test itself,
with the model and data built by the same functions, imported from here.
"""
import os
import sys
import time

import numpy as np

import cdl
from cdl import callbacks, layers, optimizers, regularizers


def classification_data(n=67, features=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1.0)
    return x, y


def dense_model(optimizer, dropout=True, seed=1, loss="cross_entropy", penalty=None,
                **compile_kwargs):
    stack = [layers.Dense(16, activation="tanh",
                          kernel_regularizer=None if penalty is None else regularizers.L2(penalty))]
    if dropout:
        stack.append(layers.Dropout(0.3))
    stack += [layers.Dense(8, activation="relu")]
    if dropout:
        stack.append(layers.Dropout(0.2))
    stack.append(layers.Dense(3))
    model = cdl.Sequential(stack, input_shape=(6,), seed=seed, dtype="float64")
    model.compile(optimizer, loss, metrics=["accuracy", "f1"], **compile_kwargs)
    return model


def conv_model(seed=2):
    model = cdl.Sequential([
        layers.Conv2D(3, 3, activation="relu"), layers.SpatialDropout2D(0.3),
        layers.Flatten(), layers.GaussianNoise(0.1), layers.Dense(3)],
        input_shape=(6, 6, 1), seed=seed, dtype="float64")
    model.compile(optimizers.Adam(lr=0.01), "cross_entropy", metrics=["accuracy"])
    return model


def image_data(n=37, seed=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6, 6, 1))
    y = (x[:, :3].mean(axis=(1, 2, 3)) > 0).astype(np.int64)
    return x, y


def graph_model(optimizer, seed=5, dropout=True, loss=None, metrics=None, untrained=False):
    """Two inputs, two outputs, a layer shared by both branches, a merge, a
    skip connection and dropout; ``untrained`` leaves the regression
    output without a loss."""
    a = cdl.Input(shape=(6,), name="a")
    b = cdl.Input(shape=(4,), name="b")
    shared = layers.Dense(8, activation="tanh", name="shared")
    ha = shared(layers.Dense(8, name="pre_a")(a))
    hb = shared(layers.Dense(8, name="pre_b")(b))
    if dropout:
        hb = layers.Dropout(0.25, name="drop_b")(hb)
    h = layers.Concatenate(name="join")([ha, hb])
    h = layers.Add(name="skip")([layers.Dense(8, activation="relu", name="left")(h),
                                 layers.Dense(8, name="right")(h)])
    if dropout:
        h = layers.Dropout(0.3, name="drop")(h)
    cls = layers.Dense(3, name="cls")(h)
    reg = layers.Dense(1, name="reg")(h)
    model = cdl.Model([a, b], [cls, reg], seed=seed, dtype="float64")
    if loss is None:
        loss = {"cls": "cross_entropy"} if untrained else \
            {"cls": "cross_entropy", "reg": "mse"}
    model.compile(optimizer, loss=loss, loss_weights=None if untrained else {"reg": 0.5},
                  metrics=metrics or {"cls": ["accuracy", "f1"], "reg": ["mae"]})
    return model


def graph_data(n=67, seed=6, as_list=False):
    """Inputs ``a`` and ``b`` and targets ``cls`` (labels) and ``reg``, as dicts
    (or lists in the model's order)."""
    rng = np.random.default_rng(seed)
    xa, xb = rng.normal(size=(n, 6)), rng.normal(size=(n, 4))
    y_cls = (xa[:, 0] + xb[:, 1] > 0).astype(np.int64) + (xa[:, 2] > 1.0)
    y_reg = (xa[:, :2].sum(axis=1) - xb[:, 0])[:, None]
    if as_list:
        return [xa, xb], [y_cls, y_reg]
    return {"a": xa, "b": xb}, {"cls": y_cls, "reg": y_reg}


def samples(x):
    """The number of samples of array, list or dict data."""
    if isinstance(x, dict):
        x = next(iter(x.values()))
    elif isinstance(x, list):
        x = x[0]
    return len(x)


OPTIMIZERS = {
    "sgd": lambda: optimizers.SGD(lr=0.1, momentum=0.9, nesterov=True),
    "adam": lambda: optimizers.Adam(lr=0.01),
}

# name -> (model factory, data factory, fit keyword arguments)
CASES = {
    "sgd-dropout": (lambda: dense_model(OPTIMIZERS["sgd"]()), classification_data,
                    dict(epochs=6, batch_size=16, validation_split=0.2)),
    "adam-dropout": (lambda: dense_model(OPTIMIZERS["adam"]()), classification_data,
                     dict(epochs=6, batch_size=16, validation_split=0.2)),
    "adam-plain": (lambda: dense_model(OPTIMIZERS["adam"](), dropout=False, penalty=1e-3,
                                             clip_norm=1.0),
                   classification_data, dict(epochs=6, batch_size=10)),
    "sgd-layerwise": (lambda: _layerwise(dense_model(OPTIMIZERS["sgd"]())),
                      classification_data, dict(epochs=4, batch_size=7, shuffle=False)),
    "class-weights": (lambda: dense_model(OPTIMIZERS["adam"](), dropout=False,
                                          loss=cdl.losses.CrossEntropy(weight=[1.0, 3.0, 0.5])),
                      classification_data,
                      dict(epochs=4, batch_size=12, sample_weight="ramp")),
    "one-sample-last-batch": (lambda: dense_model(OPTIMIZERS["adam"]()),
                              lambda: classification_data(n=49), dict(epochs=4, batch_size=16)),
    "conv-noise": (conv_model, image_data, dict(epochs=3, batch_size=8)),
    "long-adam": (lambda: dense_model(OPTIMIZERS["adam"]()),
                  lambda: classification_data(n=301), dict(epochs=20, batch_size=32)),
    # Graph models: dicts by name, per-output losses, weights and metrics.
    "graph-dropout": (lambda: graph_model(OPTIMIZERS["adam"]()), graph_data,
                      dict(epochs=5, batch_size=16, validation_split=0.2,
                           sample_weight="ramp-per-output")),
    "graph-untrained-output": (
        lambda: graph_model(OPTIMIZERS["sgd"](), untrained=True, metrics={"cls": ["accuracy"]}),
        lambda: graph_data(n=49, as_list=True),
        dict(epochs=4, batch_size=16, shuffle=False, sample_weight="ramp")),
}


def _layerwise(model):
    model.use_fused_step = False
    return model


def fit_kwargs(case, n):
    kwargs = dict(CASES[case][2])
    if kwargs.get("sample_weight") == "ramp":
        kwargs["sample_weight"] = np.linspace(0.5, 1.5, n)
    elif kwargs.get("sample_weight") == "ramp-per-output":
        kwargs["sample_weight"] = {"cls": np.linspace(0.5, 1.5, n),
                                   "reg": np.linspace(2.0, 0.0, n)}
    return kwargs


def train(case, distributed, x=None, y=None):
    """Train ``case`` once; returns (model, history)."""
    make_model, make_data, _ = CASES[case]
    if x is None:
        x, y = make_data()
    model = make_model()
    history = model.fit(x, y, verbose=0, distributed=distributed,
                        **fit_kwargs(case, samples(x)))
    return model, history


def _save(out_dir, name, rank, *params, **arrays):
    np.savez(os.path.join(out_dir, f"{name}-rank{rank}.npz"), *params, **arrays)


def _report(out_dir, rank, text):
    with open(os.path.join(out_dir, f"report-rank{rank}.txt"), "w") as f:
        f.write(text)


def _history_arrays(history):
    return {f"history_{k}": np.array(v) for k, v in history.history.items()}


def scenario_equivalence(out_dir, case):
    rank = cdl.distributed.rank()
    model, history = train(case, True)
    _save(out_dir, case, rank, *model.params, **_history_arrays(history))


def scenario_memmap(out_dir):
    """The data as .npy files memory-mapped by every process."""
    rank = cdl.distributed.rank()
    x, y = classification_data(n=83)
    if rank == 0:
        np.save(os.path.join(out_dir, "x.npy"), x)
        np.save(os.path.join(out_dir, "y.npy"), y)
    cdl.distributed.barrier()
    xm = np.load(os.path.join(out_dir, "x.npy"), mmap_mode="r")
    ym = np.load(os.path.join(out_dir, "y.npy"), mmap_mode="r")
    model, history = train("adam-dropout", True, xm, ym)
    results = model.evaluate(xm[:41], ym[:41], batch_size=6, distributed=True)
    _save(out_dir, "memmap", rank, *model.params, **_history_arrays(history),
          **{f"eval_{k}": np.array(v) for k, v in results.items()})


def graph_evaluation(x, y, distributed):
    """A trained graph model's evaluation, with weights per output."""
    model = graph_model(OPTIMIZERS["adam"]())
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, distributed=distributed)
    n = samples(x)
    weights = {"cls": np.linspace(0.0, 2.0, n), "reg": None}
    return model, model.evaluate(x, y, batch_size=5, sample_weight=weights,
                                 distributed=distributed)


def scenario_graph_memmap(out_dir):
    """A graph model's inputs and targets as .npy files memory-mapped by every
    process: fit, and evaluate with weights per output."""
    rank = cdl.distributed.rank()
    x, y = graph_data(n=59)
    if rank == 0:
        for name, value in {**x, **y}.items():
            np.save(os.path.join(out_dir, f"{name}.npy"), value)
    cdl.distributed.barrier()

    def mapped(names):
        return {k: np.load(os.path.join(out_dir, f"{k}.npy"), mmap_mode="r") for k in names}

    model, results = graph_evaluation(mapped(x), mapped(y), True)
    _save(out_dir, "graph-memmap", rank, *model.params,
          **{f"eval_{k}": np.array(v) for k, v in results.items()})


def scenario_graph_iterable(out_dir):
    """Each process yields its own part of every step's batch, as dicts."""
    rank = cdl.distributed.rank()
    x, y = graph_data(n=60)

    def parts():
        for step in range(4):
            rows = slice(step * 15, (step + 1) * 15)
            part = cdl.distributed.shard(15)
            yield ({k: v[rows][part] for k, v in x.items()},
                   {k: v[rows][part] for k, v in y.items()})

    model = graph_model(OPTIMIZERS["adam"]())
    history = model.fit(parts(), steps_per_epoch=4, epochs=1, verbose=0, distributed=True)
    _save(out_dir, "graph-iterable", rank, *model.params, **_history_arrays(history))


def scenario_graph_backup(out_dir):
    """A graph model's run interrupted mid-epoch and resumed from its backup,
    per-output metrics included."""
    rank = cdl.distributed.rank()
    x, y = graph_data(n=70)
    backup_dir = os.path.join(out_dir, "graph-backup")
    first = graph_model(OPTIMIZERS["adam"]())
    first.fit(x, y, epochs=3, batch_size=16, verbose=0, max_steps=7, distributed=True,
              callbacks=[callbacks.BackupAndRestore(backup_dir, save_freq=2,
                                                    delete_checkpoint=False)])
    resumed = graph_model(OPTIMIZERS["adam"]())
    history = resumed.fit(x, y, epochs=3, batch_size=16, verbose=0, distributed=True,
                          callbacks=[callbacks.BackupAndRestore(backup_dir, save_freq=2)])
    _save(out_dir, "graph-backup", rank, *resumed.params, **_history_arrays(history))


def scenario_graph_refusals(out_dir):
    """What distributed training of a graph model refuses, on every rank,
    before any callback runs."""
    rank = cdl.distributed.rank()
    x, y = graph_data(n=32)
    lines = []

    class Started(callbacks.Callback):
        def on_train_begin(self, logs=None):
            lines.append("on_train_begin ran")

    class Unmergeable(cdl.metrics.Metric):
        def reset(self):
            self.seen = 0

        def update(self, y_true, y_pred, sample_weight=None):
            self.seen += len(y_true)

        def result(self):
            return self.seen

    weighted = graph_model(OPTIMIZERS["adam"](), loss={
        "cls": cdl.losses.CrossEntropy(weight=[1.0, 2.0, 0.5]), "reg": "mse"})
    unmergeable = graph_model(OPTIMIZERS["adam"](),
                              metrics={"cls": [Unmergeable(name="unmergeable")]})
    for model in (weighted, unmergeable):
        try:
            model.fit(x, y, epochs=1, batch_size=8, verbose=0, distributed=True,
                      callbacks=[Started()])
        except (ValueError, TypeError) as err:
            lines.append(f"{type(err).__name__}: {err}")
    # evaluate splits nothing by class weights: it takes the weighted loss.
    results = weighted.evaluate(x, y, distributed=True)
    lines.append(f"evaluate: {sorted(results)}")
    _report(out_dir, rank, "\n".join(lines))


def scenario_iterable(out_dir):
    """Each process yields its own part of every step's batch."""
    comm_rank, comm_size = cdl.distributed.rank(), cdl.distributed.size()
    x, y = classification_data(n=90)
    steps, batch = 5, 18

    def parts():
        for step in range(steps):
            rows = slice(step * batch, (step + 1) * batch)
            xb, yb = x[rows], y[rows]
            part = cdl.distributed.shard(len(xb))
            yield xb[part], yb[part]

    model = dense_model(OPTIMIZERS["adam"]())
    history = model.fit(parts(), steps_per_epoch=steps, epochs=1, verbose=0, distributed=True)
    _save(out_dir, "iterable", comm_rank, *model.params, **_history_arrays(history),
          size=np.array(comm_size))


def scenario_custom_loop(out_dir):
    """broadcast_parameters and average_gradients around explicit steps."""
    rank = cdl.distributed.rank()
    x, y = classification_data(n=64)
    model = dense_model(OPTIMIZERS["sgd"](), dropout=False, seed=rank + 10)  # differs per rank
    cdl.distributed.broadcast_parameters(model)
    for step in range(8):
        rows = slice(step * 8, (step + 1) * 8)
        part = cdl.distributed.shard(8)
        xb, yb = x[rows][part], y[rows][part]
        out = model.forward(xb, training=True)
        model.loss.forward(out, yb)
        model.backward(model.loss.backward())
        cdl.distributed.average_gradients(model, weight=len(xb))
        model.optimizer.step(model.params, model.grads)
    _save(out_dir, "custom", rank, *model.params)


def scenario_callbacks(out_dir):
    """Printing and files from rank 0 only; the backup resumes on every rank."""
    rank = cdl.distributed.rank()
    x, y = classification_data(n=120)
    model = dense_model(OPTIMIZERS["adam"]())
    checkpoint = callbacks.ModelCheckpoint(os.path.join(out_dir, f"ckpt-{rank}.cdl"),
                                           monitor="loss")
    log = callbacks.CSVLogger(os.path.join(out_dir, f"log-{rank}.csv"))
    model.fit(x, y, epochs=2, batch_size=16, verbose=2, callbacks=[checkpoint, log],
              distributed=True)
    # Interrupted run: backups every 3 steps, stopped after 11 steps.
    backup_dir = os.path.join(out_dir, "backup")
    first = dense_model(OPTIMIZERS["adam"]())
    first.fit(x, y, epochs=3, batch_size=16, verbose=0, max_steps=11, distributed=True,
              callbacks=[callbacks.BackupAndRestore(backup_dir, save_freq=3,
                                                    delete_checkpoint=False)])
    resumed = dense_model(OPTIMIZERS["adam"]())
    history = resumed.fit(x, y, epochs=3, batch_size=16, verbose=0, distributed=True,
                          callbacks=[callbacks.BackupAndRestore(backup_dir, save_freq=3)])
    _save(out_dir, "resumed", rank, *resumed.params, **_history_arrays(history))


def scenario_tensorboard(out_dir):
    """TensorBoard event files from rank 0 only (each rank is given its own folder)."""
    rank = cdl.distributed.rank()
    x, y = classification_data(n=120)
    model = dense_model(OPTIMIZERS["adam"]())
    board = callbacks.TensorBoard(os.path.join(out_dir, f"tb-{rank}"), update_freq=1,
                                  histogram_freq=1, write_graph=True)
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0, validation_split=0.25,
                        distributed=True, callbacks=[board])
    _save(out_dir, "tensorboard", rank, *model.params, **_history_arrays(history))


def scenario_bad_part(out_dir):
    """NaN in the rows that only rank 1 reads of a memory-mapped file."""
    rank = cdl.distributed.rank()
    x, y = classification_data(n=64)
    x[40, 2] = np.nan          # step 3 (rows 32..47), second half: rank 1's part
    if rank == 0:
        np.save(os.path.join(out_dir, "bad.npy"), x)
    cdl.distributed.barrier()
    xm = np.load(os.path.join(out_dir, "bad.npy"), mmap_mode="r")
    model = dense_model(OPTIMIZERS["adam"]())
    try:
        model.fit(xm, y, epochs=1, batch_size=16, shuffle=False, verbose=0, distributed=True)
    except cdl.distributed.DistributedError as err:
        _report(out_dir, rank, f"caught: {err}")


def scenario_bad_arguments(out_dir):
    """Rank 1 alone passes bad data: every rank raises, none hangs."""
    rank = cdl.distributed.rank()
    x, y = classification_data(n=32)
    if rank == 1:
        x[3, 0] = np.inf
    model = dense_model(OPTIMIZERS["adam"]())
    try:
        model.fit(x, y, epochs=1, batch_size=16, verbose=0, distributed=True)
    except (ValueError, cdl.distributed.DistributedError) as err:
        _report(out_dir, rank, f"caught {type(err).__name__}: {err}")


def scenario_uncaught(out_dir):
    """Rank 1 fails outside fit while rank 0 waits for it."""
    cdl.distributed.init()
    rank = cdl.distributed.rank()
    if rank == 1:
        raise RuntimeError("rank 1 could not load its data")
    cdl.distributed.barrier()
    print("rank 0 passed the barrier", flush=True)


def scenario_timeout(out_dir):
    """Rank 1 never arrives; rank 0 gives up after the time limit."""
    cdl.distributed.init(timeout=2.0, abort_on_exception=False)
    rank = cdl.distributed.rank()
    x, y = classification_data(n=32)
    if rank == 1:
        time.sleep(60)
    model = dense_model(OPTIMIZERS["adam"]())
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, distributed=True)


def scenario_callback_failure(out_dir):
    """A callback that fails on rank 0 only: the job ends, nobody waits."""
    class FailOnRankZero(callbacks.Callback):
        rank_zero_only = True

        def on_epoch_end(self, epoch, logs=None):
            raise OSError("disk full")

    x, y = classification_data(n=64)
    model = dense_model(OPTIMIZERS["adam"]())
    model.fit(x, y, epochs=3, batch_size=16, verbose=0, distributed=True,
              callbacks=[FailOnRankZero()])


def main():
    scenario, out_dir = sys.argv[1], sys.argv[2]
    args = sys.argv[3:]
    globals()[f"scenario_{scenario}"](out_dir, *args)


if __name__ == "__main__":
    main()
