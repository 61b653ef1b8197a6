"""Key bundles of protocol.keybundle: KEM keys, signing, verifying, wire form."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import pickle
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.certificate import (
    ROLE_MEMBER,
    Certificate,
    RootCertificate,
    create_enrolment_request,
    create_root,
    issue_certificate,
)
from protocol.encoding import b64d, b64e, canonical_json, fingerprint, frame, loads_strict
from protocol.errors import EncodingError, ValidationError, VerificationError
from protocol.keybundle import (
    KEM_NAME,
    KEM_PUBLIC_KEY_BYTES,
    KEM_SEED_BYTES,
    SUITE,
    KeyBundle,
    kem_private_key,
    kem_public_bytes,
    sign_bundle,
    verify_bundle,
)
from protocol.types import NetworkId, OrgId

NOW = 1_700_000_000
DAY = 86400
NET = NetworkId("net-utrecht")
NOT_BEFORE = NOW
NOT_AFTER = NOW + 30 * DAY


def _seed(tag: bytes) -> bytes:
    """A deterministic 96-byte test seed (test key material, made here)."""
    return hashlib.shake_256(b"schakel test seed " + tag).digest(KEM_SEED_BYTES)


@pytest.fixture(scope="module")
def root_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def root(root_key: Ed25519PrivateKey) -> RootCertificate:
    return create_root(root_key, NET, now=NOW, days=3650, serial=1)


def _enrol(
    root_key: Ed25519PrivateKey, root: RootCertificate, org: str, serial: int
) -> tuple[Ed25519PrivateKey, Certificate]:
    key = Ed25519PrivateKey.generate()
    request = create_enrolment_request(key, NET, OrgId(org))
    cert = issue_certificate(
        root_key, root, request, [ROLE_MEMBER], now=NOW, days=365, serial=serial
    )
    return key, cert


@pytest.fixture(scope="module")
def org_a(
    root_key: Ed25519PrivateKey, root: RootCertificate
) -> tuple[Ed25519PrivateKey, Certificate]:
    return _enrol(root_key, root, "ggd-utrecht", 10)


@pytest.fixture(scope="module")
def org_b(
    root_key: Ed25519PrivateKey, root: RootCertificate
) -> tuple[Ed25519PrivateKey, Certificate]:
    return _enrol(root_key, root, "politie-midden", 11)


@pytest.fixture(scope="module")
def bundle(org_a: tuple[Ed25519PrivateKey, Certificate]) -> KeyBundle:
    key, cert = org_a
    public = kem_public_bytes(_seed(b"a"))
    return sign_bundle(key, cert, public, not_before=NOT_BEFORE, not_after=NOT_AFTER)


# --- KEM keys ------------------------------------------------------------------------


def test_kem_public_bytes_layout() -> None:
    seed = _seed(b"layout")
    public = kem_public_bytes(seed)
    assert len(public) == KEM_PUBLIC_KEY_BYTES == 1216
    mlkem_public = mlkem.MLKEM768PrivateKey.from_seed_bytes(seed[:64]).public_key()
    x_public = x25519.X25519PrivateKey.from_private_bytes(seed[64:]).public_key()
    assert public == mlkem_public.public_bytes_raw() + x_public.public_bytes_raw()
    assert kem_public_bytes(seed) == public  # deterministic


def test_kem_seal_and_open(bundle: KeyBundle) -> None:
    ciphertext = SUITE.encrypt(b"k" * 32, bundle.hpke_public_key(), info=b"info")
    assert SUITE.decrypt(ciphertext, kem_private_key(_seed(b"a")), info=b"info") == b"k" * 32


def test_kem_other_seed_can_not_open(bundle: KeyBundle) -> None:
    ciphertext = SUITE.encrypt(b"k" * 32, bundle.hpke_public_key(), info=b"info")
    with pytest.raises(InvalidTag):
        SUITE.decrypt(ciphertext, kem_private_key(_seed(b"b")), info=b"info")


@pytest.mark.parametrize("seed", [b"", b"\x00" * 95, b"\x00" * 97, "x" * 96])
def test_kem_bad_seed(seed: Any) -> None:
    with pytest.raises(ValidationError, match="96 bytes"):
        kem_private_key(seed)
    with pytest.raises(ValidationError, match="96 bytes"):
        kem_public_bytes(seed)


# --- signing and verifying -----------------------------------------------------------


def test_sign_and_verify(bundle: KeyBundle, org_a: tuple[Ed25519PrivateKey, Certificate]) -> None:
    _, cert = org_a
    assert (bundle.network, bundle.org, bundle.cert) == (NET, cert.org, cert.fingerprint)
    verify_bundle(bundle, cert, now=NOW)
    verify_bundle(bundle, cert, now=NOT_AFTER - 1)


def test_signed_bytes(bundle: KeyBundle) -> None:
    wire = bundle.to_wire()
    del wire["sig"]
    assert bundle.signed_bytes() == frame("schakel/key-bundle/v1", canonical_json(wire))
    assert bundle.signed_bytes().startswith(b"schakel/key-bundle/v1\x00")


def test_fingerprint(bundle: KeyBundle) -> None:
    assert bundle.fingerprint == fingerprint(canonical_json(bundle.to_wire()))
    other = dataclasses.replace(bundle, not_after=NOT_AFTER + 1)
    assert other.fingerprint != bundle.fingerprint


def test_wire_round_trip(bundle: KeyBundle) -> None:
    wire = bundle.to_wire()
    assert wire == {
        "v": 1,
        "network": NET,
        "org": bundle.org,
        "kem": KEM_NAME,
        "public_key": b64e(bundle.public_key),
        "not_before": NOT_BEFORE,
        "not_after": NOT_AFTER,
        "cert": bundle.cert,
        "sig": b64e(bundle.sig),
    }
    assert KeyBundle.from_wire(loads_strict(canonical_json(wire))) == bundle


@pytest.mark.parametrize("now", [NOT_BEFORE - 1, NOT_AFTER, NOT_AFTER + DAY])
def test_verify_outside_validity(
    bundle: KeyBundle, org_a: tuple[Ed25519PrivateKey, Certificate], now: int
) -> None:
    with pytest.raises(VerificationError, match="not valid at this time"):
        verify_bundle(bundle, org_a[1], now=now)


def test_verify_with_another_orgs_certificate(
    bundle: KeyBundle, org_b: tuple[Ed25519PrivateKey, Certificate]
) -> None:
    with pytest.raises(VerificationError, match="another organisation"):
        verify_bundle(bundle, org_b[1], now=NOW)


def test_bundle_signed_by_another_orgs_key(
    org_a: tuple[Ed25519PrivateKey, Certificate], org_b: tuple[Ed25519PrivateKey, Certificate]
) -> None:
    """Org A's key signs a bundle that claims to be org B's: the signature fails."""
    key_a, _ = org_a
    _, cert_b = org_b
    honest = sign_bundle(
        org_b[0], cert_b, kem_public_bytes(_seed(b"b")), not_before=NOW, not_after=NOT_AFTER
    )
    forged = dataclasses.replace(honest, public_key=kem_public_bytes(_seed(b"evil")))
    forged = dataclasses.replace(forged, sig=key_a.sign(forged.signed_bytes()))
    with pytest.raises(VerificationError, match="signature"):
        verify_bundle(forged, cert_b, now=NOW)


def test_sign_with_key_not_matching_certificate(
    org_a: tuple[Ed25519PrivateKey, Certificate], org_b: tuple[Ed25519PrivateKey, Certificate]
) -> None:
    with pytest.raises(ValidationError, match="does not match"):
        sign_bundle(
            org_a[0], org_b[1], kem_public_bytes(_seed(b"a")), not_before=NOW, not_after=NOT_AFTER
        )


def test_verify_with_other_certificate_of_same_org(
    root_key: Ed25519PrivateKey, root: RootCertificate, bundle: KeyBundle
) -> None:
    _, newer = _enrol(root_key, root, bundle.org, 12)
    with pytest.raises(VerificationError, match="another certificate"):
        verify_bundle(bundle, newer, now=NOW)


def test_verify_other_network(bundle: KeyBundle) -> None:
    other_key = Ed25519PrivateKey.generate()
    other_root = create_root(other_key, NetworkId("net-other"), now=NOW, days=10, serial=1)
    request = create_enrolment_request(Ed25519PrivateKey.generate(), other_root.network, bundle.org)
    cert = issue_certificate(
        other_key, other_root, request, [ROLE_MEMBER], now=NOW, days=1, serial=2
    )
    with pytest.raises(VerificationError, match="another organisation"):
        verify_bundle(bundle, cert, now=NOW)


@pytest.mark.parametrize(
    "change",
    [
        {"public_key": kem_public_bytes(_seed(b"swap"))},
        {"not_after": NOT_AFTER + DAY},
        {"not_before": NOT_BEFORE - DAY},
    ],
)
def test_verify_tampered_fields(
    bundle: KeyBundle, org_a: tuple[Ed25519PrivateKey, Certificate], change: dict[str, Any]
) -> None:
    with pytest.raises(VerificationError, match="signature"):
        verify_bundle(dataclasses.replace(bundle, **change), org_a[1], now=NOW)


def test_verify_tampered_signature(
    bundle: KeyBundle, org_a: tuple[Ed25519PrivateKey, Certificate]
) -> None:
    sig = bytes([bundle.sig[0] ^ 1]) + bundle.sig[1:]
    with pytest.raises(VerificationError, match="signature"):
        verify_bundle(dataclasses.replace(bundle, sig=sig), org_a[1], now=NOW)


@pytest.mark.parametrize(
    ("not_before", "not_after"), [(NOW, NOW), (NOW + 1, NOW), (-1, NOW), (NOW, 2**53)]
)
def test_sign_rejects_bad_period(
    org_a: tuple[Ed25519PrivateKey, Certificate], not_before: int, not_after: int
) -> None:
    key, cert = org_a
    with pytest.raises(ValidationError):
        sign_bundle(
            key, cert, kem_public_bytes(_seed(b"a")), not_before=not_before, not_after=not_after
        )


def test_sign_rejects_bad_kem_key(org_a: tuple[Ed25519PrivateKey, Certificate]) -> None:
    key, cert = org_a
    with pytest.raises(ValidationError, match="1216 bytes"):
        sign_bundle(key, cert, b"\x00" * 1215, not_before=NOW, not_after=NOT_AFTER)


# --- strict wire parsing -------------------------------------------------------------


def _wire(bundle: KeyBundle, **changes: Any) -> dict[str, Any]:
    wire = bundle.to_wire()
    wire.update(changes)
    return wire


def test_from_wire_extra_key(bundle: KeyBundle) -> None:
    with pytest.raises(EncodingError, match="exactly"):
        KeyBundle.from_wire(_wire(bundle, extra=1))


@pytest.mark.parametrize(
    "key", ["v", "network", "org", "kem", "public_key", "not_before", "not_after", "cert", "sig"]
)
def test_from_wire_missing_key(bundle: KeyBundle, key: str) -> None:
    wire = bundle.to_wire()
    del wire[key]
    with pytest.raises(EncodingError, match="exactly"):
        KeyBundle.from_wire(wire)


@pytest.mark.parametrize("data", [None, [], "bundle", 1])
def test_from_wire_not_an_object(data: object) -> None:
    with pytest.raises(EncodingError):
        KeyBundle.from_wire(data)


def _x25519_part(bundle: KeyBundle) -> bytes:
    return bundle.public_key[1184:]


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"v": 2}, ValidationError, "version"),
        ({"v": True}, ValidationError, "version"),
        ({"v": "1"}, ValidationError, "version"),
        ({"kem": "X25519"}, ValidationError, "KEM"),
        ({"network": "Net"}, ValidationError, "network id"),
        ({"org": "a"}, ValidationError, "organisation id"),
        ({"org": 5}, ValidationError, "organisation id"),
        ({"cert": "abc"}, ValidationError, "fingerprint"),
        ({"not_before": "1"}, EncodingError, "integer"),
        ({"not_after": 1.5}, EncodingError, "integer"),
        ({"not_after": True}, EncodingError, "integer"),
        ({"not_before": -1}, ValidationError, "not_before"),
        ({"not_after": 2**53}, ValidationError, "not_after"),
        ({"not_before": NOT_AFTER}, ValidationError, "before"),
        ({"public_key": b64e(b"\x00" * 1215)}, ValidationError, "1216 bytes"),
        ({"public_key": b64e(b"\x00" * 1217)}, EncodingError, "too long"),
        ({"public_key": b64e(b"\xff" * 1216)}, ValidationError, "not a valid"),
        ({"public_key": 5}, EncodingError, "base64url"),
        ({"sig": b64e(b"\x00" * 63)}, ValidationError, "64 bytes"),
        ({"sig": b64e(b"\x00" * 65)}, EncodingError, "too long"),
        ({"sig": b64e(b"\x00" * 64) + "="}, EncodingError, "base64url"),
    ],
)
def test_from_wire_rejects(
    bundle: KeyBundle, changes: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        KeyBundle.from_wire(_wire(bundle, **changes))


def test_from_wire_rejects_low_order_x25519(bundle: KeyBundle) -> None:
    public = bundle.public_key[:1184] + b"\x00" * 32
    with pytest.raises(ValidationError, match="not a valid"):
        KeyBundle.from_wire(_wire(bundle, public_key=b64e(public)))


def test_construction_validates(bundle: KeyBundle) -> None:
    with pytest.raises(ValidationError):
        dataclasses.replace(bundle, org=OrgId("Bad Org"))
    with pytest.raises(ValidationError):
        dataclasses.replace(bundle, sig=b"")


def test_hpke_public_key_matches_wire(bundle: KeyBundle) -> None:
    """The wire key decoded by from_wire seals to the seed's private key."""
    parsed = KeyBundle.from_wire(bundle.to_wire())
    assert b64d(bundle.to_wire()["public_key"]) == parsed.public_key
    ciphertext = SUITE.encrypt(b"x", parsed.hpke_public_key(), info=b"")
    assert SUITE.decrypt(ciphertext, kem_private_key(_seed(b"a")), info=b"") == b"x"


def test_the_key_and_fingerprint_worked_out_once_follow_the_fields(bundle: KeyBundle) -> None:
    """Made once, when the bundle is made: a copy, a pickle or a replaced field makes them
    again from the fields, and they play no part in equality."""
    assert bundle.fingerprint == fingerprint(canonical_json(bundle.to_wire()))
    for again in (copy.copy(bundle), copy.deepcopy(bundle), pickle.loads(pickle.dumps(bundle))):
        assert again == bundle and again.fingerprint == bundle.fingerprint
        assert again.hpke_public_key() is not bundle.hpke_public_key()  # made anew
    later = dataclasses.replace(bundle, not_after=bundle.not_after + 1)
    assert later != bundle
    assert later.fingerprint == fingerprint(canonical_json(later.to_wire())) != bundle.fingerprint
    assert "_hpke_key" not in repr(bundle) and "_fingerprint" not in repr(bundle)
