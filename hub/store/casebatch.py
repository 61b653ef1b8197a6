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
   pseudonyms, and one update of the summary of each existing case joined. A signal
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
from sqlalchemy.dialects import postgresql, sqlite

from hub import schema as t
from protocol.cases import NEW
from protocol.types import CaseRef

_c, _cm, _cp = t.cases.c, t.case_members.c, t.case_pseudonyms.c
_DIALECTS = {"sqlite": sqlite, "postgresql": postgresql}


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

    def summary_params(self) -> dict[str, object]:
        """The parameters of ``_SUMMARY`` for this case."""
        summary = self.summary()
        return {
            "b_ref": self.ref,
            "b_signals": summary["signals"],
            "b_first": summary["first_signal"],
            "b_last": summary["last_signal"],
            "b_types": summary["org_types"],
        }

    def summary(self) -> dict[str, object]:
        types = sorted(self.types)
        return {
            "signals": self.signals,
            "first_signal": self.first,
            "last_signal": self.last,
            "org_types": "".join(f",{name}" for name in types) + ("," if types else ""),
        }


@dataclass(slots=True)
class _Rows:
    """Rows gathered for the next flush."""

    members: list[dict[str, object]] = field(default_factory=list)
    pseudonyms: list[dict[str, object]] = field(default_factory=list)


_has_members = sa.exists().where(_cm.case == _cp.case)
_LOOKUP = (
    sa.select(
        _cp.pseudonym, _cp.case, _c.created_at, _c.signals, _c.first_signal, _c.last_signal,
        _c.org_types, _has_members.label("has_members"),
    )
    .join(t.cases, _c.ref == _cp.case)
    .where(_cp.pseudonym.in_(sa.bindparam("wanted", expanding=True)))
)  # fmt: skip
_SUMMARY = (
    sa.update(t.cases)
    .where(_c.ref == sa.bindparam("b_ref"))
    .values(
        signals=sa.bindparam("b_signals"),
        first_signal=sa.bindparam("b_first"),
        last_signal=sa.bindparam("b_last"),
        org_types=sa.bindparam("b_types"),
    )
)


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
        self.rows.members.append({"cursor": signal.cursor, "case": case.ref})
        for pseudonym in sorted(set(signal.pseudonyms)):
            if case.ref not in self.index.setdefault(pseudonym, set()):
                self.index[pseudonym].add(case.ref)
                self.rows.pseudonyms.append({"pseudonym": pseudonym, "case": case.ref})

    def flush(self) -> None:
        conn = self._conn
        new = [case for case in self.cases.values() if not case.stored]
        if new:
            conn.execute(
                sa.insert(t.cases),
                [
                    {"ref": c.ref, "created_at": c.created_at, "state": NEW, "open_referrals": 0}
                    | c.summary()
                    for c in new
                ],
            )
        changed = [case for case in self.cases.values() if case.stored and case.changed]
        if changed:
            conn.execute(_SUMMARY, [case.summary_params() for case in changed])
        for case in self.cases.values():
            case.stored, case.changed = True, False
        if self.rows.members:
            conn.execute(sa.insert(t.case_members), self.rows.members)
        if self.rows.pseudonyms:
            dialect = _DIALECTS[conn.dialect.name]
            statement = dialect.insert(t.case_pseudonyms).on_conflict_do_nothing()
            conn.execute(statement, self.rows.pseudonyms)
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
