"""The bodies of C2SP tlog-witness's ``add-checkpoint`` call, parsed and written.

Followed: https://github.com/C2SP/C2SP/blob/5ba5ee830903e91240fc6f9f3a7a9293d49e69c9/tlog-witness.md
(tlog-witness after v1.0.0; it answers a same-size checkpoint with another root 422,
where v1.0.0 said 409). ``POST <prefix>/add-checkpoint`` carries::

    old <size>\\n                   the size of the checkpoint the client thinks the witness holds
    <base64 hash>\\n                zero to 63 consistency proof lines (RFC 6962 2.1.2)
    \\n
    <checkpoint note>               a signed note (protocol.checkpoint)

and is answered ``200`` with the witness's cosignature lines, ``409`` with the size the
witness holds (``<size>\\n``, ``Content-Type: text/x.tlog.size``), or ``400``, ``403``,
``404``, ``422`` (see ``docs/protocol.md``). Everything here is bytes in, values out;
:mod:`protocol.checkpoint` parses the note itself.

Errors: ``EncodingError`` for a body that is not of this form.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from protocol import merkle
from protocol.checkpoint import parse_decimal
from protocol.errors import EncodingError
from protocol.note import (
    MAX_NOTE_BYTES,
    NoteSignature,
    b64std,
    b64std_decode,
    parse_signature_lines,
)

ADD_CHECKPOINT_PATH = "/add-checkpoint"
SIZE_CONTENT_TYPE = "text/x.tlog.size"
MAX_PROOF_LINES = 63
_MAX_HEAD_BYTES = 32 + (MAX_PROOF_LINES + 1) * 64
MAX_REQUEST_BYTES = _MAX_HEAD_BYTES + MAX_NOTE_BYTES


@dataclass(frozen=True, slots=True)
class AddCheckpoint:
    """An add-checkpoint request: old size, consistency proof, and the checkpoint note."""

    old_size: int
    proof: tuple[bytes, ...]
    note: bytes

    def __post_init__(self) -> None:
        if isinstance(self.old_size, bool) or not isinstance(self.old_size, int):
            raise EncodingError("old size is an integer")
        if self.old_size < 0:
            raise EncodingError("old size is not negative")
        if len(self.proof) > MAX_PROOF_LINES:
            raise EncodingError(f"at most {MAX_PROOF_LINES} consistency proof lines")
        if any(len(line) != merkle.HASH_BYTES for line in self.proof):
            raise EncodingError(f"every consistency proof line is a {merkle.HASH_BYTES}-byte hash")

    def to_bytes(self) -> bytes:
        head = f"old {self.old_size}\n" + "".join(b64std(h) + "\n" for h in self.proof) + "\n"
        return head.encode("ascii") + self.note


def parse_add_checkpoint(body: bytes) -> AddCheckpoint:
    """Parse a request body strictly; the note after the empty line is kept as bytes."""
    if not isinstance(body, bytes) or len(body) > MAX_REQUEST_BYTES:
        raise EncodingError(f"an add-checkpoint body is at most {MAX_REQUEST_BYTES} bytes")
    end = body.find(b"\n\n", 0, _MAX_HEAD_BYTES)
    if end < 0:
        raise EncodingError("the body needs an old size line, proof lines and an empty line")
    try:
        head = body[:end].decode("ascii")
    except UnicodeDecodeError as exc:
        raise EncodingError("the old size and proof lines must be ASCII") from exc
    first, *proof_lines = head.split("\n")
    if not first.startswith("old "):
        raise EncodingError("the body must start with 'old <size>'")
    old_size = parse_decimal(first[4:], "the old size")
    if len(proof_lines) > MAX_PROOF_LINES:
        raise EncodingError(f"at most {MAX_PROOF_LINES} consistency proof lines")
    proof = tuple(
        b64std_decode(line, what="a consistency proof line", max_len=merkle.HASH_BYTES)
        for line in proof_lines
    )
    return AddCheckpoint(old_size, proof, body[end + 2 :])


def cosignature_body(signatures: Sequence[NoteSignature]) -> bytes:
    """A 200 body: one or more signature lines."""
    if not signatures:
        raise EncodingError("a witness answers at least one cosignature")
    return "".join(signature.line() for signature in signatures).encode("utf-8")


def parse_cosignature_body(body: bytes) -> tuple[NoteSignature, ...]:
    """The signature lines of a 200 body (not verified: the caller checks them)."""
    if len(body) > MAX_NOTE_BYTES:
        raise EncodingError("a cosignature body is too large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EncodingError("a cosignature body must be UTF-8") from exc
    return parse_signature_lines(text)


def size_body(size: int) -> bytes:
    """A 409 body: the size of the checkpoint the witness holds, then a newline."""
    return f"{size}\n".encode("ascii")


def parse_size_body(body: bytes) -> int:
    """The size in a 409 body."""
    if len(body) > 24 or not body.endswith(b"\n"):
        raise EncodingError("a size body is a decimal number and a newline")
    return parse_decimal(body[:-1].decode("ascii", "replace"), "the witness's size")
