"""The import structure of docs/architecture.md, as a test:

    dynamics  <-  model  <-  train  <-  compare  <-  cli
                              ^
                   data  -----'

Imports only go down these arrows (data sits beside model, not under it); `files` and `check` are
leaves every layer may use; no two modules import each other, directly or through others."""

import ast
from pathlib import Path

import pytest

import sympformer

ROOT = Path(sympformer.__file__).parent
LEAVES = {"files", "check"}
BELOW = {
    "dynamics": set(),
    "model": {"dynamics"},
    "data": set(),
    "train": {"dynamics", "model", "data"},
    "compare": {"dynamics", "model", "data", "train"},
    "cli": {"dynamics", "model", "data", "train", "compare"},
}
"""Layer -> the layers it may import (besides itself and the leaves)."""
STDLIB_AND_TORCH = {"torch", "math", "typing", "collections", "dataclasses", "__future__"}


def _module_name(path: Path) -> str:
    parts = ["sympformer", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in ROOT.rglob("*.py")}


def imports(path: Path) -> set[str]:
    """The sympformer modules a file imports (`from a import b` names a.b if that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            subs = {f"{node.module}.{a.name}" for a in node.names}
            found |= (subs & MODULES.keys()) or {node.module}
    return {m for m in found if m == "sympformer" or m.startswith("sympformer.")}


def layer(module: str) -> str:
    """sympformer.<layer>...; the package root re-exports the model's public API (and
    __version__), so it counts as the model layer."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "model"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_go_down_the_diagram(module):
    own = layer(module)
    allowed = {own} | LEAVES | BELOW.get(own, set())
    if own in LEAVES:
        allowed = set()
    bad = {m for m in imports(MODULES[module]) if layer(m) not in allowed}
    assert not bad, f"{module} imports {sorted(bad)} (docs/architecture.md)"


def test_no_module_import_cycle():
    graph = {m: imports(p) & MODULES.keys() for m, p in MODULES.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = path[path.index(n) :] + [n]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n, [*path, n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_dynamics_imports_only_torch_and_the_standard_library():
    for path in (ROOT / "dynamics").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = (
                    [node.module]
                    if isinstance(node, ast.ImportFrom)
                    else [a.name for a in node.names]
                )
                for name in names:
                    top = (name or "").split(".")[0]
                    assert top in STDLIB_AND_TORCH | {"sympformer"}, f"{path.name} imports {name}"


def test_the_negative_control_finds_an_upward_import_and_a_cycle(tmp_path, monkeypatch):
    """The walker sees what it must: an upward import and a two-module cycle."""
    up = tmp_path / "up.py"
    up.write_text("from sympformer.train import fit\nfrom sympformer.model import lm\n")
    assert imports(up) == {"sympformer.train", "sympformer.model.lm"}
    fake = {"sympformer.a": {"sympformer.b"}, "sympformer.b": {"sympformer.a"}}
    monkeypatch.setattr("tests.test_layering.imports", lambda p: fake[p], raising=True)
    monkeypatch.setattr("tests.test_layering.MODULES", {m: m for m in fake}, raising=True)
    with pytest.raises(AssertionError, match="import cycle"):
        test_no_module_import_cycle()
