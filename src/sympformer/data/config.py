"""DataConfig: which text, which tokenizer, where the token cache lives."""

from dataclasses import dataclass

from sympformer import check
from sympformer.data.sources import SOURCES
from sympformer.data.tokenizer import TOKENIZERS

MIN_BPE_VOCAB = 300
"""257 ids are the 256 bytes and EOT; below ~300 a BPE learns almost no merges."""


@dataclass(frozen=True)
class DataConfig:
    """Training text and its tokenisation. Built configs are valid: bad values raise ValueError."""

    dataset: str = "bible"
    """Corpus: "bible" (King James Bible, embedded, offline), "austen" (Jane Austen's six novels:
    the first use fetches Debian's r-cran-janeaustenr with apt-get into `cache_dir`), "text"
    (local `path`), "tinystories" or "openwebtext" (Hugging Face: need network and the extra
    `sympformer[hf]`)."""
    path: str | None = None
    """Local UTF-8 text file (one document) or folder of .txt/.md files (one document each). Setting
    it selects dataset "text": a `dataset` left at "bible" becomes "text"."""
    tokenizer: str = "bpe"
    """"bpe" (byte-level BPE trained on the training split), "gpt2" (GPT-2's 50,257-token BPE) or
    "bytes" (raw UTF-8 bytes, 257 ids; for tests)."""
    vocab_size: int = 4096
    """Vocabulary of the "bpe" tokenizer, <|endoftext|> included (ignored by "gpt2" and "bytes")."""
    cache_dir: str | None = None
    """Cache root (token caches, fetched packages); default: $SYMPFORMER_CACHE, else
    ~/.cache/sympformer."""
    val_every: int = 20
    """Every val_every-th chapter (bible, austen) or document (text) is validation, 1/val_every of
    the data (a text with fewer documents gives its last 1/val_every); the Hub datasets have their
    own."""

    def __post_init__(self) -> None:
        if self.path is not None and self.dataset == "bible":
            object.__setattr__(self, "dataset", "text")  # `--data PATH` is the short form of text
        if self.dataset not in SOURCES:
            raise ValueError(
                f"DataConfig.dataset={self.dataset!r} is unknown; choose one of {sorted(SOURCES)}"
            )
        if self.path is not None and not (isinstance(self.path, str) and self.path):
            raise ValueError(f"DataConfig.path={self.path!r} must be a non-empty path")
        if self.dataset == "text" and self.path is None:
            raise ValueError("DataConfig.path is required with dataset='text' (a file or folder)")
        if self.dataset != "text" and self.path is not None:
            raise ValueError(
                f"DataConfig.path={self.path!r} is only read with dataset='text', "
                f"not dataset={self.dataset!r}"
            )
        if self.tokenizer not in TOKENIZERS:
            raise ValueError(
                f"DataConfig.tokenizer={self.tokenizer!r} is unknown; "
                f"choose one of {sorted(TOKENIZERS)}"
            )
        check.integer("DataConfig.vocab_size", self.vocab_size, MIN_BPE_VOCAB)
        check.integer("DataConfig.val_every", self.val_every, 2)
        check.text("DataConfig.cache_dir", self.cache_dir, optional=True)
