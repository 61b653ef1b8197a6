"""The inbox (postvak), one message, and answering a referral.

The inbox lists what this organisation received, newest first, from the desk's local
copy (no hub request: nothing is decrypted for a list); a message is opened by re-reading
it from the hub as the person (the access log names them), then decrypted here. URLs
carry only the message id, which means nothing outside the network.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from dataclasses import dataclass

from aiohttp import web

from desk.adapter import (
    DeliveryAlerts,
    InboxRow,
    LibraryError,
    MessageView,
    Step,
    problem_status,
)
from desk.i18n import ZONE
from desk.sessions import FULL
from desk.signalform import invisible
from desk.urgent import UrgentAlert, urgent_alerts
from desk.vocabulary import DECLINE_REASONS, STATUS_ACTIONS
from desk.web import (
    acting,
    form_value,
    person_of,
    render,
    require,
    see_other,
    services,
    session_of,
)
from protocol.errors import ProtocolError
from protocol.pseudonym import normalise_date
from protocol.types import parse_message_id

log = logging.getLogger("schakel.desk")

PAGE = 25
LIVE_PING_SECONDS = 20.0


@dataclass(frozen=True, slots=True)
class InboxPage:
    rows: list[InboxRow]
    unread: set[str]
    page: int
    pages: int
    total: int
    alerts: DeliveryAlerts
    urgent: list[UrgentAlert]


def _page_number(request: web.Request) -> int:
    raw = request.query.get("pagina", "1")
    return int(raw) if raw.isascii() and raw.isdigit() and 0 < int(raw) < 100_000 else 1


def inbox_page(request: web.Request) -> InboxPage:
    s = services(request)
    page = _page_number(request)
    rows, total = s.library.inbox((page - 1) * PAGE, PAGE)
    pages = max(1, -(-total // PAGE))
    unread = {r.id for r in rows} - s.accounts.read_by(person_of(request).id, (r.id for r in rows))
    alerts = s.library.delivery_alerts()
    return InboxPage(rows, unread, min(page, pages), pages, total, alerts, urgent_alerts(s))


@require(FULL)
async def inbox(request: web.Request) -> web.StreamResponse:
    return render(request, "inbox.html", inbox=inbox_page(request))


@require(FULL)
async def inbox_rows(request: web.Request) -> web.StreamResponse:
    """The inbox's table alone, for the live page to swap in (htmx)."""
    return render(request, "_inbox_rows.html", inbox=inbox_page(request))


@require(FULL)
async def live(request: web.Request) -> web.StreamResponse:
    """Server-sent events: 'changed' when the inbox changed, a comment now and then.

    Ends when the session does (checked at every ping), so a page left open does not
    keep a session alive; it never counts as activity.
    """
    s = services(request)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    try:
        listening = s.broadcast.listen()
        queue = await listening.__aenter__()
    except OverflowError:
        raise web.HTTPServiceUnavailable() from None
    try:
        await response.prepare(request)
        await response.write(b"retry: 5000\n\n")
        cookie = request.cookies.get(s.cookie)
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), LIVE_PING_SECONDS)
                await response.write(f"event: {event}\ndata: -\n\n".encode())
            except TimeoutError:
                await response.write(b": ping\n\n")
            if s.sessions.get(cookie, touch=False) is None:
                break
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        await listening.__aexit__(None, None, None)
    return response


def _message_id(request: web.Request) -> str:
    try:
        return parse_message_id(request.match_info["id"])
    except ProtocolError:
        raise web.HTTPNotFound() from None


@require(FULL)
async def message(request: web.Request) -> web.StreamResponse:
    s = services(request)
    person = person_of(request)
    message_id = _message_id(request)
    if not s.library.is_ours(message_id):
        raise web.HTTPNotFound()
    try:
        with acting(request, "signal-intake"):
            view = await s.library.open_message(message_id)
    except LibraryError as exc:
        log.warning("desk could not open a message: %s", exc.category)
        return render(request, "problem.html", status=_status(exc), problem=exc.category)
    s.accounts.mark_read(message_id, person.id, now=s.now())
    return render(request, "message.html", message=view, actions=_actions(view.step))


_status = problem_status


def _actions(step: Step | None) -> tuple[str, ...]:
    return () if step is None else tuple(c for c in step.allowed if c in STATUS_ACTIONS)


# -- answering a referral ------------------------------------------------------------------


@require(FULL)
async def answer_page(request: web.Request) -> web.StreamResponse:
    view = await _referral(request)
    return render(
        request,
        "answer.html",
        message=view,
        actions=_actions(view.step),
        values={
            "code": request.query.get("stap", ""),
            "explanation": "",
            "reason": "",
            "started": "",
        },
        errors={},
    )


async def _referral(request: web.Request) -> MessageView:
    s = services(request)
    message_id = _message_id(request)
    if not s.library.is_ours(message_id):
        raise web.HTTPNotFound()
    with acting(request, "referral"):
        view = await s.library.open_message(message_id)  # LibraryError: a problem page
    if view.kind != "referral":
        raise web.HTTPNotFound()
    return view


@require(FULL)
async def answer(request: web.Request) -> web.StreamResponse:
    """Check and send an answer. Only local state is needed (the referral's sender, date
    and step), so that an answer written while the hub is away waits in the outbox."""
    s = services(request)
    view = s.library.local_referral(_message_id(request))
    if view is None:
        raise web.HTTPNotFound()
    actions = _actions(view.step)
    values = {
        "code": form_value(request, "stap", 20),
        "explanation": form_value(request, "toelichting", 4000),
        "reason": form_value(request, "reden", 40),
        "started": form_value(request, "gestart", 10).strip(),
    }
    errors, payload = check_answer(values, actions, view.created, today=_today(s.clock()))
    if payload is None:
        return render(
            request,
            "answer.html",
            status=400,
            message=view,
            actions=actions,
            values=values,
            errors=errors,
        )
    try:
        with acting(request, "referral"):
            outcome = await s.library.answer_referral(view.id, values["code"], payload)
    except LibraryError as exc:
        log.warning("desk could not answer a referral: %s", exc.category)
        errors["form"] = exc.category
        return render(
            request,
            "answer.html",
            status=_status(exc),
            message=view,
            actions=actions,
            values=values,
            errors=errors,
        )
    session_of(request).flash = "answer-queued" if outcome.waiting else "answered"
    raise see_other(f"/bericht/{view.id}" if not outcome.waiting else "/verzonden")


def _today(now: float) -> datetime.date:
    return datetime.datetime.fromtimestamp(now, tz=ZONE).date()


def check_answer(
    values: dict[str, str],
    actions: tuple[str, ...],
    referral_created: int,
    *,
    today: datetime.date,
) -> tuple[dict[str, str], dict[str, object] | None]:
    """(errors by field, the status payload when there are none)."""
    errors: dict[str, str] = {}
    code = values["code"]
    if code not in actions:
        errors["stap"] = "code"
    explanation = values["explanation"].strip()
    if not explanation or len(explanation) > 4000:
        errors["toelichting"] = "explanation"
    elif invisible(explanation, multiline=True):
        errors["toelichting"] = "invisible"
    payload: dict[str, object] = {
        "schema": "schakel.status/1",
        "status": code,
        "explanation": explanation.replace("\r\n", "\n"),
    }
    if code == "declined":
        if values["reason"] not in DECLINE_REASONS:
            errors["reden"] = "reason"
        payload["reason_code"] = values["reason"]
    if code == "care_started":
        started = _care_date(values["started"], referral_created, today, errors)
        if started is not None:
            payload["care_started_on"] = started
    return errors, (None if errors else payload)


def _care_date(
    text: str, referral_created: int, today: datetime.date, errors: dict[str, str]
) -> str | None:
    try:
        day = datetime.date.fromisoformat(normalise_date(text))
    except (ProtocolError, ValueError):
        errors["gestart"] = "date"
        return None
    sent_on = datetime.datetime.fromtimestamp(referral_created, tz=ZONE).date()
    if day < sent_on:
        errors["gestart"] = "date-early"
        return None
    if day > today:
        errors["gestart"] = "date-future"
        return None
    return day.isoformat()


def routes() -> list[web.RouteDef]:
    return [
        web.get("/", root),
        web.get("/postvak", inbox),
        web.get("/postvak/lijst", inbox_rows),
        web.get("/postvak/live", live),
        web.get("/bericht/{id}", message),
        web.get("/bericht/{id}/antwoord", answer_page),
        web.post("/bericht/{id}/antwoord", answer),
    ]


async def root(request: web.Request) -> web.StreamResponse:
    raise see_other("/postvak")
