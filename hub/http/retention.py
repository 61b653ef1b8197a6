"""Routes of retention: ``/v1/directory/retention-policy`` and ``/v1/audit/erasures``
(use-cases in :mod:`hub.retention` and :mod:`hub.erasure`)."""

from __future__ import annotations

from aiohttp import web

from hub.erasure import erase_person
from hub.http.common import audited, authenticate, body_of, policy_routes, render, services
from hub.retention import held_policy, upload_policy


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
            *policy_routes(
                "/v1/directory/retention-policy", "directory", held_policy, upload_policy
            ),
            web.post("/v1/audit/erasures", post_erasure),
        ]
    )
