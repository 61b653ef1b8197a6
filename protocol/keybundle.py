"""Encryption key bundles: an organisation's current KEM public key, signed.

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

A ``KeyBundle`` validates its fields when it is constructed (``ValidationError``),
so one that exists is well formed; ``verify_bundle`` then checks who signed it
and when it is valid. ``from_wire`` raises ``EncodingError`` for a value of the
wrong shape or type, ``ValidationError`` for a well-typed value that breaks a rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.certificate import Certificate
from protocol.encoding import MAX_SAFE_INT, b64d, b64e, canonical_json, fingerprint, frame
from protocol.errors import EncodingError, ValidationError, VerificationError
from protocol.types import (
    Fingerprint,
    NetworkId,
    OrgId,
    parse_fingerprint,
    parse_network_id,
    parse_org_id,
)

KEM_NAME = "MLKEM768-X25519"
KEM_PUBLIC_KEY_BYTES = 1184 + 32
KEM_SEED_BYTES = 64 + 32
SUITE = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)

BUNDLE_VERSION = 1
SIGNATURE_LABEL = "schakel/key-bundle/v1"
SIGNATURE_BYTES = 64
_MLKEM_PUBLIC_BYTES = 1184
_MLKEM_SEED_BYTES = 64
_WIRE_KEYS = frozenset(
    {"v", "network", "org", "kem", "public_key", "not_before", "not_after", "cert", "sig"}
)
# A fixed scalar, used only to detect low-order X25519 points: any clamped
# scalar maps them to the all-zero shared secret, which OpenSSL refuses.
_PROBE = x25519.X25519PrivateKey.from_private_bytes(bytes(range(1, 33)))


@dataclass(frozen=True, slots=True)
class KeyBundle:
    network: NetworkId
    org: OrgId
    public_key: bytes
    not_before: int
    not_after: int
    cert: Fingerprint
    sig: bytes
    # Worked out once, when the bundle is made: the loaded key and the fingerprint, which
    # every seal to this bundle needs (not fields of the bundle: no part of equality).
    _hpke_key: hpke.MLKEM768X25519PublicKey = field(init=False, repr=False, compare=False)
    _fingerprint: Fingerprint = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parse_network_id(self.network)
        parse_org_id(self.org)
        parse_fingerprint(self.cert)
        _check_time(self.not_before, "not_before")
        _check_time(self.not_after, "not_after")
        if self.not_before >= self.not_after:
            raise ValidationError("key bundle not_before must be before not_after")
        if not isinstance(self.sig, bytes) or len(self.sig) != SIGNATURE_BYTES:
            raise ValidationError("key bundle signature must be 64 bytes")
        object.__setattr__(self, "_hpke_key", _load_public_key(self.public_key))
        wire = canonical_json(self.to_wire())
        object.__setattr__(self, "_fingerprint", Fingerprint(fingerprint(wire)))

    def __reduce__(self) -> tuple[type[KeyBundle], tuple[Any, ...]]:
        """Copied and pickled by its fields, made (and checked) again: the loaded key is
        worked out anew, never copied."""
        fields = (self.network, self.org, self.public_key, self.not_before, self.not_after)
        return (KeyBundle, (*fields, self.cert, self.sig))

    @property
    def fingerprint(self) -> Fingerprint:
        """SHA-256 of the canonical JSON of the whole wire object, base64url."""
        return self._fingerprint

    def signed_bytes(self) -> bytes:
        """The bytes the organisation key signs: every field but ``sig``, framed."""
        return _signed_bytes(
            self.network, self.org, self.public_key, self.not_before, self.not_after, self.cert
        )

    def to_wire(self) -> dict[str, Any]:
        wire = _unsigned_wire(
            self.network, self.org, self.public_key, self.not_before, self.not_after, self.cert
        )
        wire["sig"] = b64e(self.sig)
        return wire

    @classmethod
    def from_wire(cls, data: object) -> KeyBundle:
        if not isinstance(data, dict) or set(data) != _WIRE_KEYS:
            raise EncodingError("key bundle must be an object with exactly the bundle fields")
        if not _is_int(data["v"]) or data["v"] != BUNDLE_VERSION:
            raise ValidationError("unsupported key bundle version")
        if data["kem"] != KEM_NAME:
            raise ValidationError(f"key bundle KEM must be {KEM_NAME}")
        for name in ("not_before", "not_after"):
            if not _is_int(data[name]):
                raise EncodingError(f"key bundle {name} must be an integer")
        return cls(
            network=parse_network_id(data["network"]),
            org=parse_org_id(data["org"]),
            public_key=b64d(data["public_key"], max_len=KEM_PUBLIC_KEY_BYTES),
            not_before=data["not_before"],
            not_after=data["not_after"],
            cert=parse_fingerprint(data["cert"]),
            sig=b64d(data["sig"], max_len=SIGNATURE_BYTES),
        )

    def hpke_public_key(self) -> hpke.MLKEM768X25519PublicKey:
        """The key to seal to with ``SUITE`` (loaded and checked when the bundle was made)."""
        return self._hpke_key


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_time(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SAFE_INT:
        raise ValidationError(f"key bundle {name} must be an integer in 0..2**53-1")


def _load_public_key(public_key: object) -> hpke.MLKEM768X25519PublicKey:
    if not isinstance(public_key, bytes) or len(public_key) != KEM_PUBLIC_KEY_BYTES:
        raise ValidationError(f"KEM public key must be {KEM_PUBLIC_KEY_BYTES} bytes")
    try:
        mlkem_key = mlkem.MLKEM768PublicKey.from_public_bytes(public_key[:_MLKEM_PUBLIC_BYTES])
        x25519_key = x25519.X25519PublicKey.from_public_bytes(public_key[_MLKEM_PUBLIC_BYTES:])
        _PROBE.exchange(x25519_key)
    except ValueError as exc:
        raise ValidationError("KEM public key is not a valid ML-KEM-768 + X25519 key") from exc
    return hpke.MLKEM768X25519PublicKey(mlkem_key, x25519_key)


def _unsigned_wire(
    network: str, org: str, public_key: bytes, not_before: int, not_after: int, cert: str
) -> dict[str, Any]:
    return {
        "v": BUNDLE_VERSION,
        "network": network,
        "org": org,
        "kem": KEM_NAME,
        "public_key": b64e(public_key),
        "not_before": not_before,
        "not_after": not_after,
        "cert": cert,
    }


def _signed_bytes(
    network: str, org: str, public_key: bytes, not_before: int, not_after: int, cert: str
) -> bytes:
    wire = _unsigned_wire(network, org, public_key, not_before, not_after, cert)
    return frame(SIGNATURE_LABEL, canonical_json(wire))


def _split_seed(seed: bytes) -> tuple[mlkem.MLKEM768PrivateKey, x25519.X25519PrivateKey]:
    if not isinstance(seed, bytes) or len(seed) != KEM_SEED_BYTES:
        raise ValidationError(f"KEM private key seed must be {KEM_SEED_BYTES} bytes")
    try:
        mlkem_key = mlkem.MLKEM768PrivateKey.from_seed_bytes(seed[:_MLKEM_SEED_BYTES])
        x25519_key = x25519.X25519PrivateKey.from_private_bytes(seed[_MLKEM_SEED_BYTES:])
    except ValueError as exc:
        raise ValidationError("KEM private key seed is not usable") from exc
    return mlkem_key, x25519_key


def kem_private_key(seed: bytes) -> hpke.MLKEM768X25519PrivateKey:
    """The hybrid private key for a 96-byte seed (64-byte ML-KEM seed, X25519 key)."""
    return hpke.MLKEM768X25519PrivateKey(*_split_seed(seed))


def kem_public_bytes(seed: bytes) -> bytes:
    """The 1216-byte wire public key for a 96-byte seed."""
    mlkem_key, x25519_key = _split_seed(seed)
    return mlkem_key.public_key().public_bytes_raw() + x25519_key.public_key().public_bytes_raw()


def sign_bundle(
    key: Ed25519PrivateKey,
    cert: Certificate,
    kem_public: bytes,
    *,
    not_before: int,
    not_after: int,
) -> KeyBundle:
    """Sign ``kem_public`` for ``[not_before, not_after)`` with the key of ``cert``.

    Raises ``ValidationError`` if ``key`` is not the key ``cert`` certifies, or
    if a field breaks a rule.
    """
    if key.public_key() != cert.public_key:
        raise ValidationError("signing key does not match the organisation certificate")
    _load_public_key(kem_public)
    _check_time(not_before, "not_before")
    _check_time(not_after, "not_after")
    message = _signed_bytes(
        cert.network, cert.org, kem_public, not_before, not_after, cert.fingerprint
    )
    return KeyBundle(
        network=cert.network,
        org=cert.org,
        public_key=kem_public,
        not_before=not_before,
        not_after=not_after,
        cert=cert.fingerprint,
        sig=key.sign(message),
    )


def verify_bundle(bundle: KeyBundle, cert: Certificate, *, now: int) -> None:
    """Raise VerificationError unless ``cert`` signed ``bundle`` and it is valid at ``now``.

    ``cert`` must already be verified against the root (and the CRL) by the caller;
    its org, network and fingerprint must match the bundle's.
    """
    if bundle.network != cert.network or bundle.org != cert.org:
        raise VerificationError("key bundle belongs to another organisation than the certificate")
    if bundle.cert != cert.fingerprint:
        raise VerificationError("key bundle names another certificate than the one given")
    try:
        cert.public_key.verify(bundle.sig, bundle.signed_bytes())
    except InvalidSignature as exc:
        raise VerificationError("key bundle signature does not verify") from exc
    if not bundle.not_before <= now < bundle.not_after:
        raise VerificationError("key bundle is not valid at this time")
