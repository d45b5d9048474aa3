"""Shared helpers of the benchmark scripts: model grid, timing with torch.utils.benchmark."""

from __future__ import annotations

import statistics
import time

import torch
from torch.utils import benchmark

from sympformer import build_model
from sympformer.dynamics import softmax_attention
from sympformer.dynamics.oracles import merge_heads, split_heads
from sympformer.model import ModelConfig, Variant, grid
from sympformer.model.attention import ClassicalAttention
from sympformer.train import TrainConfig, build_optimizer

BASELINE = Variant("gpt")
"""The model every ratio is measured against."""


def variants(archs=None, schemes=None, baseline: bool = False) -> list[Variant]:
    """`model.variant.grid` of the selected archs and schemes; ``baseline`` puts `gpt` first even
    when ``archs`` leaves it out (for the ratio scripts)."""
    out = grid(archs, schemes)
    return [BASELINE, *out] if baseline and BASELINE not in out else out


PAPER_MODEL = ModelConfig(vocab_size=512, n_layer=4, n_head=4, d_model=64)
"""The paper's small model (SPEC §9.1): 4 layers, 4 heads, width 64, MLP 256."""


def paper_config(variant: Variant, block_size: int, vocab_size: int = 512) -> ModelConfig:
    """``variant`` on the paper's small model with this context and vocabulary."""
    return variant.model(PAPER_MODEL, block_size=block_size, vocab_size=vocab_size)


CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}
"""Timers: wall clock, or the calling thread's CPU time. CPU time is the steadier measure on a
machine shared with other jobs, and valid only with one torch thread (``--threads 1``)."""


def median_time(fn, rounds: int, min_run_time: float, clock: str = "wall") -> list[float]:
    """Seconds per call of fn: one `blocked_autorange` measurement per round."""
    timer = benchmark.Timer(
        stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads(), timer=CLOCKS[clock]
    )
    return [timer.blocked_autorange(min_run_time=min_run_time).median for _ in range(rounds)]


def interleaved_samples(
    fns: dict[str, callable], rounds: int = 3, min_run_time: float = 0.5, clock: str = "wall"
) -> dict[str, list[float]]:
    """Seconds per call of each fn, one value per round; rounds interleave the candidates so that
    drift of the machine (other load, frequency) hits all of them alike, and the ratio of two
    candidates within a round is one sample of their ratio."""
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()  # warm-up (allocations, lazy init)
    for _ in range(rounds):
        for name, fn in fns.items():
            samples[name] += median_time(fn, 1, min_run_time, clock)
    return samples


def interleaved(
    fns: dict[str, callable], rounds: int = 3, min_run_time: float = 0.5, clock: str = "wall"
) -> dict[str, float]:
    """Median over rounds of `interleaved_samples`."""
    samples = interleaved_samples(fns, rounds, min_run_time, clock)
    return {k: statistics.median(v) for k, v in samples.items()}


class TwoPassAttention(ClassicalAttention):
    """GPT attention plus the oracle's first pass (keys as values, with the log-sum-exp), whose
    normaliser then weights the second pass's values: the attention work of an exact one-call
    softmax oracle, without its momentum stream."""

    def forward(self, x, tape=None):
        q, k, v = (split_heads(t, self.n_head) for t in self.qkv(x).chunk(3, dim=-1))
        abar, lse = softmax_attention(q, k, k, need_lse=True)
        y, _ = softmax_attention(q, k, v * torch.exp(-lse)[..., None])
        return self.proj(merge_heads(y + abar))


def two_pass_gpt(cfg: ModelConfig):
    """``gpt+pass``: a GPT (``cfg.arch`` gpt) whose blocks use `TwoPassAttention`, the floor of a
    one-call softmax scheme built from fused attention kernels (a reference, not a model)."""
    model = build_model(cfg)
    for block in model.blocks:
        block.attn.__class__ = TwoPassAttention
    return model


def train_step(model, batch: int, fwd=None, context: int | None = None, optimizer=None):
    """One optimizer step of the training path: forward + backward + AdamW on the model's parameter
    groups (`train.build_optimizer`: fused where PyTorch has it; or ``optimizer``), on fixed random
    tokens (B, T). ``fwd``: the module the forward runs through (e.g. ``torch.compile(model)``).
    Any model with ``cfg.vocab_size``, ``cfg.block_size`` and ``model(x, y) -> (logits, loss)``
    works (the authors' too, `benchmarks.authors`)."""
    cfg = model.cfg
    opt = build_optimizer(model, TrainConfig()) if optimizer is None else optimizer
    idx = torch.randint(cfg.vocab_size, (batch, (context or cfg.block_size) + 1))
    x, y = idx[:, :-1].contiguous(), idx[:, 1:].contiguous()
    fwd = model if fwd is None else fwd

    def run():
        _, loss = fwd(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return run
