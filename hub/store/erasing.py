"""Erasing the openings of version 2 access-log entries, in the database.

Writes go through :class:`ErasureTx` (reached as ``tx.erasing`` inside a work item of the
single writer). Erasing an entry deletes its ``audit_openings`` row (salt and personal
fields) and its ``audit_pseudonyms`` rows, and records the erasure in
``audit_erasures``; the entry's ``audit_log`` row, its leaf and every node and head are
left as they were, so every proof stays valid. Version 1 entries have no opening and
are never touched: their personal fields are inside their leaves.

What a delete leaves in the database file is wiped after the commit by
:func:`scrub`: SQLite overwrites deleted content (``secure_delete``, set on every hub
connection) and a ``wal_checkpoint(TRUNCATE)`` empties the WAL of the old pages;
PostgreSQL vacuums the two tables, outside a transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import sqlalchemy as sa

from hub import schema as t

_a, _op, _p, _er = t.audit_log, t.audit_openings, t.audit_pseudonyms, t.audit_erasures
SCRUBBED_TABLES = ("audit_openings", "audit_pseudonyms")
MAX_BATCH = 10_000


class ErasureTx:
    """Opening erasures on the writer's connection."""

    __slots__ = ("_conn",)

    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn

    def erase(self, seqs: Sequence[int], *, reason: str, now: int, entry: int | None) -> int:
        """Erase the openings of ``seqs`` that are still held; how many were erased."""
        wanted = sorted(set(seqs))
        held = sorted(
            int(i)
            for i in self._conn.scalars(sa.select(_op.c.index).where(_op.c.index.in_(wanted)))
        )
        if not held:
            return 0
        self._conn.execute(sa.delete(_p).where(_p.c.index.in_(held)))
        self._conn.execute(sa.delete(_op).where(_op.c.index.in_(held)))
        self._conn.execute(
            sa.insert(_er),
            [{"index": i, "time": now, "reason": reason, "entry": entry} for i in held],
        )
        return len(held)

    def held_before(self, cutoff: int, limit: int) -> list[int]:
        """Entries older than ``cutoff`` whose opening is still held, oldest first."""
        statement = (
            sa.select(_op.c.index)
            .join(_a, _a.c.index == _op.c.index)
            .where(_a.c.time < cutoff)
            .order_by(_op.c.index)
            .limit(limit)
        )
        return [int(i) for i in self._conn.scalars(statement)]

    def held_about(self, pseudonyms: Iterable[str], *, exclusive: bool = False) -> list[int]:
        """Entries whose held opening names any of ``pseudonyms``, ascending; with
        ``exclusive``, only those naming no other pseudonym (erasing an opening erases
        every personal field of the entry, another person's pseudonyms included)."""
        wanted = sorted(set(pseudonyms))
        if not wanted:
            return []
        about = sa.select(_p.c.index).join(_op, _op.c.index == _p.c.index)
        if exclusive:
            mine = sa.func.sum(sa.case((_p.c.pseudonym.in_(wanted), 1), else_=0))
            about = about.group_by(_p.c.index).having(mine == sa.func.count())
        else:
            about = about.where(_p.c.pseudonym.in_(wanted)).distinct()
        return [int(i) for i in self._conn.scalars(about.order_by(_p.c.index))]
