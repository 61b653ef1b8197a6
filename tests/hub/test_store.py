"""The store, its migration, the single writer's group commit, and the audit chain."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from hub.accesslog import recording
from hub.accesslog.recording import Event
from hub.errors import Unavailable
from hub.notify import LocalNotifier, Notice
from hub.schema import metadata
from hub.store import Store, Tx, head_revision
from hub.writer import CommitFailed, Writer
from protocol import merkle
from protocol.auditlog import nodes_to_store
from protocol.types import MessageId, OrgId

if TYPE_CHECKING:
    from conftest import HubHarness
    from fresh_databases import Databases


async def test_the_migration_builds_exactly_the_schema(databases: Databases) -> None:
    store = Store(await databases.new(empty=True))
    try:
        assert await store.revision() is None
        assert not await store.ready()
        await store.migrate()
        await store.migrate()  # a second run is a no-op
        assert await store.revision() == head_revision() == "0005c"
        assert await store.ready()
        diff = await store.run_read(
            lambda sync: compare_metadata(
                MigrationContext.configure(sync, opts={"compare_type": True}), metadata
            )
        )
        assert diff == []
    finally:
        await store.close()


@pytest.mark.parametrize("database_kind", ["sqlite"])
async def test_sqlite_runs_in_wal_mode(store: Store) -> None:
    """SQLite only: WAL is how the hub sets up SQLite; PostgreSQL has no journal modes."""
    mode = await store.run_read(lambda c: c.exec_driver_sql("PRAGMA journal_mode").scalar())
    assert mode == "wal"
    # Deleted content is overwritten (erased access-log openings), on reads and the writer.
    wipe = await store.run_read(lambda c: c.exec_driver_sql("PRAGMA secure_delete").scalar())
    assert wipe == 1
    assert (
        await store.write(lambda tx: tx._conn.exec_driver_sql("PRAGMA secure_delete").scalar()) == 1
    )


async def test_foreign_keys_are_enforced(store: Store) -> None:
    def orphan(tx: Tx) -> None:
        tx._conn.execute(  # a delivery for a message that does not exist
            sa.text("INSERT INTO deliveries (recipient, cursor) VALUES ('ggd', 42)")
        )

    with pytest.raises(sa.exc.IntegrityError):
        await store.write(orphan)
    assert (await store.counts())["deliveries"] == 0


def _challenge(n: int) -> Callable[[Tx], int]:
    def work(tx: Tx) -> int:
        tx.insert_challenge(f"challenge-{n:04d}", OrgId("ggd"), expires=100)
        return n

    return work


async def test_concurrent_writes_share_commits(store: Store) -> None:
    before = store.batches_committed
    results = await asyncio.gather(*(store.write(_challenge(n)) for n in range(50)))
    assert results == list(range(50))
    assert (await store.counts())["challenges"] == 50
    assert store.batches_committed - before < 50  # grouped, not one commit each


async def test_a_failing_item_rolls_back_alone(store: Store) -> None:
    class Refused(Exception):
        pass

    def fails(tx: Tx) -> None:
        tx.insert_challenge("half-written", OrgId("ggd"), expires=100)
        raise Refused

    before = store.batches_committed
    outcomes = await asyncio.gather(
        store.write(_challenge(1)),
        store.write(fails),
        store.write(_challenge(2)),
        return_exceptions=True,
    )
    assert outcomes[0] == 1 and outcomes[2] == 2 and isinstance(outcomes[1], Refused)
    assert store.batches_committed - before == 1  # one batch, one commit
    assert (await store.counts())["challenges"] == 2


class FakeBatch:
    """Records the work it ran; ``commit_fails`` makes the end of the batch raise."""

    def __init__(self, *, commit_fails: bool = False, gate: asyncio.Event | None = None) -> None:
        self.commit_fails = commit_fails
        self.gate = gate
        self.batches: list[list[str]] = []

    async def commit(self, works: Sequence[Callable[[Any], Any]]) -> list[tuple[bool, Any]]:
        if self.gate is not None:
            await self.gate.wait()
        ran: list[str] = []
        outcomes = [(True, work(ran)) for work in works]
        self.batches.append(ran)
        if self.commit_fails:
            raise OSError("disk full")
        return outcomes


def _named(name: str) -> Callable[[list[str]], str]:
    def work(ran: list[str]) -> str:
        ran.append(name)
        return name

    return work


async def test_a_failed_commit_fails_every_item_of_its_batch() -> None:
    fake = FakeBatch(commit_fails=True)
    writer: Writer[Any] = Writer(fake.commit, max_queue=10, max_batch=10)
    writer.start()
    outcomes = await asyncio.gather(
        writer.submit(_named("a")), writer.submit(_named("b")), return_exceptions=True
    )
    await writer.stop()
    assert fake.batches == [["a", "b"]]
    assert all(isinstance(o, CommitFailed) for o in outcomes)
    assert writer.batches == 0


async def test_a_full_queue_is_refused_at_once_and_stop_drains_the_rest() -> None:
    gate = asyncio.Event()
    fake = FakeBatch(gate=gate)
    writer: Writer[Any] = Writer(fake.commit, max_queue=2, max_batch=10)
    with pytest.raises(Unavailable):
        await writer.submit(_named("too early"))  # not started
    writer.start()
    first = asyncio.ensure_future(writer.submit(_named("first")))
    await asyncio.sleep(0)  # the writer takes "first" and waits at the gate
    await asyncio.sleep(0)
    queued = [asyncio.ensure_future(writer.submit(_named(n))) for n in ("q1", "q2")]
    await asyncio.sleep(0)
    with pytest.raises(Unavailable):
        await writer.submit(_named("overflow"))
    gate.set()
    stopping = asyncio.ensure_future(writer.stop())
    assert await first == "first"
    assert [await q for q in queued] == ["q1", "q2"]
    await stopping
    assert fake.batches == [["first"], ["q1", "q2"]]
    with pytest.raises(Unavailable):
        await writer.submit(_named("too late"))


def _event(n: int) -> Event:
    return Event(
        action="create",
        object_type="message",
        outcome="allowed",
        org="police",
        object_ids=(f"{n:022d}",),
        request_id=f"{n:04x}",
    )


async def test_entries_are_leaves_and_every_perfect_subtree_is_stored(store: Store) -> None:
    for n in range(11):

        def append(tx: Tx, n: int = n) -> None:
            recording.append(tx, _event(n), now=1000 + n)

        await store.write(append)
    entries = await store.audit_entries()
    assert [e.index for e in entries] == list(range(11))
    assert entries[3].object_ids == ("0000000000000000000003",)
    leaves = [e.leaf() for e in entries]
    stored = {
        (lv, i): bytes(h)
        for lv, i, h in await store.run_read(
            lambda c: c.execute(sa.text("SELECT level, idx, hash FROM audit_nodes")).all()
        )
    }
    held = [
        bytes(h)
        for (h,) in await store.run_read(
            lambda c: c.execute(sa.text('SELECT leaf_hash FROM audit_log ORDER BY "index"')).all()
        )
    ]
    expected = {node for n in range(11) for node in nodes_to_store(n)}
    assert set(stored) == expected  # every perfect subtree, nothing else
    for level, idx in expected:
        span = leaves[idx << level : (idx + 1) << level]
        assert stored[(level, idx)] == merkle.root_hash(span)
    assert held == leaves
    assert await store.audit_root() == (11, merkle.root_hash(leaves))


async def test_audit_entries_carry_no_content(hub: HubHarness) -> None:
    police, ggd = await hub.enrol("police"), await hub.enrol("ggd")
    marker = b"MARKER-do-not-log"
    envelope = hub.envelope(police, [ggd], payload=marker, pseudonyms=hub.pseudonyms("+3161"))
    await hub.send(police, envelope, **{"Schakel-User": "agent-7"})
    entries = await hub.audit()
    send = next(e for e in entries if (e.action, e.object_type) == ("create", "message"))
    assert (send.user, send.role, send.source) == ("agent-7", "member", "127.0.0.1")
    assert send.pseudonyms == envelope.header.pseudonyms  # the one place pseudonyms go
    text = repr([e for e in entries if e is not send])
    for secret in (envelope.header.pseudonyms[0], police.token or "", "MARKER"):
        assert secret not in text
    assert "MARKER" not in repr(send) and (police.token or "") not in repr(send)


async def test_notices_reach_every_subscriber_of_the_org() -> None:
    notifier = LocalNotifier(queue_size=2)
    first, second = notifier.subscribe(OrgId("ggd")), notifier.subscribe(OrgId("ggd"))
    other = notifier.subscribe(OrgId("police"))
    notice = Notice(1, MessageId("A" * 22))
    notifier.deliver([(OrgId("ggd"), notice)])
    assert await first.next() == notice and await second.next() == notice
    assert other._queue.empty()
    for n in range(3):  # one more than the queue holds: the subscription closes
        notifier.deliver([(OrgId("ggd"), Notice(n, MessageId("A" * 22)))])
    assert [await first.next() for _ in range(3)] == [
        Notice(0, MessageId("A" * 22)),
        Notice(1, MessageId("A" * 22)),
        None,
    ]
    assert await first.next() is None  # stays closed
    second.close()
    other.close()
    assert notifier.subscriber_count(OrgId("ggd")) == 0
