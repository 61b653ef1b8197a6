"""Clustering a batch's signals together: one lookup, then a statement per table.

:meth:`hub.store.casewrites.CaseTx.attach` places one message with some five statements
(the cases holding its pseudonyms, whether the case has members, its member and
pseudonym rows, the summary read again from all its members). For the signals of a
writer batch, :func:`attach_signals` does the same work with:

1. one lookup of every live case holding any of the batch's pseudonyms, with its kept
   summary (signals, first and last signal, organisation types) and whether it has
   members;
2. the placement decided in memory, signal after signal, each seeing the ones before
   it (a signal that starts a case makes it findable for the next);
3. one insert each for new cases (their summary included), members and case
   pseudonyms, and one update of the summaries of the existing cases joined
   (:mod:`hub.store.rows`: raw sqlite3 ``executemany``; on PostgreSQL all four in one
   statement over ``unnest``, so one round trip). A signal
   only adds to a summary (one more signal, its time, its sender's type; no referral),
   so the summary is brought up to date from the kept one, not read again.

A signal whose pseudonyms are held by two or more cases (a merge, or cases a
coordinator keeps apart) is rare: the rows gathered so far are written, and that
signal goes through :meth:`CaseTx.attach` as before; the lookup is then made again for
the signals after it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from hub import schema as t
from hub.store.rows import Part, Row, rows_for
from protocol.cases import NEW
from protocol.types import CaseRef

_c, _cm, _cp = t.cases.c, t.case_members.c, t.case_pseudonyms.c


@dataclass(frozen=True, slots=True)
class Signal:
    """A new signal to place: its cursor, pseudonyms, acceptance time, sender's type."""

    cursor: int
    pseudonyms: Sequence[str]
    accepted_at: int
    org_type: str | None
    fresh: CaseRef  # the reference a new case gets


@dataclass(slots=True)
class _Case:
    """A case's kept summary, as this batch changes it."""

    ref: CaseRef
    created_at: int
    signals: int
    first: int | None
    last: int | None
    types: set[str]
    has_members: bool
    stored: bool  # its row exists (else it is inserted at the next flush)
    changed: bool = False

    def add(self, signal: Signal) -> None:
        at = signal.accepted_at
        self.signals += 1
        self.first = at if self.first is None else min(self.first, at)
        self.last = at if self.last is None else max(self.last, at)
        self.types.add(signal.org_type or "other")
        self.has_members = True
        self.changed = True

    def summary(self) -> tuple[int, int | None, int | None, str]:
        """The values of ``_SUMMARY_COLUMNS``."""
        types = sorted(self.types)
        org_types = "".join(f",{name}" for name in types) + ("," if types else "")
        return self.signals, self.first, self.last, org_types


@dataclass(slots=True)
class _Rows:
    """Rows gathered for the next flush."""

    members: list[Row] = field(default_factory=list)  # (cursor, case)
    pseudonyms: list[Row] = field(default_factory=list)  # (pseudonym, case)


_SUMMARY_COLUMNS = ("signals", "first_signal", "last_signal", "org_types")


_has_members = sa.exists().where(_cm.case == _cp.case)
_LOOKUP = (
    sa.select(
        _cp.pseudonym, _cp.case, _c.created_at, _c.signals, _c.first_signal, _c.last_signal,
        _c.org_types, _has_members.label("has_members"),
    )
    .join(t.cases, _c.ref == _cp.case)
    .where(_cp.pseudonym.in_(sa.bindparam("wanted", expanding=True)))
)  # fmt: skip


class _Batch:
    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn
        self.index: dict[str, set[CaseRef]] = {}
        self.cases: dict[CaseRef, _Case] = {}
        self.rows = _Rows()

    def lookup(self, signals: Sequence[Signal]) -> None:
        wanted = sorted({p for signal in signals for p in signal.pseudonyms})
        self.index, self.cases = {}, {}
        if not wanted:
            return
        for row in self._conn.execute(_LOOKUP, {"wanted": wanted}):
            ref = CaseRef(row.case)
            self.index.setdefault(row.pseudonym, set()).add(ref)
            if ref not in self.cases:
                types = {name for name in row.org_types.split(",") if name}
                self.cases[ref] = _Case(
                    ref, int(row.created_at), int(row.signals), row.first_signal,
                    row.last_signal, types, bool(row.has_members), stored=True,
                )  # fmt: skip

    def holding(self, signal: Signal) -> set[CaseRef]:
        refs: set[CaseRef] = set()
        for pseudonym in signal.pseudonyms:
            refs |= self.index.get(pseudonym, set())
        return refs

    def join(self, case: _Case, signal: Signal) -> None:
        case.add(signal)
        self.rows.members.append((signal.cursor, case.ref))
        for pseudonym in sorted(set(signal.pseudonyms)):
            if case.ref not in self.index.setdefault(pseudonym, set()):
                self.index[pseudonym].add(case.ref)
                self.rows.pseudonyms.append((pseudonym, case.ref))

    def flush(self) -> None:
        """Write the rows gathered so far (on PostgreSQL in one statement)."""
        new = [case for case in self.cases.values() if not case.stored]
        changed = [case for case in self.cases.values() if case.stored and case.changed]
        rows_for(self._conn).write_together(
            [
                Part("cases", ("ref", "created_at", "state", "open_referrals", *_SUMMARY_COLUMNS),
                     [(case.ref, case.created_at, NEW, 0, *case.summary()) for case in new]),
                Part("cases", ("ref", *_SUMMARY_COLUMNS),
                     [(case.ref, *case.summary()) for case in changed], "update"),
                Part("case_members", ("cursor", "case"), self.rows.members),
                Part("case_pseudonyms", ("pseudonym", "case"), self.rows.pseudonyms, "ignore"),
            ]
        )  # fmt: skip
        for case in self.cases.values():
            case.stored, case.changed = True, False
        self.rows = _Rows()


@dataclass(frozen=True, slots=True)
class Placed:
    """Where a signal went (as :class:`hub.store.casewrites.Attached`)."""

    case: CaseRef
    joined: bool
    merged: tuple[CaseRef, ...] = ()
    kept_apart: tuple[CaseRef, ...] = ()


def attach_signals(
    conn: sa.Connection, signals: Sequence[Signal], attach_one: Callable[[Signal], Placed]
) -> list[Placed]:
    """Place ``signals`` in order (see the module docstring); ``attach_one`` places a
    signal that touches two or more cases, the way a single message is placed."""
    batch = _Batch(conn)
    batch.lookup(signals)
    placed: list[Placed] = []
    for number, signal in enumerate(signals):
        refs = batch.holding(signal)
        if len(refs) > 1:
            batch.flush()
            placed.append(attach_one(signal))
            batch.lookup(signals[number + 1 :])
            continue
        if refs:
            case = batch.cases[refs.pop()]
            joined = case.has_members
        else:
            case = _Case(signal.fresh, signal.accepted_at, 0, None, None, set(), False, False)
            batch.cases[case.ref] = case
            joined = False
        batch.join(case, signal)
        placed.append(Placed(case.ref, joined))
    batch.flush()
    return placed
