import dataclasses
import math

import pytest
import yaml

from sympformer.cli import expand_args, main
from sympformer.model import LanguageModel
from sympformer.train import (
    DEFAULT_PRESET,
    PRESETS,
    ExperimentConfig,
    TrainConfig,
    build_optimizer,
    lr_at,
    preset_config,
    set_lr,
)
from sympformer.train.config import PRESET_DIR, expand_preset


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_valid_and_round_trip(name):
    cfg = preset_config(name)
    assert cfg.preset == name
    assert ExperimentConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_each_preset_is_its_config_file(name, capsys):
    """A preset is its YAML file (the only copy): the fields it sets over the defaults, and what
    `--preset NAME` starts from."""
    data = yaml.safe_load((PRESET_DIR / f"{name}.yaml").read_text())
    assert data.pop("preset") == name
    assert expand_preset(name, data) == PRESETS[name]
    printed = printed_config(capsys, "--preset", name)
    for section in ("data", "train"):
        assert printed[section] == PRESETS[name][section]


def test_paper_v1_is_spec_9_1():
    cfg = preset_config("paper-v1")
    m, t = cfg.model, cfg.train
    assert (m.n_layer, m.n_head, m.d_model, m.mlp_width, m.block_size) == (4, 4, 64, 256, 128)
    assert cfg.data.tokenizer == "gpt2"
    assert (t.batch_size, t.grad_accum, t.max_steps) == (6, 12, 1001)
    assert (t.beta1, t.beta2, t.lr, t.warmup_steps, t.min_lr_ratio) == (0.9, 0.95, 3e-4, 150, 0.4)
    assert (t.scalar_lr_mult, t.grad_clip, t.eval_every, t.eval_batches) == (100.0, 1.0, 100, 20)
    assert t.seed == 1337


def test_quick_is_the_default_preset(capsys):
    assert DEFAULT_PRESET == "quick"
    with pytest.raises(SystemExit) as e:
        main(["train", "--print_config"])
    assert e.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["preset"] == "quick"
    assert printed["model"] == PRESETS["quick"]["model"]
    assert printed["train"] == PRESETS["quick"]["train"]


def printed_config(capsys, *args: str) -> dict:
    with pytest.raises(SystemExit) as e:
        main(["train", *args, "--print_config"])
    assert e.value.code == 0, capsys.readouterr().err
    return yaml.safe_load(capsys.readouterr().out)


def test_precedence_preset_then_config_files_then_flags(tmp_path, capsys):
    first = tmp_path / "a.yaml"
    first.write_text("train:\n  max_steps: 77\n  lr: 0.5\nmodel:\n  n_layer: 3\n")
    second = tmp_path / "b.yaml"
    second.write_text("train:\n  lr: 0.25\n")
    # flags before the config file still win; the later config file beats the earlier one
    cfg = printed_config(
        capsys, "--max-steps", "99", "--config", str(first), "--preset", "smoke",
        "--config", str(second),
    )  # fmt: skip
    assert cfg["preset"] == "smoke"
    assert cfg["train"]["max_steps"] == 99  # flag
    assert cfg["train"]["lr"] == 0.25  # second file
    assert cfg["model"]["n_layer"] == 3  # first file
    assert cfg["model"]["d_model"] == PRESETS["smoke"]["model"]["d_model"]  # preset


def test_a_config_file_may_name_its_preset(tmp_path, capsys):
    file = tmp_path / "c.yaml"
    file.write_text("preset: paper-v1\ntrain:\n  lr: 0.5\n")
    cfg = printed_config(capsys, "--config", str(file))
    assert cfg["preset"] == "paper-v1"
    assert cfg["train"]["grad_accum"] == 12
    assert cfg["train"]["lr"] == 0.5


def test_short_flags_map_to_nested_fields(tmp_path, capsys):
    cfg = printed_config(
        capsys, "--arch", "gpt", "--data", str(tmp_path / "t.txt"), "--tokenizer", "bytes",
        "--seed", "7", "--device", "cpu", "--dtype", "bfloat16", "--compile", "--out",
        str(tmp_path / "o"),
    )  # fmt: skip
    assert cfg["model"]["arch"] == "gpt"
    assert cfg["model"]["scheme"] is None
    assert cfg["data"]["path"] == str(tmp_path / "t.txt")
    assert cfg["data"]["tokenizer"] == "bytes"
    assert (cfg["train"]["seed"], cfg["train"]["device"]) == (7, "cpu")
    assert (cfg["train"]["dtype"], cfg["train"]["compile"]) == ("bfloat16", True)
    assert cfg["out"] == str(tmp_path / "o")


def test_expand_args_normalises_dashes_and_keeps_other_commands():
    assert expand_args(["sample", "--max-new-tokens=5", "--top-k", "3"]) == [
        "sample",
        "--max_new_tokens=5",
        "--top_k",
        "3",
    ]
    args = expand_args(["train", "--compile", "false", "--max-steps=4"])
    assert args[-3:] == ["--train.compile", "false", "--train.max_steps=4"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_steps": 0}, "max_steps"),
        ({"batch_size": -1}, "batch_size"),
        ({"grad_accum": 1.5}, "grad_accum"),
        ({"lr": 0.0}, "lr"),
        ({"lr": math.nan}, "lr"),
        ({"min_lr_ratio": 1.5}, "min_lr_ratio"),
        ({"beta2": 1.0}, "beta2"),
        ({"grad_clip": 0.0}, "grad_clip"),
        ({"warmup_steps": -1}, "warmup_steps"),
        ({"dtype": "float16"}, "dtype"),
        ({"device": "tpu"}, "device"),
        ({"top_k": 0}, "top_k"),
        ({"stop_after": 0}, "stop_after"),
        ({"compile": "yes"}, "compile"),
        ({"max_skips": 0}, "max_skips"),
    ],
)
def test_bad_train_values_fail_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"^TrainConfig\.{field}=") as e:
        TrainConfig(**kwargs)
    assert "\n" not in str(e.value)


def test_experiment_config_rejects_unknown_fields():
    d = preset_config("smoke").to_dict()
    d["train"]["learning_rate"] = 1.0
    with pytest.raises(ValueError, match="learning_rate"):
        ExperimentConfig.from_dict(d)
    with pytest.raises(ValueError, match="optim"):
        ExperimentConfig.from_dict({"optim": {}})


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_lr_schedule_warms_up_from_above_zero_then_decays_to_the_floor(name):
    t = preset_config(name).train
    lrs = [lr_at(s, t) for s in range(t.max_steps)]
    w = t.warmup_steps
    assert lrs[0] == pytest.approx(t.lr / w, rel=1e-12)
    assert lrs[0] > 0
    assert all(a < b for a, b in zip(lrs[: w - 1], lrs[1:w], strict=True))  # rising
    assert lrs[w - 1] == pytest.approx(t.lr, rel=1e-12)
    assert lrs[w] == pytest.approx(t.lr, rel=1e-12)  # no jump at the end of the warm-up
    assert all(a >= b for a, b in zip(lrs[w:-1], lrs[w + 1 :], strict=True))  # falling
    assert lrs[-1] == pytest.approx(t.lr * t.min_lr_ratio, rel=1e-12)


def test_lr_schedule_without_warmup_starts_at_peak():
    t = TrainConfig(warmup_steps=0, max_steps=10, lr=1.0, min_lr_ratio=0.0)
    assert lr_at(0, t) == 1.0
    assert lr_at(9, t) == pytest.approx(0.0, abs=1e-15)
    assert lr_at(5, dataclasses.replace(t, max_steps=1)) == 1.0


def test_set_lr_scales_each_group_by_its_multiplier():
    cfg = preset_config("smoke")
    model = LanguageModel(dataclasses.replace(cfg.model, vocab_size=257))
    opt = build_optimizer(model, cfg.train)
    set_lr(opt, 0.01)
    by_name = {g["name"]: g["lr"] for g in opt.param_groups}
    assert by_name["scalars"] == pytest.approx(0.01 * cfg.train.scalar_lr_mult, rel=1e-15)
    assert by_name["decay"] == 0.01
    assert {g["name"] for g in opt.param_groups} == {"decay", "no_decay", "scalars"}
