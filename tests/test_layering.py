"""Imports go one way: dynamics <- model <- train <- compare <- cli; data <- train (STYLE §1)."""

import ast
from pathlib import Path

import pytest

import sympformer

ROOT = Path(sympformer.__file__).parent
ALLOWED = {  # package -> sympformer subpackages it may import (files: atomic writes, a leaf)
    "dynamics": {"dynamics"},
    "model": {"dynamics", "model", "files"},
    "data": {"data", "files"},
    "train": {"dynamics", "model", "data", "train", "files"},
    "compare": {"dynamics", "model", "data", "train", "compare", "files"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return {n.split(".")[1] for n in names if n.startswith("sympformer.") and n.count(".") >= 1}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_packages_import_only_downwards(package):
    for path in (ROOT / package).glob("*.py"):
        bad = _imports(path) - ALLOWED[package]
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_dynamics_imports_only_torch_and_the_standard_library():
    for path in (ROOT / "dynamics").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom | ast.Import):
                mods = (
                    [node.module]
                    if isinstance(node, ast.ImportFrom)
                    else [a.name for a in node.names]
                )
                for mod in mods:
                    top = (mod or "").split(".")[0]
                    assert top in {
                        "torch",
                        "math",
                        "typing",
                        "collections",
                        "dataclasses",
                        "__future__",
                        "sympformer",
                    }, f"{path.name} imports {mod}"


def test_files_is_a_leaf():
    assert not _imports(ROOT / "files.py"), "sympformer.files must import nothing of ours"
