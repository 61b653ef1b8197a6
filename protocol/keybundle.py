"""Encryption key bundles: an organisation's current KEM public key, signed.

CONTRACT STUB: signatures and docstrings are fixed; bodies to be written.

The KEM is the HPKE hybrid ML-KEM-768 + X25519 (suite ML-KEM-768-X25519 /
HKDF-SHA256 / ChaCha20-Poly1305). A public key on the wire is the 1184-byte
ML-KEM-768 encapsulation key followed by the 32-byte X25519 key (1216 bytes).
A private key is its 96-byte seed: the 64-byte ML-KEM seed followed by the
32-byte X25519 private key; ``kem_private_key`` turns a seed into a key, so
the caller (``keys``) supplies the randomness.

Wire form (JSON object)::

    {"v": 1, "network": ..., "org": ..., "kem": "MLKEM768-X25519",
     "public_key": b64url(1216 bytes), "not_before": int, "not_after": int,
     "cert": fingerprint of the signing organisation certificate,
     "sig": b64url(Ed25519 signature)}

The signature is over ``frame("schakel/key-bundle/v1", canonical_json(all
fields but "sig"))``. The bundle's fingerprint is SHA-256 over the canonical
JSON of the whole wire object (including ``sig``), base64url.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.certificate import Certificate
from protocol.types import Fingerprint, NetworkId, OrgId

KEM_NAME = "MLKEM768-X25519"
KEM_PUBLIC_KEY_BYTES = 1184 + 32
KEM_SEED_BYTES = 64 + 32
SUITE = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)


@dataclass(frozen=True, slots=True)
class KeyBundle:
    network: NetworkId
    org: OrgId
    public_key: bytes
    not_before: int
    not_after: int
    cert: Fingerprint
    sig: bytes

    @property
    def fingerprint(self) -> Fingerprint: ...
    def signed_bytes(self) -> bytes: ...
    def to_wire(self) -> dict[str, Any]: ...
    @classmethod
    def from_wire(cls, data: object) -> KeyBundle: ...
    def hpke_public_key(self) -> hpke.MLKEM768X25519PublicKey: ...


def kem_private_key(seed: bytes) -> hpke.MLKEM768X25519PrivateKey: ...
def kem_public_bytes(seed: bytes) -> bytes: ...
def sign_bundle(
    key: Ed25519PrivateKey,
    cert: Certificate,
    kem_public: bytes,
    *,
    not_before: int,
    not_after: int,
) -> KeyBundle: ...
def verify_bundle(bundle: KeyBundle, cert: Certificate, *, now: int) -> None:
    """Raise VerificationError unless ``cert`` signed ``bundle`` and it is valid at ``now``.

    ``cert`` must already be verified against the root (and the CRL) by the caller;
    its org, network and fingerprint must match the bundle's.
    """
