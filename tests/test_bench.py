"""The benchmark harness runs end to end (no timing assertions: speed is
measured by ``python -m cdl bench``, never asserted in tests)."""
import json
import subprocess
import sys

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
