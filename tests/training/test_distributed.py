"""Data-parallel training over MPI: the distributed cases run under
``mpiexec -n 2`` (and 3) in subprocesses, and are compared with one-process
training done here. Skipped, with the reason, without the ``mpi`` extra."""
import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import cdl
from cdl import _sharding, metrics
from cdl.distributed import DataParallel, DistributedError

import distributed_worker as worker
from helpers import ROOT

WORKER = os.path.join(os.path.dirname(__file__), "distributed_worker.py")


def _mpiexec():
    """The mpiexec next to this Python (the mpich wheel's) or on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return beside if os.path.exists(beside) else shutil.which("mpiexec")


needs_mpi = pytest.mark.skipif(
    importlib.util.find_spec("mpi4py") is None or _mpiexec() is None,
    reason='the mpi extra is not installed (pip install "cdl[mpi]"): no mpi4py or mpiexec')


def run_mpi(processes, scenario, out_dir, *args, timeout=120, check=True):
    """Run a worker scenario in ``processes`` MPI processes."""
    result = subprocess.run(
        [_mpiexec(), "-n", str(processes), sys.executable, WORKER, scenario, str(out_dir),
         *args], capture_output=True, text=True, timeout=timeout, cwd=out_dir)
    if check and result.returncode != 0:
        raise AssertionError(f"mpiexec failed ({result.returncode}):\n{result.stdout}\n"
                             f"{result.stderr}")
    return result


def load(out_dir, name, rank):
    with np.load(os.path.join(out_dir, f"{name}-rank{rank}.npz")) as data:
        params = [data[f"arr_{i}"] for i in range(sum(k.startswith("arr_") for k in data))]
        history = {k[len("history_"):]: data[k] for k in data if k.startswith("history_")}
        extra = {k: data[k] for k in data if not k.startswith(("arr_", "history_"))}
    return params, history, extra


def reports(out_dir, processes=2):
    """What each process's scenario reported, by rank."""
    texts = []
    for rank in range(processes):
        with open(os.path.join(out_dir, f"report-rank{rank}.txt")) as f:
            texts.append(f.read())
    return texts


def assert_same_training(params, history, model, reference_history, tol=1e-10):
    assert len(params) == len(model.params)
    for got, want in zip(params, model.params):
        np.testing.assert_allclose(got, want, rtol=0, atol=tol)
    assert set(history) == set(reference_history.history)
    for key, values in reference_history.history.items():
        np.testing.assert_allclose(history[key], values, rtol=0, atol=tol, err_msg=key)


# --- P processes train the model one process trains -------------------------

@needs_mpi
@pytest.mark.parametrize("processes", [2, 3])
@pytest.mark.parametrize("case", sorted(worker.CASES))
def test_processes_train_the_one_process_model(tmp_path, case, processes):
    if processes == 3 and case not in ("adam-dropout", "one-sample-last-batch", "conv-noise",
                                       "graph-untrained-output"):
        pytest.skip("three processes are checked on a few cases (two cores here)")
    run_mpi(processes, "equivalence", tmp_path, case)
    model, history = worker.train(case, False)
    first = load(tmp_path, case, 0)
    assert_same_training(first[0], first[1], model, history)
    for rank in range(1, processes):
        params, hist, _ = load(tmp_path, case, rank)
        for got, want in zip(params, first[0]):
            np.testing.assert_array_equal(got, want)   # replicas agree bit for bit
        for key in hist:
            np.testing.assert_array_equal(hist[key], first[1][key])


@needs_mpi
def test_memory_mapped_data_trains_the_same(tmp_path):
    run_mpi(2, "memmap", tmp_path)
    x, y = worker.classification_data(n=83)
    model, history = worker.train("adam-dropout", False, x, y)
    expected = model.evaluate(x[:41], y[:41])
    for rank in range(2):
        params, hist, extra = load(tmp_path, "memmap", rank)
        assert_same_training(params, hist, model, history)
        assert {k[len("eval_"):]: float(v) for k, v in extra.items()} == pytest.approx(
            expected, rel=1e-12, abs=1e-12)


@needs_mpi
def test_iterables_yield_each_process_part(tmp_path):
    run_mpi(2, "iterable", tmp_path)
    x, y = worker.classification_data(n=90)
    model = worker.dense_model(worker.OPTIMIZERS["adam"]())

    def whole_batches():
        for step in range(5):
            yield x[step * 18:(step + 1) * 18], y[step * 18:(step + 1) * 18]

    history = model.fit(whole_batches(), steps_per_epoch=5, epochs=1, verbose=0)
    for rank in range(2):
        params, hist, _ = load(tmp_path, "iterable", rank)
        assert_same_training(params, hist, model, history)


# --- graph models -------------------------------------------------------------

def test_graph_cases_train_what_they_claim():
    """The graph cases compared above: two inputs, two outputs, a shared layer
    called twice, dropout, per-output losses, weights and metrics."""
    model, history = worker.train("graph-dropout", False)
    assert model.input_names == ["a", "b"] and model.output_names == ["cls", "reg"]
    steps = [node.layer.name for node, _ in model._steps]
    assert steps.count("shared") == 2 and "drop" in steps and "drop_b" in steps
    assert {"loss", "cls_loss", "reg_loss", "cls_accuracy", "cls_f1", "reg_mae",
            "val_loss", "val_cls_accuracy", "val_reg_mae"} <= set(history.history)
    untrained, history = worker.train("graph-untrained-output", False)
    assert untrained.loss.losses[1] is None and "reg_loss" not in history.history
    # The output without a loss is not trained through: its head keeps its weights.
    fresh = worker.CASES["graph-untrained-output"][0]()
    reg = [i for i, layer in enumerate(fresh.layers) if layer.name == "reg"][0]
    np.testing.assert_array_equal(untrained.layers[reg].params[0], fresh.layers[reg].params[0])


@needs_mpi
def test_graph_model_memory_mapped_inputs_fit_and_evaluate(tmp_path):
    run_mpi(2, "graph_memmap", tmp_path)
    x, y = worker.graph_data(n=59)
    model, expected = worker.graph_evaluation(x, y, False)
    assert {"loss", "cls_loss", "reg_loss", "cls_accuracy", "cls_f1", "reg_mae"} == set(expected)
    for rank in range(2):
        params, _, extra = load(tmp_path, "graph-memmap", rank)
        for got, want in zip(params, model.params):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)
        assert {k[len("eval_"):]: float(v) for k, v in extra.items()} == pytest.approx(
            expected, rel=1e-12, abs=1e-12)


@needs_mpi
def test_graph_model_iterables_yield_each_process_part(tmp_path):
    run_mpi(2, "graph_iterable", tmp_path)
    x, y = worker.graph_data(n=60)
    model = worker.graph_model(worker.OPTIMIZERS["adam"]())

    def whole_batches():
        for step in range(4):
            rows = slice(step * 15, (step + 1) * 15)
            yield {k: v[rows] for k, v in x.items()}, {k: v[rows] for k, v in y.items()}

    history = model.fit(whole_batches(), steps_per_epoch=4, epochs=1, verbose=0)
    for rank in range(2):
        params, hist, _ = load(tmp_path, "graph-iterable", rank)
        assert_same_training(params, hist, model, history)


@needs_mpi
def test_graph_model_backup_resumes_on_every_rank(tmp_path):
    run_mpi(2, "graph_backup", tmp_path)
    assert not os.path.exists(tmp_path / "graph-backup")   # deleted at the resumed run's end
    x, y = worker.graph_data(n=70)
    model = worker.graph_model(worker.OPTIMIZERS["adam"]())
    history = model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    for rank in range(2):
        params, hist, _ = load(tmp_path, "graph-backup", rank)
        assert_same_training(params, hist, model, history)


@needs_mpi
def test_graph_model_refusals_come_before_training_on_every_rank(tmp_path):
    run_mpi(2, "graph_refusals", tmp_path)
    for text in reports(tmp_path):
        lines = text.splitlines()
        assert len(lines) == 3, text      # neither fit reached on_train_begin
        assert lines[0].startswith("ValueError: distributed training of a model with a loss "
                                   "per output needs every output's loss to average over the "
                                   "samples, but the loss of output(s) 'cls' (CrossEntropy)")
        assert "sample_weight per output" in lines[0]
        assert lines[1] == ("TypeError: metric 'cls_unmergeable' (Unmergeable) does not "
                            "implement merge_state, so distributed training cannot combine "
                            "it across processes")
        assert lines[2] == ("evaluate: ['cls_accuracy', 'cls_f1', 'cls_loss', 'loss', "
                            "'reg_loss', 'reg_mae']")


def test_class_weighted_losses_of_several_outputs_are_refused_up_front():
    from cdl.training.outputs import OutputLosses

    model = worker.graph_model(worker.OPTIMIZERS["adam"](), loss={
        "cls": cdl.losses.CrossEntropy(weight=[1.0, 2.0, 0.5]), "reg": "mse"})
    assert isinstance(model.loss, OutputLosses)
    parallel = DataParallel.__new__(DataParallel)
    parallel.model = model
    with pytest.raises(ValueError, match=r"output\(s\) 'cls' \(CrossEntropy\) divides by"):
        parallel.check_metrics(model.metrics)
    # One process trains it (its divisor is the batch's own), and so may a
    # model with one output and class weights, as the "class-weights" case.
    x, y = worker.graph_data(n=20)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    parallel.model = worker.CASES["class-weights"][0]()
    parallel.check_metrics(parallel.model.metrics)


@needs_mpi
def test_custom_loop_helpers(tmp_path):
    run_mpi(2, "custom_loop", tmp_path)
    x, y = worker.classification_data(n=64)
    model = worker.dense_model(worker.OPTIMIZERS["sgd"](), dropout=False, seed=10)
    for step in range(8):
        model.train_step(x[step * 8:(step + 1) * 8], y[step * 8:(step + 1) * 8])
    for rank in range(2):
        params, _, _ = load(tmp_path, "custom", rank)
        for got, want in zip(params, model.params):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


@needs_mpi
def test_rank_zero_prints_and_writes_and_backups_resume(tmp_path):
    result = run_mpi(2, "callbacks", tmp_path)
    assert result.stdout.count("Epoch 1/2") == 1 and result.stdout.count("Epoch 2/2") == 1
    assert os.path.exists(tmp_path / "ckpt-0.cdl") and os.path.exists(tmp_path / "log-0.csv")
    assert not os.path.exists(tmp_path / "ckpt-1.cdl")
    assert not os.path.exists(tmp_path / "log-1.csv")
    assert not os.path.exists(tmp_path / "backup")     # deleted at the resumed run's end
    x, y = worker.classification_data(n=120)
    model = worker.dense_model(worker.OPTIMIZERS["adam"]())
    history = model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    for rank in range(2):
        params, hist, _ = load(tmp_path, "resumed", rank)
        assert_same_training(params, hist, model, history)


# --- failures end every process, clearly -------------------------------------

@needs_mpi
def test_bad_rows_of_one_rank_raise_on_every_rank(tmp_path):
    run_mpi(2, "bad_part", tmp_path)
    for rank, line in enumerate(reports(tmp_path)):
        assert line == "caught: rank 1 failed in step 3 of epoch 1: ValueError: x contains NaN"


@needs_mpi
def test_bad_arguments_on_one_rank_raise_on_every_rank(tmp_path):
    run_mpi(2, "bad_arguments", tmp_path)
    assert reports(tmp_path) == [
        "caught DistributedError: rank 1 failed when fit checked its arguments: ValueError: "
        "x contains infinity", "caught ValueError: x contains infinity"]


@needs_mpi
@pytest.mark.parametrize("scenario, message", [
    ("uncaught", "rank 1 ended with an uncaught RuntimeError"),
    ("timeout", "waited more than 2 s for the other processes"),
    ("callback_failure", "rank 0 failed in epoch 1: OSError: disk full"),
])
def test_failures_outside_a_step_abort_the_job(tmp_path, scenario, message):
    result = run_mpi(2, scenario, tmp_path, check=False, timeout=90)
    output = f"exit status {result.returncode}\n{result.stdout}\n{result.stderr[-3000:]}"
    assert result.returncode != 0, output
    assert message in result.stderr, output
    assert "aborting the 2 processes" in result.stderr, output
    assert "passed the barrier" not in result.stdout, output


# --- without MPI ---------------------------------------------------------------

def test_without_mpi4py_cdl_works_and_distributed_says_what_to_install(tmp_path):
    code = textwrap.dedent("""
        import sys
        sys.modules["mpi4py"] = None          # as if it were not installed
        import numpy as np, cdl
        from cdl import layers
        model = cdl.Sequential([layers.Dense(2)], input_shape=(3,), seed=0)
        model.compile("sgd", "mse")
        model.fit(np.zeros((4, 3)), np.zeros((4, 2)), verbose=0)
        assert cdl.distributed.is_main_process()
        try:
            model.fit(np.zeros((4, 3)), np.zeros((4, 2)), verbose=0, distributed=True)
        except ImportError as err:
            print(err)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)   # outside the source tree
    assert result.returncode == 0, result.stderr
    assert 'pip install "cdl[mpi]"' in result.stdout


def test_distributed_argument_is_checked():
    model = worker.dense_model(worker.OPTIMIZERS["adam"]())
    x, y = worker.classification_data()
    with pytest.raises(TypeError, match="distributed must be True, False or an mpi4py"):
        model.fit(x, y, distributed="yes", verbose=0)


@pytest.mark.parametrize("total, size", [(16, 2), (17, 2), (1, 2), (2, 3), (10, 4), (0, 3)])
def test_shards_cover_a_batch_once_larger_first(total, size):
    bounds = [_sharding.shard_bounds(total, r, size) for r in range(size)]
    assert bounds[0][0] == 0 and bounds[-1][1] == total
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    sizes = [stop - start for start, stop in bounds]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


@pytest.mark.parametrize("rank", [0, 1])
def test_each_process_reads_only_its_rows(rank):
    parallel = DataParallel.__new__(DataParallel)
    parallel.rank, parallel.size = rank, 2
    rows, window = parallel.place(slice(32, 47))
    assert (rows, window) == ((slice(32, 40), (0, 8, 15)) if rank == 0
                              else (slice(40, 47), (8, 15, 15)))
    order = np.array([5, 3, 9, 1, 7])
    rows, window = parallel.place(order)
    np.testing.assert_array_equal(rows, order[:3] if rank == 0 else order[3:])


def test_noise_drawn_in_windows_matches_the_whole_batch():
    whole = np.random.default_rng(4).random((5, 3))
    parts = []
    for start, stop in [(0, 3), (3, 5)]:
        rng = np.random.default_rng(4)
        with _sharding.window(start, stop, 5):
            parts.append(_sharding.per_sample(rng, (stop - start, 3), np.float64))
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    with pytest.raises(RuntimeError, match="inside a window"):
        with _sharding.window(0, 2, 5):
            _sharding.per_sample(np.random.default_rng(0), (3, 3), np.float64)


def test_distributed_error_names_ranks_and_place():
    err = DistributedError([(1, "ValueError: bad"), (3, "OSError: gone")], "in step 2 of epoch 1")
    assert str(err) == ("rank 1 failed in step 2 of epoch 1: ValueError: bad; "
                        "rank 3 failed in step 2 of epoch 1: OSError: gone")
    assert err.failures == [(1, "ValueError: bad"), (3, "OSError: gone")]


# --- metrics merge as if one had seen every batch --------------------------------

def _metric_cases():
    rng = np.random.default_rng(0)
    labels, scores = rng.integers(0, 3, 40), rng.normal(size=(40, 3))
    target, pred = rng.normal(size=(40, 2)), rng.normal(size=(40, 2))
    weights = rng.random(40)
    return [
        (metrics.Accuracy, labels, scores), (metrics.TopKAccuracy, labels, scores, {"k": 2}),
        (metrics.Precision, labels, scores), (metrics.Recall, labels, scores),
        (metrics.F1Score, labels, scores, {"average": None}),
        (metrics.BinaryAccuracy, (labels > 0).astype(float), scores[:, :1]),
        (metrics.MSE, target, pred), (metrics.MAE, target, pred), (metrics.RMSE, target, pred),
        (metrics.R2, target, pred), (lambda: metrics.MeanMetricWrapper(
            lambda t, p: float(np.abs(np.asarray(t) - np.asarray(p)).mean()), name="mae_fn"),
            target, pred),
    ], weights


@pytest.mark.parametrize("index", range(11))
@pytest.mark.parametrize("weighted", [False, True])
def test_merged_metrics_equal_one_metric_over_all_batches(index, weighted):
    cases, weights = _metric_cases()
    make, y_true, y_pred, *kwargs = cases[index]
    kwargs = kwargs[0] if kwargs else {}
    if weighted and index == 10:
        pytest.skip("MeanMetricWrapper averages batch values, which do not see the weights")
    w = weights if weighted else None
    whole = make(**kwargs)
    whole.update(y_true, y_pred, w)
    merged = make(**kwargs)
    for start, stop in [(0, 0), (0, 13), (13, 40)]:
        part = make(**kwargs)
        if stop > start:
            part.update(y_true[start:stop], y_pred[start:stop],
                        None if w is None else w[start:stop])
        merged.merge_state(part)
    np.testing.assert_allclose(merged.result(), whole.result(), rtol=1e-12, atol=1e-12)


def test_mean_merges_and_metrics_refuse_other_kinds():
    a, b = metrics.Mean(), metrics.Mean()
    a.update([1.0, 2.0])
    b.update(4.0, sample_weight=2)
    a.merge_state(b)
    assert a.result() == pytest.approx((1 + 2 + 8) / 4)
    with pytest.raises(TypeError, match="cannot merge a MSE into a Accuracy"):
        metrics.Accuracy().merge_state(metrics.MSE())


def test_a_metric_without_merge_state_is_refused_up_front():
    class Custom(metrics.Metric):
        def reset(self):
            self._n = 0

        def update(self, y_true, y_pred, sample_weight=None):
            self._n += len(y_true)

        def result(self):
            return self._n

    with pytest.raises(NotImplementedError, match="does not implement merge_state"):
        Custom().merge_state(Custom())
    parallel = DataParallel.__new__(DataParallel)
    parallel.model = None
    with pytest.raises(TypeError, match="does not implement merge_state"):
        parallel.check_metrics([metrics.Accuracy(), Custom()])
    # Wrapped as the metric of one output of a graph model, it is found too.
    from cdl.training.outputs import OutputMetric

    with pytest.raises(TypeError, match=r"metric 'cls_custom' \(Custom\) does not implement"):
        parallel.check_metrics([metrics.Accuracy(), OutputMetric(Custom(name="custom"), 0,
                                                                 "cls")])


@needs_mpi
def test_the_docs_example_runs_under_mpiexec(tmp_path):
    page = (ROOT / "docs" / "distributed.md").read_text()
    example = page.split("```{code-block} python\n")[1].split("```")[0]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 20)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", x[:, :3].argmax(axis=1))
    (tmp_path / "train.py").write_text(example)
    result = subprocess.run([_mpiexec(), "-n", "2", sys.executable, "train.py"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert sum(line.startswith("Epoch 1/5") for line in lines) == 1   # rank 0 alone prints
    assert float(lines[-1]) > 0.45                 # learning (chance is 1/3)
    assert os.path.exists(tmp_path / "model.cdl")
