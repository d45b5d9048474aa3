"""torch.compile traces every model in one graph (no graph breaks) and matches eager, in training
(logits, loss, every gradient) and in cached decoding.

Compiling with Inductor is slow on CPU (a minute or more per model on 2 busy cores), so the default
suite compiles the default model with Inductor, traces the other accelerated kernel family and
cached decoding with AOTAutograd (the same graphs, fullgraph, without C++ code generation: seconds),
and the full grid (every arch x scheme, training and decoding, with Inductor) is marked slow:
``pytest -m slow tests/model/test_compile.py``."""

import pytest
import torch
from torch.testing import assert_close

from sympformer import ModelConfig, build_model
from sympformer.model.variant import Variant, grid

TINY = ModelConfig(vocab_size=61, n_layer=2, n_head=2, d_model=16, block_size=32)
FAMILIES = ["symp:presymp_euler", "symp_linear:presymp_euler"]
"""One model per accelerated kernel family (softmax, linear) for the default suite."""
BACKENDS = ["inductor", "aot_eager"]
"""Their compilers in the default suite: Inductor for the default model, tracing for the other."""
GRID = [str(v) for v in grid()]


def _model(label: str):
    torch.manual_seed(0)
    return build_model(Variant.parse(label).model(TINY))


def _training_matches(label: str, backend: str) -> None:
    model = _model(label)
    compiled = torch.compile(model, backend=backend, fullgraph=True)  # a graph break is an error
    idx = torch.randint(model.cfg.vocab_size, (2, 32))
    logits, loss = model(idx, idx)
    c_logits, c_loss = compiled(idx, idx)
    assert_close(c_logits, logits, rtol=1e-4, atol=1e-5)
    assert_close(c_loss, loss, rtol=1e-5, atol=1e-6)
    params = list(model.parameters())
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    c_grads = torch.autograd.grad(c_loss, params, allow_unused=True)
    for g, c in zip(grads, c_grads, strict=True):
        assert (g is None) == (c is None)
        if g is not None:
            assert_close(c, g, rtol=1e-3, atol=1e-6)


def _decoding_matches(label: str, backend: str) -> None:
    """Prefill, then one token at a time through the compiled model: the logits of the eager
    full forward. The cache's Python state (offsets, slots) is traced; after the first decoded
    token the offset becomes symbolic, so a run takes about three compilations."""
    model = _model(label).eval()
    compiled = torch.compile(model, backend=backend, fullgraph=True)
    idx = torch.randint(model.cfg.vocab_size, (2, 20))
    with torch.no_grad():
        full, _ = model(idx)
        cache = model.new_cache()
        steps = [compiled(idx[:, :12], cache=cache)[0]]
        steps += [compiled(idx[:, i : i + 1], cache=cache)[0] for i in range(12, 20)]
    assert cache.offset == 20
    assert_close(torch.cat(steps, dim=1), full, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("label", "backend"), list(zip(FAMILIES, BACKENDS, strict=True)))
def test_compiled_training_is_one_graph_and_equals_eager(label, backend):
    torch._dynamo.reset()
    _training_matches(label, backend)


def test_compiled_cached_decoding_is_one_graph_and_equals_eager():
    torch._dynamo.reset()
    _decoding_matches(FAMILIES[0], "aot_eager")


@pytest.mark.slow
@pytest.mark.parametrize("label", GRID)
def test_every_compiled_model_trains_like_the_eager_one(label):
    torch._dynamo.reset()
    _training_matches(label, "inductor")


@pytest.mark.slow
@pytest.mark.parametrize("label", GRID)
def test_every_compiled_model_decodes_like_the_eager_one(label):
    torch._dynamo.reset()
    _decoding_matches(label, "inductor")


def test_compiled_model_with_activation_checkpointing_equals_eager():
    """Per-block recomputation traces into the same graph and changes no gradient."""
    torch._dynamo.reset()
    model = _model(FAMILIES[0])
    idx = torch.randint(model.cfg.vocab_size, (2, 32))
    _, loss = model(idx, idx)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    model.activation_checkpointing = True
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    _, c_loss = compiled(idx, idx)
    c_grads = torch.autograd.grad(c_loss, list(model.parameters()))
    for g, c in zip(grads, c_grads, strict=True):
        assert_close(c, g, rtol=1e-5, atol=1e-7)
