import json
import shutil
import sys
import zipfile

import pytest

from sympformer.cli import main
from sympformer.data import DataConfig, DataError, austen, prepare
from sympformer.data.sources import austen_source
from tests.data.rwriter import character, tiny_novel, write_lazy_load

CHAPTERS = {"sensesensibility": 3, "prideprejudice": 4, "mansfieldpark": 3, "emma": 4,
            "northangerabbey": 3, "persuasion": 3}  # fmt: skip
"""Chapters of each fake novel: 20 in all; Emma's headings are Roman, with a VOLUME line."""

APT_GET = """#!{python}
import os, shutil, sys
with open({log!r}, "a") as f:
    f.write("apt-get " + " ".join(sys.argv[1:]) + "\\n")
if os.environ.get("FAKE_APT_FAILS"):
    print("W: a warning", file=sys.stderr)
    print("E: Failed to fetch http://deb.debian.org/x.deb  Temporary failure", file=sys.stderr)
    sys.exit(100)
shutil.copy({deb!r}, "r-cran-janeaustenr_1.0.0-1_all.deb")
"""
DPKG = """#!{python}
import sys, zipfile
with open({log!r}, "a") as f:
    f.write("dpkg " + " ".join(sys.argv[1:]) + "\\n")
zipfile.ZipFile(sys.argv[2]).extractall(sys.argv[3])
"""


@pytest.fixture
def fake_apt(tmp_path, monkeypatch):
    """PATH holds only fake `apt-get` (its "download" copies a fake .deb: a zip of a janeaustenr
    tree with tiny novels) and `dpkg` (-x unzips it). Returns the file logging their calls."""
    tree, deb, log, bin_dir = (tmp_path / n for n in ("tree", "fake.deb", "calls.log", "bin"))
    novels = {
        name: character(*tiny_novel(austen.NOVELS[name], n, roman=name == "emma"))
        for name, n in CHAPTERS.items()
    }
    write_lazy_load(tree / austen.RDATA, novels)
    with zipfile.ZipFile(deb, "w") as z:
        for path in tree.rglob("*.rd?"):
            z.write(path, path.relative_to(tree).as_posix())
    bin_dir.mkdir()
    for name, script in (("apt-get", APT_GET), ("dpkg", DPKG)):
        (bin_dir / name).write_text(
            script.format(python=sys.executable, log=str(log), deb=str(deb))
        )
        (bin_dir / name).chmod(0o755)
    log.write_text("")
    monkeypatch.setenv("PATH", str(bin_dir))
    return log


def headings(documents):
    return [doc.split("\n", 1)[0] for doc in documents]


def test_fake_package_gives_chapters_every_kth_for_validation(fake_apt, tmp_path):
    source = austen_source(None, 3, tmp_path / "cache")
    train, val = list(source.documents("train")), list(source.documents("val"))
    everything = [f"{austen.NOVELS[name]}, Chapter {k}"
                  for name, n in CHAPTERS.items() for k in range(1, n + 1)]  # fmt: skip
    assert headings(val) == everything[2::3]
    assert headings(train) == [h for i, h in enumerate(everything) if i % 3 != 2]
    emma_3 = "Emma, Chapter 3\nEmma, chapter 3 begins.\n  It ends, café and all."  # no VOLUME II
    assert emma_3 in train + val
    assert not any("By Jane Austen" in doc or "CHAPTER" in doc for doc in train + val)
    assert fake_apt.read_text().splitlines() == [
        "apt-get download r-cran-janeaustenr",
        "dpkg -x r-cran-janeaustenr_1.0.0-1_all.deb tree",
    ]
    info = json.loads((tmp_path / "cache/packages/r-cran-janeaustenr/package.json").read_text())
    assert info["version"] == "1.0.0-1"
    assert source.fingerprint == austen.text_fingerprint(info["files"])
    assert "whose text differs from 1.0.0-1's" in source.description
    again = austen_source(None, 3, tmp_path / "cache")  # from the cache: same documents
    assert (list(again.documents("train")), again.fingerprint) == (train, source.fingerprint)


def test_second_use_reads_the_cache_without_apt(fake_apt, tmp_path, monkeypatch):
    cfg = DataConfig(dataset="austen", tokenizer="bytes", val_every=3, cache_dir=str(tmp_path))
    files = prepare(cfg).manifest["files"]
    assert (files["train"]["documents"], files["val"]["documents"]) == (14, 6)
    calls = fake_apt.read_text()
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))  # no apt-get any more
    shutil.rmtree(tmp_path / "data")  # tokenise again, from the cached novels
    assert prepare(cfg).manifest["files"] == files
    assert fake_apt.read_text() == calls


@pytest.mark.parametrize("failure", ["network", "interrupted"])
def test_failed_fetch_leaves_no_cache(fake_apt, tmp_path, monkeypatch, failure):
    cache = tmp_path / "cache"
    if failure == "network":
        monkeypatch.setenv("FAKE_APT_FAILS", "1")
        with pytest.raises(DataError, match="E: Failed to fetch") as e:
            austen_source(None, 3, cache)
        assert "exit code 100" in str(e.value)
        assert "--data FOLDER" in str(e.value)
        assert "\n" not in str(e.value)
    else:
        real = austen.write_novels

        def interrupted(folder, texts, info):
            (folder / "emma.txt").write_text("half of Emma")
            raise KeyboardInterrupt

        monkeypatch.setattr(austen, "write_novels", interrupted)
        with pytest.raises(KeyboardInterrupt):
            austen_source(None, 3, cache)
        monkeypatch.setattr(austen, "write_novels", real)
    assert [p for p in cache.rglob("*") if not p.is_dir()] == []
    assert not (cache / "packages" / austen.PACKAGE).exists()
    monkeypatch.delenv("FAKE_APT_FAILS", raising=False)
    assert len(list(austen_source(None, 3, cache).documents("val"))) == 6  # a retry works


def test_damaged_cache_is_refused(fake_apt, tmp_path):
    austen_source(None, 3, tmp_path)
    (tmp_path / "packages" / austen.PACKAGE / "emma.txt").write_text("not Emma")
    with pytest.raises(DataError, match="does not match the sha256.*to fetch it again"):
        austen_source(None, 3, tmp_path)
    (tmp_path / "packages" / austen.PACKAGE / austen.INFO).unlink()
    with pytest.raises(DataError, match="not a complete copy"):
        austen_source(None, 3, tmp_path)


def test_train_without_apt_is_one_error_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out, cache = tmp_path / "run", tmp_path / "cache"
    args = ["train", "--dataset", "austen", "--preset", "smoke", "--data.cache_dir", str(cache)]
    with pytest.raises(SystemExit) as e:
        main([*args, "--out", str(out)])
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert len(err.splitlines()) == 1
    assert err.startswith("error: dataset 'austen' could not fetch Debian's r-cran-janeaustenr")
    assert "apt-get and dpkg not found on PATH" in err
    assert "--data FOLDER" in err
    assert list(tmp_path.iterdir()) == []  # no run folder, no cache


@pytest.mark.slow
def test_real_package_has_the_pinned_text(tmp_path):
    if shutil.which("apt-get") is None:
        pytest.skip("needs apt-get")
    try:
        source = austen_source(None, 20, tmp_path)
    except DataError as e:
        pytest.skip(f"apt could not fetch the package: {e}")
    docs = [*source.documents("train"), *source.documents("val")]
    counts = [sum(h.startswith(f"{title}, ") for h in headings(docs))
              for title in austen.NOVELS.values()]  # fmt: skip
    assert counts == [50, 61, 48, 55, 31, 24]
    assert len(list(source.documents("val"))) == 13
    info = json.loads((tmp_path / "packages" / austen.PACKAGE / austen.INFO).read_text())
    if info["version"] == austen.VERSION:
        assert info["deb_sha256"] == austen.DEB_SHA256
        assert source.fingerprint == austen.TEXT_SHA256
