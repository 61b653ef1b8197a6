"""The hub's keys: log-signing key, its certificate, the pinned root, the token key.

One directory (mode 0700)::

    signing.key               the Ed25519 log-signing seed, encrypted (kind ed25519)
    request.pem               the enrolment request (organisation id ``hub``)
    root.pem                  the pinned network root
    certificate.pem           the hub certificate (role ``hub`` only), once issued
    token.key                 the ES256 token-signing key as PKCS#8 PEM, encrypted
                              (kind token-es256)
    state.json                as for an organisation, authenticated the same way

The hub never holds a KEM key or a linking key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from keys.errors import KeyStoreError
from keys.keyfile import KIND_TOKEN_ES256, KdfParams, Rng
from keys.organisation import PartyKeys
from protocol.certificate import ROLE_HUB
from protocol.types import NetworkId, OrgId

HUB_ORG = OrgId("hub")


def _new_token_key_pem() -> bytes:
    # cryptography draws the randomness for EC keys from the operating system.
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class HubKeys(PartyKeys):
    """The hub's key directory."""

    STATE_FORMAT: ClassVar[str] = "schakel-hub"
    __slots__ = ()

    @classmethod
    def create(
        cls,
        directory: Path | str,
        network: NetworkId,
        passphrase: bytes,
        params: KdfParams,
        *,
        rng: Rng = os.urandom,
        allow_weak: bool = False,
    ) -> HubKeys:
        """Generate the log-signing key, its enrolment request and the token key."""
        keys = cls._create(
            directory,
            network,
            HUB_ORG,
            passphrase,
            params,
            rng=rng,
            allow_weak=allow_weak,
            extra={},
        )
        keys._write_secret("token.key", KIND_TOKEN_ES256, _new_token_key_pem(), rng)
        return keys

    def _check_roles(self, roles: frozenset[str]) -> None:
        if roles != {ROLE_HUB}:
            raise KeyStoreError("the hub certificate must carry the single role 'hub'")

    @property
    def token_key_pem(self) -> bytes:
        """The ES256 token-signing key as unencrypted PKCS#8 PEM (keep it in memory only)."""
        if "token" not in self._cache:
            self._cache["token"] = self._read_secret("token.key", KIND_TOKEN_ES256)
        pem: bytes = self._cache["token"]
        return pem
