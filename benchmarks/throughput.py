"""Whole-model training throughput (tokens/s) of every arch x scheme, and the ratio to `gpt`.

    python -m benchmarks.throughput                      # vocab 512 and 50,304 (GPT-2), context 128
    python -m benchmarks.throughput --vocabs 512 --archs gpt symp

One optimizer step = forward + backward + AdamW (the training path's optimizer: parameter groups,
fused where available) on a micro-batch of B x T tokens (paper config:
4 layers, 4 heads, width 64, context 128, B = 6). Medians of interleaved rounds.
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import interleaved, paper_config, train_step, variants
from sympformer import build_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--vocabs", type=int, nargs="+", default=[512, 50304])
    ap.add_argument("--context", type=int, default=128)
    ap.add_argument("--batch", type=int, default=6)
    ap.add_argument("--archs", nargs="+")
    ap.add_argument("--schemes", nargs="+")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--min-run-time", type=float, default=0.5)
    args = ap.parse_args()
    torch.manual_seed(0)
    chosen = variants(args.archs, args.schemes, baseline=True)
    tokens = args.batch * args.context
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads, fp32, {tokens} tokens/step\n")
    for vocab in args.vocabs:
        models = {str(v): build_model(paper_config(v, args.context, vocab)) for v in chosen}
        times = interleaved(
            {k: train_step(m, args.batch) for k, m in models.items()},
            args.rounds,
            args.min_run_time,
        )
        print(f"vocab {vocab}")
        print("| model | tokens/s | x gpt time | params |")
        print("|---|---:|---:|---:|")
        for k, m in models.items():
            ratio = times[k] / times["gpt"]
            print(f"| {k} | {tokens / times[k]:,.0f} | {ratio:.2f} | {m.num_params():,} |")
        print()


if __name__ == "__main__":
    main()
