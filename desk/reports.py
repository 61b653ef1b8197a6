"""The privacy officer's reports: one user's accesses (gebruikersrapport), anomalies with
their thresholds (afwijkingen), the access-log export, and the printable subject report.

Only for the privacy officer (as :mod:`desk.privacy`: anyone else gets 404). Every report
starts from a fresh signed head and proves each entry it lists against it.

* The user report takes a user name (and, for a network privacy officer, the
  organisation) as query fields, checked and refused next to the field; it is shown on
  the page, or downloaded as CSV or as a printable HTML file. A user name is an
  employee's account, not a data subject's identifier: it may stand in an address (the
  access log's filter does the same); the desk's logs never name it.
* Anomalies: the number of distinct objects a person may touch a day, and the number
  of refused reads before they are shown, both fields of the form.
* The export is ``schakel audit export``'s NDJSON file with an inclusion proof per entry,
  every line checked before the download starts (:meth:`desk.adapter.Library.export_log`).
* The subject report's printable file is made from the same posted form as the page
  (:mod:`desk.privacy`): identifiers are never in an address.

Downloads are attachments with fixed names (and the date), ``Cache-Control: no-store``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiohttp import web

from desk.adapter import SubjectReport
from desk.messages import AUDIT_ERRORS, FORM_ERRORS
from desk.privacy import (
    MAX_THRESHOLD,
    PURPOSE,
    attachment,
    printable,
    privacy_officer,
    threshold_of,
    today_iso,
)
from desk.signalform import invisible
from desk.web import SECURITY_HEADERS, acting, person_of, render, services
from protocol.errors import ProtocolError
from protocol.types import parse_org_id

log = logging.getLogger("schakel.desk")

REPORT_ERRORS = {**FORM_ERRORS, **AUDIT_ERRORS}
MAX_USER = 100
EXPORT_CHUNK = 64 * 1024


# -- one user's accesses -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserQuery:
    """The user report's fields as typed; ``errors`` maps a field to a code."""

    user: str
    org: str
    errors: dict[str, str]

    @property
    def asked(self) -> bool:
        return bool(self.user) and not self.errors


def user_query(request: web.Request) -> UserQuery:
    user = request.query.get("persoon", "")[: MAX_USER + 1].strip()
    org = request.query.get("organisatie", "")[:65].strip()
    errors: dict[str, str] = {}
    if "persoon" in request.query and not user:
        errors["persoon"] = "user-required"
    elif len(user) > MAX_USER:
        errors["persoon"] = "too-long"
    elif invisible(user, multiline=False):
        errors["persoon"] = "invisible"
    if org:
        try:
            org = parse_org_id(org)
        except ProtocolError:
            errors["organisatie"] = "org"
    return UserQuery(user, org, errors)


async def _user_report(request: web.Request, query: UserQuery) -> SubjectReport | None:
    if not query.asked:
        return None
    with acting(request, PURPOSE):
        return await services(request).library.user_report(query.user, query.org or None)


@privacy_officer
async def user_report(request: web.Request) -> web.StreamResponse:
    query = user_query(request)
    report = await _user_report(request, query)
    fmt = request.query.get("formaat", "")
    if report is not None and fmt == "csv":
        log.info("desk user report downloaded as CSV by %s", person_of(request).id)
        return attachment(report.csv, "text/csv", f"gebruikersrapport-{today_iso(request)}.csv")
    if report is not None and fmt == "afdruk":
        log.info("desk user report downloaded for print by %s", person_of(request).id)
        filename = f"gebruikersrapport-{today_iso(request)}.html"
        return printable(request, report, "user", filename, about=query.user)
    return render(
        request,
        "gebruikersrapport.html",
        status=400 if query.errors else 200,
        query=query,
        report=report,
        report_errors=REPORT_ERRORS,
        network_officer=services(request).library.is_network_privacy_officer,
    )


# -- anomalies -----------------------------------------------------------------------------


def refused_of(request: web.Request) -> tuple[str, int | None]:
    """The fewest refused reads shown, as typed and as a number (None: not valid)."""
    raw = request.query.get("geweigerd", "1")[:20]
    if raw.isascii() and raw.isdigit() and 0 < int(raw) <= MAX_THRESHOLD:
        return raw, int(raw)
    return raw, None


@privacy_officer
async def anomalies(request: web.Request) -> web.StreamResponse:
    typed, threshold = threshold_of(request)
    typed_refused, refused = refused_of(request)
    errors = {}
    if threshold is None:
        errors["drempel"] = "threshold"
    if refused is None:
        errors["geweigerd"] = "threshold"
    found = None
    if not errors:
        assert threshold is not None and refused is not None
        with acting(request, PURPOSE):
            rows = await services(request).library.anomalies(threshold)
        found = [r for r in rows if r.kind == "volume" or r.count >= refused]
    return render(
        request,
        "afwijkingen.html",
        status=400 if errors else 200,
        anomalies=found,
        values={"drempel": typed, "geweigerd": typed_refused},
        errors=errors,
        report_errors=REPORT_ERRORS,
    )


# -- the export ----------------------------------------------------------------------------


@privacy_officer
async def export(request: web.Request) -> web.StreamResponse:
    """The access-log export, checked whole before the first byte is sent."""
    with acting(request, PURPOSE):
        made = await services(request).library.export_log()
    filename = f"toegangslogboek-{made.size}-{today_iso(request)}.ndjson"
    try:
        response = web.StreamResponse(
            headers={
                **SECURITY_HEADERS,
                "Cache-Control": "no-store",
                "Content-Type": "application/x-ndjson",
                "Content-Disposition": f'attachment; filename="{filename}"',
            }
        )
        await response.prepare(request)
        while chunk := made.file.read(EXPORT_CHUNK):
            await response.write(chunk)
        await response.write_eof()
    finally:
        made.file.close()
    log.info("desk access-log export (%d entries) by %s", made.entries, person_of(request).id)
    return response


def routes() -> list[web.RouteDef]:
    return [
        web.get("/gebruikersrapport", user_report),
        web.get("/afwijkingen", anomalies),
        web.get("/toegangslogboek/export", export),
    ]
