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

A referral or a status update may still be refused for what it says about its case
and referral. Such a message carries ``checks``: one :class:`Checks` per batch looks up
what the batch's ones name, then decides each, in order and in memory, in step 1
(a refusal writes nothing, as a conflict); once the messages are written it places them
(after the other messages: as the per-item work they were before) and tells the
pseudonyms their entries carry (the case's), so their entries are built then. An item
it can not decide in memory (:class:`Undecided`) has the batch written again item by
item, in order (below).

The entries are placed from the tree the batch was given, after one check that it is
still the stored one (the newest stored index is ``size - 1``; on PostgreSQL under
the sequencer's lock, so no other replica appends meanwhile): a stale tree is read
again, so the sequence stays gap-free across replicas, as the checked insert of
:meth:`~hub.store.Tx.insert_audit` keeps it for single items.

:func:`hub.store.database._run_bulk` runs :func:`write` first in the batch's transaction;
should it fail for a reason not decided above (a database error), the transaction is
rolled back and the batch runs again with each item written alone (a savepoint each),
so one bad item never fails others.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from hub import schema as t
from hub.errors import AccessLogUnavailable, Conflict
from hub.notify import Notice
from hub.store.records import StoredMessage
from hub.store.rows import MESSAGE_COLUMNS, Part, PgRows, Row, Rows, SqliteRows, rows_for
from hub.store.tree import Frontier
from hub.store.tx import BROKEN_LOG, AuditTree, Tx, entry_row, opening_row, tree_of_size
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


class Checks(Protocol):
    """A batch's refusable new messages (see the module docstring), made once per batch
    from the connection, those messages (new or not), and whether the batch holds only
    one item."""

    def check(self, item: NewMessage) -> None:
        """Raise the refusal of the new message ``item``, given those decided before it
        (or :class:`Undecided`); else take its effect in memory."""

    def place(
        self, tx: Tx, placed: Sequence[tuple[NewMessage, int]]
    ) -> tuple[Notices, list[tuple[str, ...]]]:
        """Write what the accepted ones did, in order: the notices to publish, and the
        pseudonyms each one's entry carries."""
        ...


class Undecided(Exception):
    """An item its batch can not decide in memory: the batch is written item by item."""


@dataclass(frozen=True, slots=True, eq=False)
class NewMessage:
    """A checked envelope to store, with its access-log entry.

    ``entry(index, reason, pseudonyms)`` builds the entry at ``index`` (reason ``None``,
    or ``"repeat"`` for a repeat; ``pseudonyms`` in place of the request's, when given);
    ``place``, given the batch's new messages and their cursors, clusters them and
    returns the notices to publish; ``checks`` (instead) decides and places a message
    that may still be refused (:class:`Checks`).
    """

    encoded: Encoded
    accepted_at: int
    entry: Callable[[int, str | None, tuple[str, ...] | None], AuditEntry]
    sender: Certificate
    fresh: CaseRef  # the reference a new case would get
    place: Callable[[Any, Sequence[tuple[NewMessage, int]]], Notices] | None = None
    checks: Callable[[sa.Connection, Sequence[NewMessage], bool], Checks] | None = None


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
    # (position, entry); None for a checked message's, built once it is placed
    entries: list[tuple[int, AuditEntry | None]] = field(default_factory=list)


def _same(held: StoredMessage, item: NewMessage) -> bool:
    header = item.encoded.envelope.header
    return held.sender == header.sender and held.envelope_fingerprint == item.encoded.fingerprint


def _decide(
    items: Sequence[Bulk], held: dict[str, StoredMessage], size: int, checks: dict[Any, Checks]
) -> _Plan:
    """Each item's fate, in order: a conflict, a repeat, refused by its checks, new; and
    its entry, built now (a checked new message's once it is placed)."""
    plan = _Plan([None] * len(items))
    first: dict[str, int] = {}  # id -> position of the new message taking it in this batch
    for position, item in enumerate(items):
        earlier = _earlier(item, held, first, items)
        if isinstance(item, NewMessage) and earlier is not None and not _same(earlier, item):
            plan.outcomes[position] = (False, Conflict(CONFLICT))
            continue
        reason = None if earlier is None else "repeat"
        index = size + len(plan.entries)
        try:
            entry = _checked_entry(item, index, reason, checks)
        except Undecided:
            raise
        except Exception as exc:  # refused, or a field that breaks the entry's rules:
            plan.outcomes[position] = (False, exc)  # this item only
            continue
        plan.entries.append((position, entry))
        if not isinstance(item, NewMessage):
            plan.outcomes[position] = (True, None)
        elif earlier is None:
            first[item.encoded.envelope.header.id] = position
            plan.new.append((position, item))
        else:
            mid = item.encoded.envelope.header.id
            plan.repeats.append((position, held[mid] if mid in held else first[mid]))
    return plan


def _checked_entry(
    item: Bulk, index: int, reason: str | None, checks: dict[Any, Checks]
) -> AuditEntry | None:
    """The item's entry at ``index``; for a new message its checks accept, None (later)."""
    if not isinstance(item, NewMessage):
        return item.entry(index)
    if reason is None and item.checks is not None:
        checks[item.checks].check(item)
        return None
    return item.entry(index, reason, None)


def _earlier(
    item: Bulk, held: dict[str, StoredMessage], first: dict[str, int], items: Sequence[Bulk]
) -> StoredMessage | None:
    """The message already holding ``item``'s id: stored, or new earlier in this batch."""
    if not isinstance(item, NewMessage):
        return None
    mid = item.encoded.envelope.header.id
    if mid in held:
        return held[mid]
    if mid not in first:
        return None
    taken = items[first[mid]]
    assert isinstance(taken, NewMessage)
    header = taken.encoded.envelope.header
    return StoredMessage(0, header.id, header.sender, taken.encoded.fingerprint, taken.accepted_at)


# -- the rows, per database ---------------------------------------------------------------

_AUDIT_COLUMNS: Final = tuple(column.name for column in t.audit_log.c)
_OPENING_COLUMNS: Final = tuple(column.name for column in t.audit_openings.c)
_SQLITE_HELD: Final = (
    "SELECT cursor, id, sender, envelope_fingerprint, accepted_at FROM messages "
    "WHERE id IN (SELECT value FROM json_each(?))"
)
_SQLITE_NEWEST: Final = 'SELECT max("index") FROM audit_log'
# The newest index and the messages holding the ids, in one round trip: one row at least.
_PG_LOOK: Final = sa.text(
    'SELECT (SELECT max("index") FROM audit_log), m.cursor, m.id, m.sender, '
    "m.envelope_fingerprint, m.accepted_at FROM (SELECT 1) AS one "
    "LEFT JOIN messages AS m ON m.id = ANY(CAST(:ids AS VARCHAR[]))"
).bindparams(sa.bindparam("ids", type_=postgresql.ARRAY(sa.String)))


def _look(conn: sa.Connection, rows: Rows, ids: Sequence[str]) -> tuple[int | None, list[Row]]:
    """The newest stored entry's index, and the stored messages holding any of ``ids``."""
    if isinstance(rows, SqliteRows):
        newest = rows.query(_SQLITE_NEWEST)[0][0]
        held = rows.query(_SQLITE_HELD, (rows.json_list(ids),)) if ids else []
    else:
        found = conn.execute(_PG_LOOK, {"ids": list(ids)}).all()
        newest = found[0][0]
        held = [tuple(row[1:]) for row in found if row[1] is not None]
    return None if newest is None else int(newest), held


# -- the batch ------------------------------------------------------------------------------


def write(
    conn: sa.Connection, known: AuditTree, items: Sequence[Bulk]
) -> tuple[list[ItemOutcome], Frontier, Notices]:
    """Write ``items`` together (see the module docstring): each item's outcome, the tree
    after the batch's entries, and the notices to publish once committed.

    ``known`` is the tree as the writer knows it (or :data:`~hub.store.tx.UNKNOWN`); it
    is checked against the stored log first and read again when stale.
    """
    rows = rows_for(conn)
    ids = sorted({i.encoded.envelope.header.id for i in items if isinstance(i, NewMessage)})
    newest, held = _look(conn, rows, ids)
    tree = _current_tree(conn, newest, known)
    checks = _checks(conn, items)
    plan = _decide(items, _stored_messages(held), tree.size, checks)
    cursors = _write_messages(rows, plan.new)
    notices: Notices = []
    placing: dict[Any, list[tuple[NewMessage, int]]] = {}
    checking: dict[Any, list[tuple[int, NewMessage, int]]] = {}
    for (position, item), cursor in zip(plan.new, cursors, strict=True):
        header = item.encoded.envelope.header
        notices += [(recipient, Notice(cursor, header.id)) for recipient in header.recipients]
        plan.outcomes[position] = (True, Stored(cursor, item.accepted_at, True))
        if item.checks is not None:
            checking.setdefault(item.checks, []).append((position, item, cursor))
        elif item.place is not None:
            placing.setdefault(item.place, []).append((item, cursor))
    _resolve_repeats(plan, items, cursors)
    tx = Tx(conn, tree)  # placing appends no entries: the tree is not read
    for place, placed in placing.items():
        notices += place(tx, placed)
    logged: dict[int, tuple[str, ...]] = {}  # position -> its entry's pseudonyms
    for kind, checked in checking.items():
        more, pseudonyms = checks[kind].place(tx, [(item, cursor) for _, item, cursor in checked])
        notices += more
        logged.update(zip((position for position, _, _ in checked), pseudonyms, strict=True))
    tree = _write_entries(rows, tree, _entries(plan, items, tree.size, logged))
    outcomes = [o for o in plan.outcomes if o is not None]
    assert len(outcomes) == len(items)
    return outcomes, tree, notices


def _checks(conn: sa.Connection, items: Sequence[Bulk]) -> dict[Any, Checks]:
    """The batch's :class:`Checks`, one per kind, each given the messages it decides."""
    checked: dict[Any, list[NewMessage]] = {}
    for item in items:
        if isinstance(item, NewMessage) and item.checks is not None:
            checked.setdefault(item.checks, []).append(item)
    return {kind: kind(conn, given, len(items) == 1) for kind, given in checked.items()}


def _entries(
    plan: _Plan, items: Sequence[Bulk], size: int, logged: dict[int, tuple[str, ...]]
) -> list[AuditEntry]:
    """The batch's entries in order, those of checked new messages built now, with the
    pseudonyms their placement found."""
    entries = []
    for number, (position, entry) in enumerate(plan.entries):
        if entry is None:
            item = items[position]
            assert isinstance(item, NewMessage)
            entry = item.entry(size + number, None, logged[position])
        entries.append(entry)
    return entries


def _stored_messages(held: list[Row]) -> dict[str, StoredMessage]:
    """The stored messages holding any of the batch's message ids, by id."""
    return {
        row[1]: StoredMessage(
            int(row[0]), MessageId(row[1]), OrgId(row[2]), Fingerprint(row[3]), int(row[4])
        )
        for row in held
    }


def _resolve_repeats(plan: _Plan, items: Sequence[Bulk], cursors: list[int]) -> None:
    """A repeat answers the earlier acceptance: stored before, or new in this batch."""
    by_position = dict(zip((position for position, _ in plan.new), cursors, strict=True))
    for position, earlier in plan.repeats:
        if isinstance(earlier, StoredMessage):
            stored = Stored(earlier.cursor, earlier.accepted_at, False)
        else:
            first = items[earlier]
            assert isinstance(first, NewMessage)
            stored = Stored(by_position[earlier], first.accepted_at, False)
        plan.outcomes[position] = (True, stored)


def _current_tree(conn: sa.Connection, newest: int | None, known: AuditTree) -> Frontier:
    """``known`` if the newest stored entry (``newest``) is its last, else the tree as
    stored (another replica appended meanwhile, or the tree was not known)."""
    size = 0 if newest is None else newest + 1
    if isinstance(known, Frontier) and known.size == size:
        return known
    try:  # ``newest`` was read under the sequencer's lock: only the nodes are read
        return tree_of_size(conn, size)
    except KeyError:  # a node of the frontier is missing
        raise AccessLogUnavailable(cause=BROKEN_LOG) from None


def _write_messages(rows: Rows, new: list[tuple[int, NewMessage]]) -> list[int]:
    if not new:
        return []
    values = []
    for _, item in new:
        header, wire = item.encoded.envelope.header, item.encoded.wire
        values.append(
            (header.id, header.sender, header.kind, header.created, item.accepted_at,
             item.encoded.fingerprint, wire.decode("utf-8"), len(wire))
        )  # fmt: skip
    if isinstance(rows, PgRows):  # one statement: the others find their cursor by id
        return _insert_messages_pg(rows, new, values)
    cursors = rows.insert_numbered("messages", "cursor", MESSAGE_COLUMNS, values)
    deliveries: list[Row] = []
    pseudonyms: list[Row] = []
    for (_, item), cursor in zip(new, cursors, strict=True):
        header = item.encoded.envelope.header
        deliveries += [(recipient, cursor) for recipient in header.recipients]
        pseudonyms += [(cursor, pseudonym) for pseudonym in header.pseudonyms]
    rows.insert("deliveries", ("recipient", "cursor"), deliveries)
    rows.insert("message_pseudonyms", ("cursor", "pseudonym"), pseudonyms)
    return cursors


def _write_entries(rows: Rows, tree: Frontier, entries: list[AuditEntry]) -> Frontier:
    if not entries:
        return tree
    audit, nodes, objects, pseudonyms, openings = [], [], [], [], []
    for entry in entries:
        row = entry_row(entry)
        opening = opening_row(entry)
        if opening is not None:
            openings.append(tuple(opening[name] for name in _OPENING_COLUMNS))
        audit.append(tuple(row[name] for name in _AUDIT_COLUMNS))
        done = tree.append(row["leaf_hash"])
        nodes += [(level, idx, value) for (level, idx), value in done]
        tree = tree.appended(done)
        objects += [(entry.index, object_id) for object_id in entry.object_ids]
        pseudonyms += [(entry.index, pseudonym) for pseudonym in entry.pseudonyms]
    parts = [
        Part("audit_log", _AUDIT_COLUMNS, audit),
        Part("audit_nodes", ("level", "idx", "hash"), nodes),
        Part("audit_objects", ("index", "object_id"), objects),
        Part("audit_pseudonyms", ("index", "pseudonym"), pseudonyms),
        Part("audit_openings", _OPENING_COLUMNS, openings),
    ]
    if isinstance(rows, PgRows):
        _insert_entries_pg(rows, parts)
        return tree
    try:
        rows.write_together(parts[:1])
    except sqlite3.Error as exc:
        raise AccessLogUnavailable(cause=_UNWRITTEN.format(type(exc).__name__)) from None
    try:
        rows.write_together(parts[1:2])
    except sqlite3.IntegrityError:  # a node of a cut leaf is held
        raise AccessLogUnavailable(cause=BROKEN_LOG) from None
    rows.write_together(parts[2:])
    return tree


_UNWRITTEN = "an entry could not be written ({})"


def _insert_messages_pg(
    rows: PgRows, new: list[tuple[int, NewMessage]], values: list[Row]
) -> list[int]:
    """Messages, deliveries and pseudonyms in one statement (each found by message id)."""
    headers = [item.encoded.envelope.header for _, item in new]
    deliveries: list[Row] = [(h.id, r) for h in headers for r in h.recipients]
    pseudonyms: list[Row] = [(h.id, p) for h in headers for p in h.pseudonyms]
    return rows.insert_messages(MESSAGE_COLUMNS, values, deliveries, pseudonyms)


def _insert_entries_pg(rows: PgRows, parts: Sequence[Part]) -> None:
    """The entries and their parts in one statement (one round trip under the lock)."""
    try:
        rows.write_together(parts)
    except sa.exc.IntegrityError:  # a node (or entry) of a cut leaf is held
        raise AccessLogUnavailable(cause=BROKEN_LOG) from None
    except sa.exc.SQLAlchemyError as exc:
        raise AccessLogUnavailable(cause=_UNWRITTEN.format(type(exc).__name__)) from None
