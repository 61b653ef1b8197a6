"""Case work in the client: referrals, statuses, the case view and CoMensha, on the real hub.

Cases come from the hub itself (a coordinator's signals, linked by their pseudonyms);
to make the hub's metadata disagree with the signed envelopes, a test changes the
hub's answers on their way to the coordinator (``Tap.answer``).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from client_harness import MARKER, Hub

from clients import caseview, referrals
from clients.errors import ClientError, NotReady, PayloadInvalid, VerificationFailed
from clients.organisation import ComenshaFiles, Organisation
from clients.transport import Request, Response
from protocol.encoding import b64d, b64e, loads_strict
from protocol.types import CaseRef

TYPES = {"police": "police", "ggd": "ggd", "opvang": "shelter", "regie": "coordination"}
ANNA = {"given_names": "Anna", "family_name": "Zwaan", "date_of_birth": "2001-02-03"}


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


async def join(hub: Hub, *names: str) -> list[Organisation]:
    roles = {"regie": ("coordinator",)}
    return [await hub.join(n, *roles.get(n, ()), org_type=TYPES[n]) for n in names]


async def a_case(hub: Hub, person: dict[str, Any] | None = None) -> CaseRef:
    """A case at the hub: the police signal a person to the coordinator."""
    police = hub.orgs.get("police") or (await join(hub, "police"))[0]
    sent = await police.send_signal(signal(person or {"bsn": "111222333"}), ["regie"])
    page = await hub.orgs["regie"].hub.cases()
    for summary in page.cases:
        detail = await hub.orgs["regie"].hub.case(summary.case)
        if any(entry.message == sent.id for entry in detail.timeline):
            return summary.case
    raise AssertionError("the hub made no case of the signal")


def posted(hub: Hub, org: str) -> int:
    return sum(
        r.method == "POST" and r.url.endswith("/v1/messages") for r in hub.taps[org].requests
    )


def answering(path: str, change: Callable[[Any], Any]) -> Callable[[Request, Response], Response]:
    """An answer hook: ``change`` the JSON of every answer on ``path`` (a prefix); what it
    returns replaces the whole answer if it is a Response."""

    def answer(request: Request, response: Response) -> Response:
        if not request.url.split("/v1", 1)[1].startswith(path) or response.status != 200:
            return response
        doc = loads_strict(response.body)
        changed = change(doc)
        if isinstance(changed, Response):
            return changed
        return Response(response.status, response.headers, json.dumps(doc).encode())

    return answer


def _state_bytes(org: Organisation) -> bytes:
    path = org.state.path
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


# -- referrals ---------------------------------------------------------------------------


async def test_a_referral_names_its_case_carries_pseudonyms_and_is_kept_encrypted(
    hub: Hub,
) -> None:
    regie, opvang = await join(hub, "regie", "opvang")
    ref = await a_case(hub)
    payload = referral(person={"bsn": "111222333"})
    sent = await regie.send_referral(payload, "opvang", case=ref)
    ((text,),) = hub.rows("SELECT envelope FROM messages WHERE id = ?", sent.id)
    header = json.loads(text)["header"]
    assert header["kind"] == "referral" and header["case"] == ref
    assert header["recipients"] == ["opvang"] and header["pseudonyms"][0].startswith("bsn.")
    assert "ref" not in header and list(sent.pseudonyms) == header["pseudonyms"]
    [received] = (await opvang.receive()).messages
    assert received.id == sent.id and received.case == ref and received.payload == payload
    # the referrer can read what it wrote, but not from the state file alone
    assert regie.sent_payload(sent.id) == payload
    assert MARKER.encode() not in _state_bytes(regie)
    assert regie.state.sent_payload(sent.id).case == ref  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "change, kwargs, error, match",
    [
        (lambda p: p.pop("consent"), {}, PayloadInvalid, r"\$\.consent: is required"),
        (lambda p: p.update(person={"bsn": "123456789"}), {}, PayloadInvalid, r"\$\.person"),
        (lambda p: p.update(person={"phone": "0612345678", "date_of_birth": "2999-12-31"}),
         {}, PayloadInvalid, r"\$\.person\.date_of_birth: is after today"),
        (lambda p: None, {}, PayloadInvalid, r"names a case, or a person"),
        (lambda p: None, {"case": "NOT-A-REF"}, PayloadInvalid, r"at case"),
        (lambda p: None, {"case": "abcdefghijklmnop", "replaces": "x"}, PayloadInvalid,
         r"at replaces"),
        (lambda p: None, {"case": "abcdefghijklmnop", "to": "police"}, ClientError,
         r"certified as police"),
        (lambda p: None, {"case": "abcdefghijklmnop", "to": "regie"}, PayloadInvalid,
         r"to itself"),
        (lambda p: None, {"case": "abcdefghijklmnop", "to": "Bad Org"}, PayloadInvalid,
         r"recipients"),
    ],
)  # fmt: skip
async def test_a_bad_referral_is_refused_before_anything_is_sent(
    hub: Hub, change: Any, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    regie, _, _ = await join(hub, "regie", "opvang", "police")
    payload = referral()
    change(payload)
    to = kwargs.pop("to", "opvang")
    with pytest.raises(error, match=match) as caught:
        await regie.send_referral(payload, to, **kwargs)
    assert posted(hub, "regie") == 0 and regie.state.sent() == []
    assert regie.outbox.entries() == ()
    assert "123456789" not in str(caught.value)


async def test_the_hub_refuses_a_referral_about_an_unknown_case(hub: Hub) -> None:
    regie, _ = await join(hub, "regie", "opvang")
    with pytest.raises(ClientError, match="422") as caught:
        await regie.send_referral(referral(), "opvang", case="abcdefghijklmnop")
    [entry] = regie.outbox.entries()  # refused: kept with the hub's reason, not sent again
    assert entry.state == "refused" and str(caught.value)[:40] in str(entry.problem)
    assert (await regie.send_outbox()).sent == ()


async def test_a_referral_that_replaces_a_declined_one_names_it(hub: Hub) -> None:
    regie, opvang = await join(hub, "regie", "opvang")
    ref = await a_case(hub)
    first = await regie.send_referral(referral(), "opvang", case=ref)
    await opvang.receive()
    await opvang.send_status(first.id, "declined", status("declined", reason_code="no_capacity"))
    await regie.receive()
    assert referrals.known_step(regie, first.id, "referrer") == "declined"
    second = await regie.send_referral(referral(), "opvang", case=ref, replaces=first.id)
    [again] = (await opvang.receive()).messages
    assert again.id == second.id and again.ref == first.id


# -- statuses ----------------------------------------------------------------------------


async def test_statuses_go_to_the_other_party_and_follow_the_state_machine(hub: Hub) -> None:
    regie, opvang = await join(hub, "regie", "opvang")
    referral_id = (await regie.send_referral(referral(), "opvang", case=await a_case(hub))).id
    await opvang.receive()  # acknowledged: delivered
    assert referrals.known_step(opvang, referral_id, "recipient") == "delivered"
    with pytest.raises(ClientError, match=r"recipient, at step delivered, .* accepted, declined$"):
        await opvang.send_status(referral_id, "care_started", status("care_started"))
    accepted = await opvang.send_status(referral_id, "accepted", status("accepted"))
    assert accepted.recipients == ("regie",) and accepted.pseudonyms == ()
    assert referrals.known_step(opvang, referral_id, "recipient") == "accepted"
    assert opvang.sent_payload(accepted.id) == status("accepted")

    [answer] = [m for m in (await regie.receive()).messages if m.kind == "status"]
    assert answer.kind == "status" and answer.status == "accepted" and answer.ref == referral_id
    assert referrals.known_step(regie, referral_id, "referrer") == "accepted"
    with pytest.raises(ClientError, match=r"referrer, at step accepted, .* can send: closed"):
        await regie.send_status(referral_id, "care_started", status("care_started"))
    closed = await regie.send_status(referral_id, "closed", status("closed"))  # withdrawn
    assert closed.recipients == ("opvang",)
    await opvang.receive()
    with pytest.raises(ClientError, match="at step closed, this organisation can send: none"):
        await opvang.send_status(referral_id, "care_started", status("care_started"))


async def test_care_can_not_start_before_the_referral_or_after_today(hub: Hub) -> None:
    regie, opvang = await join(hub, "regie", "opvang")
    referral_id = (await regie.send_referral(referral(), "opvang", case=await a_case(hub))).id
    await opvang.receive()
    await opvang.send_status(referral_id, "accepted", status("accepted"))
    for day, says in [
        ("2001-01-01", r"care_started_on: is before the referral was made \(\d{4}-\d\d-\d\d\)"),
        ("2999-01-01", r"care_started_on: is after today"),
    ]:
        with pytest.raises(PayloadInvalid, match=says):
            await opvang.send_status(
                referral_id, "care_started", status("care_started", care_started_on=day)
            )
    today = str(referrals.day_of(hub.clock.seconds()))
    started = status("care_started", care_started_on=today)
    assert not (await opvang.send_status(referral_id, "care_started", started)).waiting


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
    hub: Hub, code: str, payload: dict[str, Any], error: type[Exception], match: str
) -> None:
    regie, opvang = await join(hub, "regie", "opvang")
    referral_id = (await regie.send_referral(referral(), "opvang", case=await a_case(hub))).id
    await opvang.receive()
    with pytest.raises(error, match=match):
        await opvang.send_status(referral_id, code, payload)
    assert posted(hub, "opvang") == 0 and opvang.outbox.entries() == ()


async def test_a_status_about_an_unknown_referral_names_what_to_do(hub: Hub) -> None:
    (opvang,) = await join(hub, "opvang")
    with pytest.raises(NotReady, match="schakel org inbox"):
        await opvang.send_status("AAAAAAAAAAAAAAAAAAAAAA", "accepted", status("accepted"))
    with pytest.raises(PayloadInvalid, match="at referral"):
        await opvang.send_status("../x", "accepted", status("accepted"))
    assert posted(hub, "opvang") == 0


# -- the case view -----------------------------------------------------------------------


async def test_the_case_view_opens_what_is_ours_and_never_trusts_the_hubs_metadata(
    hub: Hub,
) -> None:
    regie, opvang, police, ggd = await join(hub, "regie", "opvang", "police", "ggd")
    person = {"bsn": "111222333", "family_name": "Zwaan"}
    to_us = (await police.send_signal(signal(person), ["regie"])).id
    not_to_us = (await police.send_signal(signal(person), ["ggd", "regie"])).id
    tampered = (await ggd.send_signal(signal(person), ["regie"])).id
    gone = (await ggd.send_signal(signal(person), ["regie"])).id
    ref = await a_case(hub, person)
    ours = (await regie.send_referral(referral(), "opvang", case=ref)).id
    await opvang.receive()
    answer = (await opvang.send_status(ours, "accepted", status("accepted"))).id

    def serve(doc: Any) -> Any:
        if doc["envelope"]["header"]["id"] == tampered:
            body = bytearray(b64d(doc["envelope"]["body"]))
            body[-1] ^= 1
            doc["envelope"]["body"] = b64e(bytes(body))
        if doc["envelope"]["header"]["id"] == gone:
            problem = {"type": "urn:schakel:problem:not-found", "title": "Not Found", "status": 404}
            return Response(404, {}, json.dumps(problem).encode())
        return None

    def case(doc: Any) -> None:  # the hub claims a message for ggd only was for ggd alone
        for entry in doc["timeline"]:
            if entry.get("message") == not_to_us:
                entry["recipients"] = ["ggd"]

    hooks = [answering("/messages/", serve), answering("/cases/", case)]
    hub.taps["regie"].answer = lambda rq, rs: hooks[1](rq, hooks[0](rq, rs))

    view = await regie.case_view(ref)

    mine = (to_us, not_to_us, tampered, gone, ours, answer)
    assert {m: view.contents[m].state for m in mine} == {
        to_us: caseview.OPENED,
        not_to_us: caseview.NOT_ADDRESSED,
        tampered: caseview.UNVERIFIED,
        gone: caseview.UNAVAILABLE,
        ours: caseview.SENT,
        answer: caseview.OPENED,
    }
    assert view.contents[to_us].payload["text"] == MARKER  # type: ignore[index]
    assert view.contents[ours].payload == referral()
    assert view.contents[not_to_us].payload is None and MARKER not in repr(view.contents)
    assert regie.state.messages() == []  # read for the view, not received into the inbox
    assert len(view.payloads("signal")) == 2  # the police's first signal and the case's own


@pytest.mark.parametrize(
    "lie",
    [
        {"sender": "ggd"},  # the hub names another sender than the signed one
        {"type": "referral"},  # another kind
        {"code": "declined"},  # another status code
        {"referral": "AAAAAAAAAAAAAAAAAAAAAA"},  # about another referral
    ],
)
async def test_a_timeline_that_disagrees_with_the_signed_header_does_not_verify(
    hub: Hub, lie: dict[str, Any]
) -> None:
    regie, opvang, _ = await join(hub, "regie", "opvang", "ggd")
    ref = await a_case(hub)
    ours = (await regie.send_referral(referral(), "opvang", case=ref)).id
    await opvang.receive()
    answer = (await opvang.send_status(ours, "accepted", status("accepted"))).id

    def case(doc: Any) -> None:
        for entry in doc["timeline"]:
            if entry.get("message") == answer:
                entry.update(lie)
                if lie.get("type") == "referral":
                    entry.pop("code"), entry.pop("referral")

    hub.taps["regie"].answer = answering("/cases/", case)
    view = await regie.case_view(ref)
    assert view.contents[answer] == caseview.Inline(caseview.UNVERIFIED)


async def test_a_sent_payload_that_was_altered_or_moved_does_not_open(hub: Hub) -> None:
    regie, _ = await join(hub, "regie", "opvang")
    ref = await a_case(hub)
    first = (await regie.send_referral(referral(), "opvang", case=ref)).id
    second = (await regie.send_referral(referral(consent=False), "opvang", case=ref)).id
    db = regie.state._db
    [(sealed,)] = db.execute("SELECT sealed FROM sent_payloads WHERE id = ?", (first,)).fetchall()
    db.execute("UPDATE sent_payloads SET sealed = ? WHERE id = ?", (sealed, second))
    with pytest.raises(VerificationFailed, match="stored sent payload did not verify"):
        regie.sent_payload(second)  # each message has a key of its own
    flipped = bytearray(sealed)
    flipped[-1] ^= 1
    db.execute("UPDATE sent_payloads SET sealed = ? WHERE id = ?", (bytes(flipped), first))
    with pytest.raises(VerificationFailed, match="stored sent payload did not verify"):
        regie.sent_payload(first)
    view = await regie.case_view(ref)
    assert view.contents[first].state == view.contents[second].state == caseview.UNVERIFIED


# -- CoMensha ----------------------------------------------------------------------------


async def _two_cases(hub: Hub) -> tuple[Organisation, CaseRef, CaseRef]:
    regie, opvang = await join(hub, "regie", "opvang")
    one = await a_case(hub, ANNA)
    two = await a_case(hub, {"bsn": "123456782", "sex": "male"})
    await regie.send_referral(referral(consent=True), "opvang", case=one)
    await regie.send_referral(referral(consent=False), "opvang", case=two)
    await opvang.receive()
    return regie, one, two


async def test_comensha_writes_one_file_per_kind_from_what_the_coordinator_reads(
    hub: Hub, tmp_path: Path
) -> None:
    regie, one, two = await _two_cases(hub)
    out = tmp_path / "out"
    out.mkdir()
    registrations, statistics = out / "reg.csv", out / "stat.csv"
    assert await regie.comensha(registrations, statistics) == ComenshaFiles(1, 1, ())
    with registrations.open(newline="") as handle:
        [row] = list(csv.DictReader(handle))
    assert row["case_ref"] == one and row["family_name"] == "Zwaan"
    assert row["reporting_org_types"] == "police" and row["exploitation_forms"] == "labour"
    text = statistics.read_text()
    assert two not in text and "123456782" not in text and "male" in text
    assert registrations.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in out.iterdir()) == ["reg.csv", "stat.csv"]


async def test_comensha_says_where_signals_disagree(hub: Hub, tmp_path: Path) -> None:
    regie, one, _ = await _two_cases(hub)
    ggd = (await join(hub, "ggd"))[0]
    misspelled = ANNA | {"family_name": "Zwaen", "phone": "0612345678"}
    await ggd.send_signal(signal(misspelled), ["regie"])
    await ggd.send_signal(signal(ANNA | {"given_names": "ANNA", "phone": "0612345678"}), ["regie"])
    files = await regie.comensha(tmp_path / "r.csv", tmp_path / "s.csv")
    # The GGD's signals may have merged case ``one`` into another (the older, and within
    # one second whichever the hub orders first): the live reference is what is reported.
    live = (await regie.case_view(one)).case.summary.case
    assert files.disagreements == ((live, "family_name"),)
    with (tmp_path / "r.csv").open(newline="") as handle:
        [row] = list(csv.DictReader(handle))
    assert (row["family_name"], row["disagreements"]) == ("Zwaan", "family_name")


async def test_comensha_writes_both_files_or_neither(hub: Hub, tmp_path: Path) -> None:
    regie, _, _ = await _two_cases(hub)
    out = tmp_path / "out"
    out.mkdir()
    existing = out / "reg.csv"
    existing.write_text("keep me")
    with pytest.raises(ClientError, match="already exists"):
        await regie.comensha(existing, out / "stat.csv")
    assert existing.read_text() == "keep me" and not (out / "stat.csv").exists()
    with pytest.raises(ClientError, match="different file"):
        await regie.comensha(out / "a.csv", out / "a.csv")
    with pytest.raises(FileNotFoundError):  # the second file can not be written
        await regie.comensha(out / "b.csv", out / "no-such-dir" / "s.csv")
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == ["reg.csv"]


async def test_a_case_without_a_signal_gives_no_row(hub: Hub, tmp_path: Path) -> None:
    regie, _ = await join(hub, "regie", "opvang")
    await regie.send_referral(referral(person={"bsn": "111222333"}), "opvang")
    assert (await regie.hub.cases()).total == 1
    assert await regie.comensha(tmp_path / "r.csv", tmp_path / "s.csv") == ComenshaFiles(0, 0, ())
    assert (tmp_path / "r.csv").read_text().startswith("case_ref,")
