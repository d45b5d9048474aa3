import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from sympformer.model import LanguageModel
from sympformer.train import find_checkpoint, open_checkpoint
from tests.train.helpers import rows_without_clock, tiny_args

CLI = [sys.executable, "-m", "sympformer.cli"]


def rows_in(path: Path) -> int:
    try:
        return path.read_text().count("\n") - 1
    except FileNotFoundError:
        return -1


def in_flight(run_dir: Path) -> list[Path]:
    """Checkpoint folders being written (hidden .tmp folders)."""
    root = run_dir / "checkpoints"
    return list(root.glob(".step-*.tmp")) if root.is_dir() else []


def test_sigkill_at_random_moments_then_resume_reproduces_the_run(tmp_path, text_file, cache_dir):
    """Checkpoints every step, so kills land inside checkpoint writes as well as between them."""
    args = tiny_args(text_file, cache_dir, "--max-steps", "40", "--train.ckpt_every", "1",
                     "--train.eval_every", "5")  # fmt: skip
    reference = subprocess.run([*CLI, *args, "--out", str(tmp_path / "ref")], capture_output=True)
    assert reference.returncode == 0, reference.stderr.decode()[-2000:]

    run_dir = tmp_path / "run"
    metrics = run_dir / "metrics.csv"
    rng = random.Random(20260325)
    command = [*CLI, *args, "--out", str(run_dir)]
    kills = mid_write = resumed_from_checkpoint = 0
    while kills < 4:
        start_rows = max(rows_in(metrics), 0)
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while rows_in(metrics) <= start_rows and proc.poll() is None:
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.005)
        if kills % 2:  # a random moment
            time.sleep(rng.uniform(0.0, 0.25))
        else:  # the moment a checkpoint folder is being written
            while not in_flight(run_dir) and proc.poll() is None:
                assert time.monotonic() < deadline, "no checkpoint"
                time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.returncode == 0:  # finished before the kill: nothing left to interrupt
            break
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
        kills += 1
        mid_write += bool(in_flight(run_dir))
        # whatever the moment, `latest` is absent (killed inside the first save: the resume
        # starts over) or a complete checkpoint that loads
        latest = find_checkpoint(run_dir, "latest")
        if latest is not None:
            LanguageModel.from_pretrained(open_checkpoint(latest).path)
            resumed_from_checkpoint += 1
        command = [*CLI, "train", "--resume", str(run_dir), "--train.progress", "false"]
    assert kills >= 2
    assert mid_write >= 1  # at least one kill left a half-written checkpoint behind
    assert resumed_from_checkpoint >= 1
    done = subprocess.run(command, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert rows_without_clock(run_dir) == rows_without_clock(tmp_path / "ref")
