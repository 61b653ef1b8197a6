"""The privacy officer's pages: the access-log check (controle).

Only for a person with the desk role ``privacy_officer`` at an organisation whose
certificate holds a privacy officer role (``privacy_officer`` or
``network_privacy_officer``); anyone else gets 404 and nothing is rendered. Hub requests
name the person and the purpose they chose (default ``audit``).

The check page verifies the access log against a fresh signed tree head (as
``schakel audit verify`` does), lists the anomalies (people touching more than the
threshold of distinct objects in a day, and denied reads) and the split-view alerts the
client raised. A log that does not verify is the page's result, said in words, not
an error page. The threshold is a query field, checked and shown next to the field when bad.
"""

from __future__ import annotations

import logging

from aiohttp import web

from desk.accounts import ROLE_PRIVACY_OFFICER
from desk.adapter import ANOMALY_THRESHOLD, AnomalyRow, LibraryError, LogCheck
from desk.sessions import FULL
from desk.web import Handler, acting, render, require, services

log = logging.getLogger("schakel.desk")

PURPOSE = "audit"
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


def routes() -> list[web.RouteDef]:
    return [web.get("/controle", check)]
