"""Access tokens: the only module that imports python-jose.

CONTRACT STUB: signatures and docstrings are fixed; bodies to be written.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass


class InvalidToken(Exception):
    """Any reason a token is not accepted. Callers map it to one 401."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    org: str
    roles: frozenset[str]
    jti: str
    issued_at: int
    expires_at: int


def generate_signing_key() -> bytes:
    """A new P-256 private key as unencrypted PKCS#8 PEM (the caller stores it 0600)."""
    ...


class TokenService:
    """Issues and verifies ES256 JWTs with a pinned algorithm, issuer and audience."""

    def __init__(
        self, private_key_pem: bytes, *, issuer: str, audience: str, lifetime: int = 900
    ) -> None: ...
    def issue(self, org: str, roles: Collection[str], *, now: int, jti: str) -> str: ...
    def verify(self, token: str, *, now: int) -> TokenClaims:
        """Raise InvalidToken for anything but a well-formed, current token of ours."""
        ...
