"""torch.compile traces the accelerated model in one graph (no graph breaks) and matches eager."""

import torch
from torch.testing import assert_close

from sympformer import ModelConfig, build_model


def test_compiled_accelerated_model_is_one_graph_and_equals_eager():
    cfg = ModelConfig(arch="symp", vocab_size=61, n_layer=2, n_head=2, d_model=16, block_size=32)
    model = build_model(cfg)
    compiled = torch.compile(model, fullgraph=True)  # fullgraph: a graph break is an error
    idx = torch.randint(cfg.vocab_size, (2, 32))
    logits, loss = model(idx, idx)
    c_logits, c_loss = compiled(idx, idx)
    assert_close(c_logits, logits, rtol=1e-4, atol=1e-5)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    c_grads = torch.autograd.grad(c_loss, list(model.parameters()))
    for g, c in zip(grads, c_grads, strict=True):
        assert_close(c, g, rtol=1e-3, atol=1e-6)
