"""SIGINT/SIGTERM during training: the step finishes, a checkpoint is written, the process exits
with 128 + the signal number, and --resume continues bit-exactly; under DDP every rank stops after
the same step even when only one received the signal."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sympformer.train import find_checkpoint, open_checkpoint, read_metrics
from tests.train.helpers import rows_without_clock, tiny_args

CLI = [sys.executable, "-m", "sympformer.cli"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            "2", "-m", "sympformer.cli"]  # fmt: skip
ENV = dict(os.environ, OMP_NUM_THREADS="1")


def rows(path: Path) -> int:
    try:
        return path.read_text().count("\n") - 1
    except FileNotFoundError:
        return -1


def wait_for_rows(proc: subprocess.Popen, metrics: Path, n: int) -> None:
    deadline = time.monotonic() + 120
    while rows(metrics) < n:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.01)


def args(text_file, cache_dir, *extra) -> list[str]:
    # no periodic checkpoint: the only one before the end is the stop's
    return tiny_args(text_file, cache_dir, "--max-steps", "30", "--train.ckpt_every", "1000",
                     "--train.eval_every", "4", *extra)  # fmt: skip


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_after_the_step_with_a_checkpoint_and_resume_is_exact(
    sig, tmp_path, text_file, cache_dir
):
    reference = subprocess.run([*CLI, *args(text_file, cache_dir, "--out", str(tmp_path / "ref"))],
                               capture_output=True, env=ENV)  # fmt: skip
    assert reference.returncode == 0, reference.stderr.decode()[-2000:]
    run = tmp_path / "run"
    proc = subprocess.Popen([*CLI, *args(text_file, cache_dir, "--out", str(run))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)  # fmt: skip
    wait_for_rows(proc, run / "metrics.csv", 3)
    proc.send_signal(sig)
    assert proc.wait(timeout=120) == 128 + sig
    err = proc.stderr.read().decode().strip().splitlines()
    assert err[-1].startswith(f"error: stopped by {sig.name} after step ")
    assert f"--resume {run}" in err[-1]
    step = int(err[-1].split(" after step ")[1].split()[0])
    assert step < 29  # it stopped early
    ckpt = open_checkpoint(find_checkpoint(run, "latest"))
    assert ckpt.progress.step == step + 1  # the step in flight was finished and saved
    assert int(read_metrics(run / "metrics.csv")[-1]["step"]) == step
    done = subprocess.run([*CLI, "train", "--resume", str(run)], capture_output=True, env=ENV)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert rows_without_clock(run) == rows_without_clock(tmp_path / "ref")


def _worker_pids(launcher: int) -> dict[int, int]:
    """rank -> pid of torchrun's worker processes (children of its agent)."""
    found = {}
    for child in Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split():
        environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        env = dict(e.decode().split("=", 1) for e in environ if b"=" in e)
        if "RANK" in env:
            found[int(env["RANK"])] = int(child)
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ddp_ranks_agree_on_the_stop(tmp_path, text_file, cache_dir):
    """SIGTERM to rank 1 alone: both ranks stop after the same step, rank 0 writes the checkpoint,
    and the resumed run reproduces an uninterrupted DDP run."""
    extra = ("--train.batch_size", "2", "--train.grad_accum", "2")
    reference = subprocess.run(
        [*TORCHRUN, *args(text_file, cache_dir, *extra, "--out", str(tmp_path / "ref"))],
        capture_output=True, env=ENV, timeout=300,
    )  # fmt: skip
    assert reference.returncode == 0, reference.stderr.decode()[-3000:]
    run = tmp_path / "run"
    proc = subprocess.Popen([*TORCHRUN, *args(text_file, cache_dir, *extra, "--out", str(run))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)  # fmt: skip
    wait_for_rows(proc, run / "metrics.csv", 3)
    os.kill(_worker_pids(proc.pid)[1], signal.SIGTERM)
    proc.wait(timeout=300)
    err = proc.stderr.read().decode()
    stops = [line for line in err.splitlines() if "stopped by SIGTERM after step" in line]
    assert len(stops) == 2, err[-3000:]  # both ranks, after the same step
    assert len({line.split("error: ")[-1] for line in stops}) == 1
    step = int(stops[0].split(" after step ")[1].split()[0])
    assert open_checkpoint(find_checkpoint(run, "latest")).progress.step == step + 1
    done = subprocess.run([*TORCHRUN, "train", "--resume", str(run)], capture_output=True,
                          env=ENV, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    assert rows_without_clock(run) == rows_without_clock(tmp_path / "ref")
