"""Text from a trained model: load a run or checkpoint folder with its tokenizer, then sample."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from sympformer import check
from sympformer.data import Tokenizer
from sympformer.model import CheckpointError, LanguageModel
from sympformer.train.checkpoint import LABELS, find_checkpoint, open_checkpoint


def load_for_sampling(
    path: str | os.PathLike, which: str = "best", device: str = "cpu"
) -> tuple[LanguageModel, Tokenizer]:
    """The model and tokenizer of a run folder (its `which` checkpoint, else the other label) or
    of a checkpoint folder; every file is verified against the checkpoint's sha256 list.

    Raises:
        CheckpointError: nothing to load at `path`, or a missing or corrupt file.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint path {path} does not exist")
    found = None
    for label in (which, *(x for x in LABELS if x != which)):
        found = find_checkpoint(path, label)
        if found is not None:
            break
    if found is None:
        raise CheckpointError(
            f"{path} holds no training checkpoint (expected a run folder with checkpoints/latest "
            "or a checkpoint folder with state.json)"
        )
    ckpt = open_checkpoint(found)
    model = LanguageModel.from_pretrained(found, device=device)
    return model.eval(), ckpt.load_tokenizer()


def encode_prompt(tokenizer: Tokenizer, prompt: str, block_size: int) -> list[int]:
    """Token ids of `prompt`; ValueError if it is empty, not UTF-8 or longer than the context."""
    if not prompt:
        raise ValueError("the prompt is empty; give some text with --prompt")
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes in argv arrive as lone surrogates
        raise ValueError("the prompt is not valid UTF-8 text") from None
    ids = tokenizer.encode(prompt)
    if len(ids) > block_size:
        raise ValueError(
            f"the prompt is {len(ids)} tokens, longer than the model's context "
            f"block_size={block_size}"
        )
    return ids


@torch.no_grad()
def generate_text(
    model: LanguageModel,
    tokenizer: Tokenizer,
    prompt: str,
    max_new_tokens: int = 200,
    temperature: float = 0.8,
    top_k: int | None = 50,
    seed: int = 1337,
) -> str:
    """The prompt followed by `max_new_tokens` sampled tokens, decoded (KV cache; temperature 0
    is greedy; the same seed gives the same text)."""
    check.integer("max_new_tokens", max_new_tokens, 0)
    check.number("temperature", temperature, 0)
    check.positive_int("top_k", top_k, optional=True)
    ids = encode_prompt(tokenizer, prompt, model.cfg.block_size)
    device = next(model.parameters()).device
    generator = torch.Generator(device).manual_seed(seed)
    idx = torch.tensor([ids], device=device)  # (1, T0)
    out = model.generate(idx, max_new_tokens, temperature, top_k, generator=generator)
    return tokenizer.decode(out[0].tolist())


@dataclass(frozen=True)
class SampleConfig:
    """`sympformer sample`: continue a prompt with a trained model (KV-cached decoding)."""

    ckpt: Path
    """A run folder (its `which` checkpoint, else the other) or a checkpoint folder."""
    prompt: str
    """Text to continue (UTF-8, at most the model's context in tokens)."""
    max_new_tokens: int = 200
    """Tokens to generate."""
    temperature: float = 0.8
    """Sampling temperature; 0 is greedy decoding."""
    top_k: int | None = 50
    """Sample among the k most likely tokens; null: all."""
    seed: int = 1337
    """Seed of the sampler (same seed, same text)."""
    which: Literal["best", "latest"] = "best"
    device: str = "cpu"
    """cpu, cuda, ..."""

    def __post_init__(self) -> None:
        check.integer("SampleConfig.max_new_tokens", self.max_new_tokens, 0)
        check.number("SampleConfig.temperature", self.temperature, 0)
        check.positive_int("SampleConfig.top_k", self.top_k, optional=True)
        check.integer("SampleConfig.seed", self.seed, 0)
        check.choice("SampleConfig.which", self.which, LABELS)


def sample(cfg: SampleConfig) -> str:
    """The text `sympformer sample` prints."""
    model, tokenizer = load_for_sampling(cfg.ckpt, cfg.which, cfg.device)
    return generate_text(
        model, tokenizer, cfg.prompt, cfg.max_new_tokens, cfg.temperature, cfg.top_k, cfg.seed
    )
