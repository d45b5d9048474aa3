"""Every ratio of issue 15 ("training speed") in one run, each against baselines measured in it.

    python -m benchmarks.targets                  # eager and compiled, memory in subprocesses
    python -m benchmarks.targets --no-compile     # eager only (minutes instead of tens of minutes)

1. Training step (forward + backward + AdamW of the training path) of the paper model: 4 layers,
   4 heads, width 64, context 128, vocabulary 512, micro-batch 6, fp32; eager and `torch.compile`
   (as the training loop wraps the model), measured in interleaved rounds. Prints tokens/s, the
   ratio to gpt (eager to eager, compiled to compiled), the compile speed-up and warm-up.
2. Against the authors, ours on the default training path of a long run (compiled where
   `train.compile` auto expects a gain, i.e. every arch but gpt, when a toolchain is found).
   With ``--authors DIR`` (a directory holding their ``model.py``, e.g. a clone of
   ViktorAJStein/SympFormer; `benchmarks.authors` builds their six models) their training steps
   are timed eagerly in the same interleaved rounds, and ours / theirs is a per-round ratio like
   every other. Without it, their tokens/s stored from issue 15's table are used; those carry the
   machine's state of that day, so the column "at idle gpt" rescales ours so that our eager gpt
   reads its value of that day (a load correction that assumes every model slows down alike).
3. gpt_linear against gpt at context 128 (from 1) and 4096 (training step, batch 1).
4. Peak training memory at context 1024 (batch 4) of the one-call softmax schemes against gpt,
   each in a fresh process (benchmarks.memory), with and without activation checkpointing.

5. Floors, measured in the same rounds: ``gpt+pass`` (`common.two_pass_gpt`: a GPT whose
   attention also runs the second, normaliser-weighted softmax pass of the exact one-call oracle,
   i.e. its attention work without the momentum stream) and ``gpt_linear/1 head`` (the linear GPT
   with its four heads merged into one of width 64, the layout of the authors' linear code; ours
   keeps heads separate).
   Beside each model: its ATen operator count per training step (load-independent) and, from a
   chain of tiny autograd operations, the eager cost of one operator on this machine, the price
   of every operator that moves no data worth mentioning at this size. And where the step goes:
   self time in the fused attention kernels and in matrix products (torch.profiler), the rest
   being elementwise work, dispatch and the optimizer; the "exact-work floor" is gpt's step plus
   the model's extra attention and matrix time, i.e. its ratio to gpt if everything else cost
   what gpt's does.
6. Linear attention's two exact causal forms (masked quadratic, chunked prefix states), forward +
   backward at the paper's shapes, by context: the crossover behind `LINEAR_QUADRATIC_MAX`.

Every ratio is the median over rounds of the ratio within a round (the candidates are interleaved
in each round), with its [min, max] over rounds: the spread of this run. The last table lists each
target with its value and whether it holds in this run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.authors import builders, their_step
from benchmarks.common import (
    CLOCKS,
    PAPER_MODEL,
    interleaved_samples,
    paper_config,
    train_step,
    two_pass_gpt,
)
from benchmarks.memory import peak_mib
from sympformer import build_model
from sympformer.dynamics.kernels import LINEAR_CHUNK, linear_attention
from sympformer.model import Variant
from sympformer.train.compile import SPEEDUP, SPEEDUPS, toolchain_ok

AUTHORS = {
    "gpt": 30_100,
    "yurii": 22_600,
    "symp:presymp_euler": 13_700,
    "symp:etd_ab2": 12_100,
    "gpt_linear": 40_200,
    "symp_linear:presymp_euler": 21_600,
}
"""The authors' training tokens/s, paper model, context 128, vocabulary 512, micro-batch 6, fp32,
2 CPU cores (issue 15; their `presymp_euler` is a damped Euler, compared here with ours of the
same name as in the issue; their `lin_presymp` is our symp_linear presymp_euler)."""

GPT_EAGER_IDLE = 36_800
"""Our eager gpt in the same table, on the idle machine (issue 15)."""

ONE_CALL = ["plain_euler", "damped_euler", "exp_euler", "presymp_euler", "ab2", "etd_ab2"]
"""The one-call softmax schemes of the memory target."""

CONTEXT, BATCH, VOCAB = 128, 6, 512

FLOORS = {
    "gpt+pass": lambda: two_pass_gpt(paper_config(Variant("gpt"), CONTEXT, VOCAB)),
    "gpt_linear/1 head": lambda: build_model(
        Variant("gpt_linear").model(PAPER_MODEL, block_size=CONTEXT, vocab_size=VOCAB, n_head=1)
    ),
}
"""Reference models of section 5 (not in the package's grid)."""


class Ratio(list):
    """Per-round samples of a ratio; prints as median [min, max]."""

    @property
    def median(self) -> float:
        return statistics.median(self)

    def __format__(self, spec: str) -> str:
        spec = spec or ".2f"
        return f"{self.median:{spec}} [{min(self):{spec}}, {max(self):{spec}}]"


def ratio(a: list[float], b: list[float] | float) -> Ratio:
    """a / b per round (b a list of the same rounds, or a constant)."""
    if isinstance(b, list):
        return Ratio(x / y for x, y in zip(a, b, strict=True))
    return Ratio(x / b for x in a)


@dataclass
class Target:
    name: str
    value: Ratio
    bound: float
    upper: bool  # True: value <= bound is the target

    @property
    def holds(self) -> str:
        """ "yes" / "NO" for the median, noting when the bound lies within [min, max]."""
        ok = (lambda v: v <= self.bound) if self.upper else (lambda v: v >= self.bound)
        verdict = "yes" if ok(self.value.median) else "NO"
        if ok(min(self.value)) == ok(max(self.value)):
            return verdict
        return f"{verdict} (bound within the spread)"

    def row(self) -> str:
        sign = "<=" if self.upper else ">="
        return f"| {self.name} | {self.value} | {sign} {self.bound:g} | {self.holds} |"


def _timed_first_step(step) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def _build(label: str):
    torch.manual_seed(0)
    if label in FLOORS:
        return FLOORS[label]()
    return build_model(paper_config(Variant.parse(label), CONTEXT, VOCAB))


def training_steps(
    labels, compile_models: bool, rounds: int, min_run_time: float, clock: str, extra=None
):
    """The step functions (keys "label" and, compiled, "label [c]"), their seconds per optimizer
    step per round (with those of ``extra``, name -> step, timed in the same rounds), and the
    compile warm-up in seconds."""
    fns, warmup = {}, {}
    for label in labels:
        fns[label] = train_step(_build(label), BATCH)
        if compile_models:
            model = _build(label)
            step = train_step(model, BATCH, torch.compile(model))
            first = _timed_first_step(step)
            warmup[label] = first - min(_timed_first_step(step) for _ in range(3))
            fns[f"{label} [c]"] = step
            print(f"  compiled {label}: warm-up {warmup[label]:.0f} s", flush=True)
    timed = {**fns, **(extra or {})}
    return fns, interleaved_samples(timed, rounds, min_run_time, clock), warmup


ATTENTION_OPS = frozenset(
    {
        "aten::_scaled_dot_product_flash_attention_for_cpu",
        "aten::_scaled_dot_product_flash_attention_for_cpu_backward",
    }
)
MATRIX_OPS = frozenset({"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"})


@dataclass(frozen=True)
class StepProfile:
    """One call of a training step under torch.profiler: ATen operators dispatched (forward,
    backward, optimizer; views included) and seconds of self time in the fused attention kernels
    and in matrix products, the work an exact implementation of the model cannot skip."""

    ops: int
    attention: float
    matrix: float


def profile_step(step, calls: int = 5) -> StepProfile:
    """`StepProfile` of ``step`` (eager or compiled), averaged over ``calls`` profiled calls."""
    step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            step()
    events = prof.key_averages()

    def seconds(names: frozenset) -> float:
        return sum(e.self_cpu_time_total for e in events if e.key in names) / 1e6 / calls

    ops = sum(e.count for e in events if e.key.startswith("aten::")) // calls
    return StepProfile(ops, seconds(ATTENTION_OPS), seconds(MATRIX_OPS))


def interleaved_profiles(fns: dict, rounds: int, calls: int = 3) -> dict[str, StepProfile]:
    """`profile_step` of each step function in ``rounds`` interleaved rounds; per function the
    median attention and matrix seconds over rounds (the profiler's view drifts with the machine
    like the timer's)."""
    samples = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            samples[k].append(profile_step(fn, calls))
    return {
        k: StepProfile(
            v[0].ops,
            statistics.median(p.attention for p in v),
            statistics.median(p.matrix for p in v),
        )
        for k, v in samples.items()
    }


def aten_ops(step) -> int:
    """ATen operators one call of ``step`` dispatches."""
    return profile_step(step, calls=1).ops


def tiny_op_seconds(rounds: int, min_run_time: float, clock: str, length: int = 200) -> float:
    """Eager seconds per ATen operator of a chain of ``length`` multiplications of an 8-element
    tensor, forward and backward: dispatch and autograd bookkeeping, no arithmetic to speak of."""
    x = torch.randn(8, requires_grad=True)

    def chain():
        y = x
        for _ in range(length):
            y = y * 1.0001
        y.sum().backward()

    seconds = statistics.median(
        interleaved_samples({"chain": chain}, rounds, min_run_time, clock)["chain"]
    )
    return seconds / aten_ops(chain)


def long_context_ratio(context: int, rounds: int, min_run_time: float, clock: str) -> Ratio:
    """gpt_linear / gpt training-step time at a long context (batch 1, eager)."""
    fns = {}
    for label in ("gpt", "gpt_linear"):
        torch.manual_seed(0)
        fns[label] = train_step(build_model(paper_config(Variant(label), context, VOCAB)), 1)
    times = interleaved_samples(fns, rounds, min_run_time, clock)
    return ratio(times["gpt_linear"], times["gpt"])


def linear_forms(contexts, rounds: int, min_run_time: float, clock: str) -> dict[int, Ratio]:
    """Masked quadratic / chunked time of causal linear attention (prefix mean, forward +
    backward) at the paper model's shapes (B, H, T, D) = (BATCH, 4, T, 16), per context."""
    out = {}
    for n in contexts:
        qkv = [torch.randn(BATCH, 4, n, 16, requires_grad=True) for _ in range(3)]

        def run(qkv: list, quadratic_max: int):
            def fn():
                out = linear_attention(*qkv, mean=True, quadratic_max=quadratic_max)
                out.sum().backward()

            return fn

        times = interleaved_samples(
            {"quadratic": run(qkv, n), "chunked": run(qkv, 0)}, rounds, min_run_time, clock
        )
        out[n] = ratio(times["quadratic"], times["chunked"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--no-compile", action="store_true", help="eager only")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--long-context", type=int, default=4096)
    ap.add_argument("--linear-contexts", type=int, nargs="+", default=[32, 64, 128, 256, 512])
    ap.add_argument("--threads", type=int, help="torch threads (default: PyTorch's choice)")
    ap.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="cpu: the thread's CPU time, steadier on a shared machine (needs --threads 1)",
    )
    ap.add_argument(
        "--authors",
        type=Path,
        help="a directory with the authors' model.py (a clone of ViktorAJStein/SympFormer): time "
        "their models in the same rounds instead of using their stored tokens/s",
    )
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--min-run-time", type=float, default=1.0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.clock == "cpu" and torch.get_num_threads() != 1:
        raise SystemExit("--clock cpu measures one thread: add --threads 1")
    compiled = not args.no_compile and toolchain_ok("cpu")
    threads = torch.get_num_threads()
    print(
        f"torch {torch.__version__}, {threads} threads, fp32, {args.clock} clock, "
        f"{args.rounds} rounds; compile: {compiled}; ratios: median [min, max] over rounds\n",
        flush=True,
    )
    timing = (args.rounds, args.min_run_time, args.clock)

    labels = [*AUTHORS, *FLOORS]
    theirs = {}
    if args.authors is not None:
        for k, build in builders(args.authors, CONTEXT).items():
            torch.manual_seed(0)
            theirs[f"authors {k}"] = their_step(build(), BATCH)
    fns, times, warmup = training_steps(labels, compiled, *timing, extra=theirs)
    tokens = BATCH * CONTEXT
    gpt, gpt_c = times["gpt"], times.get("gpt [c]")
    # the default training path of a long run: compiled where `train.compile` auto expects a gain
    # (SPEEDUPS by arch; the floor gpt+pass is no arch and takes SPEEDUP, compiled like symp)
    pays = {
        k: compiled and SPEEDUPS.get(k.split(":")[0].split("/")[0], SPEEDUP) > 1 for k in labels
    }
    default = {k: times[f"{k} [c]" if pays[k] else k] for k in labels}
    tok_s = {k: tokens / statistics.median(v) for k, v in times.items()}

    profiles = interleaved_profiles(fns, args.rounds)
    ops = {k: profiles[k].ops for k in labels}
    op_s = tiny_op_seconds(*timing)

    print(f"\n### Training step: context {CONTEXT}, micro-batch {BATCH}, vocabulary {VOCAB}\n")
    print(
        "| model | ATen ops | eager tok/s | x gpt | compiled tok/s | x gpt [c] | speed-up "
        "| warm-up s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for k in labels:
        row = f"| {k} | {ops[k]:,} | {tok_s[k]:,.0f} | {ratio(times[k], gpt)} |"
        if compiled:
            c = f"{k} [c]"
            speedup = ratio(times[k], times[c])
            row += f" {tok_s[c]:,.0f} | {ratio(times[c], gpt_c)} | {speedup} | {warmup[k]:.0f} |"
        else:
            row += " - | - | - | - |"
        print(row)
    gpt_s = statistics.median(gpt)
    print(
        f"\nOne tiny eager ATen op (autograd chain): {1e6 * op_s:.1f} us; gpt's step "
        f"{1e3 * gpt_s:.1f} ms. Per model, its extra ops over gpt+pass at that price, x gpt: "
        + ", ".join(
            f"{k} {(ops[k] - ops['gpt+pass']) * op_s / gpt_s:+.2f}"
            for k in labels
            if k.startswith("symp")
        )
    )

    print(
        "\n### Where the step goes: ms per step; attention kernels and matrix products from "
        "torch.profiler self time, the rest = step - both\n\n'exact-work floor' = gpt's step plus "
        "the model's extra attention and matrix time over gpt's, x gpt: the ratio if everything "
        "else cost what gpt's does\n"
    )
    print("| model | path | step | attention | matrix | rest | exact-work floor x gpt |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for suffix in ("", " [c]") if compiled else ("",):
        base = profiles[f"gpt{suffix}"]
        base_s = statistics.median(times[f"gpt{suffix}"])
        for k in labels:
            prof, step_s = profiles[k + suffix], statistics.median(times[k + suffix])
            extra = prof.attention - base.attention + prof.matrix - base.matrix
            rest = step_s - prof.attention - prof.matrix
            print(
                f"| {k} | {'compiled' if suffix else 'eager'} | {1e3 * step_s:.1f} | "
                f"{1e3 * prof.attention:.1f} | {1e3 * prof.matrix:.1f} | {1e3 * rest:.1f} | "
                f"{(base_s + extra) / base_s:.2f} |"
            )

    eager = [k for k in labels if not pays[k]]
    path = (
        "eager"
        if not compiled
        else f"compiled, but {', '.join(eager)} eager"
        if eager
        else "compiled"
    )
    if theirs:  # measured in the same rounds: ours / theirs per round
        vs_authors = {k: ratio(times[f"authors {k}"], default[k]) for k in AUTHORS}
        print(f"\n### Against the authors, measured in the same rounds (ours: {path})\n")
        print(f"(their model.py from {args.authors}; their models eager, as their code runs)\n")
        print("| model | authors tok/s | ours tok/s | ours / authors |")
        print("|---|---:|---:|---:|")
        for k in AUTHORS:
            ours = tokens / statistics.median(default[k])
            print(f"| {k} | {tok_s[f'authors {k}']:,.0f} | {ours:,.0f} | {vs_authors[k]} |")
        for floor, k in (("gpt+pass", "symp:presymp_euler"), ("gpt_linear/1 head", "gpt_linear")):
            r = ratio(times[f"authors {k}"], default[floor])
            ours = tokens / statistics.median(default[floor])
            print(f"| *floor {floor} vs their {k}* | | {ours:,.0f} | {r} |")
    else:  # their stored tokens/s; "at idle gpt" rescales ours by our eager gpt's idle value
        vs_authors = {k: Ratio(tokens / t / AUTHORS[k] for t in default[k]) for k in AUTHORS}
        load = ratio(gpt, tokens / GPT_EAGER_IDLE)  # > 1: slower than idle
        print(f"\n### Against the authors' stored tokens/s (ours: {path})\n")
        print("| model | authors tok/s | ours tok/s | ours / authors | at idle gpt |")
        print("|---|---:|---:|---:|---:|")
        for k in AUTHORS:
            at_idle = Ratio(a * b for a, b in zip(vs_authors[k], load, strict=True))
            ours = tokens / statistics.median(default[k])
            print(f"| {k} | {AUTHORS[k]:,} | {ours:,.0f} | {vs_authors[k]} | {at_idle} |")
        idle = f"on the idle machine {GPT_EAGER_IDLE:,}"
        print(f"\n(our eager gpt: {tok_s['gpt']:,.0f} tok/s; {idle})")

    long_ratio = long_context_ratio(args.long_context, *timing)
    print(f"\ngpt_linear / gpt at context {args.long_context} (batch 1, eager): {long_ratio}")

    print("\n### Causal linear attention: masked quadratic / chunked time, fwd + bwd\n")
    print(f"(B, H, D) = ({BATCH}, 4, 16), chunk {LINEAR_CHUNK}; < 1: quadratic is faster\n")
    print("| context | quadratic / chunked |")
    print("|---:|---:|")
    for n, r in linear_forms(args.linear_contexts, *timing).items():
        print(f"| {n} | {r} |")

    symp = "symp:presymp_euler"
    targets = [Target("symp presymp_euler / gpt, eager", ratio(times[symp], gpt), 1.6, True)]
    if compiled:
        targets.append(
            Target(
                "symp presymp_euler / gpt, both compiled",
                ratio(times[f"{symp} [c]"], gpt_c),
                1.5,
                True,
            )  # fmt: skip
        )
    targets.append(Target("symp presymp_euler / authors (default path)", vs_authors[symp], 2.0,
                          False))  # fmt: skip
    for k in ("gpt_linear", "symp_linear:presymp_euler"):
        targets.append(Target(f"{k} / authors (default path)", vs_authors[k], 1.2, False))
    targets.append(
        Target("gpt_linear / gpt at 128, eager", ratio(times["gpt_linear"], gpt), 1.0, True)
    )
    if compiled:
        targets.append(
            Target(
                "gpt_linear / gpt at 128, compiled",
                ratio(times["gpt_linear [c]"], gpt_c),
                1.0,
                True,
            )  # fmt: skip
        )
    targets.append(Target(f"gpt_linear / gpt at {args.long_context}", long_ratio, 0.3, True))

    if not args.no_memory:
        print("\n### Peak training memory, context 1024, batch 4 (fresh process each)\n")
        print("| model | MiB | x gpt | with checkpointing | x gpt |")
        print("|---|---:|---:|---:|---:|")
        base = peak_mib("gpt", 1024, 4)
        base_ckpt = peak_mib("gpt", 1024, 4, True)
        print(f"| gpt | {base:.0f} | 1.00 | {base_ckpt:.0f} | {base_ckpt / base:.2f} |")
        worst = 0.0
        for scheme in ONE_CALL:
            label = f"symp:{scheme}"
            mib, ckpt = peak_mib(label, 1024, 4), peak_mib(label, 1024, 4, True)
            worst = max(worst, mib / base)
            print(f"| {label} | {mib:.0f} | {mib / base:.2f} | {ckpt:.0f} | {ckpt / base:.2f} |")
        # one measurement per model (peak memory is deterministic up to the allocator)
        targets.append(
            Target("one-call softmax memory / gpt at 1024 (worst)", Ratio([worst]), 1.5, True)
        )

    print("\n### Targets (this run)\n")
    print("| target | value [min, max] | bound | holds |")
    print("|---|---:|---:|---|")
    for t in targets:
        print(t.row())


if __name__ == "__main__":
    main()
