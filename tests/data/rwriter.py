"""A test-side writer of R's XDR serialization and lazy-load databases, written from R Internals
("Serialization Formats") independently of `sympformer.data.rdata`, plus a fake janeaustenr
package tree."""

import gzip
import struct
import zlib
from pathlib import Path

from sympformer.data.rdata import RObject, Symbol

CODES = {"logical": 10, "integer": 13, "double": 14, "character": 16, "list": 19}
NA_INTEGER = -(2**31)


def i32(*values: int) -> bytes:
    return struct.pack(f">{len(values)}i", *values)


def charsxp(s: str | bytes | None) -> bytes:
    if s is None:
        return i32(9, -1)
    if isinstance(s, bytes):
        levels = 2  # BYTES
        raw = s
    else:
        raw = s.encode()
        levels = 64 if s.isascii() else 8  # ASCII or UTF8
    return i32(levels << 12 | 9, len(raw)) + raw


class Writer:
    def __init__(self):
        self.symbols: list[str] = []

    def symbol(self, name: str) -> bytes:
        if name in self.symbols:  # a back-reference, index packed into the flags
            return i32((self.symbols.index(name) + 1) << 8 | 255)
        self.symbols.append(name)
        return i32(1) + charsxp(name)

    def item(self, obj) -> bytes:
        if obj is None:
            return i32(254)
        if isinstance(obj, Symbol):
            return self.symbol(obj.name)
        if isinstance(obj, str):
            return charsxp(obj)
        if obj.type == "pairlist":
            return self.pairlist(obj)
        attributes = {k: v for k, v in obj.attributes.items()}
        flags = CODES[obj.type] | (1 << 9 if attributes else 0)
        out = i32(flags, len(obj.values))
        if obj.type == "character":
            out += b"".join(charsxp(s) for s in obj.values)
        elif obj.type == "double":
            out += struct.pack(f">{len(obj.values)}d", *obj.values)
        elif obj.type in ("integer", "logical"):
            out += i32(*(NA_INTEGER if v is None else int(v) for v in obj.values))
        else:
            out += b"".join(self.item(v) for v in obj.values)
        if attributes:
            out += self.attributes(attributes)
        return out

    def attributes(self, attributes: dict) -> bytes:
        names = RObject("character", tuple(attributes))
        return self.item(RObject("pairlist", tuple(attributes.values()), {"names": names}))

    def pairlist(self, obj: RObject) -> bytes:
        extra = {k: v for k, v in obj.attributes.items() if k != "names"}
        tags = obj.attributes["names"].values
        out = b""
        for i, (tag, value) in enumerate(zip(tags, obj.values, strict=True)):
            attr = extra if i == 0 and extra else {}
            flags = 2 | (1 << 10 if tag else 0) | (1 << 9 if attr else 0)
            out += i32(flags)
            if attr:
                out += self.attributes(attr)
            if tag:
                out += self.symbol(tag)
            out += self.item(value)
        return out + i32(254)


def serialize(obj, version: int = 3) -> bytes:
    """`obj` (None, a Symbol, a str or an RObject) as R's `serialize(obj, NULL)` writes it."""
    head = b"X\n" + i32(version, 0x040201, 0x030500)
    if version == 3:
        head += i32(5) + b"UTF-8"
    return head + Writer().item(obj)


def character(*values) -> RObject:
    return RObject("character", tuple(values))


def named_list(items: dict) -> RObject:
    return RObject("list", tuple(items.values()), {"names": character(*items)})


def write_lazy_load(base: Path, variables: dict) -> None:
    """`base`.rdx / `base`.rdb holding `variables`, zlib-compressed as R writes package data."""
    base.parent.mkdir(parents=True, exist_ok=True)
    rdb, where = b"", {}
    for name, value in variables.items():
        data = serialize(value)
        record = struct.pack(">I", len(data)) + zlib.compress(data)
        where[name] = RObject("integer", (len(rdb), len(record)))
        rdb += record
    base.with_suffix(".rdb").write_bytes(rdb)
    index = named_list(
        {
            "variables": named_list(where),
            "references": named_list({}),
            "compressed": RObject("logical", (True,)),
        }
    )
    base.with_suffix(".rdx").write_bytes(gzip.compress(serialize(index)))


ROMAN = ["I", "II", "III", "IV", "V"]


def tiny_novel(title: str, n_chapters: int, roman: bool = False) -> list[str]:
    """A novel's lines: a title page, then chapters ("Chapter 1", or "CHAPTER I" with a
    "VOLUME II" line before chapter 3) of two lines each."""
    lines = [title.upper(), "", "By Jane Austen", "", ""]
    for n in range(1, n_chapters + 1):
        if roman and n == 3:
            lines += ["VOLUME II", "", ""]
        heading = f"CHAPTER {ROMAN[n - 1]}" if roman else f"Chapter {n}"
        lines += [heading, "", f"{title}, chapter {n} begins.", "  It ends, café and all.", "", ""]
    return lines
