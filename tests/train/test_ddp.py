import os
import subprocess
import sys

import pytest

from sympformer.train import read_metrics
from tests.train.helpers import tiny_args


def run(args: list[str], launcher: list[str]) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([*launcher, *args], capture_output=True, text=True, env=env, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]


def test_two_processes_match_one_with_twice_the_accumulation(tmp_path, text_file, cache_dir):
    """Same global batch (2 ranks x 2 micro-batches vs 1 x 4): rank r's strided shard of the first
    blocks plus the other rank's is exactly the single process's blocks, so the per-step losses,
    gradient norms and validation losses agree up to float summation order."""
    common = tiny_args(text_file, cache_dir, "--max-steps", "4", "--train.eval_every", "2",
                       "--train.batch_size", "2")  # fmt: skip
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", "2", "-m", "sympformer.cli"]  # fmt: skip
    run([*common, "--train.grad_accum", "2", "--out", str(tmp_path / "ddp")], torchrun)
    run([*common, "--train.grad_accum", "4", "--out", str(tmp_path / "one")],
        [sys.executable, "-m", "sympformer.cli"])  # fmt: skip
    ddp, one = (read_metrics(tmp_path / x / "metrics.csv") for x in ("ddp", "one"))
    assert [r["step"] for r in ddp] == ["0", "1", "2", "3"]  # rank 0 alone wrote rows
    for a, b in zip(ddp, one, strict=True):
        assert (a["tokens"], a["lr"], a["skipped"]) == (b["tokens"], b["lr"], b["skipped"])
        for col in ("train_loss", "grad_norm", "val_loss"):
            if b[col]:
                assert float(a[col]) == pytest.approx(float(b[col]), rel=2e-6, abs=0), col
            else:
                assert a[col] == ""
    # and the losses moved: the comparison is not of four identical numbers
    assert float(one[-1]["train_loss"]) < float(one[0]["train_loss"]) - 0.1
