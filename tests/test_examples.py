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


def test_optimizers_example_trains_with_every_optimizer(tmp_path):
    png = tmp_path / "curves.png"
    result = subprocess.run([sys.executable, str(EXAMPLES / "optimizers.py"), "--epochs", "8",
                             "--png", str(png)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = {line.split("  ")[0]: line.split()[-5:] for line in result.stdout.splitlines()[1:]
            if re.match(r"^[A-Z]", line) and "saved" not in line and "matplotlib" not in line}
    for name in ("GD (full batch)", "SGD", "Momentum", "AdaGrad", "RMSprop", "Adam", "NAdam",
                 "RAdam", "Adamax", "AdamW", "Nesterov"):
        first, *_, last, accuracy = (float(v) for v in rows[name])
        assert last < first, f"{name} did not reduce the loss"
        assert 0.0 <= accuracy <= 1.0
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib is not installed" in result.stdout
    else:
        assert png.stat().st_size > 10_000


def test_conv_digits_reaches_98_percent():
    out = run_example("conv_digits.py")
    accuracy = float(re.search(r"test accuracy: ([\d.]+)", out).group(1))
    assert accuracy >= 0.98


def test_conv1d_signals_learns_the_shapes():
    out = run_example("conv1d_signals.py")
    accuracy = float(re.search(r"test accuracy: ([\d.]+)", out).group(1))
    assert accuracy >= 0.9


def test_functional_trains_both_heads_and_reloads():
    out = run_example("functional.py")
    assert float(re.search(r"test accuracy: ([\d.]+)", out).group(1)) >= 0.95
    error, spread = (float(v) for v in re.search(
        r"ink mean absolute error: ([\d.]+) \(test ink spread ([\d.]+)\)", out).groups())
    assert error < 0.5 * spread   # far better than predicting the mean
    assert "digit_accuracy" in out and "ink_mae" in out
    assert "lists and dicts agree: True" in out
    assert "same predictions after loading: True" in out


def test_transformer_sequences_reads_digits_row_by_row():
    out = run_example("transformer_sequences.py")
    assert float(re.search(r"Transformer: test accuracy: ([\d.]+)", out).group(1)) >= 0.95
    heads = re.findall(r"head \d: \[([\d, ]+)\]", out)
    assert len(heads) == 4
    assert all(len(row.split(",")) == 8 for row in heads)
    assert "each row of weights sums to 1: True" in out


def test_char_language_model_learns_and_samples():
    # Fewer windows than the defaults, to keep the test short; the model
    # still ends well below the 28 of character frequencies alone.
    result = subprocess.run([sys.executable, str(EXAMPLES / "char_language_model.py"),
                             "--windows", "1000", "--epochs", "2"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    before = float(re.search(r"perplexity before training: ([\d.]+)", out).group(1))
    after = float(re.search(r"validation perplexity: ([\d.]+)", out).group(1))
    assert before > 40 and after < 20
    sample = out.split("sample:\n", 1)[1]
    assert sample.startswith("MENENIUS:\n") and len(sample) >= 200


def test_keyword_spotting_tells_the_words_apart():
    out = run_example("keyword_spotting.py")
    assert re.search(r"log-mel features: \d+ frames x 24 mel bands", out)
    assert float(re.search(r"test accuracy: ([\d.]+)", out).group(1)) >= 0.9
