"""The ingredients (ModelConfig.drift, .force, .damping, .mlp_step): known models they reproduce
exactly, and their validation. Causality, caching, the loop reference and finiteness of every
ingredient are covered with the other configurations (tests/model/configs.py)."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from sympformer import ModelConfig, Variant, build_model
from sympformer.dynamics import State
from sympformer.model.attention import ClassicalAttention
from tests.model.configs import TINY, TINY_MODEL

EXACT = {"rtol": 0, "atol": 1e-12}


def _perturbed(model):
    """Every parameter moved off its init, so that no term is zero by symmetry."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def _gpt_attention(block, cfg) -> ClassicalAttention:
    """GPT's attention module (the one `gpt` uses) carrying the block's W_Q, W_K, W_V, W_out."""
    attn = ClassicalAttention(cfg).double()
    o = block.attn
    with torch.no_grad():
        attn.qkv.weight.copy_(torch.cat([o.wq.weight, o.wk.weight, o.wv.weight]))
        attn.proj.weight.copy_(o.wout.weight)
    return attn


def _heavy_ball_logits(model, idx):
    """Heavy ball written out (SPEC §5 "Relations"), with GPT's attention field Γ:
    X^{k+1} = X^k + h Y^k, Y^{k+1} = a Y^k + h Γ(LN(X^k + μ_la Y^k)); then the model's momentum
    LayerNorm and look-ahead Euler MLP sub-step."""
    cfg = model.cfg
    x = model.tok_emb(idx) + model.pos_emb(torch.arange(idx.shape[1]))
    y = torch.zeros_like(x)
    for layer, block in enumerate(model.blocks):
        h = block.h()
        x_new = x + h * y
        if block.attn is not None:  # its kick is read (not the last layer)
            mu_la = 0.0 if block.attn.lookahead is None else block.attn.lookahead()
            gamma = _gpt_attention(block, cfg)(block.attn.norm(x + mu_la * y))
            y = block.retention() * y + h * gamma
            y = block.p_norm(y) if block.p_norm is not None else y
        v_att = (x_new - x) / h
        x = x_new + block.gamma() * block.mlp(block.ln_m(x_new + block.mu() * v_att))
        assert (layer == cfg.n_layer - 1) == (block.attn is None)
    return model.ln_f(x) @ model.tok_emb.weight.T


@pytest.mark.parametrize("kernel", ["symp", "symp_linear"])
def test_plain_euler_with_euclidean_drift_and_the_attention_force_is_heavy_ball(kernel):
    """symp:plain_euler+drift=identity+force=attention is heavy ball on GPT's attention field:
    equal to the recursion written out with GPT's own attention module (float64)."""
    variant = Variant.parse(f"{kernel}:plain_euler+drift=identity+force=attention")
    cfg = variant.model(TINY_MODEL, n_layer=3)
    model = _perturbed(build_model(cfg).double())
    idx = torch.randint(cfg.vocab_size, (2, 17))
    with torch.no_grad():
        logits, _ = model(idx)
        expected = _heavy_ball_logits(model, idx)[..., : cfg.vocab_size]
    assert_close(logits, expected, **EXACT)
    # negative control: the default (metric drift, Hamiltonian force) is another model
    other = _perturbed(build_model(Variant.parse(kernel).model(TINY_MODEL, n_layer=3)).double())
    with torch.no_grad():
        assert (other(idx)[0] - logits).abs().max() > 1e-3


def test_the_nesterov_mlp_sub_step_follows_its_equations():
    """mlp_step=nesterov (YuriiFormer's MLP sub-step on the momentum): after the scheme's step and
    LN_p, x_in = X + μ Y, Y <- LN_v(β Y + γ MLP(LN_m x_in)), X <- X + Y; in every layer (the last
    one too: its momentum is read)."""
    cfg = Variant.parse("symp+mlp_step=nesterov").model(TINY_MODEL)
    model = _perturbed(build_model(cfg).double())
    x, p = torch.randn(2, 2, 9, cfg.d_model, dtype=torch.float64)
    s = State(x, p, torch.tensor(1.4, dtype=torch.float64))
    with torch.no_grad():
        for block in model.blocks:
            out = block(s)
            step = block.scheme.step(block.oracle(None), s, block.steps(), block.damping())
            y = block.p_norm(step.p)
            x_in = step.x + block.mu() * y
            y = block.v_norm(block.beta() * y + block.gamma() * block.mlp(block.ln_m(x_in)))
            assert_close(out.p, y, **EXACT)
            assert_close(out.x, step.x + y, **EXACT)


def test_a_first_layer_at_rest_computes_the_kinetic_free_force_exactly():
    """With a zero initial velocity, layer 0 of a one-call scheme evaluates G at Y = 0, where the
    kinetic terms vanish: the block allocates the potential-only force (no W_O for the kick, one
    softmax pass less). Turning the kinetic terms back on changes no logit."""
    cfg = ModelConfig(arch="symp", **TINY)
    model = _perturbed(build_model(cfg).double())
    assert not model.blocks[0].attn.kinetic
    assert model.blocks[1].attn.kinetic
    idx = torch.randint(cfg.vocab_size, (2, 20))
    with torch.no_grad():
        logits, _ = model(idx)
        model.blocks[0].attn.kinetic = True
        full, _ = model(idx)
        assert_close(full, logits, rtol=0, atol=0)
        model.blocks[1].attn.kinetic = False  # negative control: where Y != 0 it matters
        assert (model(idx)[0] - logits).abs().max() > 1e-6


def test_constant_damping_starts_at_the_retention_and_is_learned():
    cfg = Variant.parse("symp+damping=constant").model(TINY_MODEL, retention_init=0.8)
    model = build_model(cfg)
    block = model.blocks[0]
    assert block.c_log is None
    assert block.c_lin is None
    t = torch.tensor(1.7)
    with torch.no_grad():
        damp, h = block.damping(), block.h()
        assert float(damp.sigma(t, h)) == pytest.approx(0.8, rel=1e-6)  # e^{-c h} at init
        assert float(damp.alpha(t)) == pytest.approx(-math.log(0.8) / float(h), rel=1e-6)
    idx = torch.randint(cfg.vocab_size, (2, 12))
    F.cross_entropy(model(idx)[0].flatten(0, 1), idx.flatten()).backward()
    assert block.rate.raw.grad.abs() > 0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"arch": "gpt", "drift": "identity"}, "ModelConfig.drift='identity' does not apply"),
        ({"arch": "yurii", "mlp_step": "euler"}, "ModelConfig.mlp_step='euler' does not apply"),
        ({"arch": "symp", "force": "gravity"}, "ModelConfig.force='gravity' is not one of"),
        ({"arch": "symp", "damping": "strong"}, "ModelConfig.damping='strong' is not one of"),
        (
            {"arch": "symp", "scheme": "plain_euler", "damping": "constant"},
            "ModelConfig.damping='constant' does not apply to scheme='plain_euler'",
        ),
        (
            {"arch": "symp_linear", "drift": "identity", "force": "potential"},
            "leaves symp_linear without attention",
        ),
    ],
)
def test_impossible_ingredients_are_one_clear_error(fields, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**TINY, **fields)


def test_the_accelerated_archs_resolve_the_default_ingredients():
    cfg = ModelConfig(arch="symp", **TINY)
    assert (cfg.drift, cfg.force, cfg.damping, cfg.mlp_step) == (
        "metric",
        "hamiltonian",
        "schedule",
        "euler",
    )
    gpt = ModelConfig(arch="gpt", **TINY)
    assert (gpt.drift, gpt.force, gpt.damping, gpt.mlp_step) == (None,) * 4
