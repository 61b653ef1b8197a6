"""Case work in the client: referrals, statuses, the case view and CoMensha, on a memory hub.

The memory hub of ``test_organisation`` relays envelopes; here it also answers the
coordinator's case routes with whatever the test puts in it, so that a test can make
the hub's metadata disagree with the signed envelopes.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from test_organisation import MARKER, NETWORK, NOW, PASS, Clock, MemoryClient, MemoryHub

from clients import casework
from clients.caseanswers import CaseDetail, CasePage, CaseSummary, OrgSignals, TimelineEntry
from clients.errors import ClientError, HubProblem, NotReady, PayloadInvalid, VerificationFailed
from clients.organisation import Organisation
from clients.state import LocalState
from keys.authority import Authority
from keys.keyfile import KdfParams
from keys.organisation import OrgKeys
from protocol.encoding import b64d, b64e
from protocol.types import CaseRef, MessageId, OrgId

REF = CaseRef("abcdefghijklmnop")
REF_2 = CaseRef("qrstuvwxyz234567")
TYPES = {"police": "police", "ggd": "ggd", "opvang": "shelter", "regie": "coordination"}


@dataclass
class CaseHub(MemoryHub):
    details: dict[str, CaseDetail] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)


@dataclass
class CaseClient(MemoryClient):
    """MemoryClient with GET /v1/messages/{id} and the case routes."""

    async def get_message(self, message_id: str, *, purpose: Any = None) -> tuple[int, Any]:
        hub = self.hub
        assert isinstance(hub, CaseHub)
        for index, wire in enumerate(hub.sent):
            if wire["header"]["id"] == message_id and message_id not in hub.gone:
                return index + 1, copy.deepcopy(wire)
        raise HubProblem(404, "urn:schakel:problem:not-found", "Not Found", "no such message")

    async def case(self, ref: str) -> CaseDetail:
        assert isinstance(self.hub, CaseHub)
        return self.hub.details[ref]

    async def cases(self, **filters: Any) -> CasePage:
        assert isinstance(self.hub, CaseHub)
        found = [d.summary for d in self.hub.details.values()]
        start, limit = filters.get("offset", 0), filters.get("limit", 50)
        return CasePage(tuple(found[start : start + limit]), len(found))


@dataclass
class Net:
    tmp: Path
    authority: Authority
    hub: CaseHub
    orgs: dict[str, Organisation] = field(default_factory=dict)

    async def make(self, org: str, *roles: str) -> Organisation:
        keys = OrgKeys.create(
            self.tmp / org, NETWORK, OrgId(org), PASS, KdfParams.for_tests(), allow_weak=True
        )
        keys.pin_root(self.authority.root.der, now=NOW)
        cert = self.authority.enrol(
            keys.request_der, ["member", *roles], now=NOW, org_type=TYPES[org]
        )
        keys.import_certificate(cert.der, now=NOW)
        sealed = self.authority.seal_linking_key(keys.current_bundle(now=NOW), cert, now=NOW)
        self.hub.linking_keys.append(sealed)
        state = LocalState(self.tmp / f"{org}.sqlite")
        client = CaseClient(self.hub, org)
        organisation = Organisation(keys, state, client, clock=Clock())  # type: ignore[arg-type]
        self.orgs[org] = organisation
        await organisation.publish()
        await organisation.fetch_linking_keys()
        return organisation


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Net]:
    authority = Authority.create(
        tmp_path / "authority", NETWORK, PASS, KdfParams.for_tests(), now=NOW, allow_weak=True
    )
    authority.new_linking_key()
    network = Net(tmp_path, authority, CaseHub())
    network.hub.crl = authority.crl(now=NOW).der
    yield network
    for org in network.orgs.values():
        org.state.close()


def referral(*, consent: bool = True, person: dict[str, Any] | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "schema": "schakel.referral/1",
        "service": "shelter",
        "urgency": "urgent",
        "reason": f"{MARKER} reason",
        "shared_with_person": "told",
        "consent": {"share_with_recipient": True, "comensha_registration": consent},
    }
    if person is not None:
        payload["person"] = person
    return payload


def status(code: str, **extra: str) -> dict[str, Any]:
    return {"schema": "schakel.status/1", "status": code, "explanation": "why", **extra}


def signal(person: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": "schakel.signal/1",
        "person": person,
        "exploitation": "labour",
        "urgency": "high",
        "consent_to_share": True,
        "text": MARKER,
    }


def _state_bytes(org: Organisation) -> bytes:
    path = org.state.path
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


# -- referrals ---------------------------------------------------------------------------


async def test_a_referral_names_its_case_carries_pseudonyms_and_is_kept_encrypted(
    net: Net,
) -> None:
    regie, opvang = await net.make("regie", "coordinator"), await net.make("opvang")
    payload = referral(person={"bsn": "111222333"})
    message_id = await regie.send_referral(payload, "opvang", case=REF)
    [wire] = net.hub.sent
    header = wire["header"]
    assert header["kind"] == "referral" and header["case"] == REF
    assert header["recipients"] == ["opvang"] and header["pseudonyms"][0].startswith("bsn.")
    assert "ref" not in header
    [received] = (await opvang.receive()).messages
    assert received.id == message_id and received.case == REF and received.payload == payload
    # the referrer can read what it wrote, but not from the state file alone
    assert regie.sent_payload(message_id) == payload
    assert MARKER.encode() not in _state_bytes(regie)
    assert regie.state.sent_payload(message_id).case == REF  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "change, kwargs, error, match",
    [
        (lambda p: p.pop("consent"), {}, PayloadInvalid, r"\$\.consent: is required"),
        (lambda p: p.update(person={"bsn": "123456789"}), {}, PayloadInvalid, r"\$\.person"),
        (lambda p: None, {}, PayloadInvalid, r"names a case, or a person"),
        (lambda p: None, {"case": "NOT-A-REF"}, PayloadInvalid, r"at case"),
        (lambda p: None, {"case": REF, "replaces": "x"}, PayloadInvalid, r"at replaces"),
        (lambda p: None, {"case": REF, "to": "police"}, ClientError, r"certified as police"),
        (lambda p: None, {"case": REF, "to": "regie"}, PayloadInvalid, r"to itself"),
        (lambda p: None, {"case": REF, "to": "Bad Org"}, PayloadInvalid, r"recipients"),
    ],
)
async def test_a_bad_referral_is_refused_before_anything_is_sent(
    net: Net, change: Any, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    regie = await net.make("regie", "coordinator")
    await net.make("opvang")
    await net.make("police")
    payload = referral()
    change(payload)
    to = kwargs.pop("to", "opvang")
    with pytest.raises(error, match=match) as caught:
        await regie.send_referral(payload, to, **kwargs)
    assert net.hub.sent == [] and regie.state.sent() == []
    assert "123456789" not in str(caught.value)


async def test_a_referral_that_replaces_a_declined_one_names_it(net: Net) -> None:
    regie, opvang = await net.make("regie", "coordinator"), await net.make("opvang")
    first = await regie.send_referral(referral(), "opvang", case=REF)
    await opvang.receive()
    await opvang.send_status(first, "declined", status("declined", reason_code="no_capacity"))
    await regie.receive()
    assert casework.known_step(regie, first, "referrer") == "declined"
    second = await regie.send_referral(referral(), "opvang", case=REF, replaces=first)
    assert net.hub.sent[-1]["header"]["ref"] == first
    [again] = (await opvang.receive()).messages
    assert again.id == second and again.ref == first


# -- statuses ----------------------------------------------------------------------------


async def test_statuses_go_to_the_other_party_and_follow_the_state_machine(net: Net) -> None:
    regie, opvang = await net.make("regie", "coordinator"), await net.make("opvang")
    referral_id = await regie.send_referral(referral(), "opvang", case=REF)
    await opvang.receive()  # acknowledged: delivered
    assert casework.known_step(opvang, referral_id, "recipient") == "delivered"
    with pytest.raises(ClientError, match=r"recipient, at step delivered, .* accepted, declined$"):
        await opvang.send_status(referral_id, "care_started", status("care_started"))
    accepted = await opvang.send_status(referral_id, "accepted", status("accepted"))
    header = net.hub.sent[-1]["header"]
    assert header["recipients"] == ["regie"] and header["status"] == "accepted"
    assert header["ref"] == referral_id and header["pseudonyms"] == []
    assert casework.known_step(opvang, referral_id, "recipient") == "accepted"
    assert opvang.sent_payload(accepted) == status("accepted")

    [answer] = (await regie.receive()).messages
    assert answer.kind == "status" and answer.status == "accepted" and answer.ref == referral_id
    assert casework.known_step(regie, referral_id, "referrer") == "accepted"
    with pytest.raises(ClientError, match=r"referrer, at step accepted, .* can send: closed"):
        await regie.send_status(referral_id, "care_started", status("care_started"))
    await regie.send_status(referral_id, "closed", status("closed"))  # withdrawn
    assert net.hub.sent[-1]["header"]["recipients"] == ["opvang"]
    await opvang.receive()
    with pytest.raises(ClientError, match="at step closed, this organisation can send: none"):
        await opvang.send_status(referral_id, "care_started", status("care_started"))


@pytest.mark.parametrize(
    "code, payload, error, match",
    [
        ("delivered", status("accepted"), PayloadInvalid, r"at status: must be one of"),
        ("accepted", status("declined", reason_code="other"), PayloadInvalid, r"\$\.status"),
        ("declined", status("declined"), PayloadInvalid, r"\$\.reason_code: is required"),
        ("accepted", status("accepted", reason_code="other"), PayloadInvalid, "not allowed"),
        ("accepted", {"status": "accepted"}, PayloadInvalid, r"\$\.explanation|\$\.schema"),
    ],
)
async def test_a_bad_status_is_refused_before_anything_is_sent(
    net: Net, code: str, payload: dict[str, Any], error: type[Exception], match: str
) -> None:
    regie, opvang = await net.make("regie", "coordinator"), await net.make("opvang")
    referral_id = await regie.send_referral(referral(), "opvang", case=REF)
    await opvang.receive()
    sent = len(net.hub.sent)
    with pytest.raises(error, match=match):
        await opvang.send_status(referral_id, code, payload)
    assert len(net.hub.sent) == sent


async def test_a_status_about_an_unknown_referral_names_what_to_do(net: Net) -> None:
    opvang = await net.make("opvang")
    with pytest.raises(NotReady, match="schakel org inbox"):
        await opvang.send_status("AAAAAAAAAAAAAAAAAAAAAA", "accepted", status("accepted"))
    with pytest.raises(PayloadInvalid, match="at referral"):
        await opvang.send_status("../x", "accepted", status("accepted"))
    assert net.hub.sent == []


# -- the case view -----------------------------------------------------------------------


def _summary(ref: CaseRef, orgs: tuple[OrgSignals, ...]) -> CaseSummary:
    return CaseSummary(
        case=ref,
        state="referred",
        signals=sum(o.count for o in orgs),
        first_signal=min((o.first for o in orgs), default=None),
        last_signal=max((o.last for o in orgs), default=None),
        orgs=orgs,
        referrals={"sent": 1},
        open_referrals=1,
    )


def _entry(wire: dict[str, Any], **changes: Any) -> TimelineEntry:
    header = wire["header"]
    entry = TimelineEntry(
        at=NOW,
        type=header["kind"],
        message=MessageId(header["id"]),
        sender=OrgId(header["sender"]),
        sender_type=TYPES[header["sender"]],
        recipients=tuple(header["recipients"]),
        code=header.get("status"),
        referral=header.get("ref") if header["kind"] == "status" else None,
    )
    return dataclasses.replace(entry, **changes)


def _detail(ref: CaseRef, entries: list[TimelineEntry]) -> CaseDetail:
    orgs = tuple(
        OrgSignals(e.sender, e.sender_type, 1, NOW, NOW)  # type: ignore[arg-type]
        for e in entries
        if e.type == "signal"
    )
    return CaseDetail(_summary(ref, orgs), None, (), tuple(entries), False)


async def test_the_case_view_opens_what_is_ours_and_never_trusts_the_hubs_metadata(
    net: Net,
) -> None:
    regie, opvang = await net.make("regie", "coordinator"), await net.make("opvang")
    police, ggd = await net.make("police"), await net.make("ggd")
    person = {"bsn": "111222333", "family_name": "Zwaan"}
    to_us = await police.send_signal(signal(person), ["regie"])
    not_to_us = await police.send_signal(signal(person), ["ggd"])
    tampered = await ggd.send_signal(signal(person), ["regie"])
    gone = await ggd.send_signal(signal(person), ["regie"])
    ours = await regie.send_referral(referral(), "opvang", case=REF)
    await opvang.receive()
    answer = await opvang.send_status(ours, "accepted", status("accepted"))
    wires = {w["header"]["id"]: w for w in net.hub.sent}
    body = bytearray(b64d(wires[tampered]["body"]))
    body[-1] ^= 1
    wires[tampered]["body"] = b64e(bytes(body))
    net.hub.gone.add(gone)
    entries = [
        _entry(wires[to_us]),
        _entry(wires[not_to_us]),
        _entry(wires[tampered]),
        _entry(wires[gone]),
        _entry(wires[ours]),
        _entry(wires[answer]),
    ]
    net.hub.details[REF] = _detail(REF, entries)

    view = await regie.case_view(REF)

    states = {m: view.contents[m].state for m in (to_us, not_to_us, tampered, gone, ours, answer)}
    assert states == {
        to_us: casework.OPENED,
        not_to_us: casework.NOT_ADDRESSED,
        tampered: casework.UNVERIFIED,
        gone: casework.UNAVAILABLE,
        ours: casework.SENT,
        answer: casework.OPENED,
    }
    assert view.contents[to_us].payload["text"] == MARKER  # type: ignore[index]
    assert view.contents[ours].payload == referral()
    assert view.contents[not_to_us].payload is None and MARKER not in repr(view.contents)
    assert regie.state.messages() == []  # read for the view, not received into the inbox
    assert [p["text"] for p in view.payloads("signal")] == [MARKER]


@pytest.mark.parametrize(
    "lie",
    [
        {"sender": OrgId("ggd")},  # the hub names another sender than the signed one
        {"type": "referral"},  # another kind
        {"code": "declined"},  # another status code
        {"referral": MessageId("AAAAAAAAAAAAAAAAAAAAAA")},  # about another referral
    ],
)
async def test_a_timeline_that_disagrees_with_the_signed_header_does_not_verify(
    net: Net, lie: dict[str, Any]
) -> None:
    regie, opvang = await net.make("regie", "coordinator"), await net.make("opvang")
    await net.make("ggd")
    ours = await regie.send_referral(referral(), "opvang", case=REF)
    await opvang.receive()
    answer = await opvang.send_status(ours, "accepted", status("accepted"))
    wire = net.hub.sent[-1]
    net.hub.details[REF] = _detail(REF, [_entry(wire, **lie)])
    view = await regie.case_view(REF)
    assert view.contents[answer] == casework.Inline(casework.UNVERIFIED)


async def test_a_sent_payload_that_was_altered_or_moved_does_not_open(net: Net) -> None:
    regie, _ = await net.make("regie", "coordinator"), await net.make("opvang")
    first = await regie.send_referral(referral(), "opvang", case=REF)
    second = await regie.send_referral(referral(consent=False), "opvang", case=REF)
    db = regie.state._db
    [(sealed,)] = db.execute("SELECT sealed FROM sent_payloads WHERE id = ?", (first,)).fetchall()
    db.execute("UPDATE sent_payloads SET sealed = ? WHERE id = ?", (sealed, second))
    with pytest.raises(VerificationFailed, match="kept under another id"):
        regie.sent_payload(second)
    flipped = bytearray(sealed)
    flipped[-1] ^= 1
    db.execute("UPDATE sent_payloads SET sealed = ? WHERE id = ?", (bytes(flipped), first))
    with pytest.raises(VerificationFailed, match="stored sent payload did not verify"):
        regie.sent_payload(first)
    net.hub.details[REF] = _detail(REF, [_entry(w) for w in net.hub.sent])
    view = await regie.case_view(REF)
    assert {i.state for i in view.contents.values()} == {casework.UNVERIFIED}


# -- CoMensha ----------------------------------------------------------------------------


async def _two_cases(net: Net) -> Organisation:
    regie, opvang = await net.make("regie", "coordinator"), await net.make("opvang")
    police = await net.make("police")
    one = await police.send_signal(
        signal({"given_names": "Anna", "family_name": "Zwaan", "date_of_birth": "2001-02-03"}),
        ["regie"],
    )
    two = await police.send_signal(signal({"bsn": "123456782", "sex": "male"}), ["regie"])
    await regie.send_referral(referral(consent=True), "opvang", case=REF)
    await regie.send_referral(referral(consent=False), "opvang", case=REF_2)
    await opvang.receive()
    wires = {w["header"]["id"]: w for w in net.hub.sent}
    referrals = [w for w in net.hub.sent if w["header"]["kind"] == "referral"]
    net.hub.details[REF] = _detail(REF, [_entry(wires[one]), _entry(referrals[0])])
    net.hub.details[REF_2] = _detail(REF_2, [_entry(wires[two]), _entry(referrals[1])])
    return regie


async def test_comensha_writes_one_file_per_kind_from_what_the_coordinator_reads(
    net: Net, tmp_path: Path
) -> None:
    regie = await _two_cases(net)
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    registrations, statistics = tmp_path / "reg.csv", tmp_path / "stat.csv"
    assert await regie.comensha(registrations, statistics) == (1, 1)
    with registrations.open(newline="") as handle:
        [row] = list(csv.DictReader(handle))
    assert row["case_ref"] == REF and row["family_name"] == "Zwaan"
    assert row["reporting_org_types"] == "police" and row["exploitation_forms"] == "labour"
    text = statistics.read_text()
    assert REF_2 not in text and "123456782" not in text and "male" in text
    assert registrations.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reg.csv", "stat.csv"]


async def test_comensha_writes_both_files_or_neither(net: Net, tmp_path: Path) -> None:
    regie = await _two_cases(net)
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    existing = tmp_path / "reg.csv"
    existing.write_text("keep me")
    with pytest.raises(ClientError, match="already exists"):
        await regie.comensha(existing, tmp_path / "stat.csv")
    assert existing.read_text() == "keep me" and not (tmp_path / "stat.csv").exists()
    with pytest.raises(ClientError, match="two different files"):
        await regie.comensha(tmp_path / "a.csv", tmp_path / "a.csv")
    with pytest.raises(FileNotFoundError):  # the second file can not be written
        await regie.comensha(tmp_path / "b.csv", tmp_path / "no-such-dir" / "s.csv")
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["reg.csv"]


async def test_a_case_without_a_signal_gives_no_row(net: Net, tmp_path: Path) -> None:
    regie, _ = await net.make("regie", "coordinator"), await net.make("opvang")
    await regie.send_referral(referral(person={"bsn": "111222333"}), "opvang")
    net.hub.details[REF] = _detail(REF, [_entry(net.hub.sent[0])])
    assert await regie.comensha(tmp_path / "r.csv", tmp_path / "s.csv") == (0, 0)
    assert (tmp_path / "r.csv").read_text().startswith("case_ref,")
