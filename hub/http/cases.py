"""HTTP routes of the coordinator's views (``/v1/cases``, ``/v1/referrals``) and of every
organisation's event feed (``/v1/events``). Specified in ``docs/protocol.md``, "Cases".

Each handler authenticates (a stated purpose is required: these are case data), calls
one use-case of :mod:`hub.coordinator` and renders its records.
"""

from __future__ import annotations

from aiohttp import web

from hub import coordinator
from hub.http.common import INBOX_QUERY, audited, authenticate, body_of, query_of, render, services
from hub.query import INTEGER, TEXT, Spec
from protocol.cases import CasePage, EventPage

CASES_QUERY: Spec = {
    "state": TEXT,
    "type": TEXT,
    "since": INTEGER,
    "sort": TEXT,
    "order": TEXT,
    "offset": INTEGER,
    "limit": INTEGER,
}
REFERRALS_QUERY: Spec = {"limit": INTEGER}


async def get_cases(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "list", "case") as scope:
        caller = await authenticate(request, scope, purpose=True, query=CASES_QUERY)
        coordinator.require_coordinator(caller)
        query = coordinator.CaseQuery.parse(
            query_of(request), max_limit=s.config.limits.max_case_page
        )
        page, total = await coordinator.list_cases(
            s.store, s.clock, scope, caller=caller, query=query
        )
    return render(CasePage(tuple(page), total).to_wire())


async def get_case(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "read", "case") as scope:
        caller = await authenticate(request, scope, purpose=True)
        found, asked = await coordinator.read_case(
            s.store, s.clock, s.config, scope, caller=caller, ref=request.match_info["ref"]
        )
    return render(found.record(None if asked == found.summary.case else asked).to_wire())


async def post_split(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "split", "case") as scope:
        caller = await authenticate(request, scope, purpose=True)
        coordinator.require_coordinator(caller)
        body = await body_of(request)
        split = await coordinator.split_case(
            s.store, s.clock, scope, caller=caller, ref=request.match_info["ref"], body=body,
            rng=s.rng,
        )  # fmt: skip
    return render({"case": split.other, "from": split.case}, status=201)


async def post_merge(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "merge", "case") as scope:
        caller = await authenticate(request, scope, purpose=True)
        coordinator.require_coordinator(caller)
        body = await body_of(request)
        merged = await coordinator.merge_case(
            s.store, s.clock, scope, caller=caller, ref=request.match_info["ref"], body=body
        )
    return render({"case": merged.case, "absorbed": merged.other})


async def post_unmerge(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "split", "case") as scope:
        caller = await authenticate(request, scope, purpose=True)
        coordinator.require_coordinator(caller)
        body = await body_of(request)
        unmerged = await coordinator.unmerge_case(
            s.store, s.clock, scope, caller=caller, ref=request.match_info["ref"], body=body
        )
    return render({"case": unmerged.other, "from": unmerged.case})


async def get_referrals(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "list", "case") as scope:
        caller = await authenticate(request, scope, purpose=True, query=REFERRALS_QUERY)
        views = await coordinator.open_referrals(
            s.store, s.clock, s.config, scope, caller=caller, limit=query_of(request).get("limit")
        )
    return render({"referrals": [view.to_wire() for view in views]})


async def get_events(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "list", "inbox") as scope:
        caller = await authenticate(request, scope, purpose=True, query=INBOX_QUERY)
        found, following = await coordinator.read_events(
            s.store,
            s.clock,
            s.config,
            scope,
            caller=caller,
            after=query_of(request).get("after"),
            limit=query_of(request).get("limit"),
        )
    return render(EventPage(tuple(found), following).to_wire())


def add_routes(app: web.Application) -> None:
    app.add_routes(
        [
            web.get("/v1/cases", get_cases, allow_head=False),
            web.get("/v1/cases/{ref}", get_case, allow_head=False),
            web.post("/v1/cases/{ref}/split", post_split),
            web.post("/v1/cases/{ref}/merge", post_merge),
            web.post("/v1/cases/{ref}/unmerge", post_unmerge),
            web.get("/v1/referrals", get_referrals, allow_head=False),
            web.get("/v1/events", get_events, allow_head=False),
        ]
    )
