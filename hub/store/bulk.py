"""Batched work: new messages and access-log entries, written a table at a time.

Most of the writer's work is of two plain shapes: an envelope to store with its
access-log entry (:class:`NewMessage`), and an entry alone (:class:`NewEntry`, an
allowed read or a denial). Such items are not functions of a :class:`~hub.store.Tx`
but values, so that a batch can write all of them together (:func:`write`):

1. **decide before writing**: one lookup of every message id of the batch; an id
   held already (or taken earlier in the same batch) by the same sender with the
   same envelope fingerprint is a repeat (the earlier acceptance, entry reason
   ``repeat``), by anything else a :class:`~hub.errors.Conflict` (nothing written,
   as the per-item path did). Each entry is built (and validated) here too, so that
   nothing written has to be taken back;
2. **one statement per table**: messages, deliveries, message pseudonyms, entries,
   tree nodes (every node the batch's leaves complete, from the in-memory frontier),
   entry objects and entry pseudonyms. On SQLite through the raw sqlite3 connection
   of the writer's transaction (``executemany`` of one prepared statement); on
   PostgreSQL one ``INSERT ... SELECT FROM unnest(arrays)`` each, so one round trip
   per table whatever the batch's size;
3. **clustering** (:mod:`hub.placement`): the batch's new messages are handed, in
   one call, to the ``place`` function they carry, inside the same transaction.

The entries are placed from the tree the batch was given, after one check that it is
still the stored one (the newest stored index is ``size - 1``; on PostgreSQL under
the sequencer's lock, so no other replica appends meanwhile): a stale tree is read
again, so the sequence stays gap-free across replicas, as the checked insert of
:meth:`~hub.store.Tx.insert_audit` keeps it for single items.

:meth:`hub.store.tx.Batch.run_bulk` runs :func:`write` inside one savepoint for the
whole batch; should it fail for a reason not decided above (a database error), it is
rolled back and each item is written again alone, so one bad item never fails others.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from hub import schema as t
from hub.errors import AccessLogUnavailable, Conflict
from hub.notify import Notice
from hub.store.records import StoredMessage
from hub.store.tree import Frontier
from hub.store.tx import BROKEN_LOG, AuditTree, Tx, entry_row, read_tree
from hub.writer import ItemOutcome
from protocol.auditlog import AuditEntry
from protocol.certificate import Certificate
from protocol.envelope import Encoded
from protocol.types import CaseRef, Fingerprint, MessageId, OrgId

Notices = list[tuple[OrgId, Notice]]


@dataclass(frozen=True, slots=True)
class Stored:
    """Where a :class:`NewMessage` stands once its batch committed."""

    cursor: int
    accepted_at: int  # when the hub first accepted this id
    created: bool  # False: a repeat of an envelope accepted before


@dataclass(frozen=True, slots=True, eq=False)
class NewMessage:
    """A checked envelope to store, with its access-log entry.

    ``entry(index, reason)`` builds the entry at ``index`` (reason ``None``, or
    ``"repeat"`` for a repeat); ``place``, given the batch's new messages and their
    cursors, clusters them and returns the notices to publish.
    """

    encoded: Encoded
    accepted_at: int
    entry: Callable[[int, str | None], AuditEntry]
    sender: Certificate
    fresh: CaseRef  # the reference a new case would get
    place: Callable[[Any, Sequence[tuple[NewMessage, int]]], Notices] | None = None


@dataclass(frozen=True, slots=True, eq=False)
class NewEntry:
    """An access-log entry alone; ``entry(index)`` builds it."""

    entry: Callable[[int], AuditEntry]


Bulk = NewMessage | NewEntry

CONFLICT = "another envelope was accepted under this message id"


@dataclass(slots=True)
class _Plan:
    """What the batch decided before writing anything."""

    outcomes: list[ItemOutcome | None]
    new: list[tuple[int, NewMessage]] = field(default_factory=list)  # (position, item)
    repeats: list[tuple[int, StoredMessage | int]] = field(default_factory=list)
    entries: list[tuple[int, AuditEntry]] = field(default_factory=list)


def _same(held: StoredMessage, item: NewMessage) -> bool:
    header = item.encoded.envelope.header
    return held.sender == header.sender and held.envelope_fingerprint == item.encoded.fingerprint


def _decide(items: Sequence[Bulk], held: dict[str, StoredMessage], size: int) -> _Plan:
    plan = _Plan([None] * len(items))
    first: dict[str, int] = {}  # id -> position of the new message taking it in this batch
    for position, item in enumerate(items):
        reason: str | None = None
        if isinstance(item, NewMessage):
            mid = item.encoded.envelope.header.id
            earlier = held.get(mid)
            if earlier is None and mid in first:
                taken = items[first[mid]]
                assert isinstance(taken, NewMessage)
                earlier = _pending(taken)
            if earlier is not None:
                if not _same(earlier, item):
                    plan.outcomes[position] = (False, Conflict(CONFLICT))
                    continue
                reason = "repeat"
        index = size + len(plan.entries)
        try:
            entry = item.entry(index, reason) if isinstance(item, NewMessage) else item.entry(index)
        except Exception as exc:  # a field that breaks the entry's rules: this item only
            plan.outcomes[position] = (False, exc)
            continue
        plan.entries.append((position, entry))
        if not isinstance(item, NewMessage):
            plan.outcomes[position] = (True, None)
        elif reason is None:
            first[item.encoded.envelope.header.id] = position
            plan.new.append((position, item))
        else:
            mid = item.encoded.envelope.header.id
            plan.repeats.append((position, held[mid] if mid in held else first[mid]))
    return plan


def _pending(item: NewMessage) -> StoredMessage:
    header = item.encoded.envelope.header
    return StoredMessage(0, header.id, header.sender, item.encoded.fingerprint, item.accepted_at)


# -- the rows, per database ---------------------------------------------------------------

_MESSAGE_COLUMNS: Final = (
    "id", "sender", "kind", "created", "accepted_at", "envelope_fingerprint", "envelope", "size",
)  # fmt: skip
_AUDIT_COLUMNS: Final = tuple(column.name for column in t.audit_log.c)


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(f'"{name}"' for name in names)


class _SqliteRows:
    """The raw sqlite3 connection of the writer's open transaction."""

    def __init__(self, conn: sa.Connection) -> None:
        self._db: sqlite3.Connection = conn.connection.driver_connection  # type: ignore[assignment]

    def held(self, ids: Sequence[str]) -> list[tuple[Any, ...]]:
        return self._db.execute(
            "SELECT cursor, id, sender, envelope_fingerprint, accepted_at FROM messages "
            "WHERE id IN (SELECT value FROM json_each(?))",
            (_json_list(ids),),
        ).fetchall()

    def newest_index(self) -> int | None:
        row = self._db.execute('SELECT max("index") FROM audit_log').fetchone()
        return None if row[0] is None else int(row[0])

    def messages(self, rows: list[tuple[Any, ...]]) -> list[int]:
        """Insert ``rows`` (in ``_MESSAGE_COLUMNS`` order); their cursors, in order.

        The cursors are given explicitly, after the highest ever taken (the table is
        AUTOINCREMENT, so SQLite's own counter is read too): the writer holds SQLite's
        write lock, so no one else takes one meanwhile.
        """
        last = self._db.execute(
            "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'messages'), 0),"
            " coalesce((SELECT max(cursor) FROM messages), 0))"
        ).fetchone()[0]
        cursors = list(range(int(last) + 1, int(last) + 1 + len(rows)))
        self._db.executemany(
            _sqlite_insert("messages", ("cursor", *_MESSAGE_COLUMNS)),
            [(cursor, *row) for cursor, row in zip(cursors, rows, strict=True)],
        )
        return cursors

    def insert(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        if rows:
            self._db.executemany(_sqlite_insert(table, tuple(columns)), rows)


@cache
def _sqlite_insert(table: str, columns: tuple[str, ...]) -> str:
    """The prepared ``INSERT`` of ``columns`` (names of :mod:`hub.schema`, never input)."""
    if not set(columns) <= set(t.metadata.tables[table].c.keys()):
        raise ValueError(f"columns not in the schema of {table}")
    placeholders = ", ".join("?" * len(columns))
    return f'INSERT INTO "{table}" ({_quoted(columns)}) VALUES ({placeholders})'  # noqa: S608


def _json_list(values: Sequence[str]) -> str:
    return json.dumps(list(values))


@cache
def _pg_unnest(table: str, columns: tuple[str, ...], returning: str = "") -> sa.TextClause:
    """``INSERT INTO table (columns) SELECT * FROM unnest(one array per column)``."""
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    table_ = t.metadata.tables[table]
    arrays = []
    binds = []
    for number, name in enumerate(columns):
        column_type = table_.c[name].type
        sql_type = column_type.compile(dialect=dialect)
        arrays.append(f"CAST(:c{number} AS {sql_type}[])")
        binds.append(sa.bindparam(f"c{number}", type_=postgresql.ARRAY(column_type)))
    statement = (
        f'INSERT INTO "{table}" ({_quoted(columns)}) SELECT * FROM unnest({", ".join(arrays)})'  # noqa: S608
    )
    if returning:
        statement += " RETURNING " + returning
    return sa.text(statement).bindparams(*binds)


_PG_HELD: Final = sa.text(
    "SELECT cursor, id, sender, envelope_fingerprint, accepted_at FROM messages "
    "WHERE id = ANY(CAST(:ids AS VARCHAR[]))"
).bindparams(sa.bindparam("ids", type_=postgresql.ARRAY(sa.String)))
_PG_NEWEST: Final = sa.text('SELECT max("index") FROM audit_log')


class _PgRows:
    """PostgreSQL: one ``unnest`` statement, so one round trip, per table."""

    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn

    def held(self, ids: Sequence[str]) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self._conn.execute(_PG_HELD, {"ids": list(ids)})]

    def newest_index(self) -> int | None:
        value = self._conn.execute(_PG_NEWEST).scalar()
        return None if value is None else int(value)

    def messages(self, rows: list[tuple[Any, ...]]) -> list[int]:
        statement = _pg_unnest("messages", _MESSAGE_COLUMNS, returning="cursor, id")
        found = self._conn.execute(statement, _columns(rows, len(_MESSAGE_COLUMNS))).all()
        by_id = {row[1]: int(row[0]) for row in found}
        return [by_id[row[0]] for row in rows]

    def insert(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        if rows:
            statement = _pg_unnest(table, tuple(columns))
            self._conn.execute(statement, _columns(rows, len(columns)))


def _columns(rows: list[tuple[Any, ...]], width: int) -> dict[str, list[Any]]:
    return {f"c{number}": [row[number] for row in rows] for number in range(width)}


def _rows_for(conn: sa.Connection) -> _SqliteRows | _PgRows:
    return _PgRows(conn) if conn.dialect.name == "postgresql" else _SqliteRows(conn)


# -- the batch ------------------------------------------------------------------------------


def write(
    conn: sa.Connection, known: AuditTree, items: Sequence[Bulk]
) -> tuple[list[ItemOutcome], Frontier, Notices]:
    """Write ``items`` together (see the module docstring): each item's outcome, the tree
    after the batch's entries, and the notices to publish once committed.

    ``known`` is the tree as the writer knows it (or :data:`~hub.store.tx.UNKNOWN`); it
    is checked against the stored log first and read again when stale.
    """
    rows = _rows_for(conn)
    tree = _current_tree(conn, rows, known)
    ids = sorted({i.encoded.envelope.header.id for i in items if isinstance(i, NewMessage)})
    held = {
        row[1]: StoredMessage(
            int(row[0]), MessageId(row[1]), OrgId(row[2]), Fingerprint(row[3]), int(row[4])
        )
        for row in (rows.held(ids) if ids else [])
    }
    plan = _decide(items, held, tree.size)
    cursors = _write_messages(rows, plan.new)
    tree = _write_entries(rows, tree, [entry for _, entry in plan.entries])
    notices: Notices = []
    placing: dict[Any, list[tuple[NewMessage, int]]] = {}
    for (position, item), cursor in zip(plan.new, cursors, strict=True):
        header = item.encoded.envelope.header
        notices += [(recipient, Notice(cursor, header.id)) for recipient in header.recipients]
        plan.outcomes[position] = (True, Stored(cursor, item.accepted_at, True))
        if item.place is not None:
            placing.setdefault(item.place, []).append((item, cursor))
    by_position = dict(zip((p for p, _ in plan.new), cursors, strict=True))
    for position, earlier in plan.repeats:
        if isinstance(earlier, StoredMessage):
            stored = Stored(earlier.cursor, earlier.accepted_at, False)
        else:
            first = items[earlier]
            assert isinstance(first, NewMessage)
            stored = Stored(by_position[earlier], first.accepted_at, False)
        plan.outcomes[position] = (True, stored)
    for place, placed in placing.items():
        notices += place(Tx(conn, tree), placed)
    outcomes = [o for o in plan.outcomes if o is not None]
    assert len(outcomes) == len(items)
    return outcomes, tree, notices


def _current_tree(conn: sa.Connection, rows: _SqliteRows | _PgRows, known: AuditTree) -> Frontier:
    """``known`` if the newest stored entry is its last, else the tree as stored."""
    if isinstance(known, Frontier) and rows.newest_index() == (
        known.size - 1 if known.size else None
    ):
        return known
    try:
        return read_tree(conn)
    except KeyError:  # a node of the frontier is missing
        raise AccessLogUnavailable(cause=BROKEN_LOG) from None


def _write_messages(rows: _SqliteRows | _PgRows, new: list[tuple[int, NewMessage]]) -> list[int]:
    if not new:
        return []
    values = []
    for _, item in new:
        header, wire = item.encoded.envelope.header, item.encoded.wire
        values.append(
            (header.id, header.sender, header.kind, header.created, item.accepted_at,
             item.encoded.fingerprint, wire.decode("utf-8"), len(wire))
        )  # fmt: skip
    cursors = rows.messages(values)
    deliveries: list[tuple[Any, ...]] = []
    pseudonyms: list[tuple[Any, ...]] = []
    for (_, item), cursor in zip(new, cursors, strict=True):
        header = item.encoded.envelope.header
        deliveries += [(recipient, cursor) for recipient in header.recipients]
        pseudonyms += [(cursor, pseudonym) for pseudonym in header.pseudonyms]
    rows.insert("deliveries", ("recipient", "cursor"), deliveries)
    rows.insert("message_pseudonyms", ("cursor", "pseudonym"), pseudonyms)
    return cursors


def _write_entries(
    rows: _SqliteRows | _PgRows, tree: Frontier, entries: list[AuditEntry]
) -> Frontier:
    if not entries:
        return tree
    audit, nodes, objects, pseudonyms = [], [], [], []
    for entry in entries:
        row = entry_row(entry)
        audit.append(tuple(row[name] for name in _AUDIT_COLUMNS))
        done = tree.append(row["leaf_hash"])
        nodes += [(level, idx, value) for (level, idx), value in done]
        tree = tree.appended(done)
        objects += [(entry.index, object_id) for object_id in entry.object_ids]
        pseudonyms += [(entry.index, pseudonym) for pseudonym in entry.pseudonyms]
    try:
        rows.insert("audit_log", _AUDIT_COLUMNS, audit)
    except (sa.exc.SQLAlchemyError, sqlite3.Error) as exc:
        raise AccessLogUnavailable(
            cause=f"an entry could not be written ({type(exc).__name__})"
        ) from None
    try:
        rows.insert("audit_nodes", ("level", "idx", "hash"), nodes)
    except (sa.exc.IntegrityError, sqlite3.IntegrityError):  # a node of a cut leaf is held
        raise AccessLogUnavailable(cause=BROKEN_LOG) from None
    rows.insert("audit_objects", ("index", "object_id"), objects)
    rows.insert("audit_pseudonyms", ("index", "pseudonym"), pseudonyms)
    return tree
