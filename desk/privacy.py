"""The privacy officer's pages: the access log (toegangslogboek), the access-log check
(controle) and the subject report (inzageverzoek).

Only for a person with the desk role ``privacy_officer`` at an organisation whose
certificate holds a privacy officer role (``privacy_officer`` or
``network_privacy_officer``); anyone else gets 404 and nothing is rendered. Hub requests
name the person and the purpose they chose (default ``audit``).

The access log page lists one page of the entries this organisation may see, filtered by
person, action, object type and period, each entry's inclusion proof checked against a
fresh signed head (the page says so), with who cosigned that head. Filters are query
fields, each checked and refused next to its field.

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
import urllib.parse
from dataclasses import dataclass

from aiohttp import web

from desk.accounts import ROLE_PRIVACY_OFFICER
from desk.adapter import ANOMALY_THRESHOLD, AnomalyRow, LibraryError, LogCheck, SubjectReport
from desk.i18n import ZONE, Formats
from desk.messages import AUDIT_ERRORS, FORM_ERRORS
from desk.sessions import FULL
from desk.signalform import SUBJECT_FIELDS, invisible, read_identity
from desk.vocabulary import countries
from desk.web import (
    FORM,
    Handler,
    acting,
    form_value,
    person_of,
    render,
    require,
    services,
    session_of,
)
from protocol.auditlog import ACTIONS, OBJECT_TYPES
from protocol.errors import ValidationError
from protocol.pseudonym import normalise_date

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


LOG_PAGE = 25
LOG_FILTERS = ("persoon", "handeling", "type", "van", "tot")
MAX_INDEX = 10**12


@dataclass(frozen=True, slots=True)
class LogQuery:
    """The access log page's filters as typed, checked; ``errors`` maps a field to a code."""

    typed: dict[str, str]
    user: str | None
    action: str | None
    object_type: str | None
    since: int | None
    until: int | None
    start: int
    errors: dict[str, str]

    def link(self, start: int) -> str:
        """This page's filters, continuing from ``start``."""
        params = {**self.typed, "vanaf": str(start)}
        return "/toegangslogboek?" + urllib.parse.urlencode({k: v for k, v in params.items() if v})


def _day_start(typed: str, errors: dict[str, str], name: str) -> int | None:
    """Midnight (Amsterdam) at the start of the day typed, in seconds; None when empty."""
    if not typed:
        return None
    try:
        day = datetime.date.fromisoformat(normalise_date(typed))
    except ValidationError:
        errors[name] = "date"
        return None
    return int(datetime.datetime.combine(day, datetime.time(), tzinfo=ZONE).timestamp())


def log_query(request: web.Request) -> LogQuery:
    q = request.query
    typed = {name: q.get(name, "")[:101] for name in LOG_FILTERS}
    errors: dict[str, str] = {}
    user = typed["persoon"] or None
    if user is not None and len(user) > 100:
        errors["persoon"] = "too-long"
    elif user is not None and invisible(user, multiline=False):
        errors["persoon"] = "invisible"
    action = typed["handeling"] or None
    if action is not None and action not in ACTIONS:
        errors["handeling"] = "choose"
    object_type = typed["type"] or None
    if object_type is not None and object_type not in OBJECT_TYPES:
        errors["type"] = "choose"
    since = _day_start(typed["van"], errors, "van")
    until = _day_start(typed["tot"], errors, "tot")
    if until is not None:
        until += 86_400 - 1  # the whole day typed
    if since is not None and until is not None and until < since:
        errors["tot"] = "period"
    raw = q.get("vanaf", "0")
    start = int(raw) if raw.isascii() and raw.isdigit() and int(raw) < MAX_INDEX else 0
    return LogQuery(typed, user, action, object_type, since, until, start, errors)


@privacy_officer
async def access_log(request: web.Request) -> web.StreamResponse:
    query = log_query(request)
    page = None
    if not query.errors:
        filters: dict[str, str | int | None] = {"user": query.user, "action": query.action}
        filters |= {"since": query.since, "until": query.until}
        with acting(request, PURPOSE):
            page = await services(request).library.access_log(
                start=query.start, limit=LOG_PAGE, object_type=query.object_type, filters=filters
            )
    return render(
        request,
        "toegangslogboek.html",
        status=400 if query.errors else 200,
        query=query,
        page=page,
        actions=ACTIONS,
        object_types=OBJECT_TYPES,
        log_errors=SUBJECT_ERRORS,
    )


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
    fmt = form_value(request, "formaat", 8)
    if fmt == "csv":
        log.info("desk subject report downloaded as CSV by %s", person_of(request).id)
        return attachment(report.csv, "text/csv", f"inzageverzoek-{today_iso(request)}.csv")
    if fmt == "afdruk":
        log.info("desk subject report downloaded for print by %s", person_of(request).id)
        return printable(request, report, "subject", f"inzageverzoek-{today_iso(request)}.html")
    return _subject_page(request, typed, {}, report)


def today_iso(request: web.Request) -> str:
    return datetime.datetime.fromtimestamp(services(request).clock(), tz=ZONE).date().isoformat()


def attachment(text: str, content_type: str, filename: str) -> web.Response:
    """A download: ``filename`` is the desk's own (letters, digits, dashes and a dot)."""
    return web.Response(
        text=text,
        content_type=content_type,
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def printable(
    request: web.Request, report: SubjectReport, kind: str, filename: str, about: str = ""
) -> web.Response:
    """The report as one self-contained HTML file to print or keep (its own print styles,
    no script, nothing fetched), as a download. A whole document, though its template's
    name starts with ``_``: rendering it leaves the session's notice for the next page."""
    page = render(
        request,
        "_report_print.html",
        report=report,
        kind=kind,
        about=about,
        made=services(request).clock(),
        asked_by=person_of(request).id,
    )
    assert page.text is not None
    return attachment(page.text, "text/html", filename)


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
        web.get("/toegangslogboek", access_log),
        web.get("/controle", check),
        web.get("/inzageverzoek", subject_form),
        web.post("/inzageverzoek", subject_report),
    ]
