"""The examples run and do what they say."""
import pathlib
import re
import subprocess
import sys

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def run_example(name):
    result = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_seed_xor_learns_xor():
    out = run_example("seed_xor.py")
    iterations, loss = re.search(r"stopped after (\d+) iterations, loss ([\d.]+)", out).groups()
    assert int(iterations) < 20_000 and float(loss) < 0.01
    predictions = re.findall(r"\[(\d) (\d)\] -> ([\d.]+) \(target (\d)\)", out)
    assert len(predictions) == 4
    for a, b, prediction, target in predictions:
        assert int(target) == int(a) ^ int(b)
        # MSE < 0.01 bounds the root-mean-square error by 0.1; one point may
        # sit slightly further out, never past sqrt(4 * 0.01) = 0.2.
        assert abs(float(prediction) - int(target)) < 0.15
