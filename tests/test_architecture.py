"""The package tree is the architecture: imports point down the layers, never up, never in a cycle.

The walk reads every module with ``ast`` and collects every ``import`` / ``from ... import`` in it,
wherever it sits: at module level, inside functions and methods (lazy imports), and under
``if TYPE_CHECKING:``. Type-only imports count too: an upward one there still means the lower
layer knows about the higher one, and mypy follows it like any other import. Expected layers come
from docs/architecture.md (decided for this round), not from the code under test.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mclip_explorer"
MAX_LINES = 400

# Higher numbers sit higher; a module may import its own layer or lower ones. A module's layer is
# its first package below mclip_explorer/ (or its own name for a top-level module).
LAYERS: dict[str, int] = {
    "_version": 0,
    "_files": 0,
    "errors": 0,
    "images": 0,
    "models": 1,
    "interop": 1,
    "collection": 2,
    "data": 3,  # the bundled sample: builds its table with collection.sources helpers
    "analysis": 3,
    "widget": 4,
    "cli": 5,  # the command line sits on top: it may wire anything below it
    "__init__": 5,  # the package facade re-exports (lazily) from every layer
}
# Layers of the same rank that still must not know about each other.
SIBLINGS_APART = [("models", "interop"), ("data", "analysis")]
# Edges that the ranks would allow but the design does not: a shell has no notebook, so the
# command line never imports the widget layer.
FORBIDDEN = [("cli", "widget")]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base.pop()
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _imports(module: str, is_package: bool, source: str, known: set[str]) -> set[str]:
    """The package modules that ``module`` imports, anywhere in its body."""
    found: set[str] = set()
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, is_package, node)
            # `from pkg import mod` imports the submodule pkg.mod when one exists
            targets = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known]
            targets = targets or [target]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target.startswith("mclip_explorer") and target != module:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {
        name: _imports(name, path.name == "__init__.py", path.read_text(encoding="utf-8"), known)
        for name, path in modules.items()
    }


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_module_has_a_layer() -> None:
    unknown = sorted({_layer(m) for m in _modules()} - set(LAYERS))
    assert not unknown, f"modules outside the decided layers {sorted(LAYERS)}: {unknown}"


def _upward(graph: dict[str, set[str]]) -> list[str]:
    """Every edge that points to a higher layer, or between layers kept apart."""
    upward = []
    for module, targets in graph.items():
        for target in targets:
            low, high = _layer(module), _layer(target)
            apart = {low, high} in map(set, SIBLINGS_APART) or (low, high) in FORBIDDEN
            if LAYERS.get(high, 99) > LAYERS.get(low, -1) or apart:
                upward.append(f"{module} -> {target}")
    return sorted(upward)


def test_imports_never_point_up() -> None:
    upward = _upward(_graph())
    assert not upward, "upward or sideways imports:\n" + "\n".join(upward)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles found by a depth-first walk, each as the modules along it."""
    # A package's __init__ re-exports its children, and children import their siblings through the
    # package path; an edge child -> own-ancestor-package is how Python loads them, not a cycle
    # of design, so it is left out. Everything else counts.
    edges = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return cycles


def test_no_import_cycles() -> None:
    cycles = _cycles(_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_checks_catch_what_they_are_for() -> None:
    """On made-up graphs: an upward edge, a forbidden one, a sideways one and a cycle are seen."""
    pkg = "mclip_explorer"
    graph = {f"{pkg}.collection.core": {f"{pkg}.widget.api", f"{pkg}.models.base"},
             f"{pkg}.cli": {f"{pkg}.widget.api"},
             f"{pkg}.models.base": {f"{pkg}.interop.x"}}
    assert _upward(graph) == [f"{pkg}.cli -> {pkg}.widget.api",
                              f"{pkg}.collection.core -> {pkg}.widget.api",
                              f"{pkg}.models.base -> {pkg}.interop.x"]
    loop = {f"{pkg}.models.a": {f"{pkg}.models.b"}, f"{pkg}.models.b": {f"{pkg}.models.a"},
            f"{pkg}.models.c": {f"{pkg}.models"}, f"{pkg}.models": {f"{pkg}.models.c"}}
    assert _cycles(loop) == [[f"{pkg}.models.a", f"{pkg}.models.b", f"{pkg}.models.a"]]


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: _module_name(p))
def test_modules_stay_small(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(PACKAGE.parent)} has {lines} lines"


def test_walker_sees_lazy_and_type_only_imports() -> None:
    """The walk itself: imports inside functions and under TYPE_CHECKING are found."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from mclip_explorer.widget import explorer\n"
        "def f():\n    from ..analysis import gap\n    import mclip_explorer.errors\n"
    )
    found = _imports("mclip_explorer.collection.core", False, source, set(_modules()))
    assert found == {
        "mclip_explorer.widget.explorer",
        "mclip_explorer.analysis.gap",
        "mclip_explorer.errors",
    }
