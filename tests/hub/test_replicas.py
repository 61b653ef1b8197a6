"""What replicas share on PostgreSQL: migrations, the sequencer's lock, session limits.

* Replicas that start together (or two operators) may migrate at once: one does, the
  others wait for it and find the newest schema.
* The audit sequencer is PostgreSQL's transaction-scoped advisory lock: while one
  replica's batch holds it, another replica's batch waits; when the holder dies, the
  lock is free and the waiting replica appends, gap-free.
* The hub's sessions carry TCP keepalives and an idle-in-transaction limit, so a
  replica that vanishes can not hold that lock for long.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest
import sqlalchemy as sa

from hub.http.common import SERVICES
from hub.store import Store, head_revision
from hub.store.database import SEQUENCER_LOCK
from hub.store.engines import PG_SESSION

if TYPE_CHECKING:
    from conftest import HubHarness
    from fresh_databases import Databases

GUARD = 20  # seconds; a guard against a hang, never reached when the hub works

pytestmark = pytest.mark.postgres


@pytest.fixture
def database_kind() -> str:
    return "postgresql"


def _dsn(url: str) -> str:
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def test_replicas_that_migrate_at_once_all_find_the_newest_schema(
    databases: Databases,
) -> None:
    url = await databases.new(empty=True)
    stores = [Store(url) for _ in range(3)]
    try:
        await asyncio.wait_for(asyncio.gather(*(s.migrate() for s in stores)), GUARD)
        assert [await s.revision() for s in stores] == [head_revision()] * 3
    finally:
        for store in stores:
            await store.close()


async def test_the_hubs_sessions_can_not_hold_a_lock_for_long(hub: HubHarness) -> None:
    def settings(conn: sa.Connection) -> dict[str, str]:
        return {
            name: conn.execute(sa.text(f"SHOW {name}")).scalar_one()  # names from PG_SESSION
            for name in PG_SESSION
        }

    held = await hub.store._engines.write(settings)
    assert held == {
        "tcp_keepalives_idle": "10",
        "tcp_keepalives_interval": "5",
        "tcp_keepalives_count": "3",
        "idle_in_transaction_session_timeout": "15s",
    }
    assert await hub.store.run_read(settings) == held


async def test_the_sequencer_moves_when_the_replica_holding_it_dies(hub: HubHarness) -> None:
    police, ggd = await hub.enrol("police"), await hub.enrol("ggd")
    before = await hub.audit()
    # Another replica, mid-batch: it holds the sequencer's lock in an open transaction.
    other: Any = await asyncpg.connect(_dsn(hub.config.database_url))
    try:
        await other.execute("BEGIN")
        await other.execute("SELECT pg_advisory_xact_lock($1)", SEQUENCER_LOCK)
        envelope = hub.envelope(police, [ggd])
        send = asyncio.ensure_future(hub.send(police, envelope))
        await asyncio.sleep(0.5)
        assert not send.done()  # waits for the lock, as a second replica's batch does
        # The replica dies (kill -9 closes its connection the same way).
        admin: Any = await asyncpg.connect(_dsn(hub.config.database_url))
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", other.get_server_pid())
        finally:
            await admin.close()
        response = await asyncio.wait_for(send, GUARD)
        assert response.status == 201
    finally:
        other.terminate()
    after = await hub.audit()
    assert [e.index for e in after] == list(range(len(after)))  # gap-free
    assert after[: len(before)] == before
    assert after[-1].action == "create" and after[-1].object_ids == (envelope.header.id,)


async def test_two_replicas_escalating_at_once_raise_each_escalation_once(
    hub: HubHarness,
) -> None:
    from test_referrals import Chain  # the referral scenario of tests/hub/test_referrals.py

    chain = await Chain(hub).start()
    await chain.refer()
    hub.clock.advance(14 * 86400)  # far past every step's limit
    async with hub.replica() as other:
        theirs = other.server.app[SERVICES].escalator  # type: ignore[union-attr]
        counts = await asyncio.gather(hub.escalator.escalate_now(), theirs.escalate_now())
    assert min(counts) == 0 and max(counts) > 0  # one replica raised it, the other found it done
    await chain.relogin()
    events = (await chain.get("/v1/events"))["events"]
    assert len([e for e in events if e["kind"] == "escalation"]) == 1


async def test_a_read_sees_one_snapshot(hub: HubHarness) -> None:
    def isolation(conn: sa.Connection) -> tuple[str, str]:
        return (
            conn.execute(sa.text("SHOW transaction_isolation")).scalar_one(),
            conn.execute(sa.text("SHOW transaction_read_only")).scalar_one(),
        )

    assert await hub.store.run_read(isolation) == ("repeatable read", "on")


async def test_connections_the_server_closed_are_replaced_without_a_failed_request(
    hub: HubHarness,
) -> None:
    police, ggd = await hub.enrol("police"), await hub.enrol("ggd")
    admin: Any = await asyncpg.connect(_dsn(hub.config.database_url))
    try:  # a database restart, as the hub's pooled connections see it
        ended = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name LIKE 'schakel-hub-%'"
        )
    finally:
        await admin.close()
    assert ended >= 2  # at least the writer and a reader
    for _ in range(50):  # asyncpg marks them closed once the event loop reads the end
        await asyncio.sleep(0.02)
    assert (await hub.send(police, hub.envelope(police, [ggd]))).status == 201
    inbox = await hub.client.get("/v1/inbox", headers=ggd.headers())
    assert inbox.status == 200 and len((await inbox.json())["messages"]) == 1
