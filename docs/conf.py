"""Sphinx configuration of cdl's documentation.

Build from the repository root, after ``pip install ".[docs]"``::

    sphinx-build -W --keep-going -b html docs docs/_build/html

The API reference documents the installed ``cdl`` (import it from outside
the source tree). Tutorials in ``docs/tutorials_src`` are executed by
sphinx-gallery during the build. Nothing is fetched from the network.
"""
import importlib
import os
import pathlib
import shutil
import sys

import cdl

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

# API stubs are regenerated from each module's ``__all__`` and the tutorials
# run again on every build; stale pages (of removed names or tutorials)
# would otherwise linger.
shutil.rmtree(HERE / "api" / "generated", ignore_errors=True)
shutil.rmtree(HERE / "tutorials", ignore_errors=True)
# Written by builds that timed the tutorials; its page loads scripts from CDNs.
(HERE / "sg_execution_times.rst").unlink(missing_ok=True)

os.environ.setdefault("MPLBACKEND", "Agg")

project = "cdl"
author = "the cdl developers"
copyright = "the cdl developers"
version = release = cdl.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "mathml",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "tutorials_src", "Thumbs.db", ".DS_Store"]
templates_path = ["_templates"]

# --- API reference -------------------------------------------------------------
#: The modules of the API reference, as ``api/index.rst`` lists them.
API_MODULES = [line.strip() for line in (HERE / "api" / "index.rst").read_text().splitlines()
               if line.startswith("   cdl")]


def _public_classes():
    """Names of the public classes of cdl and of every class from outside cdl
    that they derive from: members a class inherits from one of these are
    documented there (or, for Python's and other libraries' classes, not
    at all), not again on every subclass. Members inherited from cdl's
    private helper classes are documented on the public class."""
    names = set()
    for module_name in API_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name, None)
            if isinstance(obj, type):
                names.add(name)
                names.update(base.__name__ for base in obj.__mro__
                             if not base.__module__.startswith("cdl"))
    return ", ".join(sorted(names))


autosummary_context = {"inherited_from_public": _public_classes()}
autosummary_generate = True
autosummary_ignore_module_all = False   # a module's __all__ decides what is documented
autosummary_imported_members = True
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "none"
autodoc_inherit_docstrings = True
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_use_plots = False
add_module_names = False

# --- Maths -------------------------------------------------------------------------
# Formulas are typeset when the pages are built, as MathML (docs/_ext/mathml.py,
# through latex2mathml), which browsers draw themselves, rather than by MathJax
# in the reader's browser. MathJax from its CDN needs a network to show any
# formula; shipping it with the site would add its scripts and web fonts (a few
# MiB, more than the rest of the site's assets) to every build for a rendering
# modern browsers do natively. Build-time MathML adds only the markup of each
# formula and well under a second to the build, and works offline.
html_math_renderer = "mathml"

# --- Markdown pages ------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# --- Tutorials -----------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "tutorials_src",
    "gallery_dirs": "tutorials",
    "filename_pattern": r".*\.py$",       # execute every tutorial
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib",),
    "show_memory": False,
    # The execution-times page loads jQuery and DataTables from CDNs.
    "write_computation_times": False,
    "show_signature": False,
    "min_reported_time": 1,
    "capture_repr": ("_repr_html_",),
    "plot_gallery": "True",
}

# --- HTML ----------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"cdl {release}"
html_theme_options = {
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_static_path = []
html_show_sourcelink = False
html_copy_source = False


def _skip_foreign_members(app, what, name, obj, skip, options):
    """Leave out methods a class gets from other libraries (scikit-learn's
    ``set_fit_request`` and the like): their documentation is theirs."""
    if what == "class" and callable(obj) and not (getattr(obj, "__module__", "") or "").startswith("cdl"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_foreign_members)
