"""The envelope: routing header in clear, one encrypted body, keys per recipient, a signature.

CONTRACT STUB: signatures and docstrings are fixed; bodies to be written.
See docs/protocol.md section "Envelope" for the bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol.certificate import Certificate
from protocol.keybundle import KeyBundle
from protocol.types import Fingerprint, MessageId, NetworkId, OrgId, Pseudonym

VERSION = 1
KINDS: tuple[str, ...] = ("signal", "referral", "status", "reply")
STATUS_CODES: tuple[str, ...] = ("accepted", "declined", "care_started", "closed")
MAX_RECIPIENTS = 16
MAX_PSEUDONYMS = 32
MAX_BODY_BYTES = 256 * 1024  # ciphertext, nonce and tag included
CONTENT_KEY_BYTES = 32
NONCE_BYTES = 24

Rng = Callable[[int], bytes]


@dataclass(frozen=True, slots=True)
class Header:
    id: MessageId
    network: NetworkId
    sender: OrgId
    recipients: tuple[OrgId, ...]  # sorted, unique, 1..MAX_RECIPIENTS, sender not among them
    kind: str
    pseudonyms: tuple[Pseudonym, ...]  # sorted, unique, 0..MAX_PSEUDONYMS
    status: str | None  # required for kind "status", absent otherwise
    ref: MessageId | None  # the message a status/reply is about; required for those kinds
    created: int
    sender_cert: Fingerprint
    recipient_keys: Mapping[OrgId, Fingerprint]  # exactly the recipients
    v: int = VERSION

    def canonical(self) -> bytes: ...
    def to_wire(self) -> dict[str, Any]: ...
    @classmethod
    def from_wire(cls, data: object) -> Header: ...


@dataclass(frozen=True, slots=True)
class Envelope:
    header: Header
    body: bytes  # nonce (24) || XChaCha20-Poly1305 ciphertext and tag
    keys: Mapping[OrgId, bytes]  # recipient -> HPKE enc || sealed content key
    sig: bytes  # Ed25519 over signed_digest()

    def signed_digest(self) -> bytes: ...
    def to_wire(self) -> dict[str, Any]: ...
    @classmethod
    def from_wire(cls, data: object) -> Envelope: ...
    @property
    def fingerprint(self) -> Fingerprint:
        """SHA-256 of the canonical wire form: what idempotency compares."""
        ...


def new_message_id(rng: Rng) -> MessageId: ...
def seal(
    *,
    message_id: MessageId,
    network: NetworkId,
    sender: Certificate,
    sender_key: Ed25519PrivateKey,
    recipients: Mapping[OrgId, KeyBundle],
    kind: str,
    payload: bytes,
    pseudonyms: tuple[Pseudonym, ...] = (),
    status: str | None = None,
    ref: MessageId | None = None,
    created: int,
    rng: Rng,
) -> Envelope: ...
def verify_signature(envelope: Envelope, sender_public_key: Ed25519PublicKey) -> None:
    """Raise VerificationError unless the sender's signature holds (what the hub checks)."""
def open_envelope(
    envelope: Envelope,
    *,
    recipient: OrgId,
    kem_keys: Mapping[Fingerprint, hpke.MLKEM768X25519PrivateKey],
    sender: Certificate,
) -> bytes:
    """Verify and decrypt; raise OpenError (one message) on any failure.

    ``sender`` is the sender's certificate, already verified against the root
    and CRL by the caller; its fingerprint must equal ``header.sender_cert``.
    ``kem_keys`` maps the recipient's bundle fingerprints to private keys, so
    messages sealed to an older bundle still open while its key is kept.
    """
