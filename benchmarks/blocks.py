"""Forward + backward time of the transformer blocks of every arch x scheme, relative to `gpt`.

    python benchmarks/blocks.py                 # context 128 and 1024, every arch x scheme
    python benchmarks/blocks.py --contexts 128 --archs gpt symp

The model is the paper's small config (4 layers, 4 heads, width 64, MLP 256); only the blocks are
timed (embeddings and head excluded), on a random (B, T, C) input with gradients. Prints a Markdown
table: seconds per step, the ratio to gpt measured in the same run, and parameter counts.

The row `gpt+pass` is a reference, not a model: a GPT block whose attention also runs the extra
softmax pass the exact accelerated force needs (log z̄ must be known before the r̄-weighted pass),
i.e. the floor of a one-call softmax scheme built from fused attention kernels.
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import BASELINE, interleaved, paper_config, two_pass_gpt, variants
from sympformer import build_model
from sympformer.dynamics import State


def block_step(model, batch: int):
    """fwd + bwd of the block stack on a fixed random input (B, T, C)."""
    cfg = model.cfg
    x = torch.randn(batch, cfg.block_size, cfg.d_model, requires_grad=True)
    p = torch.randn(batch, cfg.block_size, cfg.d_model) if cfg.velocity_init == "learned" else None

    def run():
        s = State(x, torch.zeros_like(x) if p is None else p, model.t0)
        for block in model.blocks:
            s = block(s)
        s.x.square().mean().backward()

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--contexts", type=int, nargs="+", default=[128, 1024])
    ap.add_argument("--archs", nargs="+")
    ap.add_argument("--schemes", nargs="+")
    ap.add_argument("--tokens", type=int, default=1024, help="tokens per batch (B = tokens // T)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--min-run-time", type=float, default=0.5)
    args = ap.parse_args()
    torch.manual_seed(0)
    chosen = variants(args.archs, args.schemes, baseline=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32, blocks fwd+bwd\n")
    for ctx in args.contexts:
        batch = max(1, args.tokens // ctx)
        models = {str(v): build_model(paper_config(v, ctx)) for v in chosen}
        models["gpt+pass"] = two_pass_gpt(paper_config(BASELINE, ctx))
        times = interleaved(
            {k: block_step(m, batch) for k, m in models.items()}, args.rounds, args.min_run_time
        )
        base = times["gpt"]
        print(f"context {ctx}, batch {batch}")
        print("| model | ms / step | x gpt | params |")
        print("|---|---:|---:|---:|")
        for k, m in models.items():
            print(f"| {k} | {1e3 * times[k]:.1f} | {times[k] / base:.2f} | {m.num_params():,} |")
        print()


if __name__ == "__main__":
    main()
