"""Peak memory of one training step at context 1024 relative to `gpt` (a fresh process each).

    python -m benchmarks.memory
    python -m benchmarks.memory --activation-checkpointing   # recompute each block in backward

Measures the growth of the process's peak resident set over one forward + backward + AdamW step
(the training path's optimizer) after the model is built: the peak is reset just before the step
(Linux), so Python, library and model-building memory cancel.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
from pathlib import Path

import torch

from benchmarks.common import paper_config, variants


def _child(label: str, context: int, batch: int, checkpointing: bool) -> None:
    from sympformer import Variant, build_model
    from sympformer.train import TrainConfig, build_optimizer

    torch.manual_seed(0)
    model = build_model(paper_config(Variant.parse(label), context))
    model.activation_checkpointing = checkpointing
    opt = build_optimizer(model, TrainConfig())
    idx = torch.randint(model.cfg.vocab_size, (batch, context + 1))
    before = _reset_peak_kib()
    _, loss = model(idx[:, :-1], idx[:, 1:])
    loss.backward()
    opt.step()
    print(json.dumps({"peak_mib": (_peak_kib() - before) / 1024}))


def _status_kib(key: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    found = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
    return int(found.group(1)) if found else None


def _reset_peak_kib() -> int:
    """Reset the peak resident set to the current one (Linux: /proc/self/clear_refs "5") and
    return it in KiB; elsewhere the lifetime peak so far (ru_maxrss), which an earlier, larger
    allocation (imports, model build) can hide."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        rss = _status_kib("VmRSS")
        if rss is not None:
            return rss
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _peak_kib() -> int:
    hwm = _status_kib("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def peak_mib(label: str, context: int, batch: int, checkpointing: bool = False) -> float:
    """Peak memory growth (MiB) of one training step of ``label``, in a fresh process."""
    cmd = [sys.executable, "-m", "benchmarks.memory", "--context", str(context)]
    cmd += ["--batch", str(batch), "--child", label]
    if checkpointing:
        cmd.append("--activation-checkpointing")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_mib"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--context", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--archs", nargs="+")
    ap.add_argument("--schemes", nargs="+")
    ap.add_argument("--activation-checkpointing", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child, args.context, args.batch, args.activation_checkpointing)
        return
    rows = {}
    for variant in variants(args.archs, args.schemes, baseline=True):
        rows[str(variant)] = peak_mib(str(variant), args.context, args.batch)
    if args.activation_checkpointing:
        for variant in variants(args.archs, args.schemes, baseline=True):
            rows[f"{variant} (ckpt)"] = peak_mib(str(variant), args.context, args.batch, True)
    print(f"context {args.context}, batch {args.batch}: peak memory growth of one training step\n")
    print("| model | MiB | x gpt |")
    print("|---|---:|---:|")
    for k, v in rows.items():
        print(f"| {k} | {v:.0f} | {v / rows['gpt']:.2f} |")


if __name__ == "__main__":
    main()
