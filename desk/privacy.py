"""The privacy officer's pages: the access-log check (controle) and the subject report
(inzageverzoek).

Only for a person with the desk role ``privacy_officer`` at an organisation whose
certificate holds a privacy officer role (``privacy_officer`` or
``network_privacy_officer``); anyone else gets 404 and nothing is rendered. Hub requests
name the person and the purpose they chose (default ``audit``).

The check page verifies the access log against a fresh signed tree head (as
``schakel audit verify`` does), lists the anomalies (people touching more than the
threshold of distinct objects in a day, and denied reads) and the split-view alerts the
client raised. A log that does not verify is the page's result, said in words, not
an error page. The threshold is a query field, checked and shown next to the field when bad.

The subject report takes the person's identifiers from a posted form only (never a URL,
never a log line), and only under the purpose ``data-subject-request``: the pseudonyms
are derived here, and every access to the messages carrying them is listed, each proven
against the signed head, on the page or as a CSV download (the same form posted again).
"""

from __future__ import annotations

import datetime
import logging

from aiohttp import web

from desk.accounts import ROLE_PRIVACY_OFFICER
from desk.adapter import ANOMALY_THRESHOLD, AnomalyRow, LibraryError, LogCheck, SubjectReport
from desk.i18n import ZONE, Formats
from desk.messages import AUDIT_ERRORS, FORM_ERRORS
from desk.sessions import FULL
from desk.signalform import SUBJECT_FIELDS, read_identity
from desk.vocabulary import countries
from desk.web import FORM, Handler, acting, form_value, render, require, services, session_of

log = logging.getLogger("schakel.desk")

PURPOSE = "audit"
SUBJECT_PURPOSE = "data-subject-request"
SUBJECT_ERRORS = {**FORM_ERRORS, **AUDIT_ERRORS}
MAX_THRESHOLD = 100_000


def privacy_officer(handler: Handler) -> Handler:
    """A page of the privacy officer: the person's role and the organisation's, else 404."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        if not services(request).library.is_privacy_officer:
            raise web.HTTPNotFound()
        return await handler(request)

    return require(FULL, role=ROLE_PRIVACY_OFFICER)(guarded)


def threshold_of(request: web.Request) -> tuple[str, int | None]:
    """The anomaly threshold as typed (for the field) and as a number (None: not valid)."""
    raw = request.query.get("drempel", str(ANOMALY_THRESHOLD))[:20]
    if raw.isascii() and raw.isdigit() and 0 < int(raw) <= MAX_THRESHOLD:
        return raw, int(raw)
    return raw, None


@privacy_officer
async def check(request: web.Request) -> web.StreamResponse:
    library = services(request).library
    typed, threshold = threshold_of(request)
    verified: LogCheck | None = None
    anomalies: list[AnomalyRow] | None = None
    with acting(request, PURPOSE):
        try:
            verified = await library.verify_log()
        except LibraryError as exc:
            if exc.category not in ("log", "verification"):
                raise
            log.warning("desk: the access log did not verify: %s", exc.category)
        if verified is not None and threshold is not None:
            anomalies = await library.anomalies(threshold)
    return render(
        request,
        "controle.html",
        status=200 if threshold is not None else 400,
        verified=verified,
        anomalies=anomalies,
        threshold=typed,
        threshold_error=None if threshold is not None else "threshold",
        max_threshold=MAX_THRESHOLD,
        split_views=library.split_views(),
    )


@privacy_officer
async def subject_form(request: web.Request) -> web.StreamResponse:
    return _subject_page(request, dict.fromkeys(SUBJECT_FIELDS, ""), {}, None)


@privacy_officer
async def subject_report(request: web.Request) -> web.StreamResponse:
    s = services(request)
    today = datetime.datetime.fromtimestamp(s.clock(), tz=ZONE).date()
    form = request[FORM]
    typed, identity, errors = read_identity(form, today=today)
    if session_of(request).purpose != SUBJECT_PURPOSE:
        errors = {"purpose": "purpose"}
    if identity is None or errors:
        return _subject_page(request, typed, errors, None, status=400)
    with acting(request, SUBJECT_PURPOSE):
        report = await s.library.subject_report(identity)
    if form_value(request, "formaat", 8) == "csv":
        return web.Response(
            text=report.csv,
            content_type="text/csv",
            charset="utf-8",
            headers={"Content-Disposition": 'attachment; filename="inzageverzoek.csv"'},
        )
    return _subject_page(request, typed, {}, report)


def _subject_page(
    request: web.Request,
    typed: dict[str, str],
    errors: dict[str, str],
    report: SubjectReport | None,
    *,
    status: int = 200,
) -> web.StreamResponse:
    return render(
        request,
        "inzageverzoek.html",
        status=status,
        values=typed,
        errors=errors,
        summary=[(name, errors[name]) for name in ("purpose", *SUBJECT_FIELDS) if name in errors],
        report=report,
        subject_errors=SUBJECT_ERRORS,
        purpose_ok=session_of(request).purpose == SUBJECT_PURPOSE,
        countries=countries(dict(Formats(session_of(request).locale).locale.territories)),
    )


def routes() -> list[web.RouteDef]:
    return [
        web.get("/controle", check),
        web.get("/inzageverzoek", subject_form),
        web.post("/inzageverzoek", subject_report),
    ]
