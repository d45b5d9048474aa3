"""Helpers of the training tests: tiny configs, command lines, folder snapshots."""

import hashlib
import os
import random
import shutil
from pathlib import Path

from sympformer.train import ExperimentConfig, preset_config, read_metrics

WORDS = "in the beginning god created heaven and earth light was good day night".split()


def write_text(path: Path, n_lines: int = 1500, seed: int = 0) -> Path:
    """Deterministic word salad over a small vocabulary (~60 kB): learnable far below its unigram
    entropy, because spelling is predictable."""
    rng = random.Random(seed)
    lines = [" ".join(rng.choice(WORDS) for _ in range(6)) + "." for _ in range(n_lines)]
    path.write_text("\n".join(lines) + "\n")
    return path


def tiny_config(text_file: Path, cache_dir: Path, **train) -> ExperimentConfig:
    """The smoke preset on `text_file`, no progress bar, no samples unless asked."""
    return preset_config(
        "smoke",
        data={"dataset": "text", "path": str(text_file), "cache_dir": str(cache_dir)},
        train={"progress": False, "samples": 0, **train},
    )


def tiny_args(text_file: Path, cache_dir: Path, *extra: str) -> list[str]:
    """The same as command-line arguments of `sympformer train`."""
    return [
        "train",
        "--preset",
        "smoke",
        "--data",
        str(text_file),
        "--data.cache_dir",
        str(cache_dir),
        "--train.progress",
        "false",
        "--train.samples",
        "0",
        *extra,
    ]


def rows_without_clock(run_dir: Path) -> list[dict[str, str]]:
    """metrics.csv rows without the wall-clock column."""
    return [
        {k: v for k, v in r.items() if k != "time_s"} for r in read_metrics(run_dir / "metrics.csv")
    ]


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file (symlinks: their target) under `folder`."""
    state = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root, name)
            rel = path.relative_to(folder).as_posix()
            if path.is_symlink():
                state[rel] = "-> " + os.readlink(path)
            elif path.is_file():
                state[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                state[rel] = "dir"
    return state


def copy_run(run_dir: Path, dest: Path) -> Path:
    shutil.copytree(run_dir, dest, symlinks=True)
    return dest
