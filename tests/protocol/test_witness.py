"""Witness certificates, the witness policy and the quorum (protocol.witness, .witnesspolicy)."""

from __future__ import annotations

import dataclasses

import pytest
from witness_network import DAY, T0, Witness, WitnessNet, seeded_key

from protocol.checkpoint import cosign
from protocol.encoding import b64e, canonical_json, frame, loads_strict
from protocol.errors import (
    EncodingError,
    QuorumNotMet,
    RevokedError,
    ValidationError,
    VerificationError,
)
from protocol.note import NoteSignature
from protocol.types import NetworkId, OrgId
from protocol.witness import (
    CERTIFICATE_LABEL,
    WitnessCertificate,
    WitnessRequest,
    create_witness_request,
    issue_witness_certificate,
    verify_witness_certificate,
    verify_witness_request,
    witness_name,
)
from protocol.witnesspolicy import (
    WitnessPolicy,
    check_quorum,
    create_policy,
    tally_cosignatures,
    verify_policy,
)


@pytest.fixture(scope="module")
def net() -> WitnessNet:
    return WitnessNet()


@pytest.fixture(scope="module")
def team(net: WitnessNet) -> dict[str, Witness]:
    return {
        "police": net.witness("police"),
        "police-2": net.witness("police", "second"),
        "ggd": net.witness("ggd"),
        "school": net.witness("school"),
        "authority": net.witness("authority", "always-on"),
    }


@pytest.fixture(scope="module")
def policy(net: WitnessNet, team: dict[str, Witness]) -> WitnessPolicy:
    return net.policy(team.values(), quorum=3)


# --- requests and certificates ----------------------------------------------------------------


def test_request_is_signed_by_the_key_it_names(net: WitnessNet) -> None:
    key = seeded_key("w")
    request = create_witness_request(key, net.network, OrgId("police"))
    assert request.name == f"schakel.invalid/{net.network}/witness/police"
    again = WitnessRequest.from_wire(loads_strict(canonical_json(request.to_wire())))
    assert verify_witness_request(again) == request
    other = create_witness_request(seeded_key("other"), net.network, OrgId("police"))
    swapped = dataclasses.replace(request, key=other.key)
    with pytest.raises(VerificationError):
        verify_witness_request(swapped)
    with pytest.raises(VerificationError):
        issue_witness_certificate(net.root_key, net.root, swapped, serial=99, now=T0, days=1)


def test_certificate_bytes_and_checks(net: WitnessNet, team: dict[str, Witness]) -> None:
    cert = team["ggd"].cert
    wire = cert.to_wire()
    assert set(wire) == {"v", "network", "org", "name", "key", "serial", "not_before",
                         "not_after", "sig"}  # fmt: skip
    unsigned = {k: v for k, v in wire.items() if k != "sig"}
    net.root.public_key.verify(cert.sig, frame(CERTIFICATE_LABEL, canonical_json(unsigned)))
    assert WitnessCertificate.from_wire(wire) == cert
    assert verify_witness_certificate(cert, net.root, now=T0 + DAY, crl=None) == cert
    with pytest.raises(VerificationError, match="not valid"):
        verify_witness_certificate(cert, net.root, now=T0 + 400 * DAY, crl=None)
    with pytest.raises(RevokedError):
        verify_witness_certificate(cert, net.root, now=T0, crl=net.crl({cert.serial: T0}))
    forged = dataclasses.replace(cert, org=OrgId("police"))
    with pytest.raises(VerificationError):
        verify_witness_certificate(forged, net.root, now=T0, crl=None)
    foreign = WitnessNet(root_key=seeded_key("another root"))
    with pytest.raises(VerificationError):
        verify_witness_certificate(cert, foreign.root, now=T0, crl=None)


@pytest.mark.parametrize(
    ("key", "value"),
    [("v", 2), ("v", True), ("serial", 0), ("serial", "1"), ("name", "a b"), ("name", "a+b"),
     ("key", b64e(bytes(31))), ("org", "Police"), ("not_after", T0)],
)  # fmt: skip
def test_bad_certificate_fields(team: dict[str, Witness], key: str, value: object) -> None:
    wire = {**team["ggd"].cert.to_wire(), key: value}
    if key == "not_after":
        wire["not_before"] = T0
    with pytest.raises((EncodingError, ValidationError)):
        WitnessCertificate.from_wire(wire)


def test_extra_or_missing_fields(team: dict[str, Witness]) -> None:
    wire = team["ggd"].cert.to_wire()
    with pytest.raises(EncodingError):
        WitnessCertificate.from_wire({**wire, "roles": []})
    del wire["serial"]
    with pytest.raises(EncodingError):
        WitnessCertificate.from_wire(wire)


def test_witness_name_rules(net: WitnessNet) -> None:
    assert witness_name(net.network, OrgId("ggd"), "b") == (
        "schakel.invalid/witness-test/witness/ggd/b"
    )
    with pytest.raises(ValidationError):
        witness_name(net.network, OrgId("ggd"), "with space")


# --- the policy ------------------------------------------------------------------------------


def test_policy_round_trip_and_signature(net: WitnessNet, policy: WitnessPolicy) -> None:
    again = WitnessPolicy.from_wire(loads_strict(canonical_json(policy.to_wire())))
    assert again == policy
    assert verify_policy(again, net.root) == policy
    assert policy.organisations == {"police", "ggd", "school", "authority"}


def test_policy_not_signed_by_the_authority_is_refused(
    net: WitnessNet, team: dict[str, Witness]
) -> None:
    impostor = WitnessNet(root_key=seeded_key("impostor"))
    with pytest.raises(ValidationError):  # a policy lists at least one witness
        create_policy(impostor.root_key, impostor.root, [], quorum=1, number=9, issued=T0)
    with pytest.raises(VerificationError):  # real certificates, another root
        create_policy(
            impostor.root_key, impostor.root, [team["ggd"].cert], quorum=1, number=9, issued=T0
        )
    real = net.policy(team.values(), quorum=2)
    tampered = dataclasses.replace(real, quorum=1)
    with pytest.raises(VerificationError):
        verify_policy(tampered, net.root)
    resigned = dataclasses.replace(real, sig=impostor.root_key.sign(real.signed_bytes()))
    with pytest.raises(VerificationError):
        verify_policy(resigned, net.root)
    with pytest.raises(VerificationError):
        verify_policy(real, impostor.root)  # another root with the same network name
    with pytest.raises(VerificationError, match="another network"):
        verify_policy(real, WitnessNet(network=NetworkId("elsewhere")).root)


def test_policy_refuses_an_uncertified_witness(net: WitnessNet, team: dict[str, Witness]) -> None:
    real = team["ggd"].cert
    self_made = dataclasses.replace(
        real, serial=777, key=seeded_key("self").public_key().public_bytes_raw()
    )
    with pytest.raises(VerificationError):
        create_policy(net.root_key, net.root, [self_made], quorum=1, number=1, issued=T0)
    policy = net.policy([team["ggd"]], quorum=1)
    smuggled = dataclasses.replace(policy, witnesses=(real, self_made))
    with pytest.raises(VerificationError):
        verify_policy(smuggled, net.root)


@pytest.mark.parametrize("quorum", [0, 5, True])
def test_policy_quorum_bounds(net: WitnessNet, team: dict[str, Witness], quorum: int) -> None:
    with pytest.raises(ValidationError):
        net.policy(team.values(), quorum=quorum)  # 4 organisations


def test_policy_refuses_duplicates(net: WitnessNet, team: dict[str, Witness]) -> None:
    cert = team["ggd"].cert
    with pytest.raises(ValidationError):
        create_policy(net.root_key, net.root, [cert, cert], quorum=1, number=1, issued=T0)


# --- the quorum ------------------------------------------------------------------------------


def cosigned(net: WitnessNet, witnesses: list[Witness], *, at: int = T0) -> tuple:  # type: ignore[type-arg]
    signed = net.checkpoint(6)
    return signed.checkpoint, [signed.log[0], *(w.cosign(signed, at=at) for w in witnesses)]


def test_quorum_met(net: WitnessNet, team: dict[str, Witness], policy: WitnessPolicy) -> None:
    checkpoint, lines = cosigned(net, [team["police"], team["ggd"], team["school"]])
    tally = check_quorum(checkpoint, lines, policy, net.root, crl=None, now=T0 + 60)
    assert tally.organisations == ("ggd", "police", "school")
    assert [c.timestamp for c in tally.counted] == [T0] * 3


def test_two_cosignatures_from_one_organisation_count_once(
    net: WitnessNet, team: dict[str, Witness], policy: WitnessPolicy
) -> None:
    checkpoint, lines = cosigned(net, [team["police"], team["police-2"], team["ggd"]])
    tally = tally_cosignatures(checkpoint, lines, policy, net.root, crl=None, now=T0)
    assert len(tally.counted) == 3 and tally.organisations == ("ggd", "police")
    with pytest.raises(QuorumNotMet, match="2 of the 3"):
        check_quorum(checkpoint, lines, policy, net.root, crl=None, now=T0)
    # the same line twice counts once too
    checkpoint, lines = cosigned(net, [team["ggd"], team["ggd"], team["school"]])
    assert tally_cosignatures(
        checkpoint, lines, policy, net.root, crl=None, now=T0
    ).organisations == ("ggd", "school")


def test_forged_cosignature_does_not_count(
    net: WitnessNet, team: dict[str, Witness], policy: WitnessPolicy
) -> None:
    checkpoint, lines = cosigned(net, [team["police"], team["ggd"], team["school"]])
    school = lines[-1]
    lines[-1] = NoteSignature(school.name, school.key_id, school.signature[:8] + bytes(64))
    with pytest.raises(QuorumNotMet):
        check_quorum(checkpoint, lines, policy, net.root, crl=None, now=T0)
    # a line made by a key that is not the certified one, under the certified name
    impostor = cosign(seeded_key("impostor"), team["school"].cert.name, checkpoint, timestamp=T0)
    lines[-1] = NoteSignature(
        impostor.name, team["school"].cert.verifier().key_id, impostor.signature
    )
    with pytest.raises(QuorumNotMet):
        check_quorum(checkpoint, lines, policy, net.root, crl=None, now=T0)


def test_uncertified_witness_does_not_count(
    net: WitnessNet, team: dict[str, Witness], policy: WitnessPolicy
) -> None:
    checkpoint, lines = cosigned(net, [team["police"], team["ggd"]])
    # a key no certificate names, under a certified witness's name
    lines.append(cosign(seeded_key("outsider"), team["school"].cert.name, checkpoint, timestamp=T0))
    # a witness certified by another root (of a network of the same name)
    stranger = WitnessNet(root_key=seeded_key("another root")).witness("school", "stranger")
    lines.append(cosign(stranger.key, stranger.cert.name, checkpoint, timestamp=T0))
    tally = tally_cosignatures(checkpoint, lines, policy, net.root, crl=None, now=T0)
    assert tally.organisations == ("ggd", "police")


def test_revoked_witness_does_not_count(
    net: WitnessNet, team: dict[str, Witness], policy: WitnessPolicy
) -> None:
    checkpoint, lines = cosigned(net, [team["police"], team["ggd"], team["school"]])
    crl = net.crl({team["school"].cert.serial: T0})
    with pytest.raises(QuorumNotMet):
        check_quorum(checkpoint, lines, policy, net.root, crl=crl, now=T0)
    elsewhere = WitnessNet(network=NetworkId("elsewhere")).crl({})
    tally = tally_cosignatures(checkpoint, lines, policy, net.root, crl=elsewhere, now=T0)
    assert tally.organisations == ()  # a CRL of another network clears no one


def test_expired_witness_and_future_timestamps_do_not_count(
    net: WitnessNet, team: dict[str, Witness], policy: WitnessPolicy
) -> None:
    checkpoint, lines = cosigned(net, [team["police"], team["ggd"], team["school"]])
    late = T0 + 366 * DAY
    assert tally_cosignatures(checkpoint, lines, policy, net.root, crl=None, now=late).counted == ()
    checkpoint, lines = cosigned(net, [team["police"], team["ggd"], team["school"]], at=T0 + 301)
    assert tally_cosignatures(checkpoint, lines, policy, net.root, crl=None, now=T0).counted == ()
    tally = tally_cosignatures(checkpoint, lines, policy, net.root, crl=None, now=T0 + 1)
    assert len(tally.counted) == 3


def test_cosignature_of_another_checkpoint_does_not_count(
    net: WitnessNet, team: dict[str, Witness], policy: WitnessPolicy
) -> None:
    _, lines = cosigned(net, [team["police"], team["ggd"], team["school"]])
    other = net.checkpoint(7).checkpoint
    assert tally_cosignatures(other, lines, policy, net.root, crl=None, now=T0).counted == ()
