"""The relay: accepting envelopes, idempotency, every rejection, inbox, ack and fetch.

After every rejection nothing is stored (no message, delivery or pseudonym row)
and exactly one ``denied`` audit entry is appended; the audit chain verifies.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from aiohttp import ClientResponse

from protocol.encoding import b64d, b64e, canonical_json
from protocol.envelope import Envelope, Header

if TYPE_CHECKING:
    from conftest import HubHarness, Party


async def _parties(hub: HubHarness) -> tuple[Party, Party, Party]:
    return await hub.enrol("police"), await hub.enrol("ggd"), await hub.enrol("shelter")


async def test_an_envelope_is_accepted_once_and_repeats_are_idempotent(hub: HubHarness) -> None:
    police, ggd, shelter = await _parties(hub)
    envelope = hub.envelope(police, [ggd, shelter], pseudonyms=hub.pseudonyms("+31612345678"))
    first = await hub.send(police, envelope)
    assert first.status == 201
    accepted = await first.json()
    assert accepted == {"id": envelope.header.id, "accepted": hub.clock()}
    hub.clock.advance(5)
    again = await hub.send(police, envelope)
    assert (again.status, await again.json()) == (200, accepted)
    counts = await hub.counts()
    assert (counts["messages"], counts["deliveries"], counts["message_pseudonyms"]) == (1, 2, 1)
    sends = [e for e in await hub.audit() if e.action == "create" and e.object_type == "message"]
    ids, pseudonyms = (envelope.header.id,), envelope.header.pseudonyms
    assert [(e.outcome, e.reason, e.object_ids, e.pseudonyms, e.org) for e in sends] == [
        ("allowed", None, ids, pseudonyms, "police"),
        ("allowed", "repeat", ids, pseudonyms, "police"),
    ]


async def test_the_same_id_with_another_envelope_is_409(hub: HubHarness) -> None:
    police, ggd, _ = await _parties(hub)
    envelope = hub.envelope(police, [ggd])
    assert (await hub.send(police, envelope)).status == 201
    other = hub.envelope(police, [ggd], message_id=envelope.header.id, payload=b"other")
    before = len(await hub.audit())
    await hub.problem(await hub.send(police, other), 409, "conflict")
    entries = await hub.audit()
    assert len(entries) == before + 1 and entries[-1].reason == "conflict"
    assert (await hub.counts())["messages"] == 1


async def test_the_hub_parses_an_accepted_envelope_once_and_stores_its_canonical_bytes(
    hub: HubHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The canonical bytes, fingerprint and signed digest come from the one parse
    (``parse_encoded``): the envelope is never encoded again, before or in the writer."""
    police, ggd, _ = await _parties(hub)
    envelope = hub.envelope(police, [ggd])
    wire = envelope.to_wire()
    encodes: list[str] = []
    to_wire, header_to_wire = Envelope.to_wire, Header.to_wire

    def counted(self: Envelope) -> dict[str, Any]:
        encodes.append(self.header.id)
        return to_wire(self)

    def header_counted(self: Header) -> dict[str, Any]:
        encodes.append(self.id)
        return header_to_wire(self)

    monkeypatch.setattr(Envelope, "to_wire", counted)
    monkeypatch.setattr(Header, "to_wire", header_counted)
    assert (await hub.send(police, wire)).status == 201
    assert encodes == []
    monkeypatch.undo()
    path = f"/v1/messages/{envelope.header.id}"
    held = await (await hub.client.get(path, headers=ggd.headers())).json()
    assert canonical_json(held["envelope"]) == envelope.canonical()
    stored = await hub.store.run_read(
        lambda conn: conn.execute(
            sa.text("SELECT envelope, envelope_fingerprint FROM messages")
        ).one()
    )
    assert stored.envelope.encode() == envelope.canonical()
    assert stored.envelope_fingerprint == envelope.fingerprint


def _tamper_body(wire: dict[str, Any]) -> dict[str, Any]:
    body = bytearray(b64d(wire["body"]))
    body[-1] ^= 1
    return {**wire, "body": b64e(bytes(body))}


def _tamper_header(wire: dict[str, Any]) -> dict[str, Any]:
    return {**wire, "header": {**wire["header"], "created": wire["header"]["created"] + 1}}


Case = Callable[["HubHarness", "Party", "Party", "Party"], Awaitable[ClientResponse]]


async def _tampered_body(hub: HubHarness, p: Party, g: Party, s: Party) -> ClientResponse:
    return await hub.send(p, _tamper_body(hub.envelope(p, [g]).to_wire()))


async def _tampered_header(hub: HubHarness, p: Party, g: Party, s: Party) -> ClientResponse:
    return await hub.send(p, _tamper_header(hub.envelope(p, [g]).to_wire()))


async def _signed_by_another(hub: HubHarness, p: Party, g: Party, s: Party) -> ClientResponse:
    envelope = hub.envelope(p, [g])
    forged = replace(envelope, sig=s.key.sign(envelope.signed_digest()))
    return await hub.send(p, forged)


async def _sender_is_not_caller(hub: HubHarness, p: Party, g: Party, s: Party) -> ClientResponse:
    return await hub.send(p, hub.envelope(s, [g]))


async def _unknown_recipient(hub: HubHarness, p: Party, g: Party, s: Party) -> ClientResponse:
    stranger = hub.authority.enrol("stranger")
    return await hub.send(p, hub.envelope(p, [g, stranger]))


async def _unheld_recipient_key(hub: HubHarness, p: Party, g: Party, s: Party) -> ClientResponse:
    unpublished = hub.authority.enrol("ggd")  # same org, a bundle the hub never saw
    return await hub.send(p, hub.envelope(p, [replace(g, bundle=unpublished.bundle)]))


async def _revoked_recipient(hub: HubHarness, p: Party, g: Party, s: Party) -> ClientResponse:
    assert (await hub.put_crl(hub.authority.crl([s.cert]))).status == 200
    return await hub.send(p, hub.envelope(p, [g, s]))


async def _revoked_sender_cert(hub: HubHarness, p: Party, g: Party, s: Party) -> ClientResponse:
    # The org re-enrolled; its old certificate is revoked; an envelope still names it.
    old = hub.envelope(p, [g])
    hub.clock.advance(1)
    newer = hub.authority.certify("police", p.key, now=hub.clock())
    assert (await hub.upload_certificate(newer)).status == 201
    revoke = await hub.put_crl(hub.authority.crl([p.cert], now=hub.clock()))
    assert revoke.status == 200
    await hub.login(p)  # tokens are bound to a certificate: the old one's token is dead
    return await hub.send(p, old)


async def _other_network(hub: HubHarness, p: Party, g: Party, s: Party) -> ClientResponse:
    wire = hub.envelope(p, [g]).to_wire()
    return await hub.send(p, {**wire, "header": {**wire["header"], "network": "elsewhere"}})


async def _malformed_json(hub: HubHarness, p: Party, g: Party, s: Party) -> ClientResponse:
    headers = p.headers(**{"Content-Type": "application/json"})
    return await hub.client.post("/v1/messages", data=b'{"header": ', headers=headers)


async def _duplicate_key(hub: HubHarness, p: Party, g: Party, s: Party) -> ClientResponse:
    wire = json.dumps(hub.envelope(p, [g]).to_wire())
    body = wire[:-1] + ', "sig": "AAAA"}'
    headers = p.headers(**{"Content-Type": "application/json"})
    return await hub.client.post("/v1/messages", data=body.encode(), headers=headers)


async def _not_an_envelope(hub: HubHarness, p: Party, g: Party, s: Party) -> ClientResponse:
    return await hub.send(p, {"header": {}, "body": "", "keys": {}, "sig": ""})


async def _wrong_content_type(hub: HubHarness, p: Party, g: Party, s: Party) -> ClientResponse:
    body = json.dumps(hub.envelope(p, [g]).to_wire()).encode()
    headers = p.headers(**{"Content-Type": "text/plain"})
    return await hub.client.post("/v1/messages", data=body, headers=headers)


async def _oversized(hub: HubHarness, p: Party, g: Party, s: Party) -> ClientResponse:
    body = b'{"pad": "' + b"x" * (512 * 1024) + b'"}'
    headers = p.headers(**{"Content-Type": "application/json"})
    return await hub.client.post("/v1/messages", data=body, headers=headers)


REJECTIONS: list[tuple[Case, int, str]] = [
    (_tampered_body, 422, "invalid-envelope"),
    (_tampered_header, 422, "invalid-envelope"),
    (_signed_by_another, 422, "invalid-envelope"),
    (_sender_is_not_caller, 403, "forbidden-sender"),
    (_unknown_recipient, 422, "unknown-recipient"),
    (_unheld_recipient_key, 422, "unknown-recipient"),
    (_revoked_recipient, 422, "unknown-recipient"),
    (_revoked_sender_cert, 422, "invalid-envelope"),
    (_other_network, 422, "invalid-envelope"),
    (_malformed_json, 400, "malformed"),
    (_duplicate_key, 400, "malformed"),
    (_not_an_envelope, 400, "malformed"),
    (_wrong_content_type, 415, "unsupported-media-type"),
    (_oversized, 413, "too-large"),
]


@pytest.mark.parametrize(
    ("case", "status", "slug"), REJECTIONS, ids=[case.__name__[1:] for case, _, _ in REJECTIONS]
)
async def test_a_rejected_envelope_stores_nothing_but_its_audit_entry(
    hub: HubHarness, case: Case, status: int, slug: str
) -> None:
    police, ggd, shelter = await _parties(hub)
    before = len(await hub.audit())
    await hub.problem(await case(hub, police, ggd, shelter), status, slug)
    counts = await hub.counts()
    assert (counts["messages"], counts["deliveries"], counts["message_pseudonyms"]) == (0, 0, 0)
    sends = [
        e
        for e in (await hub.audit())[before:]
        if e.action == "create" and e.object_type == "message"
    ]
    assert len(sends) == 1
    assert (sends[0].outcome, sends[0].reason, sends[0].org) == ("denied", slug, "police")


async def test_a_revoked_sender_is_refused_at_the_door(hub: HubHarness) -> None:
    police, ggd, _ = await _parties(hub)
    envelope = hub.envelope(police, [ggd])
    assert (await hub.put_crl(hub.authority.crl([police.cert]))).status == 200
    await hub.problem(await hub.send(police, envelope), 401, "unauthorized")
    assert (await hub.counts())["messages"] == 0


async def _inbox(hub: HubHarness, party: Party, query: str = "") -> dict[str, Any]:
    response = await hub.client.get("/v1/inbox" + query, headers=party.headers())
    assert response.status == 200, await response.text()
    return await response.json()


async def test_inbox_pages_by_cursor(hub: HubHarness) -> None:
    police, ggd, shelter = await _parties(hub)
    sent = [hub.envelope(police, [ggd]) for _ in range(3)]
    sent.insert(1, hub.envelope(police, [shelter]))  # not for ggd
    for envelope in sent:
        assert (await hub.send(police, envelope)).status == 201
    mine = [e for e in sent if "ggd" in e.header.recipients]
    page = await _inbox(hub, ggd, "?limit=2")
    assert [m["envelope"] for m in page["messages"]] == [e.to_wire() for e in mine[:2]]
    assert page["next"] == page["messages"][-1]["cursor"]
    assert "at" not in page  # read from the start
    rest = await _inbox(hub, ggd, f"?after={page['next']}")
    assert [m["envelope"] for m in rest["messages"]] == [mine[2].to_wire()]
    assert rest["at"] == {"cursor": page["next"], "id": mine[1].header.id}
    empty = await _inbox(hub, ggd, f"?after={rest['next']}")
    at = {"cursor": rest["next"], "id": mine[2].header.id}
    assert empty == {"messages": [], "next": rest["next"], "at": at}
    assert len((await _inbox(hub, ggd))["messages"]) == 3
    # At a cursor that holds none of ggd's messages (shelter's, or none at all): null.
    for cursor in (page["next"] - 1, rest["next"] + 100):
        assert (await _inbox(hub, ggd, f"?after={cursor}"))["at"] == {"cursor": cursor, "id": None}


async def _sent(hub: HubHarness, party: Party, query: str = "") -> dict[str, Any]:
    response = await hub.client.get("/v1/sent" + query, headers=party.headers())
    assert response.status == 200, await response.text()
    return await response.json()


async def test_sent_lists_the_senders_messages_with_their_deliveries(hub: HubHarness) -> None:
    police, ggd, shelter = await _parties(hub)
    both = hub.envelope(police, [ggd, shelter])
    other = hub.envelope(ggd, [police])
    for party, envelope in ((police, both), (ggd, other), (police, hub.envelope(police, [ggd]))):
        assert (await hub.send(party, envelope)).status == 201
    path = f"/v1/messages/{both.header.id}/ack"
    assert (await hub.client.post(path, headers=ggd.headers())).status == 204
    await hub.execute("DELETE FROM deliveries WHERE recipient = 'shelter'")

    first = await _sent(hub, police, "?limit=1")
    (item,) = first["messages"]
    assert item["id"] == both.header.id and item["kind"] == "signal"
    assert item["deliveries"] == [{"org": "ggd", "acknowledged": True}]  # shelter's is gone
    assert first["next"] == item["cursor"]
    rest = await _sent(hub, police, f"?after={first['next']}")
    assert [m["deliveries"] for m in rest["messages"]] == [[{"org": "ggd", "acknowledged": False}]]
    assert [m["id"] for m in (await _sent(hub, ggd))["messages"]] == [other.header.id]
    assert (await _sent(hub, shelter)) == {"messages": [], "next": 0}

    lists = [e for e in await hub.audit() if (e.action, e.object_type) == ("list", "message")]
    assert [(e.org, e.object_ids) for e in lists[:2]] == [
        ("police", (both.header.id,)),
        ("police", tuple(m["id"] for m in rest["messages"])),
    ]


@pytest.mark.parametrize("query", ["?limit=0", "?limit=201", "?after=-1", "?after=x"])
async def test_sent_bounds_are_400(hub: HubHarness, query: str) -> None:
    police = await hub.enrol("police")
    response = await hub.client.get("/v1/sent" + query, headers=police.headers())
    await hub.problem(response, 400, "malformed")


@pytest.mark.parametrize(
    "query", ["?limit=0", "?limit=201", "?limit=x", "?after=-1", "?after=1.5", "?limit=+5"]
)
async def test_inbox_bounds_are_400(hub: HubHarness, query: str) -> None:
    ggd = await hub.enrol("ggd")
    response = await hub.client.get("/v1/inbox" + query, headers=ggd.headers())
    await hub.problem(response, 400, "malformed")
    assert (await hub.audit())[-1].reason == "malformed"


async def test_ack_is_for_recipients_and_idempotent(hub: HubHarness) -> None:
    police, ggd, shelter = await _parties(hub)
    envelope = hub.envelope(police, [ggd])
    assert (await hub.send(police, envelope)).status == 201
    path = f"/v1/messages/{envelope.header.id}/ack"
    for party in (police, shelter):
        await hub.problem(await hub.client.post(path, headers=party.headers()), 404, "not-found")
    for _ in range(2):
        assert (await hub.client.post(path, headers=ggd.headers())).status == 204
    assert (await _inbox(hub, ggd))["messages"][0]["acknowledged"] is True
    unknown = f"/v1/messages/{'A' * 22}/ack"
    await hub.problem(await hub.client.post(unknown, headers=ggd.headers()), 404, "not-found")
    acks = [e for e in await hub.audit() if e.action == "acknowledge"]
    assert [e.outcome for e in acks] == ["denied", "denied", "allowed", "allowed", "denied"]


async def test_a_message_is_shown_to_its_sender_and_recipients_only(hub: HubHarness) -> None:
    police, ggd, shelter = await _parties(hub)
    envelope = hub.envelope(police, [ggd])
    assert (await hub.send(police, envelope)).status == 201
    path = f"/v1/messages/{envelope.header.id}"
    as_sender = await (await hub.client.get(path, headers=police.headers())).json()
    assert as_sender == {"cursor": None, "envelope": envelope.to_wire()}
    as_recipient = await (await hub.client.get(path, headers=ggd.headers())).json()
    assert as_recipient["cursor"] == 1 and as_recipient["envelope"] == envelope.to_wire()
    for path_, party in (
        (path, shelter),
        ("/v1/messages/" + "A" * 22, ggd),
        ("/v1/messages/x", ggd),
    ):
        await hub.problem(await hub.client.get(path_, headers=party.headers()), 404, "not-found")


async def test_concurrent_sends_are_all_committed(hub: HubHarness) -> None:
    import asyncio

    police, ggd, _ = await _parties(hub)
    envelopes = [hub.envelope(police, [ggd]) for _ in range(40)]
    responses = await asyncio.gather(*(hub.send(police, e) for e in envelopes))
    assert [r.status for r in responses] == [201] * 40
    assert (await hub.counts())["messages"] == 40
    cursors = [m["cursor"] for m in (await _inbox(hub, ggd, "?limit=200"))["messages"]]
    assert cursors == sorted(cursors) and len(set(cursors)) == 40


# A trigger that refuses every new audit entry, in each database's own dialect.
REFUSE_AUDIT = {
    "sqlite": [
        "CREATE TRIGGER no_audit BEFORE INSERT ON audit_log "
        "BEGIN SELECT RAISE(ABORT, 'audit refused'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION no_audit() RETURNS trigger LANGUAGE plpgsql "
        "AS $$ BEGIN RAISE EXCEPTION 'audit refused'; END $$",
        "CREATE TRIGGER no_audit BEFORE INSERT ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION no_audit()",
    ],
}


async def test_the_action_fails_when_its_audit_entry_can_not_be_written(hub: HubHarness) -> None:
    police, ggd, _ = await _parties(hub)
    for statement in REFUSE_AUDIT[hub.backend]:
        await hub.execute(statement)
    response = await hub.send(police, hub.envelope(police, [ggd]))
    await hub.problem(response, 503, "access-log-unavailable")  # fail closed, try again later
    assert int(response.headers["Retry-After"]) >= 1
    counts = await hub.counts()
    assert (counts["messages"], counts["deliveries"]) == (0, 0)
