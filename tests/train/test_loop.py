import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

import sympformer.train.loop as loop_module
from sympformer.data import DataConfig, prepare
from sympformer.model import LanguageModel
from sympformer.train import (
    BASE_COLUMNS,
    DivergenceError,
    ExperimentConfig,
    fit,
    load_run_config,
    lr_at,
    open_checkpoint,
    read_metrics,
)
from sympformer.train.checkpoint import find_checkpoint
from sympformer.train.distributed import Dist
from sympformer.train.loop import Trainer
from tests.train.helpers import rows_without_clock, tiny_config


def test_a_run_learns_and_writes_its_folder(trained_run, text_file, cache_dir):
    cfg = load_run_config(trained_run)
    assert cfg.model.vocab_size == 257  # resolved from the tokenizer
    rows = read_metrics(trained_run / "metrics.csv")
    vals = [float(r["val_loss"]) for r in rows if r["val_loss"]]
    info = json.loads((trained_run / "run.json").read_text())
    corpus = prepare(DataConfig(path=str(text_file), tokenizer="bytes", cache_dir=str(cache_dir)))
    assert info["unigram_entropy_val"] == corpus.unigram_entropy("val")
    # the model uses context: its final loss is clearly below the best context-free model's
    assert vals[-1] < info["unigram_entropy_val"] - 0.5
    assert vals[-1] < vals[0] - 1.0
    assert (trained_run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (trained_run / "samples.txt").read_text().startswith("--- sample 1 ---\n")
    assert (trained_run / "tokenizer").is_dir()
    latest = open_checkpoint(find_checkpoint(trained_run, "latest"))
    assert latest.progress.step == cfg.train.max_steps
    assert latest.progress.last_val_loss == vals[-1]


def test_rows_follow_the_schedule_and_the_evaluation_plan(trained_run):
    cfg = load_run_config(trained_run)
    t = cfg.train
    rows = read_metrics(trained_run / "metrics.csv")
    model = LanguageModel(cfg.model)
    assert list(rows[0]) == [*BASE_COLUMNS, *model.scalars()]
    assert [int(r["step"]) for r in rows] == list(range(t.max_steps))
    per_step = t.batch_size * t.grad_accum * cfg.model.block_size
    for r in rows:
        step = int(r["step"])
        assert float(r["lr"]) == lr_at(step, t)  # repr round-trips exactly
        assert int(r["tokens"]) == (step + 1) * per_step
        assert (r["val_loss"] != "") == (step % t.eval_every == 0 or step == t.max_steps - 1)
        assert float(r["grad_norm"]) > 0
        assert r["skipped"] == "0"


def test_same_seed_same_metrics_other_seed_other_losses(tmp_path, text_file, cache_dir):
    cfg = tiny_config(text_file, cache_dir, max_steps=6, eval_every=3)
    fit(cfg, out=tmp_path / "a")
    fit(cfg, out=tmp_path / "b")
    fit(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=7)), out=tmp_path / "c")
    a, b, c = (rows_without_clock(tmp_path / x) for x in "abc")
    assert a == b
    assert [r["train_loss"] for r in a] != [r["train_loss"] for r in c]


def test_resume_continues_bit_identically(tmp_path, text_file, cache_dir):
    cfg = tiny_config(text_file, cache_dir, max_steps=12, ckpt_every=4, eval_every=5)
    fit(cfg, out=tmp_path / "full")
    stopped = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, stop_after=8))
    result = fit(stopped, out=tmp_path / "split")
    assert (result.steps, result.finished) == (8, False)
    assert load_run_config(tmp_path / "split").train.stop_after is None  # one invocation only
    # a crash after the checkpoint: rows past it, and a row cut off mid-line
    metrics = tmp_path / "split" / "metrics.csv"
    lines = metrics.read_text().splitlines(keepends=True)
    metrics.write_text("".join([*lines, lines[3].replace("2,", "8,", 1), "9,11"]))
    result = fit(cfg, resume=tmp_path / "split")
    assert (result.steps, result.finished) == (12, True)
    assert rows_without_clock(tmp_path / "split") == rows_without_clock(tmp_path / "full")
    full = open_checkpoint(find_checkpoint(tmp_path / "full", "latest"))
    split = open_checkpoint(find_checkpoint(tmp_path / "split", "latest"))
    assert split.progress.best_val_loss == full.progress.best_val_loss


def test_resume_may_extend_the_run(tmp_path, text_file, cache_dir):
    cfg = tiny_config(text_file, cache_dir, max_steps=4, ckpt_every=2)
    fit(cfg, out=tmp_path / "r")
    longer = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_steps=6))
    result = fit(longer, resume=tmp_path / "r")
    assert result.steps == 6
    assert [int(r["step"]) for r in read_metrics(tmp_path / "r" / "metrics.csv")] == list(range(6))
    assert load_run_config(tmp_path / "r").train.max_steps == 6


def test_validation_batches_are_fixed_and_independent_of_the_seed(tmp_path, text_file, cache_dir):
    cfg = tiny_config(text_file, cache_dir)
    other = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=99))
    a = Trainer(cfg, Dist(), out=tmp_path / "a")
    b = Trainer(other, Dist(), out=tmp_path / "b")
    assert len(a.data.val) == cfg.train.eval_batches
    for (xa, ya), (xb, yb) in zip(a.data.val, b.data.val, strict=True):
        assert torch.equal(xa, xb)
        assert torch.equal(ya, yb)
    # the other seed's set gives a's model the same number; another val_seed's set does not
    assert a.evaluate(a.model, b.data.val) == a.evaluate(a.model, a.data.val)
    shifted = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, val_seed=5))
    c = Trainer(shifted, Dist(), out=tmp_path / "c")
    assert a.evaluate(a.model, c.data.val) != a.evaluate(a.model, a.data.val)
    assert list(tmp_path.iterdir()) == []  # building a Trainer writes nothing


def nan_after(monkeypatch, first_bad_call: int):
    """Make every training forward from call `first_bad_call` on return a NaN loss."""
    calls = {"n": 0}
    forward = LanguageModel.forward

    def patched(self, idx, targets=None, cache=None):
        logits, loss = forward(self, idx, targets, cache)
        if loss is not None and torch.is_grad_enabled():
            calls["n"] += 1
            if calls["n"] >= first_bad_call:
                loss = loss * math.nan
        return logits, loss

    monkeypatch.setattr(LanguageModel, "forward", patched)


def test_non_finite_steps_are_skipped_and_counted(tmp_path, text_file, cache_dir, monkeypatch):
    cfg = tiny_config(text_file, cache_dir, max_steps=6, max_skips=10, ckpt_every=3, eval_every=2)
    nan_after(monkeypatch, first_bad_call=4)  # steps 3, 4, 5 (one micro-batch per step)
    result = fit(cfg, out=tmp_path / "r")
    rows = read_metrics(tmp_path / "r" / "metrics.csv")
    assert [r["skipped"] for r in rows] == ["0", "0", "0", "1", "2", "3"]
    assert math.isnan(float(rows[3]["train_loss"]))
    assert result.skipped == 3
    # skipped steps leave the weights alone: evaluations after steps 2, 4 and 5 agree exactly
    assert rows[2]["val_loss"] == rows[4]["val_loss"] == rows[5]["val_loss"]
    assert rows[0]["val_loss"] != rows[2]["val_loss"]
    # and they write no checkpoint: `latest` is the one after step 2
    assert open_checkpoint(find_checkpoint(tmp_path / "r", "latest")).progress.step == 3


def test_consecutive_skips_stop_and_keep_the_last_good_checkpoint(
    tmp_path, text_file, cache_dir, monkeypatch
):
    cfg = tiny_config(text_file, cache_dir, max_steps=20, max_skips=3, ckpt_every=2)
    nan_after(monkeypatch, first_bad_call=6)  # steps 5, 6, 7 fail
    with pytest.raises(DivergenceError, match=r"steps 5\.\.7 .*max_skips.*last good checkpoint"):
        fit(cfg, out=tmp_path / "r")
    ckpt = open_checkpoint(find_checkpoint(tmp_path / "r", "latest"))
    assert ckpt.progress.step == 4
    assert read_metrics(tmp_path / "r" / "metrics.csv")[-1]["skipped"] == "3"


def test_bf16_autocast_trains_close_to_float32(tmp_path, text_file, cache_dir):
    cfg = tiny_config(text_file, cache_dir, max_steps=3, eval_every=100)
    bf16 = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, dtype="bfloat16"))
    fit(cfg, out=tmp_path / "f32")
    fit(bf16, out=tmp_path / "bf16")
    a, b = (read_metrics(tmp_path / x / "metrics.csv") for x in ("f32", "bf16"))
    for ra, rb in zip(a, b, strict=True):
        assert math.isfinite(float(rb["train_loss"]))
        assert float(rb["train_loss"]) == pytest.approx(float(ra["train_loss"]), abs=0.05)
    assert a[0]["train_loss"] != b[0]["train_loss"]  # autocast did change the arithmetic


def test_gradient_accumulation_equals_a_bigger_batch(tmp_path, text_file, cache_dir):
    """2 x 2 micro-batches see the same 4 sequences as 1 x 4: same loss, same gradient."""
    big = tiny_config(text_file, cache_dir, max_steps=3, batch_size=4, grad_accum=1)
    acc = tiny_config(text_file, cache_dir, max_steps=3, batch_size=2, grad_accum=2)
    fit(big, out=tmp_path / "big")
    fit(acc, out=tmp_path / "acc")
    a, b = (read_metrics(tmp_path / x / "metrics.csv") for x in ("big", "acc"))
    for ra, rb in zip(a, b, strict=True):
        assert ra["tokens"] == rb["tokens"]
        for col in ("train_loss", "grad_norm"):
            assert float(rb[col]) == pytest.approx(float(ra[col]), rel=1e-5)


def test_config_json_is_a_valid_config_file(trained_run):
    d = json.loads((trained_run / "config.json").read_text())
    assert ExperimentConfig.from_dict(d) == load_run_config(trained_run)
    assert set(d) == {"preset", "model", "data", "train"}
    assert Path(d["data"]["path"]).is_absolute()  # a resume from another folder finds the text


def test_loop_marks_its_host_syncs():
    """Every .tolist()/float() of a tensor in the loop sits on a line marked `# host sync`."""
    source = open(loop_module.__file__).read().splitlines()
    patterns = (".tolist()", ".item()", "float(self", "self.model.scalars()")
    flagged = [ln for ln in source if any(p in ln for p in patterns)]
    assert flagged
    for line in flagged:
        if "return [tokenizer.decode" in line:  # the samples at the end
            continue
        assert "# host sync" in line, line
