"""The retirement of a linking key: the end of a network's move to the OPRF.

While a network moves from linking-key pseudonyms to the pseudonymisation services,
every signal carries both (the transition window), so that the hub's clustering links
old signals to new ones. The authority ends the window with a **retirement**, signed by
the root: linking-key version ``version`` of ``network`` is retired, and the hub accepts
pseudonyms of that version until ``until`` (Unix seconds) and never after. Clients stop
deriving them at ``until`` and each organisation destroys its copy of the key.

Wire form (``docs/protocol.md``, "Retiring the linking key")::

    {"v": 1, "network": ..., "version": int, "until": int, "sig": b64url}

signed over ``frame("schakel/linking-key-retired/v1", canonical_json(all but sig))``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.certificate import MAX_TIME, RootCertificate
from protocol.encoding import b64d, b64e, canonical_json, frame
from protocol.errors import EncodingError, ValidationError, VerificationError
from protocol.pseudonym import MAX_KEY_VERSION
from protocol.types import NetworkId, parse_network_id

FORMAT_VERSION = 1
LABEL = "schakel/linking-key-retired/v1"
SIGNATURE_BYTES = 64
_KEYS = frozenset({"v", "network", "version", "until", "sig"})


def _int(value: object, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(f"{what} must be an integer in {low}..{high}")
    return value


@dataclass(frozen=True, slots=True)
class Retirement:
    """The root's word that linking-key ``version`` is accepted until ``until``, not after."""

    network: NetworkId
    version: int
    until: int
    sig: bytes

    def __post_init__(self) -> None:
        parse_network_id(self.network)
        _int(self.version, 1, MAX_KEY_VERSION, "version")
        _int(self.until, 0, MAX_TIME, "until")
        if not isinstance(self.sig, bytes) or len(self.sig) != SIGNATURE_BYTES:
            raise ValidationError("a retirement's signature is 64 bytes")

    def retired_at(self, now: int) -> bool:
        """True once pseudonyms of this version are no longer accepted."""
        return now > self.until

    def _unsigned(self) -> dict[str, Any]:
        return {
            "v": FORMAT_VERSION,
            "network": self.network,
            "version": self.version,
            "until": self.until,
        }

    def signed_bytes(self) -> bytes:
        return frame(LABEL, canonical_json(self._unsigned()))

    def to_wire(self) -> dict[str, Any]:
        return {**self._unsigned(), "sig": b64e(self.sig)}

    @classmethod
    def from_wire(cls, data: object) -> Retirement:
        if not isinstance(data, dict) or set(data) != _KEYS:
            raise EncodingError(f"a retirement has exactly the fields {sorted(_KEYS)}")
        if data["v"] != FORMAT_VERSION or isinstance(data["v"], bool):
            raise ValidationError("unsupported retirement version")
        return cls(
            network=parse_network_id(data["network"]),
            version=_int(data["version"], 1, MAX_KEY_VERSION, "version"),
            until=_int(data["until"], 0, MAX_TIME, "until"),
            sig=b64d(data["sig"], max_len=SIGNATURE_BYTES),
        )


def sign_retirement(
    root_key: Ed25519PrivateKey, root: RootCertificate, *, version: int, until: int
) -> Retirement:
    """Retire linking-key ``version`` of the root's network at ``until``."""
    if root_key.public_key() != root.public_key:
        raise ValidationError("signing key is not the key of this root certificate")
    unsigned = Retirement(root.network, version, until, bytes(SIGNATURE_BYTES))
    return replace(unsigned, sig=root_key.sign(unsigned.signed_bytes()))


def verify_retirement(retirement: Retirement, root: RootCertificate) -> None:
    """VerificationError unless ``root`` signed ``retirement`` for its own network."""
    if retirement.network != root.network:
        raise VerificationError("the retirement is for another network than the root")
    try:
        root.public_key.verify(retirement.sig, retirement.signed_bytes())
    except InvalidSignature:
        raise VerificationError("the retirement's signature does not verify") from None


def pseudonym_version(pseudonym: str) -> int:
    """The key version a pseudonym (``type.version.base32``, already parsed) was made with."""
    return int(pseudonym.split(".", 2)[1])
