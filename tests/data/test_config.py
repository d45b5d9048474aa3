import pytest

from sympformer.data import SOURCES, TOKENIZERS, DataConfig


def test_defaults_are_the_offline_bible_with_a_local_bpe():
    cfg = DataConfig()
    assert (cfg.dataset, cfg.tokenizer, cfg.vocab_size, cfg.val_every) == ("bible", "bpe", 4096, 20)


def test_path_selects_dataset_text():
    assert DataConfig(path="notes.txt").dataset == "text"
    assert DataConfig(dataset="text", path="notes.txt").dataset == "text"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"dataset": "wikipedia"}, "dataset"),
        ({"dataset": "text"}, "path"),
        ({"dataset": "tinystories", "path": "a.txt"}, "path"),
        ({"path": ""}, "path"),
        ({"tokenizer": "sentencepiece"}, "tokenizer"),
        ({"vocab_size": 256}, "vocab_size"),
        ({"vocab_size": 4096.0}, "vocab_size"),
        ({"val_every": 1}, "val_every"),
        ({"val_every": True}, "val_every"),
        ({"cache_dir": ""}, "cache_dir"),
    ],
)
def test_bad_values_fail_at_construction_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"DataConfig\.{field}") as e:
        DataConfig(**kwargs)
    assert "\n" not in str(e.value)


def test_error_for_unknown_names_lists_the_choices():
    with pytest.raises(ValueError, match="openwebtext") as e:
        DataConfig(dataset="wiki")
    assert all(name in str(e.value) for name in SOURCES)
    with pytest.raises(ValueError, match="gpt2"):
        DataConfig(tokenizer="sp")
    assert set(TOKENIZERS) == {"bpe", "gpt2", "bytes"}
