"""Retention in the database: policies, what is due, and deleting it (``hub.retention``).

Writes go through :class:`RetentionTx` (``tx.retention`` inside a work item of the single
writer); reads for a dry run and for an erasure's plan are plain functions of a
connection behind :class:`hub.store.Store`. Every selection reads the database as it is
when the work item runs (under the writer's lock, on PostgreSQL the sequencer's advisory
lock), so two replicas that run the job at once never delete or count a row twice, and a
run cut off half-way simply finds the rest on the next run.

An envelope is never deleted with its row: :meth:`RetentionTx.empty_messages` empties it
and keeps the row as a tombstone (id, sender, times, ``deleted_at``, ``deleted_reason``;
no content), so that the sender is told through ``GET /v1/sent``. The row's deliveries,
case membership and pseudonyms stay until its case goes (:meth:`RetentionTx.delete_cases`).

Due means *at or past* the end of the period: a row whose time plus the period is at most
``now`` (the callers pass ``cutoff = now - period`` and rows at ``<= cutoff`` go).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from hub import schema as t
from protocol.encoding import canonical_json
from protocol.retention import RetentionPolicy
from protocol.types import CaseRef, MessageId

_rp = t.retention_policies.c
_m, _d, _mp = t.messages.c, t.deliveries.c, t.message_pseudonyms.c
_c, _cm, _cp = t.cases.c, t.case_members.c, t.case_pseudonyms.c
_r, _ru = t.referrals.c, t.referral_updates.c
_NEWEST_POLICY = sa.select(_rp.wire).order_by(_rp.number.desc()).limit(1)
_MAX_NUMBER = sa.select(sa.func.max(_rp.number))
_LIVE = _m.deleted_at.is_(None)
CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Due:
    """What one phase would delete now: how many rows, and the oldest one's time."""

    count: int
    oldest: int | None


@dataclass(frozen=True, slots=True)
class CasesDeleted:
    """What deleting some cases removed."""

    cases: tuple[CaseRef, ...]  # the live cases named (their absorbed cases went with them)
    rows: int  # case rows, redirects included
    pseudonyms: int  # case and message pseudonym rows
    messages: tuple[MessageId, ...]  # envelopes emptied because their case went


@dataclass(frozen=True, slots=True)
class HeldMessage:
    """A live envelope of a case: its pseudonyms, and whether every recipient acknowledged it."""

    cursor: int
    pseudonyms: frozenset[str]
    acknowledged: bool


# -- what is due ---------------------------------------------------------------------------


def _acknowledged_due(cutoff: int) -> Any:
    """Live envelopes every recipient acknowledged at or before ``cutoff``."""
    delivered = sa.exists().where(_d.cursor == _m.cursor)
    waiting = sa.exists().where(
        _d.cursor == _m.cursor, sa.or_(_d.acked_at.is_(None), _d.acked_at > cutoff)
    )
    # An acknowledgement follows acceptance, so accepted_at <= cutoff narrows by the index.
    return sa.and_(_LIVE, _m.accepted_at <= cutoff, delivered, ~waiting)


def _expired_due(cutoff: int) -> Any:
    """Live envelopes accepted at or before ``cutoff``, acknowledged or not."""
    return sa.and_(_LIVE, _m.accepted_at <= cutoff)


def _activity(dialect: str) -> Any:
    """A case's last activity: its creation, its members' acceptance, its referral steps."""
    members = (
        sa.select(sa.func.max(_m.accepted_at))
        .select_from(t.case_members.join(t.messages, _m.cursor == _cm.cursor))
        .where(_cm.case == _c.ref)
        .scalar_subquery()
    )
    steps = sa.select(sa.func.max(_r.step_at)).where(_r.case == _c.ref).scalar_subquery()
    parts = (_c.created_at, sa.func.coalesce(members, 0), sa.func.coalesce(steps, 0))
    return sa.func.greatest(*parts) if dialect == "postgresql" else sa.func.max(*parts)


def _cases_due(dialect: str, closed_cutoff: int, idle_cutoff: int) -> tuple[Any, Any]:
    """(condition, activity) of the live cases whose period ended."""
    activity = _activity(dialect)
    closed = sa.and_(_c.state == CLOSED, activity <= closed_cutoff)
    idle = sa.and_(_c.state != CLOSED, activity <= idle_cutoff)
    return sa.and_(_c.merged_into.is_(None), sa.or_(closed, idle)), activity


def count_messages(conn: sa.Connection, acknowledged: int, expired: int | None = None) -> Due:
    """How many envelopes the acknowledged phase would empty at its cutoff; with
    ``expired``, how many the expired phase would empty after it."""
    where = _acknowledged_due(acknowledged)
    if expired is not None:
        where = sa.and_(_expired_due(expired), ~where)
    row = conn.execute(sa.select(sa.func.count(), sa.func.min(_m.accepted_at)).where(where)).one()
    return Due(int(row[0]), None if row[1] is None else int(row[1]))


def count_cases(conn: sa.Connection, closed_cutoff: int, idle_cutoff: int) -> Due:
    where, activity = _cases_due(conn.dialect.name, closed_cutoff, idle_cutoff)
    due = sa.select(activity.label("activity")).where(where).subquery()
    row = conn.execute(sa.select(sa.func.count(), sa.func.min(due.c.activity))).one()
    return Due(int(row[0]), None if row[1] is None else int(row[1]))


def count_openings(conn: sa.Connection, cutoff: int) -> Due:
    """How many access-log openings (personal fields) of entries at or before ``cutoff``
    are still held (:mod:`hub.store.erasing` erases them)."""
    a, op = t.audit_log.c, t.audit_openings.c
    row = conn.execute(
        sa.select(sa.func.count(), sa.func.min(a.time))
        .select_from(t.audit_openings.join(t.audit_log, a.index == op.index))
        .where(a.time <= cutoff)
    ).one()
    return Due(int(row[0]), None if row[1] is None else int(row[1]))


def newest_policy(conn: sa.Connection) -> RetentionPolicy | None:
    """The held policy with the highest number (verified when it was stored), or None."""
    wire = conn.execute(_NEWEST_POLICY).scalar_one_or_none()
    return None if wire is None else RetentionPolicy.from_wire(json.loads(wire))


def _all_acknowledged() -> Any:
    delivered = sa.exists().where(_d.cursor == _m.cursor)
    waiting = sa.exists().where(_d.cursor == _m.cursor, _d.acked_at.is_(None))
    return sa.and_(delivered, ~waiting)


def _case_cursors(refs: Sequence[str]) -> Any:
    """Every message of the cases ``refs``: members, referrals and their status updates."""
    members = sa.select(_cm.cursor).where(_cm.case.in_(refs))
    referrals = sa.select(_r.cursor).where(_r.case.in_(refs))
    updates = sa.select(_ru.cursor).where(_ru.referral.in_(referrals))
    return sa.union(members, referrals, updates)


# -- writes --------------------------------------------------------------------------------


class RetentionTx:
    """Policy writes and deletions on the writer's connection (see the module docstring)."""

    __slots__ = ("_conn",)

    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn

    def put_policy(self, policy: RetentionPolicy) -> bool:
        """Hold ``policy`` if its number is above every held one's; False otherwise."""
        held = self._conn.execute(_MAX_NUMBER).scalar_one_or_none()
        if held is not None and held >= policy.number:
            return False
        wire = canonical_json(policy.to_wire()).decode("utf-8")
        self._conn.execute(
            sa.insert(t.retention_policies).values(
                number=policy.number, issued=policy.issued, wire=wire
            )
        )
        return True

    def messages_due(self, reason: str, cutoff: int, limit: int) -> list[int]:
        """Cursors of up to ``limit`` envelopes the phase ``reason`` empties, oldest first."""
        where = _acknowledged_due(cutoff) if reason == "acknowledged" else _expired_due(cutoff)
        rows = self._conn.execute(
            sa.select(_m.cursor).where(where).order_by(_m.accepted_at, _m.cursor).limit(limit)
        ).all()
        return [int(row[0]) for row in rows]

    def empty_messages(self, cursors: Sequence[int], *, reason: str, now: int) -> list[MessageId]:
        """Empty the live envelopes among ``cursors``; their ids (the tombstones made)."""
        if not cursors:
            return []
        # Looked up by key, the tombstones left out here: "deleted_at IS NULL" in the
        # statement would let SQLite choose the (deleted_at, accepted_at) index and walk
        # every live envelope instead.
        found = self._conn.execute(
            sa.select(_m.cursor, _m.id, _m.deleted_at).where(_m.cursor.in_(list(cursors)))
        ).all()
        rows = [row for row in found if row.deleted_at is None]
        if rows:
            self._conn.execute(
                sa.update(t.messages)
                .where(_m.cursor.in_([row.cursor for row in rows]))
                .values(envelope="", deleted_at=now, deleted_reason=reason)
            )
        return sorted(MessageId(row.id) for row in rows)

    def cases_holding(self, pseudonyms: Collection[str]) -> dict[CaseRef, frozenset[str]]:
        """The live cases holding any of ``pseudonyms``, each with every pseudonym it holds."""
        if not pseudonyms:
            return {}
        holding = sa.select(_cp.case).where(_cp.pseudonym.in_(sorted(pseudonyms)))
        rows = self._conn.execute(
            sa.select(_cp.case, _cp.pseudonym).where(_cp.case.in_(holding))
        ).all()
        found: dict[CaseRef, set[str]] = {}
        for row in rows:
            found.setdefault(CaseRef(row.case), set()).add(str(row.pseudonym))
        return {ref: frozenset(held) for ref, held in sorted(found.items())}

    def live_messages_of(self, refs: Sequence[CaseRef]) -> list[HeldMessage]:
        """The live envelopes of the cases ``refs``, with their pseudonyms and acknowledgement."""
        if not refs:
            return []
        found = self._conn.execute(
            sa.select(_m.cursor, _m.deleted_at, _all_acknowledged().label("acked")).where(
                _m.cursor.in_(_case_cursors(list(refs)))
            )
        ).all()
        rows = [row for row in found if row.deleted_at is None]  # as in empty_messages
        cursors = [int(row.cursor) for row in rows]
        held: dict[int, set[str]] = {cursor: set() for cursor in cursors}
        for start in range(0, len(cursors), _CHUNK):
            part = cursors[start : start + _CHUNK]
            for row in self._conn.execute(
                sa.select(_mp.cursor, _mp.pseudonym).where(_mp.cursor.in_(part))
            ):
                held[int(row.cursor)].add(str(row.pseudonym))
        return [
            HeldMessage(int(row.cursor), frozenset(held[int(row.cursor)]), bool(row.acked))
            for row in rows
        ]

    def entry_times(self, indexes: Sequence[int]) -> dict[int, int]:
        """The time of each of the access-log entries ``indexes``."""
        a = t.audit_log.c
        found: dict[int, int] = {}
        for start in range(0, len(indexes), _CHUNK):
            part = list(indexes[start : start + _CHUNK])
            for row in self._conn.execute(sa.select(a.index, a.time).where(a.index.in_(part))):
                found[int(row[0])] = int(row[1])
        return found

    def cases_due(self, closed_cutoff: int, idle_cutoff: int, limit: int) -> list[CaseRef]:
        """Up to ``limit`` live cases whose period ended, by reference."""
        where, _ = _cases_due(self._conn.dialect.name, closed_cutoff, idle_cutoff)
        rows = self._conn.execute(
            sa.select(_c.ref).where(where).order_by(_c.ref).limit(limit)
        ).all()
        return [CaseRef(row[0]) for row in rows]

    def closed_cases(self, refs: Sequence[CaseRef]) -> list[CaseRef]:
        """Those of ``refs`` that are live and closed."""
        rows = self._conn.execute(
            sa.select(_c.ref).where(
                _c.ref.in_(list(refs)), _c.merged_into.is_(None), _c.state == CLOSED
            )
        ).all()
        return sorted(CaseRef(row[0]) for row in rows)

    def delete_cases(self, refs: Sequence[CaseRef], *, reason: str, now: int) -> CasesDeleted:
        """Delete the live cases ``refs``, the cases merged into them, their members,
        referrals, pseudonyms, separations, changes and events; empty their envelopes."""
        if not refs:
            return CasesDeleted((), 0, 0, ())
        conn = self._conn
        absorbed = conn.execute(sa.select(_c.ref).where(_c.merged_into.in_(list(refs)))).all()
        every = sorted({*refs, *(row[0] for row in absorbed)})
        cursors = [int(row[0]) for row in conn.execute(_case_cursors(every)).all()]
        emptied = self._empty_in_chunks(cursors, reason=reason, now=now)
        ids = [row[0] for row in conn.execute(sa.select(_m.id).where(_m.cursor.in_(cursors)))]
        pseudonyms = self._delete_in_chunks(t.message_pseudonyms, _mp.cursor, cursors)
        pseudonyms += _count(conn.execute(sa.delete(t.case_pseudonyms).where(_cp.case.in_(every))))
        referrals = [row[0] for row in conn.execute(sa.select(_r.cursor).where(_r.case.in_(every)))]
        self._delete_in_chunks(t.referral_updates, _ru.referral, referrals)
        self._delete_in_chunks(t.escalations, t.escalations.c.referral, referrals)
        conn.execute(sa.delete(t.referrals).where(_r.case.in_(every)))
        conn.execute(sa.delete(t.case_members).where(_cm.case.in_(every)))
        sep, changes, events = t.case_separations.c, t.case_changes.c, t.events.c
        apart = sa.or_(sep.a.in_(every), sep.b.in_(every))
        conn.execute(sa.delete(t.case_separations).where(apart))
        changed = sa.or_(changes.case.in_(every), changes.other.in_(every))
        conn.execute(sa.delete(t.case_changes).where(changed))
        conn.execute(sa.delete(t.events).where(events.case.in_(every)))
        self._delete_in_chunks(t.events, events.message, ids)
        rows = _count(conn.execute(sa.delete(t.cases).where(_c.ref.in_(every))))
        return CasesDeleted(tuple(sorted(refs)), rows, pseudonyms, tuple(emptied))

    def _empty_in_chunks(self, cursors: list[int], *, reason: str, now: int) -> list[MessageId]:
        emptied: list[MessageId] = []
        for start in range(0, len(cursors), _CHUNK):
            part = cursors[start : start + _CHUNK]
            emptied.extend(self.empty_messages(part, reason=reason, now=now))
        return sorted(emptied)

    def _delete_in_chunks(self, table: sa.Table, column: Any, values: list[Any]) -> int:
        deleted = 0
        for start in range(0, len(values), _CHUNK):
            part = values[start : start + _CHUNK]
            deleted += _count(self._conn.execute(sa.delete(table).where(column.in_(part))))
        return deleted


_CHUNK = 500  # values in one IN list (SQLite's limit on bound parameters is far above)


def _count(result: Any) -> int:
    return max(int(result.rowcount), 0)
