"""The network authority: root, enrolment, hub certificate, revocation, linking keys."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keys.authority import Authority, key_fingerprint
from keys.errors import AuthorityError, KeyFileError
from keys.keyfile import KdfParams
from keys.organisation import OrgKeys
from protocol.certificate import (
    create_enrolment_request,
    load_crl,
    pem_decode,
    verify_certificate,
)
from protocol.encoding import fingerprint
from protocol.errors import EncodingError, RevokedError, VerificationError
from protocol.types import NetworkId, OrgId

WEAK = KdfParams.for_tests()
PASS = b"authority passphrase"
NET = NetworkId("region-west")
NOW = 1_750_000_000
DAY = 86400


def _authority(tmp_path: Path, name: str = "authority", network: NetworkId = NET) -> Authority:
    return Authority.create(tmp_path / name, network, PASS, WEAK, now=NOW, allow_weak=True)


def _org(tmp_path: Path, org: str, authority: Authority | None = None) -> OrgKeys:
    keys = OrgKeys.create(
        tmp_path / org, NET, OrgId(org), b"org " + org.encode(), WEAK, allow_weak=True
    )
    if authority is not None:
        keys.pin_root(authority.root.der, now=NOW)
    return keys


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- create and open ------------------------------------------------------------------------


def test_create_lays_out_a_private_directory(tmp_path: Path) -> None:
    authority = _authority(tmp_path)
    directory = tmp_path / "authority"
    assert _mode(directory) == 0o700
    assert _mode(directory / "root.key") == 0o600
    assert _mode(directory / "state.json") == 0o600
    assert _mode(directory / "root.pem") == 0o644
    der = pem_decode((directory / "root.pem").read_bytes(), "CERTIFICATE")
    assert der == authority.root.der
    assert authority.root_fingerprint == fingerprint(der)
    assert authority.root.network == NET
    assert authority.root.not_after == NOW + 3650 * DAY
    assert authority.root_key_fingerprint == key_fingerprint(authority.root.public_key)
    assert "passphrase" not in repr(authority)


def test_create_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "authority").mkdir()
    (tmp_path / "authority" / "notes.txt").write_text("hello")
    with pytest.raises(KeyFileError, match="not empty"):
        _authority(tmp_path)
    assert [p.name for p in (tmp_path / "authority").iterdir()] == ["notes.txt"]


def test_create_refuses_weak_params_without_allow_weak(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="below production strength"):
        Authority.create(tmp_path / "a", NET, PASS, WEAK, now=NOW)
    assert not (tmp_path / "a").exists()


def test_create_is_deterministic_given_rng(tmp_path: Path) -> None:
    def rng(n: int) -> bytes:
        return bytes(n)

    one = Authority.create(tmp_path / "1", NET, PASS, WEAK, now=NOW, allow_weak=True, rng=rng)
    two = Authority.create(tmp_path / "2", NET, PASS, WEAK, now=NOW, allow_weak=True, rng=rng)
    assert one.root_fingerprint == two.root_fingerprint


def test_open_round_trip_and_refusals(tmp_path: Path) -> None:
    authority = _authority(tmp_path)
    opened = Authority.open(tmp_path / "authority", PASS)
    assert opened.root_fingerprint == authority.root_fingerprint
    assert opened.network == NET
    with pytest.raises(KeyFileError, match="wrong passphrase or damaged file"):
        Authority.open(tmp_path / "authority", b"wrong")
    with pytest.raises(AuthorityError, match="not an authority directory"):
        Authority.open(tmp_path, PASS)


def test_open_refuses_a_substituted_root_certificate(tmp_path: Path) -> None:
    _authority(tmp_path)
    _authority(tmp_path, "other")
    (tmp_path / "authority" / "root.pem").write_bytes(
        (tmp_path / "other" / "root.pem").read_bytes()
    )
    with pytest.raises(AuthorityError, match="does not belong to this root key"):
        Authority.open(tmp_path / "authority", PASS)


def test_open_detects_an_edited_state_file(tmp_path: Path) -> None:
    authority = _authority(tmp_path)
    org = _org(tmp_path, "police", authority)
    cert = authority.enrol(org.request_der, ["member"], now=NOW)
    authority.revoke(cert.serial, now=NOW)
    path = tmp_path / "authority" / "state.json"
    doc = json.loads(path.read_bytes())
    doc["state"]["revoked"] = {}  # an attacker quietly un-revokes
    path.write_text(json.dumps(doc))
    with pytest.raises(KeyFileError, match="altered"):
        Authority.open(tmp_path / "authority", PASS)


# -- enrolment ------------------------------------------------------------------------------


def test_enrol_two_organisations_with_roles(tmp_path: Path) -> None:
    authority = _authority(tmp_path)
    police, ggd = _org(tmp_path, "police"), _org(tmp_path, "ggd")
    c1 = authority.enrol(police.request_der, ["member"], now=NOW)
    c2 = authority.enrol(ggd.request_der, ["member", "coordinator"], now=NOW, days=30)
    assert (c1.serial, c1.org, c1.roles) == (1, "police", frozenset({"member"}))
    assert (c2.serial, c2.org, c2.roles) == (2, "ggd", frozenset({"member", "coordinator"}))
    assert c2.not_after == NOW + 30 * DAY
    for cert in (c1, c2):
        verify_certificate(cert.der, authority.root, now=NOW, crl=None)
        stored = (tmp_path / "authority" / "issued" / f"{cert.serial}.pem").read_bytes()
        assert pem_decode(stored, "CERTIFICATE") == cert.der
    reopened = Authority.open(tmp_path / "authority", PASS)
    record = reopened.issued[2]
    assert (record.org, record.roles, record.kind) == (
        "ggd",
        frozenset({"member", "coordinator"}),
        "org",
    )
    assert record.fingerprint == c2.fingerprint
    assert record.key == ggd.key_fingerprint


@pytest.mark.parametrize(
    ("roles", "message"),
    [
        (["member", "admin"], "unknown role"),
        ([], "at least one role"),
        (["member", "hub"], "only given by certify-hub"),
    ],
)
def test_enrol_refuses_bad_roles(tmp_path: Path, roles: list[str], message: str) -> None:
    authority = _authority(tmp_path)
    with pytest.raises(AuthorityError, match=message):
        authority.enrol(_org(tmp_path, "police").request_der, roles, now=NOW)
    assert authority.issued == {}


def test_enrol_refuses_another_network_and_the_hub_id(tmp_path: Path) -> None:
    authority = _authority(tmp_path)
    key = Ed25519PrivateKey.generate()
    other = create_enrolment_request(key, NetworkId("region-east"), OrgId("police"))
    with pytest.raises(AuthorityError, match="for network 'region-east'"):
        authority.enrol(other.der, ["member"], now=NOW)
    hub = create_enrolment_request(key, NET, OrgId("hub"))
    with pytest.raises(AuthorityError, match="reserved for the hub"):
        authority.enrol(hub.der, ["member"], now=NOW)


def test_enrol_refuses_garbage(tmp_path: Path) -> None:
    with pytest.raises(EncodingError, match="not valid DER"):
        _authority(tmp_path).enrol(b"\x30\x03\x02\x01\x00", ["member"], now=NOW)


def test_one_key_per_organisation_until_revoked(tmp_path: Path) -> None:
    authority = _authority(tmp_path)
    first = _org(tmp_path, "police")
    cert = authority.enrol(first.request_der, ["member"], now=NOW)
    # renewal or a change of roles for the same key is fine
    again = authority.enrol(first.request_der, ["member", "coordinator"], now=NOW)
    assert again.serial == cert.serial + 1
    impostor = create_enrolment_request(Ed25519PrivateKey.generate(), NET, OrgId("police"))
    with pytest.raises(AuthorityError, match="already holds certificate 1 for another key"):
        authority.enrol(impostor.der, ["member"], now=NOW)
    authority.revoke(cert.serial, now=NOW)
    authority.revoke(again.serial, now=NOW)
    replacement = authority.enrol(impostor.der, ["member"], now=NOW)
    assert replacement.serial == 3


def test_enrol_after_the_root_expired_fails(tmp_path: Path) -> None:
    authority = _authority(tmp_path)
    with pytest.raises(VerificationError):
        authority.enrol(_org(tmp_path, "police").request_der, ["member"], now=NOW + 3651 * DAY)


def test_certify_hub(tmp_path: Path) -> None:
    authority = _authority(tmp_path)
    key = Ed25519PrivateKey.generate()
    cert = authority.certify_hub(create_enrolment_request(key, NET, OrgId("hub")).der, now=NOW)
    assert (cert.org, cert.roles) == ("hub", frozenset({"hub"}))
    assert authority.issued[cert.serial].kind == "hub"
    not_hub = create_enrolment_request(key, NET, OrgId("police"))
    with pytest.raises(AuthorityError, match="must name organisation 'hub'"):
        authority.certify_hub(not_hub.der, now=NOW)


# -- revocation -----------------------------------------------------------------------------


def test_revoke_and_crl_contents(tmp_path: Path) -> None:
    authority = _authority(tmp_path)
    police, ggd = _org(tmp_path, "police"), _org(tmp_path, "ggd")
    c1 = authority.enrol(police.request_der, ["member"], now=NOW)
    c2 = authority.enrol(ggd.request_der, ["member"], now=NOW)
    crl = authority.revoke(c1.serial, now=NOW + 10)
    assert crl.number == 1 and dict(crl.revoked) == {c1.serial: NOW + 10}
    assert crl.next_update == NOW + 10 + 30 * DAY
    loaded = load_crl(crl.der, authority.root, now=NOW + 20)
    with pytest.raises(RevokedError):
        verify_certificate(c1.der, authority.root, now=NOW + 20, crl=loaded)
    verify_certificate(c2.der, authority.root, now=NOW + 20, crl=loaded)
    fresh = authority.crl(now=NOW + 30, days=7)
    assert fresh.number == 2 and dict(fresh.revoked) == {c1.serial: NOW + 10}
    on_disk = pem_decode((tmp_path / "authority" / "crl.pem").read_bytes(), "X509 CRL")
    assert on_disk == fresh.der
    reopened = Authority.open(tmp_path / "authority", PASS)
    assert reopened.crl_number == 2 and reopened.revoked == {c1.serial: NOW + 10}
    assert reopened.crl(now=NOW + 40).number == 3


def test_revoke_refusals(tmp_path: Path) -> None:
    authority = _authority(tmp_path)
    cert = authority.enrol(_org(tmp_path, "police").request_der, ["member"], now=NOW)
    with pytest.raises(AuthorityError, match="no certificate with serial 99"):
        authority.revoke(99, now=NOW)
    authority.revoke(cert.serial, now=NOW)
    with pytest.raises(AuthorityError, match="already revoked"):
        authority.revoke(cert.serial, now=NOW)
    assert authority.crl_number == 1


def test_empty_crl(tmp_path: Path) -> None:
    crl = _authority(tmp_path).crl(now=NOW)
    assert crl.number == 1 and dict(crl.revoked) == {}


# -- linking keys ---------------------------------------------------------------------------


def test_linking_key_versions(tmp_path: Path) -> None:
    authority = _authority(tmp_path)
    with pytest.raises(AuthorityError, match="no linking key yet"):
        authority.current_linking_key()
    one = authority.new_linking_key(rng=lambda n: b"\x01" * n)
    two = authority.new_linking_key()
    assert (one.version, two.version) == (1, 2) and one.key == b"\x01" * 32
    path = tmp_path / "authority" / "linking-key-v1.key"
    assert _mode(path) == 0o600 and b"\x01" * 32 not in path.read_bytes()
    reopened = Authority.open(tmp_path / "authority", PASS)
    assert reopened.linking_key(1) == one
    assert reopened.current_linking_key() == two
    with pytest.raises(AuthorityError, match="no linking key version 3"):
        reopened.linking_key(3)


def _enrolled(tmp_path: Path, authority: Authority, org: str) -> OrgKeys:
    keys = _org(tmp_path, org, authority)
    keys.import_certificate(authority.enrol(keys.request_der, ["member"], now=NOW).der, now=NOW)
    return keys


def test_seal_linking_key_to_an_organisation(tmp_path: Path) -> None:
    authority = _authority(tmp_path)
    police = _enrolled(tmp_path, authority, "police")
    key = authority.new_linking_key()
    assert police.certificate is not None
    sealed = authority.seal_linking_key(police.current_bundle(now=NOW), police.certificate, now=NOW)
    assert (sealed.org, sealed.version) == ("police", 1)
    assert police.store_linking_key(sealed, now=NOW) == key


def test_seal_refusals(tmp_path: Path) -> None:
    authority = _authority(tmp_path)
    police = _enrolled(tmp_path, authority, "police")
    ggd = _enrolled(tmp_path, authority, "ggd")
    assert police.certificate is not None and ggd.certificate is not None
    bundle = police.current_bundle(now=NOW)
    with pytest.raises(AuthorityError, match="no linking key yet"):
        authority.seal_linking_key(bundle, police.certificate, now=NOW)
    authority.new_linking_key()
    # a bundle signed by another organisation's certificate
    with pytest.raises(VerificationError):
        authority.seal_linking_key(bundle, ggd.certificate, now=NOW)
    # a certificate from another authority
    stranger = _authority(tmp_path, "stranger")
    with pytest.raises(VerificationError):
        stranger.seal_linking_key(bundle, police.certificate, now=NOW)
    # a bundle that has expired
    with pytest.raises(VerificationError):
        authority.seal_linking_key(bundle, police.certificate, now=NOW + 91 * DAY)
    # a revoked certificate
    authority.revoke(police.certificate.serial, now=NOW)
    with pytest.raises(AuthorityError, match="is revoked"):
        authority.seal_linking_key(bundle, police.certificate, now=NOW)


def test_the_hub_never_gets_the_linking_key(tmp_path: Path) -> None:
    from keys.hub import HubKeys

    authority = _authority(tmp_path)
    authority.new_linking_key()
    hub = HubKeys.create(tmp_path / "hub", NET, PASS, WEAK, allow_weak=True)
    cert = authority.certify_hub(hub.request_der, now=NOW)
    # even with a bundle the authority would otherwise accept
    police = _enrolled(tmp_path, authority, "police")
    with pytest.raises(AuthorityError, match="hub never receives the linking key"):
        authority.seal_linking_key(police.current_bundle(now=NOW), cert, now=NOW)
