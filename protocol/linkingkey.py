"""The linking key, sealed by the network authority to one organisation.

Wire form::

    {"v": 1, "network": ..., "org": ..., "version": int, "bundle": fingerprint,
     "enc": b64url(HPKE enc || ciphertext of the 32-byte key), "sig": b64url}

HPKE base mode to the organisation's bundle key with
``info = frame("schakel/linking-key-wrap/v1", network, org, version)``; the
root key signs ``frame("schakel/linking-key/v1", canonical_json(all but sig))``
so the hub, which relays the blob, can neither read nor substitute it.

In ``info`` the network and org are their ASCII bytes and the version is 4
bytes big-endian; versions run from 1 to 2**31 - 1, as ``LinkingKey`` allows. ``enc`` is always
1168 bytes: the 1120-byte ML-KEM-768 + X25519 encapsulation, then the 32-byte
key and its 16-byte ChaCha20-Poly1305 tag.

The caller of ``seal_linking_key`` (the authority's tooling) must have
verified ``bundle`` against the organisation's certificate first. Note that
HPKE draws its ephemeral key from OpenSSL's random source, which
``cryptography`` does not let a caller inject.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.certificate import RootCertificate
from protocol.encoding import b64d, b64e, canonical_json, frame
from protocol.errors import EncodingError, ProtocolError, ValidationError, VerificationError
from protocol.keybundle import SUITE, KeyBundle
from protocol.pseudonym import LINKING_KEY_BYTES, MAX_KEY_VERSION, LinkingKey
from protocol.types import (
    Fingerprint,
    NetworkId,
    OrgId,
    parse_fingerprint,
    parse_network_id,
    parse_org_id,
)

SEALED_VERSION = 1
SIGNATURE_LABEL = "schakel/linking-key/v1"
WRAP_LABEL = "schakel/linking-key-wrap/v1"
SIGNATURE_BYTES = 64
# ML-KEM-768 ciphertext (1088) + X25519 ephemeral key (32), then key + tag.
ENC_BYTES = 1088 + 32 + LINKING_KEY_BYTES + 16
_WIRE_KEYS = frozenset({"v", "network", "org", "version", "bundle", "enc", "sig"})
_OPEN_FAILED = "linking key could not be verified or opened"


@dataclass(frozen=True, slots=True)
class SealedLinkingKey:
    network: NetworkId
    org: OrgId
    version: int
    bundle: Fingerprint
    enc: bytes
    sig: bytes

    def __post_init__(self) -> None:
        parse_network_id(self.network)
        parse_org_id(self.org)
        parse_fingerprint(self.bundle)
        _check_version(self.version)
        if not isinstance(self.enc, bytes) or len(self.enc) != ENC_BYTES:
            raise ValidationError(f"sealed linking key enc must be {ENC_BYTES} bytes")
        if not isinstance(self.sig, bytes) or len(self.sig) != SIGNATURE_BYTES:
            raise ValidationError("sealed linking key signature must be 64 bytes")

    def signed_bytes(self) -> bytes:
        """What the root signs: every wire field but ``sig``, framed."""
        return _signed_bytes(self.network, self.org, self.version, self.bundle, self.enc)

    def to_wire(self) -> dict[str, Any]:
        wire = _unsigned_wire(self.network, self.org, self.version, self.bundle, self.enc)
        wire["sig"] = b64e(self.sig)
        return wire

    @classmethod
    def from_wire(cls, data: object) -> SealedLinkingKey:
        """Parse the wire form: ``EncodingError`` for a wrong shape, ``ValidationError`` else."""
        if not isinstance(data, dict) or set(data) != _WIRE_KEYS:
            raise EncodingError("sealed linking key must be an object with exactly its fields")
        version = data["v"]
        if isinstance(version, bool) or not isinstance(version, int) or version != SEALED_VERSION:
            raise ValidationError("unsupported sealed linking key version")
        if isinstance(data["version"], bool) or not isinstance(data["version"], int):
            raise EncodingError("sealed linking key version must be an integer")
        return cls(
            network=parse_network_id(data["network"]),
            org=parse_org_id(data["org"]),
            version=data["version"],
            bundle=parse_fingerprint(data["bundle"]),
            enc=b64d(data["enc"], max_len=ENC_BYTES),
            sig=b64d(data["sig"], max_len=SIGNATURE_BYTES),
        )


def _check_version(version: object) -> None:
    if (
        isinstance(version, bool)
        or not isinstance(version, int)
        or not 1 <= version <= MAX_KEY_VERSION
    ):
        raise ValidationError(f"linking key version must be an integer in 1..{MAX_KEY_VERSION}")


def _unsigned_wire(network: str, org: str, version: int, bundle: str, enc: bytes) -> dict[str, Any]:
    return {
        "v": SEALED_VERSION,
        "network": network,
        "org": org,
        "version": version,
        "bundle": bundle,
        "enc": b64e(enc),
    }


def _signed_bytes(network: str, org: str, version: int, bundle: str, enc: bytes) -> bytes:
    wire = _unsigned_wire(network, org, version, bundle, enc)
    return frame(SIGNATURE_LABEL, canonical_json(wire))


def wrap_info(network: str, org: str, version: int) -> bytes:
    """The HPKE ``info`` binding the sealed key to its network, organisation and version."""
    _check_version(version)
    return frame(
        WRAP_LABEL, network.encode("ascii"), org.encode("ascii"), version.to_bytes(4, "big")
    )


def seal_linking_key(
    key: LinkingKey, bundle: KeyBundle, *, root_key: Ed25519PrivateKey, network: NetworkId
) -> SealedLinkingKey:
    """Seal ``key`` to ``bundle``'s KEM key and sign the result with the root key.

    ``bundle`` must already be verified against its organisation's certificate.
    """
    if bundle.network != network:
        raise ValidationError("key bundle belongs to another network")
    info = wrap_info(network, bundle.org, key.version)
    enc = SUITE.encrypt(key.key, bundle.hpke_public_key(), info=info)
    message = _signed_bytes(network, bundle.org, key.version, bundle.fingerprint, enc)
    return SealedLinkingKey(
        network=network,
        org=bundle.org,
        version=key.version,
        bundle=bundle.fingerprint,
        enc=enc,
        sig=root_key.sign(message),
    )


def verify_sealed_linking_key(sealed: SealedLinkingKey, root: RootCertificate) -> None:
    """Raise ``VerificationError`` unless ``root`` signed ``sealed`` for its own network."""
    if sealed.network != root.network:
        raise VerificationError("sealed linking key is for another network than the root")
    try:
        root.public_key.verify(sealed.sig, sealed.signed_bytes())
    except InvalidSignature as exc:
        raise VerificationError("sealed linking key signature does not verify") from exc


def open_linking_key(
    sealed: SealedLinkingKey,
    root: RootCertificate,
    kem_keys: Mapping[Fingerprint, hpke.MLKEM768X25519PrivateKey],
) -> LinkingKey:
    """Verify ``sealed`` and decrypt it with the private key of the bundle it names.

    ``kem_keys`` maps bundle fingerprints to the organisation's KEM private keys.
    Every failure raises the same ``VerificationError``.
    """
    try:
        verify_sealed_linking_key(sealed, root)
        private_key = kem_keys[sealed.bundle]
        info = wrap_info(sealed.network, sealed.org, sealed.version)
        plaintext = SUITE.decrypt(sealed.enc, private_key, info=info)
        if len(plaintext) != LINKING_KEY_BYTES:
            raise VerificationError(_OPEN_FAILED)
        return LinkingKey(version=sealed.version, key=plaintext)
    except (ProtocolError, KeyError, InvalidTag, ValueError) as exc:
        raise VerificationError(_OPEN_FAILED) from exc
