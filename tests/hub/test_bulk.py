"""New messages and entries written together per batch (hub/store/bulk.py), and a
batch's signals clustered together (hub/store/casebatch.py)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Any

import pytest
import sqlalchemy as sa

from bench.cases import (
    COORDINATOR,
    SIGNALLERS,
    T0,
    YEAR,
    Template,
    bench_pseudonym,
    make_template,
)
from hub import relay
from hub import schema as t
from hub.accesslog.recording import Event, Scope
from hub.errors import Conflict
from hub.relay import Accepted
from hub.store import AuditQuery, Store, Tx
from hub.store.bulk import NewEntry
from protocol import merkle
from protocol.envelope import encode
from protocol.types import CaseRef, OrgId, Pseudonym, case_ref_from

REFUSE_MESSAGE = {
    "sqlite": [
        "CREATE TRIGGER no_message BEFORE INSERT ON messages WHEN NEW.id = '{id}' "
        "BEGIN SELECT RAISE(ABORT, 'refused'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION no_message() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.id = '{id}' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$",
        "CREATE TRIGGER no_message BEFORE INSERT ON messages "
        "FOR EACH ROW EXECUTE FUNCTION no_message()",
    ],
}


@pytest.fixture(scope="module")
def template() -> Template:
    return make_template()


async def _organisations(store: Store) -> None:
    def insert(conn: sa.Connection) -> None:
        orgs = [*SIGNALLERS, (COORDINATOR, "coordination")]
        conn.execute(
            sa.insert(t.organisations),
            [
                {"org": org, "network": "bench", "certificate": b"\0", "fingerprint": f"{n:043d}",
                 "serial": str(n), "org_type": kind, "not_before": T0 - YEAR,
                 "not_after": T0 + YEAR,
                 "roles": "coordinator,member" if org == COORDINATOR else "member"}
                for n, (org, kind) in enumerate(orgs)
            ],
        )  # fmt: skip

    await store._engines.write(insert)


def _pseudonyms(*numbers: int) -> list[Pseudonym]:
    return [bench_pseudonym(n) for n in numbers]


async def _send(
    store: Store, template: Template, number: int, pseudonyms: Sequence[Pseudonym], *, at: int = T0
) -> Accepted:
    envelope = template.signal(number, pseudonyms, now=T0)  # the same bytes whenever sent
    return await _send_envelope(store, template, envelope, number, at=at)


async def _send_envelope(
    store: Store, template: Template, envelope: Any, number: int, *, at: int = T0
) -> Accepted:
    header = envelope.header
    scope = Scope(action="create", object_type="message", org=header.sender, user="u")
    scope.touch([header.id])
    scope.pseudonyms = header.pseudonyms
    return await relay.store_envelope(
        store, scope, encode(envelope), now=at, sender=template.sender, fresh=_ref(number)
    )


def _ref(number: int) -> CaseRef:
    return case_ref_from(bytes([9]) + number.to_bytes(9, "big"))


async def _entries(store: Store) -> list[Any]:
    entries = await store.audit_entries(AuditQuery(viewer=None, limit=1000))
    size, root = await store.audit_root()
    assert (size, root) == (len(entries), merkle.root_hash([e.leaf() for e in entries]))
    assert [e.index for e in entries] == list(range(len(entries)))
    return entries


async def test_repeats_and_conflicts_in_one_batch_are_decided_before_writing(
    store: Store, template: Template
) -> None:
    await _organisations(store)
    held = await _send(store, template, 1, _pseudonyms(1))
    clash = template.signal(1, _pseudonyms(2), now=T0)  # the id of 1, other bytes
    before = store.batches_committed
    outcomes = await asyncio.gather(
        _send(store, template, 2, _pseudonyms(3), at=T0 + 5),
        _send(store, template, 2, _pseudonyms(3), at=T0 + 9),  # a retry in the same batch
        _send(store, template, 1, _pseudonyms(1), at=T0 + 9),  # a retry of one held
        _send_envelope(store, template, clash, 1),
        _send(store, template, 2, _pseudonyms(4)),  # the new id of 2, other bytes
        store.write(NewEntry(lambda index: _read_event().entry(index, now=T0 + 9))),
        return_exceptions=True,
    )
    assert store.batches_committed - before == 1
    new, again, old, conflict, other, entry = outcomes
    assert isinstance(new, Accepted) and new.created and new.accepted == T0 + 5
    assert again == Accepted(new.id, T0 + 5, new.cursor, created=False)
    assert old == Accepted(held.id, T0, held.cursor, created=False)
    assert isinstance(conflict, Conflict) and isinstance(other, Conflict)
    assert entry is None
    counts = await store.counts()
    assert (counts["messages"], counts["deliveries"], counts["message_pseudonyms"]) == (2, 2, 2)
    entries = await _entries(store)
    assert [(e.action, e.reason) for e in entries] == [
        ("create", None), ("create", None), ("create", "repeat"), ("create", "repeat"),
        ("read", None),
    ]  # fmt: skip
    assert entries[1].pseudonyms == tuple(_pseudonyms(3))


def _read_event() -> Event:
    return Event(action="read", object_type="inbox", outcome="allowed", org="police")


async def test_one_item_failing_in_the_database_fails_no_other(
    store: Store, template: Template, database_kind: str
) -> None:
    """An error the batch did not decide before writing (here a trigger refusing one
    message) rolls the batch back and each item is written alone: only that one fails.
    The batch's other work runs once, in the transaction that commits."""
    await _organisations(store)
    bad = template.signal(2, _pseudonyms(20), now=T0)
    for statement in REFUSE_MESSAGE[database_kind]:
        sql = statement.format(id=bad.header.id)  # an id is base64url: nothing to escape
        await store._engines.write(lambda conn, sql=sql: conn.exec_driver_sql(sql))
    runs: list[int] = []

    def other_work(tx: Tx) -> str:
        runs.append(1)
        tx.insert_challenge("c1", OrgId("police"), expires=T0 + 60)
        return "done"

    before = store.batches_committed
    outcomes = await asyncio.gather(
        _send(store, template, 1, _pseudonyms(10, 11)),
        _send_envelope(store, template, bad, 2),
        _send(store, template, 3, _pseudonyms(11, 12)),  # joins 1's case, in the retry
        store.write(NewEntry(lambda index: _read_event().entry(index, now=T0))),
        store.write(other_work),
        return_exceptions=True,
    )
    assert store.batches_committed - before == 1
    assert isinstance(outcomes[0], Accepted) and isinstance(outcomes[2], Accepted)
    assert isinstance(outcomes[1], Exception) and not isinstance(outcomes[1], Accepted)
    assert outcomes[3] is None
    assert outcomes[4] == "done" and runs == [1]
    counts = await store.counts()
    assert (counts["messages"], counts["cases"], counts["case_members"]) == (2, 1, 2)
    assert counts["challenges"] == 1
    assert [e.action for e in await _entries(store)] == ["create", "create", "read"]
    assert [e.object_ids for e in (await _entries(store))[:2]] == [
        (outcomes[0].id,), (outcomes[2].id,),
    ]  # fmt: skip


async def _summaries(store: Store) -> dict[str, tuple[Any, ...]]:
    c = t.cases.c
    query = sa.select(
        c.ref, c.merged_into, c.signals, c.first_signal, c.last_signal, c.org_types, c.state,
        c.open_referrals,
    )  # fmt: skip
    return {row[0]: tuple(row[1:]) for row in await store.run_read(lambda s: s.execute(query))}


async def test_a_batch_of_signals_is_clustered_as_one_after_another(
    store: Store, template: Template
) -> None:
    await _organisations(store)
    await _send(store, template, 1, _pseudonyms(1, 2), at=T0)  # case A
    await _send(store, template, 2, _pseudonyms(3), at=T0 + 1)  # case B
    outcomes = await asyncio.gather(
        _send(store, template, 3, _pseudonyms(5, 6), at=T0 + 10),  # starts C
        _send(store, template, 4, _pseudonyms(6, 7), at=T0 + 11),  # joins C, made just now
        _send(store, template, 5, _pseudonyms(2, 8), at=T0 + 12),  # joins A
        _send(store, template, 6, _pseudonyms(8, 3), at=T0 + 13),  # links A and B: merged
        _send(store, template, 7, _pseudonyms(3, 9), at=T0 + 14),  # joins the merged case
    )
    assert all(isinstance(o, Accepted) and o.created for o in outcomes)
    cases = await store.case_page(
        state=None, org_type=None, since=0, sort="last", descending=False, offset=0,
        limit=10,
    )  # fmt: skip
    assert cases[1] == 2  # C, and A with B merged into it
    events = await store.events(COORDINATOR, after=0, limit=100)
    assert [(e.kind, e.message) for e in events] == [
        ("match", outcomes[n].id) for n in (1, 2, 3, 4)
    ]
    # The summaries the batch kept are those a full refresh computes from the members.
    kept = await _summaries(store)

    def refresh_all(tx: Tx) -> None:
        for ref, row in kept.items():
            if row[0] is None:
                tx.cases.refresh(CaseRef(ref))

    await store.write(refresh_all)
    assert await _summaries(store) == kept
    live = {ref: row for ref, row in kept.items() if row[0] is None}
    assert sorted(row[1] for row in live.values()) == [2, 5]


async def test_entries_follow_those_another_writer_appended(
    store: Store, database_url: str
) -> None:
    """Two writers on one database (two replicas): each batch checks the tree it holds
    against the newest stored entry, so neither leaves a gap nor takes an index twice."""

    def entry_of(number: int) -> NewEntry:
        event = dataclasses.replace(_read_event(), object_ids=(f"o{number}",))
        return NewEntry(lambda index: event.entry(index, now=T0))

    await store.write(entry_of(1))  # this writer now holds a tree of size 1 in memory
    other = Store(database_url)
    await other.start()
    try:
        await asyncio.gather(other.write(entry_of(2)), other.write(entry_of(3)))
    finally:
        await other.close()
    await asyncio.gather(store.write(entry_of(4)), store.write(entry_of(5)))
    entries = await _entries(store)  # gap-free, and the stored nodes give the leaves' root
    assert [e.object_ids for e in entries] == [(f"o{n}",) for n in (1, 2, 3, 4, 5)]
