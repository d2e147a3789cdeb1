"""Every tutorial of the documentation runs, and its checks print True;
so does every Python block of the documentation's Markdown pages.

The tutorials (docs/tutorials_src/*.py) are also executed by the docs build,
which renders their output and figures; this test runs them with the plain
test command. Those that draw figures need matplotlib and are skipped
without it (the docs build always has it).
"""
import importlib.util
import os
import pathlib
import re
import subprocess
import sys

import pytest

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"
TUTORIALS = sorted((pathlib.Path(__file__).resolve().parent.parent / "docs" / "tutorials_src")
                   .glob("*.py"))

#: Output each tutorial must print (regular expressions), beyond running cleanly.
EXPECTED = {
    "plot_01_xor_step_by_step.py": [r"same as by hand: True", r"stopped after \d+ epochs",
                                    r"same curve: True"],
    "plot_02_gradient_descent_variants.py": [r"^Adam\s+780\s"],
    "plot_03_digits_mlp_cnn.py": [r"'accuracy': 0\.9[4-9]"],
    "plot_04_regression_standardised.py": [r"standardised\s+test RMSE\s+\d+\.\d+\s+R2 0\.9"],
    "plot_05_sequence_model.py": [r"LSTM: \{'loss': [\d.]+, 'accuracy': 0\.9"],
    "plot_06_custom_layer.py": [r"GradcheckError: gradients disagree"],
    "plot_07_saving_and_resuming.py": [r"identical after resuming: True"],
    "plot_08_performance.py": [r"same weights after the same training: True"],
    "plot_09_functional_api.py": [r"'digit_accuracy': 0\.9[5-9]", r"'val_ink_loss'",
                                  r"list and dict give the same: True",
                                  r"unknown key\(s\) 'bottom'",
                                  r"same predictions after loading: True",
                                  r"encoder\[1\] \(Dense\) <- lower"],
    "plot_10_transformers.py": [r"same output as the layer: True",
                                r"same weights as last_attention_scores: True",
                                r"same causal weights: True",
                                r"shuffling the input shuffles the output: True",
                                r"Transformer: \{'loss': [\d.]+, 'accuracy': 0\.9[5-9]",
                                r"LSTM: \{'loss': [\d.]+, 'accuracy': 0\.9[5-9]",
                                r"^Transformer\s+\d+ weights",
                                r"validation perplexity: 1\d\.\d", r"^MENENIUS:$"],
    "plot_11_watching_training.py": [r"^\['train', 'validation'\]$",
                                     r"^validation \['epoch_accuracy', 'epoch_loss'\]$",
                                     r"same losses as History: True",
                                     r"hidden \(Dense\)"],
}


def test_every_tutorial_has_expectations():
    assert TUTORIALS, "no tutorials found"
    assert {t.name for t in TUTORIALS} == set(EXPECTED)


@pytest.mark.parametrize("script", TUTORIALS, ids=[t.stem for t in TUTORIALS])
def test_tutorial_runs(script, tmp_path):
    if "matplotlib" in script.read_text() and importlib.util.find_spec("matplotlib") is None:
        pytest.skip("matplotlib is not installed")
    if "callbacks.TensorBoard(" in script.read_text():
        for package in ("tensorboardX", "tensorboard"):
            if importlib.util.find_spec(package) is None:
                pytest.skip(f"{package} is not installed (pip install 'cdl[tensorboard]' "
                            "tensorboard)")
    env = dict(os.environ, MPLBACKEND="Agg")
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    failed_checks = [line for line in out.splitlines() if re.search(r":\s*False\b", line)]
    assert not failed_checks, failed_checks
    for pattern in EXPECTED[script.name]:
        assert re.search(pattern, out, flags=re.M), f"{pattern!r} not in the output:\n{out}"


PAGE_BLOCKS = [(page.name, i, block) for page in sorted(DOCS.glob("*.md"))
               for i, block in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(),
                                                    flags=re.S))]
#: Optional packages a page's blocks may import; without one, the page is skipped.
OPTIONAL_IMPORTS = ("torch", "tensorboardX", "tensorboard", "sklearn", "onnx", "onnxruntime",
                    "pooch", "tokenizers", "pydot", "mpi4py")


def test_pages_have_python_blocks():
    assert len(PAGE_BLOCKS) >= 3


@pytest.mark.parametrize("page, index, code", PAGE_BLOCKS,
                         ids=[f"{page}-{i}" for page, i, _ in PAGE_BLOCKS])
def test_page_block_runs(page, index, code, tmp_path, monkeypatch, capsys):
    """A page is read top to bottom: its earlier blocks run first, in the same
    namespace, so a walk-through may build on what came before."""
    blocks = [block for name, _, block in PAGE_BLOCKS if name == page][:index + 1]
    for module in OPTIONAL_IMPORTS:
        if any(re.search(rf"^\s*(import|from) {module}\b", block, flags=re.M)
               for block in blocks) and importlib.util.find_spec(module) is None:
            pytest.skip(f"{page} needs {module}, which is not installed")
    monkeypatch.chdir(tmp_path)  # blocks may write files
    namespace = {"__name__": "__docs__"}
    for block in blocks:
        exec(compile(block, str(DOCS / page), "exec"), namespace)
