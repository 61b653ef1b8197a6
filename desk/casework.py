"""The coordinator's pages: cases (casussen), one case, and open referrals (verwijzingen).

Only for a person with the desk role ``coordinator`` at an organisation whose certificate
has the network role ``coordinator``; anyone else gets 404 and nothing is rendered. Hub
requests name the person and the purpose they chose (default ``case-coordination``).

Labels and the message -> case index live in the desk's own database
(:mod:`desk.casebook`), never at the hub. The index is filled as the case views and the
hub's event feed are read: the cases page takes the new ``match`` events in, and opens
(once) a case it has no message of yet; the case page indexes every signal it shows.

URLs carry case references only (random, meaningless outside the hub); message ids that a
split moves travel in the form body. Split, merge and unmerge first show a confirmation
page that says what will happen; only the confirmed post changes anything.
"""

from __future__ import annotations

import logging
import urllib.parse
from dataclasses import dataclass

from aiohttp import web

from desk import referform
from desk.accounts import ROLE_COORDINATOR
from desk.adapter import CaseFile, CaseRow, LibraryError, ReferralRow
from desk.casebook import label_problem
from desk.referform import ReferForm
from desk.sessions import FULL
from desk.urgent import urgent_alerts
from desk.web import (
    FORM,
    Handler,
    acting,
    form_value,
    person_of,
    render,
    require,
    see_other,
    services,
    session_of,
)
from protocol.cases import CASE_ORDERS, CASE_SORTS, CASE_STATES, MAX_SPLIT
from protocol.certificate import ORG_TYPES
from protocol.errors import ProtocolError
from protocol.types import parse_case_ref, parse_message_id

log = logging.getLogger("schakel.desk")

PAGE = 25
PURPOSE = "case-coordination"
EVENT_PAGES = 5  # pages of the event feed one view takes in, at most
FILTERS = ("status", "type", "te-laat", "sorteer", "volgorde")
ACTIONS = ("splitsen", "samenvoegen", "ontkoppelen")


def coordinator(handler: Handler) -> Handler:
    """A page of the coordinator: the person's role and the organisation's, else 404."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        if not services(request).library.is_coordinator:
            raise web.HTTPNotFound()
        return await handler(request)

    return require(FULL, role=ROLE_COORDINATOR)(guarded)


# -- the cases page ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CaseQuery:
    """The cases page's filters, checked; ``errors`` maps a field to a FORM_ERRORS code."""

    state: str | None
    org_type: str | None
    overdue: bool
    sort: str
    order: str
    page: int
    errors: dict[str, str]

    def link(self, **change: str) -> str:
        """This page's query with ``change`` applied (page back to 1 unless given)."""
        params = {
            "status": self.state or "",
            "type": self.org_type or "",
            "te-laat": "1" if self.overdue else "",
            "sorteer": self.sort,
            "volgorde": self.order,
            **change,
        }
        return "/casussen?" + urllib.parse.urlencode({k: v for k, v in params.items() if v})


def case_query(query: web.Request) -> CaseQuery:
    q = query.query
    errors = {}

    def choice(name: str, allowed: tuple[str, ...], default: str | None) -> str | None:
        value = q.get(name, "")
        if not value:
            return default
        if value not in allowed:
            errors[name] = "choose"
            return default
        return value

    state = choice("status", CASE_STATES, None)
    org_type = choice("type", ORG_TYPES, None)
    overdue = choice("te-laat", ("1",), None) == "1"
    sort = choice("sorteer", CASE_SORTS, "last") or "last"
    order = choice("volgorde", CASE_ORDERS, "desc") or "desc"
    raw = q.get("pagina", "1")
    page = int(raw) if raw.isascii() and raw.isdigit() and 0 < int(raw) < 100_000 else 1
    return CaseQuery(state, org_type, overdue, sort, order, page, errors)


@coordinator
async def cases(request: web.Request) -> web.StreamResponse:
    s = services(request)
    query = case_query(request)
    with acting(request, PURPOSE):
        await _take_in_events(request)
        if query.overdue:
            rows, total = await _overdue_cases(request, query)
        else:
            rows, total = await s.library.cases(
                state=query.state,
                org_type=query.org_type,
                sort=query.sort,
                order=query.order,
                offset=(query.page - 1) * PAGE,
                limit=PAGE,
            )
        await _index_unknown(request, rows)
    refs = [r.case for r in rows]
    pages = max(1, -(-total // PAGE))
    return render(
        request,
        "cases.html",
        status=400 if query.errors else 200,
        rows=rows,
        labels=s.casebook.labels(refs),
        urgency=s.casebook.urgency(refs),
        query=query,
        total=total,
        page=min(query.page, pages),
        pages=pages,
        states=CASE_STATES,
        org_types=ORG_TYPES,
        sorts=CASE_SORTS,
    )


async def _overdue_cases(request: web.Request, query: CaseQuery) -> tuple[list[CaseRow], int]:
    """The cases with an overdue referral, filtered and sorted here (the hub can not)."""
    library = services(request).library
    refs = list(dict.fromkeys(r.case for r in await library.open_referrals() if r.overdue))
    rows = [
        r
        for r in await library.cases_of(refs)
        if (query.state is None or r.state == query.state)
        and (query.org_type is None or any(t == query.org_type for _, t in r.orgs))
    ]
    key = {
        "last": lambda r: r.last_activity or 0,
        "first": lambda r: r.first_signal or 0,
        "signals": lambda r: r.signals,
        "open": lambda r: r.open_referrals,
    }[query.sort]
    rows.sort(key=key, reverse=query.order == "desc")
    start = (query.page - 1) * PAGE
    return rows[start : start + PAGE], len(rows)


async def _take_in_events(request: web.Request) -> None:
    """New events into the desk's database: each kept for the events page, and a
    ``match`` into the index (the message's case, its urgency when this desk holds the
    signal, and the cases a match merged moved along)."""
    s = services(request)
    book = s.casebook
    after = book.event_cursor
    for _ in range(EVENT_PAGES):
        events, after_next = await s.library.case_events(after)
        for event in events:
            book.add_event(event.id, event.kind, event.at, event.case, event.message, event.step)
            if event.kind != "match":
                continue
            if event.merged:
                book.moved(event.merged, event.case)
            if event.message is not None:
                book.index(event.message, event.case, s.library.signal_urgency(event.message))
        if after_next <= after:
            break
        book.set_event_cursor(after_next)
        after = after_next


async def _index_unknown(request: web.Request, rows: list[CaseRow]) -> None:
    """Open, once, each listed case the index holds no message of yet."""
    s = services(request)
    for ref in sorted({r.case for r in rows} - s.casebook.indexed(r.case for r in rows)):
        live, signals = await s.library.case_signals(ref)
        for message, urgency in signals:
            s.casebook.index(message, live, urgency)


def _index(request: web.Request, case: CaseFile) -> None:
    book = services(request).casebook
    for entry in case.timeline:
        if entry.type == "signal" and entry.message is not None:
            urgency = (entry.payload or {}).get("urgency")
            book.index(entry.message, case.row.case, urgency if isinstance(urgency, str) else None)


# -- one case ------------------------------------------------------------------------------


def _case_ref(request: web.Request) -> str:
    try:
        return parse_case_ref(request.match_info["ref"])
    except ProtocolError:
        raise web.HTTPNotFound() from None


async def _case_page(
    request: web.Request, ref: str, status: int = 200, **extra: object
) -> web.Response:
    s = services(request)
    with acting(request, PURPOSE):
        case = await s.library.case_file(ref)
    _index(request, case)
    live = case.row.case
    record: dict[str, object] = {
        "case": case,
        "label": s.casebook.labels([live]).get(live, ""),
        "urgency": s.casebook.urgency([live]).get(live),
        "errors": {},
        "values": {},
        "merged_in": _merged_in(case),
    }
    record.update(extra)
    return render(request, "case.html", status=status, **record)


def _merged_in(case: CaseFile) -> list[str]:
    """Cases merged into this one that an unmerge could revive (newest first)."""
    merged = [e.other for e in case.timeline if e.type == "merge" and e.other]
    return list(dict.fromkeys(reversed(merged)))


@coordinator
async def case(request: web.Request) -> web.StreamResponse:
    return await _case_page(request, _case_ref(request))


@coordinator
async def set_label(request: web.Request) -> web.StreamResponse:
    s = services(request)
    ref = _case_ref(request)
    label = form_value(request, "label", 200).strip()
    problem = label_problem(label)
    if problem is not None:
        return await _case_page(
            request, ref, status=400, errors={"label": problem}, values={"label": label}
        )
    with acting(request, PURPOSE):  # a case this coordinator holds, by its live reference
        live = (await s.library.case_file(ref, contents=False)).row.case
    s.casebook.set_label(live, label, person=person_of(request).id, now=s.now())
    log.info("desk case label set by %s", person_of(request).id)
    session_of(request).flash = "case-label"
    raise see_other(f"/casussen/{live}")


@coordinator
async def change(request: web.Request) -> web.StreamResponse:
    """Split, merge or unmerge: the confirmation page first, then (confirmed) the change."""
    s = services(request)
    ref = _case_ref(request)
    action = request.match_info["action"]
    if action not in ACTIONS:
        raise web.HTTPNotFound()
    messages, other, error = _change_input(request, action)
    if error is not None:
        field = "berichten" if action == "splitsen" else f"{action}-zaak"
        return await _case_page(
            request, ref, status=400, errors={field: error}, values={field: other or ""}
        )
    if form_value(request, "bevestigd", 1) != "1":
        with acting(request, PURPOSE):
            case = await s.library.case_file(ref, contents=False)
        return render(
            request,
            "case_confirm.html",
            case=case,
            action=action,
            messages=messages,
            moved=[e for e in case.timeline if e.message in messages and e.type != "delivered"],
            other=other,
        )
    try:
        with acting(request, PURPOSE):
            target = await _apply(request, action, ref, messages, other or "")
    except LibraryError as exc:
        if exc.category not in ("refused", "not-found"):
            raise
        field = "berichten" if action == "splitsen" else f"{action}-zaak"
        return await _case_page(
            request, ref, status=409 if exc.category == "refused" else 404,
            errors={field: "case-refused"}, values={field: other or ""},
        )  # fmt: skip
    log.info("desk case %s by %s", action, person_of(request).id)
    session_of(request).flash = f"case-{action}"
    raise see_other(f"/casussen/{target}")


def _change_input(request: web.Request, action: str) -> tuple[list[str], str | None, str | None]:
    """(messages to split, the other case, an error code) from the posted form."""
    if action == "splitsen":
        raw = [m for m in request[FORM].getall("bericht", []) if isinstance(m, str)]
        if not raw:
            return [], None, "case-none"
        if len(raw) > MAX_SPLIT:
            return [], None, "case-too-many"
        try:
            return sorted({parse_message_id(m) for m in raw}), None, None
        except ProtocolError:
            return [], None, "case-none"
    other = form_value(request, "zaak", 40).strip()
    try:
        parsed = parse_case_ref(other)
    except ProtocolError:
        return [], other, "case-ref"
    if parsed == request.match_info["ref"]:
        return [], other, "case-self"
    return [], parsed, None


async def _apply(
    request: web.Request, action: str, ref: str, messages: list[str], other: str
) -> str:
    """Do the confirmed change; the case to show next. The index follows it."""
    s = services(request)
    if action == "splitsen":
        target = await s.library.split(ref, messages)
    elif action == "samenvoegen":
        await s.library.merge(ref, other)
        s.casebook.moved([other], ref)
        return ref
    else:
        await s.library.unmerge(ref, other)
        target = other
    live, signals = await s.library.case_signals(target)
    for message, urgency in signals:
        s.casebook.index(message, live, urgency)
    return target


# -- refer (verwijzen) ---------------------------------------------------------------------


async def _refer_page(
    request: web.Request, ref: str, form: ReferForm | None = None, status: int = 200
) -> web.Response:
    s = services(request)
    with acting(request, PURPOSE):
        case = await s.library.case_file(ref)
        recipients = await s.library.referral_recipients()
    _index(request, case)
    about = referform.known(case.timeline)
    if form is None:
        values = {"vervangt": about.declined[-1] if about.declined else ""}
        form = ReferForm(values=values)
    return render(
        request,
        "refer.html",
        status=status,
        case=case,
        label=s.casebook.labels([case.row.case]).get(case.row.case, ""),
        known=about,
        recipients=recipients,
        form=form,
        services=referform.SERVICES,
        urgencies=referform.URGENCIES,
    )


@coordinator
async def refer_form(request: web.Request) -> web.StreamResponse:
    return await _refer_page(request, _case_ref(request))


@coordinator
async def refer(request: web.Request) -> web.StreamResponse:
    """Send a referral about the case, filled with the person's best-known details."""
    s = services(request)
    ref = _case_ref(request)
    with acting(request, PURPOSE):
        case = await s.library.case_file(ref)
        recipients = await s.library.referral_recipients()
    posted = request[FORM]
    about = referform.known(case.timeline)
    form = referform.read(posted, recipients=tuple(org for org, _ in recipients), case=about)
    if form.payload is None:
        return await _refer_page(request, ref, form, status=400)
    try:
        with acting(request, PURPOSE):
            sending = await s.library.send_referral(
                form.payload,
                form.values["naar"],
                case=case.row.case,
                replaces=form.values["vervangt"] or None,
            )
    except LibraryError as exc:
        if exc.category not in ("refused", "not-found"):
            raise
        form.errors["naar"] = "refer-refused"
        return await _refer_page(request, ref, form, status=409)
    log.info("desk referral sent by %s", person_of(request).id)
    session_of(request).flash = "case-referred-waiting" if sending.waiting else "case-referred"
    raise see_other(f"/casussen/{case.row.case}")


# -- open referrals ------------------------------------------------------------------------


@coordinator
async def referrals(request: web.Request) -> web.StreamResponse:
    s = services(request)
    with acting(request, PURPOSE):
        rows: list[ReferralRow] = await s.library.open_referrals()
    return render(
        request,
        "referrals.html",
        rows=rows,
        labels=s.casebook.labels(r.case for r in rows),
    )


# -- events (gebeurtenissen) ---------------------------------------------------------------


async def _events_page(request: web.Request, template: str) -> web.Response:
    s = services(request)
    with acting(request, PURPOSE):
        await _take_in_events(request)
    rows = s.casebook.events()
    return render(
        request,
        template,
        rows=rows,
        urgent=urgent_alerts(s),
        labels=s.casebook.labels({r.case for r in rows if r.case}),
    )


@coordinator
async def events(request: web.Request) -> web.StreamResponse:
    """Unopened signals of high urgency, then matches, referral steps and escalations,
    newest first, each with its case."""
    return await _events_page(request, "events.html")


@coordinator
async def events_rows(request: web.Request) -> web.StreamResponse:
    """The events alone, for the live page to swap in (htmx): after the desk's event
    stream says something arrived, and once a minute (escalations arrive without a
    message)."""
    return await _events_page(request, "_events_rows.html")


def routes() -> list[web.RouteDef]:
    return [
        web.get("/casussen", cases),
        web.get("/casussen/{ref}", case),
        web.post("/casussen/{ref}/label", set_label),
        web.get("/casussen/{ref}/verwijzen", refer_form),
        web.post("/casussen/{ref}/verwijzen", refer),
        web.post("/casussen/{ref}/{action}", change),
        web.get("/verwijzingen", referrals),
        web.get("/gebeurtenissen", events),
        web.get("/gebeurtenissen/lijst", events_rows),
    ]
