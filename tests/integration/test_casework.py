"""The coordinator's work end to end: one case from three signals, referrals that move on.

A real hub on loopback (its clock injected, so escalation needs no waiting), over
SQLite and over PostgreSQL, and real clients. The police, the GGD and a school each
signal about one person, written three ways (BSN + name, name written otherwise +
phone, phone written otherwise): no two signals share every identifier, but the
overlaps chain them into ONE case. The
coordinator refers the person to the shelter, which receives, accepts and (after an
escalation for waiting too long) starts care; the coordinator closes. A second person
is declined by the shelter and referred again to a legal-aid organisation. Then the
CoMensha files, and the canaries: no identity, no plaintext and no private key anywhere
in the hub's database or logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import dataclasses
import io
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp.test_utils import TestServer
from click.testing import CliRunner
from test_exchange import BSN, GIVEN, _canaries, _hub_bytes

from clients import caseview, referrals
from clients.cli.org import org as org_command
from clients.errors import CaseNotFound, ClientError
from clients.hub_client import EventNotice, Notice
from clients.organisation import Organisation
from hub.app import make_app
from hub.deadlines import Deadline
from hub.http.common import SERVICES
from hub.logs import configure_logging
from keys.authority import Authority
from keys.hub import HubKeys
from keys.keyfile import KdfParams
from keys.organisation import OrgKeys
from protocol.types import OrgId
from schakel import demo as demo_network

if TYPE_CHECKING:
    from conftest import HubDatabase

TEXT = "CANARY-casework-7f3a9c1e"  # in every free-text field
DOB = "1999-03-14"
OTHER_BSN = "123456782"
OTHER_FAMILY = "Kowalczyk"
ORGS = {
    "police": ("member",),
    "ggd": ("member",),
    "school": ("member",),
    "shelter": ("member",),
    "coordinator": ("member", "coordinator"),
}
LEGAL_AID = "advocaat"  # certified as legal_aid, added next to the demo's organisations
WAIT_ACCEPTED = 2 * 3600  # the network's limit at step accepted, in this test


class HubClock:
    """The hub's clock: real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = 0

    def __call__(self) -> int:
        return int(time.time()) + self.offset


@dataclass
class CaseNet:
    demo: demo_network.DemoNetwork
    base_url: str
    database: HubDatabase
    log: io.StringIO
    linking_key: bytes
    clock: HubClock
    app: Any

    @contextlib.asynccontextmanager
    async def acting(self, org: str) -> AsyncIterator[Organisation]:
        organisation = demo_network.open_organisation(self.demo, org, self.base_url)
        try:
            async with organisation.hub:
                yield organisation
        finally:
            organisation.state.close()

    async def escalate(self) -> int:
        return int(await self.app[SERVICES].escalator.escalate_now())


def _provision(directory: Path, now: int) -> demo_network.DemoNetwork:
    demo = demo_network.provision(directory, now=now, orgs=ORGS)
    authority = Authority.open(demo.authority_dir, demo.passphrase)
    keys = OrgKeys.create(
        demo.home(LEGAL_AID) / "keys",
        demo.network,
        OrgId(LEGAL_AID),
        demo.passphrase,
        KdfParams.for_tests(),
        allow_weak=True,
    )
    keys.pin_root(authority.root.der, now=now)
    cert = authority.enrol(keys.request_der, ["member"], now=now, org_type="legal_aid")
    keys.import_certificate(cert.der, now=now)
    return dataclasses.replace(demo, orgs=(*demo.orgs, OrgId(LEGAL_AID)))


@pytest.fixture
async def net(tmp_path: Path, hub_database: HubDatabase) -> AsyncIterator[CaseNet]:
    now = int(time.time())
    demo = _provision(tmp_path / "demo", now)
    hub_keys = HubKeys.open(demo.hub_dir, demo.passphrase)
    log = io.StringIO()
    root_logger = logging.getLogger()
    saved = (root_logger.handlers[:], root_logger.level)
    configure_logging(logging.DEBUG, stream=log)
    config = dataclasses.replace(
        demo_network.hub_config(demo, host="127.0.0.1", port=0),
        escalation={"accepted": Deadline(WAIT_ACCEPTED // 3600, "h")},
        database_url=hub_database.url,
    )
    clock = HubClock()
    app = make_app(
        config,
        token_key_pem=hub_keys.token_key_pem,
        hub_certificate_der=hub_keys.certificate.der if hub_keys.certificate else None,
        log_signing_key=hub_keys.signing_key,
        clock=clock,
        escalate=False,  # the test escalates by hand, at the times it chooses
    )
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        base_url = str(server.make_url("")).rstrip("/")
        await demo_network.bootstrap(demo, base_url, now=now)
        key = Authority.open(demo.authority_dir, demo.passphrase).current_linking_key().key
        yield CaseNet(demo, base_url, hub_database, log, key, clock, app)
    finally:
        await server.close()
        root_logger.handlers[:], level = saved
        root_logger.setLevel(level)


# -- payloads ---------------------------------------------------------------------------


def _signal(person: dict[str, str], exploitation: str = "sexual") -> dict[str, Any]:
    return {
        "schema": "schakel.signal/1",
        "person": person,
        "exploitation": exploitation,
        "indicators": ["control.documents_withheld"],
        "text": f"{TEXT} signal",
        "urgency": "high",
        "consent_to_share": True,
    }


def _referral(*, consent: bool, service: str = "shelter") -> dict[str, Any]:
    return {
        "schema": "schakel.referral/1",
        "service": service,
        "urgency": "urgent",
        "reason": f"{TEXT} needs a safe place tonight",
        "shared_with_person": f"{TEXT} told about the shelter",
        "consent": {
            "share_with_recipient": True,
            "comensha_registration": consent,
            "recorded_on": "2025-01-10",
        },
        "exploitation": "sexual",
    }


def _status(code: str, **extra: str) -> dict[str, Any]:
    return {"schema": "schakel.status/1", "status": code, "explanation": f"{TEXT} {code}", **extra}


POLICE_PERSON = {
    "given_names": f"{GIVEN} Maria",
    "family_name": "van Oosterwijk",
    "date_of_birth": DOB,
    "bsn": BSN,
    "sex": "female",
    "nationality": "NL",
}
GGD_PERSON = {  # the name written otherwise (same name pseudonym) and a phone number
    "given_names": GIVEN.upper(),
    "family_name": "OOSTERWIJK",
    "date_of_birth": DOB,
    "phone": "06-1234 5678",
}
SCHOOL_PERSON = {"phone": "+31 6 1234 5678", "given_names": GIVEN}  # the phone, written otherwise
OTHER_PERSON = {"bsn": OTHER_BSN, "family_name": OTHER_FAMILY, "sex": "male", "age_estimate": 34}


# -- helpers ------------------------------------------------------------------------------


async def _signal_from(net: CaseNet, org: str, person: dict[str, Any], **kw: str) -> str:
    async with net.acting(org) as organisation:
        return (await organisation.send_signal(_signal(person, **kw), ["coordinator"])).id


async def _receive(net: CaseNet, org: str) -> dict[str, Any]:
    async with net.acting(org) as organisation:
        result = await organisation.receive()
    assert list(result.rejected) == []
    return {m.id: m for m in result.messages}


async def _events(net: CaseNet, org: str, kind: str, message: str) -> list[Any]:
    async with net.acting(org) as organisation:
        page = await organisation.hub.events()
    return [e for e in page.events if e.kind == kind and e.message == message]


async def _listen(net: CaseNet, ready: asyncio.Event, want: int) -> list[Notice | EventNotice]:
    async with net.acting("coordinator") as organisation:
        stream = organisation.hub.live()
        first = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.2)  # subscribed before anyone sends
        ready.set()
        seen = [await first]
        while len(seen) < want:
            seen.append(await anext(stream))
        await stream.aclose()
    return seen


def _cli(net: CaseNet, org: str, *args: str) -> Any:
    env = {
        "SCHAKEL_HOME": str(net.demo.home(org)),
        "SCHAKEL_PASSPHRASE": demo_network.PASSPHRASE,
        "SCHAKEL_WEAK_KDF": "1",
        "SCHAKEL_HUB_URL": net.base_url,
        "SCHAKEL_USER": "c.oordinator",
        "SCHAKEL_PURPOSE": "case-coordination",
    }
    return CliRunner().invoke(org_command, list(args), env=env)


def _today(net: CaseNet) -> str:
    """Today as the clients see it (their clock is the real one; the hub's runs ahead)."""
    return referrals.day_of(int(time.time())).isoformat()


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# -- the scenario -------------------------------------------------------------------------


async def _one_case_from_three_signals(net: CaseNet) -> tuple[str, list[str]]:
    police_id = await _signal_from(net, "police", POLICE_PERSON)
    ready = asyncio.Event()
    listener = asyncio.create_task(_listen(net, ready, 2))
    await asyncio.wait_for(ready.wait(), 10)
    ggd_id = await _signal_from(net, "ggd", GGD_PERSON)
    notices = await asyncio.wait_for(listener, 10)
    # the message notice and, apart from it, the match event (the GGD joined a case)
    assert Notice(notices[0].cursor, ggd_id) in notices  # type: ignore[arg-type]
    assert [n.kind for n in notices if isinstance(n, EventNotice)] == ["match"]
    school_id = await _signal_from(net, "school", SCHOOL_PERSON)

    async with net.acting("coordinator") as coordinator:
        page = await coordinator.hub.cases()
    assert page.total == 1 and len(page.cases) == 1
    [case] = page.cases
    assert case.signals == 3 and case.state == "new" and case.open_referrals == 0
    assert sorted(o.org_type for o in case.orgs) == ["ggd", "police", "school"]
    matches = await _events(net, "coordinator", "match", school_id)
    assert len(matches) == 1 and matches[0].case == case.case
    assert matches[0].detail["sender_type"] == "school"
    return case.case, [police_id, ggd_id, school_id]


async def test_three_signals_one_case_a_referral_through_care_and_no_identity_on_the_hub(
    net: CaseNet, tmp_path: Path
) -> None:
    ref, signals = await _one_case_from_three_signals(net)

    # another organisation learns nothing of cases
    async with net.acting("police") as police:
        with pytest.raises(CaseNotFound, match="not a coordinator"):
            await police.hub.case(ref)

    # the coordinator refers the person to the shelter, in that case
    async with net.acting("coordinator") as coordinator:
        referral = (
            await coordinator.send_referral(_referral(consent=True), "shelter", case=ref)
        ).id
        assert coordinator.sent_payload(referral) == _referral(consent=True)
        # not received yet: the view fetches each signal, verifies and opens it (not stored)
        early = await coordinator.case_view(ref)
        assert [early.contents[m].state for m in signals] == [caseview.OPENED] * 3
        assert coordinator.state.message(signals[0]) is None
        assert early.case.referrals[0].step == "sent"

    # the shelter's client receives it (which delivers it) and accepts
    received = await _receive(net, "shelter")
    assert received[referral].kind == "referral" and received[referral].case == ref
    assert received[referral].payload["reason"] == f"{TEXT} needs a safe place tonight"
    async with net.acting("shelter") as shelter:
        assert referrals.known_step(shelter, referral, "recipient") == "delivered"
        with pytest.raises(ClientError, match="can send: accepted, declined"):
            await shelter.send_status(referral, "care_started", _status("care_started"))
        await shelter.send_status(referral, "accepted", _status("accepted"))

    # not accepted into care within the limit: escalated at the limit, not before
    net.clock.offset = WAIT_ACCEPTED - 60
    await net.escalate()
    assert await _events(net, "coordinator", "escalation", referral) == []
    net.clock.offset = WAIT_ACCEPTED + 60
    assert await net.escalate() == 2  # an escalation (coordinator) and a reminder (shelter)
    [escalation] = await _events(net, "coordinator", "escalation", referral)
    assert escalation.case == ref and escalation.step == "accepted"
    [reminder] = await _events(net, "shelter", "reminder", referral)
    assert reminder.case is None  # an ordinary organisation never learns a case reference
    async with net.acting("coordinator") as coordinator:
        [waiting] = await coordinator.hub.referrals()
    assert waiting.referral.id == referral and waiting.overdue and waiting.holder == "shelter"

    async with net.acting("shelter") as shelter:
        await shelter.send_status(
            referral, "care_started", _status("care_started", care_started_on=_today(net))
        )

    # the coordinator sees the steps, then closes the chain
    statuses = await _receive(net, "coordinator")
    assert sorted(m.status for m in statuses.values() if m.kind == "status") == [
        "accepted",
        "care_started",
    ]
    async with net.acting("coordinator") as coordinator:
        closed = (await coordinator.send_status(referral, "closed", _status("closed"))).id
        view = await coordinator.case_view(ref)

    summary = view.case.summary
    assert summary.state == "closed" and summary.signals == 3
    [tracked] = view.case.referrals
    assert tracked.step == "closed"
    assert list(tracked.steps) == ["sent", "delivered", "accepted", "care_started", "closed"]
    # the signals decrypted inline, the coordinator's own referral and close as written
    opened = {m: view.contents[m] for m in signals}
    assert {i.state for i in opened.values()} == {caseview.OPENED}
    assert opened[signals[0]].payload["person"]["family_name"] == "van Oosterwijk"  # type: ignore[index]
    assert opened[signals[2]].payload["person"]["phone"] == "+31 6 1234 5678"  # type: ignore[index]
    assert view.contents[referral].state == caseview.SENT
    assert view.contents[closed].state == caseview.SENT
    codes = [e.code for e in view.case.timeline if e.type == "status"]
    assert codes == ["accepted", "care_started", "closed"]
    assert [e.type for e in view.case.timeline].count("delivered") == 1

    # the case command shows the same, decrypted, for a person at a terminal
    shown = await asyncio.to_thread(_cli, net, "coordinator", "case", ref)
    assert shown.exit_code == 0, shown.output
    assert "van Oosterwijk" in shown.output and "[written by this organisation]" in shown.output

    # a second person, declined by the shelter, referred again to legal aid
    other_ref = await _declined_and_referred_again(net)

    # CoMensha: one registration (consent) and one statistics row (no consent)
    registrations, statistics = tmp_path / "reg.csv", tmp_path / "stats.csv"
    async with net.acting("coordinator") as coordinator:
        files = await coordinator.comensha(registrations, statistics)
    assert (files.registrations, files.statistics) == (1, 1)
    [registered] = _rows(registrations)
    assert registered["case_ref"] == ref and registered["signal_count"] == "3"
    assert registered["date_of_birth"] == DOB and GIVEN.lower() in registered["given_names"].lower()
    assert registered["reporting_org_types"] == "ggd;police;school"
    [anonymous] = _rows(statistics)
    assert anonymous["sex"] == "male" and anonymous["age_band"] == "30-39"
    assert other_ref not in statistics.read_text() and OTHER_FAMILY not in statistics.read_text()
    assert registrations.stat().st_mode & 0o077 == 0

    # the command writes the same files, and never over existing ones
    again = await asyncio.to_thread(
        _cli, net, "coordinator", "comensha", "--registrations", str(registrations),
        "--statistics", str(tmp_path / "new.csv"),
    )  # fmt: skip
    assert again.exit_code == 1 and "already exists" in again.output
    assert not (tmp_path / "new.csv").exists()

    await _assert_no_identity_on_the_hub(net, signals[0])


async def _declined_and_referred_again(net: CaseNet) -> str:
    await _signal_from(net, "police", OTHER_PERSON, exploitation="labour")
    async with net.acting("coordinator") as coordinator:
        cases = {c.case: c for c in (await coordinator.hub.cases()).cases}
        assert len(cases) == 2
        [other_ref] = [c for c, s in cases.items() if s.orgs[0].org == "police" and s.signals == 1]
        first = (
            await coordinator.send_referral(_referral(consent=False), "shelter", case=other_ref)
        ).id
    await _receive(net, "shelter")
    async with net.acting("shelter") as shelter:
        await shelter.send_status(first, "declined", _status("declined", reason_code="no_capacity"))
    answers = await _receive(net, "coordinator")
    [decline] = [m for m in answers.values() if m.ref == first]
    assert decline.payload["reason_code"] == "no_capacity"

    async with net.acting("coordinator") as coordinator:
        with pytest.raises(ClientError, match="legal_aid"):  # the police are no care provider
            await coordinator.send_referral(_referral(consent=False), "police", case=other_ref)
        second = (await coordinator.send_referral(
            _referral(consent=False, service="legal_aid"), LEGAL_AID, case=other_ref,
            replaces=first,
        )).id  # fmt: skip
    received = await _receive(net, LEGAL_AID)
    assert received[second].ref == first and received[second].case == other_ref
    async with net.acting(LEGAL_AID) as legal_aid:
        await legal_aid.send_status(second, "accepted", _status("accepted"))
    async with net.acting("coordinator") as coordinator:
        view = await coordinator.case_view(other_ref)
    steps = {r.id: (r.step, r.replaced_by) for r in view.case.referrals}
    assert steps == {first: ("closed", second), second: ("accepted", None)}
    assert view.case.summary.state == "referred"
    return other_ref


async def _assert_no_identity_on_the_hub(net: CaseNet, some_message: str) -> None:
    stored = await _hub_bytes(net)  # type: ignore[arg-type]
    logged = net.log.getvalue().encode()
    assert logged and some_message.encode() in stored  # the checks read the real database
    canaries = _canaries(net)  # type: ignore[arg-type]
    canaries |= {
        "text": TEXT.encode(),
        "date of birth": DOB.encode(),
        "date of birth (compact)": DOB.replace("-", "").encode(),
        "other BSN": OTHER_BSN.encode(),
        "other family name": OTHER_FAMILY.encode(),
        "other family name (lower)": OTHER_FAMILY.lower().encode(),
    }
    for name, canary in canaries.items():
        assert canary not in stored, f"{name} found in the hub's database"
        assert canary not in logged, f"{name} found in the hub's log"
