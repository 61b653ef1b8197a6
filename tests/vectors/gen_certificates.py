"""Certificate conformance vectors: the X.509 profile of docs/protocol.md, valid and invalid.

``generate()`` returns the content of ``tests/vectors/certificates.json``. Every key
comes from a fixed seed and Ed25519 signatures are deterministic, so the file is the
same on every run. Each invalid case breaks exactly one rule of the profile: it is
built like a valid certificate and signed by the root key (unless the signature is the
rule it breaks), so a verifier that skips that one check accepts it.

Shape of the result::

    {"network", "now",
     "root": {"ed25519_seed", "certificate"},       # the pinned root (base64url)
     "crl": <base64url DER>,                          # lists the serial of the revoked case
     "certificates": [{"name", "der", "expected", "rule", ...}],
     "requests": [{"name", "der", "expected", "rule", ...}],
     "roots": [{"name", "der", "expected", "rule"}]}

``expected`` is ``valid``, ``invalid`` (the object does not parse, or a check of the
profile refuses it) or, for certificates only, ``revoked`` (valid, but the CRL lists
its serial). A valid certificate also gives ``org``, ``org_type``, ``roles`` (in the
profile's order), ``serial`` and ``fingerprint``; a valid request ``org`` and
``network``. ``rule`` names the check concerned, as docs/protocol.md numbers them for
certificates ("7 subject", ...) and names them for requests and roots.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from protocol.certificate import (
    ROLE_OID_ARC,
    ROLES,
    RootCertificate,
    _key_usage,
    create_crl,
    create_enrolment_request,
    create_root,
    issue_certificate,
)
from protocol.encoding import b64e, fingerprint
from protocol.types import NetworkId, OrgId

NETWORK = NetworkId("schakel-test")
OTHER_NETWORK = "schakel-other"
NOW = 1_767_225_600  # 2026-01-01T00:00:00Z
DAY = 86400
ROOT_DAYS = 3650
CERT_DAYS = 365
ORG = "ggd-west"
REVOKED_SERIAL = 40

DESCRIPTION = (
    "Schakel certificate vectors (docs/protocol.md, 'Certificates'). Load the root at "
    "`now`; verify every certificate against it at `now` without a CRL, and the revoked "
    "one also with `crl`; load every request and root. Each invalid case breaks one rule."
)


def _seed(label: str) -> bytes:
    return hashlib.sha256(f"schakel-vectors/certificates/{label}".encode()).digest()


def _key(label: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(_seed(label))


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _attr(oid: x509.ObjectIdentifier, value: str, printable: bool = False) -> x509.NameAttribute:
    if printable:
        return x509.NameAttribute(oid, value, _type=_ASN1Type.PrintableString)
    return x509.NameAttribute(oid, value)


def _cn(value: str, printable: bool = False) -> x509.NameAttribute:
    return _attr(NameOID.COMMON_NAME, value, printable)


def _o(value: str, printable: bool = False) -> x509.NameAttribute:
    return _attr(NameOID.ORGANIZATION_NAME, value, printable)


def _category(value: str) -> x509.NameAttribute:
    return _attr(NameOID.BUSINESS_CATEGORY, value)


def _name(*attributes: x509.NameAttribute) -> x509.Name:
    return x509.Name(list(attributes))


ROOT_NAME = _name(_cn(f"Schakel network root {NETWORK}"), _o(NETWORK))


def _role_oid(number: int) -> x509.ObjectIdentifier:
    return x509.ObjectIdentifier(f"{ROLE_OID_ARC}.{number}")


def _der(cert: x509.Certificate | x509.CertificateSigningRequest) -> bytes:
    return cert.public_bytes(Encoding.DER)


# --- organisation certificates built by hand ----------------------------------------------


def _forge(
    root_key: Ed25519PrivateKey,
    label: str,
    *,
    subject: x509.Name | None = None,
    issuer: x509.Name = ROOT_NAME,
    public_key: Any = None,
    serial: int = 30,
    not_before: int = NOW,
    not_after: int = NOW + CERT_DAYS * DAY,
    ca: bool = False,
    roles: list[x509.ObjectIdentifier] | None = None,
    san: str = f"urn:schakel:{NETWORK}:org:{ORG}",
    critical: x509.ExtensionType | None = None,
    signer: Ed25519PrivateKey | None = None,
) -> bytes:
    """An organisation certificate in the profile, but for the one argument a case changes."""
    key = public_key if public_key is not None else _key(f"org/{label}").public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject or _name(_cn(ORG), _o(NETWORK), _category("ggd")))
        .issuer_name(issuer)
        .public_key(key)
        .serial_number(serial)
        .not_valid_before(_utc(not_before))
        .not_valid_after(_utc(not_after))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(_key_usage(cert_sign=ca), critical=True)
        .add_extension(x509.ExtendedKeyUsage(roles or [_role_oid(1)]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(san)]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
            critical=False,
        )
    )
    if critical is not None:
        builder = builder.add_extension(critical, critical=True)
    return _der(builder.sign(signer or root_key, None))


def _valid(name: str, der: bytes, **fields: Any) -> dict[str, Any]:
    return {"name": name, "der": b64e(der), "expected": "valid", **fields}


def _invalid(name: str, der: bytes, rule: str, expected: str = "invalid") -> dict[str, Any]:
    return {"name": name, "der": b64e(der), "expected": expected, "rule": rule}


def _issued(
    root_key: Ed25519PrivateKey,
    root: RootCertificate,
    name: str,
    org: str,
    roles: list[str],
    org_type: str,
    serial: int,
) -> dict[str, Any]:
    """A certificate made by the issuing code, as the authority makes them."""
    request = create_enrolment_request(_key(f"org/{name}"), NETWORK, OrgId(org))
    cert = issue_certificate(
        root_key, root, request, roles, now=NOW, days=CERT_DAYS, serial=serial, org_type=org_type
    )
    return _valid(
        name,
        cert.der,
        org=org,
        org_type=org_type,
        roles=[role for role in ROLES if role in roles],
        serial=serial,
        fingerprint=cert.fingerprint,
        rule="issued by the authority",
    )


def _forged_valid(
    name: str, der: bytes, fields: tuple[int, str, list[str]], rule: str
) -> dict[str, Any]:
    """A valid certificate built by hand for ``ORG``: (serial, org type, roles)."""
    serial, org_type, roles = fields
    return _valid(
        name,
        der,
        org=ORG,
        org_type=org_type,
        roles=roles,
        serial=serial,
        fingerprint=fingerprint(der),
        rule=rule,
    )


def _valid_certificates(root_key: Ed25519PrivateKey, root: RootCertificate) -> list[dict[str, Any]]:
    forged_without_type = _forge(
        root_key, "no-type", subject=_name(_cn(ORG), _o(NETWORK)), serial=20
    )
    foreign_usage = _forge(
        root_key, "foreign-eku", roles=[ExtendedKeyUsageOID.CLIENT_AUTH, _role_oid(2)], serial=21
    )
    return [
        _issued(root_key, root, "member-police", "politie-zuid", ["member"], "police", 2),
        _issued(
            root_key,
            root,
            "coordinator-privacy-officer",
            "coordinatie-west",
            ["coordinator", "privacy_officer"],
            "coordination",
            3,
        ),
        _issued(root_key, root, "hub", "hub", ["hub"], "other", 4),
        _forged_valid(
            "subject-without-business-category",
            forged_without_type,
            (20, "other", ["member"]),
            "7 subject: businessCategory is optional",
        ),
        _forged_valid(
            "role-oids-outside-the-arc-are-ignored",
            foreign_usage,
            (21, "ggd", ["coordinator"]),
            "9 roles",
        ),
    ]


def _subject_cases(forge: Callable[..., bytes]) -> list[dict[str, Any]]:
    rule = "7 subject"
    subjects = {
        "subject-order-o-cn": _name(_o(NETWORK), _cn(ORG), _category("ggd")),
        "subject-order-cn-category-o": _name(_cn(ORG), _category("ggd"), _o(NETWORK)),
        "subject-order-category-first": _name(_category("ggd"), _cn(ORG), _o(NETWORK)),
        "subject-order-o-cn-without-category": _name(_o(NETWORK), _cn(ORG)),
        "subject-cn-printable-string": _name(_cn(ORG, True), _o(NETWORK), _category("ggd")),
        "subject-o-printable-string": _name(_cn(ORG), _o(NETWORK, True), _category("ggd")),
        "subject-multi-valued-rdn": x509.Name(
            [
                x509.RelativeDistinguishedName([_cn(ORG), _o(NETWORK)]),
                x509.RelativeDistinguishedName([_category("ggd")]),
            ]
        ),
        "subject-extra-attribute": _name(
            _cn(ORG), _o(NETWORK), _category("ggd"), _attr(NameOID.COUNTRY_NAME, "NL")
        ),
        "subject-organizational-unit": _name(
            _cn(ORG), _o(NETWORK), _attr(NameOID.ORGANIZATIONAL_UNIT_NAME, "ggd")
        ),
        "subject-category-twice": _name(_cn(ORG), _o(NETWORK), _category("ggd"), _category("care")),
        "subject-category-unknown": _name(_cn(ORG), _o(NETWORK), _category("bank")),
        "subject-category-upper-case": _name(_cn(ORG), _o(NETWORK), _category("GGD")),
        "subject-cn-missing": _name(_o(NETWORK), _category("ggd")),
        "subject-cn-twice": _name(_cn(ORG), _cn(ORG), _o(NETWORK)),
    }
    cases = [
        _invalid(name, forge(name, subject=subject), rule) for name, subject in subjects.items()
    ]
    for name, org, network in (
        ("subject-cn-not-an-org-id", "GGD-West", NETWORK),
        ("subject-o-other-network", ORG, OTHER_NETWORK),
    ):
        subject = _name(_cn(org), _o(network), _category("ggd"))
        der = forge(name, subject=subject, san=f"urn:schakel:{network}:org:{org}")
        cases.append(_invalid(name, der, rule))
    return cases


def _other_cases(root_key: Ed25519PrivateKey, forge: Callable[..., bytes]) -> list[dict[str, Any]]:
    p256 = ec.derive_private_key(int.from_bytes(_seed("p256"), "big"), ec.SECP256R1())
    arc = [_role_oid(n) for n in (1, 5)]
    issuer_printable = _name(_cn(f"Schakel network root {NETWORK}", True), _o(NETWORK))
    return [
        _invalid("not-der", b"\x30\x03\x02\x01\x01", "1 DER"),
        _invalid("issuer-printable-string", forge("issuer", issuer=issuer_printable), "2 issuer"),
        _invalid(
            "signed-by-another-key", forge("signer", signer=_key("not-the-root")), "3 signature"
        ),
        _invalid("subject-key-p256", forge("p256", public_key=p256.public_key()), "4 key"),
        _invalid(
            "expired", forge("expired", not_before=NOW - 30 * DAY, not_after=NOW - 1), "5 validity"
        ),
        _invalid("not-yet-valid", forge("early", not_before=NOW + 1), "5 validity"),
        _invalid("certificate-authority", forge("ca", ca=True), "6 extensions"),
        _invalid(
            "unknown-critical-extension",
            forge("critical", critical=x509.OCSPNoCheck()),
            "6 extensions",
        ),
        _invalid(
            "san-other-org",
            forge("san", san=f"urn:schakel:{NETWORK}:org:ggd-oost"),
            "8 subject alternative name",
        ),
        _invalid("no-role", forge("no-role", roles=[ExtendedKeyUsageOID.CLIENT_AUTH]), "9 roles"),
        _invalid("unknown-role-oid", forge("unknown-role", roles=[_role_oid(6)]), "9 roles"),
        _invalid("hub-with-member", forge("hub-member", roles=arc), "9 roles"),
        _invalid("serial-too-large", forge("serial", serial=2**63), "10 serial"),
        _invalid("revoked", forge("revoked", serial=REVOKED_SERIAL), "11 revocation", "revoked"),
    ]


# --- requests and roots -------------------------------------------------------------------


def _request(label: str, name: x509.Name, extension: x509.ExtensionType | None = None) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(name)
    if extension is not None:
        builder = builder.add_extension(extension, critical=False)
    return _der(builder.sign(_key(f"request/{label}"), None))


def _requests() -> list[dict[str, Any]]:
    request = create_enrolment_request(_key("request/valid"), NETWORK, OrgId(ORG))
    cases = {
        "order-o-cn": _name(_o(NETWORK), _cn(ORG)),
        "with-business-category": _name(_cn(ORG), _o(NETWORK), _category("ggd")),
        "cn-printable-string": _name(_cn(ORG, True), _o(NETWORK)),
        "extra-attribute": _name(_cn(ORG), _o(NETWORK), _attr(NameOID.COUNTRY_NAME, "NL")),
    }
    return [
        _valid("request", request.der, org=ORG, network=NETWORK, rule="subject"),
        *(_invalid(name, _request(name, subject), "subject") for name, subject in cases.items()),
        _invalid(
            "asks-for-a-role",
            _request("role", _name(_cn(ORG), _o(NETWORK)), x509.ExtendedKeyUsage([_role_oid(2)])),
            "attributes",
        ),
    ]


def _root(label: str, name: x509.Name) -> bytes:
    key = _key(f"root/{label}")
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(_utc(NOW))
        .not_valid_after(_utc(NOW + ROOT_DAYS * DAY))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    return _der(builder.sign(key, None))


def _roots(root: RootCertificate) -> list[dict[str, Any]]:
    common_name = f"Schakel network root {NETWORK}"
    cases = {
        "order-o-cn": _name(_o(NETWORK), _cn(common_name)),
        "cn-printable-string": _name(_cn(common_name, True), _o(NETWORK)),
        "with-business-category": _name(_cn(common_name), _o(NETWORK), _category("other")),
    }
    return [
        _valid("root", root.der, rule="subject"),
        _valid("root-built-by-hand", _root("by-hand", ROOT_NAME), rule="subject"),
        *(_invalid(name, _root(name, subject), "subject") for name, subject in cases.items()),
    ]


# --- the file -----------------------------------------------------------------------------


def generate() -> dict[str, Any]:
    root_key = _key("root")
    root = create_root(root_key, NETWORK, now=NOW - DAY, days=ROOT_DAYS, serial=1)

    def forge(label: str, **changes: Any) -> bytes:
        return _forge(root_key, label, **changes)

    crl = create_crl(root_key, root, {REVOKED_SERIAL: NOW - DAY}, number=1, now=NOW, days=30)
    return {
        "description": DESCRIPTION,
        "network": NETWORK,
        "now": NOW,
        "root": {
            "ed25519_seed": b64e(
                root_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
            ),
            "certificate": b64e(root.der),
        },
        "crl": b64e(crl.der),
        "certificates": [
            *_valid_certificates(root_key, root),
            *_subject_cases(forge),
            *_other_cases(root_key, forge),
        ],
        "requests": _requests(),
        "roots": _roots(root),
    }
