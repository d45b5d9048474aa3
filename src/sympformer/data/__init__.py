"""Corpora, tokenizers, the memory-mapped token cache and batching; `DataConfig` selects them.

Imports nothing from other sympformer subpackages (`train` builds on it).
"""

from sympformer.data.batches import Batch, TrainBatches, val_batches
from sympformer.data.cache import Corpus, default_cache_dir, prepare
from sympformer.data.config import DataConfig
from sympformer.data.errors import DataError
from sympformer.data.sources import SOURCES, Source
from sympformer.data.tokenizer import (
    EOT,
    TOKENIZERS,
    BPETokenizer,
    BytesTokenizer,
    GPT2Tokenizer,
    Tokenizer,
    gpt2_tokenizer,
    load_tokenizer,
    tokenizer_info,
)

__all__ = [
    "EOT",
    "SOURCES",
    "TOKENIZERS",
    "BPETokenizer",
    "Batch",
    "BytesTokenizer",
    "Corpus",
    "DataConfig",
    "DataError",
    "GPT2Tokenizer",
    "Source",
    "Tokenizer",
    "TrainBatches",
    "default_cache_dir",
    "gpt2_tokenizer",
    "load_tokenizer",
    "prepare",
    "tokenizer_info",
    "val_batches",
]
