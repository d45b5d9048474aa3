"""Atomic file and folder writes, shared by every layer (standard library only, imports nothing of
ours)."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def atomic_write(path: Path, write: Callable[[str], object]) -> None:
    """``write(tmp)`` to a temporary file next to ``path``, fsync it, then rename it over ``path``:
    readers and a crash see the old file or the new one, never a half-written one. The file gets
    the usual umask permissions (not mkstemp's 0600); the temporary is removed if writing fails."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would survive the rename
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """`atomic_write` of a UTF-8 text."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


@contextmanager
def staged_folder(folder: Path, last_file: str) -> Iterator[Path]:
    """Fill a hidden temporary folder next to ``folder``, then rename it to ``folder``: readers
    and a crash see no folder or the complete one. The temporary is removed if the block raises.

    Args:
        folder: the folder to create (its parents are created too).
        last_file: the file written last; if ``folder`` holds it when the rename fails, another
            process completed the same folder first, and ours is dropped.

    Yields:
        The temporary folder to write into.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.parent / f".{folder.name}.{uuid.uuid4().hex}.tmp"  # hidden until complete
    staging.mkdir()
    try:
        yield staging
        try:
            os.rename(staging, folder)
        except OSError:
            if not (folder / last_file).is_file():  # not another process finishing the same folder
                raise
            shutil.rmtree(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
