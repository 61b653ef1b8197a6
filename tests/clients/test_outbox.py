"""The outbox: what an organisation writes is never lost while the hub can not take it.

On the real hub (``conftest.hub``), taken out of reach, made to lose an answer, to be
overloaded or to refuse through the organisation's ``Tap``.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from client_harness import MARKER, PASS, Hub

from clients.errors import HubProblem, NotReady
from clients.hub_client import Purpose
from clients.organisation import Organisation
from clients.outbox import REFUSED, WAITING, Draft
from clients.state import LocalState
from clients.transport import Request, Response, TransportFailed
from keys.organisation import OrgKeys
from protocol.envelope import Envelope

PERSON = {"bsn": "111222333", "given_names": "Anna", "family_name": "Zwaan"}


def signal(**changes: Any) -> dict[str, Any]:
    return {"schema": "schakel.signal/1", "person": PERSON, "exploitation": "labour",
            "urgency": "high", "consent_to_share": True, "text": MARKER} | changes  # fmt: skip


def posting(request: Request) -> bool:
    return request.method == "POST" and request.url.endswith("/v1/messages")


def problem(status: int) -> Response:
    doc = {"type": "urn:schakel:problem:x", "title": "Refused", "status": status, "detail": "no"}
    return Response(status, {"content-type": "application/problem+json"}, json.dumps(doc).encode())


def hub_messages(hub: Hub) -> list[tuple[str, str]]:
    return [(str(i), str(e)) for i, e in hub.rows("SELECT id, envelope FROM messages ORDER BY id")]


async def test_a_signal_written_while_the_hub_is_down_waits_and_goes_out_with_its_id(
    hub: Hub,
) -> None:
    police, ggd = await hub.join("politie"), await hub.join("ggd")
    hub.taps["politie"].down = True
    sent = await police.send_signal(signal(), ["ggd"])
    assert sent.waiting and sent.accepted is None and "unreachable" in str(sent.problem)
    assert sent.pseudonyms  # derived locally: shown at once
    [entry] = police.outbox.entries()
    assert (entry.id, entry.state, entry.kind, entry.recipients) == (sent.id, WAITING, "signal",
                                                                     ("ggd",))  # fmt: skip
    assert entry.attempts == 1 and not entry.sealed and "unreachable" in str(entry.problem)
    assert police.outbox.draft(sent.id).payload == signal()
    assert police.state.sent() == [] and hub_messages(hub) == []
    state = b"".join(p.read_bytes() for p in hub.home("politie").glob("state.sqlite*"))
    assert MARKER.encode() not in state and b"111222333" not in state

    hub.taps["politie"].down = False
    report = await police.send_outbox()
    assert [s.id for s in report.sent] == [sent.id] and report.waiting == report.refused == ()
    assert police.outbox.entries() == () and [s.id for s in police.state.sent()] == [sent.id]
    assert police.sent_payload(sent.id) == signal()
    [message] = (await ggd.receive()).messages
    assert message.id == sent.id and message.payload == signal()


async def test_each_entry_is_sent_naming_the_person_who_wrote_it(hub: Hub) -> None:
    """A desk acts for several people over one client: what each wrote while the hub was
    away goes out later naming its author and purpose, whoever sends the outbox."""
    police, ggd = await hub.join("politie"), await hub.join("ggd")
    hub.taps["politie"].down = True
    with police.hub.acting_for("a.agent", Purpose("signal-intake", "ronde Westland")):
        first = await police.send_signal(signal(), ["ggd"])
    with police.hub.acting_for("b.agent", Purpose("case-coordination")):
        second = await police.send_signal(signal(text="tweede"), ["ggd"])
    unnamed = await police.send_signal(signal(text="derde"), ["ggd"])  # the command line
    assert police.outbox.draft(first.id).author == "a.agent"
    assert police.outbox.draft(unnamed.id).author is None
    hub.taps["politie"].down = False
    hub.taps["politie"].requests.clear()
    with police.hub.acting_for("c.other", Purpose("signal-intake")):
        report = await police.send_outbox()
    assert [s.id for s in report.sent] == [first.id, second.id, unnamed.id]
    posted = [
        (r.headers.get("Schakel-User"), r.headers.get("Schakel-Purpose"),
         r.headers.get("Schakel-Purpose-Text"))
        for r in hub.taps["politie"].requests if posting(r)
    ]  # fmt: skip
    assert posted == [
        ("a.agent", "signal-intake", "ronde%20Westland"),
        ("b.agent", "case-coordination", None),
        ("c.other", "signal-intake", None),  # no author kept: the one sending is named
    ]
    assert len((await ggd.receive()).messages) == 3


async def test_an_answer_lost_on_the_way_back_is_posted_again_byte_for_byte(hub: Hub) -> None:
    police, ggd = await hub.join("politie"), await hub.join("ggd")

    def lose(request: Request, response: Response) -> Response:
        if posting(request):
            raise TransportFailed("ServerDisconnectedError", retry=True)
        return response

    hub.taps["politie"].answer = lose
    sent = await police.send_signal(signal(), ["ggd"])
    assert sent.waiting
    [entry] = police.outbox.entries()
    assert entry.sealed and entry.attempts == 1
    [(message_id, stored)] = hub_messages(hub)  # the hub did take it
    kept = police.outbox.draft(sent.id).envelope
    assert message_id == sent.id and kept is not None
    # every retry (3 per attempt) posted the very same envelope
    bodies = {r.body for r in hub.taps["politie"].requests if posting(r)}
    assert len(bodies) == 1

    hub.taps["politie"].answer = None
    report = await police.send_outbox()
    assert [s.id for s in report.sent] == [sent.id]
    assert hub_messages(hub) == [(message_id, stored)]  # a repeat, not a second message
    assert len({r.body for r in hub.taps["politie"].requests if posting(r)}) == 1
    assert json.loads(stored) == kept  # the envelope kept in the outbox is the one the hub has
    assert len((await ggd.receive()).messages) == 1


@pytest.mark.parametrize("status", [408, 429, 500, 503])
async def test_a_hub_that_can_not_take_it_now_leaves_it_waiting(hub: Hub, status: int) -> None:
    police, _ = await hub.join("politie"), await hub.join("ggd")
    hub.taps["politie"].answer = lambda rq, rs: problem(status) if posting(rq) else rs
    sent = await police.send_signal(signal(), ["ggd"])
    [entry] = police.outbox.entries()
    assert (
        sent.waiting and entry.state == WAITING and f"hub answered {status}" in str(entry.problem)
    )
    hub.taps["politie"].answer = None
    assert [s.id for s in (await police.send_outbox()).sent] == [sent.id]


@pytest.mark.parametrize("status", [400, 403, 409, 413, 422])
async def test_a_refusal_is_raised_kept_as_refused_and_never_sent_again(
    hub: Hub, status: int
) -> None:
    police, _ = await hub.join("politie"), await hub.join("ggd")
    hub.taps["politie"].answer = lambda rq, rs: problem(status) if posting(rq) else rs
    with pytest.raises(HubProblem) as caught:
        await police.send_signal(signal(), ["ggd"])
    assert caught.value.status == status
    [entry] = police.outbox.entries()
    assert entry.state == REFUSED and f"hub answered {status}" in str(entry.problem)
    hub.taps["politie"].answer = None
    posts = sum(posting(r) for r in hub.taps["politie"].requests)
    report = await police.send_outbox()
    assert report == type(report)()  # nothing sent, nothing newly refused, nothing waiting
    assert sum(posting(r) for r in hub.taps["politie"].requests) == posts
    police.outbox.drop(entry.id)
    assert police.outbox.entries() == ()
    with pytest.raises(NotReady, match="no message"):
        police.outbox.drop(entry.id)


async def test_what_waits_goes_out_in_the_order_it_was_written(hub: Hub) -> None:
    regie = await hub.join("regie", "coordinator", org_type="coordination")
    opvang = await hub.join("opvang", org_type="shelter")
    police = await hub.join("police")
    await police.send_signal(signal(), ["regie"])
    [case] = (await regie.hub.cases()).cases
    referral = {
        "schema": "schakel.referral/1",
        "service": "shelter",
        "urgency": "urgent",
        "reason": "r",
        "shared_with_person": "s",
        "consent": {"share_with_recipient": True, "comensha_registration": False},
    }
    referral_id = (await regie.send_referral(referral, "opvang", case=case.case)).id
    await opvang.receive()
    hub.taps["opvang"].down = True
    accepted = await opvang.send_status(
        referral_id, "accepted", {"schema": "schakel.status/1", "status": "accepted",
                                  "explanation": "a place tonight"})  # fmt: skip
    # the client knows the accepted status waits, so care_started may follow it
    started = await opvang.send_status(
        referral_id, "care_started", {"schema": "schakel.status/1", "status": "care_started",
                                      "explanation": "intake done"})  # fmt: skip
    assert accepted.waiting and started.waiting
    assert started.problem == "messages written before it wait in the outbox"
    assert [e.id for e in opvang.outbox.entries()] == [accepted.id, started.id]
    hub.taps["opvang"].down = False
    report = await opvang.send_outbox()
    assert [s.id for s in report.sent] == [accepted.id, started.id]
    [tracked] = (await regie.case_view(case.case)).case.referrals
    assert tracked.step == "care_started"


async def test_the_next_send_takes_what_waits_along_first(hub: Hub) -> None:
    police, ggd = await hub.join("politie"), await hub.join("ggd")
    hub.taps["politie"].down = True
    first = await police.send_signal(signal(), ["ggd"])
    hub.taps["politie"].down = False
    second = await police.send_signal(signal(urgency="low"), ["ggd"])
    assert not second.waiting and police.outbox.entries() == ()
    received = [m.id for m in (await ggd.receive()).messages]
    assert received == [first.id, second.id]


async def test_an_entry_sealed_by_another_process_meanwhile_goes_out_with_that_envelope(
    hub: Hub,
) -> None:
    police, ggd = await hub.join("politie"), await hub.join("ggd")
    hub.taps["politie"].down = True
    sent = await police.send_signal(signal(), ["ggd"])
    hub.taps["politie"].down = False
    # a second process on the same local state (the same hub connection will do)
    keys = OrgKeys.open(hub.home("politie") / "keys", PASS)
    other = Organisation(keys, LocalState(hub.home("politie") / "state.sqlite"), police.hub,
                         clock=hub.clock)  # fmt: skip
    theirs: list[Envelope] = []
    seal = other.seal

    async def racing(draft: Draft) -> Envelope:
        envelope = await seal(draft)
        # meanwhile the first process seals this entry too, and keeps its envelope first
        row = police.state.outbox_entry(draft.id)
        assert row is not None
        first = await police.seal(draft)
        theirs.append(first)
        kept = dataclasses.replace(draft, envelope=first.to_wire())
        assert police.state.keep_sealed(draft.id, was=row.sealed, sealed=police.outbox._seal(kept))
        return envelope

    other.seal = racing  # type: ignore[method-assign]
    report = await other.send_outbox()
    assert [s.id for s in report.sent] == [sent.id]
    [(stored,)] = hub.rows("SELECT envelope FROM messages WHERE id = ?", sent.id)
    assert json.loads(stored) == theirs[0].to_wire()  # one envelope under one id
    assert [m.id for m in (await ggd.receive()).messages] == [sent.id]
    other.state.close()
