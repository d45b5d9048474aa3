"""KV + velocity cache: incremental decoding equals the full forward; generation is unchanged."""

import pytest
import torch
from torch.testing import assert_close

from sympformer import build_model
from tests.model.configs import CONFIGS, cfg_id

TOL = {torch.float64: 1e-10, torch.float32: 1e-4}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("cfg", CONFIGS, ids=cfg_id)
def test_incremental_decoding_reproduces_the_full_forward(cfg, dtype):
    model = build_model(cfg).to(dtype).eval()
    idx = torch.randint(cfg.vocab_size, (2, 30))
    with torch.no_grad():
        full, _ = model(idx)
        cache = model.new_cache()
        steps = [model(idx[:, :12], cache=cache)[0]]
        steps += [model(idx[:, i : i + 1], cache=cache)[0] for i in range(12, 30)]
    assert cache.offset == 30
    assert_close(torch.cat(steps, dim=1), full, rtol=0, atol=TOL[dtype])


@pytest.mark.parametrize("cfg", CONFIGS, ids=cfg_id)
def test_greedy_generation_is_the_same_with_and_without_the_cache(cfg):
    model = build_model(cfg).double().eval()
    prompt = torch.randint(cfg.vocab_size, (2, 5))
    n_new = cfg.block_size + 10  # runs past the context: the window slides
    cached = model.generate(prompt, n_new, temperature=0)
    uncached = model.generate(prompt, n_new, temperature=0, use_cache=False)
    assert cached.shape == (2, 5 + n_new)
    assert torch.equal(cached, uncached)


def test_sampling_is_reproducible_with_a_generator():
    cfg = CONFIGS[0]
    model = build_model(cfg).eval()
    prompt = torch.randint(cfg.vocab_size, (1, 4))
    a = model.generate(prompt, 20, top_k=5, generator=torch.Generator().manual_seed(1))
    b = model.generate(prompt, 20, top_k=5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_prompt_longer_than_the_context_is_a_clear_error():
    cfg = CONFIGS[-1]
    model = build_model(cfg)
    with pytest.raises(ValueError, match="exceeds the context block_size=48"):
        model.generate(torch.zeros(1, 49, dtype=torch.long), 1)
    with pytest.raises(ValueError, match="exceeds the context"):
        model(torch.zeros(1, 49, dtype=torch.long))
