"""Erasing the openings of version 2 access-log entries: proofs stay, the data goes.

Runs on SQLite and PostgreSQL (the ``store`` fixture is parametrised by database kind).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from hub.accesslog import erasure, recording
from hub.accesslog.recording import Event
from hub.errors import AccessLogUnavailable
from hub.store import AuditQuery, Store, Tx, engines
from protocol import merkle
from protocol.auditlog import AuditEntry, Erasure
from protocol.errors import ValidationError, VerificationError
from protocol.pseudonym import LinkingKey, pseudonym

if TYPE_CHECKING:
    from conftest import HubHarness

T0 = 1_800_000_000
_KEY = LinkingKey(1, b"k" * 32)
MARK_USER = "erase-me-user-7f3a"
MARK_TEXT = "erase-me-purpose-text-91c2"
ANNA, BERT, CAROL = (
    pseudonym("tel", v, _KEY) for v in ("+31611111111", "+31622222222", "+31633333333")
)


def _event(n: int, pseudonyms: tuple[str, ...] = (), user: str = "worker-1") -> Event:
    return Event(
        action="read",
        object_type="message",
        outcome="allowed",
        org="police",
        user=user,
        role="member",
        purpose="care-delivery",
        purpose_text=f"check {n}",
        pseudonyms=pseudonyms,
        source="192.0.2.7",
        request_id=f"{n:08x}",
    )


async def all_entries(store: Store) -> list[AuditEntry]:
    """Every entry; asserts indexes 0..n-1 and that the leaves give the stored root."""
    entries = await store.audit_entries(AuditQuery(viewer=None, limit=1000))
    assert [e.index for e in entries] == list(range(len(entries)))
    assert await store.audit_root() == (len(entries), merkle.root_hash([e.leaf() for e in entries]))
    return entries


async def _append(store: Store, events: list[tuple[Event, int]]) -> None:
    for event, now in events:

        def item(tx: Tx, event: Event = event, now: int = now) -> None:
            recording.append(tx, event, now=now)

        await store.write(item)


async def _erase(store: Store, seqs: list[int], reason: str = "retention") -> int:
    def item(tx: Tx) -> int:
        return erasure.erase_openings(tx, seqs, reason=reason, now=T0 + 999, entry=None)

    count = await store.write(item)
    await erasure.scrub(store)
    return count


async def _a_log(store: Store) -> None:
    """Six entries: 0 and 3 about Anna, 1 about Anna and Bert, 4 about Bert, 5 about
    Carol with the marker fields."""
    events = [
        (_event(0, (ANNA,)), T0),
        (_event(1, (ANNA, BERT)), T0 + 10),
        (_event(2), T0 + 20),
        (_event(3, (ANNA,)), T0 + 30),
        (_event(4, (BERT,)), T0 + 40),
        (
            Event(
                action="read",
                object_type="inbox",
                outcome="allowed",
                org="police",
                user=MARK_USER,
                purpose="audit",
                purpose_text=MARK_TEXT,
                pseudonyms=(CAROL,),
            ),
            T0 + 50,
        ),
    ]
    await _append(store, events)


async def test_an_erased_log_keeps_its_leaves_root_and_every_earlier_proof(store: Store) -> None:
    await _a_log(store)
    before = await all_entries(store)
    assert all(e.v == 2 and not e.erased for e in before)
    size, root = await store.audit_root()
    proofs = await store.export_page(AuditQuery(viewer=None, limit=100), size=size, proofs=True)
    consistency = await store.consistency(3, size)
    assert consistency is not None
    _, old_root = size, merkle.root_hash([e.leaf() for e in before[:3]])

    assert await _erase(store, [0, 1, 5]) == 3
    after = await all_entries(store)  # checks the stored root against the leaves again
    assert [e.leaf() for e in after] == [e.leaf() for e in before]
    assert await store.audit_root() == (size, root)
    assert [e.erased for e in after] == [True, True, False, False, False, True]
    gone = after[0]
    assert (gone.user, gone.purpose_text, gone.pseudonyms, gone.source, gone.salt) == (
        None, None, (), None, None,
    )  # fmt: skip
    assert gone.erasure == Erasure(time=T0 + 999, reason="retention", entry=None)
    assert gone.to_wire()["opening"] == "erased"
    assert AuditEntry.from_wire(gone.to_wire()) == gone
    assert after[3] == before[3]
    # Proofs issued before the erasure verify against the same root, and are the same.
    for (entry, proof), now in zip(proofs, after, strict=True):
        assert proof is not None
        merkle.verify_inclusion(now.leaf(), now.index, size, proof, root)
        assert entry.leaf() == now.leaf()
    merkle.verify_consistency(3, size, old_root, root, consistency)
    assert await store.consistency(3, size) == consistency
    again = await store.export_page(AuditQuery(viewer=None, limit=100), size=size, proofs=True)
    assert [p for _, p in again] == [p for _, p in proofs]


async def test_erasing_is_idempotent_and_skips_what_it_can_not_erase(store: Store) -> None:
    await _a_log(store)
    assert await _erase(store, [2]) == 1
    assert await _erase(store, [2, 2, 40]) == 0  # already erased; never written
    entries = await all_entries(store)
    assert entries[2].erasure is not None and entries[2].erasure.time == T0 + 999


async def test_filters_by_pseudonym_and_user_work_on_version_2_and_forget_erased_ones(
    store: Store,
) -> None:
    await _a_log(store)

    async def indexes(**filters: Any) -> list[int]:
        found = await store.audit_entries(AuditQuery(viewer=None, **filters))
        return [e.index for e in found]

    assert await indexes(pseudonym=ANNA) == [0, 1, 3]
    assert await indexes(user=MARK_USER) == [5]
    assert await _erase(store, [1, 5]) == 2
    assert await indexes(pseudonym=ANNA) == [0, 3]
    assert await indexes(pseudonym=BERT) == [4]
    assert await indexes(user=MARK_USER) == []


async def test_openings_before_and_seqs_about_find_only_held_openings(store: Store) -> None:
    await _a_log(store)

    def find(tx: Tx) -> dict[str, list[int]]:
        return {
            "before": erasure.openings_before(tx, T0 + 30, 10),
            "first2": erasure.openings_before(tx, T0 + 100, 2),
            "anna": erasure.seqs_about(tx, [ANNA]),
            "anna-only": erasure.seqs_about(tx, [ANNA], exclusive=True),
            "both-only": erasure.seqs_about(tx, [ANNA, BERT], exclusive=True),
            "none": erasure.seqs_about(tx, []),
        }

    assert await store.write(find) == {
        "before": [0, 1, 2], "first2": [0, 1], "anna": [0, 1, 3], "anna-only": [0, 3],
        "both-only": [0, 1, 3, 4], "none": [],
    }  # fmt: skip
    assert await _erase(store, [0, 1]) == 2
    found = await store.write(find)
    assert (found["before"], found["anna"], found["anna-only"]) == ([2], [3], [3])


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda tx: erasure.erase_openings(tx, [1], reason="Not A Slug", now=T0), ValidationError),
        (lambda tx: erasure.erase_openings(tx, [1], reason="retention", now=-1), ValidationError),
        (lambda tx: erasure.erase_openings(tx, [-1], reason="retention", now=T0), ValueError),
        (lambda tx: erasure.erase_openings(tx, [True], reason="retention", now=T0), ValueError),
        (
            lambda tx: erasure.erase_openings(
                tx, list(range(erasure.MAX_BATCH + 1)), reason="retention", now=T0
            ),
            ValueError,
        ),
        (lambda tx: erasure.openings_before(tx, T0, 0), ValueError),
        (lambda tx: erasure.openings_before(tx, T0, erasure.MAX_BATCH + 1), ValueError),
        (lambda tx: erasure.seqs_about(tx, ["tel:not-a-pseudonym"]), ValidationError),
    ],
)
async def test_bad_arguments_are_refused_and_erase_nothing(
    store: Store, call: Any, error: type[Exception]
) -> None:
    await _a_log(store)
    with pytest.raises(error):
        await store.write(call)
    assert not any(e.erased for e in await all_entries(store))


async def test_a_tampered_opening_is_served_as_stored_and_fails_verification(
    store: Store,
) -> None:
    await _a_log(store)
    await store._engines.write(
        lambda c: c.execute(
            sa.text('UPDATE audit_openings SET "user" = \'mallory\' WHERE "index" = 2')
        )
    )
    entries = await all_entries(store)  # the leaves still give the root: proofs hold
    assert entries[2].user == "mallory"
    with pytest.raises(VerificationError, match="opening of audit entry 2 does not match"):
        entries[2].verify_opening()
    for entry in entries[:2] + entries[3:]:
        entry.verify_opening()


async def test_an_opening_gone_without_an_erasure_is_caught(store: Store) -> None:
    await _a_log(store)
    await store._engines.write(
        lambda c: c.execute(sa.text('DELETE FROM audit_openings WHERE "index" = 4'))
    )
    with pytest.raises(AccessLogUnavailable) as caught:
        await store.audit_entries()
    assert caught.value.cause == "entry 4 lost its opening without an erasure"


async def test_an_erased_field_is_gone_from_the_database_files(
    store: Store, database_url: str
) -> None:
    await _a_log(store)
    marks = (MARK_USER.encode(), MARK_TEXT.encode(), CAROL.encode())
    raw = await _raw_bytes(store, database_url)
    assert all(m in raw for m in marks)
    assert await _erase(store, [5]) == 1
    raw = await _raw_bytes(store, database_url)
    assert not any(m in raw for m in marks)
    assert b"worker-1" in raw  # the entries not erased are still there, the check can fail


async def _raw_bytes(store: Store, url: str) -> bytes:
    """Everything the database keeps on disk for the access log's tables."""
    backend = sa.make_url(url).get_backend_name()
    if backend == "sqlite":
        path = Path(str(sa.make_url(url).database))
        files = [path, path.with_name(path.name + "-wal")]
        return b"".join(f.read_bytes() for f in files if f.exists())

    def read(conn: sa.Connection) -> bytes:
        conn.execute(sa.text("CHECKPOINT"))  # shared buffers to the table's files
        out = b""
        for table in ("audit_openings", "audit_pseudonyms", "audit_log"):
            for relation in (table, _toast(conn, table)):
                if relation is None:
                    continue
                path = conn.execute(
                    sa.text("SELECT pg_relation_filepath(:t)"), {"t": relation}
                ).scalar_one()
                out += conn.execute(
                    sa.text("SELECT pg_read_binary_file(:p)"), {"p": path}
                ).scalar_one()
        return out

    return await store._engines.write(read)


def _toast(conn: sa.Connection, table: str) -> str | None:
    toast = conn.execute(
        sa.text(
            "SELECT reltoastrelid::regclass::text FROM pg_class WHERE oid = CAST(:t AS regclass)"
        ),
        {"t": table},
    ).scalar_one()
    return None if toast in (None, "-") else str(toast)


# -- over HTTP: the entries and export routes serve the opening or the erased marker ------


async def test_the_routes_serve_openings_and_erased_markers(hub: HubHarness) -> None:
    police = await hub.enrol("police", ["member", "privacy_officer"])
    npo = await hub.enrol("network-po", ["network_privacy_officer"])
    audit = {"Schakel-Purpose": "audit", "Schakel-User": "officer-1"}
    head = await hub.client.post("/v1/audit/head", headers=npo.headers(**audit))
    assert head.status == 201
    assert (await hub.client.get("/v1/inbox", headers=police.headers())).status == 200
    mine = await hub.store.audit_entries(AuditQuery(viewer=None, user="officer-1"))
    gone = sorted({0, mine[0].index})  # an entry of the officer's, and the first one

    def item(tx: Tx) -> int:
        return erasure.erase_openings(tx, gone, reason="retention", now=T0, entry=None)

    assert await hub.store.write(item) == 2
    await erasure.scrub(hub.store)
    response = await hub.client.get("/v1/audit/entries", headers=npo.headers(**audit))
    body = await response.json()
    assert response.status == 200, body
    items = body["entries"]
    assert [i["index"] for i in items if i["opening"] == "erased"] == gone
    assert items[0]["erasure"] == {"time": T0, "reason": "retention", "entry": None}
    kept = next(i for i in items if i["index"] not in gone)
    assert set(kept["opening"]) == {"salt", "user", "purpose_text", "pseudonyms", "source"}
    assert "user" not in kept and "erasure" not in kept
    for wire in items:
        entry = AuditEntry.from_wire(wire)
        entry.verify_opening()
        assert entry.erased == (entry.index in gone)
    assert (await hub.client.post("/v1/audit/head", headers=npo.headers(**audit))).status == 201
    export = await hub.client.get("/v1/audit/export", headers=npo.headers(**audit))
    assert export.status == 200
    lines = [json.loads(line) for line in (await export.read()).splitlines()]
    erased = [line["entry"]["index"] for line in lines[1:] if line["entry"]["opening"] == "erased"]
    assert erased == gone
    # a filter by user no longer finds what was erased; one by org still does
    for query in ({"user": "officer-1"}, {"org": "network-po"}):
        found = await hub.client.get(
            "/v1/audit/entries", params=query, headers=npo.headers(**audit)
        )
        indexes = [e["index"] for e in (await found.json())["entries"]]
        assert (mine[0].index in indexes) == ("org" in query), query


async def test_scrubbing_says_when_a_reader_still_holds_the_old_rows(
    store: Store, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snapshot older than the erasure can still see the deleted rows, so the database
    keeps them for it: scrub says so (RuntimeError) rather than claim they are gone."""
    await _a_log(store)
    waits = engines.SCRUB_WAIT
    monkeypatch.setattr(engines, "SCRUB_WAIT", 1)

    def item(tx: Tx) -> int:
        return erasure.erase_openings(tx, [5], reason="retention", now=T0 + 999)

    async with _old_snapshot(database_url):
        assert await store.write(item) == 1
        if sa.make_url(database_url).get_backend_name() == "postgresql":
            # it waits on a connection of its own: the writer goes on meanwhile
            monkeypatch.setattr(engines, "SCRUB_WAIT", 3)
            scrubbing = asyncio.create_task(erasure.scrub(store))
            await asyncio.sleep(0.2)
            await _append(store, [(_event(6), T0 + 60)])
            assert not scrubbing.done()
            with pytest.raises(RuntimeError):
                await scrubbing
        else:
            with pytest.raises(RuntimeError):
                await erasure.scrub(store)
    monkeypatch.setattr(engines, "SCRUB_WAIT", waits)  # on a shared server others may run
    await erasure.scrub(store)  # nothing of ours holds the old rows now
    raw = await _raw_bytes(store, database_url)
    assert MARK_USER.encode() not in raw and b"worker-1" in raw


@contextlib.asynccontextmanager
async def _old_snapshot(url: str) -> AsyncIterator[None]:
    """A reader in an open transaction that has read the openings (a snapshot)."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        db = sqlite3.connect(str(parsed.database), isolation_level=None)
        try:
            db.execute("BEGIN")
            assert db.execute("SELECT count(*) FROM audit_openings").fetchone() == (6,)
            yield
            db.execute("ROLLBACK")
        finally:
            db.close()
        return
    engine = create_async_engine(url, isolation_level="REPEATABLE READ")
    try:
        async with engine.connect() as conn, conn.begin():
            found = await conn.execute(sa.text("SELECT count(*) FROM audit_openings"))
            assert found.scalar() == 6
            yield
    finally:
        await engine.dispose()
