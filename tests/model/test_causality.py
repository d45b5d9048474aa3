"""Strict causality of every arch x scheme (SPEC §6.3): the future never changes the past."""

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from sympformer import build_model
from tests.model.configs import CONFIGS, cfg_id

T = 40
TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


def _model(cfg, dtype):
    return build_model(cfg).to(dtype).eval()


def _per_position_loss(logits, idx):
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), idx[:, 1:].flatten(), reduction="none")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("cfg", CONFIGS, ids=cfg_id)
def test_future_tokens_do_not_change_past_logits_or_losses(cfg, dtype):
    model = _model(cfg, dtype)
    idx = torch.randint(cfg.vocab_size, (2, T))
    with torch.no_grad():
        logits, _ = model(idx)
        loss = _per_position_loss(logits, idx).view(2, T - 1)
        for cut in (1, T // 2, T - 1):
            alt = idx.clone()
            alt[:, cut:] = (
                alt[:, cut:] + torch.randint(1, cfg.vocab_size, alt[:, cut:].shape)
            ) % cfg.vocab_size
            alt_logits, _ = model(alt)
            alt_loss = _per_position_loss(alt_logits, alt).view(2, T - 1)
            assert_close(alt_logits[:, :cut], logits[:, :cut], rtol=0, atol=TOL[dtype])
            # the loss at position s predicts token s+1: positions s + 1 < cut are untouched
            assert_close(alt_loss[:, : cut - 1], loss[:, : cut - 1], rtol=0, atol=TOL[dtype])
            assert (alt_logits[:, cut:] - logits[:, cut:]).abs().max() > 1e-4  # it did reach


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("cfg", CONFIGS, ids=cfg_id)
def test_a_cropped_prefix_gives_the_same_logits(cfg, dtype):
    model = _model(cfg, dtype)
    idx = torch.randint(cfg.vocab_size, (2, T))
    with torch.no_grad():
        full, _ = model(idx)
        for cut in (1, 17, T - 1):
            assert_close(model(idx[:, :cut])[0], full[:, :cut], rtol=0, atol=TOL[dtype])


@pytest.mark.parametrize("cfg", CONFIGS, ids=cfg_id)
def test_gradient_of_past_losses_wrt_future_embeddings_is_exactly_zero(cfg):
    model = _model(cfg, torch.float64)
    idx = torch.randint(cfg.vocab_size, (2, T))
    captured = []

    def keep(module, inputs, out):
        out.retain_grad()
        captured.append(out)

    embeddings = (model.tok_emb, model.vel_tok_emb)
    hooks = [m.register_forward_hook(keep) for m in embeddings if m is not None]
    logits, _ = model(idx)
    cut = T // 2
    _per_position_loss(logits, idx).view(2, T - 1)[:, : cut - 1].sum().backward()
    for h in hooks:
        h.remove()
    for emb in captured:
        assert torch.equal(emb.grad[:, cut:], torch.zeros_like(emb.grad[:, cut:]))
        assert emb.grad[:, : cut - 1].abs().max() > 0
