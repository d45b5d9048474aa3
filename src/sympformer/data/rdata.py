"""A small reader of R's binary serialization and lazy-load databases (standard library only).

Enough of the format (R Internals, "Serialization Formats") to read the data of an installed R
package without R: character, integer, double and logical vectors, lists, pairlists with tags and
attributes, symbols and references to them. Anything else raises `DataError` naming the type.

A serialized stream is big-endian XDR:

    b"X\\n"                    format (XDR binary; the ASCII "A" and native "B" forms are refused)
    int version                2 or 3
    int writer, min reader     R versions, packed as 65536 * major + 256 * minor + patch
    [int n, n bytes]           version 3 only: the writer's native encoding, e.g. "UTF-8"
    item                       the object

and each item starts with an int of flags: bits 0-7 the type (SEXPTYPE), bit 8 "is an object",
bit 9 "has attributes", bit 10 "has a tag", bits 12-27 the general-purpose "levels" (for a
string: its encoding). Then, by type:

    NILVALUE (254)             nothing: R's NULL
    REFSXP (255)               a reference to an earlier symbol: index (1-based) in bits 8-31 of
                               the flags, or in the next int when those bits are 0
    SYMSXP (1)                 a CHARSXP item, the symbol's name; added to the reference table
    LISTSXP (2)                pairlist node: [attributes] [tag] head tail, each an item; the
                               tail is the next node or NILVALUE
    CHARSXP (9)                int length (-1: NA), then that many bytes; levels bit 3 UTF-8,
                               bit 2 Latin-1, bit 1 bytes, bit 6 ASCII
    LGLSXP (10), INTSXP (13)   length, then int32 each (NA: -2**31)
    REALSXP (14)               length, then float64 each
    STRSXP (16)                length, then a CHARSXP item each
    VECSXP (19)                length, then an item each

A vector's length is an int, or -1 followed by two ints (high and low 32 bits) for long vectors;
its attributes (a tagged pairlist) follow its elements when bit 9 is set.

A lazy-load database is a pair of files, NAME.rdx and NAME.rdb. The .rdx is a serialized list
(compressed like an .rds file: gzip, bzip2, xz or plain) with `variables` (name -> int pair
(offset, length) into the .rdb), `references` and `compressed`. Each .rdb record is a 4-byte
big-endian uncompressed length followed by the compressed serialization of one value: zlib data
when `compressed` is 1 (TRUE); with 2 or 3, one byte naming the method first ("0" none, "1" zlib,
"2" bzip2, "Z" xz).
"""

import bz2
import gzip
import lzma
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sympformer.data.errors import DataError

NILVALUE, REFSXP = 254, 255
SYMSXP, LISTSXP, CHARSXP = 1, 2, 9
VECTOR_TYPES = {10: "logical", 13: "integer", 14: "double", 16: "character", 19: "list"}
"""SEXPTYPE of each vector type read -> its name in R (`typeof`)."""

HAS_ATTR, HAS_TAG = 1 << 9, 1 << 10
UTF8, LATIN1, BYTES, ASCII = 1 << 3, 1 << 2, 1 << 1, 1 << 6
"""Encoding bits of a CHARSXP's levels."""
NA_INTEGER = -(2**31)

COMPRESSION_MAGIC = {
    b"\x1f\x8b": gzip.decompress,
    b"BZh": bz2.decompress,
    b"\xfd7zXZ\x00": lzma.decompress,
}
"""First bytes of a compressed .rds or .rdx file -> its decompressor."""

RECORD_METHODS = {b"0": bytes, b"1": zlib.decompress, b"2": bz2.decompress, b"Z": lzma.decompress}
"""Method byte of an .rdb record (`compressed` 2 or 3) -> its decompressor."""


@dataclass(frozen=True)
class Symbol:
    """An R symbol (a name)."""

    name: str


@dataclass(frozen=True)
class RObject:
    """An R vector or pairlist with its attributes.

    Elements: str or None (NA) for "character" (bytes for strings marked as bytes), int or None
    for "integer", bool or None for "logical", float for "double" (NA is a NaN), any value for
    "list" and "pairlist". A pairlist's tags are its "names" ("" where a node has none).
    """

    type: str
    """R's `typeof`: "character", "integer", "double", "logical", "list" or "pairlist"."""
    values: tuple[Any, ...]
    attributes: dict[str, Any] = field(default_factory=dict)
    """Attribute name -> value (e.g. "names" -> a character RObject)."""

    def named(self) -> dict[str, Any]:
        """Name -> element, for a vector with a "names" attribute (R's `x[["name"]]`)."""
        names = self.attributes.get("names")
        if not isinstance(names, RObject) or len(names.values) != len(self.values):
            raise DataError(f"this R {self.type} has no names")
        return dict(zip(names.values, self.values, strict=True))


class Reader:
    """Reads one serialized stream (see the module docstring), item by item."""

    def __init__(self, data: bytes, what: str):
        self.data = memoryview(data)
        self.pos = 0
        self.what = what
        self.refs: list[Any] = []
        self.encoding = "utf-8"

    def fail(self, message: str) -> DataError:
        return DataError(f"{self.what}: {message} (at byte {self.pos})")

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail(f"truncated: {n} more bytes wanted")
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def ints(self, n: int) -> tuple[int, ...]:
        return struct.unpack(f">{n}i", self.take(4 * n))

    def int(self) -> int:
        return self.ints(1)[0]

    def header(self) -> None:
        if bytes(self.take(2)) != b"X\n":
            raise self.fail("no XDR serialization header (b'X\\n')")
        version, _writer, _min_reader = self.ints(3)
        if version == 3:
            self.encoding = bytes(self.take(self.int())).decode("ascii")
        elif version != 2:
            raise self.fail(f"serialization version {version} is not 2 or 3")

    def length(self) -> int:
        n = self.int()
        if n == -1:
            high, low = self.ints(2)
            n = (high << 32) + (low & 0xFFFFFFFF)
        if n < 0:
            raise self.fail(f"negative length {n}")
        return n

    def item(self) -> Any:
        flags = self.int()
        kind = flags & 0xFF
        if kind == NILVALUE:
            return None
        if kind == REFSXP:
            index = (flags >> 8) or self.int()
            if not 1 <= index <= len(self.refs):
                raise self.fail(f"reference {index} to an unknown object")
            return self.refs[index - 1]
        if kind == SYMSXP:
            symbol = Symbol(self.string(self.int()) or "")
            self.refs.append(symbol)
            return symbol
        if kind == LISTSXP:
            return self.pairlist(flags)
        if kind == CHARSXP:
            return self.string(flags)
        if kind not in VECTOR_TYPES:
            raise self.fail(f"SEXP type {kind} is not supported")
        values = self.vector(kind, self.length())
        attributes = self.attributes() if flags & HAS_ATTR else {}
        return RObject(VECTOR_TYPES[kind], values, attributes)

    def vector(self, kind: int, n: int) -> tuple[Any, ...]:
        if kind == 14:  # REALSXP
            return struct.unpack(f">{n}d", self.take(8 * n))
        if kind in (10, 13):  # LGLSXP, INTSXP
            cast = bool if kind == 10 else int
            return tuple(None if v == NA_INTEGER else cast(v) for v in self.ints(n))
        if kind == 16:  # STRSXP: each element is a CHARSXP item with its own flags
            return tuple(self.string(self.int()) for _ in range(n))
        return tuple(self.item() for _ in range(n))  # VECSXP

    def string(self, flags: int) -> str | bytes | None:
        """The CHARSXP whose flags were just read (None for NA)."""
        if flags & 0xFF != CHARSXP:
            raise self.fail(f"expected a string (type {CHARSXP}), found type {flags & 0xFF}")
        n = self.int()
        if n == -1:
            return None
        raw = bytes(self.take(n))
        levels = flags >> 12
        if levels & BYTES:
            return raw
        encoding = "latin-1" if levels & LATIN1 else "utf-8" if levels & (UTF8 | ASCII) else None
        try:
            return raw.decode(encoding or self.encoding)
        except (UnicodeDecodeError, LookupError) as e:
            raise self.fail(f"a string is not {encoding or self.encoding} ({e})") from None

    def pairlist(self, flags: int) -> RObject:
        """The nodes of a pairlist whose first flags were just read, as values and tags."""
        values, tags, attributes = [], [], None
        while flags & 0xFF == LISTSXP:
            node_attributes = self.attributes() if flags & HAS_ATTR else {}
            if attributes is None:
                attributes = node_attributes  # R keeps the first node's
            tag = self.item() if flags & HAS_TAG else None
            tags.append(tag.name if isinstance(tag, Symbol) else "")
            values.append(self.item())
            flags = self.int()
        if flags & 0xFF != NILVALUE:
            raise self.fail(f"a pairlist ends in type {flags & 0xFF}, not NULL")
        names = RObject("character", tuple(tags))
        return RObject("pairlist", tuple(values), {"names": names, **(attributes or {})})

    def attributes(self) -> dict[str, Any]:
        found = self.item()
        if not isinstance(found, RObject) or found.type != "pairlist":
            raise self.fail("attributes are not a pairlist")
        return found.named()


def unserialize(data: bytes, what: str = "R data") -> Any:
    """The object in one XDR serialization (what R's `unserialize` reads; see the module docstring).

    Args:
        data: the serialized bytes, starting with b"X\\n".
        what: names the data in error messages (e.g. a file and record).

    Returns:
        None (NULL), a `Symbol`, a str (a bare CHARSXP) or an `RObject`.

    Raises:
        DataError: truncated or trailing data, or a type this reader does not support.
    """
    reader = Reader(data, what)
    reader.header()
    value = reader.item()
    if reader.pos != len(data):
        raise reader.fail(f"{len(data) - reader.pos} bytes follow the object")
    return value


def read_rds(path: Path) -> Any:
    """The object in an .rds file (or an .rdx index): a serialization, maybe gzip/bzip2/xz'd."""
    data = Path(path).read_bytes()
    for magic, decompress in COMPRESSION_MAGIC.items():
        if data.startswith(magic):
            try:
                data = decompress(data)
            except (OSError, EOFError, ValueError, lzma.LZMAError) as e:
                raise DataError(f"{path} is corrupt ({type(e).__name__}: {e})") from None
            break
    return unserialize(data, str(path))


def read_lazy_load(base: Path, names: list[str] | None = None) -> dict[str, Any]:
    """Values of a lazy-load database `base`.rdx / `base`.rdb (e.g. a package's data/Rdata).

    Args:
        base: path without the suffix, e.g. ".../janeaustenr/data/Rdata".
        names: the variables to read; None reads all.

    Returns:
        Variable name -> value, in the order asked (or the index's order).

    Raises:
        DataError: a missing file or variable, a corrupt record, or an unsupported type.
    """
    base = Path(base)
    index = read_rds(base.with_suffix(".rdx"))
    if not isinstance(index, RObject) or index.type != "list":
        raise DataError(f"{base}.rdx is not a lazy-load index (a list)")
    parts = index.named()
    variables = parts.get("variables")
    if not isinstance(variables, RObject):
        raise DataError(f"{base}.rdx has no 'variables' list")
    where = variables.named()
    missing = sorted(set(names or ()) - set(where))
    if missing:
        raise DataError(f"{base}.rdx has no variable {missing[0]!r}; it has {sorted(where)}")
    compressed = parts.get("compressed")
    method = int(compressed.values[0]) if isinstance(compressed, RObject) else 1
    out = {}
    with open(base.with_suffix(".rdb"), "rb") as f:
        for name in names if names is not None else list(where):
            entry = where[name]
            if not (
                isinstance(entry, RObject) and entry.type == "integer" and len(entry.values) == 2
            ):
                raise DataError(f"{base}.rdx: variable {name!r} has no (offset, length) pair")
            offset, length = entry.values
            f.seek(offset)
            record = f.read(length)
            what = f"{base}.rdb record {name!r}"
            out[name] = unserialize(decompress_record(record, method, what), what)
    return out


def decompress_record(record: bytes, method: int, what: str) -> bytes:
    """The serialization in one .rdb record (see the module docstring)."""
    if len(record) < 5:
        raise DataError(f"{what} is truncated ({len(record)} bytes)")
    size = struct.unpack(">I", record[:4])[0]
    if method == 1:
        decompress, body = zlib.decompress, record[4:]
    elif method in (2, 3) and record[4:5] in RECORD_METHODS:
        decompress, body = RECORD_METHODS[record[4:5]], record[5:]
    else:
        raise DataError(f"{what} uses compression {method}/{record[4:5]!r}, which we do not read")
    try:
        data = decompress(body)
    except (zlib.error, OSError, EOFError, ValueError, lzma.LZMAError) as e:
        raise DataError(f"{what} is corrupt ({type(e).__name__}: {e})") from None
    if len(data) != size:
        raise DataError(f"{what} is corrupt: {len(data)} bytes, its header says {size}")
    return data
