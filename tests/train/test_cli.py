import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sympformer.cli import main
from sympformer.data import DataConfig, prepare
from sympformer.model import Variant
from sympformer.train import fit
from sympformer.train.checkpoint import CHECKPOINTS
from tests.train.helpers import copy_run, snapshot, tiny_args, tiny_config, write_text


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `sympformer ARGS`, run in this process."""
    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(code: int, err: str, match: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert match in lines[0], lines[0]
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory, text_file, cache_dir) -> Path:
    """A 2-step GPT run, whose checkpoint does not belong in a SympFormer run."""
    cfg = tiny_config(text_file, cache_dir, max_steps=2)
    cfg = dataclasses.replace(cfg, model=Variant("gpt").model(cfg.model))
    run_dir = tmp_path_factory.mktemp("gpt") / "run"
    fit(cfg, out=run_dir)
    return run_dir


def swap_in_checkpoint(run_dir: Path, source_run: Path) -> None:
    """Replace `run_dir`'s latest checkpoint by `source_run`'s (as a careless copy would)."""
    src = (source_run / CHECKPOINTS / "latest").resolve()
    shutil.copytree(src, run_dir / CHECKPOINTS / src.name)
    (run_dir / CHECKPOINTS / "latest").unlink()
    os.symlink(src.name, run_dir / CHECKPOINTS / "latest")


def unwritable(tmp_path: Path) -> Path:
    if os.geteuid() == 0:  # root writes through permissions; sysfs refuses even root
        return Path("/sys/sympformer-test-run")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    return locked / "run"


def case_args(case, tmp_path, text_file, cache_dir, trained_run, gpt_run) -> list[str]:
    """Set up `case` in tmp_path and return its command line."""
    run = tmp_path / "run"
    train = tiny_args(text_file, cache_dir, "--out", str(run))
    if case == "missing data path":
        return tiny_args(tmp_path / "nope.txt", cache_dir, "--out", str(run))
    if case == "empty data file":
        (tmp_path / "empty.txt").write_text("")
        return tiny_args(tmp_path / "empty.txt", cache_dir, "--out", str(run))
    if case == "cache built with another tokenizer":
        text = write_text(tmp_path / "t.txt", n_lines=300)
        cache = tmp_path / "cache"
        bytes_dir = prepare(DataConfig(path=str(text), tokenizer="bytes", cache_dir=str(cache)))
        bpe = DataConfig(path=str(text), tokenizer="bpe", vocab_size=400, cache_dir=str(cache))
        bpe_dir = prepare(bpe).path
        shutil.rmtree(bpe_dir)
        shutil.copytree(bytes_dir.path, bpe_dir)
        return tiny_args(text, cache, "--out", str(run), "--tokenizer", "bpe",
                         "--data.vocab_size", "400")  # fmt: skip
    if case == "binary data file":
        (tmp_path / "blob.txt").write_bytes(bytes(range(256)) * 8)
        return tiny_args(tmp_path / "blob.txt", cache_dir, "--out", str(run))
    if case == "truncated token cache":
        text = write_text(tmp_path / "t.txt", n_lines=300)
        cache = tmp_path / "cache"
        corpus = prepare(DataConfig(path=str(text), tokenizer="bytes", cache_dir=str(cache)))
        train_bin = corpus.path / "train.bin"
        del corpus
        train_bin.write_bytes(train_bin.read_bytes()[:-7])  # a copy cut short
        return tiny_args(text, cache, "--out", str(run), "--tokenizer", "bytes")
    if case == "negative batch size":
        return [*train, "--train.batch_size", "-4"]
    if case == "n_layer 0":
        return [*train, "--model.n_layer", "0"]
    if case == "d_model not divisible by n_head":
        return [*train, "--model.d_model", "31"]
    if case == "unknown arch":
        return [*train, "--arch", "transformer"]
    if case == "scheme not valid for the arch":
        return [*train, "--arch", "gpt", "--scheme", "ab2"]
    if case == "unknown ingredient value":
        return [*train, "--model.force", "gravity"]
    if case == "ingredient on an arch without it":
        return [*train, "--arch", "gpt", "--model.drift", "identity"]
    if case == "unknown flag":
        return [*train, "--learning-rate", "3"]
    if case == "bad value type":
        return [*train, "--max-steps", "many"]
    if case == "unwritable output folder":
        return tiny_args(text_file, cache_dir, "--out", str(unwritable(tmp_path)))
    if case == "output folder holds a run":
        copy_run(trained_run, run)
        return train
    if case == "resume folder does not exist":
        return ["train", "--resume", str(tmp_path / "nope")]
    if case == "resume with another config":
        copy_run(trained_run, run)
        return ["train", "--resume", str(run), "--model.n_layer", "3"]
    if case == "checkpoint from another arch":
        copy_run(trained_run, run)
        swap_in_checkpoint(run, gpt_run)
        return ["train", "--resume", str(run), "--max-steps", "50"]
    if case == "corrupt checkpoint":
        copy_run(trained_run, run)
        (run / CHECKPOINTS / "latest" / "model.safetensors").write_bytes(b"\0garbage" * 64)
        return ["train", "--resume", str(run), "--max-steps", "50"]
    if case == "sample: prompt longer than the context":
        return ["sample", "--ckpt", str(trained_run), "--prompt", "x" * 33]
    if case == "sample: empty prompt":
        return ["sample", "--ckpt", str(trained_run), "--prompt", ""]
    if case == "sample: prompt not UTF-8":
        return ["sample", "--ckpt", str(trained_run), "--prompt", "caf\udcc3"]
    if case == "sample: missing checkpoint":
        return ["sample", "--ckpt", str(tmp_path / "nope"), "--prompt", "in"]
    if case == "sample: run without checkpoints":
        run.mkdir()
        (run / "config.json").write_text("{}")
        return ["sample", "--ckpt", str(run), "--prompt", "in"]
    if case == "sample: corrupt checkpoint":
        copy_run(trained_run, run)
        (run / CHECKPOINTS / "best" / "model.safetensors").write_bytes(b"\0garbage" * 64)
        return ["sample", "--ckpt", str(run), "--prompt", "in"]
    raise AssertionError(case)


CASES = {
    "missing data path": "does not exist",
    "empty data file": "is empty",
    "cache built with another tokenizer": "tokenizer='bytes', but tokenizer='bpe' is asked",
    "binary data file": "is binary",
    "truncated token cache": "but its manifest lists",
    "negative batch size": "batch_size=-4",
    "n_layer 0": "ModelConfig.n_layer=0",
    "d_model not divisible by n_head": "d_model=31 is not divisible by n_head=2",
    "unknown arch": "ModelConfig.arch='transformer' is unknown",
    "scheme not valid for the arch": "does not apply to arch='gpt'",
    "unknown ingredient value": "gravity",
    "ingredient on an arch without it": "ModelConfig.drift='identity' does not apply to arch='gpt'",
    "unknown flag": "--learning_rate",
    "bad value type": "train.max_steps",
    "unwritable output folder": "sympformer-test-run" if os.geteuid() == 0 else "ermission",
    "output folder holds a run": "already holds a run",
    "resume folder does not exist": "does not exist",
    "resume with another config": "model.n_layer=2, this run asks model.n_layer=3",
    "checkpoint from another arch": "belongs to another config: it has model.arch='gpt'",
    "corrupt checkpoint": "model.safetensors is corrupt",
    "sample: prompt longer than the context": "33 tokens, longer than the model's context",
    "sample: empty prompt": "the prompt is empty",
    "sample: prompt not UTF-8": "not valid UTF-8",
    "sample: missing checkpoint": "does not exist",
    "sample: run without checkpoints": "holds no training checkpoint",
    "sample: corrupt checkpoint": "model.safetensors is corrupt",
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gives_one_error_line_and_changes_nothing(
    case, tmp_path, capsys, text_file, cache_dir, trained_run, gpt_run
):
    args = case_args(case, tmp_path, text_file, cache_dir, trained_run, gpt_run)
    before, trained_before = snapshot(tmp_path), snapshot(trained_run)
    code, _, err = cli(capsys, *args)
    assert_one_error_line(code, err, CASES[case])
    assert snapshot(tmp_path) == before
    assert snapshot(trained_run) == trained_before


def run_console(*args: str | bytes) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sympformer.cli", *args], capture_output=True, timeout=120
    )


def test_console_errors_have_no_traceback(tmp_path, trained_run):
    done = run_console(
        "train", "--data", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "r")
    )
    assert done.returncode == 2
    assert done.stderr.decode().startswith("error: data path ")
    assert done.stderr.count(b"\n") == 1
    assert list(tmp_path.iterdir()) == []
    # bytes that are not UTF-8 reach Python as surrogates, and are refused as such
    done = run_console("sample", "--ckpt", str(trained_run), "--prompt", b"caf\xc3")
    assert (done.returncode, done.stderr) == (2, b"error: the prompt is not valid UTF-8 text\n")


def test_sample_continues_the_prompt_reproducibly(capsys, trained_run):
    args = ["sample", "--ckpt", str(trained_run), "--prompt", "in the", "--max-new-tokens", "24"]
    code, first, _ = cli(capsys, *args, "--seed", "1", "--temperature", "1.0")
    assert code == 0
    _, again, _ = cli(capsys, *args, "--seed", "1", "--temperature", "1.0")
    _, other, _ = cli(capsys, *args, "--seed", "2", "--temperature", "1.0")
    assert first.startswith("in the")
    assert first == again
    assert first != other
    assert len(first.encode()) >= len("in the") + 24  # bytes tokenizer: one byte per token


def test_sample_reads_run_and_checkpoint_folders_alike(capsys, trained_run):
    args = ["--prompt", "god", "--max-new-tokens", "12", "--temperature", "0"]
    _, from_run, _ = cli(capsys, "sample", "--ckpt", str(trained_run), "--which", "latest", *args)
    latest = trained_run / CHECKPOINTS / "latest"
    _, from_ckpt, _ = cli(capsys, "sample", "--ckpt", str(latest), *args)
    assert from_run == from_ckpt
    assert from_run.startswith("god")
