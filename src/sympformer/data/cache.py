"""The token cache: tokenise a corpus once into memory-mapped train.bin / val.bin files.

Layout of a cache folder `<cache root>/data/<dataset>-<tokenizer>-<key>/`:

    train.bin, val.bin   token ids, native byte order, uint16 (vocabulary <= 65,536) else uint32;
                         each document is followed by <|endoftext|>
    tokenizer.json       the trained BPE (tokenizer "bpe" only)
    manifest.json        what was built and how (`settings`), tokenizer fingerprint, token counts,
                         file sizes and sha256; written last

`key` hashes `settings` (format, dataset, source fingerprint, split rule, tokenizer, vocabulary),
so a different request never lands in the same folder; a folder whose manifest disagrees with the
request or whose files disagree with the manifest raises DataError instead of being used. A folder
is built under a temporary name and renamed when complete, so an interrupted `prepare` leaves no
half-built cache. (`<cache root>/packages/` holds corpora fetched on first use, e.g. "austen".)
"""

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from sympformer.data.config import DataConfig
from sympformer.data.errors import DataError
from sympformer.data.packaged import file_sha256
from sympformer.data.sources import SOURCES, SPLITS, Source
from sympformer.data.tokenizer import BPETokenizer, Tokenizer, load_tokenizer, tokenizer_info
from sympformer.files import staged_folder

FORMAT = 1
"""Cache format; bump it when documents, split rules or file layout change (old folders stay)."""

MANIFEST = "manifest.json"

BPE_TRAIN_CHARS = 200_000_000
"""Characters a BPE is trained on: all of a local corpus, a prefix of a Hub dataset's train."""

ENCODE_CHUNK_CHARS = 1 << 23
"""Characters per encode_batch call: enough work to use every core, bounded memory."""

HASH_CHECK_MAX_BYTES = 1 << 30
"""Token files up to this size are sha256-checked on every open; larger ones (OpenWebText) only by
size, which still catches truncation, so that starting a run never reads gigabytes."""

ENTROPY_CHUNK = 1 << 24
"""Tokens counted per step by `Corpus.unigram_entropy` (bounds RAM on large splits)."""


def default_cache_dir() -> Path:
    """$SYMPFORMER_CACHE, else ~/.cache/sympformer."""
    return Path(os.environ.get("SYMPFORMER_CACHE") or Path.home() / ".cache" / "sympformer")


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id in [0, vocab_size) fits in 16 bits, else uint32."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


@dataclass(frozen=True, eq=False)
class Corpus:
    """A tokenised corpus: read-only memory maps of both splits (never loaded into RAM)."""

    path: Path
    """The cache folder."""
    train: np.memmap
    """Training tokens (N_train,), read-only."""
    val: np.memmap
    """Validation tokens (N_val,), read-only."""
    tokenizer: Tokenizer
    manifest: dict[str, Any]
    """Contents of manifest.json (for run metadata)."""

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def split(self, name: str) -> np.memmap:
        """The tokens of split "train" or "val"."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; choose one of {list(SPLITS)}")
        return self.train if name == "train" else self.val

    def epochs(self, tokens_seen: int) -> float:
        """Passes over the training split that `tokens_seen` training tokens amount to."""
        return tokens_seen / len(self.train)

    def unigram_entropy(self, split: str = "val") -> float:
        r"""Entropy H = -\sum_v p_v \ln p_v (nats per token) of the split's token frequencies p.

        The cross-entropy of the best context-free model: a language model's loss below it shows
        that the model uses context.
        """
        tokens = self.split(split)
        counts = np.zeros(self.vocab_size, dtype=np.int64)
        for start in range(0, len(tokens), ENTROPY_CHUNK):
            counts += np.bincount(tokens[start : start + ENTROPY_CHUNK], minlength=self.vocab_size)
        p = counts[counts > 0] / len(tokens)
        return float(-(p * np.log(p)).sum())

    def check_block_size(self, block_size: int) -> None:
        """DataError unless each split holds at least one block of block_size + 1 tokens."""
        for name in SPLITS:
            n = len(self.split(name))
            if n < block_size + 1:
                raise DataError(
                    f"the {name} split of {self.manifest['source']['description']} has {n} tokens, "
                    f"fewer than one block needs (block_size + 1 = {block_size + 1}); "
                    "use more text or a smaller block size"
                )


def prepare(cfg: DataConfig, block_size: int = 1, progress: bool = False) -> Corpus:
    """Tokenise `cfg`'s corpus into the cache once; later calls reuse it.

    Args:
        cfg: the data configuration.
        block_size: context length of the model; each split must hold block_size + 1 tokens.
        progress: show a progress bar while tokenising (useful for the Hub datasets).

    Returns:
        The corpus, its splits memory-mapped read-only.

    Raises:
        DataError: bad or missing source data, too few tokens, or a cache folder that does not
            match the request or its own manifest (delete the folder to rebuild it).
    """
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size={block_size!r} must be a positive integer")
    root = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_dir()
    source = SOURCES[cfg.dataset](Path(cfg.path) if cfg.path else None, cfg.val_every, root)
    settings = {
        "format": FORMAT,
        "dataset": cfg.dataset,
        "source": source.fingerprint,
        "split": source.split_rule,
        "tokenizer": cfg.tokenizer,
        "vocab_size": cfg.vocab_size if cfg.tokenizer == "bpe" else None,
    }
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    label = f"bpe{cfg.vocab_size}" if cfg.tokenizer == "bpe" else cfg.tokenizer
    folder = root / "data" / f"{cfg.dataset}-{label}-{key[:16]}"
    if not folder.exists():
        build(folder, source, settings, cfg, progress)
    corpus = open_corpus(folder, settings)
    corpus.check_block_size(block_size)
    return corpus


def build(
    folder: Path, source: Source, settings: dict[str, Any], cfg: DataConfig, progress: bool
) -> None:
    """Train the tokenizer if needed, write both splits and the manifest, then rename into place."""
    with staged_folder(folder, MANIFEST) as staging:
        tokenizer: Tokenizer
        if cfg.tokenizer == "bpe":
            text = bounded(source.documents("train"), BPE_TRAIN_CHARS)
            tokenizer = BPETokenizer.train(text, cfg.vocab_size)
        else:
            tokenizer = load_tokenizer(cfg.tokenizer, staging)
        tokenizer.save(staging)
        dtype = token_dtype(tokenizer.vocab_size)
        files = {}
        for split in SPLITS:
            docs = tqdm(source.documents(split), desc=f"{split} docs", disable=not progress)
            files[split] = write_tokens(staging / f"{split}.bin", docs, tokenizer, dtype)
            if files[split]["tokens"] == 0:
                raise DataError(f"the {split} split of {source.description} is empty")
        manifest = {
            "settings": settings,
            "source": {"description": source.description, "split": source.split_rule},
            "tokenizer": tokenizer_info(tokenizer),
            "dtype": dtype.name,
            "files": files,
        }
        if tokenizer.name == "gpt2":
            manifest["tokenizer"]["license"] = "GPT-2 vocabulary (c) OpenAI, modified MIT license"
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def bounded(documents: Iterable[str], max_chars: int) -> Iterator[str]:
    """The documents until their total length first reaches `max_chars`."""
    total = 0
    for doc in documents:
        if total >= max_chars:
            return
        total += len(doc)
        yield doc


def chunks(documents: Iterable[str], max_chars: int) -> Iterator[list[str]]:
    """Consecutive lists of documents of about `max_chars` characters each."""
    batch: list[str] = []
    size = 0
    for doc in documents:
        batch.append(doc)
        size += len(doc)
        if size >= max_chars:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def write_tokens(
    path: Path, documents: Iterable[str], tokenizer: Tokenizer, dtype: np.dtype
) -> dict[str, Any]:
    """Encode the documents, each followed by EOT, into the flat token file `path`.

    Returns:
        The manifest entry: file name, token and document counts, byte size, sha256.
    """
    digest = hashlib.sha256()
    tokens = docs = 0
    eot = (tokenizer.eot_id,)
    with open(path, "wb") as f:
        for batch in chunks(documents, ENCODE_CHUNK_CHARS):
            ids = tokenizer.encode_batch(batch)
            count = sum(len(x) for x in ids) + len(ids)
            flat = np.fromiter(chain.from_iterable(chain(x, eot) for x in ids), dtype, count)
            data = flat.tobytes()
            f.write(data)
            digest.update(data)
            tokens += count
            docs += len(ids)
    return {
        "file": path.name,
        "tokens": tokens,
        "documents": docs,
        "bytes": tokens * dtype.itemsize,
        "sha256": digest.hexdigest(),
    }


def open_corpus(folder: Path, settings: dict[str, Any]) -> Corpus:
    """Open a cache folder after checking it against the request and its files against it.

    Raises:
        DataError: missing or unreadable manifest, settings that differ from `settings`, a
            tokenizer whose fingerprint differs, or token files whose size or hash differ.
    """
    fix = f"delete {folder} to rebuild it"
    path = folder / MANIFEST
    if not path.is_file():
        raise DataError(f"{folder} has no {MANIFEST} (not a complete token cache); {fix}")
    try:
        manifest = json.loads(path.read_text())
        built = manifest["settings"]
        for name, wanted in settings.items():
            if built.get(name) != wanted:
                raise DataError(
                    f"token cache {folder} was built with {name}={built.get(name)!r}, "
                    f"but {name}={wanted!r} is asked; {fix}"
                )
        tokenizer = load_tokenizer(settings["tokenizer"], folder)
        if manifest["tokenizer"]["fingerprint"] != tokenizer.fingerprint:
            raise DataError(f"the tokenizer in {folder} differs from its manifest's; {fix}")
        dtype = token_dtype(tokenizer.vocab_size)
        if manifest["dtype"] != dtype.name:
            raise DataError(f"{path} says dtype {manifest['dtype']}, expected {dtype.name}; {fix}")
        splits = {}
        for split in SPLITS:
            entry = manifest["files"][split]
            file = folder / entry["file"]
            if not file.is_file():
                raise DataError(f"{file} is missing; {fix}")
            size = file.stat().st_size
            if size != entry["tokens"] * dtype.itemsize or entry["tokens"] == 0:
                raise DataError(
                    f"{file} has {size} bytes, but its manifest lists {entry['tokens']} "
                    f"{dtype.name} tokens; {fix}"
                )
            if size <= HASH_CHECK_MAX_BYTES and file_sha256(file) != entry["sha256"]:
                raise DataError(f"{file} does not match the sha256 in its manifest; {fix}")
            splits[split] = np.memmap(file, dtype=dtype, mode="r", shape=(entry["tokens"],))
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as e:
        raise DataError(f"{path} is malformed ({type(e).__name__}: {e}); {fix}") from None
    return Corpus(folder, splits["train"], splits["val"], tokenizer, manifest)
