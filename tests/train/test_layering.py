import ast
from pathlib import Path

import sympformer

SRC = Path(sympformer.__file__).parent


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    modules = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    return {m for m in modules if m.startswith("sympformer")}


def test_train_imports_only_model_data_dynamics_and_itself():
    allowed = ("sympformer.train", "sympformer.model", "sympformer.data", "sympformer.dynamics",
               "sympformer.files")  # fmt: skip
    for path in (SRC / "train").glob("*.py"):
        for module in imported_modules(path):
            assert module == "sympformer" or module.startswith(allowed), (path.name, module)


def test_nothing_imports_the_cli():
    for path in SRC.rglob("*.py"):
        if path.name != "cli.py":
            assert "sympformer.cli" not in imported_modules(path), path
