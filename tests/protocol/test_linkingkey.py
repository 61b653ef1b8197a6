"""Sealed linking keys of protocol.linkingkey."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.certificate import (
    ROLE_MEMBER,
    Certificate,
    RootCertificate,
    create_enrolment_request,
    create_root,
    issue_certificate,
)
from protocol.encoding import b64e, canonical_json, frame, loads_strict
from protocol.errors import EncodingError, ValidationError, VerificationError
from protocol.keybundle import KEM_SEED_BYTES, KeyBundle, kem_private_key, kem_public_bytes
from protocol.keybundle import sign_bundle as sign_key_bundle
from protocol.linkingkey import (
    ENC_BYTES,
    SealedLinkingKey,
    open_linking_key,
    seal_linking_key,
    verify_sealed_linking_key,
    wrap_info,
)
from protocol.pseudonym import LinkingKey
from protocol.types import Fingerprint, NetworkId, OrgId

NOW = 1_700_000_000
DAY = 86400
NET = NetworkId("net-utrecht")
ORG = OrgId("ggd-utrecht")
SECRET = hashlib.sha256(b"test linking key").digest()


def _seed(tag: bytes) -> bytes:
    return hashlib.shake_256(b"schakel test seed " + tag).digest(KEM_SEED_BYTES)


@pytest.fixture(scope="module")
def root_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def root(root_key: Ed25519PrivateKey) -> RootCertificate:
    return create_root(root_key, NET, now=NOW, days=3650, serial=1)


def _bundle(root_key: Ed25519PrivateKey, root: RootCertificate, org: str, tag: bytes) -> KeyBundle:
    key = Ed25519PrivateKey.generate()
    request = create_enrolment_request(key, root.network, OrgId(org))
    cert: Certificate = issue_certificate(
        root_key, root, request, [ROLE_MEMBER], now=NOW, days=365, serial=20
    )
    public = kem_public_bytes(_seed(tag))
    return sign_key_bundle(key, cert, public, not_before=NOW, not_after=NOW + 30 * DAY)


@pytest.fixture(scope="module")
def bundle(root_key: Ed25519PrivateKey, root: RootCertificate) -> KeyBundle:
    return _bundle(root_key, root, ORG, b"a")


@pytest.fixture(scope="module")
def sealed(root_key: Ed25519PrivateKey, bundle: KeyBundle) -> SealedLinkingKey:
    return seal_linking_key(
        LinkingKey(version=3, key=SECRET), bundle, root_key=root_key, network=NET
    )


@pytest.fixture(scope="module")
def kem_keys(bundle: KeyBundle) -> dict[Fingerprint, Any]:
    return {bundle.fingerprint: kem_private_key(_seed(b"a"))}


def _resign(sealed: SealedLinkingKey, key: Ed25519PrivateKey, **changes: Any) -> SealedLinkingKey:
    changed = dataclasses.replace(sealed, **changes)
    return dataclasses.replace(changed, sig=key.sign(changed.signed_bytes()))


# --- round trip ----------------------------------------------------------------------


def test_seal_and_open(
    sealed: SealedLinkingKey, root: RootCertificate, bundle: KeyBundle, kem_keys: dict[Any, Any]
) -> None:
    assert (sealed.network, sealed.org, sealed.version) == (NET, ORG, 3)
    assert sealed.bundle == bundle.fingerprint
    assert len(sealed.enc) == ENC_BYTES == 1168
    verify_sealed_linking_key(sealed, root)
    opened = open_linking_key(sealed, root, kem_keys)
    assert opened == LinkingKey(version=3, key=SECRET)
    assert SECRET.hex() not in repr(sealed) + repr(opened)


def test_wire_round_trip(sealed: SealedLinkingKey) -> None:
    wire = sealed.to_wire()
    assert wire == {
        "v": 1,
        "network": NET,
        "org": ORG,
        "version": 3,
        "bundle": sealed.bundle,
        "enc": b64e(sealed.enc),
        "sig": b64e(sealed.sig),
    }
    assert SealedLinkingKey.from_wire(loads_strict(canonical_json(wire))) == sealed


def test_signed_bytes(sealed: SealedLinkingKey) -> None:
    wire = sealed.to_wire()
    del wire["sig"]
    assert sealed.signed_bytes() == frame("schakel/linking-key/v1", canonical_json(wire))


def test_wrap_info_bytes() -> None:
    expected = (
        b"schakel/linking-key-wrap/v1\x00"
        + b"\x00\x00\x00\x0bnet-utrecht"
        + b"\x00\x00\x00\x0bggd-utrecht"
        + b"\x00\x00\x00\x04\x00\x00\x01\x02"
    )
    assert wrap_info(NET, ORG, 258) == expected


def test_each_seal_is_fresh(root_key: Ed25519PrivateKey, bundle: KeyBundle) -> None:
    key = LinkingKey(version=3, key=SECRET)
    first = seal_linking_key(key, bundle, root_key=root_key, network=NET)
    second = seal_linking_key(key, bundle, root_key=root_key, network=NET)
    assert first.enc != second.enc


# --- rejections ----------------------------------------------------------------------


def test_swapped_org_fails_signature(sealed: SealedLinkingKey, root: RootCertificate) -> None:
    swapped = dataclasses.replace(sealed, org=OrgId("politie-midden"))
    with pytest.raises(VerificationError, match="signature"):
        verify_sealed_linking_key(swapped, root)


@pytest.mark.parametrize(
    "change", [{"org": OrgId("politie-midden")}, {"version": 4}, {"network": NetworkId("net-x")}]
)
def test_info_binds_org_version_network(
    sealed: SealedLinkingKey,
    root_key: Ed25519PrivateKey,
    kem_keys: dict[Any, Any],
    change: dict[str, Any],
) -> None:
    """Even a blob the root re-signs does not open once org, version or network change."""
    changed = _resign(sealed, root_key, **change)
    network = changed.network
    root = create_root(root_key, network, now=NOW, days=10, serial=1)
    verify_sealed_linking_key(changed, root)
    with pytest.raises(VerificationError, match="could not be verified or opened"):
        open_linking_key(changed, root, kem_keys)


def test_tampered_enc(
    sealed: SealedLinkingKey,
    root: RootCertificate,
    root_key: Ed25519PrivateKey,
    kem_keys: dict[Any, Any],
) -> None:
    enc = sealed.enc[:-1] + bytes([sealed.enc[-1] ^ 1])
    tampered = dataclasses.replace(sealed, enc=enc)
    with pytest.raises(VerificationError, match="signature"):
        verify_sealed_linking_key(tampered, root)
    with pytest.raises(VerificationError, match="could not be verified or opened"):
        open_linking_key(tampered, root, kem_keys)
    resigned = _resign(sealed, root_key, enc=enc)
    with pytest.raises(VerificationError, match="could not be verified or opened"):
        open_linking_key(resigned, root, kem_keys)


def test_signed_by_wrong_root(
    sealed: SealedLinkingKey, root: RootCertificate, kem_keys: dict[Any, Any]
) -> None:
    impostor = Ed25519PrivateKey.generate()
    forged = _resign(sealed, impostor)
    with pytest.raises(VerificationError, match="signature"):
        verify_sealed_linking_key(forged, root)
    with pytest.raises(VerificationError, match="could not be verified or opened"):
        open_linking_key(forged, root, kem_keys)
    impostor_root = create_root(impostor, NET, now=NOW, days=10, serial=1)
    with pytest.raises(VerificationError, match="signature"):
        verify_sealed_linking_key(sealed, impostor_root)


def test_root_of_another_network(sealed: SealedLinkingKey, root_key: Ed25519PrivateKey) -> None:
    other = create_root(root_key, NetworkId("net-other"), now=NOW, days=10, serial=1)
    with pytest.raises(VerificationError, match="another network"):
        verify_sealed_linking_key(sealed, other)


def test_open_without_the_bundle_key(sealed: SealedLinkingKey, root: RootCertificate) -> None:
    with pytest.raises(VerificationError, match="could not be verified or opened"):
        open_linking_key(sealed, root, {})


def test_open_with_wrong_private_key(
    sealed: SealedLinkingKey, root: RootCertificate, bundle: KeyBundle
) -> None:
    wrong = {bundle.fingerprint: kem_private_key(_seed(b"other"))}
    with pytest.raises(VerificationError, match="could not be verified or opened"):
        open_linking_key(sealed, root, wrong)


def test_seal_rejects_bundle_of_other_network(
    root_key: Ed25519PrivateKey, bundle: KeyBundle
) -> None:
    with pytest.raises(ValidationError, match="another network"):
        seal_linking_key(
            LinkingKey(version=1, key=SECRET),
            bundle,
            root_key=root_key,
            network=NetworkId("net-other"),
        )


# --- strict wire parsing -------------------------------------------------------------


def _wire(sealed: SealedLinkingKey, **changes: Any) -> dict[str, Any]:
    wire = sealed.to_wire()
    wire.update(changes)
    return wire


def test_from_wire_extra_key(sealed: SealedLinkingKey) -> None:
    with pytest.raises(EncodingError, match="exactly"):
        SealedLinkingKey.from_wire(_wire(sealed, extra=None))


@pytest.mark.parametrize("key", ["v", "network", "org", "version", "bundle", "enc", "sig"])
def test_from_wire_missing_key(sealed: SealedLinkingKey, key: str) -> None:
    wire = sealed.to_wire()
    del wire[key]
    with pytest.raises(EncodingError, match="exactly"):
        SealedLinkingKey.from_wire(wire)


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"v": 2}, ValidationError, "version"),
        ({"v": True}, ValidationError, "version"),
        ({"version": "3"}, EncodingError, "integer"),
        ({"version": False}, EncodingError, "integer"),
        ({"version": -1}, ValidationError, "version"),
        ({"version": 2**31}, ValidationError, "version"),
        ({"version": 0}, ValidationError, "version"),
        ({"network": "NET"}, ValidationError, "network id"),
        ({"org": "-x"}, ValidationError, "organisation id"),
        ({"bundle": "x" * 42}, ValidationError, "fingerprint"),
        ({"enc": b64e(b"\x00" * (ENC_BYTES - 1))}, ValidationError, "1168 bytes"),
        ({"enc": b64e(b"\x00" * (ENC_BYTES + 1))}, EncodingError, "too long"),
        ({"sig": b64e(b"\x00" * 63)}, ValidationError, "64 bytes"),
        ({"sig": "not base64!"}, EncodingError, "base64url"),
    ],
)
def test_from_wire_rejects(
    sealed: SealedLinkingKey, changes: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        SealedLinkingKey.from_wire(_wire(sealed, **changes))


@pytest.mark.parametrize("data", [None, [], "sealed"])
def test_from_wire_not_an_object(data: object) -> None:
    with pytest.raises(EncodingError):
        SealedLinkingKey.from_wire(data)
