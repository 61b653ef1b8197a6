"""Certificates, enrolment requests, CRLs and PEM of protocol.certificate."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from protocol.certificate import (
    MAX_CERT_BYTES,
    MAX_CRL_BYTES,
    ORG_TYPES,
    ROLE_COORDINATOR,
    ROLE_HUB,
    ROLE_MEMBER,
    ROLE_NETWORK_PRIVACY_OFFICER,
    ROLE_OID_ARC,
    ROLE_PRIVACY_OFFICER,
    ROLES,
    Certificate,
    EnrolmentRequest,
    RootCertificate,
    create_crl,
    create_enrolment_request,
    create_root,
    issue_certificate,
    load_crl,
    load_enrolment_request,
    load_root,
    pem_decode,
    pem_encode,
    verify_certificate,
)
from protocol.encoding import fingerprint
from protocol.errors import EncodingError, RevokedError, ValidationError, VerificationError
from protocol.types import NetworkId, OrgId

NOW = 1_700_000_000
DAY = 86400
NET = NetworkId("net-utrecht")
ORG = OrgId("ggd-utrecht")


# --- helpers -------------------------------------------------------------------------


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _root_name(network: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"Schakel network root {network}"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, network),
        ]
    )


def _org_name(network: str, org: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, org),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, network),
        ]
    )


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
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


def _role_oid(index: int) -> x509.ObjectIdentifier:
    return x509.ObjectIdentifier(f"{ROLE_OID_ARC}.{index}")


def _forge_leaf(
    root_key: Ed25519PrivateKey,
    *,
    network: str = NET,
    org: str = ORG,
    public_key: object = None,
    eku: list[x509.ObjectIdentifier] | None = None,
    ca: bool = False,
    san: str | None = None,
    extra: x509.ExtensionType | None = None,
    subject: x509.Name | None = None,
) -> bytes:
    """A leaf signed by ``root_key`` that deviates from the profile in one chosen way."""
    key = public_key or Ed25519PrivateKey.generate().public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject or _org_name(network, org))
        .issuer_name(_root_name(network))
        .public_key(key)  # type: ignore[arg-type]
        .serial_number(99)
        .not_valid_before(_utc(NOW))
        .not_valid_after(_utc(NOW + 30 * DAY))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=ca), critical=True)
        .add_extension(x509.ExtendedKeyUsage(eku or [_role_oid(1)]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(san or f"urn:schakel:{network}:org:{org}")]
            ),
            critical=False,
        )
    )
    if extra is not None:
        builder = builder.add_extension(extra, critical=True)
    return builder.sign(root_key, None).public_bytes(Encoding.DER)


def _flip(der: bytes, index: int) -> bytes:
    return der[:index] + bytes([der[index] ^ 0x01]) + der[index + 1 :]


@pytest.fixture
def root_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def root(root_key: Ed25519PrivateKey) -> RootCertificate:
    return create_root(root_key, NET, now=NOW, days=3650, serial=1)


@pytest.fixture
def org_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def request_(org_key: Ed25519PrivateKey) -> EnrolmentRequest:
    return load_enrolment_request(create_enrolment_request(org_key, NET, ORG).der)


@pytest.fixture
def cert(
    root_key: Ed25519PrivateKey, root: RootCertificate, request_: EnrolmentRequest
) -> Certificate:
    roles = [ROLE_MEMBER, ROLE_COORDINATOR]
    return issue_certificate(root_key, root, request_, roles, now=NOW, days=365, serial=42)


# --- the root ------------------------------------------------------------------------


def test_root_round_trip(root_key: Ed25519PrivateKey, root: RootCertificate) -> None:
    assert root.network == NET
    assert root.public_key == root_key.public_key()
    assert (root.not_before, root.not_after) == (NOW, NOW + 3650 * DAY)
    assert root.fingerprint == fingerprint(root.der)
    assert load_root(root.der, now=NOW + DAY) == root


def test_root_profile(root: RootCertificate) -> None:
    parsed = x509.load_der_x509_certificate(root.der)
    assert parsed.subject == _root_name(NET)
    assert parsed.issuer == parsed.subject
    assert parsed.serial_number == 1
    constraints = parsed.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = parsed.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value == _usage(cert_sign=True)
    assert parsed.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert len(parsed.extensions) == 3


@pytest.mark.parametrize("now", [NOW - 1, NOW + 3650 * DAY + 1])
def test_root_outside_validity(root: RootCertificate, now: int) -> None:
    with pytest.raises(VerificationError, match="not valid at this time"):
        load_root(root.der, now=now)


def test_root_validity_bounds_inclusive(root: RootCertificate) -> None:
    assert load_root(root.der, now=NOW) == root
    assert load_root(root.der, now=NOW + 3650 * DAY) == root


def test_root_tampered_signature(root: RootCertificate) -> None:
    with pytest.raises(VerificationError, match="signature"):
        load_root(_flip(root.der, len(root.der) - 1), now=NOW)


def test_root_tampered_subject(root: RootCertificate) -> None:
    index = root.der.index(NET.encode())
    tampered = root.der[:index] + b"X" + root.der[index + 1 :]
    with pytest.raises(VerificationError):
        load_root(tampered, now=NOW)


def test_root_must_be_self_signed(root_key: Ed25519PrivateKey) -> None:
    with pytest.raises(VerificationError, match="self-signed"):
        load_root(_forge_leaf(root_key), now=NOW)


def test_root_must_be_a_ca(root_key: Ed25519PrivateKey) -> None:
    der = (
        x509.CertificateBuilder()
        .subject_name(_root_name(NET))
        .issuer_name(_root_name(NET))
        .public_key(root_key.public_key())
        .serial_number(1)
        .not_valid_before(_utc(NOW))
        .not_valid_after(_utc(NOW + DAY))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .sign(root_key, None)
        .public_bytes(Encoding.DER)
    )
    with pytest.raises(VerificationError, match="not a certificate authority"):
        load_root(der, now=NOW)


def test_root_with_ec_key_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    der = (
        x509.CertificateBuilder()
        .subject_name(_root_name(NET))
        .issuer_name(_root_name(NET))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(_utc(NOW))
        .not_valid_after(_utc(NOW + DAY))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, SHA256())
        .public_bytes(Encoding.DER)
    )
    with pytest.raises(VerificationError, match="Ed25519"):
        load_root(der, now=NOW)


def test_root_common_name_must_name_network(root_key: Ed25519PrivateKey) -> None:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "Some other root"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, NET),
        ]
    )
    der = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(root_key.public_key())
        .serial_number(1)
        .not_valid_before(_utc(NOW))
        .not_valid_after(_utc(NOW + DAY))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .sign(root_key, None)
        .public_bytes(Encoding.DER)
    )
    with pytest.raises(VerificationError, match="commonName"):
        load_root(der, now=NOW)


@pytest.mark.parametrize("der", [b"", b"\x30\x03\x02\x01\x00", b"x" * 100])
def test_root_garbage(der: bytes) -> None:
    with pytest.raises(EncodingError):
        load_root(der, now=NOW)


def test_root_too_large() -> None:
    with pytest.raises(EncodingError, match="at most"):
        load_root(b"\x30" * (MAX_CERT_BYTES + 1), now=NOW)


@pytest.mark.parametrize(
    ("network", "days", "serial", "error"),
    [
        ("Net A", 10, 1, ValidationError),
        (NET, 0, 1, ValidationError),
        (NET, 10, 0, ValidationError),
        (NET, 10, 2**63, ValidationError),
    ],
)
def test_create_root_rejects_bad_arguments(
    root_key: Ed25519PrivateKey, network: str, days: int, serial: int, error: type[Exception]
) -> None:
    with pytest.raises(error):
        create_root(root_key, NetworkId(network), now=NOW, days=days, serial=serial)


# --- enrolment requests --------------------------------------------------------------


def test_request_round_trip(org_key: Ed25519PrivateKey) -> None:
    created = create_enrolment_request(org_key, NET, ORG)
    loaded = load_enrolment_request(created.der)
    assert loaded == created
    assert (loaded.network, loaded.org) == (NET, ORG)
    assert loaded.public_key == org_key.public_key()
    csr = x509.load_der_x509_csr(created.der)
    assert csr.subject == _org_name(NET, ORG)


def test_request_bad_signature(org_key: Ed25519PrivateKey) -> None:
    der = create_enrolment_request(org_key, NET, ORG).der
    with pytest.raises(VerificationError, match="signature"):
        load_enrolment_request(_flip(der, len(der) - 1))


def test_request_key_swapped(org_key: Ed25519PrivateKey) -> None:
    """A request naming a key its signer does not hold fails proof of possession."""
    der = create_enrolment_request(org_key, NET, ORG).der
    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    own = org_key.public_key().public_bytes_raw()
    with pytest.raises(VerificationError, match="signature"):
        load_enrolment_request(der.replace(own, other))


def test_request_with_ec_key_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(_org_name(NET, ORG))
    der = csr.sign(key, SHA256()).public_bytes(Encoding.DER)
    with pytest.raises(VerificationError, match="Ed25519"):
        load_enrolment_request(der)


def _csr(key: Ed25519PrivateKey, name: x509.Name, extension: object = None) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(name)
    if extension is not None:
        builder = builder.add_extension(extension, critical=False)  # type: ignore[arg-type]
    return builder.sign(key, None).public_bytes(Encoding.DER)


def test_request_asking_for_roles_is_refused(org_key: Ed25519PrivateKey) -> None:
    der = _csr(org_key, _org_name(NET, ORG), x509.ExtendedKeyUsage([_role_oid(4)]))
    with pytest.raises(ValidationError, match="no attributes or extensions"):
        load_enrolment_request(der)


@pytest.mark.parametrize(
    "name",
    [
        _org_name(NET, "GGD Utrecht"),
        _org_name("Bad Net", ORG),
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ORG)]),
        x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, ORG),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, NET),
                x509.NameAttribute(NameOID.COUNTRY_NAME, "NL"),
            ]
        ),
    ],
)
def test_request_bad_names(org_key: Ed25519PrivateKey, name: x509.Name) -> None:
    with pytest.raises(ValidationError):
        load_enrolment_request(_csr(org_key, name))


def test_request_garbage_and_size() -> None:
    with pytest.raises(EncodingError):
        load_enrolment_request(b"\x30\x00")
    with pytest.raises(EncodingError, match="at most"):
        load_enrolment_request(b"\x30" * (MAX_CERT_BYTES + 1))


def test_create_request_validates_ids(org_key: Ed25519PrivateKey) -> None:
    with pytest.raises(ValidationError):
        create_enrolment_request(org_key, NET, OrgId("Not An Id"))


# --- issuing -------------------------------------------------------------------------


def test_issue_round_trip(
    org_key: Ed25519PrivateKey, root: RootCertificate, cert: Certificate
) -> None:
    assert (cert.network, cert.org, cert.serial) == (NET, ORG, 42)
    assert cert.roles == {ROLE_MEMBER, ROLE_COORDINATOR}
    assert cert.public_key == org_key.public_key()
    assert (cert.not_before, cert.not_after) == (NOW, NOW + 365 * DAY)
    assert cert.fingerprint == fingerprint(cert.der)
    assert verify_certificate(cert.der, root, now=NOW + DAY, crl=None) == cert


def test_issued_profile(root: RootCertificate, cert: Certificate) -> None:
    parsed = x509.load_der_x509_certificate(cert.der)
    category = x509.NameAttribute(NameOID.BUSINESS_CATEGORY, "other")
    assert parsed.subject == x509.Name([*_org_name(NET, ORG), category])
    assert parsed.issuer == _root_name(NET)
    ext = parsed.extensions
    constraints = ext.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    usage = ext.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value == _usage(cert_sign=False)
    eku = ext.get_extension_for_class(x509.ExtendedKeyUsage)
    assert not eku.critical
    assert list(eku.value) == [_role_oid(1), _role_oid(2)]
    san = ext.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        f"urn:schakel:{NET}:org:{ORG}"
    ]
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    root_ski = x509.load_der_x509_certificate(root.der).extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier
    )
    assert aki.key_identifier == root_ski.value.digest
    assert ext.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert len(ext) == 6


@pytest.mark.parametrize(("index", "role"), list(enumerate(ROLES, start=1)))
def test_each_role_has_its_oid(
    root_key: Ed25519PrivateKey,
    root: RootCertificate,
    request_: EnrolmentRequest,
    index: int,
    role: str,
) -> None:
    cert = issue_certificate(root_key, root, request_, {role}, now=NOW, days=1, serial=5)
    assert cert.roles == {role}
    eku = x509.load_der_x509_certificate(cert.der).extensions.get_extension_for_class(
        x509.ExtendedKeyUsage
    )
    assert list(eku.value) == [_role_oid(index)]


def test_issue_all_non_hub_roles(
    root_key: Ed25519PrivateKey, root: RootCertificate, request_: EnrolmentRequest
) -> None:
    roles = {ROLE_MEMBER, ROLE_COORDINATOR, ROLE_PRIVACY_OFFICER, ROLE_NETWORK_PRIVACY_OFFICER}
    cert = issue_certificate(root_key, root, request_, roles, now=NOW, days=1, serial=5)
    assert cert.roles == roles


def test_issue_validity_capped_at_root(
    root_key: Ed25519PrivateKey, root: RootCertificate, request_: EnrolmentRequest
) -> None:
    now = root.not_after - DAY
    cert = issue_certificate(root_key, root, request_, [ROLE_MEMBER], now=now, days=365, serial=5)
    assert cert.not_after == root.not_after


@pytest.mark.parametrize(
    ("roles", "match"),
    [
        ([], "at least one role"),
        (["admin"], "among"),
        ([ROLE_MEMBER, "admin"], "among"),
        ([ROLE_HUB, ROLE_MEMBER], "hub role"),
        ("member", "not one string"),
    ],
)
def test_issue_rejects_bad_roles(
    root_key: Ed25519PrivateKey,
    root: RootCertificate,
    request_: EnrolmentRequest,
    roles: list[str],
    match: str,
) -> None:
    with pytest.raises(ValidationError, match=match):
        issue_certificate(root_key, root, request_, roles, now=NOW, days=1, serial=5)


def test_issue_with_wrong_root_key(root: RootCertificate, request_: EnrolmentRequest) -> None:
    with pytest.raises(ValidationError, match="not the key of this root"):
        issue_certificate(
            Ed25519PrivateKey.generate(), root, request_, [ROLE_MEMBER], now=NOW, days=1, serial=5
        )


def test_issue_for_request_of_other_network(
    root_key: Ed25519PrivateKey, root: RootCertificate, org_key: Ed25519PrivateKey
) -> None:
    request = create_enrolment_request(org_key, NetworkId("net-other"), ORG)
    with pytest.raises(ValidationError, match="another network"):
        issue_certificate(root_key, root, request, [ROLE_MEMBER], now=NOW, days=1, serial=5)


@pytest.mark.parametrize(
    ("now", "serial"), [(NOW, 0), (NOW, -1), (NOW, 2**63), (NOW - 1, 5), (NOW + 3650 * DAY, 5)]
)
def test_issue_rejects_bad_serial_or_time(
    root_key: Ed25519PrivateKey,
    root: RootCertificate,
    request_: EnrolmentRequest,
    now: int,
    serial: int,
) -> None:
    with pytest.raises(ValidationError):
        issue_certificate(root_key, root, request_, [ROLE_MEMBER], now=now, days=1, serial=serial)


# --- verifying -----------------------------------------------------------------------


def test_verify_with_wrong_root(cert: Certificate) -> None:
    other = create_root(Ed25519PrivateKey.generate(), NET, now=NOW, days=10, serial=1)
    with pytest.raises(VerificationError, match="signature"):
        verify_certificate(cert.der, other, now=NOW, crl=None)


def test_verify_cert_of_another_network(cert: Certificate) -> None:
    other = create_root(
        Ed25519PrivateKey.generate(), NetworkId("net-other"), now=NOW, days=10, serial=1
    )
    with pytest.raises(VerificationError, match="not issued by this network root"):
        verify_certificate(cert.der, other, now=NOW, crl=None)


def test_verify_other_networks_cert_under_same_key() -> None:
    """The network name is checked even when one key signs two roots."""
    key = Ed25519PrivateKey.generate()
    root_a = create_root(key, NET, now=NOW, days=10, serial=1)
    root_b = create_root(key, NetworkId("net-other"), now=NOW, days=10, serial=1)
    request = create_enrolment_request(Ed25519PrivateKey.generate(), root_b.network, ORG)
    cert = issue_certificate(key, root_b, request, [ROLE_MEMBER], now=NOW, days=1, serial=3)
    with pytest.raises(VerificationError, match="not issued by this network root"):
        verify_certificate(cert.der, root_a, now=NOW, crl=None)


def test_verify_tampered_signature(root: RootCertificate, cert: Certificate) -> None:
    with pytest.raises(VerificationError, match="signature"):
        verify_certificate(_flip(cert.der, len(cert.der) - 1), root, now=NOW, crl=None)


def test_verify_tampered_org(root: RootCertificate, cert: Certificate) -> None:
    tampered = cert.der.replace(ORG.encode(), b"ggd-amsterd", 1)
    assert tampered != cert.der
    with pytest.raises(VerificationError, match="signature"):
        verify_certificate(tampered, root, now=NOW, crl=None)


@pytest.mark.parametrize("index", [10, 60, 120, 200, 300])
def test_verify_any_flipped_byte_is_refused(
    root: RootCertificate, cert: Certificate, index: int
) -> None:
    with pytest.raises((VerificationError, EncodingError)):
        verify_certificate(_flip(cert.der, index), root, now=NOW, crl=None)


@pytest.mark.parametrize("now", [NOW - 1, NOW + 365 * DAY + 1])
def test_verify_outside_validity(root: RootCertificate, cert: Certificate, now: int) -> None:
    with pytest.raises(VerificationError, match="not valid at this time"):
        verify_certificate(cert.der, root, now=now, crl=None)


def test_verify_root_presented_as_org(root: RootCertificate) -> None:
    with pytest.raises(VerificationError, match="certificate authority"):
        verify_certificate(root.der, root, now=NOW, crl=None)


def test_verify_ca_issued_by_root(root_key: Ed25519PrivateKey, root: RootCertificate) -> None:
    with pytest.raises(VerificationError, match="certificate authority"):
        verify_certificate(_forge_leaf(root_key, ca=True), root, now=NOW, crl=None)


def test_verify_forged_leaf_control(root_key: Ed25519PrivateKey, root: RootCertificate) -> None:
    """The forging helper makes a valid certificate when asked for no deviation."""
    cert = verify_certificate(_forge_leaf(root_key), root, now=NOW, crl=None)
    assert cert.roles == {ROLE_MEMBER}


def test_verify_ec_key_is_refused(root_key: Ed25519PrivateKey, root: RootCertificate) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(VerificationError, match="Ed25519"):
        verify_certificate(_forge_leaf(root_key, public_key=ec_key), root, now=NOW, crl=None)


@pytest.mark.parametrize(
    ("eku", "match"),
    [
        ([_role_oid(6)], "unknown role"),
        ([_role_oid(0)], "unknown role"),
        ([_role_oid(1), x509.ObjectIdentifier(f"{ROLE_OID_ARC}.1.1")], "unknown role"),
        ([_role_oid(1), _role_oid(5)], "hub role"),
        ([ExtendedKeyUsageOID.SERVER_AUTH], "at least one role"),
    ],
)
def test_verify_bad_role_oids(
    root_key: Ed25519PrivateKey,
    root: RootCertificate,
    eku: list[x509.ObjectIdentifier],
    match: str,
) -> None:
    with pytest.raises(VerificationError, match=match):
        verify_certificate(_forge_leaf(root_key, eku=eku), root, now=NOW, crl=None)


def test_verify_foreign_oids_are_ignored(
    root_key: Ed25519PrivateKey, root: RootCertificate
) -> None:
    der = _forge_leaf(root_key, eku=[ExtendedKeyUsageOID.CLIENT_AUTH, _role_oid(3)])
    assert verify_certificate(der, root, now=NOW, crl=None).roles == {ROLE_PRIVACY_OFFICER}


def test_verify_san_must_match(root_key: Ed25519PrivateKey, root: RootCertificate) -> None:
    der = _forge_leaf(root_key, san=f"urn:schakel:{NET}:org:politie")
    with pytest.raises(VerificationError, match="alternative name"):
        verify_certificate(der, root, now=NOW, crl=None)


def test_verify_bad_org_id(root_key: Ed25519PrivateKey, root: RootCertificate) -> None:
    der = _forge_leaf(root_key, org="GGD Utrecht")
    with pytest.raises(VerificationError, match="organisation id"):
        verify_certificate(der, root, now=NOW, crl=None)


def test_verify_unknown_critical_extension(
    root_key: Ed25519PrivateKey, root: RootCertificate
) -> None:
    extra = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4"), b"\x05\x00")
    der = _forge_leaf(root_key, extra=extra)
    with pytest.raises(VerificationError, match="unknown critical extension"):
        verify_certificate(der, root, now=NOW, crl=None)


def test_verify_garbage_and_size(root: RootCertificate) -> None:
    with pytest.raises(EncodingError):
        verify_certificate(b"not der", root, now=NOW, crl=None)
    with pytest.raises(EncodingError, match="at most"):
        verify_certificate(b"\x30" * (MAX_CERT_BYTES + 1), root, now=NOW, crl=None)


# --- revocation ----------------------------------------------------------------------


def test_crl_round_trip(root_key: Ed25519PrivateKey, root: RootCertificate) -> None:
    crl = create_crl(root_key, root, {42: NOW - DAY, 7: NOW}, number=3, now=NOW, days=7)
    assert dict(crl.revoked) == {7: NOW, 42: NOW - DAY}
    assert (crl.network, crl.number, crl.this_update, crl.next_update) == (
        NET,
        3,
        NOW,
        NOW + 7 * DAY,
    )
    assert load_crl(crl.der, root, now=NOW + DAY) == crl
    parsed = x509.load_der_x509_crl(crl.der)
    assert parsed.issuer == _root_name(NET)
    assert parsed.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 3


def test_crl_is_read_only(root_key: Ed25519PrivateKey, root: RootCertificate) -> None:
    crl = create_crl(root_key, root, {42: NOW}, number=1, now=NOW, days=7)
    with pytest.raises(TypeError):
        crl.revoked[1] = 2  # type: ignore[index]


def test_revoked_certificate(
    root_key: Ed25519PrivateKey, root: RootCertificate, cert: Certificate
) -> None:
    crl = create_crl(root_key, root, {cert.serial: NOW}, number=1, now=NOW, days=7)
    with pytest.raises(RevokedError):
        verify_certificate(cert.der, root, now=NOW, crl=crl)


def test_unrevoked_certificate_passes_with_crl(
    root_key: Ed25519PrivateKey, root: RootCertificate, cert: Certificate
) -> None:
    crl = create_crl(root_key, root, {cert.serial + 1: NOW}, number=1, now=NOW, days=7)
    assert verify_certificate(cert.der, root, now=NOW, crl=crl) == cert
    empty = create_crl(root_key, root, {}, number=2, now=NOW, days=7)
    assert empty.revoked == {}
    assert verify_certificate(cert.der, root, now=NOW, crl=empty) == cert


def test_crl_of_another_network_is_refused(cert: Certificate, root: RootCertificate) -> None:
    other_key = Ed25519PrivateKey.generate()
    other = create_root(other_key, NetworkId("net-other"), now=NOW, days=10, serial=1)
    crl = create_crl(other_key, other, {}, number=1, now=NOW, days=7)
    with pytest.raises(VerificationError, match="another network"):
        verify_certificate(cert.der, root, now=NOW, crl=crl)


def test_crl_signed_by_another_root(root_key: Ed25519PrivateKey, root: RootCertificate) -> None:
    other_key = Ed25519PrivateKey.generate()
    other = create_root(other_key, NET, now=NOW, days=10, serial=1)
    crl = create_crl(other_key, other, {}, number=1, now=NOW, days=7)
    with pytest.raises(VerificationError, match="not signed by this network root"):
        load_crl(crl.der, root, now=NOW)


def test_crl_expired(root_key: Ed25519PrivateKey, root: RootCertificate) -> None:
    crl = create_crl(root_key, root, {}, number=1, now=NOW, days=7)
    assert load_crl(crl.der, root, now=NOW + 7 * DAY - 1) == crl
    with pytest.raises(VerificationError, match="expired"):
        load_crl(crl.der, root, now=NOW + 7 * DAY)


def test_crl_tampered(root_key: Ed25519PrivateKey, root: RootCertificate) -> None:
    crl = create_crl(root_key, root, {42: NOW}, number=1, now=NOW, days=7)
    with pytest.raises(VerificationError):
        load_crl(_flip(crl.der, len(crl.der) - 1), root, now=NOW)


def test_crl_without_number(root_key: Ed25519PrivateKey, root: RootCertificate) -> None:
    der = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(_root_name(NET))
        .last_update(_utc(NOW))
        .next_update(_utc(NOW + DAY))
        .sign(root_key, None)
        .public_bytes(Encoding.DER)
    )
    with pytest.raises(VerificationError, match="CRL number"):
        load_crl(der, root, now=NOW)


def test_crl_garbage_and_size(root: RootCertificate) -> None:
    with pytest.raises(EncodingError):
        load_crl(b"\x30\x00", root, now=NOW)
    with pytest.raises(EncodingError, match="at most"):
        load_crl(b"\x30" * (MAX_CRL_BYTES + 1), root, now=NOW)


@pytest.mark.parametrize(
    ("revoked", "number", "key_ok"),
    [({0: NOW}, 1, True), ({5: -1}, 1, True), ({}, -1, True), ({}, 1, False)],
)
def test_create_crl_rejects_bad_arguments(
    root_key: Ed25519PrivateKey,
    root: RootCertificate,
    revoked: dict[int, int],
    number: int,
    key_ok: bool,
) -> None:
    key = root_key if key_ok else Ed25519PrivateKey.generate()
    with pytest.raises(ValidationError):
        create_crl(key, root, revoked, number=number, now=NOW, days=7)


# --- PEM -----------------------------------------------------------------------------


@pytest.mark.parametrize("label", ["CERTIFICATE", "CERTIFICATE REQUEST", "X509 CRL"])
def test_pem_round_trip(cert: Certificate, label: str) -> None:
    pem = pem_encode(cert.der, label)
    assert pem.startswith(f"-----BEGIN {label}-----\n".encode())
    assert pem.endswith(f"-----END {label}-----\n".encode())
    assert all(len(line) <= 64 for line in pem.split(b"\n"))
    assert pem_decode(pem, label) == cert.der
    assert pem_decode(pem.replace(b"\n", b"\r\n"), label) == cert.der


def test_pem_matches_cryptography(cert: Certificate) -> None:
    ours = pem_encode(cert.der, "CERTIFICATE")
    assert ours == x509.load_der_x509_certificate(cert.der).public_bytes(Encoding.PEM)


def _pem(body: str, label: str = "CERTIFICATE") -> bytes:
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n".encode()


@pytest.mark.parametrize(
    "pem",
    [
        _pem("AAEC", "X509 CRL"),
        _pem("AAEC") + _pem("AAEC"),
        b"junk\n" + _pem("AAEC"),
        _pem("AAEC") + b"junk\n",
        _pem("AA EC"),
        _pem("AAF="),
        _pem("AA==\nAAEC"),
        _pem("AAE"),
        _pem("AA-_"),
        _pem("A" * 68),
        _pem(""),
        "-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\u00e9".encode(),
        b"",
    ],
)
def test_pem_decode_rejects(pem: bytes) -> None:
    with pytest.raises(EncodingError):
        pem_decode(pem, "CERTIFICATE")


def test_pem_decode_accepts_minimal() -> None:
    assert pem_decode(_pem(base64.b64encode(b"\x00\x01\x02").decode()), "CERTIFICATE") == (
        b"\x00\x01\x02"
    )


def test_pem_bad_label() -> None:
    with pytest.raises(ValueError, match="label"):
        pem_encode(b"x", "certificate")


# --- organisation types ----------------------------------------------------------------


@pytest.mark.parametrize("org_type", ORG_TYPES)
def test_org_type_round_trips(
    root_key: Ed25519PrivateKey, root: RootCertificate, org_type: str
) -> None:
    request_ = create_enrolment_request(Ed25519PrivateKey.generate(), NET, ORG)
    cert = issue_certificate(
        root_key, root, request_, [ROLE_MEMBER], now=NOW, days=30, serial=3, org_type=org_type
    )
    assert cert.org_type == org_type
    assert verify_certificate(cert.der, root, now=NOW, crl=None).org_type == org_type


def test_unknown_org_type_is_not_issued(root_key: Ed25519PrivateKey, root: RootCertificate) -> None:
    request_ = create_enrolment_request(Ed25519PrivateKey.generate(), NET, ORG)
    with pytest.raises(ValidationError, match="organisation type"):
        issue_certificate(
            root_key, root, request_, [ROLE_MEMBER], now=NOW, days=30, serial=3, org_type="bank"
        )


def test_certificate_without_type_is_other(
    root_key: Ed25519PrivateKey, root: RootCertificate
) -> None:
    cert = verify_certificate(_forge_leaf(root_key), root, now=NOW, crl=None)
    assert cert.org_type == "other"


@pytest.mark.parametrize(
    "extra",
    [
        [x509.NameAttribute(NameOID.BUSINESS_CATEGORY, "bank")],
        [x509.NameAttribute(NameOID.BUSINESS_CATEGORY, "Police")],
        [
            x509.NameAttribute(NameOID.BUSINESS_CATEGORY, "police"),
            x509.NameAttribute(NameOID.BUSINESS_CATEGORY, "shelter"),
        ],
        [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "police")],
    ],
    ids=["unknown", "case", "twice", "other-attribute"],
)
def test_bad_org_type_is_refused(
    root_key: Ed25519PrivateKey, root: RootCertificate, extra: list[x509.NameAttribute]
) -> None:
    subject = x509.Name([*_org_name(NET, ORG), *extra])
    with pytest.raises(VerificationError):
        verify_certificate(_forge_leaf(root_key, subject=subject), root, now=NOW, crl=None)


def test_request_with_a_type_is_refused(org_key: Ed25519PrivateKey) -> None:
    category = x509.NameAttribute(NameOID.BUSINESS_CATEGORY, "police")
    der = _csr(org_key, x509.Name([*_org_name(NET, ORG), category]), None)
    with pytest.raises(ValidationError):
        load_enrolment_request(der)
