from __future__ import annotations

import datetime as dt
import hashlib
import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import canonical
from protocols.errors import InputError, OutputExistsError, SchemaError

# RFC 8785 section 3.2.2 (example input) -> section 3.2.3 (its canonical output).
RFC8785_INPUT = r"""{
  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}"""
RFC8785_OUTPUT = (
    '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
    '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
).encode()

# RFC 8785 section 3.2.3, "Sorting of Object Properties": keys sorted by UTF-16 code units.
RFC8785_SORT_INPUT = {
    "\u20ac": "Euro Sign",
    "\r": "Carriage Return",
    "\ufb33": "Hebrew Letter Dalet With Dagesh",
    "1": "One",
    "\U0001f600": "Emoji: Grinning Face",
    "\u0080": "Control",
    "\u00f6": "Latin Small Letter O With Diaeresis",
}
RFC8785_SORT_ORDER = ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]

# RFC 8785 Appendix B: IEEE-754 bit patterns and their ES6 number serialisation.
RFC8785_NUMBERS = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),  # minus zero
    ("0000000000000001", "5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("44b52d02c7e14af6", "1e+23"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
]


def test_rfc8785_example_round_trip():
    assert canonical.canonical_bytes(json.loads(RFC8785_INPUT)) == RFC8785_OUTPUT


def test_rfc8785_property_sorting_uses_utf16_code_units():
    out = canonical.canonical_bytes(RFC8785_SORT_INPUT).decode("utf-8")
    assert list(json.loads(out)) == RFC8785_SORT_ORDER
    # Python's own sort (by code point) puts U+1F600 last; UTF-16 puts it before U+FB33.
    assert sorted(RFC8785_SORT_INPUT) != RFC8785_SORT_ORDER


@pytest.mark.parametrize(("bits", "expected"), RFC8785_NUMBERS)
def test_rfc8785_number_serialisation(bits, expected):
    value = struct.unpack(">d", bytes.fromhex(bits))[0]
    assert canonical.canonical_bytes([value]) == f"[{expected}]".encode()


def test_digest_json_is_sha256_of_canonical_bytes():
    obj = {"b": [1, 2.5], "a": "x"}
    assert canonical.digest_json(obj) == hashlib.sha256(b'{"a":"x","b":[1,2.5]}').hexdigest()
    assert canonical.sha256_hex(b"") == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize(
    ("obj", "fragment"),
    [
        ({"seed": 2**53}, "$.seed: integer 9007199254740992"),
        ({"a": [0, -(2**60)]}, "$.a[1]: integer"),
        ({"x": float("nan")}, "$.x: nan"),
        ({"x": float("inf")}, "$.x: inf"),
        ({1: "a"}, "object key 1 is not a string"),
        ({"s": {1, 2}}, "$.s: value of type set"),
        ({"b": b"raw"}, "$.b: value of type bytes"),
        ({"s": "\ud800"}, "lone surrogate"),
    ],
)
def test_uncanonicalisable_values_name_the_path(obj, fragment):
    with pytest.raises(SchemaError) as info:
        canonical.canonical_bytes(obj)
    assert fragment in str(info.value)


def test_large_integer_message_suggests_strings():
    with pytest.raises(SchemaError, match="as strings"):
        canonical.canonical_bytes({"seed": 2**64})


def test_sha256_hex_rejects_str():
    with pytest.raises(InputError, match="expects bytes"):
        canonical.sha256_hex("abc")


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b'{"a": 1, "a": 2}', "duplicate JSON object key 'a'"),
        (b'{"a": NaN}', "NaN is not allowed"),
        (b'{"a": -Infinity}', "-Infinity is not allowed"),
        (b'{"a": 1} x', "invalid JSON"),
        (b'{"a": "\xff"}', "not valid UTF-8"),
        (b'{"a": 9007199254740993}', "not exactly representable"),
        (b"[" * 100_000, "nested too deeply"),
    ],
)
def test_loads_is_strict(data, fragment):
    with pytest.raises(InputError) as info:
        canonical.loads(data, source="doc.json")
    assert fragment in str(info.value)
    assert str(info.value).startswith("doc.json: ")


def test_loads_reads_large_exact_integers_as_doubles():
    # 2**60 is a double; RFC 8785 writes it as its shortest digits, and it must parse back.
    assert canonical.canonical_bytes(2.0**60) == b"1152921504606847000"
    assert canonical.loads(b"1152921504606847000") == 2.0**60
    with pytest.raises(InputError, match="not exactly representable"):
        canonical.loads(b"1152921504606846976")  # the exact value, but not a canonical spelling


def test_read_json_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        canonical.read_json(tmp_path / "missing.json")
    with pytest.raises(InputError, match="is a directory"):
        canonical.read_json(tmp_path)


def test_write_json_is_canonical_and_refuses_overwrite(tmp_path):
    path = tmp_path / "out.json"
    canonical.write_json(path, {"b": 1, "a": 2})
    assert path.read_bytes() == b'{"a":2,"b":1}\n'
    with pytest.raises(OutputExistsError):
        canonical.write_json(path, {"c": 3})
    assert canonical.read_json(path) == {"a": 2, "b": 1}
    canonical.write_json(path, {"c": 3}, force=True)
    assert canonical.read_json(path) == {"c": 3}


def test_write_json_leaves_nothing_on_bad_value(tmp_path):
    with pytest.raises(SchemaError):
        canonical.write_json(tmp_path / "x.json", {"n": 2**60})
    assert list(tmp_path.iterdir()) == []


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values)
def test_canonical_form_is_a_fixed_point(value):
    once = canonical.canonical_bytes(value)
    assert canonical.canonical_bytes(canonical.loads(once)) == once


@given(st.dictionaries(st.text(), st.integers(-1000, 1000), max_size=8))
def test_canonical_bytes_ignore_insertion_order(d):
    reordered = dict(reversed(list(d.items())))
    assert canonical.canonical_bytes(d) == canonical.canonical_bytes(reordered)


def test_now_rfc3339_is_utc_whole_seconds():
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    stamp = canonical.now_rfc3339()
    parsed = dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
    assert len(stamp) == 20 and before <= parsed <= dt.datetime.now(dt.timezone.utc)
