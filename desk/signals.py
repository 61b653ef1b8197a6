"""A new signal: the form, the check-your-answers page, and sending.

The form posts to itself; with errors it comes back with every value kept, each error
next to its field and summarised at the top. Without errors the signal waits in the
person's server-side session (never in the page or a URL) and the check page shows it,
with a warning when nothing in it can link it to another signal; sending asks for one
more press (and, without an identifier, a tick that says so). The signal is sealed and
sent as the person, with their purpose.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

from aiohttp import web

from desk import signalform
from desk.adapter import LibraryError
from desk.i18n import ZONE
from desk.sessions import FULL
from desk.vocabulary import countries
from desk.web import FORM, acting, form_value, render, require, see_other, services, session_of

log = logging.getLogger("schakel.desk")

DRAFT = "signal"  # the key of the draft in the session's scratch
# Where a schema error's JSON path points on the form (the library's last check).
FIELD_OF_PATH = {
    "$.person.bsn": "bsn",
    "$.person.given_names": "given_names",
    "$.person.family_name": "family_name",
    "$.person.date_of_birth": "date_of_birth",
    "$.person.phone": "phone",
    "$.person.document_number": "document_number",
    "$.person.document_country": "document_country",
    "$.person.nationality": "nationality",
    "$.reporter.phone": "reporter_phone",
    "$.reporter.email": "reporter_email",
    "$.observed_place": "observed_place",
    "$.text": "text",
}


def _today(now: float) -> datetime.date:
    return datetime.datetime.fromtimestamp(now, tz=ZONE).date()


async def _recipients(request: web.Request) -> tuple[tuple[str, ...], str | None]:
    s = services(request)
    try:
        with acting(request, "signal-intake"):
            return await s.library.signal_recipients(), None
    except LibraryError as exc:
        return (), exc.category


def _form_page(
    request: web.Request,
    form: signalform.SignalForm,
    recipients: tuple[str, ...],
    problem: str | None,
    status: int = 200,
) -> web.Response:
    session = session_of(request)
    from desk.i18n import Formats

    territories = dict(Formats(session.locale).locale.territories)
    if not form.recipients and len(recipients) == 1:
        form.recipients = list(recipients)
    return render(
        request,
        "signal_form.html",
        status=status,
        form=form,
        recipients=recipients,
        problem=problem,
        countries=countries(territories),
    )


@require(FULL)
async def new_signal(request: web.Request) -> web.StreamResponse:
    recipients, problem = await _recipients(request)
    draft = session_of(request).scratch.get(DRAFT)
    form = draft if isinstance(draft, signalform.SignalForm) and "wijzig" in request.query else None
    return _form_page(request, form or signalform.empty(), recipients, problem)


@require(FULL)
async def post_signal(request: web.Request) -> web.StreamResponse:
    s = services(request)
    recipients, problem = await _recipients(request)
    posted = request[FORM]
    form = signalform.read(
        posted,
        [v for v in posted.getall("indicators", []) if isinstance(v, str)],
        [v for v in posted.getall("recipients", []) if isinstance(v, str)],
        allowed_recipients=recipients,
        today=_today(s.clock()),
    )
    if form.ok and form.payload is not None:
        try:
            s.library.check_signal(form.payload)
        except LibraryError as exc:
            form.errors[FIELD_OF_PATH.get(exc.field, "text")] = "invisible"
            form.payload = None
    if not form.ok:
        return _form_page(request, form, recipients, problem, status=400)
    session_of(request).scratch[DRAFT] = form
    raise see_other("/signaal/controleren")


@require(FULL)
async def check_page(request: web.Request) -> web.StreamResponse:
    form = session_of(request).scratch.get(DRAFT)
    if not isinstance(form, signalform.SignalForm) or form.payload is None:
        raise see_other("/signaal/nieuw")
    return render(
        request, "signal_check.html", form=form, payload=form.payload, problem=None, notice=None
    )


@require(FULL)
async def send(request: web.Request) -> web.StreamResponse:
    s = services(request)
    session = session_of(request)
    form = session.scratch.get(DRAFT)
    if not isinstance(form, signalform.SignalForm) or form.payload is None:
        raise see_other("/signaal/nieuw")
    payload: dict[str, Any] = form.payload
    if not form.linkable and form_value(request, "zonder_kenmerk", 3) != "ja":
        return render(
            request,
            "signal_check.html",
            status=400,
            form=form,
            payload=payload,
            problem=None,
            notice="no-link",
        )
    try:
        with acting(request, "signal-intake"):
            outcome = await s.library.send_signal(
                payload, form.recipients, unlinked=not form.linkable
            )
    except LibraryError as exc:
        log.warning("desk could not send a signal: %s", exc.category)
        return render(
            request,
            "signal_check.html",
            status=503 if exc.category == "unreachable" else 502,
            form=form,
            payload=payload,
            problem=exc.category,
            notice=None,
        )
    session.scratch.pop(DRAFT, None)
    session.flash = "queued" if outcome.waiting else "sent"
    raise see_other("/verzonden")


@require(FULL)
async def discard(request: web.Request) -> web.StreamResponse:
    session_of(request).scratch.pop(DRAFT, None)
    raise see_other("/postvak")


def routes() -> list[web.RouteDef]:
    return [
        web.get("/signaal/nieuw", new_signal),
        web.post("/signaal/nieuw", post_signal),
        web.get("/signaal/controleren", check_page),
        web.post("/signaal/versturen", send),
        web.post("/signaal/weggooien", discard),
    ]
