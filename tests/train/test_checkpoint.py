import dataclasses
import os
import random

import numpy as np
import pytest
import torch

from sympformer.data import BytesTokenizer
from sympformer.model import CheckpointError, LanguageModel
from sympformer.train import (
    Progress,
    build_optimizer,
    find_checkpoint,
    open_checkpoint,
    preset_config,
    save_checkpoint,
)
from sympformer.train.checkpoint import CHECKPOINTS


@pytest.fixture
def parts():
    cfg = preset_config("smoke")
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, vocab_size=257))
    model = LanguageModel(cfg.model)
    opt = build_optimizer(model, cfg.train)
    x = torch.randint(257, (2, 16))
    model(x, x)[1].backward()
    opt.step()  # the optimizer has state worth saving
    return cfg, model, opt


def save(run_dir, parts, step, labels=("latest",)):
    cfg, model, opt = parts
    progress = Progress(step=step, tokens=10 * step, best_val_loss=1.25, data={"epoch": 1})
    return save_checkpoint(run_dir, list(labels), model, opt, progress, cfg, BytesTokenizer())


def test_round_trip_restores_weights_optimizer_progress_and_rng(tmp_path, parts):
    cfg, model, opt = parts
    torch.manual_seed(5)
    path = save(tmp_path, parts, step=3)
    expected = (torch.rand(3), np.random.rand(), random.random())  # noqa: NPY002
    ckpt = open_checkpoint(find_checkpoint(tmp_path, "latest"))
    assert ckpt.path == path.resolve()
    assert (ckpt.progress.step, ckpt.progress.tokens, ckpt.progress.best_val_loss) == (3, 30, 1.25)
    assert ckpt.config == cfg
    fresh = LanguageModel(cfg.model)
    ckpt.load_model(fresh)
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    fresh_opt = build_optimizer(fresh, cfg.train)
    ckpt.load_optimizer(fresh_opt)
    for a, b in zip(opt.state.values(), fresh_opt.state.values(), strict=True):
        assert torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])
    ckpt.restore_rng()
    again = (torch.rand(3), np.random.rand(), random.random())  # noqa: NPY002
    assert torch.equal(expected[0], again[0])
    assert expected[1:] == again[1:]
    assert LanguageModel.from_pretrained(path).cfg == cfg.model  # also a plain model folder


def test_only_linked_checkpoints_are_kept(tmp_path, parts):
    first = save(tmp_path, parts, step=1, labels=("latest", "best"))
    save(tmp_path, parts, step=2)
    third = save(tmp_path, parts, step=3)
    root = tmp_path / CHECKPOINTS
    assert sorted(p.name for p in root.iterdir()) == sorted(
        ["best", "latest", first.name, third.name]
    )
    assert find_checkpoint(tmp_path, "best") == first.resolve()
    assert find_checkpoint(tmp_path, "latest") == third.resolve()


def test_a_failed_save_changes_nothing(tmp_path, parts, monkeypatch):
    good = save(tmp_path, parts, step=1)
    before = sorted(p.name for p in (tmp_path / CHECKPOINTS).iterdir())
    real_save = torch.save

    def crash(obj, path, *a, **k):
        if str(path).endswith("rng.pt"):
            raise OSError("disk full")
        return real_save(obj, path, *a, **k)

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save(tmp_path, parts, step=2)
    assert sorted(p.name for p in (tmp_path / CHECKPOINTS).iterdir()) == before
    assert find_checkpoint(tmp_path, "latest") == good.resolve()


def test_leftovers_of_a_killed_save_are_ignored_then_removed(tmp_path, parts):
    save(tmp_path, parts, step=1)
    root = tmp_path / CHECKPOINTS
    half = root / ".step-000002-abcdef.tmp"
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"half")
    assert find_checkpoint(tmp_path, "latest").name.startswith("step-000001")
    save(tmp_path, parts, step=3)
    assert not half.exists()


@pytest.mark.parametrize(
    "damage", ["garbage-weights", "flip-optimizer", "missing-rng", "bad-state", "no-state"]
)
def test_damaged_checkpoints_are_refused_with_one_line(tmp_path, parts, damage):
    path = save(tmp_path, parts, step=1)
    if damage == "garbage-weights":
        (path / "model.safetensors").write_bytes(os.urandom(256))
    elif damage == "flip-optimizer":
        data = bytearray((path / "optimizer.pt").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (path / "optimizer.pt").write_bytes(bytes(data))
    elif damage == "missing-rng":
        (path / "rng.pt").unlink()
    elif damage == "bad-state":
        (path / "state.json").write_text("{ nope")
    else:
        (path / "state.json").unlink()
    with pytest.raises(CheckpointError) as e:
        open_checkpoint(path)
    assert "\n" not in str(e.value)
    assert str(path) in str(e.value)


def test_a_checkpoint_of_another_model_does_not_load(tmp_path, parts):
    cfg, _, _ = parts
    path = save(tmp_path, parts, step=1)
    other = LanguageModel(dataclasses.replace(cfg.model, d_model=48))
    with pytest.raises(CheckpointError, match="does not fit"):
        open_checkpoint(path).load_model(other)
