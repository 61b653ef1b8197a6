"""The coordinator's CoMensha page: the registration and statistics files, previewed and
downloaded.

Only for the coordinator (as :mod:`desk.casework`: anyone else gets 404). The files are
what ``schakel org comensha`` writes (:mod:`clients.comensha`), made here from every
live case, each message read as the person (the hub's access log names them under the
purpose they chose); the hub never sees either file. The page explains the consent
rule in plain words, shows the first :data:`PREVIEW` rows of each file as a table, and
offers both as a download: an attachment with a fixed, safe file name (the date only),
``Cache-Control: no-store`` as every desk page. Each download is logged (who, which
file, how many rows), never a row's content.
"""

from __future__ import annotations

import datetime
import logging

from aiohttp import web

from desk.casework import PURPOSE, coordinator
from desk.i18n import ZONE
from desk.web import acting, person_of, render, services

log = logging.getLogger("schakel.desk")

PREVIEW = 100
FILES = {"registratie": "registration", "statistiek": "statistics"}


@coordinator
async def page(request: web.Request) -> web.StreamResponse:
    with acting(request, PURPOSE):
        files = await services(request).library.comensha()
    return render(
        request,
        "comensha.html",
        files=files,
        preview=PREVIEW,
        registrations=files.registrations[:PREVIEW],
        statistics=files.statistics[:PREVIEW],
    )


@coordinator
async def download(request: web.Request) -> web.StreamResponse:
    which = request.match_info["file"]
    if which not in FILES:
        raise web.HTTPNotFound()
    s = services(request)
    with acting(request, PURPOSE):
        files = await s.library.comensha()
    if FILES[which] == "registration":
        text, rows = files.registration_csv, len(files.registrations)
    else:
        text, rows = files.statistics_csv, len(files.statistics)
    day = datetime.datetime.fromtimestamp(s.clock(), tz=ZONE).date().isoformat()
    log.info("desk CoMensha %s file (%d rows) downloaded by %s", which, rows, person_of(request).id)
    return web.Response(
        text=text,
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="comensha-{which}-{day}.csv"'},
    )


def routes() -> list[web.RouteDef]:
    return [
        web.get("/comensha", page),
        web.get("/comensha/{file}.csv", download),
    ]
