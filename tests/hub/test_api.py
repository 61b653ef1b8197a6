"""The HTTP surface: operations routes, hub info, request ids, users and rate limits."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp.test_utils import TestClient, TestServer

from hub.app import make_app
from hub.config import HubConfig
from hub.tokens import generate_signing_key
from protocol.encoding import b64d, b64e

if TYPE_CHECKING:
    from conftest import HubHarness
    from fresh_databases import Databases


async def test_health_readiness_and_openapi(hub: HubHarness) -> None:
    health = await hub.client.get("/healthz")
    assert (health.status, await health.json()) == (200, {"status": "ok"})
    ready = await hub.client.get("/readyz")
    assert (ready.status, await ready.json()) == (200, {"status": "ok"})
    document = await hub.client.get("/v1/openapi.json")
    assert document.status == 200
    on_disk = json.loads((Path(__file__).parents[2] / "hub" / "openapi.json").read_text())
    assert await document.json() == on_disk


async def test_readyz_is_503_before_the_migration(databases: Databases, hub: HubHarness) -> None:
    config = HubConfig.for_tests(
        network="testnet",
        root_der=hub.config.root_der,
        database_url=await databases.new(empty=True),
    )
    app = make_app(config, token_key_pem=generate_signing_key(), clock=hub.clock, migrate=False)
    async with TestClient(TestServer(app)) as client:
        await hub.problem(await client.get("/readyz"), 503, "unavailable")


async def test_hub_info(hub: HubHarness) -> None:
    body = await (await hub.client.get("/v1/hub")).json()
    assert body == {
        "network": "testnet",
        "audience": "urn:schakel:testnet:hub",
        "issuer": "urn:schakel:testnet:hub",
        "certificate": b64e(hub.hub_cert.der) if hub.hub_cert else None,
        "limits": {"max_body_bytes": 512 * 1024, "max_inbox_limit": 200},
    }


async def test_hub_info_serves_the_hub_certificate(databases: Databases, hub: HubHarness) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    cert = hub.authority.certify("hub", Ed25519PrivateKey.generate(), ["hub"])
    config = HubConfig.for_tests(
        network="testnet",
        root_der=hub.config.root_der,
        database_url=await databases.new(),
    )
    app = make_app(
        config, token_key_pem=generate_signing_key(), hub_certificate_der=cert.der, clock=hub.clock
    )
    async with TestClient(TestServer(app)) as client:
        body = await (await client.get("/v1/hub")).json()
    assert b64d(body["certificate"]) == cert.der


async def test_every_response_has_a_request_id(hub: HubHarness) -> None:
    ids = set()
    for path in ("/healthz", "/v1/inbox", "/v1/nowhere"):
        response = await hub.client.get(path, headers={"X-Request-Id": "chosen-by-caller"})
        ids.add(response.headers["X-Request-Id"])
    assert len(ids) == 3 and "chosen-by-caller" not in ids
    await hub.problem(await hub.client.get("/v1/nowhere"), 404, "not-found")


async def test_a_bad_user_header_is_400_and_audited(hub: HubHarness) -> None:
    party = await hub.enrol("ggd")
    for user in ("has space", "x" * 65, "", "caf\u00e9", None):
        before = len(await hub.audit())
        response = await hub.client.get(
            "/v1/inbox", headers=party.headers(**{"Schakel-User": user})
        )
        await hub.problem(response, 400, "malformed")
        entries = await hub.audit()
        assert len(entries) == before + 1  # exactly one entry: the denial
        last = entries[-1]
        assert (last.action, last.outcome, last.reason) == ("list", "denied", "malformed")
        assert (last.org, last.user, last.purpose) == ("ggd", None, None)


async def test_requests_per_org_are_rate_limited(
    hub_with: Callable[..., AsyncIterator[HubHarness]],
) -> None:
    async for hub in hub_with(burst=3, rate_per_sec=1):
        party = await hub.enrol("ggd")  # the bundle upload takes one token
        for _ in range(2):
            assert (await hub.client.get("/v1/inbox", headers=party.headers())).status == 200
        before = len(await hub.audit())
        response = await hub.client.get("/v1/inbox", headers=party.headers())
        await hub.problem(response, 429, "rate-limited")
        assert response.headers["Retry-After"] == "1"
        assert len(await hub.audit()) == before  # refused before it touched anything
        hub.clock.advance(1)
        assert (await hub.client.get("/v1/inbox", headers=party.headers())).status == 200
