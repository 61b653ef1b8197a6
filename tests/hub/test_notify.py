"""Notices across replicas: PostgreSQL LISTEN/NOTIFY, published only with their commit.

Two hub applications on one PostgreSQL database stand for two replicas (as two processes
would: the same database, keys and configuration, each its own notifier). A WebSocket on
one replica is told of what the other accepted; a notice is never sent for a change that
rolled back, nor twice to the replica that made it; a payload on the channel that no
replica sent is refused; and a replica that loses its listening connection closes its
sockets (their clients catch up through the inbox) and listens again.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from hub.http.common import SERVICES
from hub.notify import (
    CHANNEL,
    NO_ORG,
    BadPayload,
    LocalNotifier,
    Notice,
    PgNotifier,
    decode,
    directory_notice,
    encode,
    event_notice,
)
from hub.store import Tx
from protocol.types import MessageId, OrgId

if TYPE_CHECKING:
    from aiohttp.test_utils import TestClient
    from conftest import HubHarness, Party

GUARD = 10  # seconds; a guard against a hang, never reached when the hub works
QUIET = 0.3  # seconds a test waits to see that nothing more arrives
MID = MessageId("A" * 22)


# -- the wire form (no database) ---------------------------------------------------------


def test_a_notice_survives_the_wire() -> None:
    for notice in (Notice(7, MID), event_notice(12, "escalation")):
        assert decode(encode("replica-a", OrgId("ggd"), notice)) == ("replica-a", "ggd", notice)
    org, notice = directory_notice()
    assert decode(encode("replica-a", org, notice)) == ("replica-a", NO_ORG, notice)


def test_a_directory_notice_reaches_the_watchers_and_no_subscriber() -> None:
    notifier = LocalNotifier()
    heard: list[str] = []
    notifier.watch_directory(lambda: heard.append("changed"))
    subscription = notifier.subscribe(NO_ORG)
    notifier.deliver([(OrgId("ggd"), Notice(1, MID)), directory_notice()])
    assert heard == ["changed"] and subscription._queue.empty()  # no frame for a socket
    notifier.deliver([(OrgId("ggd"), Notice(2, MID))])
    assert heard == ["changed"]
    assert notifier.close_all() == 1  # a lost listening connection: changes may be missed
    assert heard == ["changed", "changed"]


def _doc(**changes: Any) -> str:
    doc = {"from": "x", "org": "ggd", "type": "message", "cursor": 1, "id": MID, "kind": None}
    doc.update(changes)
    return json.dumps(doc)


@pytest.mark.parametrize(
    "payload",
    [
        "",
        "not json",
        "[]",
        json.dumps({"from": "x"}),
        _doc(extra=1),
        _doc(**{"from": ""}),
        _doc(**{"from": "x" * 65}),
        _doc(org="Not An Org!"),
        _doc(org=None),
        _doc(cursor=0),
        _doc(cursor=-1),
        _doc(cursor=True),
        _doc(cursor="1"),
        _doc(cursor=2**63),
        _doc(id="short"),
        _doc(id=None),
        _doc(type="message", kind="match"),
        _doc(type="event", id=None, kind=None),
        _doc(type="event", id=None, kind="drop table"),
        _doc(type="event", id=None, kind="k" * 33),
        _doc(type="event", id=MID, kind="match"),
        _doc(type="secret"),
        _doc(type="directory"),
        _doc(type="directory", org="-"),
        _doc(type="directory", org="-", id=None, cursor=2),
        _doc(type="directory", org="ggd", id=None),
        _doc(type="directory", org="-", id=None, kind="match"),
        _doc(**{"from": "x" * 600}),
    ],
)
def test_a_payload_that_is_not_a_notice_is_refused(payload: str) -> None:
    with pytest.raises(BadPayload):
        decode(payload)


# -- two replicas on PostgreSQL ----------------------------------------------------------


@pytest.fixture
def database_kind() -> str:
    return "postgresql"  # replicas share a database: PostgreSQL only


async def _next(ws: aiohttp.ClientWebSocketResponse) -> Any:
    message = await asyncio.wait_for(ws.receive(), GUARD)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    return json.loads(message.data)


async def _nothing_more(ws: aiohttp.ClientWebSocketResponse) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ws.receive(), QUIET)


def _notifier(client: TestClient[Any, Any]) -> PgNotifier:
    notifier = client.server.app[SERVICES].notifier  # type: ignore[union-attr]
    assert isinstance(notifier, PgNotifier)
    return notifier


async def _send(client: TestClient[Any, Any], sender: Party, envelope: Any) -> int:
    response = await client.post("/v1/messages", json=envelope.to_wire(), headers=sender.headers())
    return response.status


@pytest.mark.postgres
async def test_a_socket_on_one_replica_hears_of_a_message_the_other_accepted(
    hub: HubHarness,
) -> None:
    police, ggd = await hub.enrol("police"), await hub.enrol("ggd")
    async with hub.replica() as other:
        assert _notifier(other).listening and _notifier(hub.client).listening
        async with hub.client.ws_connect("/v1/ws", headers=ggd.headers()) as ws:
            sent = [hub.envelope(police, [ggd]) for _ in range(3)]
            for envelope in sent:  # through the other replica, with a token from this one
                assert await _send(other, police, envelope) == 201
            frames = [await _next(ws) for _ in sent]
            assert [f["id"] for f in frames] == [e.header.id for e in sent]
            assert [f["cursor"] for f in frames] == [1, 2, 3]
            # Sent through this replica: delivered here at the commit, and not again when
            # PostgreSQL echoes it back.
            mine = hub.envelope(police, [ggd])
            assert await _send(hub.client, police, mine) == 201
            assert (await _next(ws))["id"] == mine.header.id
            await _nothing_more(ws)
        assert _notifier(hub.client).received == 3


@pytest.mark.postgres
async def test_events_cross_replicas_too(hub: HubHarness) -> None:
    police = await hub.enrol("police")
    coordinator = await hub.enrol("coordinator", ("member", "coordinator"), org_type="coordination")
    ggd = await hub.enrol("ggd")
    pseudonyms = hub.pseudonyms("+31612345678")
    async with (
        hub.replica() as other,
        hub.client.ws_connect("/v1/ws", headers=coordinator.headers()) as ws,
    ):
        for sender in (police, ggd):  # two signals about one person: a match
            envelope = hub.envelope(sender, [coordinator], pseudonyms=pseudonyms)
            assert await _send(other, sender, envelope) == 201
            assert (await _next(ws))["type"] == "message"
        match = await _next(ws)
        assert match["type"] == "event" and match["kind"] == "match"


@pytest.mark.postgres
async def test_a_change_that_rolls_back_announces_nothing(hub: HubHarness) -> None:
    ggd = await hub.enrol("ggd")
    async with hub.replica() as other:
        here = _notifier(hub.client).subscribe(ggd.org)
        there = _notifier(other).subscribe(ggd.org)

        def doomed(tx: Tx) -> None:
            tx.notify(ggd.org, Notice(41, MID))
            raise RuntimeError("rolled back")

        def kept(tx: Tx) -> None:
            tx.notify(ggd.org, Notice(42, MID))

        with pytest.raises(RuntimeError):
            await hub.store.write(doomed)
        await hub.store.write(kept)
        for subscription in (here, there):
            notice = await asyncio.wait_for(subscription.next(), GUARD)
            assert notice == Notice(42, MID)  # the first it got: 41 never went out
            subscription.close()


@pytest.mark.postgres
async def test_a_foreign_payload_on_the_channel_reaches_nobody(hub: HubHarness) -> None:
    ggd = await hub.enrol("ggd")
    notifier = _notifier(hub.client)
    subscription = notifier.subscribe(ggd.org)
    forged = _doc(**{"from": "intruder"}, cursor=5, id=MID).replace('"ggd"', '"ggd "')
    await hub.execute("SELECT pg_notify(:channel, :payload)", channel=CHANNEL, payload=forged)
    good = encode("another-replica", ggd.org, Notice(6, MID))
    await hub.execute("SELECT pg_notify(:channel, :payload)", channel=CHANNEL, payload=good)
    assert await asyncio.wait_for(subscription.next(), GUARD) == Notice(6, MID)
    assert notifier.refused == 1


@pytest.mark.postgres
async def test_a_replica_that_loses_its_listening_connection_closes_sockets_and_listens_again(
    hub: HubHarness,
) -> None:
    police, ggd = await hub.enrol("police"), await hub.enrol("ggd")
    notifier = _notifier(hub.client)
    async with hub.replica() as other:
        async with hub.client.ws_connect("/v1/ws", headers=ggd.headers()) as ws:
            await hub.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'schakel-hub-listen' AND pid = :pid",
                pid=notifier.backend_pid,
            )
            closing = await asyncio.wait_for(ws.receive(), GUARD)
            assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 1013
        for _ in range(int(GUARD / 0.05)):  # it reconnects on its own, in under a second
            if notifier.listening:
                break
            await asyncio.sleep(0.05)
        assert notifier.listening
        async with hub.client.ws_connect("/v1/ws", headers=ggd.headers()) as ws:
            envelope = hub.envelope(police, [ggd])
            assert await _send(other, police, envelope) == 201
            assert (await _next(ws))["id"] == envelope.header.id


async def test_a_single_process_notifier_closes_every_subscription_when_it_stops() -> None:
    notifier = LocalNotifier()
    subscriptions = [notifier.subscribe(OrgId(org)) for org in ("ggd", "ggd", "police")]
    assert notifier.subscriber_total() == 3 and notifier.listening
    await notifier.stop()
    assert [await s.next() for s in subscriptions] == [None, None, None]
    assert notifier.subscriber_total() == 0


async def test_a_notifier_that_can_not_reach_the_database_starts_deaf_and_keeps_trying() -> None:
    attempts = 0

    async def refuse() -> Any:
        nonlocal attempts
        attempts += 1
        raise OSError("connection refused")

    notifier = PgNotifier("postgresql://nowhere", connect=refuse)
    await asyncio.wait_for(notifier.start(), GUARD)
    try:
        assert not notifier.listening and attempts == 1
        subscription = notifier.subscribe(OrgId("ggd"))
        notifier.deliver([(OrgId("ggd"), Notice(1, MID))])  # its own commits still go out
        assert await subscription.next() == Notice(1, MID)
    finally:
        await notifier.stop()
    assert await subscription.next() is None


async def test_a_subscription_hands_out_what_is_queued_at_once_then_says_it_closed() -> None:
    notifier = LocalNotifier(queue_size=3)
    subscription = notifier.subscribe(OrgId("ggd"))
    assert subscription.ready() == []  # nothing queued: nothing, and no waiting
    batch = [Notice(cursor, MID) for cursor in (1, 2, 3)]
    notifier.deliver([(OrgId("ggd"), n) for n in batch] + [(OrgId("police"), Notice(4, MID))])
    assert subscription.ready() == batch and subscription.ready() == []
    notifier.deliver([(OrgId("ggd"), Notice(5, MID))])
    assert await subscription.next() == Notice(5, MID)
    # Overflow: the queued notices are still handed out, then the close, for good.
    notifier.deliver([(OrgId("ggd"), Notice(cursor, MID)) for cursor in range(6, 10)])
    assert [n.cursor for n in subscription.ready()] == [6, 7, 8]
    assert subscription.ready() == []
    assert [await subscription.next(), await subscription.next()] == [None, None]
    assert notifier.subscriber_count(OrgId("ggd")) == 0
