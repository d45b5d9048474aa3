"""Peak memory of one training step at context 1024 relative to `gpt` (a fresh process each).

    python -m benchmarks.memory

Measures the growth of the process's peak resident set (ru_maxrss) over one forward + backward +
AdamW step after the model is built, so Python and library overhead cancel.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

import torch

from benchmarks.common import paper_config, variants


def _child(label: str, context: int, batch: int) -> None:
    from sympformer import Variant, build_model

    torch.manual_seed(0)
    model = build_model(paper_config(Variant.parse(label), context))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    idx = torch.randint(model.cfg.vocab_size, (batch, context + 1))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _, loss = model(idx[:, :-1], idx[:, 1:])
    loss.backward()
    opt.step()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_mib": (after - before) / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--context", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--archs", nargs="+")
    ap.add_argument("--schemes", nargs="+")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child, args.context, args.batch)
        return
    rows = {}
    for variant in variants(args.archs, args.schemes, baseline=True):
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.memory",
            "--context",
            str(args.context),
            "--batch",
            str(args.batch),
            "--child",
            str(variant),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        rows[str(variant)] = json.loads(out.strip().splitlines()[-1])["peak_mib"]
    print(f"context {args.context}, batch {args.batch}: peak memory growth of one training step\n")
    print("| model | MiB | x gpt |")
    print("|---|---:|---:|")
    for k, v in rows.items():
        print(f"| {k} | {v:.0f} | {v / rows['gpt']:.2f} |")


if __name__ == "__main__":
    main()
