"""An organisation's and the hub's key directories."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from keys.authority import Authority
from keys.errors import KeyFileError, KeyStoreError
from keys.hub import HubKeys
from keys.keyfile import KdfParams
from keys.organisation import OrgKeys
from protocol.certificate import create_enrolment_request, pem_encode
from protocol.encoding import canonical_json, fingerprint
from protocol.errors import VerificationError
from protocol.keybundle import kem_public_bytes, verify_bundle
from protocol.linkingkey import SealedLinkingKey
from protocol.types import NetworkId, OrgId

WEAK = KdfParams.for_tests()
PASS = b"organisation passphrase"
NET = NetworkId("region-west")
NOW = 1_750_000_000
DAY = 86400


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    return Authority.create(
        tmp_path / "authority", NET, b"root pass", WEAK, now=NOW, allow_weak=True
    )


def _org(tmp_path: Path, org: str = "police", network: NetworkId = NET) -> OrgKeys:
    return OrgKeys.create(tmp_path / org, network, OrgId(org), PASS, WEAK, allow_weak=True)


def _enrolled(tmp_path: Path, authority: Authority, org: str = "police") -> OrgKeys:
    keys = _org(tmp_path, org)
    keys.pin_root(authority.root.der, now=NOW)
    cert = authority.enrol(keys.request_der, ["member"], now=NOW)
    keys.import_certificate(pem_encode(cert.der, "CERTIFICATE"), now=NOW)
    return keys


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- create and open ------------------------------------------------------------------------


def test_create_lays_out_a_private_directory(tmp_path: Path) -> None:
    keys = _org(tmp_path)
    directory = tmp_path / "police"
    assert _mode(directory) == 0o700
    assert sorted(p.name for p in directory.iterdir()) == [
        "kem-1.key",
        "request.pem",
        "signing.key",
        "state.json",
    ]
    for name in ("kem-1.key", "signing.key", "state.json"):
        assert _mode(directory / name) == 0o600
    assert (
        (directory / "request.pem").read_bytes().startswith(b"-----BEGIN CERTIFICATE REQUEST-----")
    )
    assert (keys.org, keys.network) == ("police", NET)
    assert keys.certificate is None and not keys.root_pinned
    assert "passphrase" not in repr(keys)


def test_create_refusals(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match="reserved for the hub"):
        OrgKeys.create(tmp_path / "x", NET, OrgId("hub"), PASS, WEAK, allow_weak=True)
    with pytest.raises(KeyFileError, match="below production strength"):
        OrgKeys.create(tmp_path / "x", NET, OrgId("police"), PASS, WEAK)
    _org(tmp_path)
    with pytest.raises(KeyFileError, match="not empty"):
        _org(tmp_path)


def test_open_round_trip_and_wrong_passphrase(tmp_path: Path) -> None:
    keys = _org(tmp_path)
    opened = OrgKeys.open(tmp_path / "police", PASS)
    assert opened.key_fingerprint == keys.key_fingerprint
    assert opened.request_der == keys.request_der
    with pytest.raises(KeyFileError, match="wrong passphrase or damaged file"):
        OrgKeys.open(tmp_path / "police", b"nope")
    with pytest.raises(KeyStoreError, match="not a key directory"):
        OrgKeys.open(tmp_path, PASS)


def test_an_org_directory_is_not_a_hub_directory(tmp_path: Path) -> None:
    _org(tmp_path)
    with pytest.raises(KeyFileError, match="not a schakel-hub state file"):
        HubKeys.open(tmp_path / "police", PASS)


# -- the pinned root ------------------------------------------------------------------------


def test_pin_root_once(tmp_path: Path, authority: Authority) -> None:
    keys = _org(tmp_path)
    with pytest.raises(KeyStoreError, match="no network root is pinned"):
        _ = keys.root
    pinned = keys.pin_root(pem_encode(authority.root.der, "CERTIFICATE"), now=NOW)
    assert pinned.fingerprint == authority.root_fingerprint
    assert keys.pin_root(authority.root.der, now=NOW).fingerprint == pinned.fingerprint
    assert OrgKeys.open(tmp_path / "police", PASS).root.fingerprint == pinned.fingerprint


def test_pinning_a_different_root_is_refused(tmp_path: Path, authority: Authority) -> None:
    keys = _org(tmp_path)
    keys.pin_root(authority.root.der, now=NOW)
    other = Authority.create(tmp_path / "other", NET, b"x", WEAK, now=NOW, allow_weak=True)
    with pytest.raises(KeyStoreError, match="refusing to replace the pinned network root"):
        keys.pin_root(other.root.der, now=NOW)
    assert keys.root.fingerprint == authority.root_fingerprint


def test_a_root_swapped_on_disk_is_detected(tmp_path: Path, authority: Authority) -> None:
    _org(tmp_path).pin_root(authority.root.der, now=NOW)
    other = Authority.create(tmp_path / "other", NET, b"x", WEAK, now=NOW, allow_weak=True)
    (tmp_path / "police" / "root.pem").write_bytes((tmp_path / "other" / "root.pem").read_bytes())
    with pytest.raises(KeyStoreError, match="not the root that was pinned"):
        _ = OrgKeys.open(tmp_path / "police", PASS).root
    assert other.root_fingerprint != authority.root_fingerprint


def test_pinning_another_networks_root_is_refused(tmp_path: Path) -> None:
    east = Authority.create(
        tmp_path / "east", NetworkId("region-east"), b"x", WEAK, now=NOW, allow_weak=True
    )
    with pytest.raises(KeyStoreError, match="for network 'region-east'"):
        _org(tmp_path).pin_root(east.root.der, now=NOW)


def test_pinning_an_expired_root_fails(tmp_path: Path, authority: Authority) -> None:
    with pytest.raises(VerificationError):
        _org(tmp_path).pin_root(authority.root.der, now=NOW + 3651 * DAY)


# -- the certificate ------------------------------------------------------------------------


def test_import_certificate(tmp_path: Path, authority: Authority) -> None:
    keys = _enrolled(tmp_path, authority)
    assert keys.certificate is not None and keys.certificate.org == "police"
    assert _mode(tmp_path / "police" / "certificate.pem") == 0o644
    reopened = OrgKeys.open(tmp_path / "police", PASS)
    assert reopened.certificate == keys.certificate


def test_import_before_pinning_is_refused(tmp_path: Path, authority: Authority) -> None:
    keys = _org(tmp_path)
    cert = authority.enrol(keys.request_der, ["member"], now=NOW)
    with pytest.raises(KeyStoreError, match="no network root is pinned"):
        keys.import_certificate(cert.der, now=NOW)


def test_import_a_certificate_for_another_key_is_refused(
    tmp_path: Path, authority: Authority
) -> None:
    keys = _org(tmp_path)
    keys.pin_root(authority.root.der, now=NOW)
    other = _org(tmp_path / "elsewhere")
    cert = authority.enrol(other.request_der, ["member"], now=NOW)
    with pytest.raises(KeyStoreError, match="for another key"):
        keys.import_certificate(cert.der, now=NOW)
    assert keys.certificate is None


def test_import_a_certificate_for_another_org_is_refused(
    tmp_path: Path, authority: Authority
) -> None:
    keys = _org(tmp_path)
    keys.pin_root(authority.root.der, now=NOW)
    request = create_enrolment_request(keys.signing_key, NET, OrgId("ggd"))
    cert = authority.enrol(request.der, ["member"], now=NOW)
    with pytest.raises(KeyStoreError, match="for 'ggd' in 'region-west', not 'police'"):
        keys.import_certificate(cert.der, now=NOW)


def test_import_a_certificate_from_another_root_fails(tmp_path: Path, authority: Authority) -> None:
    keys = _org(tmp_path)
    keys.pin_root(authority.root.der, now=NOW)
    other = Authority.create(tmp_path / "other", NET, b"x", WEAK, now=NOW, allow_weak=True)
    with pytest.raises(VerificationError):
        keys.import_certificate(other.enrol(keys.request_der, ["member"], now=NOW).der, now=NOW)


def test_the_hub_refuses_an_organisation_certificate(tmp_path: Path, authority: Authority) -> None:
    hub = HubKeys.create(tmp_path / "hub", NET, PASS, WEAK, allow_weak=True)
    hub.pin_root(authority.root.der, now=NOW)
    police = _org(tmp_path)
    org_cert = authority.enrol(police.request_der, ["member"], now=NOW)
    with pytest.raises(KeyStoreError, match="for another key"):
        hub.import_certificate(org_cert.der, now=NOW)
    assert hub.certificate is None


# -- KEM keys and bundles -------------------------------------------------------------------


def test_bundle_needs_a_certificate(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match="no certificate yet"):
        _org(tmp_path).current_bundle(now=NOW)


def test_current_bundle_is_reused_then_renewed(tmp_path: Path, authority: Authority) -> None:
    keys = _enrolled(tmp_path, authority)
    cert = keys.certificate
    assert cert is not None
    first = keys.current_bundle(now=NOW)
    verify_bundle(first, cert, now=NOW)
    assert first.not_after == NOW + 90 * DAY
    assert keys.current_bundle(now=NOW + DAY) == first
    later = keys.current_bundle(now=NOW + 90 * DAY)
    assert later != first and later.public_key == first.public_key
    # the bundle never outlives the certificate (365 days)
    last = keys.current_bundle(now=NOW + 300 * DAY)
    assert last.not_after == cert.not_after
    reopened = OrgKeys.open(tmp_path / "police", PASS)
    kem = reopened.kem_keys
    assert set(kem) == {first.fingerprint, later.fingerprint, last.fingerprint}


def test_bundle_file_is_canonical_json_and_one_newline(
    tmp_path: Path, authority: Authority
) -> None:
    """docs/protocol.md, "JSON files": the file is canonical JSON and one LF; the
    fingerprint covers the canonical JSON of the bundle only, never the newline."""
    keys = _enrolled(tmp_path, authority)
    first = keys.current_bundle(now=NOW)
    later = keys.current_bundle(now=NOW + 90 * DAY)
    data = (tmp_path / "police" / "bundle-1.json").read_bytes()
    assert data == canonical_json([first.to_wire(), later.to_wire()]) + b"\n"
    assert first.fingerprint == fingerprint(canonical_json(first.to_wire()))


def test_rotate_kem_keeps_older_keys(tmp_path: Path, authority: Authority) -> None:
    keys = _enrolled(tmp_path, authority)
    old = keys.current_bundle(now=NOW)
    new = keys.rotate_kem(now=NOW + DAY, rng=lambda n: b"\x07" * n)
    assert new.public_key == kem_public_bytes(b"\x07" * 96) != old.public_key
    assert keys.current_bundle(now=NOW + 2 * DAY) == new
    assert set(keys.kem_keys) == {old.fingerprint, new.fingerprint}
    assert _mode(tmp_path / "police" / "kem-2.key") == 0o600
    assert b"\x07" * 96 not in (tmp_path / "police" / "kem-2.key").read_bytes()


def test_a_bundle_file_for_another_key_is_refused(tmp_path: Path, authority: Authority) -> None:
    keys = _enrolled(tmp_path, authority)
    keys.current_bundle(now=NOW)
    other = _enrolled(tmp_path / "x", authority, "ggd")
    other.current_bundle(now=NOW)
    directory = tmp_path / "police"
    (directory / "bundle-1.json").write_bytes(
        (tmp_path / "x" / "ggd" / "bundle-1.json").read_bytes()
    )
    with pytest.raises(KeyStoreError, match="another KEM key"):
        _ = OrgKeys.open(directory, PASS).kem_keys


# -- linking keys ---------------------------------------------------------------------------


def _seal(authority: Authority, keys: OrgKeys, *, now: int = NOW) -> SealedLinkingKey:
    assert keys.certificate is not None
    return authority.seal_linking_key(keys.current_bundle(now=now), keys.certificate, now=now)


def test_store_linking_key(tmp_path: Path, authority: Authority) -> None:
    keys = _enrolled(tmp_path, authority)
    with pytest.raises(KeyStoreError, match="no linking key yet"):
        _ = keys.current_linking_key
    key = authority.new_linking_key()
    stored = keys.store_linking_key(_seal(authority, keys), now=NOW)
    assert stored == key
    assert keys.store_linking_key(_seal(authority, keys), now=NOW) == key  # idempotent
    reopened = OrgKeys.open(tmp_path / "police", PASS)
    assert reopened.linking_keys == {1: key}
    assert reopened.current_linking_key == key
    path = tmp_path / "police" / "linking-key-v1.key"
    assert _mode(path) == 0o600 and key.key not in path.read_bytes()


def test_linking_key_sealed_to_an_older_kem_key_still_opens(
    tmp_path: Path, authority: Authority
) -> None:
    keys = _enrolled(tmp_path, authority)
    authority.new_linking_key()
    sealed = _seal(authority, keys)
    keys.rotate_kem(now=NOW + DAY)
    assert keys.store_linking_key(sealed, now=NOW + DAY).version == 1


def test_newer_versions_become_current(tmp_path: Path, authority: Authority) -> None:
    keys = _enrolled(tmp_path, authority)
    authority.new_linking_key()
    keys.store_linking_key(_seal(authority, keys), now=NOW)
    two = authority.new_linking_key()
    keys.store_linking_key(_seal(authority, keys), now=NOW)
    assert keys.current_linking_key == two and set(keys.linking_keys) == {1, 2}


def test_linking_key_for_another_org_is_refused(tmp_path: Path, authority: Authority) -> None:
    police = _enrolled(tmp_path, authority)
    ggd = _enrolled(tmp_path, authority, "ggd")
    authority.new_linking_key()
    with pytest.raises(KeyStoreError, match="sealed to 'ggd'"):
        police.store_linking_key(_seal(authority, ggd), now=NOW)


def test_linking_key_signed_by_another_root_is_refused(
    tmp_path: Path, authority: Authority
) -> None:
    keys = _enrolled(tmp_path, authority)
    forger = Authority.create(tmp_path / "forger", NET, b"x", WEAK, now=NOW, allow_weak=True)
    forger.new_linking_key()
    # The forger certifies the same key and seals to the genuine bundle.
    cert = forger.enrol(keys.request_der, ["member"], now=NOW)
    bundle = keys.current_bundle(now=NOW)
    assert keys.certificate is not None
    with pytest.raises(VerificationError):
        forger.seal_linking_key(bundle, cert, now=NOW)  # the bundle names the real cert
    authority.new_linking_key()
    sealed = _seal(authority, keys)
    forged = SealedLinkingKey(
        sealed.network, sealed.org, sealed.version, sealed.bundle, sealed.enc, bytes(64)
    )
    with pytest.raises(VerificationError):
        keys.store_linking_key(forged, now=NOW)
    assert keys.linking_keys == {}


# -- the hub --------------------------------------------------------------------------------


def test_hub_keys(tmp_path: Path, authority: Authority) -> None:
    hub = HubKeys.create(tmp_path / "hub", NET, PASS, WEAK, allow_weak=True)
    directory = tmp_path / "hub"
    assert sorted(p.name for p in directory.iterdir()) == [
        "request.pem",
        "signing.key",
        "state.json",
        "token.key",
    ]
    assert _mode(directory / "token.key") == 0o600
    assert b"PRIVATE KEY" not in (directory / "token.key").read_bytes()
    token_key = load_pem_private_key(hub.token_key_pem, password=None)
    assert isinstance(token_key, ec.EllipticCurvePrivateKey)
    assert isinstance(token_key.curve, ec.SECP256R1)
    hub.pin_root(authority.root.der, now=NOW)
    cert = authority.certify_hub(hub.request_der, now=NOW)
    hub.import_certificate(cert.der, now=NOW)
    reopened = HubKeys.open(directory, PASS)
    assert reopened.org == "hub" and reopened.certificate == cert
    assert reopened.token_key_pem == hub.token_key_pem
    assert reopened.root.fingerprint == authority.root_fingerprint
