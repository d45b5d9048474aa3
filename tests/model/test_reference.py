"""The fast path equals the explicit loop reference in outputs and gradients (float64)."""

import pytest
import torch
from torch.testing import assert_close

from sympformer import ModelConfig, build_model
from sympformer.model.variant import Variant, grid
from tests.model.configs import INGREDIENT_VARIANTS
from tests.reference import reference_of

SMALL = ModelConfig(vocab_size=23, n_layer=2, n_head=2, d_model=8, block_size=8)
ACCELERATED = [
    Variant(v.arch, v.scheme, init).model(SMALL)
    for v in grid(["symp", "symp_linear"])
    for init in ("zero", "learned")
    if init == "learned" or v.scheme == "presymp_euler"
] + [Variant.parse(label).model(SMALL) for label in INGREDIENT_VARIANTS]


def _with_reference_oracles(model):
    for block in model.blocks:
        if block.attn is None:  # a last layer without attention (drift=identity)
            continue
        fast = block.attn.oracle
        block.attn.oracle = lambda tape, fast=fast: reference_of(fast(tape))
    return model


def _run(model, idx):
    logits, loss = model(idx, idx)
    grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    return logits, grads


@pytest.mark.parametrize("cfg", ACCELERATED, ids=lambda c: str(Variant.of(c)))
def test_fast_model_equals_the_loop_reference_in_outputs_and_gradients(cfg):
    torch.manual_seed(1)
    fast = build_model(cfg).double()
    ref = _with_reference_oracles(build_model(cfg).double())
    ref.load_state_dict(fast.state_dict())
    # move away from the symmetric init so that every term matters
    with torch.no_grad():
        for (_, a), (_, b) in zip(fast.named_parameters(), ref.named_parameters(), strict=True):
            a.add_(0.1 * torch.randn_like(a))
            b.copy_(a)
    idx = torch.randint(cfg.vocab_size, (1, 7))
    logits, grads = _run(fast, idx)
    ref_logits, ref_grads = _run(ref, idx)
    assert_close(logits, ref_logits, rtol=0, atol=1e-10)
    for g, r in zip(grads, ref_grads, strict=True):
        assert (g is None) == (r is None)
        if g is not None:
            assert_close(g, r, rtol=0, atol=1e-10)
