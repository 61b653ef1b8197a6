"""Checkpoints and cosignatures: the access log's tree head in C2SP's formats.

* A **checkpoint** (C2SP tlog-checkpoint v1.0.0) is a signed note whose text is::

      <origin>\\n<tree size in decimal>\\n<base64 root hash>\\n[<extension line>\\n]...

* A **cosignature** (C2SP tlog-cosignature v1.0.1, Ed25519 ``cosignature/v1``, signature
  type 0x04) is a note signature line whose signature is ``u64 timestamp || Ed25519(key,
  "cosignature/v1\\ntime <timestamp>\\n" || checkpoint text)``: "as of that time, this is
  the largest consistent tree head I have seen for this origin".

**Schakel's log as a checkpoint.** The origin of a network's access log is
:func:`log_origin` = ``schakel.invalid/<network>/<root key fingerprint>`` (the reserved
``.invalid`` name says it is an identifier, not an address; the SHA-256 fingerprint of the
root's raw public key, unpadded base64url, makes it unique across networks that share a
name and stable across re-issues of the root certificate). The checkpoint of a signed
tree head carries the head's size and root and no extension line. It is signed by the
hub's certified log-signing key itself (the key of the certificate with role ``hub``), as
an Ed25519 note signature (type 0x01) under the key name = origin. That key's other
signatures are all over a Schakel frame (an ASCII label and a 0x00 byte) or DER, and a
note text holds no byte below 0x20 but the newline, so no signature of one kind can be
taken for the other.

Errors: ``EncodingError`` for text that is not a checkpoint; ``ValidationError`` for bad
arguments (a certificate without the hub role, a key that is not the certificate's);
``VerificationError`` for signatures that fail or a checkpoint of another origin.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol import merkle
from protocol.certificate import ROLE_HUB, Certificate, RootCertificate
from protocol.encoding import fingerprint
from protocol.errors import EncodingError, ValidationError, VerificationError
from protocol.note import (
    ED25519_SIGNATURE_BYTES,
    TYPE_COSIGNATURE_V1,
    Ed25519Verifier,
    Note,
    NoteSignature,
    NoteVerifier,
    OpenedNote,
    Vkey,
    b64std,
    b64std_decode,
    check_key_name,
    check_note_text,
    key_id,
    open_note,
    parse_note,
    raw_public_key,
    sign_note,
)
from protocol.types import Fingerprint

ORIGIN_HOST = "schakel.invalid"
MAX_CHECKPOINT_SIZE = 2**63 - 1  # u64 on the wire; a signed 64-bit column in a database
MAX_EXTENSION_LINES = 16
MAX_ORIGIN_BYTES = 255
COSIGNATURE_HEADER = "cosignature/v1"
MAX_TIMESTAMP = 2**63 - 1
COSIGNATURE_BYTES = 8 + ED25519_SIGNATURE_BYTES
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")


def public_key_fingerprint(key: Ed25519PublicKey) -> Fingerprint:
    """SHA-256 of the raw 32-byte Ed25519 public key, unpadded base64url (43 characters)."""
    return Fingerprint(fingerprint(raw_public_key(key)))


def log_origin(root: RootCertificate) -> str:
    """The checkpoint origin of the access log of the network ``root`` anchors."""
    return f"{ORIGIN_HOST}/{root.network}/{public_key_fingerprint(root.public_key)}"


def parse_decimal(text: str, what: str, maximum: int = MAX_CHECKPOINT_SIZE) -> int:
    """ASCII decimal without leading zeros (``0`` for zero), at most ``maximum``."""
    if not _DECIMAL.fullmatch(text) or int(text) > maximum:
        raise EncodingError(f"{what} must be a decimal number without leading zeros")
    return int(text)


# --- checkpoints --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A checkpoint's text: origin, tree size, root hash and opaque extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_origin(self.origin)
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise EncodingError("a checkpoint's size is an integer")
        if not 0 <= self.size <= MAX_CHECKPOINT_SIZE:
            raise EncodingError(f"a checkpoint's size is in 0..{MAX_CHECKPOINT_SIZE}")
        if not isinstance(self.root, bytes) or len(self.root) != merkle.HASH_BYTES:
            raise EncodingError(f"a checkpoint's root hash is {merkle.HASH_BYTES} bytes")
        if len(self.extensions) > MAX_EXTENSION_LINES:
            raise EncodingError(f"a checkpoint has at most {MAX_EXTENSION_LINES} extension lines")
        for line in self.extensions:
            if not isinstance(line, str) or not line or "\n" in line:
                raise EncodingError("an extension line is a non-empty line")
        check_note_text(self.text())

    def text(self) -> str:
        """The note text: every line ending in a newline."""
        lines = [self.origin, str(self.size), b64std(self.root), *self.extensions]
        return "".join(line + "\n" for line in lines)


def check_origin(origin: object) -> str:
    """An origin line: non-empty, at most 255 bytes, no control character."""
    if not isinstance(origin, str) or not origin:
        raise EncodingError("a checkpoint's origin is a non-empty line")
    if len(origin.encode("utf-8", "surrogatepass")) > MAX_ORIGIN_BYTES:
        raise EncodingError(f"a checkpoint's origin is at most {MAX_ORIGIN_BYTES} bytes")
    if any(ord(char) < 0x20 for char in origin):
        raise EncodingError("a checkpoint's origin must not contain control characters")
    return origin


def parse_checkpoint(text: str) -> Checkpoint:
    """The checkpoint in a note text; ``EncodingError`` if the text is not one."""
    check_note_text(text)
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise EncodingError("a checkpoint has an origin, a size and a root hash line")
    if any(not line for line in lines):
        raise EncodingError("a checkpoint's lines must be non-empty")
    origin, size, root, *extensions = lines
    return Checkpoint(
        origin=origin,
        size=parse_decimal(size, "a checkpoint's size"),
        root=b64std_decode(root, what="a checkpoint's root hash", max_len=merkle.HASH_BYTES),
        extensions=tuple(extensions),
    )


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """A checkpoint whose note a trusted log key signed (``log`` its verified signatures)."""

    checkpoint: Checkpoint
    note: Note
    log: tuple[NoteSignature, ...]

    def to_bytes(self) -> bytes:
        return self.note.to_bytes()


def log_verifier(origin: str, hub_cert: Certificate) -> Ed25519Verifier:
    """The note verifier of a hub certificate's key for the log ``origin``.

    The caller has verified the certificate against the root (and the CRL) at the
    time that matters to it; here only its role is checked.
    """
    if ROLE_HUB not in hub_cert.roles:
        raise ValidationError("checkpoints are signed with a certificate holding the hub role")
    return Ed25519Verifier.of(origin, hub_cert.public_key)


def sign_checkpoint(
    key: Ed25519PrivateKey,
    hub_cert: Certificate,
    root: RootCertificate,
    *,
    size: int,
    root_hash: bytes,
) -> SignedCheckpoint:
    """The hub's checkpoint of its log at ``(size, root_hash)``, signed with its log key."""
    if key.public_key() != hub_cert.public_key:
        raise ValidationError("signing key is not the key of the hub certificate")
    if hub_cert.network != root.network:
        raise ValidationError("the hub certificate is for another network than the root")
    checkpoint = Checkpoint(log_origin(root), size, root_hash)
    log_verifier(checkpoint.origin, hub_cert)
    signature = sign_note(checkpoint.text(), checkpoint.origin, key)
    return SignedCheckpoint(checkpoint, Note(checkpoint.text(), (signature,)), (signature,))


def open_checkpoint(
    data: bytes | Note, verifiers: Sequence[NoteVerifier], *, origin: str
) -> SignedCheckpoint:
    """Parse a checkpoint note of log ``origin`` and verify it against the log's keys.

    ``verifiers`` are the log keys trusted for ``origin`` (every one named ``origin``).
    Cosignatures and other unknown lines are kept in the note and not checked here.
    """
    if any(verifier.name != origin for verifier in verifiers):
        raise ValidationError("every log key is named after the log's origin")
    note = data if isinstance(data, Note) else parse_note(data)
    checkpoint = parse_checkpoint(note.text)
    if checkpoint.origin != origin:
        raise VerificationError("the checkpoint is for another log")
    opened: OpenedNote = open_note(note, verifiers)
    return SignedCheckpoint(checkpoint, note, opened.verified)


def checkpoint_origin(data: bytes) -> str:
    """The origin line of a checkpoint note, read before anything is verified.

    For routing only (which keys to verify with): the note is parsed strictly.
    """
    return parse_checkpoint(parse_note(data).text).origin


# --- cosignatures -------------------------------------------------------------------------


def cosignature_message(checkpoint: Checkpoint, timestamp: int) -> bytes:
    """``"cosignature/v1\\ntime <timestamp>\\n" || checkpoint text``, UTF-8."""
    _check_timestamp(timestamp)
    return f"{COSIGNATURE_HEADER}\ntime {timestamp}\n{checkpoint.text()}".encode()


def _check_timestamp(timestamp: object) -> int:
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise ValidationError("a cosignature timestamp is an integer")
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise ValidationError(f"a cosignature timestamp is in 0..{MAX_TIMESTAMP}")
    return timestamp


def cosignature_key_id(name: str, public_key: Ed25519PublicKey) -> int:
    """``SHA-256(name || 0x0A || 0x04 || public key)[:4]``."""
    return key_id(name, TYPE_COSIGNATURE_V1, raw_public_key(public_key))


def cosign(
    key: Ed25519PrivateKey, name: str, checkpoint: Checkpoint, *, timestamp: int
) -> NoteSignature:
    """A cosignature/v1 line by ``key`` under ``name`` on ``checkpoint`` at ``timestamp``."""
    check_key_name(name)
    signature = key.sign(cosignature_message(checkpoint, timestamp))
    return NoteSignature(
        name,
        cosignature_key_id(name, key.public_key()),
        timestamp.to_bytes(8, "big") + signature,
    )


def cosignature_time(signature: NoteSignature) -> int:
    """The timestamp of a cosignature/v1 line (``EncodingError`` if it is not one)."""
    if len(signature.signature) != COSIGNATURE_BYTES:
        raise EncodingError(f"a cosignature/v1 signature is {COSIGNATURE_BYTES} bytes")
    timestamp = int.from_bytes(signature.signature[:8], "big")
    if timestamp > MAX_TIMESTAMP:
        raise EncodingError(f"a cosignature timestamp is at most {MAX_TIMESTAMP}")
    return timestamp


@dataclass(frozen=True, slots=True)
class CosignatureVerifier:
    """A cosigner's key (type 0x04), checking cosignature/v1 over a checkpoint note text."""

    name: str
    public_key: Ed25519PublicKey
    key_id: int

    @classmethod
    def of(cls, name: str, public_key: Ed25519PublicKey) -> CosignatureVerifier:
        return cls(name, public_key, cosignature_key_id(name, public_key))

    def verify(self, text: bytes, signature: bytes) -> None:
        if len(signature) != COSIGNATURE_BYTES:
            raise VerificationError(f"a cosignature/v1 signature is {COSIGNATURE_BYTES} bytes")
        timestamp = int.from_bytes(signature[:8], "big")
        if timestamp > MAX_TIMESTAMP:
            raise VerificationError("a cosignature timestamp is above 2^63 - 1")
        header = f"{COSIGNATURE_HEADER}\ntime {timestamp}\n".encode()
        try:
            self.public_key.verify(signature[8:], header + text)
        except InvalidSignature as exc:
            raise VerificationError("cosignature does not verify") from exc

    def vkey(self) -> Vkey:
        return Vkey(self.name, self.key_id, TYPE_COSIGNATURE_V1, raw_public_key(self.public_key))
