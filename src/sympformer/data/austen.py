"""Jane Austen's six novels, from Debian's `r-cran-janeaustenr` package, fetched once with apt.

The package (the CRAN package janeaustenr: public domain text, MIT-licensed package) keeps each
novel as an R character vector, one element per line, in the lazy-load database
`data/Rdata.rdx/.rdb`, which `sympformer.data.rdata` reads without R. On first use

    apt-get download r-cran-janeaustenr      in a temporary folder (needs apt's package lists)
    dpkg -x r-cran-janeaustenr_*.deb tree    unpack without installing (needs no root)

run there, and the six novels are written as UTF-8 text, with `package.json` (package version,
.deb and text sha256) written last, into `<cache root>/packages/r-cran-janeaustenr/` under a
temporary name that is renamed when complete. Later runs read that folder (its files are checked
against package.json) and never call apt again.

Versions: 1.0.0-1 (Debian bookworm) is the one checked; its text has sha256 `TEXT_SHA256`. apt
fetches whatever version its sources offer, and any version is accepted: the corpus is identified
by the sha256 of its text, so a version with the same text gives the same token cache and runs,
and one with a different text gets its own token cache and says so in its description.
"""

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from sympformer.data.errors import DataError
from sympformer.data.packaged import file_sha256
from sympformer.data.rdata import RObject, read_lazy_load
from sympformer.files import staged_folder

PACKAGE = "r-cran-janeaustenr"
VERSION = "1.0.0-1"
DEB_SHA256 = "df6bddf211906d1ff404f8ff662c21b34e6660e7f54a311084e749050c019c95"
"""sha256 of r-cran-janeaustenr_1.0.0-1_all.deb (Debian bookworm, 1.6 MB); for the record: apt
itself checks every download against its signed package lists."""
TEXT_SHA256 = "7b2685b5e55dbf359b734afa410763ea77a38a99cab534328ddc29131594e14f"
"""`text_fingerprint` of 1.0.0-1's six novels: 269 chapters, 4.03 M characters."""

NOVELS = {
    "sensesensibility": "Sense and Sensibility",
    "prideprejudice": "Pride and Prejudice",
    "mansfieldpark": "Mansfield Park",
    "emma": "Emma",
    "northangerabbey": "Northanger Abbey",
    "persuasion": "Persuasion",
}
"""R variable -> title, in order of publication (as janeaustenr's `austen_books()`)."""

RDATA = "usr/lib/R/site-library/janeaustenr/data/Rdata"
"""The lazy-load database in the unpacked .deb (without .rdx/.rdb)."""

INFO = "package.json"
"""Written last into the cache folder: package, version, .deb sha256, sha256 of each text file."""

COMMAND_TIMEOUT = 300.0
"""Seconds `apt-get download` or `dpkg -x` may take (the .deb is 1.6 MB)."""

HOW_TO_GET = (
    f"on Debian or Ubuntu `apt-get download {PACKAGE}` must work (after `apt-get update`); "
    "elsewhere, download the six novels from Project Gutenberg into a folder and train on it "
    "with `--data FOLDER`, which takes any UTF-8 text"
)

CHAPTER = re.compile(r"chapter\s+(?:\d+|[ivxlc]+)\.?", re.IGNORECASE)
"""A chapter heading line ("CHAPTER XIV", "Chapter 3"), the whole line."""
VOLUME = re.compile(r"volume\s+[ivx]+", re.IGNORECASE)
"""A volume heading line ("VOLUME II", in Emma), left out."""


@dataclass(frozen=True)
class Novels:
    """The six novels as cached."""

    texts: dict[str, str]
    """Title -> the novel's text (its lines joined by newlines), in order of publication."""
    version: str
    """Debian version of the package they came from."""
    fingerprint: str
    """`text_fingerprint` of the texts."""
    folder: Path
    """The cache folder."""


def austen_novels(cache_root: Path) -> Novels:
    """The novels from `<cache_root>/packages/r-cran-janeaustenr/`, fetched first if missing.

    Raises:
        DataError: the fetch failed (one line: what failed, how to get the text otherwise), or
            the cache folder does not match its package.json.
    """
    folder = Path(cache_root) / "packages" / PACKAGE
    if not folder.exists():
        fetch(folder)
    return read_cached(folder)


def fetch(folder: Path) -> None:
    """Download and unpack the package in a temporary folder, then cache its novels in `folder`."""
    tools = {name: shutil.which(name) for name in ("apt-get", "dpkg")}
    missing = [name for name, path in tools.items() if path is None]
    if missing:
        raise fetch_error(f"{' and '.join(missing)} not found on PATH")
    with tempfile.TemporaryDirectory(prefix="sympformer-austen-") as tmp:
        work = Path(tmp)
        run([tools["apt-get"], "download", PACKAGE], work)
        debs = sorted(work.glob(f"{PACKAGE}_*.deb"))
        if len(debs) != 1:
            raise fetch_error(f"`apt-get download {PACKAGE}` left {len(debs)} .deb files")
        deb = debs[0]
        run([tools["dpkg"], "-x", deb.name, "tree"], work)
        try:
            found = read_lazy_load(work / "tree" / RDATA, list(NOVELS))
            texts = {f"{name}.txt": novel_text(name, value) for name, value in found.items()}
        except DataError as e:
            raise fetch_error(f"{deb.name} does not hold the novels as expected ({e})") from None
        info = {
            "package": PACKAGE,
            "version": unquote(deb.name.split("_")[1]),  # name_version_arch.deb, ":" as %3a
            "deb_sha256": file_sha256(deb),
            "files": {
                name: hashlib.sha256(text.encode()).hexdigest() for name, text in texts.items()
            },
        }
        with staged_folder(folder, INFO) as staging:
            write_novels(staging, texts, info)


def write_novels(folder: Path, texts: dict[str, str], info: dict[str, Any]) -> None:
    """The text files, then `INFO`."""
    for name, text in texts.items():
        (folder / name).write_text(text, encoding="utf-8")
    (folder / INFO).write_text(json.dumps(info, indent=2) + "\n")


def run(command: list[str], cwd: Path) -> None:
    """Run a fetch command; a failure becomes one DataError line with the tool's own error."""
    shown = " ".join([Path(command[0]).name, *command[1:]])
    try:
        done = subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        raise fetch_error(f"`{shown}` did not finish in {COMMAND_TIMEOUT:g} s") from None
    except OSError as e:
        raise fetch_error(f"`{shown}` could not run ({e.strerror})") from None
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("E:")]  # apt's error lines
        said = (errors or lines or ["no output"])[-1]
        raise fetch_error(f"`{shown}` failed with exit code {done.returncode}: {said}")


def fetch_error(what: str) -> DataError:
    return DataError(f"dataset 'austen' could not fetch Debian's {PACKAGE}: {what}; {HOW_TO_GET}")


def novel_text(name: str, value: object) -> str:
    """An R character vector of lines (no NA) as one text."""
    if not (isinstance(value, RObject) and value.type == "character"):
        raise DataError(f"{name!r} is not a character vector")
    if not all(isinstance(line, str) for line in value.values):
        raise DataError(f"{name!r} has NA or byte-string lines")
    return "\n".join(value.values) + "\n"


def read_cached(folder: Path) -> Novels:
    """The novels in a cache folder, after checking each file against `INFO`."""
    fix = f"delete {folder} to fetch it again"
    try:
        info = json.loads((folder / INFO).read_text())
        texts = {}
        for name, title in NOVELS.items():
            data = (folder / f"{name}.txt").read_bytes()
            if hashlib.sha256(data).hexdigest() != info["files"][f"{name}.txt"]:
                raise DataError(f"{folder / name}.txt does not match the sha256 in {INFO}; {fix}")
            texts[title] = data.decode("utf-8")
        version = info["version"]
    except (OSError, KeyError, TypeError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{folder} is not a complete copy of {PACKAGE} ({e}); {fix}") from None
    return Novels(texts, version, text_fingerprint(info["files"]), folder)


def text_fingerprint(files: dict[str, str]) -> str:
    """sha256 over the text files' names and sha256s, in `NOVELS` order."""
    digest = hashlib.sha256()
    for name in NOVELS:
        digest.update(f"{name}.txt\0{files[f'{name}.txt']}\0".encode())
    return digest.hexdigest()


def chapters(title: str, text: str) -> list[str]:
    """One novel's chapters as documents: the heading "Emma, Chapter 19", then the chapter's text.

    Chapters are numbered through the novel (Emma's restart in each volume), the chapter's own
    heading line and the blank lines around its text are dropped, and so are the title page
    before the first chapter and the "VOLUME II" lines.
    """
    found: list[list[str]] = []
    for line in text.splitlines():
        if CHAPTER.fullmatch(line.strip()):
            found.append([])
        elif found and not VOLUME.fullmatch(line.strip()):
            found[-1].append(line)
    if not found:
        raise DataError(f"{title} has no chapter headings (lines like 'CHAPTER I')")
    return [
        f"{title}, Chapter {n}\n" + "\n".join(lines).strip("\n") for n, lines in enumerate(found, 1)
    ]
