"""`python -m cdl demo` runs end to end."""
import re
import subprocess
import sys


def test_demo_trains_saves_and_reloads(tmp_path):
    out_dir = tmp_path / "demo"
    result = subprocess.run([sys.executable, "-m", "cdl", "demo", "--out", str(out_dir)],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    accuracy = float(re.search(r"test accuracy: ([\d.]+)", result.stdout).group(1))
    seconds = float(re.search(r"training time: ([\d.]+) s", result.stdout).group(1))
    assert accuracy >= 0.97
    assert seconds < 60
    reloaded = float(re.search(r"reloaded from .*: test accuracy ([\d.]+)", result.stdout)
                     .group(1))
    assert reloaded == accuracy and "predictions identical" in result.stdout
    assert (out_dir / "digits.cdl").stat().st_size > 0
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "no curves" in result.stdout
    else:
        assert (out_dir / "curves.png").stat().st_size > 5_000
