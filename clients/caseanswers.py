"""The coordinator's case answers of the hub (docs/protocol.md), parsed and checked.

The hub is not trusted with them any more than with anything else: every field of a
case list, a case, a referral list or an event feed is checked for its type, range or
form, unknown and missing fields are refused, and totals must agree with their parts.
:class:`MalformedAnswer` names the answer and the field, never the value. The queries
of the case routes are checked here too, before anything is sent.
"""

from __future__ import annotations

import itertools
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from clients.errors import ClientError, MalformedAnswer
from protocol import referral as machine
from protocol.certificate import MAX_TIME, ORG_TYPES
from protocol.errors import ProtocolError
from protocol.types import (
    CaseRef,
    MessageId,
    OrgId,
    parse_case_ref,
    parse_message_id,
    parse_org_id,
)

CASE_STATES = ("new", "referred", "in_care", "declined", "closed")
CASE_SORTS = ("last", "first", "signals", "open")
CASE_FILTERS = ("state", "type", "since", "sort", "order", "offset", "limit")
EVENT_KINDS = ("match", "referral", "escalation", "reminder")
STATUS_CODES = (machine.ACCEPTED, machine.DECLINED, machine.CARE_STARTED, machine.CLOSED)
MAX_PAGE = 200  # cases, referrals or events in one answer (the hub's max_case_page)
MAX_TIMELINE = 10_000  # entries of one case's timeline (the hub serves the newest 1000)
MAX_SPLIT = 198  # messages moved by one split
MAX_COUNT = 2**31 - 1
MAX_EVENT_ID = 2**62
_MESSAGE_ITEMS = ("signal", "referral", "status", "reply")
_TIMELINE_FIELDS: Mapping[str, tuple[frozenset[str], frozenset[str]]] = {
    **{
        kind: (frozenset({"message", "sender", "sender_type"}), frozenset({"recipients"}))
        for kind in ("signal", "referral", "reply")
    },
    "status": (
        frozenset({"message", "sender", "sender_type", "code", "referral"}),
        frozenset({"recipients"}),
    ),
    "delivered": (frozenset({"sender", "referral"}), frozenset()),
    "merge": (frozenset({"other", "automatic"}), frozenset({"messages"})),
    "split": (frozenset({"other", "automatic"}), frozenset({"messages"})),
}
_EVENT_DETAIL: Mapping[str, frozenset[str]] = {
    "match": frozenset({"kind", "sender", "sender_type", "merged", "kept_apart"}),
    "referral": frozenset({"referrer", "recipient"}),
    "escalation": frozenset({"referrer", "recipient", "due"}),
    "reminder": frozenset({"referrer", "recipient", "due"}),
}
_SUMMARY = frozenset(
    {"case", "state", "signals", "first_signal", "last_signal", "orgs", "referrals"}
) | {"open_referrals"}
_REFERRAL = frozenset(
    {"id", "case", "referrer", "recipient", "recipient_type", "step", "step_at", "steps"}
) | {"replaced_by"}
_OPEN = _REFERRAL | {"holder", "age", "waiting", "due", "overdue"}


@dataclass(frozen=True, slots=True)
class OrgSignals:
    """One organisation's signals in a case (the hub's metadata: who, of which type, when)."""

    org: OrgId
    org_type: str
    count: int
    first: int
    last: int


@dataclass(frozen=True, slots=True)
class CaseSummary:
    """A case as listed: ``referrals`` maps a step to how many referrals are at it."""

    case: CaseRef
    state: str
    signals: int
    first_signal: int | None
    last_signal: int | None
    orgs: tuple[OrgSignals, ...]
    referrals: Mapping[str, int]
    open_referrals: int


@dataclass(frozen=True, slots=True)
class CasePage:
    cases: tuple[CaseSummary, ...]
    total: int


@dataclass(frozen=True, slots=True)
class ReferralInfo:
    """A referral as the hub tracks it: ``steps`` maps each step entered to its time."""

    id: MessageId
    case: CaseRef
    referrer: OrgId
    recipient: OrgId
    recipient_type: str
    step: str
    step_at: int
    steps: Mapping[str, int]
    replaced_by: MessageId | None


@dataclass(frozen=True, slots=True)
class OpenReferral:
    """An open referral: who holds the next step, its age, and when that step is due."""

    referral: ReferralInfo
    holder: OrgId
    age: int
    waiting: int
    due: int | None
    overdue: bool


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One line of a case's timeline; which fields are set depends on ``type``."""

    at: int
    type: str
    message: MessageId | None = None
    sender: OrgId | None = None
    sender_type: str | None = None
    recipients: tuple[OrgId, ...] = ()
    code: str | None = None
    referral: MessageId | None = None
    other: CaseRef | None = None
    automatic: bool | None = None
    messages: tuple[MessageId, ...] = ()


@dataclass(frozen=True, slots=True)
class CaseDetail:
    """One case: ``merged_from`` is the reference asked for when it redirected here."""

    summary: CaseSummary
    merged_from: CaseRef | None
    referrals: tuple[ReferralInfo, ...]
    timeline: tuple[TimelineEntry, ...]
    truncated: bool


@dataclass(frozen=True, slots=True)
class Event:
    """One event of this organisation's feed; ``detail`` holds only checked fields."""

    id: int
    kind: str
    at: int
    case: CaseRef | None
    message: MessageId | None
    step: str | None
    detail: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class EventPage:
    events: tuple[Event, ...]
    next: int


class Answer:
    """One JSON object of a hub answer, read field by field.

    Unknown and missing fields are refused; every value is checked for its type, range
    or form. :class:`MalformedAnswer` names the answer and the field, never the value.
    """

    def __init__(
        self,
        what: str,
        value: Any,
        required: Iterable[str],
        optional: Iterable[str] = (),
        path: str = "",
    ) -> None:
        self.what, self.path = what, path
        if not isinstance(value, dict):
            raise MalformedAnswer(what, path or "$", "is not an object")
        required, allowed = set(required), set(required) | set(optional)
        missing = sorted(required - value.keys())
        if missing:
            raise self.bad(missing[0], "is missing")
        if value.keys() - allowed:  # its name is the hub's text: not repeated
            raise self.bad("(a field)", "is not a field of this answer")
        self.doc: dict[str, Any] = value

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def bad(self, key: str, rule: str) -> MalformedAnswer:
        return MalformedAnswer(self.what, self.at(key), rule)

    def child(
        self, path: str, value: Any, required: Iterable[str] = (), optional: Iterable[str] = ()
    ) -> Answer:
        return Answer(self.what, value, required, optional, self.at(path))

    def has(self, key: str) -> bool:
        return key in self.doc

    def number(self, key: str, high: int = MAX_TIME, *, low: int = 0) -> int:
        value = self.doc.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise self.bad(key, f"is not an integer from {low} to {high}")
        return value

    def optional_number(self, key: str, high: int = MAX_TIME) -> int | None:
        return None if self.doc.get(key) is None else self.number(key, high)

    def flag(self, key: str) -> bool:
        value = self.doc.get(key)
        if not isinstance(value, bool):
            raise self.bad(key, "is not true or false")
        return value

    def choice(self, key: str, choices: Iterable[str]) -> str:
        value = self.doc.get(key)
        if not isinstance(value, str) or value not in tuple(choices):
            raise self.bad(key, "is not one of the values the protocol allows")
        return value

    def parsed(self, key: str, parse: Callable[[object], str], form: str) -> str:
        try:
            return parse(self.doc.get(key))
        except ProtocolError:
            raise self.bad(key, f"is not {form}") from None

    def org(self, key: str) -> OrgId:
        return OrgId(self.parsed(key, parse_org_id, "an organisation id"))

    def case_ref(self, key: str) -> CaseRef:
        return CaseRef(self.parsed(key, parse_case_ref, "a case reference"))

    def message_id(self, key: str) -> MessageId:
        return MessageId(self.parsed(key, parse_message_id, "a message id"))

    def optional_message_id(self, key: str) -> MessageId | None:
        return None if self.doc.get(key) is None else self.message_id(key)

    def array(self, key: str, max_items: int) -> list[tuple[int, Any]]:
        value = self.doc.get(key)
        if not isinstance(value, list) or len(value) > max_items:
            raise self.bad(key, f"is not a list of at most {max_items} items")
        return list(enumerate(value))

    def ids(self, key: str, max_items: int, parse: Callable[[object], str], form: str) -> list[str]:
        """A list of ids, each checked by ``parse`` (``parse_org_id``, ``parse_case_ref``...)."""
        found = []
        for index, value in self.array(key, max_items):
            try:
                found.append(parse(value))
            except ProtocolError:
                raise self.bad(f"{key}[{index}]", f"is not {form}") from None
        return found

    def steps(self, key: str, high: int) -> Mapping[str, int]:
        """A map from referral step to an integer (a count or a time)."""
        value = self.doc.get(key)
        if not isinstance(value, dict):
            raise self.bad(key, "is not an object")
        inner = self.child(key, value, (), machine.STEPS)
        return MappingProxyType(
            {step: inner.number(step, high) for step in machine.STEPS if inner.has(step)}
        )


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def page_limit(limit: object) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE:
        raise ClientError(f"limit must be from 1 to {MAX_PAGE}")
    return limit


def case_query(filters: Mapping[str, str | int | None]) -> str:
    """The query of ``GET /v1/cases``, every filter checked before anything is sent."""
    given = {k: v for k, v in filters.items() if v is not None}
    for name, value in given.items():
        if name not in CASE_FILTERS:
            raise ClientError(
                f"unknown case filter {name[:32]!r} (one of {', '.join(CASE_FILTERS)})"
            )
        allowed = {
            "state": CASE_STATES,
            "type": ORG_TYPES,
            "sort": CASE_SORTS,
            "order": ("asc", "desc"),
        }.get(name)
        if allowed is not None and value not in allowed:
            raise ClientError(f"case filter {name} must be one of {', '.join(allowed)}")
        if allowed is None and (not is_int(value) or not 0 <= int(value) <= MAX_TIME):
            raise ClientError(f"case filter {name} must be an integer >= 0")
    if "limit" in given:
        page_limit(given["limit"])
    return "?" + urllib.parse.urlencode({k: str(v) for k, v in given.items()}) if given else ""


def case_page(body: Any, *, limit: int) -> CasePage:
    answer = Answer("case list", body, {"cases", "total"})
    cases = tuple(
        _summary(answer.child(f"cases[{i}]", w, _SUMMARY)) for i, w in answer.array("cases", limit)
    )
    total = answer.number("total", MAX_COUNT)
    if len({c.case for c in cases}) != len(cases):
        raise answer.bad("cases", "names a case twice")
    if total < len(cases):
        raise answer.bad("total", "is less than the cases listed")
    return CasePage(cases, total)


def _summary(doc: Answer) -> CaseSummary:
    orgs = tuple(
        _org_signals(doc.child(f"orgs[{i}]", w, {"org", "org_type", "count", "first", "last"}))
        for i, w in doc.array("orgs", MAX_COUNT)
    )
    referrals = doc.steps("referrals", MAX_COUNT)
    summary = CaseSummary(
        case=doc.case_ref("case"),
        state=doc.choice("state", CASE_STATES),
        signals=doc.number("signals", MAX_COUNT),
        first_signal=doc.optional_number("first_signal"),
        last_signal=doc.optional_number("last_signal"),
        orgs=orgs,
        referrals=referrals,
        open_referrals=doc.number("open_referrals", MAX_COUNT),
    )
    _check_summary(doc, summary)
    return summary


def _org_signals(doc: Answer) -> OrgSignals:
    found = OrgSignals(
        doc.org("org"),
        doc.choice("org_type", ORG_TYPES),
        doc.number("count", MAX_COUNT, low=1),
        doc.number("first"),
        doc.number("last"),
    )
    if found.first > found.last:
        raise doc.bad("first", "is after last")
    return found


def _check_summary(doc: Answer, summary: CaseSummary) -> None:
    """The summary's totals must agree with its parts (a hub that lies is caught here)."""
    orgs = summary.orgs
    if summary.signals != sum(o.count for o in orgs):
        raise doc.bad("signals", "does not add up over orgs")
    if summary.first_signal != min((o.first for o in orgs), default=None):
        raise doc.bad("first_signal", "is not the first of orgs")
    if summary.last_signal != max((o.last for o in orgs), default=None):
        raise doc.bad("last_signal", "is not the last of orgs")
    if len({o.org for o in orgs}) != len(orgs):
        raise doc.bad("orgs", "names an organisation twice")
    open_count = sum(n for step, n in summary.referrals.items() if step in machine.OPEN_STEPS)
    if summary.open_referrals != open_count:
        raise doc.bad("open_referrals", "does not add up over referrals")


def _referral_info(doc: Answer) -> ReferralInfo:
    info = ReferralInfo(
        id=doc.message_id("id"),
        case=doc.case_ref("case"),
        referrer=doc.org("referrer"),
        recipient=doc.org("recipient"),
        recipient_type=doc.choice("recipient_type", ORG_TYPES),
        step=doc.choice("step", machine.STEPS),
        step_at=doc.number("step_at"),
        steps=doc.steps("steps", MAX_TIME),
        replaced_by=doc.optional_message_id("replaced_by"),
    )
    if info.steps.get(info.step) != info.step_at or machine.SENT not in info.steps:
        raise doc.bad("steps", "do not match step and step_at")
    if info.referrer == info.recipient:
        raise doc.bad("recipient", "is the referrer")
    return info


def referral_list(body: Any, *, limit: int) -> tuple[OpenReferral, ...]:
    answer = Answer("referral list", body, {"referrals"})
    items = answer.array("referrals", limit)
    return tuple(_open_referral(answer.child(f"referrals[{i}]", w, _OPEN)) for i, w in items)


def _open_referral(doc: Answer) -> OpenReferral:
    info = _referral_info(doc)
    if info.step not in machine.OPEN_STEPS:
        raise doc.bad("step", "is not an open step")
    holds = machine.HOLDER[info.step] == machine.RECIPIENT
    found = OpenReferral(
        info,
        doc.org("holder"),
        doc.number("age"),
        doc.number("waiting"),
        doc.optional_number("due"),
        doc.flag("overdue"),
    )
    if found.holder != (info.recipient if holds else info.referrer):
        raise doc.bad("holder", "does not hold the next step")
    if found.overdue and found.due is None:
        raise doc.bad("overdue", "is true without a due time")
    return found


def case_detail(body: Any) -> CaseDetail:
    fields = _SUMMARY | {"referral_list", "timeline", "truncated"}
    doc = Answer("case", body, fields, {"merged_from"})
    summary = _summary(doc)
    referrals = tuple(
        _referral_info(doc.child(f"referral_list[{i}]", w, _REFERRAL))
        for i, w in doc.array("referral_list", MAX_TIMELINE)
    )
    if any(r.case != summary.case for r in referrals):
        raise doc.bad("referral_list", "holds a referral of another case")
    timeline = tuple(
        _timeline_entry(doc.child(f"timeline[{i}]", w, ("at", "type"), _ALL_TIMELINE))
        for i, w in doc.array("timeline", MAX_TIMELINE)
    )
    if any(a.at > b.at for a, b in itertools.pairwise(timeline)):
        raise doc.bad("timeline", "is not in time order")
    merged = doc.case_ref("merged_from") if doc.has("merged_from") else None
    return CaseDetail(summary, merged, referrals, timeline, doc.flag("truncated"))


_ALL_TIMELINE = frozenset({"at", "type"}).union(*(r | o for r, o in _TIMELINE_FIELDS.values()))


def _timeline_entry(doc: Answer) -> TimelineEntry:
    kind = doc.choice("type", tuple(_TIMELINE_FIELDS))
    required, optional = _TIMELINE_FIELDS[kind]
    doc = Answer(doc.what, doc.doc, required | {"at", "type"}, optional, doc.path)
    return TimelineEntry(
        at=doc.number("at"),
        type=kind,
        message=doc.message_id("message") if doc.has("message") else None,
        sender=doc.org("sender") if doc.has("sender") else None,
        sender_type=doc.choice("sender_type", ORG_TYPES) if doc.has("sender_type") else None,
        recipients=tuple(
            OrgId(o) for o in doc.ids("recipients", 16, parse_org_id, "an organisation id")
        )
        if doc.has("recipients")
        else (),
        code=doc.choice("code", STATUS_CODES) if doc.has("code") else None,
        referral=doc.message_id("referral") if doc.has("referral") else None,
        other=doc.case_ref("other") if doc.has("other") else None,
        automatic=doc.flag("automatic") if doc.has("automatic") else None,
        messages=tuple(
            MessageId(m)
            for m in doc.ids("messages", MAX_TIMELINE, parse_message_id, "a message id")
        )
        if doc.has("messages")
        else (),
    )


def event_page(body: Any, *, after: int, limit: int) -> EventPage:
    doc = Answer("event feed", body, {"events", "next"})
    events = tuple(
        _event(
            doc.child(
                f"events[{i}]", w, ("id", "kind", "at", "detail"), ("case", "message", "step")
            )
        )
        for i, w in doc.array("events", limit)
    )
    ids = [after, *(e.id for e in events)]
    if any(a >= b for a, b in itertools.pairwise(ids)):
        raise doc.bad("events", "are not in ascending order after the cursor")
    following = doc.number("next", MAX_EVENT_ID)
    if following != ids[-1]:
        raise doc.bad("next", "is not the last event's id")
    return EventPage(events, following)


def _event(doc: Answer) -> Event:
    kind = doc.choice("kind", EVENT_KINDS)
    detail = doc.child("detail", doc.doc.get("detail"), _EVENT_DETAIL[kind])
    return Event(
        id=doc.number("id", MAX_EVENT_ID, low=1),
        kind=kind,
        at=doc.number("at"),
        case=doc.case_ref("case") if doc.has("case") else None,
        message=doc.message_id("message") if doc.has("message") else None,
        step=doc.choice("step", machine.STEPS) if doc.has("step") else None,
        detail=MappingProxyType(_event_detail(detail, kind)),
    )


def _event_detail(doc: Answer, kind: str) -> dict[str, Any]:
    if kind == "match":
        return {
            "kind": doc.choice("kind", _MESSAGE_ITEMS),
            "sender": doc.org("sender"),
            "sender_type": doc.choice("sender_type", ORG_TYPES),
            "merged": doc.ids("merged", MAX_PAGE, parse_case_ref, "a case reference"),
            "kept_apart": doc.ids("kept_apart", MAX_PAGE, parse_case_ref, "a case reference"),
        }
    found: dict[str, Any] = {"referrer": doc.org("referrer"), "recipient": doc.org("recipient")}
    if doc.has("due"):
        found["due"] = doc.number("due")
    return found
