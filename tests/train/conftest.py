"""Fixtures of the training tests: one text corpus, one token cache, one finished tiny run."""

from pathlib import Path

import pytest

from sympformer.train import fit
from tests.train.helpers import tiny_config, write_text


@pytest.fixture(scope="session")
def text_file(tmp_path_factory) -> Path:
    return write_text(tmp_path_factory.mktemp("text") / "corpus.txt")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, text_file, cache_dir) -> Path:
    """A finished 40-step smoke run (read-only: copy it with `copy_run` before changing it)."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    cfg = tiny_config(
        text_file, cache_dir, max_steps=40, batch_size=8, lr=1e-2, samples=1, sample_prompt="in the"
    )
    fit(cfg, out=run_dir)
    return run_dir
