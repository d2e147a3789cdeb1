"""Every public name has a docstring, and every docstring example runs.

Public names are those listed in the ``__all__`` of the modules below (the
modules of the API reference), plus the public methods and properties of
public classes. A method a class inherits from another public class is
checked there; one it inherits from a private helper class (``cdl.training``'s
``TrainingMixin`` for ``Sequential``, for instance) counts as its own.
Public classes and module-level functions also need an ``Examples``
section. The examples of every docstring in every Python module of cdl,
public or not, run as doctests.
"""
import ast
import doctest
import importlib
import importlib.util
import inspect
import pathlib
import pkgutil
import re
import sys
import types

import numpy as np
import pytest

import cdl

API_INDEX = pathlib.Path(__file__).resolve().parent.parent / "docs" / "api" / "index.rst"
#: The modules of the API reference (its index lists them), and ``cdl.gradcheck``,
#: whose two names ``cdl`` itself exports and documents.
PUBLIC_MODULES = [line.strip() for line in API_INDEX.read_text().splitlines()
                  if line.startswith("   cdl")] + ["cdl.gradcheck"]
#: Modules with an ``__all__`` that are not part of the API reference.
INTERNAL_MODULES = {"cdl.bench", "cdl.demo", "cdl.model", "cdl.training"}

OPTIONFLAGS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS


def test_the_api_reference_lists_every_public_module():
    """A module directly under cdl, not named with a leading underscore and
    with an ``__all__``, is public: the API reference must list it."""
    public = {info.name for info in pkgutil.iter_modules(cdl.__path__, "cdl.")
              if not info.name.split(".")[-1].startswith("_")
              and hasattr(_import(info.name), "__all__")}
    missing = sorted(public - set(PUBLIC_MODULES) - INTERNAL_MODULES)
    assert not missing, f"add these modules to {API_INDEX}: {missing}"


#: The optional packages that modules and docstring examples of cdl may
#: need, each with how to install it. Code that fails for want of one of
#: them, when it is not installed, is skipped with that reason; a missing
#: package not named here is an error like any other.
OPTIONAL_PACKAGES = {
    "onnx": "pip install 'cdl[onnx]'",
    "pydot": "pip install 'cdl[plot]'",
    "sklearn": "pip install 'cdl[sklearn]'",
    "tensorboardX": "pip install 'cdl[tensorboard]'",
    "mpi4py": "pip install 'cdl[mpi]'",
    "onnxruntime": "pip install onnxruntime",
    "matplotlib": "pip install matplotlib",
    "pandas": "pip install pandas",
    "torch": "pip install torch",
}


def missing_optional_package(error):
    """The optional package whose absence raised ``error``, or None.

    The ImportError naming the package may be ``error`` itself or, when cdl
    re-raised it with a message of its own (even ``from None``), its cause or
    context. The package must really be absent: an optional package that is
    installed but fails to import is an error, not a reason to skip.
    """
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        top = (getattr(error, "name", None) or "").partition(".")[0]
        if isinstance(error, ImportError) and top in OPTIONAL_PACKAGES:
            try:
                absent = importlib.util.find_spec(top) is None
            except (ImportError, ValueError):  # a parent missing, or blocked in sys.modules
                absent = True
            if absent:
                return top
        error = error.__cause__ or error.__context__
    return None


def skip_reason(package):
    """What a test needing the missing optional ``package`` says when it skips."""
    return f"needs {package} ({OPTIONAL_PACKAGES[package]})"


#: Modules that failed to import (name -> error), reported by one test rather
#: than stopping the collection of every other test here.
IMPORT_ERRORS = {}
#: Modules that need a missing optional package (name -> the package).
NEEDS_PACKAGE = {}


def _import(name):
    """The module, or None if it needs an optional package that is not
    installed (``cdl.sklearn`` without scikit-learn) or fails to import."""
    try:
        return importlib.import_module(name)
    except Exception as error:  # noqa: BLE001 - reported by test_every_module_imports
        package = missing_optional_package(error)
        if package is not None:
            NEEDS_PACKAGE[name] = package
        else:
            IMPORT_ERRORS[name] = f"{type(error).__name__}: {error}"
    return None


def test_every_module_imports():
    """Every module of cdl imports (in the order pkgutil lists them, which is
    how the doctests below are collected)."""
    for info in pkgutil.walk_packages(cdl.__path__, "cdl."):
        if not info.name.startswith("cdl._kernels") and info.name != "cdl.__main__":
            _import(info.name)
    assert not IMPORT_ERRORS, IMPORT_ERRORS


def _modules():
    return [module for name in PUBLIC_MODULES if (module := _import(name)) is not None]


def _public_classes():
    return {id(obj) for module in _modules() for name in module.__all__
            if isinstance(obj := getattr(module, name), type)}


def _attribute_documented(module, name):
    """True if the module-level assignment of ``name`` has a ``#:`` comment
    above it or a string literal right after it (what Sphinx documents)."""
    source = inspect.getsource(module)
    lines = source.splitlines()
    body = ast.parse(source).body
    for i, node in enumerate(body):
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) else [])
        if not any(isinstance(t, ast.Name) and t.id == name for t in targets):
            continue
        above = lines[node.lineno - 2].strip() if node.lineno >= 2 else ""
        below = body[i + 1] if i + 1 < len(body) else None
        if above.startswith("#:") or (
                isinstance(below, ast.Expr) and isinstance(below.value, ast.Constant)
                and isinstance(below.value.value, str)):
            return True
    return False


def public_names():
    """``(qualified name, kind, object)`` for every public name, each object once."""
    public_classes = _public_classes()
    seen = set()
    found = []
    for module in _modules():
        found.append((module.__name__, "module", module))
        for name in module.__all__:
            obj = getattr(module, name)
            qualname = f"{module.__name__}.{name}"
            if isinstance(obj, types.ModuleType) or (name.startswith("__") and name.endswith("__")):
                continue  # modules are checked themselves; __version__ is a string
            if not (isinstance(obj, type) or callable(obj)):
                found.append((qualname, "data", (module, name)))
                continue
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            found.append((qualname, "class" if isinstance(obj, type) else "function", obj))
            if isinstance(obj, type):
                found.extend(_public_members(qualname, obj, public_classes, seen))
    return found


def _public_members(qualname, cls, public_classes, seen):
    members = []
    for name in sorted(dir(cls)):
        if name.startswith("_"):
            continue
        owner = next((c for c in cls.__mro__ if name in vars(c)), None)
        if owner is None or owner.__module__ == "builtins" or not \
                owner.__module__.startswith("cdl") or (owner is not cls and id(owner) in public_classes):
            continue
        attr = vars(owner)[name]
        if isinstance(attr, (staticmethod, classmethod)):
            attr = attr.__func__
        if not (inspect.isfunction(attr) or isinstance(attr, property)):
            continue  # plain class attributes (defaults) are described by the class
        if (id(owner), name) in seen:
            continue
        seen.add((id(owner), name))
        doc_source = getattr(cls, name) if inspect.isfunction(attr) else attr
        members.append((f"{qualname}.{name}", "method", doc_source))
    return members


def _has_docstring(kind, obj):
    if kind == "data":
        return _attribute_documented(*obj)
    if kind == "class":
        return bool((vars(obj).get("__doc__") or "").strip())  # its own, not a base's
    return bool((inspect.getdoc(obj) or "").strip())  # methods may inherit theirs


def test_every_public_name_has_a_docstring():
    names = public_names()
    assert len(names) > 300, "the walk over public names found too few of them"
    missing = [name for name, kind, obj in names if not _has_docstring(kind, obj)]
    assert not missing, "public names without a docstring:\n  " + "\n  ".join(missing)


#: A NumPy-style ``Examples`` section header: the word, then a dashed underline.
_EXAMPLES_HEADER = re.compile(r"^Examples[ \t]*\n-{3,}[ \t]*$", re.MULTILINE)


def _has_examples(kind, obj):
    doc = vars(obj).get("__doc__") if kind == "class" else inspect.getdoc(obj)
    return bool(_EXAMPLES_HEADER.search(inspect.cleandoc(doc or "")))


def test_every_public_class_and_function_has_examples():
    """Public classes and module-level functions show how they are used in an
    ``Examples`` section (methods, properties and data need not)."""
    names = [(name, kind, obj) for name, kind, obj in public_names()
             if kind in ("class", "function")]
    assert len(names) > 100, "the walk over public names found too few of them"
    missing = [name for name, kind, obj in names if not _has_examples(kind, obj)]
    assert not missing, ("public classes and functions without an Examples section:\n  "
                         + "\n  ".join(missing))


# --- doctests ------------------------------------------------------------------

def _python_modules():
    """Every pure-Python module of cdl (compiled kernels and ``__main__`` aside)."""
    names = ["cdl"] + [info.name for info in pkgutil.walk_packages(cdl.__path__, "cdl.")
                       if not info.name.startswith("cdl._kernels")
                       and info.name != "cdl.__main__"]
    modules = []
    for name in names:
        module = _import(name)
        if module is not None and pathlib.Path(getattr(module, "__file__", "") or "").suffix == ".py":
            modules.append(module)
    return modules


def _doctests():
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests, seen = [], set()
    for module in _python_modules():
        for test in finder.find(module):
            key = (test.filename, test.lineno, test.name)
            if test.examples and key not in seen:
                seen.add(key)
                tests.append(test)
    return sorted(tests, key=lambda t: t.name)


DOCTESTS = _doctests()


def test_docstring_examples_exist():
    assert len(DOCTESTS) >= 100, f"only {len(DOCTESTS)} docstrings have examples"


class _Runner(doctest.DocTestRunner):
    """A doctest runner that remembers how its first example failed."""

    first_failure = None

    def report_failure(self, out, test, example, got):
        if self.first_failure is None:
            self.first_failure = ("output", example)
        super().report_failure(out, test, example, got)

    def report_unexpected_exception(self, out, test, example, exc_info):
        if self.first_failure is None:
            self.first_failure = (exc_info[1], example)
        super().report_unexpected_exception(out, test, example, exc_info)


def run_doctest(test):
    """Run a docstring's examples; fail with doctest's report if one fails,
    or skip if the first to fail raised for want of an optional package."""
    saved = np.get_printoptions()
    np.set_printoptions(precision=8, threshold=1000, linewidth=75, suppress=False,
                        floatmode="maxprec", sign="-", legacy=False)
    try:
        runner = _Runner(optionflags=OPTIONFLAGS)
        test = doctest.DocTest(test.examples, dict(test.globs), test.name, test.filename,
                               test.lineno, test.docstring)
        out = []
        result = runner.run(test, out=out.append, clear_globs=False)
    finally:
        np.set_printoptions(**saved)
    if result.failed:
        package = missing_optional_package(runner.first_failure[0])
        if package is not None:
            pytest.skip(skip_reason(package))
    assert result.failed == 0, "".join(out)


def _doctest_params():
    """One parameter per docstring with examples, and a skipped one per
    module that could not be imported for want of an optional package."""
    return [pytest.param(test, id=test.name) for test in DOCTESTS] + [
        pytest.param(None, id=name, marks=pytest.mark.skip(reason=skip_reason(package)))
        for name, package in sorted(NEEDS_PACKAGE.items())]


@pytest.mark.parametrize("test", _doctest_params())
def test_docstring_example(test, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples may write files
    run_doctest(test)


def _doctest_named(name):
    return next(test for test in DOCTESTS if test.name == name)


@pytest.mark.parametrize("name", ["cdl.onnx", "cdl.onnx.export", "cdl.onnx.to_onnx"])
def test_an_example_needing_a_missing_package_skips_and_says_what_to_install(
        name, tmp_path, monkeypatch):
    """The examples of cdl.onnx, run as if onnx were not installed, skip
    naming the extra to install (cdl.onnx raises an ImportError of its own
    there, from None, with the one naming onnx as its context)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes ``import onnx`` fail
    with pytest.raises(pytest.skip.Exception, match=re.escape(
            "needs onnx (pip install 'cdl[onnx]')")):
        run_doctest(_doctest_named(name))


def test_an_example_that_fails_otherwise_still_fails(monkeypatch):
    """Only a missing optional package skips: an ImportError for a package
    that is not optional, or one that is installed, fails the example."""
    example = doctest.DocTestParser().get_doctest(
        ">>> import not_a_package_of_anyone\n", {}, "example", None, 0)
    with pytest.raises(AssertionError, match="No module named 'not_a_package_of_anyone'"):
        run_doctest(example)
    raised = ImportError("numpy is broken", name="numpy")
    assert missing_optional_package(raised) is None
    monkeypatch.setitem(OPTIONAL_PACKAGES, "numpy", "pip install numpy")
    assert missing_optional_package(raised) is None  # installed: not a reason to skip


def test_an_optional_package_is_found_behind_cdls_own_import_error():
    try:
        try:
            import onnx_is_missing  # noqa: F401
        except ImportError:
            raise ImportError("cdl.onnx needs the onnx package") from None
    except ImportError as error:
        wrapped = error
    assert wrapped.__cause__ is None and wrapped.__suppress_context__
    assert missing_optional_package(wrapped) is None  # not an optional package
    wrapped.__context__.name = "onnx.helper"
    found = missing_optional_package(wrapped)
    assert found == ("onnx" if importlib.util.find_spec("onnx") is None else None)

