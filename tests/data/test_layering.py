import ast
from pathlib import Path

import sympformer.data


def test_data_imports_no_other_sympformer_subpackage():
    for path in Path(sympformer.data.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        modules = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        ours = {m for m in modules if m.startswith("sympformer")}
        assert all(m.startswith("sympformer.data") for m in ours), (path, ours)
