"""The documentation displays without a network: formulas are typeset as
MathML when the pages are built (docs/_ext/mathml.py), and
docs/check_offline.py, which CI runs over the built site, finds every
remote asset a page would fetch."""
import importlib.util
import pathlib

import pytest

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def checker():
    return _load(DOCS / "check_offline.py", "check_offline")


def test_remote_assets_are_listed_and_links_are_not(tmp_path, checker):
    (tmp_path / "sub").mkdir()
    (tmp_path / "index.html").write_text(
        '<html><head><script src="https://cdn.example.org/mathjax/tex-chtml.js"></script>'
        '<link rel="stylesheet" href="//fonts.example.org/css?family=Lato">'
        '<link rel="stylesheet" href="_static/local.css">'
        '<link rel="canonical" href="https://example.org/docs/">'
        '<style>body { background: url("https://img.example.org/bg.png") }</style>'
        '</head><body><a href="https://pytorch.org">PyTorch</a>'
        '<img src="_static/plot.png"><img srcset="a.png 1x, http://x.example.org/b.png 2x">'
        '<span style="background-image: url(http://y.example.org/c.png)"></span>'
        '</body></html>', encoding="utf-8")
    (tmp_path / "sub" / "theme.css").write_text(
        '@import "https://fonts.example.org/x.css";\n'
        '@font-face { src: url(../fonts/local.woff2) }\n'
        '.a { background: url(https://z.example.org/d.svg) }\n', encoding="utf-8")
    found = checker.remote_assets(tmp_path)
    urls = sorted(url for _, url in found)
    assert urls == sorted([
        "https://cdn.example.org/mathjax/tex-chtml.js", "//fonts.example.org/css?family=Lato",
        "https://img.example.org/bg.png", "a.png 1x, http://x.example.org/b.png 2x",
        "http://y.example.org/c.png", "https://fonts.example.org/x.css",
        "https://z.example.org/d.svg"])
    assert checker.main([str(tmp_path)]) == 1


def test_a_site_with_local_assets_only_passes(tmp_path, checker):
    (tmp_path / "page.html").write_text(
        '<script src="_static/app.js"></script><a href="http://example.org">x</a>'
        '<math><mi>x</mi></math>', encoding="utf-8")
    assert checker.remote_assets(tmp_path) == []
    assert checker.main([str(tmp_path)]) == 0
    assert checker.main([str(tmp_path / "missing")]) == 2


def test_formulas_become_mathml_with_no_latex_left():
    pytest.importorskip("latex2mathml", reason="needs latex2mathml (pip install 'cdl[docs]')")
    pytest.importorskip("sphinx", reason="needs Sphinx (pip install 'cdl[docs]')")
    mathml = _load(DOCS / "_ext" / "mathml.py", "mathml_extension")
    for latex in [r"w \leftarrow w - \eta g_t",
                  r"\eta_t = \eta_{t-1} \cdot \begin{cases} \gamma & t > 0 \\ 1 & "
                  r"\text{otherwise} \end{cases}",
                  r"\begin{split}d_t &= g_t + \lambda \theta_{t-1} \\ \theta_t &= "
                  r"\theta_{t-1} - \eta d_t\end{split}",
                  r"\frac{\partial L}{\partial w} = \sum_i x_i \delta_i"]:
        out = mathml.to_mathml(latex, "block", None)
        assert out.startswith("<math") and out.endswith("</math>")
        assert "\\" not in out and "<mi>&</mi>" not in out
