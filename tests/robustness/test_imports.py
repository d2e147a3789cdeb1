"""The package's import graph: no cycles, no private names across modules.

Every ``import`` and ``from ... import`` in every module of cdl counts,
at the top of a module or inside a function: an import inside a function
only postpones a cycle to run time, it does not remove the dependency.
A private name (one with a leading underscore, not a module) belongs to
its module; another module that needs it should get a public name instead.
"""
import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "cdl"


def _module_names():
    """Map each module's dotted name to its file."""
    names = {}
    for path in [*PACKAGE.rglob("*.py"), *PACKAGE.rglob("*.pyx")]:
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


MODULES = _module_names()


def _owner(name):
    """The longest module name that ``name`` starts with (a module itself,
    or the module that defines the attribute ``name`` ends with)."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name if name in MODULES else None


def _absolute(module, level, target):
    """The absolute name of a relative import in ``module``."""
    if not level:
        return target
    base = module.split(".")
    if MODULES[module].name != "__init__.py":
        base.pop()
    base = base[:len(base) - level + 1]
    return ".".join(base + ([target] if target else []))


def _scan(module):
    """Yield (kind, detail) for the imports of ``module``: ("edge", target
    module) and ("private", description)."""
    tree = ast.parse(MODULES[module].read_text(), str(MODULES[module]))
    bound = {}   # local name -> cdl module it refers to
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "cdl" or alias.name.startswith("cdl."):
                    yield "edge", _owner(alias.name)
                    if alias.asname:
                        bound[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, node.level, node.module)
            if not source or not (source == "cdl" or source.startswith("cdl.")):
                continue
            for alias in node.names:
                full = f"{source}.{alias.name}"
                if full in MODULES:
                    yield "edge", full
                    bound[alias.asname or alias.name] = full
                else:
                    yield "edge", _owner(source)
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        yield "private", f"from {source} import {alias.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in bound and node.attr.startswith("_") \
                and not node.attr.startswith("__") \
                and f"{bound[node.value.id]}.{node.attr}" not in MODULES:
            yield "private", f"{node.value.id}.{node.attr} (of {bound[node.value.id]}), " \
                             f"line {node.lineno}"


GRAPH = {}
PRIVATE = {}
for _name in [name for name, path in MODULES.items() if path.suffix == ".py"]:
    GRAPH[_name] = set()
    for _kind, _detail in _scan(_name):
        if _kind == "edge" and _detail and _detail != _name:
            GRAPH[_name].add(_detail)
        elif _kind == "private":
            PRIVATE.setdefault(_name, []).append(_detail)


def _cycles(graph):
    """The strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(start):
        # Iterative, so deep graphs cannot hit the recursion limit.
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return groups


def test_the_scan_sees_the_package():
    assert len(MODULES) > 30 and "cdl.layers.base" in MODULES
    assert "cdl.layers.base" in GRAPH["cdl.layers.dense"]


def test_the_cycle_finder_finds_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycles():
    cycles = _cycles(GRAPH)
    assert not cycles, "modules that import each other, directly or through others " \
        "(imports inside functions count):\n" + "\n".join(", ".join(group) for group in cycles)


def test_no_private_names_across_modules():
    assert not PRIVATE, "private names used from another module:\n" + "\n".join(
        f"{module}: {detail}" for module, details in sorted(PRIVATE.items())
        for detail in details)
