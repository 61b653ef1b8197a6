"""X.509 certificates, enrolment requests and revocation lists of a Schakel network.

Every key is Ed25519. The network root certificate is self-signed (CA, path
length 0). An organisation certificate carries the organisation id as the
subject commonName, the network id as the subject organizationName, the same
as a SAN URI ``urn:schakel:<network>:org:<org>``, and its roles as
ExtendedKeyUsage OIDs under ``ROLE_OID_ARC``, and the kind of organisation
(one of ``ORG_TYPES``) as the subject businessCategory; a certificate without
one is of type ``other``. The hub certificate is an organisation-style
certificate with the single role ``hub``.

Names are exact (docs/protocol.md, "Names"): one attribute per RDN, every value a
UTF8String, in the order commonName, organizationName and (organisation certificates
only, optional) businessCategory; an issuer is the root's subject byte for byte. A name
is compared by its DER, because ``x509.Name`` equality ignores the string types.

Certificates travel as DER (base64url in JSON), and lie on disk as PEM.
Times are integer Unix seconds. Verification raises, never returns a bool.

Errors: ``EncodingError`` for bytes that do not parse (DER, PEM) or exceed
the size bounds; ``ValidationError`` for arguments or request fields that
break a rule (bad id, bad role set, bad serial); ``VerificationError`` for a
certificate, request or CRL that does not verify or does not follow the
profile (see ``docs/protocol.md``); ``RevokedError`` for a
revoked certificate.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import ParamSpec, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID, NameOID, SignatureAlgorithmOID

from protocol.encoding import fingerprint
from protocol.errors import EncodingError, RevokedError, ValidationError, VerificationError
from protocol.types import Fingerprint, NetworkId, OrgId, parse_network_id, parse_org_id

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
# The kind of organisation, as the authority certifies it (subject businessCategory).
ORG_TYPES: tuple[str, ...] = (
    "police", "municipality", "ggd", "school", "shelter", "care", "legal_aid",
    "coordination", "other",
)  # fmt: skip
ORG_TYPE_OTHER = "other"
MAX_CERT_BYTES = 4096
MAX_CRL_BYTES = 256 * 1024

# Serials, CRL numbers and times fit a signed 64-bit database column.
MAX_SERIAL = 2**63 - 1
MAX_TIME = 253402300799  # 9999-12-31T23:59:59Z, the last instant X.509 can express
MAX_PEM_BYTES = 2 * MAX_CRL_BYTES
DAY = 86400
ROOT_CN_PREFIX = "Schakel network root "
_PEM_LABEL = re.compile(r"[A-Z0-9]+(?: [A-Z0-9]+)*")
_PEM_LINE = re.compile(r"[A-Za-z0-9+/]{1,64}={0,2}")
# Critical extensions this profile understands; any other critical one is refused.
_KNOWN_CRITICAL = frozenset({ExtensionOID.BASIC_CONSTRAINTS, ExtensionOID.KEY_USAGE})
# The subject's attributes, in this order; businessCategory only on organisation certificates.
_SUBJECT_OIDS = (NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME, NameOID.BUSINESS_CATEGORY)
_ROLE_BY_INDEX = {str(index + 1): role for index, role in enumerate(ROLES)}
_DER = Encoding.DER
_E = TypeVar("_E", bound=x509.ExtensionType)


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
    org_type: str = ORG_TYPE_OTHER  # one of ORG_TYPES


@dataclass(frozen=True, slots=True)
class RevocationList:
    """A CRL signed by the root: revoked serial -> revocation time."""

    network: NetworkId
    number: int
    this_update: int
    next_update: int
    revoked: Mapping[int, int]
    der: bytes


# --- small helpers -------------------------------------------------------------------


def _check_range(value: object, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(f"{what} must be an integer in {low}..{high}")
    return value


def _validity(now: int, days: int) -> tuple[int, int]:
    _check_range(now, 0, MAX_TIME, "now")
    _check_range(days, 1, (MAX_TIME - now) // DAY, "days")
    return now, now + days * DAY


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _seconds(moment: datetime) -> int:
    return int(moment.timestamp())


def _subject(network: str, common_name: str, org_type: str | None = None) -> x509.Name:
    attributes = [
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, network),
    ]
    if org_type is not None:
        attributes.append(x509.NameAttribute(NameOID.BUSINESS_CATEGORY, org_type))
    return x509.Name(attributes)


def _root_subject(network: str) -> x509.Name:
    return _subject(network, ROOT_CN_PREFIX + network)


def _is_root_name(name: x509.Name, root: RootCertificate) -> bool:
    """``name`` is the root's subject byte for byte (``==`` on names ignores string types)."""
    return name.public_bytes() == _root_subject(root.network).public_bytes()


def _org_uri(network: str, org: str) -> str:
    return f"urn:schakel:{network}:org:{org}"


def _subject_parts(
    name: x509.Name, error: type[Exception], *, category: bool
) -> tuple[str, str, str | None]:
    """commonName, organizationName and businessCategory (None when absent) of a subject.

    The profile allows exactly: one attribute per RDN, in this order, commonName,
    organizationName and (only where ``category`` is allowed) businessCategory.
    The values still have to be checked, and then the encoding (``_check_encoded``).
    """
    rule = "subject must be commonName, organizationName"
    rule += ", optionally businessCategory," if category else ""
    rule += " in this order, one attribute per RDN"
    rdns = name.rdns
    if not 2 <= len(rdns) <= (3 if category else 2) or any(len(rdn) != 1 for rdn in rdns):
        raise error(rule)
    attributes = [next(iter(rdn)) for rdn in rdns]
    if [attr.oid for attr in attributes] != list(_SUBJECT_OIDS[: len(attributes)]):
        raise error(rule)
    values = [attr.value for attr in attributes]
    if not all(isinstance(value, str) for value in values):
        raise error(rule)
    return str(values[0]), str(values[1]), str(values[2]) if len(values) == 3 else None


def _check_encoded(name: x509.Name, expected: x509.Name, error: type[Exception]) -> None:
    """``name`` is byte for byte ``expected`` (so every value is a UTF8String, as written)."""
    if name.public_bytes() != expected.public_bytes():
        raise error("subject values must be UTF8String")


def check_org_type(value: object) -> str:
    """An organisation type: one of ``ORG_TYPES`` (ValidationError otherwise)."""
    if not isinstance(value, str) or value not in ORG_TYPES:
        raise ValidationError(f"organisation type must be one of {', '.join(ORG_TYPES)}")
    return value


def _check_key_matches(key: Ed25519PrivateKey, root: RootCertificate) -> None:
    if key.public_key() != root.public_key:
        raise ValidationError("signing key is not the key of this root certificate")


P = ParamSpec("P")
R = TypeVar("R")


def _der_failures_are_encoding_errors(what: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """cryptography parses DER lazily: a malformed field raises ValueError or InvalidVersion
    when it is first read, long after loading succeeded. Every public function that reads
    a parsed structure turns those into one EncodingError, so that a caller sees only
    ProtocolError whatever the bytes were."""

    def wrap(func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def checked(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return func(*args, **kwargs)
            except (ValueError, x509.InvalidVersion) as exc:
                raise EncodingError(f"{what} is not valid DER") from exc

        return checked

    return wrap


def _ed25519_key(loaded: x509.Certificate | x509.CertificateSigningRequest) -> Ed25519PublicKey:
    try:
        key = loaded.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise VerificationError("subject key is not an Ed25519 key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise VerificationError("subject key is not an Ed25519 key")
    return key


def _load_cert_der(der: bytes) -> x509.Certificate:
    if not isinstance(der, bytes) or len(der) > MAX_CERT_BYTES:
        raise EncodingError(f"certificate must be DER bytes of at most {MAX_CERT_BYTES}")
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise EncodingError("certificate is not valid DER") from exc


def _check_signed_by(cert: x509.Certificate, key: Ed25519PublicKey) -> None:
    if cert.signature_algorithm_oid != SignatureAlgorithmOID.ED25519:
        raise VerificationError("certificate is not signed with Ed25519")
    try:
        key.verify(cert.signature, cert.tbs_certificate_bytes)
    except InvalidSignature as exc:
        raise VerificationError("certificate signature does not verify") from exc


def _check_times(cert: x509.Certificate, now: int) -> tuple[int, int]:
    """(not_before, not_after); inclusive at both ends, as RFC 5280 defines validity."""
    not_before = _seconds(cert.not_valid_before_utc)
    not_after = _seconds(cert.not_valid_after_utc)
    if not not_before <= now <= not_after:
        raise VerificationError("certificate is not valid at this time")
    return not_before, not_after


def _extensions(cert: x509.Certificate) -> x509.Extensions:
    """The extensions, parsed; refuses malformed and unknown critical ones."""
    try:
        extensions = cert.extensions
    except ValueError as exc:
        raise VerificationError("certificate has a malformed extension") from exc
    for extension in extensions:
        if extension.critical and extension.oid not in _KNOWN_CRITICAL:
            raise VerificationError("certificate has an unknown critical extension")
    return extensions


def _extension(extensions: x509.Extensions, kind: type[_E]) -> _E:
    try:
        return extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound as exc:
        raise VerificationError(f"certificate lacks the {kind.__name__} extension") from exc


# --- the root ------------------------------------------------------------------------


def create_root(
    key: Ed25519PrivateKey, network: NetworkId, *, now: int, days: int, serial: int
) -> RootCertificate:
    """A self-signed root certificate for ``network``, valid ``days`` days from ``now``."""
    network = parse_network_id(network)
    not_before, not_after = _validity(now, days)
    name = _root_subject(network)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(_check_range(serial, 1, MAX_SERIAL, "serial"))
        .not_valid_before(_utc(not_before))
        .not_valid_after(_utc(not_after))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    der = builder.sign(key, None).public_bytes(_DER)
    return load_root(der, now=now)


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


@_der_failures_are_encoding_errors("root certificate")
def load_root(der: bytes, *, now: int) -> RootCertificate:
    """Parse and check a pinned root: self-signed, Ed25519, a CA, valid at ``now``."""
    cert = _load_cert_der(der)
    if cert.version != x509.Version.v3 or cert.issuer.public_bytes() != cert.subject.public_bytes():
        raise VerificationError("root certificate is not a self-signed X.509 v3 certificate")
    key = _ed25519_key(cert)
    _check_signed_by(cert, key)
    not_before, not_after = _check_times(cert, now)
    common_name, network_text, _ = _subject_parts(cert.subject, VerificationError, category=False)
    network = parse_network_id(network_text)
    if common_name != ROOT_CN_PREFIX + network:
        raise VerificationError("root certificate commonName does not name its network")
    _check_encoded(cert.subject, _root_subject(network), VerificationError)
    extensions = _extensions(cert)
    constraints = _extension(extensions, x509.BasicConstraints)
    if not constraints.ca or not _extension(extensions, x509.KeyUsage).key_cert_sign:
        raise VerificationError("root certificate is not a certificate authority")
    return RootCertificate(
        network=network,
        public_key=key,
        fingerprint=Fingerprint(fingerprint(der)),
        der=der,
        not_before=not_before,
        not_after=not_after,
    )


# --- enrolment requests --------------------------------------------------------------


def create_enrolment_request(
    key: Ed25519PrivateKey, network: NetworkId, org: OrgId
) -> EnrolmentRequest:
    """A PKCS#10 request for ``org`` in ``network``, signed by ``key`` (proof of possession)."""
    network, org = parse_network_id(network), parse_org_id(org)
    csr = x509.CertificateSigningRequestBuilder().subject_name(_subject(network, org))
    der = csr.sign(key, None).public_bytes(_DER)
    return EnrolmentRequest(network=network, org=org, public_key=key.public_key(), der=der)


@_der_failures_are_encoding_errors("enrolment request")
def load_enrolment_request(der: bytes) -> EnrolmentRequest:
    """Parse an untrusted request and check its proof of possession and its names.

    A request asks for nothing but a name: attributes and extensions (roles
    included) are refused; roles come from the authority alone.
    """
    if not isinstance(der, bytes) or len(der) > MAX_CERT_BYTES:
        raise EncodingError(f"enrolment request must be DER bytes of at most {MAX_CERT_BYTES}")
    try:
        csr = x509.load_der_x509_csr(der)
        extra = len(csr.attributes) + len(csr.extensions)
    except ValueError as exc:
        raise EncodingError("enrolment request is not valid DER") from exc
    key = _ed25519_key(csr)
    if csr.signature_algorithm_oid != SignatureAlgorithmOID.ED25519 or not csr.is_signature_valid:
        raise VerificationError("enrolment request signature does not verify")
    if extra:
        raise ValidationError("enrolment request may carry no attributes or extensions")
    org_text, network_text, _ = _subject_parts(csr.subject, ValidationError, category=False)
    org, network = parse_org_id(org_text), parse_network_id(network_text)
    _check_encoded(csr.subject, _subject(network, org), ValidationError)
    return EnrolmentRequest(network=network, org=org, public_key=key, der=der)


# --- organisation certificates -------------------------------------------------------


def _check_roles(roles: Collection[str]) -> frozenset[str]:
    if isinstance(roles, str):
        raise ValidationError("roles must be a collection of role names, not one string")
    chosen = frozenset(roles)
    if not chosen:
        raise ValidationError("a certificate needs at least one role")
    if not chosen <= frozenset(ROLES):
        raise ValidationError(f"roles must be among {', '.join(ROLES)}")
    if ROLE_HUB in chosen and len(chosen) > 1:
        raise ValidationError("the hub role can not be combined with other roles")
    return chosen


def _role_oid(role: str) -> x509.ObjectIdentifier:
    return x509.ObjectIdentifier(f"{ROLE_OID_ARC}.{ROLES.index(role) + 1}")


def _roles_from(usage: x509.ExtendedKeyUsage) -> frozenset[str]:
    """Roles named by our OIDs; other arcs are ignored, unknown ones under ours refused."""
    roles: set[str] = set()
    for oid in usage:
        dotted = oid.dotted_string
        if not dotted.startswith(ROLE_OID_ARC + "."):
            continue
        role = _ROLE_BY_INDEX.get(dotted.removeprefix(ROLE_OID_ARC + "."))
        if role is None:
            raise VerificationError("certificate names an unknown role")
        roles.add(role)
    try:
        return _check_roles(roles)
    except ValidationError as exc:
        raise VerificationError(f"certificate role set is not allowed: {exc}") from exc


def issue_certificate(
    root_key: Ed25519PrivateKey,
    root: RootCertificate,
    request: EnrolmentRequest,
    roles: Collection[str],
    *,
    now: int,
    days: int,
    serial: int,
    org_type: str = ORG_TYPE_OTHER,
) -> Certificate:
    """Certify the requested key with ``roles`` and ``org_type``, from ``now`` for ``days`` days.

    The validity is cut at the root's own expiry. ``request`` must come from
    ``load_enrolment_request`` (or ``create_enrolment_request``).
    """
    _check_key_matches(root_key, root)
    chosen = _check_roles(roles)
    check_org_type(org_type)
    if request.network != root.network:
        raise ValidationError("enrolment request is for another network than this root")
    not_before, not_after = _validity(now, days)
    not_after = min(not_after, root.not_after)
    if not root.not_before <= not_before < not_after:
        raise ValidationError("the root certificate is not valid for this period")
    builder = (
        x509.CertificateBuilder()
        .subject_name(_subject(request.network, request.org, org_type))
        .issuer_name(_root_subject(root.network))
        .public_key(request.public_key)
        .serial_number(_check_range(serial, 1, MAX_SERIAL, "serial"))
        .not_valid_before(_utc(not_before))
        .not_valid_after(_utc(not_after))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(_role_oids(chosen)), critical=False)
        .add_extension(_san(request.network, request.org), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(request.public_key), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root.public_key), False)
    )
    der = builder.sign(root_key, None).public_bytes(_DER)
    return verify_certificate(der, root, now=now, crl=None)


def _role_oids(roles: frozenset[str]) -> list[x509.ObjectIdentifier]:
    return [_role_oid(role) for role in ROLES if role in roles]


def _san(network: str, org: str) -> x509.SubjectAlternativeName:
    return x509.SubjectAlternativeName([x509.UniformResourceIdentifier(_org_uri(network, org))])


@_der_failures_are_encoding_errors("certificate")
def verify_certificate(
    der: bytes, root: RootCertificate, *, now: int, crl: RevocationList | None
) -> Certificate:
    """Check that ``der`` is an organisation certificate issued by ``root``, valid at ``now``.

    Raises ``RevokedError`` when ``crl`` lists its serial, ``VerificationError``
    for any other failure, ``EncodingError`` when it does not parse.
    """
    cert = _load_cert_der(der)
    if cert.version != x509.Version.v3 or not _is_root_name(cert.issuer, root):
        raise VerificationError("certificate was not issued by this network root")
    _check_signed_by(cert, root.public_key)
    key = _ed25519_key(cert)
    not_before, not_after = _check_times(cert, now)
    extensions = _extensions(cert)
    _check_leaf_usage(extensions)
    org_text, network_text, category = _subject_parts(
        cert.subject, VerificationError, category=True
    )
    if network_text != root.network:
        raise VerificationError("certificate is for another network than the root")
    org = _parse_org(org_text)
    org_type = ORG_TYPE_OTHER if category is None else _parse_org_type(category)
    _check_encoded(cert.subject, _subject(root.network, org, category), VerificationError)
    if _extension(extensions, x509.SubjectAlternativeName) != _san(root.network, org):
        raise VerificationError("certificate alternative name does not match its subject")
    roles = _roles_from(_extension(extensions, x509.ExtendedKeyUsage))
    serial = cert.serial_number
    if not 1 <= serial <= MAX_SERIAL:
        raise VerificationError("certificate serial number is out of range")
    check_not_revoked(serial, root, crl)
    return Certificate(
        network=root.network,
        org=org,
        roles=roles,
        public_key=key,
        serial=serial,
        fingerprint=Fingerprint(fingerprint(der)),
        der=der,
        not_before=not_before,
        not_after=not_after,
        org_type=org_type,
    )


def _parse_org_type(text: str) -> str:
    try:
        return check_org_type(text)
    except ValidationError as exc:
        raise VerificationError("certificate businessCategory is not an organisation type") from exc


def _check_leaf_usage(extensions: x509.Extensions) -> None:
    if _extension(extensions, x509.BasicConstraints).ca:
        raise VerificationError("a certificate authority can not act as an organisation")
    usage = _extension(extensions, x509.KeyUsage)
    if not usage.digital_signature or usage.key_cert_sign or usage.crl_sign:
        raise VerificationError("certificate key usage is not digitalSignature only")


def _parse_org(text: str) -> OrgId:
    try:
        return parse_org_id(text)
    except ValidationError as exc:
        raise VerificationError("certificate commonName is not an organisation id") from exc


def check_not_revoked(serial: int, root: RootCertificate, crl: RevocationList | None) -> None:
    """RevokedError when ``crl`` (which must be of ``root``'s network) lists ``serial``."""
    if crl is None:
        return
    if crl.network != root.network:
        raise VerificationError("revocation list is for another network than the root")
    if serial in crl.revoked:
        raise RevokedError("certificate has been revoked")


# --- revocation lists ----------------------------------------------------------------


def create_crl(
    root_key: Ed25519PrivateKey,
    root: RootCertificate,
    revoked: Mapping[int, int],
    *,
    number: int,
    now: int,
    days: int,
) -> RevocationList:
    """A CRL listing ``revoked`` (serial -> revocation time), valid ``days`` days from ``now``."""
    _check_key_matches(root_key, root)
    this_update, next_update = _validity(now, days)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(_root_subject(root.network))
        .last_update(_utc(this_update))
        .next_update(_utc(next_update))
        .add_extension(x509.CRLNumber(_check_range(number, 0, MAX_SERIAL, "CRL number")), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root.public_key), False)
    )
    for serial, when in sorted(revoked.items()):
        entry = (
            x509.RevokedCertificateBuilder()
            .serial_number(_check_range(serial, 1, MAX_SERIAL, "revoked serial"))
            .revocation_date(_utc(_check_range(when, 0, MAX_TIME, "revocation time")))
        )
        builder = builder.add_revoked_certificate(entry.build())
    der = builder.sign(root_key, None).public_bytes(_DER)
    return load_crl(der, root, now=now)


@_der_failures_are_encoding_errors("revocation list")
def load_crl(der: bytes, root: RootCertificate, *, now: int) -> RevocationList:
    """Parse a CRL and check that ``root`` signed it and that it has not expired at ``now``."""
    if not isinstance(der, bytes) or len(der) > MAX_CRL_BYTES:
        raise EncodingError(f"revocation list must be DER bytes of at most {MAX_CRL_BYTES}")
    try:
        crl = x509.load_der_x509_crl(der)
    except ValueError as exc:
        raise EncodingError("revocation list is not valid DER") from exc
    if crl.signature_algorithm_oid != SignatureAlgorithmOID.ED25519:
        raise VerificationError("revocation list is not signed with Ed25519")
    if not _is_root_name(crl.issuer, root) or not crl.is_signature_valid(root.public_key):
        raise VerificationError("revocation list was not signed by this network root")
    next_update = crl.next_update_utc
    if next_update is None or not now < _seconds(next_update):
        raise VerificationError("revocation list has expired")
    return RevocationList(
        network=root.network,
        number=_crl_number(crl),
        this_update=_seconds(crl.last_update_utc),
        next_update=_seconds(next_update),
        revoked=_revoked_entries(crl),
        der=der,
    )


def _crl_number(crl: x509.CertificateRevocationList) -> int:
    try:
        extensions = crl.extensions
        number = extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except (ValueError, x509.ExtensionNotFound) as exc:
        raise VerificationError("revocation list lacks a valid CRL number") from exc
    if any(ext.critical for ext in extensions) or not 0 <= number <= MAX_SERIAL:
        raise VerificationError("revocation list has a bad CRL number or critical extension")
    return number


def _revoked_entries(crl: x509.CertificateRevocationList) -> Mapping[int, int]:
    revoked: dict[int, int] = {}
    try:
        for entry in crl:
            if entry.serial_number in revoked:
                raise VerificationError("revocation list names a serial twice")
            revoked[entry.serial_number] = _seconds(entry.revocation_date_utc)
    except ValueError as exc:
        raise VerificationError("revocation list has a malformed entry") from exc
    return MappingProxyType(revoked)


# --- PEM -----------------------------------------------------------------------------


def _check_label(label: str) -> None:
    if not isinstance(label, str) or not _PEM_LABEL.fullmatch(label):
        raise ValueError(f"bad PEM label {label!r}")


def pem_encode(der: bytes, label: str) -> bytes:
    """One PEM block (RFC 7468): 64-character base64 lines, LF line ends."""
    _check_label(label)
    body = base64.b64encode(der).decode("ascii")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    text = "\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----", ""])
    return text.encode("ascii")


def pem_decode(pem: bytes, label: str) -> bytes:
    """The DER inside exactly one PEM block labelled ``label``; ``EncodingError`` otherwise.

    Only whitespace may surround the block; CRLF line ends are accepted; the
    base64 must be canonical, in lines of at most 64 characters.
    """
    _check_label(label)
    if not isinstance(pem, bytes) or len(pem) > MAX_PEM_BYTES:
        raise EncodingError(f"PEM must be bytes of at most {MAX_PEM_BYTES}")
    try:
        lines = pem.decode("ascii").replace("\r\n", "\n").strip().split("\n")
    except UnicodeDecodeError as exc:
        raise EncodingError("PEM is not ASCII") from exc
    if len(lines) < 3 or lines[0] != f"-----BEGIN {label}-----":
        raise EncodingError(f"expected exactly one PEM block labelled {label}")
    if lines[-1] != f"-----END {label}-----":
        raise EncodingError(f"expected exactly one PEM block labelled {label}")
    body = lines[1:-1]
    if not all(_PEM_LINE.fullmatch(line) for line in body):
        raise EncodingError("PEM body is not base64 in lines of at most 64 characters")
    text = "".join(body)
    try:
        der = binascii.a2b_base64(text, strict_mode=True)
    except binascii.Error as exc:
        raise EncodingError("PEM body is not valid base64") from exc
    if base64.b64encode(der).decode("ascii") != text:
        raise EncodingError("PEM body is not canonical base64")
    return der
