"""The benchmark harness runs end to end (no timing assertions: speed is
measured by ``python -m cdl bench``, never asserted in tests)."""
import json
import subprocess
import sys

import pytest

from cdl import bench


def test_quick_benchmark_runs_and_reports_ratios(tmp_path):
    out = tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, "-m", "cdl", "bench", "--quick", "--frameworks", "cdl", "numpy",
         "--json", str(out)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "| train step tiny/sgd |" in result.stdout and "cdl/numpy" in result.stdout
    data = json.loads(out.read_text())
    step = data["train"]["tiny/sgd"]
    assert step["cdl"]["seconds"] > 0 and step["numpy"]["seconds"] > 0
    assert data["sgemm_gflops"] > 0 and data["import_seconds"]["cdl"] > 0


def test_numpy_reference_network_learns():
    import numpy as np
    from cdl.bench.workloads import NumpyMLP, make_data
    x, y = make_data((8, 16, 3), 64)
    y = (x[:, 0] > 0).astype(np.int64)
    model = NumpyMLP((8, 16, 3), "adam")
    logits = model.forward(x)[-1]
    before = (logits.argmax(1) == y).mean()
    for _ in range(300):
        model.train_step(x, y)
    assert (model.forward(x)[-1].argmax(1) == y).mean() > max(before, 0.9)


def test_flop_count():
    # 2-3-1 net, batch 4: forward 2*4*(2*3 + 3*1); backward weights the same;
    # input gradients for the second layer only: 2*4*3*1.
    assert bench.workloads.train_flops((2, 3, 1), 4) == 72 + 72 + 24


# --- every workload, in miniature ------------------------------------------------

TINY_CNN = {"shape": (8, 8, 2), "filters": (3, 4), "batch": 4}
TINY_CONV = {"shape": (5, 5, 2), "filters": 3, "batch": 2}
TINY_N = 4 * 1024  # elements per array of the elementwise kernels (whole softmax rows)
TINY_ENCODER = {"batch": 2, "tokens": 5, "d_model": 8, "heads": 2, "dim_feedforward": 6}


def _tiny_tasks(framework):
    """One small task of every kind ``framework`` has (see GROUP_FRAMEWORKS)."""
    tasks = {
        "dense": {"kind": "train", "sizes": [6, 5, 3], "batch": 4, "optimizer": "adam",
                  "steps": 2},
        "predict": {"kind": "predict", "sizes": [6, 5, 3], "n": 7},
        "cnn": {"kind": "cnn", "case": TINY_CNN, "steps": 1},
        "conv": {"kind": "conv", "case": TINY_CONV},
        "rnn": {"kind": "rnn", "cell": "gru", "steps": 1},
        "transformer": [{"kind": "encoder", "case": TINY_ENCODER, "steps": 2},
                        {"kind": "attention", "tokens": 80, "heads": 2, "dim": 8}],
        "elementwise": {"kind": "elementwise", "n": TINY_N},
    }
    return [{**task, "min_seconds": 0.0} for group, group_tasks in tasks.items()
            if framework in bench.GROUP_FRAMEWORKS[group]
            for task in (group_tasks if isinstance(group_tasks, list) else [group_tasks])]


def _run_batch(framework):
    batch = {"framework": framework, "threads": 1, "tasks": _tiny_tasks(framework)}
    command, env = bench.worker_command(batch)
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    results = json.loads(result.stdout.strip().splitlines()[-1])["results"]
    assert len(results) == len(batch["tasks"])
    for task, res in zip(batch["tasks"], results):
        times = res["times"]
        if task["kind"] == "elementwise":
            assert set(bench.workloads.ELEMENTWISE_BYTES) <= set(times)
            times = [t for values in times.values() for t in values]
        assert len(times) >= 3 and all(t > 0 for t in times), task
        if task["kind"] == "attention":
            # None only where /proc is missing (not Linux).
            peak = res["work_peak_mib"]
            assert peak is None or peak >= 0
    return results


def test_workers_of_other_frameworks_do_not_import_cdl():
    # cdl's OpenMP runtime, loaded first, would set PyTorch's spin policy.
    task = {"framework": "numpy", "threads": 1, "kind": "predict", "sizes": [4, 3, 2], "n": 5,
            "min_seconds": 0.0}
    command, env = bench.worker_command(task)
    code = ("import os, runpy, sys; sys.argv = sys.argv[1:]; "
            "sys.path.insert(0, os.path.dirname(sys.argv[0])); "
            "runpy.run_path(sys.argv[0], run_name='__main__'); print('cdl' in sys.modules)")
    result = subprocess.run([command[0], "-c", code] + command[1:], capture_output=True,
                            text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "False"


def test_every_cdl_and_numpy_workload_runs():
    results = _run_batch("cdl")
    assert bench.workloads.BANDWIDTH_REFERENCE in results[-1]["times"]
    _run_batch("numpy")


@pytest.mark.parametrize("framework", ["torch", "jax", "onnxruntime"])
def test_every_optional_framework_workload_runs(framework):
    if not bench.available(framework):
        pytest.skip(f"{framework} is not installed")
    _run_batch(framework)


def test_cnn_and_conv_flop_counts():
    # conv1 8x8x2 -> 3: 2*64*9*2*3 = 6912 (forward and weight gradient);
    # conv2 4x4x3 -> 4: 2*16*9*3*4 = 3456, dense 2*2*2*4*10 = 320 (three products each).
    assert bench.workloads.cnn_flops(TINY_CNN) == 4 * (2 * 6912 + 3 * (3456 + 320))
    assert bench.workloads.conv_flops(TINY_CONV) == 3 * 2 * 2 * 25 * 9 * 2 * 3


def test_report_columns_roofline_and_bandwidth():
    nan = float("nan")
    results = {
        "date": "2026-01-01", "threads": 2, "rounds": 1,
        "frameworks": ["cdl", "torch", "jax", "numpy"], "sgemm_gflops": 100.0,
        "train": {"tiny/sgd": {"cdl": {"seconds": 1e-3}, "torch": {"seconds": 2e-3},
                               "numpy": {"seconds": 4e-3}, "gflops": 50.0},
                  "lstm-32x16-64/adam": {"cdl": {"seconds": 2e-3}, "jax": {"seconds": 1e-3},
                                         "gflops": nan}},
        "conv": {}, "predict": {},
        "elementwise": {"relu forward": {"cdl": {"seconds": 0.01}, "torch": {"seconds": 0.02},
                                         "bytes_per_element": 8, "gbps": 10.0}},
        "bandwidth_gbps": 15.0, "digits": None,
    }
    report = bench.format_report(results)
    assert "| workload | cdl | cdl/torch | cdl/jax | cdl/numpy | cdl GFLOP/s | % of sgemm " \
           "| cdl MiB | MiB cdl/torch |" in report
    assert "| train step tiny/sgd | 1.000 ms | 0.50 | - | 0.25 | 50.0 | 50% | - | - |" \
        in report
    assert "| train step lstm-32x16-64/adam | 2.000 ms | - | 2.00 | - |  |  | - | - |" \
        in report
    assert "| relu forward | 8 | 10.000 ms | 10.0 | 1.50 | 0.50 |" in report
    assert "Transformer" not in report


def test_report_gives_memory_per_workload_its_ratio_and_the_import_baselines():
    results = {
        "date": "2026-01-01", "threads": 2, "rounds": 3, "frameworks": ["cdl", "torch"],
        "sgemm_gflops": 100.0, "conv": {}, "predict": {}, "digits": None,
        "train": {"tiny/sgd": {"cdl": {"seconds": 1e-3, "work_peak_mib": [3.0, 2.0, 4.0],
                                       "baseline_mib": [60.0, 62.0, 61.0]},
                               "torch": {"seconds": 2e-3, "work_peak_mib": [6.0],
                                         "baseline_mib": [300.0]}, "gflops": 50.0}},
    }
    report = bench.format_report(results)
    assert "| train step tiny/sgd | 1.000 ms | 0.50 | 50.0 | 50% | 3.0 | 0.50 |" in report
    assert "before any task: cdl 61 MiB, torch 300 MiB." in report


def test_transformer_table_has_its_own_peak_memory_columns():
    results = {
        "date": "2026-01-01", "threads": 2, "rounds": 3, "frameworks": ["cdl", "torch", "jax"],
        "sgemm_gflops": 100.0, "train": {}, "conv": {}, "predict": {}, "digits": None,
        "transformer": {
            "encoder 64x64 h4 ff128 b32/adam": {"cdl": {"seconds": 0.02},
                                                "torch": {"seconds": 0.04}, "gflops": 20.0},
            "attention T=1024 fwd+bwd": {"cdl": {"seconds": 0.1, "work_peak_mib": [4.0, 6.0, 5.0]},
                                         "torch": {"seconds": 0.05, "work_peak_mib": [9.5]},
                                         "gflops": 10.0}},
    }
    report = bench.format_report(results)
    assert "dropout 0.0" in report
    assert "cdl/jax" not in report  # no rows of the main table: no header either
    assert "| workload | cdl | cdl/torch | cdl GFLOP/s | % of sgemm | cdl peak (MiB) " \
           "| torch peak (MiB) |" in report
    assert "| encoder 64x64 h4 ff128 b32/adam | 20.000 ms | 0.50 | 20.0 | 20% | - | - |" in report
    assert "| attention T=1024 fwd+bwd | 100.000 ms | 2.00 | 10.0 | 10% | 5.0 | 9.5 |" in report


def test_transformer_flop_counts():
    # One head of d = 8 over 5 tokens: forward Q K^T and P V, backward dV, dP, dQ, dK.
    assert bench.workloads.attention_flops(1, 1, 5, 8) == 6 * 2 * 25 * 8
    c = TINY_ENCODER
    rows = c["batch"] * c["tokens"]
    forward = 2 * rows * (4 * 8 * 8 + 2 * 8 * 6) + 2 * 2 * 2 * 25 * 8
    backward = 2 * rows * (4 * 8 * 8 + 2 * 8 * 6) + 2 * rows * (8 * 8 + 2 * 8 * 6) \
        + 4 * 2 * 2 * 25 * 8
    assert bench.workloads.encoder_flops(c) == forward + backward


def _worker_peak(task, cwd, harness_ballast_mib=0):
    """The work peak (MiB) of ``task`` run by a fresh worker, started from a
    harness process (in ``cwd``, outside the source tree) that first holds
    ``harness_ballast_mib`` MiB."""
    code = ("import json, sys\nimport numpy\n"
            f"ballast = numpy.ones({harness_ballast_mib} << 20, numpy.uint8)\n"
            "from cdl import bench\n"
            "print(json.dumps(bench.run_worker(json.loads(sys.argv[1]))))\n")
    result = subprocess.run([sys.executable, "-c", code, json.dumps(task)],
                            capture_output=True, text=True, timeout=300, cwd=cwd)
    assert result.returncode == 0, result.stderr
    res = json.loads(result.stdout.strip().splitlines()[-1])
    assert res["baseline_mib"] > 0
    return res["work_peak_mib"]


def test_memory_differs_by_workload_and_not_by_what_the_harness_loaded(tmp_path):
    """The peak a worker reports is its task's: a wide MLP step and a tiny
    one differ, and a harness grown large first (as it is once PyTorch is
    loaded in it) does not change the figure. On Linux, ``ru_maxrss``
    starts at the parent's size after fork; the VmHWM reset does not."""
    if bench.workloads._proc_status_kib("VmHWM") is None:
        pytest.skip("no /proc/self/status (not Linux)")
    tiny = {"framework": "cdl", "threads": 1, "kind": "train", "sizes": [32, 64, 64, 10],
            "batch": 32, "optimizer": "adam", "steps": 5, "min_seconds": 0.0}
    wide = {**tiny, "sizes": [1024, 2048, 2048, 10], "batch": 256}
    tiny_peak = _worker_peak(tiny, tmp_path)
    wide_peak = _worker_peak(wide, tmp_path)
    # The wide MLP's weights alone: (1024*2048 + 2048*2048) float32 = 24 MiB,
    # with gradients and two Adam moments four times that.
    assert wide_peak > 60 and tiny_peak < 20 and wide_peak > 4 * tiny_peak
    # Started from a harness holding 300 MiB, the figure is the same.
    harnessed = _worker_peak(wide, tmp_path, harness_ballast_mib=300)
    assert abs(harnessed - wide_peak) <= 0.1 * wide_peak + 2


def test_peak_growth_sees_the_work_not_the_process():
    import numpy as np
    if bench.workloads._proc_status_kib("VmHWM") is None:
        pytest.skip("no /proc/self/status (not Linux)")
    big = np.ones(16 << 20, np.uint8)  # a peak of the process before the work
    del big
    small = bench.workloads.peak_growth_mib(lambda: np.ones(2 << 20, np.uint8).sum())
    large = bench.workloads.peak_growth_mib(lambda: np.ones(24 << 20, np.uint8).sum())
    assert small < 12 and large > 16


def test_only_selects_workload_groups(monkeypatch):
    seen = {}

    def fake_run(groups, configs, *args):
        seen["groups"], seen["configs"] = list(groups), configs
        raise SystemExit(0)
    monkeypatch.setattr(bench, "run", fake_run)
    with pytest.raises(SystemExit):
        bench.main(["--only", "cnn,rnn", "conv", "--no-conv"])
    assert seen["groups"] == ["cnn", "rnn"]
    with pytest.raises(SystemExit):
        bench.main(["--only", "transformer"])
    assert seen["groups"] == ["transformer"]
    with pytest.raises(SystemExit):
        bench.main([])
    assert "transformer" in seen["groups"]
    with pytest.raises(SystemExit):
        bench.main(["--configs", "--no-digits"])
    assert "dense" not in seen["groups"] and "digits" not in seen["groups"]
    with pytest.raises(SystemExit):
        bench.main(["--only", "cnn,bogus"])
