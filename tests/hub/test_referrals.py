"""Referrals through the hub: who may refer to whom, every step legal or not, escalation."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from hub.deadlines import AMSTERDAM
from protocol.envelope import Envelope
from protocol.pseudonym import LinkingKey, pseudonym
from protocol.referral import STEPS

if TYPE_CHECKING:
    from conftest import HubHarness, Party

KEY = LinkingKey(1, b"k" * 32)
ANNA = (pseudonym("tel", "0611111111", KEY),)
CODES = ("accepted", "declined", "care_started", "closed")
# (step, code, party) that the hub accepts: docs/protocol.md, "Cases and referrals".
LEGAL = {
    ("sent", "accepted", "recipient"),
    ("sent", "declined", "recipient"),
    ("delivered", "accepted", "recipient"),
    ("delivered", "declined", "recipient"),
    ("accepted", "care_started", "recipient"),
    ("care_started", "closed", "recipient"),
    ("care_started", "closed", "referrer"),
    ("sent", "closed", "referrer"),
    ("delivered", "closed", "referrer"),
    ("accepted", "closed", "referrer"),
    ("declined", "closed", "referrer"),
}
# How to bring a fresh referral to each step: (party, code) in order; "ack" acknowledges.
PATHS: dict[str, list[tuple[str, str]]] = {
    "sent": [],
    "delivered": [("recipient", "ack")],
    "accepted": [("recipient", "ack"), ("recipient", "accepted")],
    "declined": [("recipient", "ack"), ("recipient", "declined")],
    "care_started": [
        ("recipient", "ack"),
        ("recipient", "accepted"),
        ("recipient", "care_started"),
    ],
    "closed": [("referrer", "closed")],
}


class Chain:
    """A coordinator, a police force, a shelter, a legal-aid office and the GGD."""

    def __init__(self, hub: HubHarness) -> None:
        self.hub = hub

    async def start(self) -> Chain:
        hub = self.hub
        self.coordinator = await hub.enrol(
            "coordinator", ("member", "coordinator"), org_type="coordination"
        )
        self.coordinator.purpose = "case-coordination"
        self.police = await hub.enrol("police", org_type="police")
        self.shelter = await hub.enrol("shelter", org_type="shelter")
        self.legal = await hub.enrol("legal", org_type="legal_aid")
        self.ggd = await hub.enrol("ggd", org_type="ggd")
        signal = hub.envelope(self.police, [self.coordinator], pseudonyms=ANNA)
        assert (await hub.send(self.police, signal)).status == 201
        listing = await self.get("/v1/cases")
        self.case = listing["cases"][0]["case"]
        return self

    async def relogin(self) -> None:
        """Fresh tokens after the test moved the clock on by more than their lifetime."""
        for party in (self.coordinator, self.police, self.shelter, self.legal, self.ggd):
            await self.hub.login(party)

    async def get(self, path: str, party: Party | None = None, **query: Any) -> Any:
        party = party or self.coordinator
        response = await self.hub.client.get(path, headers=party.headers(), params=query)
        assert response.status == 200, await response.text()
        return await response.json()

    def referral(self, to: Party | None = None, sender: Party | None = None, **kw: Any) -> Envelope:
        sender = sender or self.coordinator
        kw.setdefault("case", self.case)
        return self.hub.envelope(sender, [to or self.shelter], kind="referral", **kw)

    async def refer(self, to: Party | None = None, **kw: Any) -> Envelope:
        envelope = self.referral(to, **kw)
        response = await self.hub.send(kw.get("sender") or self.coordinator, envelope)
        assert response.status == 201, await response.text()
        return envelope

    async def status(self, sender: Party, referral: Envelope, code: str, to: Party) -> int:
        envelope = self.hub.envelope(
            sender, [to], kind="status", status=code, ref=referral.header.id
        )
        response = await self.hub.send(sender, envelope)
        return response.status

    async def ack(self, party: Party, message: Envelope) -> int:
        response = await self.hub.client.post(
            f"/v1/messages/{message.header.id}/ack", headers=party.headers()
        )
        return response.status

    async def act(self, referral: Envelope, party: str, code: str, *, to: Party) -> int:
        """``party`` (referrer or recipient) sends ``code`` (or acknowledges, ``ack``)."""
        actor = self.coordinator if party == "referrer" else to
        other = to if party == "referrer" else self.coordinator
        if code == "ack":
            return await self.ack(actor, referral)
        return await self.status(actor, referral, code, other)

    async def record(self, referral: Envelope) -> dict[str, Any]:
        detail = await self.get(f"/v1/cases/{self.case}")
        (found,) = [r for r in detail["referral_list"] if r["id"] == referral.header.id]
        return dict(found)


@pytest.fixture
async def chain(hub: HubHarness) -> Chain:
    return await Chain(hub).start()


# -- who may refer -----------------------------------------------------------------------


async def test_a_referral_goes_to_shelter_care_or_legal_aid_only(
    chain: Chain, hub: HubHarness
) -> None:
    for target in (chain.ggd, chain.police):
        before = await hub.counts()
        response = await hub.send(chain.coordinator, chain.referral(target))
        await hub.problem(response, 422, "invalid-referral")
        assert (await hub.counts())["messages"] == before["messages"]
    assert (await hub.send(chain.coordinator, chain.referral(chain.legal))).status == 201


async def test_only_a_coordinator_names_a_case(chain: Chain, hub: HubHarness) -> None:
    known = chain.referral(sender=chain.police)
    await hub.problem(await hub.send(chain.police, known), 422, "unknown-case")
    unknown = chain.referral(case="a" * 16)
    await hub.problem(await hub.send(chain.coordinator, unknown), 422, "unknown-case")


async def test_a_referral_by_pseudonyms_joins_the_case(chain: Chain, hub: HubHarness) -> None:
    envelope = chain.referral(sender=chain.police, case=None, pseudonyms=ANNA)
    assert (await hub.send(chain.police, envelope)).status == 201
    record = await chain.record(envelope)
    assert (record["referrer"], record["recipient"], record["step"]) == (
        "police",
        "shelter",
        "sent",
    )
    events = (await chain.get("/v1/events"))["events"]
    assert [(e["kind"], e.get("step")) for e in events] == [("match", None), ("referral", "sent")]
    assert all(e["case"] == chain.case for e in events)


# -- the state machine, through the hub ----------------------------------------------------


async def test_a_referral_walks_to_care_and_is_closed(chain: Chain, hub: HubHarness) -> None:
    referral = await chain.refer()
    steps = [("ack", chain.shelter), ("accepted", chain.shelter), ("care_started", chain.shelter)]
    for code, actor in steps:
        hub.clock.advance(200)
        if code == "ack":
            assert await chain.ack(actor, referral) == 204
        else:
            assert await chain.status(actor, referral, code, chain.coordinator) == 201
    hub.clock.advance(200)
    assert await chain.status(chain.coordinator, referral, "closed", chain.shelter) == 201
    record = await chain.record(referral)
    t = record["steps"]["sent"]
    assert record["step"] == "closed"
    assert record["steps"] == {
        "sent": t, "delivered": t + 200, "accepted": t + 400,
        "care_started": t + 600, "closed": t + 800,
    }  # fmt: skip
    case = (await chain.get("/v1/cases"))["cases"][0]
    assert case["state"] == "closed" and case["open_referrals"] == 0
    timeline = (await chain.get(f"/v1/cases/{chain.case}"))["timeline"]
    assert [(i["type"], i.get("code")) for i in timeline] == [
        ("signal", None), ("referral", None), ("delivered", None), ("status", "accepted"),
        ("status", "care_started"), ("status", "closed"),
    ]  # fmt: skip


async def test_every_step_code_and_party(chain: Chain, hub: HubHarness) -> None:
    """All 6 x 4 x 2 combinations; a refused one changes nothing."""
    for step, code, party in itertools.product(STEPS, CODES, ("referrer", "recipient")):
        referral = await chain.refer()
        for actor, done in PATHS[step]:
            assert await chain.act(referral, actor, done, to=chain.shelter) in (201, 204)
        assert (await chain.record(referral))["step"] == step
        status = await chain.act(referral, party, code, to=chain.shelter)
        expected = 201 if (step, code, party) in LEGAL else 409
        assert status == expected, (step, code, party)
        after = (await chain.record(referral))["step"]
        if expected == 409:
            assert after == step, (step, code, party)
        else:
            assert after == code, (step, code, party)


async def test_a_stranger_can_not_move_a_referral(chain: Chain, hub: HubHarness) -> None:
    referral = await chain.refer()
    before = await chain.record(referral)
    for stranger in (chain.police, chain.legal):
        response = await hub.send(
            stranger,
            hub.envelope(
                stranger, [chain.coordinator], kind="status", status="accepted",
                ref=referral.header.id,
            ),
        )  # fmt: skip
        await hub.problem(response, 422, "unknown-referral")
    assert await chain.record(referral) == before
    # The recipient's status must reach the referrer.
    wrong = hub.envelope(
        chain.shelter, [chain.police], kind="status", status="accepted", ref=referral.header.id
    )
    await hub.problem(await hub.send(chain.shelter, wrong), 422, "invalid-referral")
    # A status about a message that is no referral looks the same as one about nothing.
    signal = hub.envelope(chain.police, [chain.shelter])
    assert (await hub.send(chain.police, signal)).status == 201
    about_signal = hub.envelope(
        chain.shelter, [chain.police], kind="status", status="accepted", ref=signal.header.id
    )
    await hub.problem(await hub.send(chain.shelter, about_signal), 422, "unknown-referral")
    # Only the recipient's acknowledgement delivers it.
    assert await chain.ack(chain.police, referral) == 404
    assert (await chain.record(referral))["step"] == "sent"


async def test_a_declined_referral_is_referred_again(chain: Chain, hub: HubHarness) -> None:
    first = await chain.refer()
    assert await chain.status(chain.shelter, first, "declined", chain.coordinator) == 201
    case = (await chain.get("/v1/cases"))["cases"][0]
    assert case["state"] == "declined"
    (open_one,) = (await chain.get("/v1/referrals"))["referrals"]
    assert (open_one["id"], open_one["holder"]) == (first.header.id, "coordinator")
    # Not by another organisation, not of a referral that was not declined.
    other = chain.referral(chain.legal, sender=chain.police, case=None, pseudonyms=ANNA,
                           ref=first.header.id)  # fmt: skip
    await hub.problem(await hub.send(chain.police, other), 422, "unknown-referral")
    pending = await chain.refer(chain.legal)
    again = chain.referral(chain.legal, ref=pending.header.id)
    await hub.problem(await hub.send(chain.coordinator, again), 409, "illegal-transition")
    second = await chain.refer(chain.legal, ref=first.header.id)
    replaced = await chain.record(first)
    assert (replaced["step"], replaced["replaced_by"]) == ("closed", second.header.id)
    open_ids = [r["id"] for r in (await chain.get("/v1/referrals"))["referrals"]]
    assert first.header.id not in open_ids and second.header.id in open_ids


# -- escalation ----------------------------------------------------------------------------


def _local(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).astimezone(AMSTERDAM).strftime("%a %H:%M")


async def test_escalation_fires_at_the_limit_and_not_before(chain: Chain, hub: HubHarness) -> None:
    referral = await chain.refer()
    assert await chain.ack(chain.shelter, referral) == 204  # delivered: 2 working days
    delivered = (await chain.record(referral))["steps"]["delivered"]
    assert _local(delivered) == "Thu 10:53"
    due = delivered + 4 * 86400  # Thursday -> Monday, the weekend does not count
    assert _local(due) == "Mon 10:53"
    hub.clock.now = due - 1
    await chain.relogin()
    assert await hub.escalator.escalate_now() == 0
    (waiting,) = (await chain.get("/v1/referrals"))["referrals"]
    assert (waiting["due"], waiting["overdue"], waiting["holder"]) == (due, False, "shelter")
    hub.clock.now = due
    assert await hub.escalator.escalate_now() == 2  # coordinator, and the shelter's reminder
    assert await hub.escalator.escalate_now() == 0  # once per step
    (overdue,) = (await chain.get("/v1/referrals"))["referrals"]
    assert overdue["overdue"] is True
    (escalation,) = [e for e in (await chain.get("/v1/events"))["events"]
                     if e["kind"] == "escalation"]  # fmt: skip
    assert (escalation["case"], escalation["step"], escalation["detail"]["due"]) == (
        chain.case, "delivered", due,
    )  # fmt: skip
    chain.shelter.purpose = "care-delivery"
    (reminder,) = (await chain.get("/v1/events", chain.shelter))["events"]
    assert reminder["kind"] == "reminder" and reminder["message"] == referral.header.id
    assert "case" not in reminder  # never a case for an ordinary organisation
    # The next step has its own clock: accepted now, care must start within 5 working days.
    assert await chain.status(chain.shelter, referral, "accepted", chain.coordinator) == 201
    assert await hub.escalator.escalate_now() == 0


async def test_overdue_referrals_come_first(chain: Chain, hub: HubHarness) -> None:
    late = await chain.refer()  # sent: 1 working day
    hub.clock.advance(2 * 86400)
    await chain.relogin()
    fresh = await chain.refer(chain.legal)
    views = (await chain.get("/v1/referrals"))["referrals"]
    assert [v["id"] for v in views] == [late.header.id, fresh.header.id]
    assert [v["overdue"] for v in views] == [True, False]
    assert views[0]["waiting"] == 2 * 86400
