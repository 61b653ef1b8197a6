"""What this organisation keeps encrypted at rest in its local state.

Three things are kept in readable form by nobody but the holder of the key directory:
the payloads this organisation sent (it can not open its own envelopes: they are
sealed to the recipients), what waits in its outbox, and the payloads of received
messages whose KEM key was deleted after a key rotation. Each is sealed by one
:class:`PayloadBox` under a *purpose* (``sent``, ``outbox``, ``received``) that is
bound into the ciphertext, so a row copied from one table to another does not open.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import nacl.exceptions
import nacl.secret
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from clients.errors import VerificationFailed
from protocol.encoding import canonical_json, loads_strict
from protocol.envelope import MAX_BODY_BYTES
from protocol.errors import ProtocolError

SENT_PAYLOAD_LABEL = b"schakel/client-sent-payloads/v1"


class PayloadBox:
    """Keeps payloads encrypted at rest, each bound to its message id and kind.

    The key is HKDF-SHA256 (RFC 5869) with input key material the 32-byte Ed25519
    seed of the organisation's signing key, salt ``schakel/client-sent-payloads/v1``
    and info the organisation id, 32 bytes long. Each payload is sealed with pynacl's
    ``SecretBox`` (XSalsa20-Poly1305) under a fresh random 24-byte nonce. What is sealed
    is the canonical JSON ``{"id", "kind", "payload"}``, and opening checks the id and
    kind, so a row copied under another message id does not open as that message. The
    kind of what waits in the outbox is ``outbox/<kind>``, of a received payload kept
    after its key was deleted ``received/<kind>``; a sent payload's is the bare kind.
    Whoever holds the key directory (and its passphrase) can open them; the state file
    alone can not.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) != nacl.secret.SecretBox.KEY_SIZE:
            raise ValueError("a PayloadBox key is 32 bytes")
        self._box = nacl.secret.SecretBox(key)

    def __repr__(self) -> str:
        return "PayloadBox(...)"

    @classmethod
    def for_signing_key(cls, key: Ed25519PrivateKey, org: str) -> PayloadBox:
        seed = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=SENT_PAYLOAD_LABEL, info=org.encode()
        ).derive(seed)
        return cls(derived)

    def seal(
        self, message_id: str, kind: str, payload: Any, rng: Callable[[int], bytes] = os.urandom
    ) -> bytes:
        plaintext = canonical_json({"id": message_id, "kind": kind, "payload": payload})
        nonce = rng(nacl.secret.SecretBox.NONCE_SIZE)
        return bytes(self._box.encrypt(plaintext, nonce))

    def open(self, message_id: str, kind: str, sealed: bytes) -> Any:
        """The payload; VerificationFailed if it was altered, moved or sealed by another key."""
        what = f"stored {kind.partition('/')[0] if '/' in kind else 'sent'} payload"
        try:
            doc = loads_strict(self._box.decrypt(sealed), max_bytes=4 * MAX_BODY_BYTES)
        except (nacl.exceptions.CryptoError, ProtocolError, TypeError, ValueError):
            raise VerificationFailed(what) from None
        if not isinstance(doc, dict) or (doc.get("id"), doc.get("kind")) != (message_id, kind):
            raise VerificationFailed(what, reason="kept under another id")
        return doc.get("payload")

    def open_object(self, message_id: str, kind: str, sealed: bytes) -> dict[str, Any]:
        """:meth:`open` for a payload that must be a JSON object."""
        payload = self.open(message_id, kind, sealed)
        if not isinstance(payload, dict):
            raise VerificationFailed("stored payload", reason="not an object")
        return payload
