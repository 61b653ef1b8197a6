"""Routes about the hub itself: ``GET /v1/hub`` (its network, certificate and limits),
``/healthz``, ``/readyz`` and ``GET /v1/openapi.json``."""

from __future__ import annotations

from aiohttp import web

from hub.errors import NotFound, Unavailable
from hub.http.common import JSON, limit_address, render, services
from hub.query import NONE, parse_query
from protocol.encoding import b64e


async def get_hub(request: web.Request) -> web.Response:
    s = services(request)
    limit_address(request)
    der = s.hub_certificate_der
    return render(
        {
            "network": s.config.network,
            "audience": s.config.audience,
            "issuer": s.config.issuer,
            "certificate": None if der is None else b64e(der),
            "limits": {
                "max_body_bytes": s.config.limits.max_body_bytes,
                "max_inbox_limit": s.config.limits.max_inbox_limit,
            },
        }
    )


async def get_healthz(request: web.Request) -> web.Response:
    parse_query(request.query, NONE)
    return render({"status": "ok"})


async def get_readyz(request: web.Request) -> web.Response:
    parse_query(request.query, NONE)
    if not await services(request).store.ready():
        raise Unavailable("the database is not reachable or not migrated")
    return render({"status": "ok"})


async def get_openapi(request: web.Request) -> web.Response:
    limit_address(request)
    document = services(request).openapi
    if document is None:
        raise NotFound()
    return web.Response(body=document, content_type=JSON)


def add_routes(app: web.Application) -> None:
    app.add_routes(
        [
            web.get("/v1/hub", get_hub, allow_head=False),
            web.get("/healthz", get_healthz, allow_head=False),
            web.get("/readyz", get_readyz, allow_head=False),
            web.get("/v1/openapi.json", get_openapi, allow_head=False),
        ]
    )
