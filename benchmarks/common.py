"""Shared helpers of the benchmark scripts: model grid, timing with torch.utils.benchmark."""

from __future__ import annotations

import statistics

import torch
from torch.utils import benchmark

from sympformer import ARCHS, ModelConfig
from sympformer.dynamics import SCHEMES

BASELINE = ("gpt", None)
"""The model every ratio is measured against."""


def grid(archs=None, schemes=None, baseline: bool = False) -> list[tuple[str, str | None]]:
    """(arch, scheme) pairs: baselines once, accelerated archs with every (selected) scheme;
    ``baseline`` puts `gpt` first even when ``archs`` leaves it out (for the ratio scripts)."""
    out = [BASELINE] if baseline and archs and "gpt" not in archs else []
    for arch, spec in ARCHS.items():
        if archs and arch not in archs:
            continue
        if spec.accelerated:
            out += [(arch, s) for s in SCHEMES if not schemes or s in schemes]
        else:
            out.append((arch, None))
    return out


def label(arch: str, scheme: str | None) -> str:
    return arch if scheme is None else f"{arch}:{scheme}"


def paper_config(
    arch: str, scheme: str | None, block_size: int, vocab_size: int = 512
) -> ModelConfig:
    """The paper's small model (SPEC §9.1): 4 layers, 4 heads, width 64, MLP 256."""
    return ModelConfig(
        arch=arch,
        scheme=scheme,
        vocab_size=vocab_size,
        n_layer=4,
        n_head=4,
        d_model=64,
        block_size=block_size,
    )


def median_time(fn, rounds: int, min_run_time: float) -> list[float]:
    """Seconds per call of fn: one `blocked_autorange` measurement per round."""
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return [timer.blocked_autorange(min_run_time=min_run_time).median for _ in range(rounds)]


def interleaved(
    fns: dict[str, callable], rounds: int = 3, min_run_time: float = 0.5
) -> dict[str, float]:
    """Median seconds per call of each fn; rounds interleave the candidates so that drift of the
    machine (other load, frequency) hits all of them alike."""
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()  # warm-up (allocations, lazy init)
    for _ in range(rounds):
        for name, fn in fns.items():
            samples[name] += median_time(fn, 1, min_run_time)
    return {k: statistics.median(v) for k, v in samples.items()}
