import json
import shutil

import numpy as np
import pytest
import scipy.stats

from sympformer.data import DataConfig, DataError, prepare
from sympformer.data import cache as cache_module
from sympformer.data.cache import token_dtype


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(
        "".join(f"Line {i}: the quick brown fox jumps over a lazy dog.\n" for i in range(400))
    )
    return path


def cfg_for(path, tmp_path, **kwargs):
    return DataConfig(path=str(path), cache_dir=str(tmp_path / "cache"), **kwargs)


def test_bible_bpe_corpus(bible_bpe):
    train, val = bible_bpe.train, bible_bpe.val
    assert isinstance(train, np.memmap)
    assert isinstance(val, np.memmap)
    assert not train.flags.writeable
    assert not val.flags.writeable
    assert train.dtype == np.uint16
    assert bible_bpe.vocab_size == 4096
    assert int(train.max()) < 4096
    assert abs(len(val) / (len(train) + len(val)) - 1 / 20) < 0.003  # ~5 % of tokens
    eot = bible_bpe.tokenizer.eot_id
    assert (int((train == eot).sum()), int((val == eot).sum())) == (1130, 59)  # one per chapter
    assert train[-1] == val[-1] == eot
    first = bible_bpe.tokenizer.decode(list(train[:20]))
    assert first.startswith("Genesis 1\nIn the beginning God created the heaven and the earth.")
    m = bible_bpe.manifest
    assert m["tokenizer"]["fingerprint"] == bible_bpe.tokenizer.fingerprint
    assert m["files"]["train"]["tokens"] == len(train)


def test_unigram_entropy_matches_scipy(bible_bpe):
    for split in ("train", "val"):
        tokens = bible_bpe.split(split)
        expected = scipy.stats.entropy(np.bincount(tokens))  # nats
        assert bible_bpe.unigram_entropy(split) == pytest.approx(expected, rel=1e-12)


def test_small_chunks_give_the_same_entropy(bible_bpe, monkeypatch):
    whole = bible_bpe.unigram_entropy("val")
    monkeypatch.setattr(cache_module, "ENTROPY_CHUNK", 1000)
    assert bible_bpe.unigram_entropy("val") == pytest.approx(whole, rel=1e-12)


def test_gpt2_bible_has_about_a_million_tokens(tmp_path):
    corpus = prepare(DataConfig(tokenizer="gpt2", cache_dir=str(tmp_path)))
    total = len(corpus.train) + len(corpus.val)
    assert 1.0e6 < total < 1.05e6  # SPEC: ~1.02 M GPT-2 tokens
    assert corpus.manifest["tokenizer"]["license"].startswith("GPT-2 vocabulary (c) OpenAI")
    assert corpus.tokenizer.decode(list(corpus.train[:5])) == "Genesis 1\nIn"


def test_second_prepare_reuses_cache_without_tokenising(text_file, tmp_path, monkeypatch):
    cfg = cfg_for(text_file, tmp_path, tokenizer="bpe", vocab_size=400)
    first = prepare(cfg)
    stamps = {p.name: p.stat().st_mtime_ns for p in first.path.iterdir()}

    def fail(*args, **kwargs):
        raise AssertionError("re-tokenised")

    monkeypatch.setattr(cache_module, "write_tokens", fail)
    monkeypatch.setattr(cache_module.BPETokenizer, "train", fail)
    second = prepare(cfg)
    assert second.path == first.path
    assert {p.name: p.stat().st_mtime_ns for p in second.path.iterdir()} == stamps
    assert np.array_equal(second.train, first.train)
    assert second.tokenizer.fingerprint == first.tokenizer.fingerprint


def test_settings_select_distinct_cache_folders(text_file, tmp_path):
    folders = {
        prepare(cfg_for(text_file, tmp_path, **kw)).path
        for kw in [
            {"tokenizer": "bytes"},
            {"tokenizer": "bpe", "vocab_size": 400},
            {"tokenizer": "bpe", "vocab_size": 500},
            {"tokenizer": "bytes", "val_every": 10},
        ]
    }
    assert len(folders) == 4


def test_bytes_corpus_of_a_file_holds_its_exact_bytes(text_file, tmp_path):
    corpus = prepare(cfg_for(text_file, tmp_path, tokenizer="bytes"))
    text = text_file.read_bytes()
    train, val = (
        corpus.train[:-1].astype(np.uint8).tobytes(),
        corpus.val[:-1].astype(np.uint8).tobytes(),
    )
    assert train + val == text  # the tail split keeps every byte, EOT after each part
    assert corpus.train[-1] == corpus.val[-1] == 256
    assert train.endswith(b"\n")  # cut after a newline
    assert abs(len(val) - len(text) / 20) <= 60  # within one line of 1/20


def test_folder_corpus(tmp_path):
    folder = tmp_path / "docs"
    (folder / "nested").mkdir(parents=True)
    for i in range(40):
        (folder / ("nested" if i % 2 else "") / f"{i:02d}.md").write_text(f"# Note {i}\nbody {i}\n")
    corpus = prepare(cfg_for(folder, tmp_path, tokenizer="bytes"))
    assert corpus.manifest["files"]["val"]["documents"] == 2
    assert corpus.manifest["files"]["train"]["documents"] == 38
    val_docs = corpus.tokenizer.decode(list(corpus.val)).split("<|endoftext|>")[:-1]
    train_docs = corpus.tokenizer.decode(list(corpus.train)).split("<|endoftext|>")[:-1]
    assert (len(val_docs), len(train_docs)) == (2, 38)
    # path order: 00.md, 02.md, ..., 38.md, nested/01.md, ..., nested/39.md; 20th, 40th held out
    assert val_docs == ["# Note 38\nbody 38\n", "# Note 39\nbody 39\n"]
    assert set(val_docs).isdisjoint(train_docs)


def test_too_short_for_one_block(text_file, tmp_path):
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("hello world\n" * 4)
    with pytest.raises(DataError, match=r"block_size \+ 1 = 65") as e:
        prepare(cfg_for(tiny, tmp_path, tokenizer="bytes"), block_size=64)
    assert "\n" not in str(e.value)
    assert "tiny.txt" in str(e.value)
    corpus = prepare(cfg_for(tiny, tmp_path, tokenizer="bytes"), block_size=2)
    assert len(corpus.val) >= 3


def test_cache_built_with_another_tokenizer_is_refused(text_file, tmp_path):
    other = prepare(cfg_for(text_file, tmp_path, tokenizer="bytes")).path
    asked = cfg_for(text_file, tmp_path, tokenizer="bpe", vocab_size=400)
    folder = prepare(asked).path
    shutil.rmtree(folder)
    shutil.copytree(other, folder)  # a foreign cache at the path `asked` maps to
    with pytest.raises(DataError, match="tokenizer='bytes', but tokenizer='bpe' is asked") as e:
        prepare(asked)
    assert "\n" not in str(e.value)
    assert str(folder) in str(e.value)


@pytest.mark.parametrize("damage", ["truncate", "flip", "manifest", "no-manifest", "tokenizer"])
def test_damaged_cache_is_refused(text_file, tmp_path, damage):
    cfg = cfg_for(text_file, tmp_path, tokenizer="bpe", vocab_size=400)
    folder = prepare(cfg).path
    bin_file = folder / "train.bin"
    if damage == "truncate":
        with open(bin_file, "r+b") as f:
            f.truncate(bin_file.stat().st_size - 2)
    elif damage == "flip":
        data = bytearray(bin_file.read_bytes())
        data[10] ^= 1
        bin_file.write_bytes(bytes(data))
    elif damage == "manifest":
        (folder / "manifest.json").write_text("{ not json")
    elif damage == "no-manifest":
        (folder / "manifest.json").unlink()
    else:
        tok = json.loads((folder / "tokenizer.json").read_text())
        tok["model"]["merges"] = tok["model"]["merges"][:-1]
        (folder / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(DataError, match=f"delete {folder}") as e:
        prepare(cfg)
    assert "\n" not in str(e.value)


def test_interrupted_prepare_leaves_nothing(text_file, tmp_path, monkeypatch):
    real = cache_module.write_tokens

    def interrupted(path, *args):
        if path.name == "val.bin":
            raise KeyboardInterrupt
        return real(path, *args)

    monkeypatch.setattr(cache_module, "write_tokens", interrupted)
    cfg = cfg_for(text_file, tmp_path, tokenizer="bytes")
    with pytest.raises(KeyboardInterrupt):
        prepare(cfg)
    assert list((tmp_path / "cache" / "data").iterdir()) == []
    monkeypatch.setattr(cache_module, "write_tokens", real)
    assert len(prepare(cfg).val) > 0


def test_token_dtype():
    assert token_dtype(257) == np.uint16
    assert token_dtype(65536) == np.uint16  # ids 0..65535
    assert token_dtype(65537) == np.uint32
