"""The coordinator's use-cases: cases, one case, split and merge, open referrals, events.

Every case route is for organisations with the coordinator role; for any other caller
it is 404, the same answer as for a case that does not exist, so nobody can learn from
the hub whether a case or pseudonym is known. Each call is audited (object type
``case``): a read of one case records the case reference, its messages and (up to the
entry's bound) its pseudonyms, so a privacy officer's subject report finds it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from hub.accesslog import recording
from hub.accesslog.recording import Outcome, Scope
from hub.auth import Caller
from hub.config import Clock, HubConfig, Rng
from hub.deadlines import Deadline
from hub.errors import Conflict, Malformed, NotFound
from hub.relay import bounded_int
from hub.store import Store, Tx
from hub.store.casereads import CaseDetail
from protocol.auditlog import MAX_OBJECT_IDS, MAX_PSEUDONYMS
from protocol.cases import CASE_SORTS, CASE_STATES, CaseSummary, Event, OpenReferral, Referral
from protocol.certificate import ORG_TYPES, ROLE_COORDINATOR
from protocol.errors import ValidationError
from protocol.types import (
    CASE_REF_BYTES,
    CaseRef,
    MessageId,
    case_ref_from,
    parse_case_ref,
    parse_message_id,
)

T = TypeVar("T")


def require_coordinator(caller: Caller) -> None:
    if ROLE_COORDINATOR not in caller.roles:
        raise NotFound()


def _case_path(text: str) -> CaseRef:
    try:
        return parse_case_ref(text)
    except ValidationError:
        raise NotFound() from None


async def _live(store: Store, text: str) -> CaseRef:
    live = await store.live_case(_case_path(text))
    if live is None:
        raise NotFound()
    return live


@dataclass(frozen=True, slots=True)
class Regrouped:
    """What a split, merge or unmerge did: ``case`` is the live case the path named, and
    ``other`` the case split off into, absorbed, or revived."""

    case: CaseRef
    other: CaseRef


@dataclass(frozen=True, slots=True)
class CaseQuery:
    state: str | None = None
    org_type: str | None = None
    since: int = 0
    sort: str = "last"
    descending: bool = True
    offset: int = 0
    limit: int = 50

    @classmethod
    def parse(cls, query: Mapping[str, str], *, max_limit: int) -> CaseQuery:
        state, org_type = query.get("state"), query.get("type")
        if state is not None and state not in CASE_STATES:
            raise Malformed("state must be one of " + ", ".join(CASE_STATES))
        if org_type is not None and org_type not in ORG_TYPES:
            raise Malformed("type must be one of " + ", ".join(ORG_TYPES))
        sort = query.get("sort", "last")
        if sort not in CASE_SORTS:
            raise Malformed("sort must be one of " + ", ".join(CASE_SORTS))
        order = query.get("order", "desc")
        if order not in ("asc", "desc"):
            raise Malformed("order must be asc or desc")
        return cls(
            state=state,
            org_type=org_type,
            since=bounded_int(query.get("since"), 0, "since", 0, 2**40),
            sort=sort,
            descending=order == "desc",
            offset=bounded_int(query.get("offset"), 0, "offset", 0, 10**7),
            limit=bounded_int(query.get("limit"), 50, "limit", 1, max_limit),
        )

    async def read(self, store: Store) -> tuple[list[CaseSummary], int]:
        """The page of live cases this query asks for, and how many match in all."""
        return await store.case_page(
            state=self.state,
            org_type=self.org_type,
            since=self.since,
            sort=self.sort,
            descending=self.descending,
            offset=self.offset,
            limit=self.limit,
        )


async def list_cases(
    store: Store, clock: Clock, scope: Scope, *, caller: Caller, query: CaseQuery
) -> tuple[list[CaseSummary], int]:
    require_coordinator(caller)
    page, total = await query.read(store)
    scope.touch(c.case for c in page)
    await recording.access(store, scope, now=clock())
    return page, total


async def read_case(
    store: Store, clock: Clock, config: HubConfig, scope: Scope, *, caller: Caller, ref: str
) -> tuple[CaseDetail, CaseRef]:
    """The live case ``ref`` names, and the reference asked for (it may redirect)."""
    require_coordinator(caller)
    asked = _case_path(ref)
    scope.touch([asked])
    live = await _live(store, asked)
    found = await store.case_detail(live, limit=config.limits.max_timeline)
    if found is None:
        raise NotFound()
    scope.touch([asked, live, *found.members][:MAX_OBJECT_IDS])
    scope.pseudonyms = found.pseudonyms[:MAX_PSEUDONYMS]
    await recording.access(store, scope, now=clock())
    return found, asked


def _message_ids(body: object) -> list[MessageId]:
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list) or not 1 <= len(messages) <= MAX_OBJECT_IDS - 2:
        raise Malformed(f"messages must be a list of 1 to {MAX_OBJECT_IDS - 2} message ids")
    try:
        return sorted({parse_message_id(m) for m in messages})
    except ValidationError as exc:
        raise Malformed(f"messages: {exc}") from None


def _other_case(body: object) -> str:
    if not isinstance(body, dict) or set(body) != {"case"} or not isinstance(body["case"], str):
        raise Malformed('the body must be {"case": "<case reference>"}')
    return body["case"]


async def split_case(
    store: Store, clock: Clock, scope: Scope, *, caller: Caller, ref: str, body: object, rng: Rng
) -> Regrouped:
    """Split the given messages off ``ref`` into a new case, kept apart from it."""
    require_coordinator(caller)
    scope.touch([_case_path(ref)])
    if not isinstance(body, dict) or set(body) != {"messages"}:
        raise Malformed('the body must be {"messages": [<message id>, ...]}')
    moved = _message_ids(body)
    live = await _live(store, ref)
    new = case_ref_from(rng(CASE_REF_BYTES))
    scope.touch([live, new, *moved])
    now = clock()

    def split(tx: Tx) -> Outcome[Regrouped]:
        _check_split(tx, live, moved)
        tx.cases.split(live, moved, into=new, revive=False, now=now, org=caller.org)
        return Outcome(Regrouped(live, new))

    return await recording.act(store, scope, now=now, work=split)


def _check_split(tx: Tx, case: CaseRef, moved: list[MessageId]) -> None:
    members = tx.cases.members(case)
    if tx.cases.live(case) != case:
        raise Conflict("the case changed meanwhile; read it again")
    if not set(moved) <= set(members):
        raise Conflict("every message to split off must be a signal or referral of the case")
    if len(moved) == len(members):
        raise Conflict("a split leaves at least one message in the case")


async def merge_case(
    store: Store, clock: Clock, scope: Scope, *, caller: Caller, ref: str, body: object
) -> Regrouped:
    """Merge the case named in the body into ``ref``; ``other`` is the absorbed (live) case."""
    require_coordinator(caller)
    scope.touch([_case_path(ref)])
    other_text = _other_case(body)
    survivor, absorbed = await _live(store, ref), await _live(store, other_text)
    scope.touch([survivor, absorbed])
    if survivor == absorbed:
        raise Conflict("the two references name the same case")
    now = clock()

    def merge(tx: Tx) -> Outcome[Regrouped]:
        if tx.cases.live(survivor) != survivor or tx.cases.live(absorbed) != absorbed:
            raise Conflict("the case changed meanwhile; read it again")
        moved = tx.cases.merge(survivor, absorbed, now=now, org=caller.org, automatic=False)
        scope.touch([survivor, absorbed, *moved][:MAX_OBJECT_IDS])
        return Outcome(Regrouped(survivor, absorbed))

    return await recording.act(store, scope, now=now, work=merge)


async def unmerge_case(
    store: Store, clock: Clock, scope: Scope, *, caller: Caller, ref: str, body: object
) -> Regrouped:
    """Undo the merge of the case named in the body into ``ref``: ``other`` lives again,
    apart."""
    require_coordinator(caller)
    scope.touch([_case_path(ref)])
    absorbed = _case_path(_other_case(body))
    survivor = await _live(store, ref)
    scope.touch([survivor, absorbed])
    now = clock()

    def unmerge(tx: Tx) -> Outcome[Regrouped]:
        if not tx.cases.exists(absorbed) or tx.cases.live(absorbed) != survivor:
            raise Conflict("that case is not merged into this one")
        members = tx.cases.members(survivor)
        moved = [m for m in tx.cases.last_merge(survivor, absorbed) or () if m in members]
        if not moved or len(moved) == len(members):
            raise Conflict("the messages that merge brought are no longer apart in this case")
        tx.cases.split(survivor, moved, into=absorbed, revive=True, now=now, org=caller.org)
        scope.touch([survivor, absorbed, *moved][:MAX_OBJECT_IDS])
        return Outcome(Regrouped(survivor, absorbed))

    return await recording.act(store, scope, now=now, work=unmerge)


def open_view(
    referrals: list[Referral], limits: Mapping[str, Deadline], now: int
) -> list[OpenReferral]:
    """Open referrals with who holds the next step and when it is due; overdue first."""
    views = []
    for referral in referrals:
        if referral.replaced_by is not None:
            continue
        deadline = limits.get(referral.step)
        due = None if deadline is None else deadline.due(referral.step_at)
        views.append(
            OpenReferral.at(referral, now=now, due=due, overdue=due is not None and due <= now)
        )
    views.sort(key=lambda v: (not v.overdue, v.due if v.overdue else 0, v.referral.step_at))
    return views


async def open_referrals(
    store: Store,
    clock: Clock,
    config: HubConfig,
    scope: Scope,
    *,
    caller: Caller,
    limit: str | None,
) -> list[OpenReferral]:
    require_coordinator(caller)
    count = bounded_int(limit, config.limits.max_case_page, "limit", 1, config.limits.max_case_page)
    now = clock()
    records = await store.referrals(open_only=True)
    views = open_view([r.referral for r in records], config.escalation, now)[:count]
    scope.touch(v.referral.id for v in views)
    await recording.access(store, scope, now=now)
    return views


async def read_events(
    store: Store,
    clock: Clock,
    config: HubConfig,
    scope: Scope,
    *,
    caller: Caller,
    after: str | None,
    limit: str | None,
) -> tuple[list[Event], int]:
    """The caller's own event feed after ``after`` (match, referral, escalation, reminder),
    and the cursor to read on from."""
    page = config.limits.max_case_page
    start = bounded_int(after, 0, "after", 0, 2**62)
    count = bounded_int(limit, page, "limit", 1, page)
    found = await store.events(caller.org, after=start, limit=count)
    objects = {str(e.case or e.message) for e in found if e.case or e.message}
    scope.touch(sorted(objects)[:MAX_OBJECT_IDS])
    await recording.access(store, scope, now=clock())
    return found, found[-1].id if found else start
