"""Witness keys: the authority certifies them and signs the policy; a witness's directory."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from keys.authority import Authority, key_fingerprint
from keys.errors import AuthorityError, KeyStoreError
from keys.keyfile import KdfParams
from keys.organisation import OrgKeys
from keys.witness import WitnessKeys
from protocol.encoding import canonical_json
from protocol.errors import VerificationError
from protocol.types import NetworkId, OrgId
from protocol.witness import (
    WitnessRequest,
    create_witness_request,
    verify_witness_certificate,
)
from protocol.witnesspolicy import WitnessPolicy, verify_policy

WEAK = KdfParams.for_tests()
PASS = b"authority passphrase"
NET = NetworkId("region-west")
NOW = 1_750_000_000
DAY = 86400


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    return Authority.create(tmp_path / "authority", NET, PASS, WEAK, now=NOW, allow_weak=True)


def witness_dir(
    tmp_path: Path, org: str, authority: Authority, name: str | None = None
) -> WitnessKeys:
    keys = WitnessKeys.create(
        tmp_path / f"witness-{org}-{name}", NET, OrgId(org), b"witness pass", WEAK,
        name=name, allow_weak=True,
    )  # fmt: skip
    keys.pin_root(authority.root.der, now=NOW)
    return keys


def test_witness_directory_layout_and_import(tmp_path: Path, authority: Authority) -> None:
    keys = witness_dir(tmp_path, "coordinator", authority)
    assert stat.S_IMODE(keys.directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((keys.directory / "signing.key").stat().st_mode) == 0o600
    assert not (keys.directory / "request.pem").exists()  # no X.509 request: not an org key
    request = keys.request
    assert request.name == "schakel.invalid/region-west/witness/coordinator"
    cert = authority.certify_witness(request, now=NOW)
    again = WitnessKeys.open(keys.directory, b"witness pass")
    with pytest.raises(KeyStoreError, match="no witness certificate"):
        again.witness_certificate  # noqa: B018
    again.import_witness_certificate(canonical_json(cert.to_wire()), now=NOW + 1)
    assert WitnessKeys.open(keys.directory, b"witness pass").witness_certificate == cert
    issued = json.loads((authority.directory / "issued" / f"{cert.serial}.json").read_bytes())
    assert issued == cert.to_wire()
    record = authority.issued[cert.serial]
    assert (record.kind, record.org, record.key) == (
        "witness", "coordinator", key_fingerprint(keys.signing_key.public_key())
    )  # fmt: skip


def test_a_directory_refuses_someone_elses_certificate(
    tmp_path: Path, authority: Authority
) -> None:
    mine = witness_dir(tmp_path, "police", authority)
    theirs = witness_dir(tmp_path, "ggd", authority)
    cert = authority.certify_witness(theirs.request, now=NOW)
    with pytest.raises(KeyStoreError, match="another key"):
        mine.import_witness_certificate(canonical_json(cert.to_wire()), now=NOW)
    other = Authority.create(tmp_path / "other", NET, PASS, WEAK, now=NOW, allow_weak=True)
    foreign = other.certify_witness(mine.request, now=NOW)
    with pytest.raises(VerificationError):
        mine.import_witness_certificate(canonical_json(foreign.to_wire()), now=NOW)


def test_certify_refuses_forged_requests_and_reused_keys(
    tmp_path: Path, authority: Authority
) -> None:
    police = witness_dir(tmp_path, "police", authority)
    request = police.request
    forged = WitnessRequest.from_wire({**request.to_wire(), "org": "ggd"})
    with pytest.raises(VerificationError):
        authority.certify_witness(forged, now=NOW)
    first = authority.certify_witness(request, now=NOW)
    renewed = authority.certify_witness(request, now=NOW + DAY)  # same key, org, name: renewal
    assert renewed.serial == first.serial + 1
    # the same key as another organisation's, or under another name, counts twice: refused
    for org, name in (("ggd", None), ("police", "schakel.invalid/region-west/witness/police/2")):
        again = create_witness_request(police.signing_key, NET, OrgId(org), name)
        with pytest.raises(AuthorityError, match="already certified"):
            authority.certify_witness(again, now=NOW)
    # an organisation key is never a witness key, nor the reverse
    org = OrgKeys.create(tmp_path / "org", NET, OrgId("school"), b"p", WEAK, allow_weak=True)
    authority.enrol(org.request_der, ["member"], now=NOW)
    with pytest.raises(AuthorityError, match="already certified"):
        authority.certify_witness(
            create_witness_request(org.signing_key, NET, OrgId("school")), now=NOW
        )
    shelter = witness_dir(tmp_path, "shelter", authority)
    authority.certify_witness(shelter.request, now=NOW)
    from protocol.certificate import create_enrolment_request

    reuse = create_enrolment_request(shelter.signing_key, NET, OrgId("shelter"))
    with pytest.raises(AuthorityError, match="witness key"):
        authority.enrol(reuse.der, ["member"], now=NOW)
    other_net = create_witness_request(police.signing_key, NetworkId("elsewhere"), OrgId("police"))
    with pytest.raises(AuthorityError, match="network"):
        authority.certify_witness(other_net, now=NOW)


def test_an_org_with_a_witness_can_still_enrol(tmp_path: Path, authority: Authority) -> None:
    witness = witness_dir(tmp_path, "school", authority)
    authority.certify_witness(witness.request, now=NOW)
    org = OrgKeys.create(tmp_path / "org", NET, OrgId("school"), b"p", WEAK, allow_weak=True)
    cert = authority.enrol(org.request_der, ["member"], now=NOW)
    assert cert.org == "school"


def test_witness_policy(tmp_path: Path, authority: Authority) -> None:
    serials = [
        authority.certify_witness(witness_dir(tmp_path, org, authority).request, now=NOW).serial
        for org in ("police", "ggd", "coordinator")
    ]
    policy, path = authority.witness_policy(serials, quorum=2, now=NOW)
    assert (policy.number, policy.quorum) == (1, 2)
    assert path.name == "witness-policy-1.json"
    stored = WitnessPolicy.from_wire(json.loads(path.read_bytes()))
    assert verify_policy(stored, authority.root) == policy
    for witness in stored.witnesses:
        verify_witness_certificate(witness, authority.root, now=NOW, crl=None)
    # numbers go up, and survive reopening
    reopened = Authority.open(authority.directory, PASS)
    second, _ = reopened.witness_policy(serials[:2], quorum=1, now=NOW)
    assert second.number == 2


def test_witness_policy_refusals(tmp_path: Path, authority: Authority) -> None:
    police = authority.certify_witness(witness_dir(tmp_path, "police", authority).request, now=NOW)
    ggd = authority.certify_witness(witness_dir(tmp_path, "ggd", authority).request, now=NOW)
    org = OrgKeys.create(tmp_path / "org", NET, OrgId("school"), b"p", WEAK, allow_weak=True)
    member = authority.enrol(org.request_der, ["member"], now=NOW)
    with pytest.raises(AuthorityError, match="not a witness"):
        authority.witness_policy([police.serial, member.serial], quorum=1, now=NOW)
    with pytest.raises(AuthorityError, match="not a witness"):
        authority.witness_policy([999], quorum=1, now=NOW)
    authority.revoke(ggd.serial, now=NOW)
    with pytest.raises(AuthorityError, match="revoked"):
        authority.witness_policy([police.serial, ggd.serial], quorum=1, now=NOW)
    with pytest.raises(AuthorityError, match="not valid now"):
        authority.witness_policy([police.serial], quorum=1, now=NOW + 400 * DAY)
    from protocol.errors import ValidationError

    with pytest.raises(ValidationError, match="quorum"):
        authority.witness_policy([police.serial], quorum=2, now=NOW)
    assert authority.revoked[ggd.serial] == NOW  # witness serials are revoked through the CRL
