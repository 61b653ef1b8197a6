"""Routes of retention: ``/v1/directory/retention-policy`` and ``/v1/audit/erasures``
(use-cases in :mod:`hub.retention` and :mod:`hub.erasure`)."""

from __future__ import annotations

from aiohttp import web

from hub.erasure import erase_person
from hub.http.common import audited, authenticate, body_of, limit_address, render, services
from hub.retention import held_policy, upload_policy


async def get_policy(request: web.Request) -> web.Response:
    # Public and signed, like the witness policy: not an access to data, so not audited.
    s = services(request)
    limit_address(request)
    policy = await held_policy(s.store)
    return render({"policy": None if policy is None else policy.to_wire()})


async def put_policy(request: web.Request) -> web.Response:
    s = services(request)
    limit_address(request)
    async with audited(request, "create", "directory") as scope:
        body = await body_of(request)
        number = await upload_policy(s.store, s.clock, scope, body, cache=s.trust_cache)
    return render({"number": number})


async def post_erasure(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "delete", "case") as scope:
        caller = await authenticate(request, scope, purpose=True)
        body = await body_of(request)
        report = await erase_person(s.store, s.clock, scope, caller=caller, body=body)
    if report.erased.get("access-log") and s.retention is not None:
        s.retention.scrub_soon()
    return render(report.to_wire())


def add_routes(app: web.Application) -> None:
    app.add_routes(
        [
            web.get("/v1/directory/retention-policy", get_policy, allow_head=False),
            web.put("/v1/directory/retention-policy", put_policy),
            web.post("/v1/audit/erasures", post_erasure),
        ]
    )
