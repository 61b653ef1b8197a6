"""Writes for case clusters and referrals, inside a work item of the single writer.

:class:`CaseTx` is reached as ``tx.cases``. Clustering (``docs/protocol.md``, "Cases"):
a signal or referral joins every live case that holds one of its pseudonyms; those cases
are merged into one (the one sharing most pseudonyms with it, then the oldest, keeps its
reference; the others redirect to it), except cases the coordinator keeps apart (a
split): the message joins the chosen case only and the cases kept apart are reported,
so the coordinator can look. Each merge and split is recorded with the messages it moved,
so it can be reversed.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from hub import schema as t
from hub.store import casebatch
from hub.store.rows import rows_for
from protocol.cases import Held, open_count, place, state_of
from protocol.encoding import canonical_json
from protocol.referral import STEPS
from protocol.types import CaseRef, MessageId, OrgId

_c, _cm, _cp, _sep = t.cases.c, t.case_members.c, t.case_pseudonyms.c, t.case_separations.c
_m, _r = t.messages.c, t.referrals.c
_DIALECTS = {"sqlite": sqlite, "postgresql": postgresql}
_EVENT_COLUMNS = ("org", "kind", "at", "case", "message", "step", "detail")
_SUMMARY = ("signals", "first_signal", "last_signal", "org_types", "state", "open_referrals")


@dataclass(frozen=True, slots=True)
class Attached:
    """Where a message was placed: its case, and what that did to other cases."""

    case: CaseRef
    joined: bool  # the case held other messages before
    merged: tuple[CaseRef, ...]  # cases merged into it because the message linked them
    kept_apart: tuple[CaseRef, ...]  # cases it also matched, kept apart by a coordinator


@dataclass(frozen=True, slots=True)
class Referral:
    cursor: int
    id: MessageId
    case: CaseRef
    referrer: OrgId
    recipient: OrgId
    step: str
    step_at: int


class CaseTx:
    """Case and referral writes on the writer's connection (see the module docstring)."""

    __slots__ = ("_conn", "_coordinators")

    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn
        self._coordinators: list[OrgId] | None = None

    def _insert_ignore(self, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            dialect = _DIALECTS[self._conn.dialect.name]
            self._conn.execute(dialect.insert(table).on_conflict_do_nothing(), list(rows))

    # -- cases ---------------------------------------------------------------------------

    def live(self, ref: str) -> CaseRef | None:
        """The live case ``ref`` names (itself, or the case it was merged into), if any."""
        row = self._conn.execute(
            sa.select(_c.ref, _c.merged_into).where(_c.ref == ref)
        ).one_or_none()
        if row is None:
            return None
        return CaseRef(row.merged_into or row.ref)

    def exists(self, ref: str) -> bool:
        return self._conn.execute(sa.select(_c.ref).where(_c.ref == ref)).first() is not None

    def _holding(self, pseudonyms: Iterable[str]) -> dict[CaseRef, Held]:
        """Live cases holding any of ``pseudonyms``, with how many each holds."""
        wanted = sorted(set(pseudonyms))
        if not wanted:
            return {}
        rows = self._conn.execute(
            sa.select(_cp.case, sa.func.count(), _c.created_at)
            .join(t.cases, _c.ref == _cp.case)
            .where(_cp.pseudonym.in_(wanted))
            .group_by(_cp.case, _c.created_at)
        ).all()
        return {CaseRef(row[0]): Held(int(row[1]), int(row[2])) for row in rows}

    def _kept_apart(self, cases: Collection[str]) -> set[frozenset[str]]:
        """The pairs among ``cases`` that a coordinator keeps apart."""
        if len(cases) < 2:
            return set()
        rows = self._conn.execute(
            sa.select(_sep.a, _sep.b).where(_sep.a.in_(sorted(cases)), _sep.b.in_(sorted(cases)))
        ).all()
        return {frozenset((row.a, row.b)) for row in rows}

    def attach(
        self,
        cursor: int,
        pseudonyms: Sequence[str],
        *,
        now: int,
        fresh: CaseRef,
        target: CaseRef | None = None,
        summary: bool = True,
    ) -> Attached:
        """Place message ``cursor`` in a case (``target``, else by its pseudonyms), as
        :func:`protocol.cases.place` decides. ``fresh`` is the reference a new case
        gets; ``target`` must be live. ``summary=False`` leaves the case's summary to
        the caller's :meth:`refresh` (a batch refreshes each case it changed once)."""
        holding = self._holding(pseudonyms)
        involved = set(holding) | ({target} if target is not None else set())
        placement = place(holding, self._kept_apart(involved), target=target)
        if placement.case is None:
            self._conn.execute(sa.insert(t.cases).values(ref=fresh, created_at=now))
            self._add_member(fresh, cursor, pseudonyms)
            if summary:
                self.refresh(fresh, referrals=False)  # a case made just now has none yet
            return Attached(fresh, False, (), ())
        case = placement.case
        for other in placement.merge:
            self.merge(case, other, now=now, org=None, automatic=True)
        joined = self._has_members(case)
        self._add_member(case, cursor, pseudonyms)
        if summary:
            self.refresh(case)
        return Attached(case, joined, placement.merge, placement.apart)

    def attach_signals(self, signals: Sequence[casebatch.Signal]) -> list[Attached]:
        """Place new signals, in order, as :meth:`attach` would one after another, with a
        statement per table for them all (:mod:`hub.store.casebatch`)."""

        def one(signal: casebatch.Signal) -> casebatch.Placed:
            attached = self.attach(
                signal.cursor, signal.pseudonyms, now=signal.accepted_at, fresh=signal.fresh
            )
            return casebatch.Placed(
                attached.case, attached.joined, attached.merged, attached.kept_apart
            )

        return [
            Attached(p.case, p.joined, p.merged, p.kept_apart)
            for p in casebatch.attach_signals(self._conn, signals, one)
        ]

    def _has_members(self, case: CaseRef) -> bool:
        return self._conn.execute(sa.select(_cm.cursor).where(_cm.case == case)).first() is not None

    def _add_member(self, case: CaseRef, cursor: int, pseudonyms: Sequence[str]) -> None:
        self._conn.execute(sa.insert(t.case_members).values(cursor=cursor, case=case))
        self._insert_ignore(
            t.case_pseudonyms, [{"pseudonym": p, "case": case} for p in sorted(set(pseudonyms))]
        )

    def members(self, case: CaseRef) -> dict[MessageId, int]:
        """The case's signals and referrals: message id -> cursor."""
        rows = self._conn.execute(
            sa.select(_m.id, _m.cursor).join(t.messages, _m.cursor == _cm.cursor)
            .where(_cm.case == case)
        ).all()  # fmt: skip
        return {MessageId(row.id): int(row.cursor) for row in rows}

    def merge(
        self, survivor: CaseRef, absorbed: CaseRef, *, now: int, org: str | None, automatic: bool
    ) -> tuple[MessageId, ...]:
        """Move ``absorbed`` into ``survivor``; ``absorbed`` redirects there from now on.

        Separations of ``absorbed`` carry over to ``survivor``; one between the two ends.
        """
        moved = tuple(sorted(self.members(absorbed)))
        held = self._conn.execute(sa.select(_cp.pseudonym).where(_cp.case == absorbed)).all()
        self._conn.execute(sa.delete(t.case_pseudonyms).where(_cp.case == absorbed))
        self._insert_ignore(
            t.case_pseudonyms, [{"pseudonym": row[0], "case": survivor} for row in held]
        )
        self._conn.execute(
            sa.update(t.case_members).where(_cm.case == absorbed).values(case=survivor)
        )
        self._conn.execute(
            sa.update(t.cases)
            .where(sa.or_(_c.ref == absorbed, _c.merged_into == absorbed))
            .values(merged_into=survivor, merged_at=now)
        )
        self._move_separations(absorbed, survivor, now=now)
        self._conn.execute(sa.update(t.referrals).where(_r.case == absorbed).values(case=survivor))
        self._record(survivor, absorbed, "merge", moved, now=now, org=org, automatic=automatic)
        self.refresh(survivor)
        return moved

    def _move_separations(self, old: CaseRef, new: CaseRef, *, now: int) -> None:
        rows = self._conn.execute(
            sa.select(_sep.a, _sep.b).where(sa.or_(_sep.a == old, _sep.b == old))
        ).all()
        involved = sa.or_(_sep.a == old, _sep.b == old)
        self._conn.execute(sa.delete(t.case_separations).where(involved))
        partners = {row.b if row.a == old else row.a for row in rows} - {new}
        self._insert_ignore(
            t.case_separations,
            [dict(zip(("a", "b"), sorted((new, p)), strict=True), at=now) for p in partners],
        )

    def split(
        self,
        case: CaseRef,
        moved: Sequence[MessageId],
        *,
        into: CaseRef,
        revive: bool,
        now: int,
        org: str | None,
    ) -> None:
        """Move ``moved`` (members of ``case``, not all of them) to ``into`` and keep the two
        apart. ``into`` is a new reference, or (``revive``) one merged into ``case`` before."""
        members = self.members(case)
        cursors = [members[m] for m in moved]
        if revive:
            self._conn.execute(
                sa.update(t.cases).where(_c.ref == into).values(merged_into=None, merged_at=None)
            )
        else:
            self._conn.execute(sa.insert(t.cases).values(ref=into, created_at=now))
        self._conn.execute(
            sa.update(t.case_members).where(_cm.cursor.in_(cursors)).values(case=into)
        )
        self._conn.execute(sa.update(t.referrals).where(_r.cursor.in_(cursors)).values(case=into))
        for ref in (case, into):
            self._recompute_pseudonyms(ref)
        low, high = sorted((case, into))
        self._insert_ignore(t.case_separations, [{"a": low, "b": high, "at": now}])
        self._record(case, into, "split", tuple(sorted(moved)), now=now, org=org, automatic=False)
        self.refresh(case)
        self.refresh(into)

    def refresh(self, case: CaseRef, *, referrals: bool = True) -> None:
        """Bring the case's summary columns (the cases view) up to date with its members.

        ``referrals=False`` skips reading the case's referrals, for a case known to
        have none (one statement fewer per new case).
        """
        self.refresh_all([case], referrals=referrals)

    def refresh_all(self, cases: Collection[CaseRef], *, referrals: bool = True) -> None:
        """:meth:`refresh` for each of ``cases``, with three statements whatever their
        number (a writer batch refreshes each case it changed once)."""
        wanted = sorted(set(cases))
        if not wanted:
            return
        o = t.organisations.c
        signals: dict[str, list[Any]] = defaultdict(list)
        for row in self._conn.execute(
            sa.select(_cm.case, _m.accepted_at, o.org_type)
            .select_from(t.case_members.join(t.messages, _m.cursor == _cm.cursor)
                         .outerjoin(t.organisations, o.org == _m.sender))
            .where(_cm.case.in_(wanted), _m.kind == "signal")
        ):  # fmt: skip
            signals[row.case].append(row)
        steps: dict[str, dict[str, int]] = defaultdict(dict)
        if referrals:
            for case, step, count in self._conn.execute(
                sa.select(_r.case, _r.step, sa.func.count())
                .where(_r.case.in_(wanted))
                .group_by(_r.case, _r.step)
            ):
                steps[case][step] = int(count)
        rows = []
        for case in wanted:
            members, held = signals[case], steps[case]
            types = sorted({row.org_type or "other" for row in members})
            rows.append(
                (case, len(members), min((row.accepted_at for row in members), default=None),
                 max((row.accepted_at for row in members), default=None),
                 "".join(f",{name}" for name in types) + ("," if types else ""),
                 state_of(held), open_count(held))
            )  # fmt: skip
        rows_for(self._conn).update("cases", "ref", _SUMMARY, rows)

    def _recompute_pseudonyms(self, case: CaseRef) -> None:
        mp = t.message_pseudonyms.c
        rows = self._conn.execute(
            sa.select(mp.pseudonym).distinct().join(t.case_members, _cm.cursor == mp.cursor)
            .where(_cm.case == case)
        ).all()  # fmt: skip
        self._conn.execute(sa.delete(t.case_pseudonyms).where(_cp.case == case))
        self._insert_ignore(
            t.case_pseudonyms, [{"pseudonym": row[0], "case": case} for row in rows]
        )

    def _record(
        self,
        case: CaseRef,
        other: CaseRef,
        action: str,
        moved: Sequence[str],
        *,
        now: int,
        org: str | None,
        automatic: bool,
    ) -> None:
        self._conn.execute(
            sa.insert(t.case_changes).values(
                case=case,
                other=other,
                action=action,
                automatic=automatic,
                at=now,
                org=org,
                messages=canonical_json(list(moved)).decode("utf-8"),
            )
        )

    def last_merge(self, survivor: CaseRef, absorbed: CaseRef) -> tuple[MessageId, ...] | None:
        """The messages the newest merge of ``absorbed`` into ``survivor`` moved, if any."""
        cc = t.case_changes.c
        row = self._conn.execute(
            sa.select(cc.messages)
            .where(cc.case == survivor, cc.other == absorbed, cc.action == "merge")
            .order_by(cc.id.desc())
            .limit(1)
        ).first()
        if row is None:
            return None
        return tuple(MessageId(m) for m in json.loads(row[0]))

    # -- events ----------------------------------------------------------------------------

    def coordinators(self) -> list[OrgId]:
        """The organisations whose certificate gives them the coordinator role (read once
        per :class:`CaseTx`: a work item's, or a whole bulk write's)."""
        if self._coordinators is not None:
            return list(self._coordinators)
        roles = t.organisations.c.roles
        rows = self._conn.execute(
            sa.select(t.organisations.c.org).where(
                sa.or_(
                    roles == "coordinator",
                    roles.like("coordinator,%"),
                    roles.like("%,coordinator"),
                    roles.like("%,coordinator,%"),
                )
            )
        ).all()
        self._coordinators = sorted(OrgId(row[0]) for row in rows)
        return list(self._coordinators)

    def add_events(self, rows: Sequence[dict[str, Any]]) -> list[int]:
        """Keep several events (``org``, ``kind``, ``at``, ``case``, ``message``, ``step``,
        ``detail`` each) in one statement; their ids, in order."""
        values = [
            (row["org"], row["kind"], row["at"], row["case"], row["message"], row["step"],
             canonical_json(row["detail"]).decode("utf-8"))
            for row in rows
        ]  # fmt: skip
        return rows_for(self._conn).insert_numbered("events", "id", _EVENT_COLUMNS, values)

    def add_event(
        self,
        org: OrgId,
        kind: str,
        *,
        now: int,
        case: CaseRef | None = None,
        message: MessageId | None = None,
        step: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> int:
        """Keep an event for ``org``; returns its id (the feed's cursor)."""
        result = self._conn.execute(
            sa.insert(t.events)
            .values(
                org=org,
                kind=kind,
                at=now,
                case=case,
                message=message,
                step=step,
                detail=canonical_json(detail or {}).decode("utf-8"),
            )
            .returning(t.events.c.id)
        )
        return int(result.scalar_one())

    # -- referrals -------------------------------------------------------------------------

    def add_referral(
        self,
        cursor: int,
        message_id: MessageId,
        *,
        case: CaseRef,
        referrer: OrgId,
        recipient: OrgId,
        now: int,
    ) -> None:
        self._conn.execute(
            sa.insert(t.referrals).values(
                cursor=cursor,
                id=message_id,
                case=case,
                referrer=referrer,
                recipient=recipient,
                step="sent",
                step_at=now,
                sent_at=now,
            )
        )
        self.refresh(case)

    def pseudonyms_of(self, case: CaseRef, *, limit: int) -> tuple[str, ...]:
        """Up to ``limit`` pseudonyms of the live case ``case`` (the first in sorted order)."""
        rows = self._conn.execute(
            sa.select(_cp.pseudonym).where(_cp.case == case).order_by(_cp.pseudonym).limit(limit)
        ).all()
        return tuple(row[0] for row in rows)

    def kept_referrals(self, ids: Collection[str]) -> dict[MessageId, KeptReferral]:
        """The stored referrals of ``ids``, every column, in one statement."""
        if not ids:
            return {}
        rows = self._conn.execute(sa.select(t.referrals).where(_r.id.in_(sorted(ids)))).all()
        return {MessageId(row.id): _kept(row) for row in rows}

    def live_cases(self, refs: Collection[str]) -> dict[str, CaseRef]:
        """The live case each of ``refs`` names (as :meth:`live`), in one statement."""
        if not refs:
            return {}
        rows = self._conn.execute(
            sa.select(_c.ref, _c.merged_into).where(_c.ref.in_(sorted(refs)))
        ).all()
        return {row.ref: CaseRef(row.merged_into or row.ref) for row in rows}

    def live_pseudonyms(self, ref: str, *, limit: int) -> tuple[CaseRef | None, tuple[str, ...]]:
        """The live case ``ref`` names (None if none) and up to ``limit`` of its pseudonyms
        (the first in sorted order), in one statement: :meth:`live`, then
        :meth:`pseudonyms_of`."""
        live = sa.func.coalesce(_c.merged_into, _c.ref)
        rows = self._conn.execute(
            sa.select(live, _cp.pseudonym)
            .select_from(t.cases.outerjoin(t.case_pseudonyms, _cp.case == live))
            .where(_c.ref == ref)
            .order_by(_cp.pseudonym)
            .limit(limit)
        ).all()
        if not rows:
            return None, ()
        return CaseRef(rows[0][0]), tuple(row[1] for row in rows if row[1] is not None)

    def keep_referrals(self, referrals: Iterable[KeptReferral]) -> None:
        """Insert the new ``referrals`` and update the steps of the changed stored ones,
        one statement each (:mod:`hub.store.rows`)."""
        rows = rows_for(self._conn)
        new, changed = [], []
        for referral in referrals:
            if not referral.stored:
                new.append(referral.row())
            elif referral.changed:
                changed.append((referral.cursor, *referral.row()[_STEPS_FROM:]))
        rows.insert("referrals", _REFERRAL_COLUMNS, new)
        rows.update("referrals", "cursor", _REFERRAL_COLUMNS[_STEPS_FROM:], changed)

    def add_updates(self, updates: list[tuple[int, int, str, int]]) -> None:
        """Keep status updates, (``cursor``, ``referral`` cursor, ``code``, ``at``) each, in
        one statement."""
        columns = ("cursor", "referral", "code", "at")
        rows_for(self._conn).insert("referral_updates", columns, updates)

    def referral(self, message_id: str) -> Referral | None:
        row = self._conn.execute(
            sa.select(_r.cursor, _r.id, _r.case, _r.referrer, _r.recipient, _r.step, _r.step_at)
            .where(_r.id == message_id)
        ).one_or_none()  # fmt: skip
        return None if row is None else _referral(row)

    def enter(self, referral: Referral, steps: Sequence[str], *, now: int) -> None:
        """Record that ``referral`` entered ``steps`` (in order) at ``now``."""
        values: dict[str, Any] = {f"{step}_at": now for step in steps}
        self._conn.execute(
            sa.update(t.referrals)
            .where(_r.cursor == referral.cursor, _r.step == referral.step)
            .values(step=steps[-1], step_at=now, **values)
        )
        self.refresh(referral.case)

    def add_update(self, cursor: int, referral: Referral, code: str, *, now: int) -> None:
        self._conn.execute(
            sa.insert(t.referral_updates).values(
                cursor=cursor, referral=referral.cursor, code=code, at=now
            )
        )

    def waiting(self, step: str, *, entered_before: int, limit: int) -> list[Referral]:
        """Referrals at ``step`` since before ``entered_before``, not yet escalated there."""
        e = t.escalations.c
        escalated = sa.exists().where(e.referral == _r.cursor, e.step == step)
        rows = self._conn.execute(
            sa.select(_r.cursor, _r.id, _r.case, _r.referrer, _r.recipient, _r.step, _r.step_at)
            .where(_r.step == step, _r.step_at <= entered_before, ~escalated)
            .order_by(_r.step_at, _r.cursor)
            .limit(limit)
        ).all()
        return [_referral(row) for row in rows]

    def add_escalation(self, referral: Referral, *, due: int, now: int) -> bool:
        """Record the escalation of ``referral`` at its step; False if it was recorded before."""
        dialect = _DIALECTS[self._conn.dialect.name]
        result = self._conn.execute(
            dialect.insert(t.escalations)
            .values(referral=referral.cursor, step=referral.step, due=due, at=now)
            .on_conflict_do_nothing()
        )
        return result.rowcount == 1

    def replace(self, declined: Referral, by: MessageId) -> None:
        self._conn.execute(
            sa.update(t.referrals).where(_r.cursor == declined.cursor).values(replaced_by=by)
        )


_REFERRAL_COLUMNS = tuple(column.name for column in t.referrals.c)
_STEPS_FROM = _REFERRAL_COLUMNS.index("step")  # the columns a step changes, from here on


@dataclass(slots=True)
class KeptReferral:
    """A referral's row as a writer batch decides and changes it in memory, before it is
    written (:meth:`CaseTx.keep_referrals`). ``case`` is None until a new referral is
    placed; ``at`` holds ``<step>_at`` for every step."""

    cursor: int
    id: MessageId
    case: CaseRef | None
    referrer: OrgId
    recipient: OrgId
    step: str
    step_at: int
    at: dict[str, int | None]
    replaced_by: MessageId | None = None
    stored: bool = True
    changed: bool = False

    def enter(self, steps: Sequence[str], *, now: int) -> None:
        """As :meth:`CaseTx.enter`: ``steps`` entered, in order, at ``now``."""
        self.step, self.step_at, self.changed = steps[-1], now, True
        self.at.update(dict.fromkeys(steps, now))

    def referral(self) -> Referral:
        assert self.case is not None
        return Referral(
            self.cursor, self.id, self.case, self.referrer, self.recipient, self.step, self.step_at
        )

    def row(self) -> tuple[Any, ...]:
        """The values of every column of ``referrals``, in order."""
        values = {
            "cursor": self.cursor, "id": self.id, "case": self.case, "referrer": self.referrer,
            "recipient": self.recipient, "step": self.step, "step_at": self.step_at,
            "replaced_by": self.replaced_by,
            **{f"{step}_at": at for step, at in self.at.items()},
        }  # fmt: skip
        return tuple(values[name] for name in _REFERRAL_COLUMNS)


def _kept(row: Any) -> KeptReferral:
    return KeptReferral(
        int(row.cursor), MessageId(row.id), CaseRef(row.case), OrgId(row.referrer),
        OrgId(row.recipient), row.step, int(row.step_at),
        {step: getattr(row, f"{step}_at") for step in STEPS}, row.replaced_by,
    )  # fmt: skip


def _referral(row: Any) -> Referral:
    return Referral(
        int(row.cursor),
        MessageId(row.id),
        CaseRef(row.case),
        OrgId(row.referrer),
        OrgId(row.recipient),
        row.step,
        int(row.step_at),
    )
