import ast
from pathlib import Path

import sympformer.data


def test_data_imports_no_other_sympformer_subpackage():
    for path in Path(sympformer.data.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        modules = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        ours = {m for m in modules if m.startswith("sympformer")}
        allowed = ("sympformer.data", "sympformer.files")  # files: atomic writes, a leaf
        assert all(m.startswith(allowed) for m in ours), (path, ours)
