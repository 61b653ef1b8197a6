"""Signed notes, exactly as C2SP signed-note v1.0.0 (https://c2sp.org/signed-note@v1.0.0).

A note is UTF-8 text (ending in a newline) signed by one or more keys::

    <text, one or more lines, each ending in \\n>
    \\n
    — <key name> <base64(4-byte key id || signature)>\\n      (one line per signature)

The text is separated from the signatures by the *last* empty line. Nothing in a note
may be a control character other than the newline. Key names are non-empty, without
Unicode spaces and without ``+``. A key is known by its pair (name, key id); the key id
is ``SHA-256(name || 0x0A || type byte || public key)[:4]``, big-endian.

:func:`open_note` is the verifier the specification describes: it ignores signatures of
keys it does not know, raises :class:`~protocol.errors.VerificationError` when a
signature of a known key fails (the whole note is refused) or when no known key signed,
and keeps one signature per known key. Verifier keys travel as *vkeys*:
``<name>+<hex key id>+<base64(type byte || public key)>`` (:class:`Vkey`).

Where the specification leaves a choice, this module is strict and bounded: base64 must
be canonical (standard alphabet, padded, no stray bits); a note is at most
``MAX_NOTE_BYTES`` with at most ``MAX_SIGNATURES`` signature lines (the specification
asks verifiers to accept at least 16); key names are at most 255 bytes. Base64 here is
always RFC 4648 section 4 (``+/`` with ``=`` padding), never Schakel's base64url.

Errors: ``EncodingError`` for bytes that are not a well-formed note or vkey;
``VerificationError`` for a signature that fails or a note no known key signed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocol.errors import EncodingError, ValidationError, VerificationError

# Signature type bytes (signed-note, "Signature types").
TYPE_ED25519 = 0x01
TYPE_COSIGNATURE_V1 = 0x04

MAX_NOTE_BYTES = 256 * 1024
MAX_TEXT_BYTES = 16 * 1024
MAX_SIGNATURES = 128
MAX_KEY_NAME_BYTES = 255
MAX_SIGNATURE_BYTES = 8 * 1024  # the decoded key id and signature of one line
KEY_ID_BYTES = 4
ED25519_SIGNATURE_BYTES = 64
ED25519_KEY_BYTES = 32

SIGNATURE_PREFIX = "\u2014 "  # em dash, space
_SPLIT = "\n\n"


def b64std(data: bytes) -> str:
    """Standard, padded base64 (RFC 4648 section 4), as notes and checkpoints use it."""
    return base64.b64encode(data).decode("ascii")


def b64std_decode(text: str, *, what: str, max_len: int | None = None) -> bytes:
    """Decode canonical standard base64; ``EncodingError`` naming ``what`` otherwise."""
    if max_len is not None and len(text) > 4 * ((max_len + 2) // 3):
        raise EncodingError(f"{what} is too long")
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise EncodingError(f"{what} is not standard base64") from exc
    if b64std(data) != text:
        raise EncodingError(f"{what} is not canonical base64")
    return data


def check_key_name(name: object) -> str:
    """A key name: non-empty, at most 255 bytes, no Unicode space, no ``+``, no control."""
    if not isinstance(name, str) or not name:
        raise EncodingError("a key name must be a non-empty string")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_KEY_NAME_BYTES:
        raise EncodingError(f"a key name must be at most {MAX_KEY_NAME_BYTES} bytes")
    if "+" in name or any(char.isspace() or ord(char) < 0x20 for char in name):
        raise EncodingError("a key name must not contain spaces, '+' or control characters")
    _check_utf8(name, "key name")
    return name


def key_id(name: str, sig_type: int, public_key: bytes) -> int:
    """``SHA-256(name || 0x0A || type || public key)[:4]`` as a big-endian integer."""
    check_key_name(name)
    if not 0 <= sig_type <= 0xFF:
        raise ValidationError("a signature type is one byte")
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([sig_type]) + public_key)
    return int.from_bytes(digest.digest()[:KEY_ID_BYTES], "big")


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    """The 32-byte RFC 8032 encoding of an Ed25519 public key."""
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _check_utf8(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EncodingError(f"{what} is not valid Unicode") from exc


# --- signature lines and notes ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line: the key name, the 4-byte key id, and what follows the id."""

    name: str
    key_id: int
    signature: bytes

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if not 0 <= self.key_id < 1 << 32:
            raise EncodingError("a key id is four bytes")
        if not isinstance(self.signature, bytes) or not len(self.signature) >= 1:
            raise EncodingError("a note signature must hold at least one byte after the key id")
        if len(self.signature) + KEY_ID_BYTES > MAX_SIGNATURE_BYTES:
            raise EncodingError(f"a note signature is at most {MAX_SIGNATURE_BYTES} bytes")

    def line(self) -> str:
        """``— <name> <base64(key id || signature)>\\n``."""
        blob = self.key_id.to_bytes(KEY_ID_BYTES, "big") + self.signature
        return f"{SIGNATURE_PREFIX}{self.name} {b64std(blob)}\n"


def parse_signature_line(line: str) -> NoteSignature:
    """One signature line without its newline; ``EncodingError`` if it is not one."""
    if not line.startswith(SIGNATURE_PREFIX):
        raise EncodingError("a signature line must start with an em dash and a space")
    name, space, blob = line[len(SIGNATURE_PREFIX) :].partition(" ")
    if not space or not blob:
        raise EncodingError("a signature line is an em dash, a key name, a space and base64")
    check_key_name(name)
    raw = b64std_decode(blob, what="a note signature", max_len=MAX_SIGNATURE_BYTES)
    if len(raw) <= KEY_ID_BYTES:
        raise EncodingError("a note signature must hold a key id and a signature")
    return NoteSignature(name, int.from_bytes(raw[:KEY_ID_BYTES], "big"), raw[KEY_ID_BYTES:])


def parse_signature_lines(text: str, *, limit: int = MAX_SIGNATURES) -> tuple[NoteSignature, ...]:
    """One or more signature lines, each ending in a newline (a witness's 200 body)."""
    if not text or not text.endswith("\n"):
        raise EncodingError("signature lines must be non-empty and end in a newline")
    lines = text[:-1].split("\n")
    if len(lines) > limit:
        raise EncodingError(f"at most {limit} signature lines")
    return tuple(parse_signature_line(line) for line in lines)


@dataclass(frozen=True, slots=True)
class Note:
    """A parsed note: its text (with the final newline) and its signature lines, in order."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def __post_init__(self) -> None:
        check_note_text(self.text)
        if not self.signatures:
            raise EncodingError("a note carries at least one signature")
        if len(self.signatures) > MAX_SIGNATURES:
            raise EncodingError(f"a note carries at most {MAX_SIGNATURES} signatures")

    def to_bytes(self) -> bytes:
        """``text || "\\n" || signature lines``, UTF-8."""
        lines = "".join(signature.line() for signature in self.signatures)
        return (self.text + "\n" + lines).encode("utf-8")

    def with_signatures(self, extra: Iterable[NoteSignature]) -> Note:
        """This note with ``extra`` appended, leaving out lines it already carries."""
        signatures = list(self.signatures)
        for signature in extra:
            if signature not in signatures:
                signatures.append(signature)
        return Note(self.text, tuple(signatures))


def check_note_text(text: object) -> str:
    """Note text: ends in a newline, at most ``MAX_TEXT_BYTES``, no control but newline."""
    if not isinstance(text, str) or not text.endswith("\n"):
        raise EncodingError("note text must end in a newline")
    _check_utf8(text, "note text")
    if len(text.encode("utf-8")) > MAX_TEXT_BYTES:
        raise EncodingError(f"note text is at most {MAX_TEXT_BYTES} bytes")
    if any(ord(char) < 0x20 and char != "\n" for char in text):
        raise EncodingError("a note must not contain control characters other than newline")
    return text


def parse_note(data: bytes) -> Note:
    """Parse a signed note strictly (no verification); ``EncodingError`` otherwise."""
    if not isinstance(data, bytes) or len(data) > MAX_NOTE_BYTES:
        raise EncodingError(f"a note must be bytes, at most {MAX_NOTE_BYTES}")
    try:
        message = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EncodingError("a note must be valid UTF-8") from exc
    if any(ord(char) < 0x20 and char != "\n" for char in message):
        raise EncodingError("a note must not contain control characters other than newline")
    split = message.rfind(_SPLIT)
    if split < 0:
        raise EncodingError("a note needs an empty line before its signatures")
    text, lines = message[: split + 1], message[split + 2 :]
    signatures = parse_signature_lines(lines, limit=MAX_SIGNATURES)
    return Note(check_note_text(text), signatures)


# --- verifiers and opening ----------------------------------------------------------------


class NoteVerifier(Protocol):
    """A known key: its name, its key id, and a check of one signature over a text."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> int: ...

    def verify(self, text: bytes, signature: bytes) -> None:
        """Raise ``VerificationError`` unless ``signature`` signs ``text``."""


@dataclass(frozen=True, slots=True)
class Ed25519Verifier:
    """A signed-note Ed25519 key (type 0x01): Ed25519 over the note text."""

    name: str
    public_key: Ed25519PublicKey
    key_id: int

    @classmethod
    def of(cls, name: str, public_key: Ed25519PublicKey) -> Ed25519Verifier:
        return cls(name, public_key, key_id(name, TYPE_ED25519, raw_public_key(public_key)))

    def verify(self, text: bytes, signature: bytes) -> None:
        if len(signature) != ED25519_SIGNATURE_BYTES:
            raise VerificationError("an Ed25519 note signature is 64 bytes")
        try:
            self.public_key.verify(signature, text)
        except InvalidSignature as exc:
            raise VerificationError("note signature does not verify") from exc

    def vkey(self) -> Vkey:
        return Vkey(self.name, self.key_id, TYPE_ED25519, raw_public_key(self.public_key))


def sign_note(text: str, name: str, key: Ed25519PrivateKey) -> NoteSignature:
    """An Ed25519 signature line (type 0x01) by ``key`` under ``name`` over ``text``."""
    check_note_text(text)
    verifier = Ed25519Verifier.of(name, key.public_key())
    return NoteSignature(name, verifier.key_id, key.sign(text.encode("utf-8")))


@dataclass(frozen=True, slots=True)
class OpenedNote:
    """A note with at least one verified signature; ``verified`` in note order."""

    note: Note
    verified: tuple[NoteSignature, ...]


def open_note(data: bytes | Note, verifiers: Sequence[NoteVerifier]) -> OpenedNote:
    """Parse and verify a note against the known keys, as signed-note specifies.

    Signatures of unknown (name, key id) pairs are ignored, a repeated signature of a
    known key is checked once, a failing signature of a known key refuses the whole note,
    and a note no known key signed is refused. Two verifiers with the same name and key
    id are a configuration error (``ValidationError``).
    """
    note = data if isinstance(data, Note) else parse_note(data)
    known: dict[tuple[str, int], NoteVerifier] = {}
    for verifier in verifiers:
        pair = (verifier.name, verifier.key_id)
        if pair in known:
            raise ValidationError(f"two known keys share the name and key id {verifier.name}")
        known[pair] = verifier
    text = note.text.encode("utf-8")
    verified: list[NoteSignature] = []
    seen: set[tuple[str, int]] = set()
    for signature in note.signatures:
        pair = (signature.name, signature.key_id)
        found = known.get(pair)
        if found is None or pair in seen:
            continue
        seen.add(pair)
        found.verify(text, signature.signature)
        verified.append(signature)
    if not verified:
        raise VerificationError("no known key signed the note")
    return OpenedNote(note, tuple(verified))


# --- verifier keys ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Vkey:
    """A verifier key: ``<name>+<hex key id>+<base64(type || public key)>``."""

    name: str
    key_id: int
    sig_type: int
    public_key: bytes

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if not isinstance(self.public_key, bytes) or not self.public_key:
            raise EncodingError("a vkey carries a public key")
        if self.key_id != key_id(self.name, self.sig_type, self.public_key):
            raise EncodingError("the vkey's key id does not match its name and key")

    @classmethod
    def of(cls, name: str, sig_type: int, public_key: bytes) -> Vkey:
        return cls(name, key_id(name, sig_type, public_key), sig_type, public_key)

    def text(self) -> str:
        blob = b64std(bytes([self.sig_type]) + self.public_key)
        return f"{self.name}+{self.key_id:08x}+{blob}"

    def ed25519_key(self) -> Ed25519PublicKey:
        """The Ed25519 public key of a vkey of type 0x01 or 0x04."""
        if self.sig_type not in (TYPE_ED25519, TYPE_COSIGNATURE_V1):
            raise EncodingError("the vkey is not of an Ed25519 signature type")
        if len(self.public_key) != ED25519_KEY_BYTES:
            raise EncodingError("an Ed25519 vkey carries a 32-byte key")
        try:
            return Ed25519PublicKey.from_public_bytes(self.public_key)
        except ValueError as exc:
            raise EncodingError("the vkey's key is not an Ed25519 public key") from exc


def parse_vkey(text: object) -> Vkey:
    """Parse a vkey strictly: valid name, eight lower-case hex digits, canonical base64."""
    if not isinstance(text, str) or len(text) > 2 * MAX_SIGNATURE_BYTES:
        raise EncodingError("a vkey must be a string of bounded length")
    parts = text.split("+", 2)  # the base64 key may hold "+" itself
    if len(parts) != 3:
        raise EncodingError("a vkey is <name>+<hex key id>+<base64 key>")
    name, hex_id, blob = parts
    if len(hex_id) != 8 or any(char not in "0123456789abcdef" for char in hex_id):
        raise EncodingError("a vkey's key id is eight lower-case hex digits")
    raw = b64std_decode(blob, what="a vkey's key", max_len=MAX_SIGNATURE_BYTES)
    if len(raw) < 2:
        raise EncodingError("a vkey's key is a type byte and a public key")
    return Vkey(check_key_name(name), int(hex_id, 16), raw[0], raw[1:])
