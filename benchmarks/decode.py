"""KV-cache decoding: time per generated token at position 1024 relative to position 64, per arch.

    python -m benchmarks.decode

Each model (paper config, context 1088) is prefilled to the position (not timed), then 16 tokens are
decoded one at a time with the cache. The ratio t(1024) / t(64) shows how the per-token cost grows
with the prefix (target <= 1.5: only the attention read of the prefix grows). Medians of rounds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks.common import paper_config, variants
from sympformer import build_model

N_DECODE = 16


@torch.no_grad()
def seconds_per_token(model, position: int, rounds: int) -> float:
    idx = torch.randint(model.cfg.vocab_size, (1, position + N_DECODE))
    samples = []
    for _ in range(rounds):
        cache = model.new_cache()
        model(idx[:, :position], cache=cache)
        start = time.perf_counter()
        for i in range(position, position + N_DECODE):
            model(idx[:, i : i + 1], cache=cache)
        samples.append((time.perf_counter() - start) / N_DECODE)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--archs", nargs="+")
    ap.add_argument("--schemes", nargs="+", default=["presymp_euler", "tao"])
    ap.add_argument("--positions", type=int, nargs=2, default=[64, 1024])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    short, long = args.positions
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch 1, fp32\n")
    print(f"| model | ms/token at {short} | ms/token at {long} | ratio |")
    print("|---|---:|---:|---:|")
    for variant in variants(args.archs, args.schemes):
        model = build_model(paper_config(variant, long + 64)).eval()
        seconds_per_token(model, short, 1)  # warm-up
        t_short, t_long = (seconds_per_token(model, p, args.rounds) for p in (short, long))
        print(f"| {variant} | {1e3 * t_short:.2f} | {1e3 * t_long:.2f} | {t_long / t_short:.2f} |")


if __name__ == "__main__":
    main()
