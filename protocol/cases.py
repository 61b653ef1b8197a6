"""The case domain's pure core: records on the wire, case states, and clustering.

The hub clusters signals about the same pseudonymous person into cases and follows
their referrals; the coordinator reads them (``docs/protocol.md``, "Cases"). Both sides
use the records defined here, once: the hub renders them with ``to_wire``, clients read
the hub's answers with the ``*_from_wire`` functions, which check every field for its
type, range or form, refuse unknown and missing fields, and check that totals agree
with their parts (a hub that lies is caught). :class:`~protocol.errors.FieldError`
names the record and the field, never the value.

The rules live here too: how a case's state follows from its referrals
(:func:`state_of`), and what a new message's pseudonyms mean for the cases that hold
them (:func:`place`: join one, merge several, or start a new one), which the hub's
store only carries out.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from protocol import referral as machine
from protocol.certificate import MAX_TIME, ORG_TYPES
from protocol.envelope import STATUS_CODES
from protocol.errors import FieldError, ProtocolError
from protocol.types import (
    CaseRef,
    MessageId,
    OrgId,
    parse_case_ref,
    parse_message_id,
    parse_org_id,
)

NEW, REFERRED, IN_CARE, DECLINED, CLOSED = "new", "referred", "in_care", "declined", "closed"
CASE_STATES: tuple[str, ...] = (NEW, REFERRED, IN_CARE, DECLINED, CLOSED)
CASE_SORTS: tuple[str, ...] = ("last", "first", "signals", "open")
CASE_ORDERS: tuple[str, ...] = ("asc", "desc")
CASE_FILTERS: tuple[str, ...] = ("state", "type", "since", "sort", "order", "offset", "limit")
EVENT_KINDS: tuple[str, ...] = ("match", "referral", "escalation", "reminder")
REFERRAL_TYPES: tuple[str, ...] = ("shelter", "care", "legal_aid")  # who may be referred to
MESSAGE_ITEMS: tuple[str, ...] = ("signal", "referral", "status", "reply")
MAX_PAGE = 200  # cases, referrals or events in one answer
MAX_TIMELINE = 10_000  # entries of one case's timeline a client accepts
MAX_SPLIT = 198  # messages moved by one split
MAX_RECIPIENTS = 16
MAX_COUNT = 2**31 - 1
MAX_EVENT_ID = 2**62

# Timeline entry type -> (fields it must carry, fields it may carry), besides at and type.
TIMELINE_FIELDS: Mapping[str, tuple[frozenset[str], frozenset[str]]] = MappingProxyType(
    {
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
)
# Event kind -> the fields of its detail object.
EVENT_DETAIL: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "match": frozenset({"kind", "sender", "sender_type", "merged", "kept_apart"}),
        "referral": frozenset({"referrer", "recipient"}),
        "escalation": frozenset({"referrer", "recipient", "due"}),
        "reminder": frozenset({"referrer", "recipient", "due"}),
    }
)
_SUMMARY = frozenset(
    {"case", "state", "signals", "first_signal", "last_signal", "orgs", "referrals"}
) | {"open_referrals"}
_ORG_SIGNALS = frozenset({"org", "org_type", "count", "first", "last"})
_REFERRAL = frozenset(
    {"id", "case", "referrer", "recipient", "recipient_type", "step", "step_at", "steps"}
) | {"replaced_by"}
_OPEN = _REFERRAL | {"holder", "age", "waiting", "due", "overdue"}
_ALL_TIMELINE = frozenset({"at", "type"}).union(*(r | o for r, o in TIMELINE_FIELDS.values()))
_NOT_IN_CARE = (machine.SENT, machine.DELIVERED, machine.ACCEPTED)


# -- rules ---------------------------------------------------------------------------------


def state_of(referrals: Mapping[str, int]) -> str:
    """A case's state from how many of its referrals are at each step."""
    if referrals.get(machine.CARE_STARTED):
        return IN_CARE
    if any(referrals.get(step) for step in _NOT_IN_CARE):
        return REFERRED
    if referrals.get(machine.DECLINED):
        return DECLINED
    return CLOSED if referrals.get(machine.CLOSED) else NEW


def open_count(referrals: Mapping[str, int]) -> int:
    """How many referrals are still open, from the count at each step."""
    return sum(n for step, n in referrals.items() if step in machine.OPEN_STEPS)


@dataclass(frozen=True, slots=True)
class Held:
    """A live case that holds some of a new message's pseudonyms."""

    shared: int  # how many of the message's pseudonyms it holds
    created_at: int


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a new message goes: ``case`` (None: a new case), what merges into it, and
    which matching cases stay apart because a coordinator split them off."""

    case: CaseRef | None
    merge: tuple[CaseRef, ...] = ()
    apart: tuple[CaseRef, ...] = ()


def place(
    holding: Mapping[CaseRef, Held],
    kept_apart: Collection[frozenset[str]],
    *,
    target: CaseRef | None = None,
) -> Placement:
    """What a message's pseudonyms mean for the live cases that hold them.

    ``holding`` are those cases; ``kept_apart`` the pairs of them a coordinator keeps
    apart. The message joins ``target`` when given (a referral or status follows its
    case), else the case sharing most pseudonyms with it, then the oldest, then the
    smallest reference. Every other holding case, oldest first, merges into that one
    unless the two are kept apart; a merged case's separations become the target's, so
    a case kept apart from one merged in stays apart too. No holding case and no
    target: a new case.
    """
    if target is None and not holding:
        return Placement(None)
    if target is None:
        target = min(holding, key=lambda ref: (-holding[ref].shared, holding[ref].created_at, ref))
    pairs = set(kept_apart)
    merge: list[CaseRef] = []
    apart: list[CaseRef] = []
    for other in sorted(set(holding) - {target}, key=lambda ref: (holding[ref].created_at, ref)):
        if frozenset((target, other)) in pairs:
            apart.append(other)
            continue
        merge.append(other)
        pairs = {frozenset(target if end == other else end for end in pair) for pair in pairs} - {
            frozenset((target,))
        }
    return Placement(target, tuple(merge), tuple(apart))


# -- records -------------------------------------------------------------------------------


def _steps_wire(steps: Mapping[str, int]) -> dict[str, int]:
    return {step: steps[step] for step in machine.STEPS if step in steps}


@dataclass(frozen=True, slots=True)
class OrgSignals:
    """One organisation's signals in a case (the hub's metadata: who, of which type, when)."""

    org: OrgId
    org_type: str
    count: int
    first: int
    last: int

    def to_wire(self) -> dict[str, Any]:
        return {
            "org": self.org,
            "org_type": self.org_type,
            "count": self.count,
            "first": self.first,
            "last": self.last,
        }


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

    @classmethod
    def of(
        cls, case: CaseRef, orgs: Iterable[OrgSignals], referrals: Mapping[str, int]
    ) -> CaseSummary:
        """The summary whose totals, state and open count follow from its parts."""
        orgs = tuple(orgs)
        return cls(
            case=case,
            state=state_of(referrals),
            signals=sum(o.count for o in orgs),
            first_signal=min((o.first for o in orgs), default=None),
            last_signal=max((o.last for o in orgs), default=None),
            orgs=orgs,
            referrals=MappingProxyType(_steps_wire(referrals)),
            open_referrals=open_count(referrals),
        )

    def to_wire(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "state": self.state,
            "signals": self.signals,
            "first_signal": self.first_signal,
            "last_signal": self.last_signal,
            "orgs": [org.to_wire() for org in self.orgs],
            "referrals": _steps_wire(self.referrals),
            "open_referrals": self.open_referrals,
        }


@dataclass(frozen=True, slots=True)
class CasePage:
    cases: tuple[CaseSummary, ...]
    total: int

    def to_wire(self) -> dict[str, Any]:
        return {"cases": [case.to_wire() for case in self.cases], "total": self.total}


@dataclass(frozen=True, slots=True)
class Referral:
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

    @property
    def holder(self) -> OrgId:
        """Who must take the next step (at an open step)."""
        holds = machine.HOLDER.get(self.step) == machine.RECIPIENT
        return self.recipient if holds else self.referrer

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "case": self.case,
            "referrer": self.referrer,
            "recipient": self.recipient,
            "recipient_type": self.recipient_type,
            "step": self.step,
            "step_at": self.step_at,
            "steps": _steps_wire(self.steps),
            "replaced_by": self.replaced_by,
        }


@dataclass(frozen=True, slots=True)
class OpenReferral:
    """An open referral: who holds the next step, its age, and when that step is due."""

    referral: Referral
    holder: OrgId
    age: int
    waiting: int
    due: int | None
    overdue: bool

    @classmethod
    def at(cls, referral: Referral, *, now: int, due: int | None, overdue: bool) -> OpenReferral:
        """The view of ``referral`` at ``now``: its age since sent, the wait at its step."""
        return cls(
            referral,
            referral.holder,
            age=max(0, now - referral.steps[machine.SENT]),
            waiting=max(0, now - referral.step_at),
            due=due,
            overdue=overdue,
        )

    def to_wire(self) -> dict[str, Any]:
        return {
            **self.referral.to_wire(),
            "holder": self.holder,
            "age": self.age,
            "waiting": self.waiting,
            "due": self.due,
            "overdue": self.overdue,
        }


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

    def to_wire(self) -> dict[str, Any]:
        """Only the fields set: an empty list or None is left out."""
        wire: dict[str, Any] = {"at": self.at, "type": self.type}
        for key in ("message", "sender", "sender_type", "code", "referral", "other"):
            value = getattr(self, key)
            if value is not None:
                wire[key] = value
        if self.recipients:
            wire["recipients"] = list(self.recipients)
        if self.automatic is not None:
            wire["automatic"] = self.automatic
        if self.messages:
            wire["messages"] = list(self.messages)
        return wire


@dataclass(frozen=True, slots=True)
class CaseDetail:
    """One case: ``merged_from`` is the reference asked for when it redirected here."""

    summary: CaseSummary
    merged_from: CaseRef | None
    referrals: tuple[Referral, ...]
    timeline: tuple[TimelineEntry, ...]
    truncated: bool

    def to_wire(self) -> dict[str, Any]:
        wire = self.summary.to_wire()
        if self.merged_from is not None:
            wire["merged_from"] = self.merged_from
        wire["referral_list"] = [r.to_wire() for r in self.referrals]
        wire["timeline"] = [item.to_wire() for item in self.timeline]
        wire["truncated"] = self.truncated
        return wire


@dataclass(frozen=True, slots=True)
class Event:
    """One event of an organisation's feed; ``detail`` holds only the fields of its kind."""

    id: int
    kind: str
    at: int
    case: CaseRef | None
    message: MessageId | None
    step: str | None
    detail: Mapping[str, Any]

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"id": self.id, "kind": self.kind, "at": self.at}
        for key in ("case", "message", "step"):
            value = getattr(self, key)
            if value is not None:
                wire[key] = value
        wire["detail"] = {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in self.detail.items()
        }
        return wire


@dataclass(frozen=True, slots=True)
class EventPage:
    events: tuple[Event, ...]
    next: int

    def to_wire(self) -> dict[str, Any]:
        return {"events": [event.to_wire() for event in self.events], "next": self.next}


# -- reading the wire ----------------------------------------------------------------------


class Fields:
    """One JSON object of a wire record, read field by field.

    Unknown and missing fields are refused; every value is checked for its type, range
    or form. :class:`FieldError` names the record and the field, never the value.
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
            raise FieldError(what, path or "$", "is not an object")
        required, allowed = set(required), set(required) | set(optional)
        missing = sorted(required - value.keys())
        if missing:
            raise self.bad(missing[0], "is missing")
        if value.keys() - allowed:  # its name is the sender's text: not repeated
            raise self.bad("(a field)", "is not a field of this record")
        self.doc: dict[str, Any] = value

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def bad(self, key: str, rule: str) -> FieldError:
        return FieldError(self.what, self.at(key), rule)

    def child(
        self, path: str, value: Any, required: Iterable[str] = (), optional: Iterable[str] = ()
    ) -> Fields:
        return Fields(self.what, value, required, optional, self.at(path))

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


def case_page_from_wire(body: Any, *, limit: int = MAX_PAGE) -> CasePage:
    """``GET /v1/cases``: at most ``limit`` cases, each once, and a total not below them."""
    doc = Fields("case list", body, {"cases", "total"})
    cases = tuple(
        _summary(doc.child(f"cases[{i}]", w, _SUMMARY)) for i, w in doc.array("cases", limit)
    )
    total = doc.number("total", MAX_COUNT)
    if len({c.case for c in cases}) != len(cases):
        raise doc.bad("cases", "names a case twice")
    if total < len(cases):
        raise doc.bad("total", "is less than the cases listed")
    return CasePage(cases, total)


def _summary(doc: Fields) -> CaseSummary:
    orgs = tuple(
        _org_signals(doc.child(f"orgs[{i}]", w, _ORG_SIGNALS))
        for i, w in doc.array("orgs", MAX_COUNT)
    )
    summary = CaseSummary(
        case=doc.case_ref("case"),
        state=doc.choice("state", CASE_STATES),
        signals=doc.number("signals", MAX_COUNT),
        first_signal=doc.optional_number("first_signal"),
        last_signal=doc.optional_number("last_signal"),
        orgs=orgs,
        referrals=doc.steps("referrals", MAX_COUNT),
        open_referrals=doc.number("open_referrals", MAX_COUNT),
    )
    _check_summary(doc, summary)
    return summary


def _org_signals(doc: Fields) -> OrgSignals:
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


def _check_summary(doc: Fields, summary: CaseSummary) -> None:
    """The summary's totals must agree with its parts."""
    orgs = summary.orgs
    if summary.signals != sum(o.count for o in orgs):
        raise doc.bad("signals", "does not add up over orgs")
    if summary.first_signal != min((o.first for o in orgs), default=None):
        raise doc.bad("first_signal", "is not the first of orgs")
    if summary.last_signal != max((o.last for o in orgs), default=None):
        raise doc.bad("last_signal", "is not the last of orgs")
    if len({o.org for o in orgs}) != len(orgs):
        raise doc.bad("orgs", "names an organisation twice")
    if summary.open_referrals != open_count(summary.referrals):
        raise doc.bad("open_referrals", "does not add up over referrals")
    if summary.state != state_of(summary.referrals):
        raise doc.bad("state", "does not follow from referrals")


def _referral(doc: Fields) -> Referral:
    found = Referral(
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
    if found.steps.get(found.step) != found.step_at or machine.SENT not in found.steps:
        raise doc.bad("steps", "do not match step and step_at")
    if found.referrer == found.recipient:
        raise doc.bad("recipient", "is the referrer")
    return found


def referral_list_from_wire(body: Any, *, limit: int = MAX_PAGE) -> tuple[OpenReferral, ...]:
    """``GET /v1/referrals``: open referrals, each with who holds its next step."""
    doc = Fields("referral list", body, {"referrals"})
    items = doc.array("referrals", limit)
    return tuple(_open_referral(doc.child(f"referrals[{i}]", w, _OPEN)) for i, w in items)


def _open_referral(doc: Fields) -> OpenReferral:
    referral = _referral(doc)
    if referral.step not in machine.OPEN_STEPS:
        raise doc.bad("step", "is not an open step")
    found = OpenReferral(
        referral,
        doc.org("holder"),
        doc.number("age"),
        doc.number("waiting"),
        doc.optional_number("due"),
        doc.flag("overdue"),
    )
    if found.holder != referral.holder:
        raise doc.bad("holder", "does not hold the next step")
    if found.overdue and found.due is None:
        raise doc.bad("overdue", "is true without a due time")
    return found


def case_detail_from_wire(body: Any) -> CaseDetail:
    """``GET /v1/cases/{ref}``: the summary, its referrals and its timeline, in time order."""
    doc = Fields(
        "case", body, _SUMMARY | {"referral_list", "timeline", "truncated"}, {"merged_from"}
    )
    summary = _summary(doc)
    referrals = tuple(
        _referral(doc.child(f"referral_list[{i}]", w, _REFERRAL))
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


def _timeline_entry(doc: Fields) -> TimelineEntry:
    kind = doc.choice("type", tuple(TIMELINE_FIELDS))
    required, optional = TIMELINE_FIELDS[kind]
    doc = Fields(doc.what, doc.doc, required | {"at", "type"}, optional, doc.path)
    return TimelineEntry(
        at=doc.number("at"),
        type=kind,
        message=doc.message_id("message") if doc.has("message") else None,
        sender=doc.org("sender") if doc.has("sender") else None,
        sender_type=doc.choice("sender_type", ORG_TYPES) if doc.has("sender_type") else None,
        recipients=tuple(
            OrgId(o)
            for o in doc.ids("recipients", MAX_RECIPIENTS, parse_org_id, "an organisation id")
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


def event_page_from_wire(body: Any, *, after: int = 0, limit: int = MAX_PAGE) -> EventPage:
    """``GET /v1/events``: events in ascending order after ``after``; ``next`` the last."""
    doc = Fields("event feed", body, {"events", "next"})
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


def _event(doc: Fields) -> Event:
    kind = doc.choice("kind", EVENT_KINDS)
    detail = doc.child("detail", doc.doc.get("detail"), EVENT_DETAIL[kind])
    return Event(
        id=doc.number("id", MAX_EVENT_ID, low=1),
        kind=kind,
        at=doc.number("at"),
        case=doc.case_ref("case") if doc.has("case") else None,
        message=doc.message_id("message") if doc.has("message") else None,
        step=doc.choice("step", machine.STEPS) if doc.has("step") else None,
        detail=MappingProxyType(_event_detail(detail, kind)),
    )


def _event_detail(doc: Fields, kind: str) -> dict[str, Any]:
    if kind == "match":
        return {
            "kind": doc.choice("kind", MESSAGE_ITEMS),
            "sender": doc.org("sender"),
            "sender_type": doc.choice("sender_type", ORG_TYPES),
            "merged": tuple(doc.ids("merged", MAX_PAGE, parse_case_ref, "a case reference")),
            "kept_apart": tuple(
                doc.ids("kept_apart", MAX_PAGE, parse_case_ref, "a case reference")
            ),
        }
    found: dict[str, Any] = {"referrer": doc.org("referrer"), "recipient": doc.org("recipient")}
    if doc.has("due"):
        found["due"] = doc.number("due")
    return found
