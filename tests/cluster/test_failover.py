"""Failover: replica A is killed (SIGKILL) in the middle of a stream of sends through nginx.

Two organisations send a stream of signals to the coordinator through nginx, from
several concurrent senders; each send is retried with the very same envelope on a
502/503/504/429 or a broken connection, as a client does. After a third of the stream
has been answered, the network's privacy officer has a tree head signed, and replica A
is killed with SIGKILL: no shutdown, its transactions cut off mid-way. Afterwards:

* every message is answered (201, or 200 for a repeat of one the hub had committed),
  and the coordinator's client receives each exactly once: no answered id is missing
  and none arrives twice (the hub's inbox holds each once, too);
* the audit log is gap-free (indexes 0..n-1), and a head signed after the kill is
  consistent with the one signed before it: the client verifies the hub's
  consistency proof, and both roots equal the Merkle root of the stored leaves;
* replica B, alone, went on appending to the log: it holds the sequencer lock now.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest
from harness import (
    acting,
    audit_indexes,
    fetch,
    messages_without_create_entry,
    open_org,
    seal_signal,
    send_until_answered,
)

from clients.hub_client import HubClient
from protocol import merkle
from protocol.auditlog import TreeHead
from protocol.envelope import Envelope
from protocol.types import OrgId

if TYPE_CHECKING:
    from conftest import Cluster

pytestmark = pytest.mark.postgres

STREAM = 150
SENDERS = ("police", "ggd")
WORKERS_PER_SENDER = 3
KILL_AFTER = STREAM // 3  # answered sends before replica A is killed


def _signal(number: int) -> dict[str, Any]:
    return {
        "schema": "schakel.signal/1",
        "person": {"given_names": "Noor", "phone": f"+3161{number:07d}"},
        "exploitation": "sexual",
        "indicators": ["control.documents_withheld"],
        "text": f"failover signal {number}",
        "urgency": "normal",
        "consent_to_share": True,
    }


async def _sealed_stream(cluster: Cluster) -> dict[str, list[Envelope]]:
    """The whole stream, sealed before it starts: sender -> its envelopes."""
    stream: dict[str, list[Envelope]] = {org: [] for org in SENDERS}
    for first, org in enumerate(SENDERS):
        async with acting(
            cluster.demo, org, cluster.nginx.base_url, ssl_context=cluster.ssl
        ) as sender:
            bundles = {OrgId("coordinator"): (await sender.recipient("coordinator"))[1]}
            for number in range(first, STREAM, len(SENDERS)):
                stream[org].append(seal_signal(sender, _signal(number), bundles))
    return stream


async def _leaf_root(cluster: Cluster, size: int) -> bytes:
    rows = await fetch(
        cluster.database_url,
        'SELECT leaf_hash FROM audit_log WHERE "index" < :size ORDER BY "index"',
        {"size": size},
    )
    return merkle.root_hash([bytes(row[0]) for row in rows])


async def test_kill_one_replica_mid_stream_loses_and_repeats_nothing(
    busy_cluster: Cluster,
) -> None:
    cluster = busy_cluster
    a, b = cluster.replicas
    proxy = cluster.nginx.base_url
    stream = await _sealed_stream(cluster)
    answers: dict[str, bool] = {}  # message id -> True if answered 201
    kill_now = asyncio.Event()

    async def send_all(hub: HubClient, envelopes: list[Envelope]) -> None:
        for envelope in envelopes:
            answers[str(envelope.header.id)] = await send_until_answered(hub, envelope)
            if len(answers) >= KILL_AFTER:
                kill_now.set()

    privacy = open_org(cluster.demo, "privacy", proxy, ssl_context=cluster.ssl)
    async with privacy.hub:
        senders = []
        for org in SENDERS:
            for worker in range(WORKERS_PER_SENDER):
                client = open_org(cluster.demo, org, proxy, ssl_context=cluster.ssl, attempts=1)
                client.state.close()  # only its HubClient sends: the envelopes are sealed
                senders.append((client.hub, stream[org][worker::WORKERS_PER_SENDER]))
        clients = [hub for hub, _ in senders]
        for hub in clients:
            await hub.__aenter__()
        try:
            tasks = [asyncio.create_task(send_all(hub, part)) for hub, part in senders]
            await asyncio.wait_for(kill_now.wait(), 60)
            before = await privacy.hub.sign_audit_head()
            await privacy.log.check(before)
            served_by_a = _sends_served_by(cluster, a.port)
            a.kill()
            size_at_kill = len(await audit_indexes(cluster.database_url))
            await asyncio.wait_for(asyncio.gather(*tasks), 120)
        finally:
            for hub in clients:
                await hub.close()
        assert served_by_a > 0, "nginx sent no message to replica A before it was killed"

        # the log after the kill: B sequenced new entries, consistent with the old head
        after = await privacy.hub.sign_audit_head()
        await privacy.log.check(after)  # signature, and the hub's consistency proof
        assert after.size > size_at_kill >= before.size
        await _assert_log_intact(cluster, before, after)
    privacy.state.close()

    await _assert_each_delivered_once(cluster, answers)
    assert b.process.poll() is None, "replica B must have survived"


def _sends_served_by(cluster: Cluster, port: int) -> int:
    return sum(
        1
        for line in cluster.nginx.access_lines()
        if line["route"] == "/v1/messages" and line["upstream"] == f"127.0.0.1:{port}"
    )


async def _assert_log_intact(cluster: Cluster, before: TreeHead, after: TreeHead) -> None:
    indexes = await audit_indexes(cluster.database_url)
    assert indexes == list(range(len(indexes))), "the audit log has a gap"
    assert after.size <= len(indexes)
    assert before.root == await _leaf_root(cluster, before.size)
    assert after.root == await _leaf_root(cluster, after.size)
    assert await messages_without_create_entry(cluster.database_url) == []


async def _assert_each_delivered_once(cluster: Cluster, answers: dict[str, bool]) -> None:
    assert len(answers) == STREAM
    created = [message for message, new in answers.items() if new]
    print(f"{len(created)} answered 201, {STREAM - len(created)} answered as repeats (200)")
    async with acting(
        cluster.demo, "coordinator", cluster.nginx.base_url, ssl_context=cluster.ssl
    ) as coordinator:
        inbox: list[str] = []
        cursor = 0
        while page := (await coordinator.hub.inbox(after=cursor, limit=200)).messages:
            inbox += [item.envelope["header"]["id"] for item in page]
            cursor = page[-1].cursor
        received = await coordinator.receive()
    assert sorted(inbox) == sorted(answers), "the hub's inbox differs from what it accepted"
    assert received.rejected == ()
    ids = [m.id for m in received.messages]
    assert len(ids) == len(set(ids)) == STREAM
    assert set(ids) == set(answers)
    stored = await fetch(
        cluster.database_url,
        "SELECT count(*) FROM deliveries WHERE recipient = 'coordinator'",
    )
    assert stored[0][0] == STREAM
