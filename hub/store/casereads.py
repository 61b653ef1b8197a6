"""Reads for the coordinator's views: cases, one case's timeline, referrals, event feeds.

Plain functions of a SQLAlchemy connection, run through :meth:`Store.run_read`; they
return the records below, never rows. Nothing here reads content: the hub has none.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import sqlalchemy as sa

from hub import schema as t
from protocol import cases
from protocol import referral as machine
from protocol.cases import CaseSummary, Event, OrgSignals, Referral, TimelineEntry
from protocol.types import CaseRef, MessageId, OrgId

_c, _cm, _m, _r = t.cases.c, t.case_members.c, t.messages.c, t.referrals.c
_o, _e, _ru = t.organisations.c, t.events.c, t.referral_updates.c


@dataclass(frozen=True, slots=True)
class ReferralRecord:
    """A referral as the store keeps it: the wire record and its place in the log."""

    referral: Referral
    cursor: int

    @property
    def id(self) -> MessageId:
        return self.referral.id

    @property
    def steps(self) -> Mapping[str, int]:
        return self.referral.steps


@dataclass(frozen=True, slots=True)
class CaseDetail:
    """One live case as the coordinator reads it, with what the access log must name."""

    summary: CaseSummary
    referrals: tuple[Referral, ...]
    timeline: tuple[TimelineEntry, ...]
    truncated: bool
    members: tuple[MessageId, ...] = field(default=())
    pseudonyms: tuple[str, ...] = field(default=())

    def record(self, merged_from: CaseRef | None) -> cases.CaseDetail:
        """The wire record; ``merged_from`` is the reference asked for, if it redirected."""
        return cases.CaseDetail(
            self.summary, merged_from, self.referrals, self.timeline, self.truncated
        )


def live_ref(conn: sa.Connection, ref: str) -> CaseRef | None:
    row = conn.execute(sa.select(_c.ref, _c.merged_into).where(_c.ref == ref)).one_or_none()
    return None if row is None else CaseRef(row.merged_into or row.ref)


_SORT_COLUMNS = {
    "last": _c.last_signal,
    "first": _c.first_signal,
    "signals": _c.signals,
    "open": _c.open_referrals,
}


def page(
    conn: sa.Connection,
    *,
    state: str | None,
    org_type: str | None,
    since: int,
    sort: str,
    descending: bool,
    offset: int,
    limit: int,
) -> tuple[list[CaseSummary], int]:
    """One page of live cases, filtered and sorted on the kept summary, and the total."""
    where = [_c.merged_into.is_(None), sa.func.coalesce(_c.last_signal, _c.created_at) >= since]
    if state is not None:
        where.append(_c.state == state)
    if org_type is not None:
        where.append(_c.org_types.contains(f",{org_type},", autoescape=True))
    column = _SORT_COLUMNS[sort]
    order = (column.desc(), _c.ref.desc()) if descending else (column.asc(), _c.ref.asc())
    total = conn.execute(sa.select(sa.func.count()).select_from(t.cases).where(*where))
    refs = conn.execute(
        sa.select(_c.ref).where(*where).order_by(*order).offset(offset).limit(limit)
    ).scalars().all()  # fmt: skip
    found = {case.case: case for case in summaries(conn, refs)}
    return [found[ref] for ref in refs if ref in found], int(total.scalar_one())


def summaries(conn: sa.Connection, refs: Sequence[str] | None = None) -> list[CaseSummary]:
    """Every live case with members (or those of ``refs``), in no particular order."""
    members = (
        sa.select(
            _cm.case, _m.sender, _o.org_type, _m.kind,
            sa.func.count(), sa.func.min(_m.accepted_at), sa.func.max(_m.accepted_at),
        )
        .select_from(t.case_members.join(t.messages, _m.cursor == _cm.cursor)
                     .outerjoin(t.organisations, _o.org == _m.sender))
        .group_by(_cm.case, _m.sender, _o.org_type, _m.kind)
    )  # fmt: skip
    steps = sa.select(_r.case, _r.step, sa.func.count()).group_by(_r.case, _r.step)
    live = sa.select(_c.ref).where(_c.merged_into.is_(None))
    if refs is not None:
        members = members.where(_cm.case.in_(refs))
        steps = steps.where(_r.case.in_(refs))
        live = live.where(_c.ref.in_(refs))
    by_case: dict[str, list[Any]] = defaultdict(list)
    for row in conn.execute(members):
        by_case[row[0]].append(row)
    referral_steps: dict[str, dict[str, int]] = defaultdict(dict)
    for case, step, count in conn.execute(steps):
        referral_steps[case][step] = int(count)
    return [
        _summary(CaseRef(ref), by_case[ref], referral_steps[ref])
        for (ref,) in conn.execute(live)
        if ref in by_case
    ]


def _summary(ref: CaseRef, rows: list[Any], steps: dict[str, int]) -> CaseSummary:
    signals = [row for row in rows if row.kind == "signal"]
    orgs = sorted(
        (OrgSignals(OrgId(r.sender), r.org_type or "other", int(r[4]), int(r[5]), int(r[6]))
         for r in signals),
        key=lambda o: (o.first, o.org),
    )  # fmt: skip
    return CaseSummary.of(ref, orgs, steps)


def referral_records(
    conn: sa.Connection, *, case: str | None = None, open_only: bool = False
) -> list[ReferralRecord]:
    query = sa.select(t.referrals, _o.org_type).outerjoin(t.organisations, _o.org == _r.recipient)
    if case is not None:
        query = query.where(_r.case == case)
    if open_only:
        query = query.where(_r.step.in_(machine.OPEN_STEPS))
    return [_referral_record(row) for row in conn.execute(query.order_by(_r.cursor))]


def _referral_record(row: Any) -> ReferralRecord:
    steps = {step: row._mapping[f"{step}_at"] for step in machine.STEPS}
    referral = Referral(
        id=MessageId(row.id),
        case=CaseRef(row.case),
        referrer=OrgId(row.referrer),
        recipient=OrgId(row.recipient),
        recipient_type=row.org_type or "other",
        step=row.step,
        step_at=int(row.step_at),
        steps=MappingProxyType({step: int(at) for step, at in steps.items() if at is not None}),
        replaced_by=None if row.replaced_by is None else MessageId(row.replaced_by),
    )
    return ReferralRecord(referral, int(row.cursor))


def detail(conn: sa.Connection, ref: CaseRef, *, limit: int) -> CaseDetail | None:
    """One live case: its summary, referrals and timeline (newest ``limit`` items)."""
    found = summaries(conn, [ref])
    if not found:
        return None
    referrals = referral_records(conn, case=ref)
    placed = _member_items(conn, ref) + _status_items(conn, ref) + _change_items(conn, ref)
    placed += [
        (r.cursor + 0.5, TimelineEntry(at=r.steps[machine.DELIVERED], type="delivered",
                                       sender=r.referral.recipient, referral=r.id))
        for r in referrals if machine.DELIVERED in r.steps
    ]  # fmt: skip
    placed.sort(key=lambda pair: (pair[1].at, pair[0]))  # same second: acceptance order
    items = [item for _, item in placed]
    members = tuple(sorted(item.message for item in items if item.type in ("signal", "referral")
                           and item.message is not None))  # fmt: skip
    mp = t.message_pseudonyms.c
    pseudonyms = conn.execute(
        sa.select(mp.pseudonym).distinct().join(t.case_members, _cm.cursor == mp.cursor)
        .where(_cm.case == ref).order_by(mp.pseudonym)
    ).scalars().all()  # fmt: skip
    return CaseDetail(
        summary=found[0],
        referrals=tuple(r.referral for r in referrals),
        timeline=tuple(items[-limit:]),
        truncated=len(items) > limit,
        members=members,
        pseudonyms=tuple(pseudonyms),
    )


def _recipients(conn: sa.Connection, cursors: list[int]) -> dict[int, tuple[OrgId, ...]]:
    d = t.deliveries.c
    found: dict[int, list[OrgId]] = defaultdict(list)
    for cursor, recipient in conn.execute(
        sa.select(d.cursor, d.recipient).where(d.cursor.in_(cursors)).order_by(d.recipient)
    ):
        found[cursor].append(OrgId(recipient))
    return {cursor: tuple(orgs) for cursor, orgs in found.items()}


Placed = tuple[float, TimelineEntry]  # (order among entries of the same second, entry)


def _member_items(conn: sa.Connection, ref: CaseRef) -> list[Placed]:
    rows = conn.execute(
        sa.select(_m.cursor, _m.id, _m.kind, _m.sender, _o.org_type, _m.accepted_at)
        .select_from(t.case_members.join(t.messages, _m.cursor == _cm.cursor)
                     .outerjoin(t.organisations, _o.org == _m.sender))
        .where(_cm.case == ref)
    ).all()  # fmt: skip
    recipients = _recipients(conn, [row.cursor for row in rows])
    return [
        (row.cursor, TimelineEntry(at=int(row.accepted_at), type=row.kind,
                                   message=MessageId(row.id), sender=OrgId(row.sender),
                                   sender_type=row.org_type or "other",
                                   recipients=recipients.get(row.cursor, ())))
        for row in rows
    ]  # fmt: skip


def _status_items(conn: sa.Connection, ref: CaseRef) -> list[Placed]:
    referral = t.referrals.alias("referral")
    rows = conn.execute(
        sa.select(_m.cursor, _m.id, _m.sender, _o.org_type, _ru.code, _ru.at,
                  referral.c.id.label("referral"))
        .select_from(t.referral_updates.join(referral, referral.c.cursor == _ru.referral)
                     .join(t.messages, _m.cursor == _ru.cursor)
                     .outerjoin(t.organisations, _o.org == _m.sender))
        .where(referral.c.case == ref)
    ).all()  # fmt: skip
    recipients = _recipients(conn, [row.cursor for row in rows])
    return [
        (row.cursor, TimelineEntry(at=int(row.at), type="status", message=MessageId(row.id),
                                   sender=OrgId(row.sender), sender_type=row.org_type or "other",
                                   recipients=recipients.get(row.cursor, ()), code=row.code,
                                   referral=MessageId(row.referral)))
        for row in rows
    ]  # fmt: skip


def _change_items(conn: sa.Connection, ref: CaseRef) -> list[Placed]:
    cc = t.case_changes.c
    rows = conn.execute(
        sa.select(cc.case, cc.other, cc.action, cc.automatic, cc.at, cc.messages).where(
            sa.or_(cc.case == ref, cc.other == ref)
        )
    ).all()
    return [
        (
            float("inf"),  # after the messages of the same second
            TimelineEntry(
                at=int(row.at),
                type=row.action,
                other=CaseRef(row.other if row.case == ref else row.case),
                automatic=bool(row.automatic),
                messages=tuple(MessageId(m) for m in json.loads(row.messages)),
            ),
        )
        for row in rows
    ]


def events(conn: sa.Connection, org: OrgId, *, after: int, limit: int) -> list[Event]:
    rows = conn.execute(
        sa.select(_e.id, _e.kind, _e.at, _e.case, _e.message, _e.step, _e.detail)
        .where(_e.org == org, _e.id > after)
        .order_by(_e.id)
        .limit(limit)
    ).all()
    return [
        Event(
            id=int(row.id),
            kind=row.kind,
            at=int(row.at),
            case=None if row.case is None else CaseRef(row.case),
            message=None if row.message is None else MessageId(row.message),
            step=row.step,
            detail=MappingProxyType(json.loads(row.detail)),
        )
        for row in rows
    ]


def step_counts(conn: sa.Connection) -> tuple[Mapping[str, int], Mapping[str, int]]:
    """(escalations so far, open referrals now), each counted by step (for the metrics)."""
    e, r = t.escalations.c, t.referrals.c
    fired = conn.execute(
        sa.select(e.step, sa.func.count()).where(e.step.in_(machine.OPEN_STEPS)).group_by(e.step)
    ).all()
    waiting = conn.execute(
        sa.select(r.step, sa.func.count())
        .where(r.step.in_(machine.OPEN_STEPS), r.replaced_by.is_(None))  # re-referred: not open
        .group_by(r.step)
    ).all()
    return (
        MappingProxyType({str(step): int(n) for step, n in fired}),
        MappingProxyType({str(step): int(n) for step, n in waiting}),
    )
