"""X.509 certificates, enrolment requests and revocation lists of a Schakel network.

CONTRACT STUB: signatures and docstrings are fixed; bodies to be written.

Every key is Ed25519. The network root certificate is self-signed (CA, path
length 0). An organisation certificate carries the organisation id as the
subject commonName, the network id as the subject organizationName, the same
as a SAN URI ``urn:schakel:<network>:org:<org>``, and its roles as
ExtendedKeyUsage OIDs under ``ROLE_OID_ARC``. The hub certificate is an
organisation-style certificate with the single role ``hub``.

Certificates travel as DER (base64url in JSON), and lie on disk as PEM.
Times are integer Unix seconds. Verification raises, never returns a bool.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol.types import Fingerprint, NetworkId, OrgId

# 2.25.<UUID as integer> (ITU-T X.667) needs no registration.
ROLE_OID_ARC = "2.25.254911419213417418542512442916328432929"
ROLE_MEMBER = "member"
ROLE_COORDINATOR = "coordinator"
ROLE_PRIVACY_OFFICER = "privacy_officer"
ROLE_NETWORK_PRIVACY_OFFICER = "network_privacy_officer"
ROLE_HUB = "hub"
ROLES: tuple[str, ...] = (
    ROLE_MEMBER,
    ROLE_COORDINATOR,
    ROLE_PRIVACY_OFFICER,
    ROLE_NETWORK_PRIVACY_OFFICER,
    ROLE_HUB,
)
MAX_CERT_BYTES = 4096
MAX_CRL_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class RootCertificate:
    """A parsed, self-verified network root certificate."""

    network: NetworkId
    public_key: Ed25519PublicKey
    fingerprint: Fingerprint  # SHA-256 of the DER
    der: bytes
    not_before: int
    not_after: int


@dataclass(frozen=True, slots=True)
class EnrolmentRequest:
    """A signed request (PKCS#10) whose signature proved possession of the key."""

    network: NetworkId
    org: OrgId
    public_key: Ed25519PublicKey
    der: bytes


@dataclass(frozen=True, slots=True)
class Certificate:
    """An organisation (or hub) certificate that chained to the pinned root."""

    network: NetworkId
    org: OrgId
    roles: frozenset[str]
    public_key: Ed25519PublicKey
    serial: int
    fingerprint: Fingerprint  # SHA-256 of the DER
    der: bytes
    not_before: int
    not_after: int


@dataclass(frozen=True, slots=True)
class RevocationList:
    """A CRL signed by the root: revoked serial -> revocation time."""

    network: NetworkId
    number: int
    this_update: int
    next_update: int
    revoked: Mapping[int, int]
    der: bytes


def create_root(
    key: Ed25519PrivateKey, network: NetworkId, *, now: int, days: int, serial: int
) -> RootCertificate: ...
def load_root(der: bytes, *, now: int) -> RootCertificate: ...
def create_enrolment_request(
    key: Ed25519PrivateKey, network: NetworkId, org: OrgId
) -> EnrolmentRequest: ...
def load_enrolment_request(der: bytes) -> EnrolmentRequest: ...
def issue_certificate(
    root_key: Ed25519PrivateKey,
    root: RootCertificate,
    request: EnrolmentRequest,
    roles: Collection[str],
    *,
    now: int,
    days: int,
    serial: int,
) -> Certificate: ...
def verify_certificate(
    der: bytes, root: RootCertificate, *, now: int, crl: RevocationList | None
) -> Certificate: ...
def create_crl(
    root_key: Ed25519PrivateKey,
    root: RootCertificate,
    revoked: Mapping[int, int],
    *,
    number: int,
    now: int,
    days: int,
) -> RevocationList: ...
def load_crl(der: bytes, root: RootCertificate, *, now: int) -> RevocationList: ...
def pem_encode(der: bytes, label: str) -> bytes: ...
def pem_decode(pem: bytes, label: str) -> bytes: ...
