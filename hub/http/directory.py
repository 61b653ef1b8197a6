"""Routes of ``/v1/directory``: certificates, key bundles, the CRL, linking keys, OPRF keys
and retired linking keys (use-cases in :mod:`hub.directory`)."""

from __future__ import annotations

from aiohttp import web

from hub import directory
from hub.http.common import audited, authenticate, body_of, limit_address, render, services
from protocol.encoding import b64e


async def post_certificate(request: web.Request) -> web.Response:
    s = services(request)
    limit_address(request)
    async with audited(request, "create", "directory") as scope:
        body = await body_of(request)
        held = await directory.upload_certificate(
            s.store, s.clock, s.config, scope, body, cache=s.trust_cache
        )
    return render(
        {"org": held.org, "fingerprint": held.fingerprint, "roles": sorted(held.roles)},
        status=201 if held.created else 200,
    )


async def get_orgs(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "list", "directory") as scope:
        await authenticate(request, scope)
        listings = await directory.list_organisations(
            s.store, s.clock, s.config, scope, cache=s.trust_cache
        )
    return render(
        {
            "orgs": [
                {
                    "org": item.summary.org,
                    "roles": sorted(item.summary.roles),
                    "type": item.summary.org_type,
                    "certificate": item.summary.fingerprint,
                    "bundle": item.summary.bundle,
                    "revoked": item.revoked,
                }
                for item in listings
            ]
        }
    )


async def get_org(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "read", "directory") as scope:
        await authenticate(request, scope)
        entry = await directory.fetch_organisation(
            s.store, s.clock, s.config, scope, request.match_info["org"]
        )
    bundle = None if entry.bundle is None else entry.bundle.to_wire()
    return render({"org": entry.org, "certificate": b64e(entry.certificate), "bundle": bundle})


async def put_bundle(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "create", "directory") as scope:
        caller = await authenticate(request, scope)
        body = await body_of(request)
        fp = await directory.upload_bundle(
            s.store,
            s.clock,
            s.config,
            scope,
            caller=caller.org,
            org_text=request.match_info["org"],
            body=body,
            cache=s.trust_cache,
        )
    return render({"fingerprint": fp})


async def get_bundle(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "read", "directory") as scope:
        await authenticate(request, scope)
        bundle = await directory.fetch_bundle(
            s.store, s.clock, s.config, scope, request.match_info["fingerprint"]
        )
    return render(bundle.to_wire())


async def get_crl(request: web.Request) -> web.Response:
    s = services(request)
    limit_address(request)
    async with audited(request, "read", "directory") as scope:
        der = await directory.fetch_crl(s.store, s.clock, scope)
    return render({"crl": None if der is None else b64e(der)})


async def put_crl(request: web.Request) -> web.Response:
    s = services(request)
    limit_address(request)
    async with audited(request, "create", "directory") as scope:
        body = await body_of(request)
        number = await directory.upload_crl(
            s.store, s.clock, s.config, scope, body, cache=s.trust_cache
        )
    return render({"number": number})


async def post_linking_key(request: web.Request) -> web.Response:
    s = services(request)
    limit_address(request)
    async with audited(request, "create", "directory") as scope:
        body = await body_of(request)
        held = await directory.upload_linking_key(
            s.store, s.clock, s.config, scope, body, cache=s.trust_cache
        )
    return render({"org": held.org}, status=201 if held.created else 200)


async def get_linking_keys(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "list", "directory") as scope:
        caller = await authenticate(request, scope)
        keys = await directory.list_linking_keys(s.store, s.clock, scope, caller=caller.org)
    return render({"linking_keys": [key.to_wire() for key in keys]})


async def post_oprf_key(request: web.Request) -> web.Response:
    s = services(request)
    limit_address(request)
    async with audited(request, "create", "directory") as scope:
        body = await body_of(request)
        created = await directory.upload_oprf_key(
            s.store, s.clock, s.config, scope, body, cache=s.trust_cache
        )
    return render({}, status=201 if created else 200)


async def get_oprf_keys(request: web.Request) -> web.Response:
    s = services(request)
    limit_address(request)
    async with audited(request, "read", "directory") as scope:
        statements = await directory.list_oprf_keys(s.store, s.clock, scope)
    return render({"oprf_keys": [statement.to_wire() for statement in statements]})


async def post_retirement(request: web.Request) -> web.Response:
    s = services(request)
    limit_address(request)
    async with audited(request, "create", "directory") as scope:
        body = await body_of(request)
        created = await directory.upload_retirement(
            s.store, s.clock, s.config, scope, body, cache=s.trust_cache
        )
    return render({}, status=201 if created else 200)


async def get_retirements(request: web.Request) -> web.Response:
    s = services(request)
    limit_address(request)
    async with audited(request, "read", "directory") as scope:
        retirements = await directory.list_retirements(s.store, s.clock, scope)
    return render({"retired_linking_keys": [r.to_wire() for r in retirements]})


def add_routes(app: web.Application) -> None:
    app.add_routes(
        [
            web.post("/v1/directory/certificates", post_certificate),
            web.get("/v1/directory/orgs", get_orgs, allow_head=False),
            web.get("/v1/directory/orgs/{org}", get_org, allow_head=False),
            web.put("/v1/directory/orgs/{org}/bundle", put_bundle),
            web.get("/v1/directory/bundles/{fingerprint}", get_bundle, allow_head=False),
            web.get("/v1/directory/crl", get_crl, allow_head=False),
            web.put("/v1/directory/crl", put_crl),
            web.post("/v1/directory/linking-keys", post_linking_key),
            web.get("/v1/directory/linking-keys", get_linking_keys, allow_head=False),
            web.post("/v1/directory/oprf-keys", post_oprf_key),
            web.get("/v1/directory/oprf-keys", get_oprf_keys, allow_head=False),
            web.post("/v1/directory/retired-linking-keys", post_retirement),
            web.get("/v1/directory/retired-linking-keys", get_retirements, allow_head=False),
        ]
    )
