"""Canonical encoding: base64url, canonical JSON, the strict parser, domain-separated frames."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from protocol.encoding import (
    MAX_SAFE_INT,
    b64d,
    b64e,
    canonical_json,
    digest,
    fingerprint,
    frame,
    loads_as_encoded,
    loads_strict,
)
from protocol.errors import EncodingError

ROOT = Path(__file__).resolve().parents[2]

# -- base64url ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "text"),
    [(b"", ""), (b"\x00", "AA"), (b"\xff\xfe", "__4"), (b"abc", "YWJj"), (b"\xfb\xff", "-_8")],
)
def test_b64_round_trip(data: bytes, text: str) -> None:
    assert b64e(data) == text
    assert b64d(text) == data


@pytest.mark.parametrize(
    "text",
    [
        "AA==",  # padding
        "AB",  # non-zero trailing bits: not the canonical form of b"\x00"
        "__5",  # non-zero trailing bits
        "A",  # impossible length
        "YW Jj",  # whitespace
        "YWJj\n",
        "+/8",  # the other alphabet
        "YWJj!",
        "\uff39\uff37\uff2a\uff4a",  # full-width look-alikes of "YWJj"
    ],
)
def test_b64_rejects_every_other_form(text: str) -> None:
    with pytest.raises(EncodingError):
        b64d(text)


@pytest.mark.parametrize("length", [2, 3])
def test_b64_accepts_exactly_the_canonical_forms_of_every_short_value(length: int) -> None:
    """Every string of 2 or 3 base64url characters: accepted exactly when it is what
    encoding its own decoding gives (the check looks only at the last character)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    accepted = 0
    for text in map("".join, itertools.product(alphabet, repeat=length)):
        padded = text + "=" * (-len(text) % 4)
        canonical = b64e(base64.urlsafe_b64decode(padded)) == text
        try:
            b64d(text)
        except EncodingError:
            assert not canonical, text
        else:
            assert canonical, text
            accepted += 1
    assert accepted == 256 ** (length - 1)


@pytest.mark.parametrize("value", [None, 12, b"YWJj", ["YWJj"]])
def test_b64_rejects_non_text(value: object) -> None:
    with pytest.raises(EncodingError):
        b64d(value)


def test_b64_length_bound_is_checked_before_decoding() -> None:
    assert b64d(b64e(bytes(32)), max_len=32) == bytes(32)
    with pytest.raises(EncodingError, match="too long"):
        b64d(b64e(bytes(33)), max_len=32)


# -- canonical JSON ----------------------------------------------------------------------


def test_canonical_json_sorts_keys_and_drops_whitespace() -> None:
    value = {"b": [1, True, None], "a": {"d": "é", "c": -(2**53) + 1}}
    assert (
        canonical_json(value) == '{"a":{"c":-9007199254740991,"d":"é"},"b":[1,true,null]}'.encode()
    )


def test_canonical_json_sorts_by_code_point_and_keeps_text_as_utf8() -> None:
    assert canonical_json({"é": 1, "z": 2, "Z": 3}) == '{"Z":3,"z":2,"é":1}'.encode()
    assert canonical_json(["\u202e"]) == '["\u202e"]'.encode()  # no \\u escapes
    assert canonical_json(['a"b\\c\n']) == b'["a\\"b\\\\c\\n"]'


@pytest.mark.parametrize(
    "value",
    [
        1.5,
        float("nan"),
        MAX_SAFE_INT + 1,
        -MAX_SAFE_INT - 1,
        {1: "non-string key"},
        b"bytes",
        {"a": {1, 2}},
        "\ud800",  # a lone surrogate has no UTF-8 form
        {"\udfff": 1},
    ],
)
def test_canonical_json_refuses_what_has_no_canonical_form(value: object) -> None:
    with pytest.raises(EncodingError):
        canonical_json(value)


def test_canonical_json_refuses_deep_nesting() -> None:
    value: object = []
    for _ in range(17):
        value = [value]
    with pytest.raises(EncodingError, match="deeply"):
        canonical_json(value)


# -- the strict parser -------------------------------------------------------------------


def test_loads_strict_round_trips_canonical_json() -> None:
    value = {"a": [1, {"b": None}], "c": "ünïcode", "d": False}
    assert loads_strict(canonical_json(value)) == value
    assert loads_strict(canonical_json(value).decode()) == value


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('{"a":1,"a":2}', "duplicate"),
        ('{"a":{"b":1,"b":1}}', "duplicate"),
        ("[1.0]", "integers"),
        ("[1e3]", "integers"),
        ("[NaN]", "not JSON"),
        ("[Infinity]", "not JSON"),
        ("[-Infinity]", "not JSON"),
        ("[9007199254740992]", "safe range"),
        ('["\\ud800"]', "surrogate"),
        ("{", "malformed"),
        ("[1,]", "malformed"),
        ("", "malformed"),
        ("[1] [2]", "malformed"),
    ],
)
def test_loads_strict_rejects(text: str, why: str) -> None:
    with pytest.raises(EncodingError, match=why):
        loads_strict(text)


_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_SORTED_ASCII = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, sort_keys=True)


def test_loads_as_encoded_takes_exactly_what_an_encoder_writes() -> None:
    value = {"z": [1, "é", None, True], "a": {"b": '\\"x'}}
    for encoder in (_COMPACT, _SORTED_ASCII):
        data = encoder.encode(value).encode()
        assert loads_as_encoded(data, [_COMPACT, _SORTED_ASCII]) == value
    assert loads_as_encoded(_SORTED_ASCII.encode(value).encode(), [_COMPACT]) is None


@pytest.mark.parametrize(
    "text",
    [
        '{"a":1,"a":2}',  # a duplicate key: the encoder writes it once, so not equal
        '{"a":1,"a":1}',
        '{"a":{"b":1,"b":1}}',
        '{"a": 1}',  # whitespace the encoder does not write
        "[1.0]",
        "[1e3]",
        "[NaN]",
        "[Infinity]",
        '["\\ud800"]',  # lone surrogate: an ASCII encoder writes it, strict refuses
        '["\\u0041"]',  # an escape the encoder does not write
        "{",
        "",
        "[1] [2]",
        "[" * 17 + "]" * 17,
        "[" * 100_000,
    ],
)
def test_loads_as_encoded_leaves_everything_else_to_the_strict_parser(text: str) -> None:
    assert loads_as_encoded(text.encode(), [_COMPACT, _SORTED_ASCII]) is None


def test_loads_as_encoded_bounds_size_and_refuses_invalid_utf8() -> None:
    assert loads_as_encoded(b"[" + b"1," * 40 + b"1]", [_COMPACT], max_bytes=64) is None
    assert loads_as_encoded(b'["\xff"]', [_COMPACT]) is None


def test_loads_strict_rejects_invalid_utf8() -> None:
    with pytest.raises(EncodingError, match="UTF-8"):
        loads_strict(b'["\xff"]')


def test_loads_strict_bounds_the_size() -> None:
    assert loads_strict("[" + "1," * 10 + "1]", max_bytes=64) == [1] * 11
    with pytest.raises(EncodingError, match="too large"):
        loads_strict("[" + "1," * 40 + "1]", max_bytes=64)


def test_loads_strict_bounds_the_depth_before_parsing() -> None:
    nested: list[object] = []
    for _ in range(15):
        nested = [nested]
    assert loads_strict("[" * 16 + "]" * 16) == nested
    for deep in ("[" * 17 + "]" * 17, '{"a":' * 17 + "1" + "}" * 17, "[" * 100_000):
        with pytest.raises(EncodingError, match="deeply"):
            loads_strict(deep)
    with pytest.raises(EncodingError, match="deeply"):
        loads_strict("[" * 3 + "]" * 3, max_depth=2)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = '["' + "[" * 40 + '", "\\"' + "{" * 40 + '", "\\\\", [["}]]"]]]'
    assert loads_strict(text) == ["[" * 40, '"' + "{" * 40, "\\", [["}]]"]]]


# -- frames and digests ------------------------------------------------------------------


def test_frame_matches_the_documented_example() -> None:
    expected = bytes.fromhex("7363 6861 6b65 6c2f 782f 7631 00 00000002 6162".replace(" ", ""))
    assert frame("schakel/x/v1", b"ab") == expected


def test_frame_parts_cannot_be_shifted() -> None:
    assert frame("schakel/x/v1", b"ab", b"c") != frame("schakel/x/v1", b"a", b"bc")
    assert frame("schakel/x/v1", b"") != frame("schakel/x/v1")
    assert digest("schakel/x/v1", b"ab") == hashlib.sha256(frame("schakel/x/v1", b"ab")).digest()
    assert digest("schakel/x/v1", b"ab") != digest("schakel/y/v1", b"ab")


@pytest.mark.parametrize("label", ["", "x/v1", "schakel/X/v1", "schakel/x", "schakel/x/v1\x00"])
def test_frame_refuses_a_label_outside_the_scheme(label: str) -> None:
    with pytest.raises(ValueError, match="label"):
        frame(label, b"")


def test_fingerprint_is_unpadded_base64url_sha256() -> None:
    assert fingerprint(b"") == "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
    assert len(fingerprint(b"anything")) == 43


# A body of one unterminated string made of escaped quotes: a scanner that restarts at every
# quote does quadratic work on it (hours for a megabyte); the depth check must stay linear.
HOSTILE = '\\"' * (1 << 19)


def test_the_depth_scan_stays_linear_on_unterminated_strings() -> None:
    # A generous watchdog, not a timing: the linear scan takes a fraction of a second here,
    # the quadratic one would take hours, so 60 s can only fail for the defect.
    script = (
        "from protocol.encoding import _depth\n"
        f"_depth({HOSTILE[:16]!r} * {len(HOSTILE) // 16}, 16)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60, cwd=ROOT)


@pytest.mark.parametrize("text", ['"abc', '"ab\\\\', '["x", "', '{"a": "\\\\"'])
def test_unterminated_strings_are_still_malformed(text: str) -> None:
    with pytest.raises(EncodingError, match="malformed"):
        loads_strict(text)
