"""Parameters: groups, no dead parameters, special inits, time, save/load, matched baselines."""

import dataclasses
import math

import pytest
import torch
from torch.testing import assert_close

from sympformer import ModelConfig, build_model
from sympformer.dynamics import SCHEMES
from sympformer.model import CheckpointError, LanguageModel, count_params, matched_gpt
from sympformer.model.attention import Scalar, _OracleModule
from tests.model.configs import CONFIGS, TINY, cfg_id


def _dead(model, cfg):
    """Parameters whose gradient is exactly zero, in float64: in float32 a second-order effect
    (e.g. the Stein drift of layer 0, quadratic in the small first kick) can round to nothing."""
    model = model.double()
    idx = torch.randint(cfg.vocab_size, (2, 24))
    model(idx, idx)[1].backward()
    return {n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()}


@pytest.mark.parametrize("cfg", CONFIGS, ids=cfg_id)
def test_every_parameter_gets_a_gradient(cfg):
    """No dead parameters, with one documented exception (SPEC §7): with a zero initial velocity,
    the first step of a scheme whose drift reads the *old* momentum moves no position, so layer 0's
    position-only parameters receive nothing; kick-damp-drift-type schemes have none."""
    dead = _dead(build_model(cfg), cfg)
    explicit_first_step = (
        cfg.spec.accelerated
        and cfg.velocity_init == "zero"
        and not SCHEMES[cfg.scheme].drift_uses_kick
    )
    if explicit_first_step:
        assert dead, "the documented exception should show"
        assert all(n.startswith("blocks.0.") for n in dead), dead
    else:
        assert dead == set()


@pytest.mark.parametrize("cfg", CONFIGS, ids=cfg_id)
def test_param_groups_partition_the_parameters(cfg):
    model = build_model(cfg)
    groups = {g["name"]: g for g in model.param_groups(weight_decay=0.1, scalar_lr_mult=100.0)}
    ids = [id(p) for g in groups.values() for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())  # each exactly once
    raw = {id(m.raw) for m in model.modules() if isinstance(m, Scalar)}
    assert {id(p) for p in groups.get("scalars", {"params": []})["params"]} == raw
    assert all(g["weight_decay"] == 0.0 for name, g in groups.items() if name != "decay")
    norms_and_embeddings = {
        id(m.weight)
        for m in model.modules()
        if isinstance(m, torch.nn.LayerNorm | torch.nn.Embedding)
    }
    assert not norms_and_embeddings & {id(p) for p in groups["decay"]["params"]}
    if "scalars" in groups:
        assert groups["scalars"]["lr_mult"] == 100.0


def test_scalars_start_at_their_configured_values():
    cfg = ModelConfig(arch="symp", scheme="tao", **TINY)
    values = build_model(cfg).scalars()
    assert values["blocks.0.h"] == pytest.approx(0.01)  # SPEC §7: small steps for tao
    assert values["blocks.1.c_log"] == pytest.approx(3.0)
    assert values["blocks.1.c_lin"] == pytest.approx(1e-4)
    assert values["blocks.1.attn.nu"] == pytest.approx(1.0)
    assert values["blocks.1.attn.lookahead"] == pytest.approx(1e-3)
    assert values["blocks.0.xi"] == pytest.approx(0.5)
    assert build_model(ModelConfig(arch="symp", **TINY)).scalars()["blocks.0.h"] == pytest.approx(
        0.3
    )


@pytest.mark.parametrize("arch", ["symp", "symp_linear"])
def test_special_inits_run_after_the_generic_one(arch):
    model = build_model(ModelConfig(arch=arch, n_layer=3, n_head=4, d_model=32))
    for m in model.modules():
        if isinstance(m, _OracleModule):  # orthonormal W_O: Σ_h W_O,h W_O,hᵀ = I at init
            assert_close(m.wo @ m.wo.T, torch.eye(32), rtol=0, atol=1e-5)
    gpt = build_model(ModelConfig(arch="gpt", n_layer=8, d_model=256, n_head=4))
    stds = [float(b.mlp.proj.weight.detach().std()) for b in gpt.blocks]
    assert sum(stds) / len(stds) == pytest.approx(0.02 / math.sqrt(16), rel=0.05)
    assert float(gpt.blocks[0].mlp.fc.weight.detach().std()) == pytest.approx(0.02, rel=0.05)


def test_layer_time_accumulates_the_learned_steps():
    cfg = ModelConfig(arch="symp", **TINY)
    model = build_model(cfg)
    with torch.no_grad():
        model.blocks[0].h.raw.fill_(0.0)  # h_0 = softplus(0) = ln 2
    seen = []
    model.blocks[1].register_forward_hook(lambda m, i, out: seen.append(out.t))
    model(torch.randint(cfg.vocab_size, (1, 5)))
    expected = 1.0 + math.log(2) + model.scalars()["blocks.1.h"]
    assert torch.is_tensor(seen[0])
    assert seen[0].dim() == 0
    assert float(seen[0]) == pytest.approx(expected, rel=1e-6)


def test_save_and_load_round_trip(tmp_path):
    cfg = ModelConfig(arch="symp", scheme="ab2", velocity_init="learned", **TINY)
    model = build_model(cfg)
    model.save_pretrained(tmp_path / "m")
    again = LanguageModel.from_pretrained(tmp_path / "m")
    assert again.cfg == cfg
    idx = torch.randint(cfg.vocab_size, (2, 9))
    assert torch.equal(model(idx)[0], again(idx)[0])


def test_loading_a_bad_model_folder_is_a_clear_error(tmp_path):
    model = build_model(ModelConfig(arch="symp", **TINY))
    with pytest.raises(CheckpointError, match="not found"):
        LanguageModel.from_pretrained(tmp_path / "nothing")
    model.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="does not fit"):
        LanguageModel.from_pretrained(tmp_path / "m")
    other = build_model(ModelConfig(arch="gpt", **TINY))
    other.save_pretrained(tmp_path / "o")
    (tmp_path / "m" / "model.safetensors").write_bytes(
        (tmp_path / "o" / "model.safetensors").read_bytes()
    )
    with pytest.raises(CheckpointError, match="does not fit"):
        LanguageModel.from_pretrained(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        LanguageModel.from_pretrained(tmp_path / "m")


def test_matched_gpt_is_within_two_percent():
    big = ModelConfig(arch="yurii", vocab_size=512, d_model=64)  # learned velocity: more params
    target = count_params(big)
    gpt = matched_gpt(target, big)
    assert gpt.arch == "gpt"
    assert gpt.scheme is None
    assert abs(count_params(gpt) - target) / target < 0.02
    plain = dataclasses.replace(big, arch="gpt", velocity_init="auto")
    assert count_params(plain) < 0.9 * target  # the plain GPT is clearly smaller: matching matters


def test_parameter_count_counts_the_tied_head_once():
    cfg = ModelConfig(arch="gpt", vocab_size=128, n_layer=1, n_head=1, d_model=8, block_size=4)
    # embeddings (128 + 4) * 8, attention 4 * 8 * 8, MLP 2 * 8 * 32, three LayerNorm weights
    assert build_model(cfg).num_params() == 132 * 8 + 4 * 64 + 2 * 256 + 3 * 8
