"""Canonical bytes for everything Schakel signs, hashes or sends.

Three building blocks, specified byte for byte in ``docs/protocol.md``:

* ``b64e`` / ``b64d``: unpadded base64url; decoding rejects padding,
  other alphabets, whitespace and non-zero trailing bits, so every byte
  string has exactly one text form.
* ``canonical_json``: JSON with sorted keys, no insignificant whitespace,
  UTF-8, integers only (|n| <= 2**53 - 1), no floats. ``loads_strict``
  parses untrusted JSON with bounds on size and depth and rejects duplicate
  keys, floats, NaN and lone surrogates.
* ``frame`` / ``digest``: domain separation. A frame is the ASCII label,
  one zero byte, then each part as a 4-byte big-endian length and its bytes.
  ``digest`` is SHA-256 of a frame.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from protocol.errors import EncodingError

MAX_SAFE_INT = 2**53 - 1
DEFAULT_MAX_JSON_BYTES = 1 << 20
DEFAULT_MAX_JSON_DEPTH = 16

_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_LABEL = re.compile(r"schakel/[a-z0-9-]+/v[0-9]+")
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# By length modulo 4, the characters that may end a canonical value: with 2 characters
# left over the last one carries 4 unused bits, with 3 it carries 2, else none.
_LAST_CHARACTERS = {
    0: frozenset(_ALPHABET),
    2: frozenset(_ALPHABET[::16]),
    3: frozenset(_ALPHABET[::4]),
}


def b64e(data: bytes) -> str:
    """Encode bytes as unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64d(text: object, *, max_len: int | None = None) -> bytes:
    """Decode unpadded, canonical base64url; raise ``EncodingError`` otherwise.

    ``max_len`` bounds the decoded length (checked before decoding).
    """
    if not isinstance(text, str) or not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise EncodingError("expected unpadded base64url")
    if max_len is not None and len(text) > (max_len * 4 + 2) // 3:
        raise EncodingError("base64url value is too long")
    # Canonical: the bits the last character carries beyond the data are zero (the only
    # freedom unpadded base64url leaves, once the alphabet is checked).
    if text and text[-1] not in _LAST_CHARACTERS[len(text) % 4]:
        raise EncodingError("base64url value is not canonical")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise EncodingError("expected unpadded base64url") from exc


def _check_canonical_value(value: Any, depth: int) -> None:
    if depth > DEFAULT_MAX_JSON_DEPTH:
        raise EncodingError("JSON nested too deeply")
    if value is None or isinstance(value, bool | str):
        if isinstance(value, str):
            _check_text(value)
        return
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INT:
            raise EncodingError("integer out of the safe range")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise EncodingError("JSON object keys must be strings")
            _check_text(key)
            _check_canonical_value(item, depth + 1)
        return
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        for item in value:
            _check_canonical_value(item, depth + 1)
        return
    raise EncodingError(f"{type(value).__name__} has no canonical JSON form")


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EncodingError("text is not valid Unicode (lone surrogate)") from exc


# One encoder, made once (json.dumps with options builds a new one for every call).
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def canonical_json(value: Any) -> bytes:
    """The one canonical byte form of a JSON value (see module docstring)."""
    _check_canonical_value(value, 0)
    return _CANONICAL.encode(value).encode("utf-8")


def canonical_json_unchecked(value: Any) -> bytes:
    """:func:`canonical_json` for a value the caller has already checked has a canonical
    form (every text valid Unicode, every integer in the safe range, no float), as a
    protocol object's own constructor does: the same bytes, without walking it again."""
    return _CANONICAL.encode(value).encode("utf-8")


def _reject_float(text: str) -> Any:
    raise EncodingError("numbers must be integers")


def _reject_constant(text: str) -> Any:
    raise EncodingError(f"{text} is not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise EncodingError("duplicate key in JSON object")
        result[key] = value
    return result


# A JSON string (skipped whole) or one bracket: the regex engine walks the text, not Python.
# A string that never closes runs to the end of the text in the same single pass (the
# `\\?\Z` branch); without it, every quote of a hostile `\"\"\"...` body would start a
# scan to the end, quadratic in the size of the body.
_STRUCTURE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)|[\[\]{}]', re.DOTALL)


def _depth(data: str, limit: int) -> None:
    """Reject nesting deeper than ``limit`` before the parser recurses."""
    if data.count("[") + data.count("{") <= limit:
        return  # not even that many brackets anywhere, so no deeper nesting either
    depth = 0
    for match in _STRUCTURE.finditer(data):
        part = match.group()
        if part in "[{":
            depth += 1
            if depth > limit:
                raise EncodingError("JSON nested too deeply")
        elif part in "]}":
            depth -= 1


def loads_strict(
    data: bytes | str,
    *,
    max_bytes: int = DEFAULT_MAX_JSON_BYTES,
    max_depth: int = DEFAULT_MAX_JSON_DEPTH,
) -> Any:
    """Parse untrusted JSON: bounded size and depth, no duplicate keys, no floats."""
    if len(data) > max_bytes:
        raise EncodingError("JSON document is too large")
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EncodingError("JSON is not valid UTF-8") from exc
    else:
        text = data
    _depth(text, max_depth)
    try:
        value = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_float=_reject_float,
            parse_constant=_reject_constant,
        )
    except EncodingError:
        raise
    except (ValueError, RecursionError) as exc:
        raise EncodingError("malformed JSON") from exc
    _check_canonical_value(value, 0)
    return value


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# Plain parsing (no hook per object), floats and constants refused; made once.
_PLAIN = json.JSONDecoder(parse_float=_reject_float, parse_constant=_reject_constant)


def loads_as_encoded(
    data: bytes,
    encoders: Sequence[json.JSONEncoder],
    *,
    max_bytes: int = DEFAULT_MAX_JSON_BYTES,
    max_depth: int = DEFAULT_MAX_JSON_DEPTH,
) -> Any | None:
    """The value of ``data`` when ``data`` is exactly what one of ``encoders`` writes of it;
    None otherwise (the caller then parses with :func:`loads_strict`, which says what is wrong).

    A cheap path for documents a known writer produced (an export line): parsed by the
    plain parser, then encoded again and compared. Equal bytes hold no duplicate key (an
    encoder never writes one), no whitespace or escape the encoder would not write, no
    float and no NaN (refused while parsing). Size and depth are bounded as in
    :func:`loads_strict`. A text with a surrogate escape (``\\uD800``..``\\uDFFF``, the
    way an ASCII encoder writes a lone surrogate, and also half of an escaped pair) is
    left to the strict parser. Not bounded: integers; the caller validates every value it
    reads (as a protocol object's ``from_wire`` does) and refuses keys it does not read.
    """
    if len(data) > max_bytes:
        return None
    try:
        text = data.decode("utf-8")
        if "\\u" in text and _SURROGATE_ESCAPE.search(text):
            return None  # an ASCII encoder writes a lone surrogate as an escape
        _depth(text, max_depth)
        value = _PLAIN.decode(text)
        if any(encoder.encode(value) == text for encoder in encoders):
            return value
    except (EncodingError, ValueError, RecursionError, TypeError):
        pass
    return None


_LABELS: dict[str, bytes] = {}  # labels checked already: ``label || 0x00``


def _label(label: str) -> bytes:
    head = _LABELS.get(label)
    if head is None:
        if not isinstance(label, str) or not _LABEL.fullmatch(label):
            raise ValueError(f"bad domain label {label!r}")
        head = label.encode("ascii") + b"\x00"
        if len(_LABELS) < 256:  # the protocol's labels are a few constants
            _LABELS[label] = head
    return head


def frame(label: str, *parts: bytes) -> bytes:
    """Domain-separated framing: ``label || 0x00 || (len32 || part)*``."""
    pieces = [_label(label)]
    for part in parts:
        pieces.append(len(part).to_bytes(4, "big"))
        pieces.append(part)
    return b"".join(pieces)


def digest(label: str, *parts: bytes) -> bytes:
    """SHA-256 over ``frame(label, *parts)``, hashed piece by piece (no copy of the parts)."""
    hasher = hashlib.sha256(_label(label))
    for part in parts:
        hasher.update(len(part).to_bytes(4, "big"))
        hasher.update(part)
    return hasher.digest()


def fingerprint(data: bytes) -> str:
    """SHA-256 of ``data`` as unpadded base64url (43 characters)."""
    return b64e(hashlib.sha256(data).digest())
