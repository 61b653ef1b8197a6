"""The linking key, sealed by the network authority to one organisation.

CONTRACT STUB: signatures and docstrings are fixed; bodies to be written.

Wire form::

    {"v": 1, "network": ..., "org": ..., "version": int, "bundle": fingerprint,
     "enc": b64url(HPKE enc || ciphertext of the 32-byte key), "sig": b64url}

HPKE base mode to the organisation's bundle key with
``info = frame("schakel/linking-key-wrap/v1", network, org, version)``; the
root key signs ``frame("schakel/linking-key/v1", canonical_json(all but sig))``
so the hub, which relays the blob, can neither read nor substitute it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.certificate import RootCertificate
from protocol.keybundle import KeyBundle
from protocol.pseudonym import LinkingKey
from protocol.types import Fingerprint, NetworkId, OrgId


@dataclass(frozen=True, slots=True)
class SealedLinkingKey:
    network: NetworkId
    org: OrgId
    version: int
    bundle: Fingerprint
    enc: bytes
    sig: bytes

    def to_wire(self) -> dict[str, Any]: ...
    @classmethod
    def from_wire(cls, data: object) -> SealedLinkingKey: ...


def seal_linking_key(
    key: LinkingKey, bundle: KeyBundle, *, root_key: Ed25519PrivateKey, network: NetworkId
) -> SealedLinkingKey: ...
def verify_sealed_linking_key(sealed: SealedLinkingKey, root: RootCertificate) -> None: ...
def open_linking_key(
    sealed: SealedLinkingKey,
    root: RootCertificate,
    kem_keys: Mapping[Fingerprint, hpke.MLKEM768X25519PrivateKey],
) -> LinkingKey: ...
