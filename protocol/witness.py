"""Witness keys and their certification by the network authority.

Every organisation, and every always-on witness, cosigns checkpoints with an Ed25519
*witness key* of its own (never its organisation key, never a log key). The authority
certifies it with a small signed statement rather than an X.509 certificate, so that a
witness key can never be taken for an organisation's certificate by the hub's directory.

* :class:`WitnessRequest` (made by the witness, proof of possession), wire form
  ``{"v": 1, "network", "org", "name", "key": b64url(32), "sig": b64url(64)}``, signed by
  the witness key over ``frame("schakel/witness-request/v1", canonical_json(all but sig))``.
* :class:`WitnessCertificate` (made by the authority), wire form ``{"v": 1, "network",
  "org", "name", "key", "serial", "not_before", "not_after", "sig"}``, signed by the root
  key over ``frame("schakel/witness-cert/v1", canonical_json(all but sig))``. ``serial``
  comes from the authority's one serial space, so the network's CRL revokes it like any
  certificate. ``org`` is the organisation that runs the witness: cosignatures count per
  organisation.

``name`` is the cosigner's key name in signature lines (C2SP tlog-cosignature): printable
ASCII without space or ``+``, at most 255 characters; by default
:func:`witness_name` ``schakel.invalid/<network>/witness/<org>``. Verification raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol.certificate import (
    MAX_SERIAL,
    MAX_TIME,
    RevocationList,
    RootCertificate,
    check_not_revoked,
)
from protocol.checkpoint import ORIGIN_HOST, CosignatureVerifier
from protocol.encoding import b64d, b64e, canonical_json, fingerprint, frame
from protocol.errors import EncodingError, ValidationError, VerificationError
from protocol.note import ED25519_KEY_BYTES, ED25519_SIGNATURE_BYTES, raw_public_key
from protocol.types import Fingerprint, NetworkId, OrgId, parse_network_id, parse_org_id

WITNESS_VERSION = 1
REQUEST_LABEL = "schakel/witness-request/v1"
CERTIFICATE_LABEL = "schakel/witness-cert/v1"
MAX_WITNESS_BYTES = 4096
DAY = 86400
_NAME = re.compile(r"[\x21-\x2a\x2c-\x7e]{1,255}")  # printable ASCII without space and '+'
_REQUEST_KEYS = frozenset({"v", "network", "org", "name", "key", "sig"})
_CERT_KEYS = frozenset(
    {"v", "network", "org", "name", "key", "serial", "not_before", "not_after", "sig"}
)


def witness_name(network: NetworkId, org: OrgId, label: str | None = None) -> str:
    """The default cosigner name of ``org``'s witness (``label`` for a second one)."""
    name = f"{ORIGIN_HOST}/{parse_network_id(network)}/witness/{parse_org_id(org)}"
    return check_witness_name(name if label is None else f"{name}/{label}")


def check_witness_name(value: object) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValidationError(
            "a witness name is 1-255 printable ASCII characters without space or '+'"
        )
    return value


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(value: object, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(f"{what} must be an integer in {low}..{high}")
    return value


def exact_object(data: object, keys: frozenset[str], what: str) -> dict[str, Any]:
    """``data`` as a dict with exactly ``keys`` and ``v`` = 1; EncodingError otherwise."""
    if not isinstance(data, dict) or set(data) != keys:
        raise EncodingError(f"{what} must be an object with exactly its fields")
    if not is_int(data["v"]) or data["v"] != WITNESS_VERSION:
        raise ValidationError(f"{what} version must be {WITNESS_VERSION}")
    return data


def _public_key(raw: bytes) -> Ed25519PublicKey:
    if not isinstance(raw, bytes) or len(raw) != ED25519_KEY_BYTES:
        raise ValidationError(f"a witness key is {ED25519_KEY_BYTES} bytes")
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise ValidationError("a witness key is not an Ed25519 public key") from exc


def check_signature(key: Ed25519PublicKey, sig: bytes, message: bytes, what: str) -> None:
    """VerificationError naming ``what`` unless ``sig`` is ``key``'s signature on ``message``."""
    try:
        key.verify(sig, message)
    except InvalidSignature as exc:
        raise VerificationError(f"{what} signature does not verify") from exc


def _check_sig(sig: object) -> None:
    if not isinstance(sig, bytes) or len(sig) != ED25519_SIGNATURE_BYTES:
        raise ValidationError(f"a signature is {ED25519_SIGNATURE_BYTES} bytes")


class SignedObject:
    """What the authority's and the witnesses' small signed objects share: a domain label,
    the fields but ``sig`` (``_unsigned``) and the signature over their frame."""

    __slots__ = ()
    LABEL: ClassVar[str]
    sig: bytes

    def _unsigned(self) -> dict[str, Any]:
        raise NotImplementedError

    def signed_bytes(self) -> bytes:
        """``frame(LABEL, canonical_json(every field but "sig"))``."""
        return frame(self.LABEL, canonical_json(self._unsigned()))

    def to_wire(self) -> dict[str, Any]:
        return {**self._unsigned(), "sig": b64e(self.sig)}


# --- the request --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WitnessRequest(SignedObject):
    """A witness key, its organisation and name, signed by the witness key itself."""

    LABEL: ClassVar[str] = REQUEST_LABEL
    network: NetworkId
    org: OrgId
    name: str
    key: bytes
    sig: bytes

    def __post_init__(self) -> None:
        parse_network_id(self.network)
        parse_org_id(self.org)
        check_witness_name(self.name)
        _public_key(self.key)
        _check_sig(self.sig)

    def _unsigned(self) -> dict[str, Any]:
        return {
            "v": WITNESS_VERSION,
            "network": self.network,
            "org": self.org,
            "name": self.name,
            "key": b64e(self.key),
        }

    @classmethod
    def from_wire(cls, data: object) -> WitnessRequest:
        fields = exact_object(data, _REQUEST_KEYS, "witness request")
        return cls(
            network=parse_network_id(fields["network"]),
            org=parse_org_id(fields["org"]),
            name=check_witness_name(fields["name"]),
            key=b64d(fields["key"], max_len=ED25519_KEY_BYTES),
            sig=b64d(fields["sig"], max_len=ED25519_SIGNATURE_BYTES),
        )

    @property
    def public_key(self) -> Ed25519PublicKey:
        return _public_key(self.key)


def create_witness_request(
    key: Ed25519PrivateKey, network: NetworkId, org: OrgId, name: str | None = None
) -> WitnessRequest:
    """A request for ``key`` as ``org``'s witness (default name: :func:`witness_name`)."""
    unsigned = WitnessRequest(
        network=network,
        org=org,
        name=witness_name(network, org) if name is None else name,
        key=raw_public_key(key.public_key()),
        sig=bytes(ED25519_SIGNATURE_BYTES),
    )
    return replace(unsigned, sig=key.sign(unsigned.signed_bytes()))


def verify_witness_request(request: WitnessRequest) -> WitnessRequest:
    """VerificationError unless the request is signed by the key it names."""
    check_signature(request.public_key, request.sig, request.signed_bytes(), "witness request")
    return request


# --- the certificate ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WitnessCertificate(SignedObject):
    """The authority's statement: this key is ``org``'s witness, under ``name``."""

    LABEL: ClassVar[str] = CERTIFICATE_LABEL
    network: NetworkId
    org: OrgId
    name: str
    key: bytes
    serial: int
    not_before: int
    not_after: int
    sig: bytes

    def __post_init__(self) -> None:
        parse_network_id(self.network)
        parse_org_id(self.org)
        check_witness_name(self.name)
        _public_key(self.key)
        check_int(self.serial, 1, MAX_SERIAL, "witness certificate serial")
        check_int(self.not_before, 0, MAX_TIME, "witness certificate not_before")
        check_int(self.not_after, self.not_before + 1, MAX_TIME, "witness certificate not_after")
        _check_sig(self.sig)

    def _unsigned(self) -> dict[str, Any]:
        return {
            "v": WITNESS_VERSION,
            "network": self.network,
            "org": self.org,
            "name": self.name,
            "key": b64e(self.key),
            "serial": self.serial,
            "not_before": self.not_before,
            "not_after": self.not_after,
        }

    @classmethod
    def from_wire(cls, data: object) -> WitnessCertificate:
        fields = exact_object(data, _CERT_KEYS, "witness certificate")
        return cls(
            network=parse_network_id(fields["network"]),
            org=parse_org_id(fields["org"]),
            name=check_witness_name(fields["name"]),
            key=b64d(fields["key"], max_len=ED25519_KEY_BYTES),
            serial=fields["serial"],
            not_before=fields["not_before"],
            not_after=fields["not_after"],
            sig=b64d(fields["sig"], max_len=ED25519_SIGNATURE_BYTES),
        )

    @property
    def fingerprint(self) -> Fingerprint:
        """SHA-256 of the canonical JSON of the whole wire object."""
        return Fingerprint(fingerprint(canonical_json(self.to_wire())))

    @property
    def public_key(self) -> Ed25519PublicKey:
        return _public_key(self.key)

    def verifier(self) -> CosignatureVerifier:
        """The cosignature/v1 verifier of this witness (name and key)."""
        return CosignatureVerifier.of(self.name, self.public_key)


def issue_witness_certificate(
    root_key: Ed25519PrivateKey,
    root: RootCertificate,
    request: WitnessRequest,
    *,
    serial: int,
    now: int,
    days: int,
) -> WitnessCertificate:
    """Certify a request's key (its signature is checked here), cut at the root's expiry."""
    if root_key.public_key() != root.public_key:
        raise ValidationError("signing key is not the key of this root certificate")
    verify_witness_request(request)
    if request.network != root.network:
        raise ValidationError("the witness request is for another network than this root")
    check_int(days, 1, 100 * 366, "days")
    not_after = min(now + days * DAY, root.not_after)
    if not root.not_before <= now < not_after:
        raise ValidationError("the root certificate is not valid for this period")
    unsigned = WitnessCertificate(
        network=request.network,
        org=request.org,
        name=request.name,
        key=request.key,
        serial=serial,
        not_before=now,
        not_after=not_after,
        sig=bytes(ED25519_SIGNATURE_BYTES),
    )
    return replace(unsigned, sig=root_key.sign(unsigned.signed_bytes()))


def check_witness_signature(cert: WitnessCertificate, root: RootCertificate) -> None:
    """VerificationError unless ``root`` signed ``cert`` for its network (no time check)."""
    if cert.network != root.network:
        raise VerificationError("witness certificate is for another network than the root")
    check_signature(root.public_key, cert.sig, cert.signed_bytes(), "witness certificate")


def verify_witness_certificate(
    cert: WitnessCertificate, root: RootCertificate, *, now: int, crl: RevocationList | None
) -> WitnessCertificate:
    """The certificate, if ``root`` signed it, it is valid at ``now`` and ``crl`` does not
    list its serial (``RevokedError``); ``VerificationError`` otherwise."""
    check_witness_signature(cert, root)
    if not cert.not_before <= now <= cert.not_after:
        raise VerificationError("witness certificate is not valid at this time")
    check_not_revoked(cert.serial, root, crl)
    return cert
