"""When `torch.compile` pays: the toolchain probe and warm-up model behind `train.compile: auto`.

Compiling costs a warm-up (tracing, code generation and C++ compilation of the training graph, and
once more of the evaluation graph) and then makes every step faster. It pays when the run saves
more than the warm-up:

    steps x eager_step_seconds x (1 - 1 / speedup) > warm-up seconds.

The defaults below were measured on this project's 2-core CPU machine (see `WARMUP_SECONDS`);
`decide` applies the rule and says why, for the log and run.json.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

WARMUP_SECONDS = 120.0
"""Warm-up estimate (training + evaluation graph) with an empty compile cache. Measured on the
2-core CPU, 2026-11-29, training graph only: gpt 6 s, yurii 4 s, symp presymp_euler 69 s,
etd_ab2 138 s, symp_linear 114 s (paper model, benchmarks.targets), and up to about 300 s for
symp on a heavily loaded machine; the evaluation graph adds to it. A warm compile cache (a second
run of the same model) takes a fraction."""

SPEEDUP = 1.2
"""Eager/compiled step-time ratio assumed for an arch not in `SPEEDUPS`."""

SPEEDUPS = {"gpt": 0.96, "yurii": 1.05, "symp": 1.27, "gpt_linear": 1.15, "symp_linear": 1.40}
"""Eager/compiled training-step time by arch, measured by benchmarks.targets (paper model,
context 128, micro-batch 6, 1 thread, CPU clock; 2026-11-29): gpt gains nothing from compiling
on CPU at one thread (its attention is already one fused kernel), the accelerated archs gain
most. At 2 threads on the idle machine (2026-11-30, medians of 5 rounds) the gains were larger
(gpt 1.14, yurii 1.15, symp 1.38, gpt_linear 1.22, symp_linear 1.44) and spread by ±0.1-0.2, so
these one-thread values keep `auto` on the conservative side (a compare job runs at one thread)."""

PROBE = '#include <omp.h>\nextern "C" int probe(void) { return omp_get_max_threads(); }\n'
"""A C++17 OpenMP snippet: Inductor's CPU kernels need a C++17 compiler with OpenMP."""


@dataclass(frozen=True)
class CompileDecision:
    """Whether to compile, and why (printed and recorded in run.json)."""

    enabled: bool
    reason: str


def cpp_compiler() -> str | None:
    """The C++ compiler Inductor would use ($CXX, else g++; clang++ on macOS), if it is on PATH.
    Mirrors the default of `torch._inductor.config.cpp.cxx` without importing Inductor (which
    takes seconds)."""
    name = os.environ.get("CXX", "clang++" if sys.platform == "darwin" else "g++")
    return shutil.which(name)


@functools.cache
def toolchain_ok(device_type: str = "cpu") -> bool:
    """A working toolchain for Inductor on this device type: for CPU a C++ compiler that builds a
    small OpenMP shared library (about 0.2 s, once per process); for CUDA the Triton package.
    Other devices (mps, ...): False. Never compiles a model."""
    if device_type == "cuda":
        return importlib.util.find_spec("triton") is not None
    if device_type != "cpu" or sys.platform == "win32":
        return False
    cxx = cpp_compiler()
    if cxx is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [cxx, "-x", "c++", "-std=c++17", "-O1", "-fPIC", "-shared", "-fopenmp"]
        cmd += ["-o", os.path.join(tmp, "probe.so"), "-"]
        try:
            result = subprocess.run(cmd, input=PROBE, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            return False
    return result.returncode == 0


def should_compile(
    steps: int,
    eager_step_seconds: float,
    warmup_seconds: float = WARMUP_SECONDS,
    speedup: float = SPEEDUP,
) -> bool:
    """True when compiling saves more time than its warm-up costs over ``steps`` optimizer steps.

    Args:
        steps: optimizer steps the run will take (e.g. max_steps minus the resumed step).
        eager_step_seconds: seconds of one eager optimizer step (measure the first step).
        warmup_seconds: compile warm-up estimate (`WARMUP_SECONDS`).
        speedup: expected eager/compiled step-time ratio (`SPEEDUP`).
    """
    return saved_seconds(steps, eager_step_seconds, speedup) > warmup_seconds


def saved_seconds(steps: int, eager_step_seconds: float, speedup: float) -> float:
    """steps x eager_step_seconds x (1 - 1/speedup): the time compiling saves, warm-up aside."""
    return steps * eager_step_seconds * (1.0 - 1.0 / speedup)


def decide(
    setting: bool | str,
    device_type: str,
    steps: int,
    eager_step_seconds: float,
    warmup_seconds: float = WARMUP_SECONDS,
    speedup: float = SPEEDUP,
) -> CompileDecision:
    """The `train.compile` decision: True/False force it; "auto" compiles when the toolchain
    works (`toolchain_ok`) and the run repays the warm-up (`should_compile`)."""
    if setting is True or setting is False:
        return CompileDecision(setting, f"train.compile={str(setting).lower()} (forced)")
    if setting != "auto":
        raise ValueError(f"train.compile={setting!r} is not one of true, false, auto")
    if not toolchain_ok(device_type):
        return CompileDecision(False, f"auto: no working compile toolchain for {device_type}")
    saved = saved_seconds(steps, eager_step_seconds, speedup)
    enabled = saved > warmup_seconds
    verdict = "repays" if enabled else "would not repay"
    return CompileDecision(
        enabled,
        f"auto: {steps} steps x {eager_step_seconds:.3f} s at {speedup:.2f}x save ~{saved:.0f} s, "
        f"which {verdict} a ~{warmup_seconds:.0f} s warm-up",
    )


def _forward_backward(module: nn.Module, batch: Sequence[Tensor], autocast: Callable) -> None:
    x, y = batch
    with autocast():
        _, loss = module(x, y)
    loss.backward()


def eager_step_seconds(
    model: nn.Module, batch: Sequence[Tensor], autocast: Callable[[], AbstractContextManager]
) -> float:
    """Seconds of one eager forward/backward pass of ``model`` on ``batch`` = (x, y), (B, T) each:
    the second of two (the first pays lazy initialisation). Gradients are dropped afterwards;
    the weights are not touched."""
    seconds = 0.0
    for _ in range(2):
        start = time.perf_counter()
        _forward_backward(model, batch, autocast)
        seconds = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    return seconds


def warm_up(
    model: nn.Module,
    train_model: nn.Module,
    fwd_model: nn.Module,
    batch: Sequence[Tensor],
    autocast: Callable[[], AbstractContextManager],
) -> float:
    """Seconds to compile the training graph (one forward/backward of ``train_model``, gradients
    dropped) and the evaluation graph (``fwd_model`` in eval mode without gradients) of the
    compiled ``model``, so that neither lands in the first timed steps."""
    start = time.perf_counter()
    _forward_backward(train_model, batch, autocast)
    model.zero_grad(set_to_none=True)
    model.eval()
    with torch.no_grad(), autocast():
        fwd_model(*batch)
    model.train()
    return time.perf_counter() - start
