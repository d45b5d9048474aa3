import gzip
import math

import pytest

from sympformer.data import DataError
from sympformer.data.rdata import RObject, Symbol, read_lazy_load, read_rds, unserialize
from tests.data.rwriter import character, i32, named_list, serialize, write_lazy_load

R_INDEX = bytes.fromhex(
    "580a000000030004020100030500000000055554462d38000002130000000300000213000000060000000d00"
    "0000020000000000055f2b0000000d0000000200055f2b00055c8d0000000d00000002000abbb80002ac5c00"
    "00000d00000002000d68140002d32a0000000d0000000200103b3e000422bd0000000d0000000200145dfb00"
    "04113c000004020000000100040009000000056e616d657300000010000000060004000900000004656d6d61"
    "000400090000000d6d616e736669656c647061726b000400090000000f6e6f727468616e6765726162626579"
    "000400090000000a70657273756173696f6e000400090000000e70726964657072656a756469636500040009"
    "0000001073656e736573656e736962696c697479000000fe000002130000000000000402000001ff00000010"
    "00000000000000fe0000000a000000010000000100000402000001ff00000010000000030004000900000009"
    "7661726961626c6573000400090000000a7265666572656e636573000400090000000a636f6d707265737365"
    "64000000fe"
)
"""data/Rdata.rdx of r-cran-janeaustenr 1.0.0-1 (written by R 4.2.1), gunzipped: bytes from R
itself, not from our test writer."""

OBJECTS = {
    "NULL": None,
    "symbol": Symbol("x"),
    "strings with NA, UTF-8 and bytes": character("a", None, "", "café Brontë ✓", b"\xff\x00"),
    "integers with NA": RObject("integer", (0, -1, 2**31 - 1, None)),
    "logicals with NA": RObject("logical", (True, False, None)),
    "doubles": RObject("double", (0.0, -1.5, 1e300, math.inf)),
    "empty list": named_list({}),
    "nested named lists": named_list(
        {"a": named_list({"b": RObject("integer", (1, 2))}), "": character("z")}
    ),
    "attributes and repeated symbols": RObject(
        "list",
        (named_list({"x": None}), named_list({"y": None})),
        {"names": character("p", "q"), "class": character("data.frame")},
    ),
    "pairlist with tags, an untagged node and attributes": RObject(
        "pairlist",
        (RObject("integer", (1,)), character("two"), None),
        {"names": character("first", "", "third"), "comment": character("note")},
    ),
}


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("case", list(OBJECTS))
def test_round_trip(case, version):
    assert unserialize(serialize(OBJECTS[case], version)) == OBJECTS[case]


def test_reads_an_index_written_by_r():
    index = unserialize(R_INDEX).named()
    variables = index["variables"].named()
    assert list(variables) == [
        "emma",
        "mansfieldpark",
        "northangerabbey",
        "persuasion",
        "prideprejudice",
        "sensesensibility",
    ]
    assert variables["emma"] == RObject("integer", (0, 352043))
    assert index["compressed"].values == (True,)
    assert index["references"].values == ()


def test_lazy_load_database_round_trip(tmp_path):
    values = {"one": character("x", None), "two": OBJECTS["nested named lists"]}
    write_lazy_load(tmp_path / "db", values)
    assert read_lazy_load(tmp_path / "db") == values
    assert read_lazy_load(tmp_path / "db", ["two"]) == {"two": values["two"]}
    assert read_rds(tmp_path / "db.rdx").named()["compressed"].values == (True,)
    with pytest.raises(DataError, match="has no variable 'three'"):
        read_lazy_load(tmp_path / "db", ["three"])


HEADER = b"X\n" + i32(2, 0x040201, 0x030500)
BAD_STREAMS = {  # bytes -> the error they give
    "closure": (HEADER + i32(3), "SEXP type 3 is not supported"),
    "truncated": (serialize(character("abcdef"))[:-2], "truncated"),
    "trailing bytes": (serialize(None) + b"\0" * 4, "4 bytes follow the object"),
    "ASCII format": (b"A\n" + serialize(None)[2:], "no XDR serialization header"),
    "version 4": (b"X\n" + i32(4, 0, 0) + i32(254), "version 4 is not 2 or 3"),
    "bad reference": (HEADER + i32(7 << 8 | 255), "reference 7 to an unknown object"),
    "string that is not a CHARSXP": (HEADER + i32(16, 1) + i32(13, 0), "expected a string"),
}


@pytest.mark.parametrize("case", list(BAD_STREAMS))
def test_bad_streams_raise_one_line(case):
    data, message = BAD_STREAMS[case]
    with pytest.raises(DataError, match=message) as e:
        unserialize(data, "test.rds")
    assert str(e.value).startswith("test.rds: ")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "gzip"])
def test_corrupt_records_raise_one_line(tmp_path, damage):
    write_lazy_load(tmp_path / "db", {"v": character("some text " * 20)})
    rdb, rdx = tmp_path / "db.rdb", tmp_path / "db.rdx"
    if damage == "flip a byte":
        data = bytearray(rdb.read_bytes())
        data[20] ^= 0xFF
        rdb.write_bytes(bytes(data))
    elif damage == "truncate":
        rdb.write_bytes(rdb.read_bytes()[:3])
    else:
        rdx.write_bytes(gzip.compress(b"X\n")[:-4])
    with pytest.raises(DataError, match="corrupt|truncated") as e:
        read_lazy_load(tmp_path / "db")
    assert "\n" not in str(e.value)
