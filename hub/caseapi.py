"""HTTP routes of the coordinator's views (``/v1/cases``, ``/v1/referrals``) and of every
organisation's event feed (``/v1/events``). Specified in ``docs/protocol.md``, "Cases".

Each handler authenticates (a stated purpose is required: these are case data), calls
one use-case of :mod:`hub.cases` and renders its records.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aiohttp import web

from hub import cases
from hub.api import INBOX_QUERY, audited, authenticate, body_of, query_of, render, services
from hub.query import INTEGER, TEXT, Spec
from hub.store.casereads import CaseSummary, EventRecord, ReferralRecord, TimelineItem

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


def _summary(case: CaseSummary) -> dict[str, Any]:
    return {
        "case": case.ref,
        "state": case.state,
        "signals": case.signals,
        "first_signal": case.first_signal,
        "last_signal": case.last_signal,
        "orgs": [asdict(org) for org in case.orgs],
        "referrals": dict(sorted(case.referrals.items())),
        "open_referrals": case.open_referrals,
    }


def _referral(record: ReferralRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "case": record.case,
        "referrer": record.referrer,
        "recipient": record.recipient,
        "recipient_type": record.recipient_type,
        "step": record.step,
        "step_at": record.step_at,
        "steps": record.steps,
        "replaced_by": record.replaced_by,
    }


def _item(item: TimelineItem) -> dict[str, Any]:
    wire = {
        key: value
        for key, value in asdict(item).items()
        if value not in (None, ()) and key != "seq"
    }
    for key in ("recipients", "messages"):
        if key in wire:
            wire[key] = list(wire[key])
    return wire


def _event(event: EventRecord) -> dict[str, Any]:
    wire = asdict(event)
    return {key: value for key, value in wire.items() if value is not None}


async def get_cases(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "list", "case") as scope:
        caller = await authenticate(request, scope, purpose=True, query=CASES_QUERY)
        cases.require_coordinator(caller)
        query = cases.CaseQuery.parse(query_of(request), max_limit=s.config.limits.max_case_page)
        page, total = await cases.list_cases(s.store, s.clock, scope, caller=caller, query=query)
    return render({"cases": [_summary(c) for c in page], "total": total})


async def get_case(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "read", "case") as scope:
        caller = await authenticate(request, scope, purpose=True)
        found, asked = await cases.read_case(
            s.store, s.clock, s.config, scope, caller=caller, ref=request.match_info["ref"]
        )
    body = _summary(found.summary)
    if asked != found.summary.ref:
        body["merged_from"] = asked
    body["referral_list"] = [_referral(r) for r in found.referrals]
    body["timeline"] = [_item(item) for item in found.timeline]
    body["truncated"] = found.truncated
    return render(body)


async def post_split(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "split", "case") as scope:
        caller = await authenticate(request, scope, purpose=True)
        cases.require_coordinator(caller)
        body = await body_of(request)
        new = await cases.split_case(
            s.store, s.clock, scope, caller=caller, ref=request.match_info["ref"], body=body,
            rng=s.rng,
        )  # fmt: skip
    return render({"case": new, "from": scope.object_ids[0]}, status=201)


async def post_merge(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "merge", "case") as scope:
        caller = await authenticate(request, scope, purpose=True)
        cases.require_coordinator(caller)
        body = await body_of(request)
        absorbed = await cases.merge_case(
            s.store, s.clock, scope, caller=caller, ref=request.match_info["ref"], body=body
        )
    return render({"case": scope.object_ids[0], "absorbed": absorbed})


async def post_unmerge(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "split", "case") as scope:
        caller = await authenticate(request, scope, purpose=True)
        cases.require_coordinator(caller)
        body = await body_of(request)
        revived = await cases.unmerge_case(
            s.store, s.clock, scope, caller=caller, ref=request.match_info["ref"], body=body
        )
    return render({"case": revived, "from": scope.object_ids[0]})


async def get_referrals(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "list", "case") as scope:
        caller = await authenticate(request, scope, purpose=True, query=REFERRALS_QUERY)
        views = await cases.open_referrals(
            s.store, s.clock, s.config, scope, caller=caller, limit=query_of(request).get("limit")
        )
    now = s.clock()
    return render(
        {
            "referrals": [
                {
                    **_referral(view.record),
                    "holder": view.holder,
                    "age": now - view.record.steps["sent"],
                    "waiting": now - view.record.step_at,
                    "due": view.due,
                    "overdue": view.overdue,
                }
                for view in views
            ]
        }
    )


async def get_events(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "list", "inbox") as scope:
        caller = await authenticate(request, scope, purpose=True, query=INBOX_QUERY)
        found, following = await cases.read_events(
            s.store,
            s.clock,
            s.config,
            scope,
            caller=caller,
            after=query_of(request).get("after"),
            limit=query_of(request).get("limit"),
        )
    return render({"events": [_event(e) for e in found], "next": following})


def add_case_routes(app: web.Application) -> None:
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
