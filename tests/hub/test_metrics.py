"""GET /metrics: what it counts, what it never names, and who may read it.

Scrapes are parsed with ``prometheus_client``'s own parser. The ``hub`` fixture's test
client connects from 127.0.0.1, inside the default ``metrics_from`` (loopback); hubs
that must refuse it are started with other networks.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fresh_databases import Databases
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hub.app import make_app
from hub.config import HubConfig
from hub.http.common import SERVICES
from hub.metrics import Metrics
from hub.tokens import generate_signing_key
from protocol.certificate import create_root
from protocol.pseudonym import LinkingKey, pseudonym
from protocol.types import NetworkId

if TYPE_CHECKING:
    from conftest import HubHarness

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
ALLOWED_LABELS = {"route", "method", "status", "step", "le", "kind"}  # kind: retention rows


def samples_of(text: str) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


async def scrape(test_client: TestClient[Any, Any]) -> tuple[str, Samples]:
    response = await test_client.get("/metrics")
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert response.headers["Cache-Control"] == "no-store"
    text = await response.text()
    return text, samples_of(text)


def requests(samples: Samples, route: str, method: str, status: int) -> float:
    labels = {"route": route, "method": method, "status": str(status)}
    return value(samples, "schakel_http_requests_total", **labels) or 0.0


# -- what it counts ------------------------------------------------------------------------


async def test_requests_are_counted_by_route_template(hub: HubHarness) -> None:
    _, before = await scrape(hub.client)
    for _ in range(2):
        assert (await hub.client.get("/v1/hub")).status == 200
    message_id = "A" * 22
    assert (await hub.client.get(f"/v1/messages/{message_id}")).status == 401
    assert (await hub.client.get("/no/such/route-4711")).status == 404
    assert (await hub.client.request("PROPFIND", "/v1/hub")).status == 405
    text, after = await scrape(hub.client)

    def grew(route: str, method: str, status: int) -> float:
        return requests(after, route, method, status) - requests(before, route, method, status)

    assert grew("/v1/hub", "GET", 200) == 2
    assert grew("/v1/messages/{id}", "GET", 401) == 1
    assert grew("unmatched", "GET", 404) == 1
    assert grew("unmatched", "other", 405) == 1  # a method of the client's choosing: bounded
    assert grew("/metrics", "GET", 200) == 1  # the first scrape
    duration = "schakel_http_request_duration_seconds_count"
    labels = {"route": "/v1/hub", "method": "GET", "status": "200"}
    assert (value(after, duration, **labels) or 0) - (value(before, duration, **labels) or 0) == 2
    # Raw paths, ids and methods never become labels.
    for raw in (message_id, "route-4711", "/no/such", "PROPFIND"):
        assert raw not in text


async def test_the_audit_log_and_its_signed_heads(hub: HubHarness) -> None:
    await hub.enrol("police")
    _, samples = await scrape(hub.client)
    size = len(await hub.audit())
    assert size > 0
    assert value(samples, "schakel_audit_tree_size") == size
    assert value(samples, "schakel_audit_unsigned_entries") == size  # no head yet
    assert value(samples, "schakel_tree_head_age_seconds") is None
    head = await hub.heads.sign_now()
    assert head is not None and head.size == size
    hub.clock.advance(42)
    _, samples = await scrape(hub.client)
    assert value(samples, "schakel_audit_tree_size") == size  # a scrape is not audited
    assert value(samples, "schakel_audit_unsigned_entries") == 0
    assert value(samples, "schakel_tree_head_age_seconds") == 42
    assert (await hub.client.get("/v1/directory/crl")).status == 200  # audited
    _, samples = await scrape(hub.client)
    assert value(samples, "schakel_audit_unsigned_entries") == 1
    assert len(await hub.audit()) == size + 1


async def test_process_gauges(hub: HubHarness) -> None:
    ggd = await hub.enrol("ggd")
    _, samples = await scrape(hub.client)
    assert value(samples, "schakel_writer_queue_depth") == 0
    assert value(samples, "schakel_websocket_subscriptions") == 0
    assert value(samples, "schakel_replica_listening") == 1
    async with hub.client.ws_connect("/v1/ws", headers=ggd.headers()):
        _, samples = await scrape(hub.client)
        assert value(samples, "schakel_websocket_subscriptions") == 1
    for _ in range(100):  # the server notices the close on its own time
        _, samples = await scrape(hub.client)
        if value(samples, "schakel_websocket_subscriptions") == 0:
            break
    assert value(samples, "schakel_websocket_subscriptions") == 0


async def test_escalations_and_open_referrals_per_step(hub: HubHarness) -> None:
    coordinator = await hub.enrol("coordinator", ("member", "coordinator"), org_type="coordination")
    coordinator.purpose = "case-coordination"
    police = await hub.enrol("police", org_type="police")
    shelter = await hub.enrol("shelter", org_type="shelter")
    anna = (pseudonym("tel", "0611111111", LinkingKey(1, b"k" * 32)),)
    signal = hub.envelope(police, [coordinator], pseudonyms=anna)
    assert (await hub.send(police, signal)).status == 201
    cases = await hub.client.get("/v1/cases", headers=coordinator.headers())
    case = (await cases.json())["cases"][0]["case"]
    _, samples = await scrape(hub.client)
    for step in ("sent", "delivered", "accepted", "declined", "care_started"):
        assert value(samples, "schakel_open_referrals", step=step) == 0
        assert value(samples, "schakel_escalations_total", step=step) == 0
    referrals = [hub.envelope(coordinator, [shelter], kind="referral", case=case) for _ in "ab"]
    for referral in referrals:
        assert (await hub.send(coordinator, referral)).status == 201
    ack = f"/v1/messages/{referrals[1].header.id}/ack"
    assert (await hub.client.post(ack, headers=shelter.headers())).status == 204
    _, samples = await scrape(hub.client)
    assert value(samples, "schakel_open_referrals", step="sent") == 1
    assert value(samples, "schakel_open_referrals", step="delivered") == 1
    hub.clock.advance(30 * 86_400)  # far past every deadline
    assert await hub.escalator.escalate_now() > 0
    text, samples = await scrape(hub.client)
    assert value(samples, "schakel_escalations_total", step="sent") == 1
    assert value(samples, "schakel_escalations_total", step="delivered") == 1
    assert value(samples, "schakel_open_referrals", step="sent") == 1  # still open
    # Nothing that names a case, a message, an organisation, a user or a purpose.
    named = [case, signal.header.id, *(r.header.id for r in referrals), anna[0]]
    named += ["coordinator", "police", "shelter", coordinator.user, coordinator.purpose]
    assert not [name for name in named if name in text]
    labels = {name for _, pairs in samples for name, _ in pairs}
    assert labels <= ALLOWED_LABELS


def test_every_app_has_its_own_registry() -> None:
    one, two = Metrics(), Metrics()  # no clash in a shared registry
    one_text = generate_latest(one.registry).decode()
    two_text = generate_latest(two.registry).decode()
    assert one_text == two_text
    assert "schakel_http_requests_total{" not in one_text  # nothing counted yet


# -- who may read it -----------------------------------------------------------------------


@asynccontextmanager
async def started(database_url: str, **changes: Any) -> AsyncIterator[TestClient[Any, Any]]:
    now = int(time.time())
    key = Ed25519PrivateKey.generate()
    root = create_root(key, NetworkId("testnet"), now=now - 60, days=30, serial=1)
    config = HubConfig.for_tests(
        network="testnet", root_der=root.der, database_url=database_url, **changes
    )
    app = make_app(config, token_key_pem=generate_signing_key(), sign_heads=False, escalate=False)
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client


async def problem_without_id(response: Any) -> tuple[int, dict[str, Any], str]:
    body = json.loads(await response.read())
    assert body.pop("request_id") == response.headers["X-Request-Id"]
    return response.status, body, response.headers.get("Allow", "")


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE", "HEAD", "OPTIONS"])
async def test_others_get_the_404_of_an_unknown_route(
    databases: Databases, method: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hub.access")
    # The peer is 127.0.0.1: a trusted proxy, whose forwarded address is in metrics_from.
    async with started(
        await databases.new(), metrics_from="10.0.0.0/8", trusted_proxies="127.0.0.1/32"
    ) as outsider:
        headers = {"X-Forwarded-For": "10.0.0.5"}  # never believed for /metrics
        refused = await outsider.request(method, "/metrics", headers=headers)
        unknown = await outsider.request(method, "/metricz", headers=headers)
        assert refused.status == 404
        if method != "HEAD":
            assert await problem_without_id(refused) == await problem_without_id(unknown)
        assert refused.headers.get("Content-Type") == unknown.headers.get("Content-Type")
        store = outsider.server.app[SERVICES].store  # type: ignore[union-attr]
        assert await store.audit_entries() == []  # not audited
    routes = [getattr(r, "route", None) for r in caplog.records if r.name == "hub.access"]
    assert "/metrics" in routes  # but logged


async def test_a_scraper_gets_405_for_another_method(databases: Databases) -> None:
    async with started(await databases.new()) as scraper:  # loopback: the default
        response = await scraper.post("/metrics")
        status, body, allow = await problem_without_id(response)
        expected = (405, "urn:schakel:problem:method-not-allowed", "GET")
        assert (status, body["type"], allow) == expected
        assert (await scraper.get("/metrics")).status == 200


async def test_an_empty_allowlist_refuses_everyone(databases: Databases) -> None:
    async with started(await databases.new(), metrics_from="") as nobody:
        assert (await nobody.get("/metrics")).status == 404
