"""A pseudonymisation service over HTTP, on SQLite and PostgreSQL: evaluation, the checks
that refuse a request, limits, replay, revocation mid-way, and what it keeps."""

from __future__ import annotations

import asyncio
import io
import logging

import pytest
import sqlalchemy as sa
from oprf_harness import VERSION, Services, start_service

from protocol.certificate import ROLE_HUB, ROLE_MEMBER
from protocol.encoding import b64e
from protocol.evaluation import EvaluationResponse, check_response
from pseudonymiser.store import Store, evaluations


async def _problem(response, status: int, slug: str) -> dict:  # type: ignore[no-untyped-def]
    assert response.status == status, await response.text()
    assert response.content_type == "application/problem+json"
    body = await response.json()
    assert body["type"] == f"urn:schakel:problem:{slug}"
    assert response.headers["X-Request-Id"] == body["request_id"]
    return body


async def _audit(url: str) -> list[tuple[str, int, str]]:
    store = Store(url)
    try:

        def read(conn: sa.Connection) -> list[tuple[str, int, str]]:
            query = sa.select(evaluations.c.org, evaluations.c.count, evaluations.c.outcome)
            return [tuple(row) for row in conn.execute(query.order_by(evaluations.c.id))]  # type: ignore[misc]

        return await store._run(read)
    finally:
        await store.close()


async def test_a_signed_request_is_evaluated_proved_and_counted(services: Services) -> None:
    org = services.network.org("politie")
    batch, request = services.request(org)
    response = await services.first.post(request.to_wire())
    assert response.status == 200, await response.text()
    assert response.headers["Cache-Control"] == "no-store"
    answer = EvaluationResponse.from_wire(await response.json())
    check_response(batch, services.network.statements[0], answer)
    assert await _audit(services.first.config.database_url) == [("politie", 2, "evaluated")]


async def test_a_replayed_request_is_refused(services: Services) -> None:
    org = services.network.org("politie")
    _batch, request = services.request(org)
    assert (await services.first.post(request.to_wire())).status == 200
    await _problem(await services.first.post(request.to_wire()), 409, "replayed")
    # Another nonce is a new request.
    _batch, again = services.request(org)
    assert (await services.first.post(again.to_wire())).status == 200


async def test_a_request_dated_ahead_can_not_be_replayed_while_it_is_fresh(
    services: Services,
) -> None:
    org = services.network.org("politie")
    _batch, request = services.request(org, time=services.clock() + 299)
    assert (await services.first.post(request.to_wire())).status == 200
    services.clock.advance(301)  # past then + freshness, within its own time + freshness
    await _problem(await services.first.post(request.to_wire()), 409, "replayed")
    services.clock.advance(299)  # now stale: refused as such
    await _problem(await services.first.post(request.to_wire()), 401, "unauthorized")


@pytest.mark.parametrize("skew", [-301, 301])
async def test_a_request_outside_the_freshness_window_is_refused(
    services: Services, skew: int
) -> None:
    org = services.network.org("politie")
    _batch, request = services.request(org, time=services.clock() + skew)
    body = await _problem(await services.first.post(request.to_wire()), 401, "unauthorized")
    assert body["detail"] == "authentication failed"


async def test_every_authentication_failure_looks_the_same(services: Services) -> None:
    network = services.network
    politie, ggd = network.org("politie"), network.org("ggd")
    _b, good = services.request(politie)
    wire = good.to_wire()
    forged = {**wire, "org": "ggd", "cert": b64e(ggd[1].der)}  # politie's signature, ggd's cert
    hub = network.org("hub", roles=(ROLE_HUB,))
    _b, from_hub = services.request(hub)
    bad_sig = {**wire, "sig": b64e(bytes(64))}
    details = set()
    for body in (forged, from_hub.to_wire(), bad_sig):
        problem = await _problem(await services.first.post(body), 401, "unauthorized")
        details.add(problem["detail"])
    assert details == {"authentication failed"}
    assert await _audit(services.first.config.database_url) == []


async def test_an_organisation_revoked_mid_way_is_refused_at_once(services: Services) -> None:
    network = services.network
    org = network.org("politie")
    _b, first = services.request(org)
    assert (await services.first.post(first.to_wire())).status == 200
    crl = network.crl({org[1].serial: services.clock()}, number=1)
    put = await services.first.client.put("/v1/crl", json={"crl": b64e(crl.der)})
    assert put.status == 200 and (await put.json()) == {"number": 1}
    _b, second = services.request(org)
    await _problem(await services.first.post(second.to_wire()), 401, "unauthorized")
    other = network.org("ggd")
    _b, third = services.request(other)
    assert (await services.first.post(third.to_wire())).status == 200
    # An older or equal CRL is not taken; one of another root does not verify.
    await _problem(
        await services.first.client.put(
            "/v1/crl", json={"crl": b64e(network.crl({}, number=1).der)}
        ),
        409,
        "conflict",
    )
    await _problem(
        await services.first.client.put("/v1/crl", json={"crl": b64e(b"\x30\x03\x02\x01\x01")}),
        422,
        "invalid-credential",
    )


async def test_the_hourly_and_daily_limits_answer_429_with_retry_after(services: Services) -> None:
    """Service 1 allows 10 evaluations an hour and 14 a day (conftest)."""
    org = services.network.org("politie")
    values = [("bsn", "111222333"), ("tel", "+31612345678"), ("doc", "NLD:NW12345A")]
    for _ in range(3):
        _b, request = services.request(org, values=values)
        assert (await services.first.post(request.to_wire())).status == 200
    _b, fourth = services.request(org, values=values)  # 9 + 3 > 10
    response = await services.first.post(fourth.to_wire())
    body = await _problem(response, 429, "rate-limited")
    assert response.headers["Retry-After"] == str(3600 - 400)  # T0 is 400 s into the hour
    assert "10 evaluations per hour" in body["detail"]
    # A refused request still used its nonce.
    await _problem(await services.first.post(fourth.to_wire()), 409, "replayed")
    _b, one = services.request(org, values=values[:1])  # 9 + 1 = 10 still fits
    assert (await services.first.post(one.to_wire())).status == 200
    # Another organisation has its own counters.
    _b, other = services.request(services.network.org("ggd"), values=values)
    assert (await services.first.post(other.to_wire())).status == 200
    # The next hour: the daily limit (14) is what refuses now.
    services.clock.advance(3600)
    _b, late = services.request(org, values=values)
    assert (await services.first.post(late.to_wire())).status == 200
    _b, later = services.request(org, values=values)
    response = await services.first.post(later.to_wire())
    await _problem(response, 429, "rate-limited")
    assert int(response.headers["Retry-After"]) == 86400 - (services.clock() % 86400)
    audit = await _audit(services.first.config.database_url)
    assert [row[2] for row in audit if row[0] == "politie"] == [
        "evaluated", "evaluated", "evaluated", "rate-limited", "evaluated", "evaluated",
        "rate-limited",
    ]  # fmt: skip


async def test_bounded_input_is_refused_with_its_own_problem(services: Services) -> None:
    org = services.network.org("politie")
    _b, request = services.request(org)
    wire = request.to_wire()
    post = services.first.post
    await _problem(await post(b"x" * (17 * 1024)), 413, "too-large")
    await _problem(await post({**wire, "elements": wire["elements"] * 9}), 413, "too-large")
    await _problem(await post(b"{"), 400, "malformed")
    await _problem(await post({**wire, "elements": [b64e(bytes(32))]}), 400, "malformed")
    await _problem(await post({**wire, "service": "oprf-2"}), 422, "wrong-service")
    await _problem(await post({**wire, "version": VERSION + 1}), 422, "unknown-version")
    response = await services.first.client.post("/v1/evaluate", data=b"{}")
    await _problem(response, 415, "unsupported-media-type")
    await _problem(await services.first.client.get("/v1/nothing"), 404, "not-found")
    await _problem(await services.first.client.get("/v1/evaluate"), 405, "method-not-allowed")


async def test_a_request_for_the_other_service_is_refused_there(services: Services) -> None:
    org = services.network.org("politie")
    _b, request = services.request(org, service="oprf-1")
    await _problem(await services.second.post(request.to_wire()), 422, "wrong-service")


async def test_two_replicas_share_nonces_and_counters(
    services: Services, oprf_network, clock
) -> None:  # type: ignore[no-untyped-def]
    url = services.first.config.database_url
    async with start_service(
        oprf_network, clock, 1, url, limits={"hourly": 10, "daily": 14}
    ) as replica:
        org = services.network.org("politie")
        _b, request = services.request(org)
        assert (await services.first.post(request.to_wire())).status == 200
        await _problem(await replica.post(request.to_wire()), 409, "replayed")
        values = [("bsn", "111222333"), ("tel", "+31612345678")]
        requests = [services.request(org, values=values)[1] for _ in range(8)]
        targets = [services.first, replica] * 4
        answers = await asyncio.gather(
            *(target.post(r.to_wire()) for target, r in zip(targets, requests, strict=True))
        )
        statuses = sorted(a.status for a in answers)
        assert statuses == [200] * 4 + [429] * 4  # 2 + 4 * 2 = 10: no replica let more through


async def test_operations_routes_and_metrics(services: Services) -> None:
    client = services.first.client
    assert (await (await client.get("/healthz")).json()) == {"status": "ok"}
    assert (await (await client.get("/readyz")).json()) == {"status": "ready"}
    info = await (await client.get("/v1/service")).json()
    assert info["service"] == "oprf-1" and info["share"] == 1 and info["max_batch"] == 16
    assert info["statements"] == [services.network.statements[0].to_wire()]
    org = services.network.org("politie")
    _b, request = services.request(org)
    await services.first.post(request.to_wire())
    await services.first.post(request.to_wire())
    text = await (await client.get("/metrics")).text()
    assert "schakel_pseudonymiser_evaluations_total 2.0" in text
    assert 'schakel_pseudonymiser_refusals_total{reason="replayed"} 1.0' in text
    assert "schakel_pseudonymiser_crl_number -1.0" in text
    assert "politie" not in text


async def test_logs_hold_no_element_nonce_certificate_or_key(services: Services) -> None:
    from pseudonymiser.logs import configure_logging

    org = services.network.org("politie")
    _b, request = services.request(org)
    wire = request.to_wire()
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    configure_logging(logging.DEBUG, stream=stream)  # DEBUG: the database drivers talk too
    try:
        await services.first.post(wire)
        await services.first.post(wire)
        await services.first.post({**wire, "elements": [b64e(bytes(32))]})
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    text = stream.getvalue()
    assert '"route":"/v1/evaluate"' in text and '"org":"politie"' in text
    secrets = [*wire["elements"], wire["nonce"], wire["cert"][:40], wire["sig"]]
    secrets += [services.network.shares[0].hex(), b64e(services.network.shares[0])]
    assert not [s for s in secrets if s in text]


@pytest.mark.parametrize("database_kind", ["sqlite"])
async def test_a_member_of_any_role_but_the_hub_may_ask(services: Services) -> None:
    """Roles do not matter to the service, except the hub's (SQLite only: no storage logic)."""
    for roles in ((ROLE_MEMBER,), ("coordinator",), ("privacy_officer",)):
        org = services.network.org("org-" + roles[0].replace("_", "-"), roles=roles)
        _b, request = services.request(org)
        assert (await services.first.post(request.to_wire())).status == 200


async def test_a_body_that_does_not_arrive_in_time_is_a_408() -> None:
    """The time to read the body is bounded (timeout 0: the first wait for data ends it)."""
    from pseudonymiser.errors import Timeout
    from pseudonymiser.web import read_json

    class Stalled:
        content_type, content_length = "application/json", 10

        class content:
            @staticmethod
            async def read(_size: int) -> bytes:
                await asyncio.Event().wait()  # the client never sends
                return b""

    with pytest.raises(Timeout, match="within 0 seconds"):
        await read_json(Stalled(), max_bytes=100, timeout=0)  # type: ignore[arg-type]


@pytest.mark.parametrize("database_kind", ["sqlite"])  # the storage of a CRL: tests above
async def test_the_crl_is_fetched_from_the_hubs_public_route(services: Services) -> None:
    import aiohttp
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    from pseudonymiser.web import CONTEXT, fetch_crl

    served: dict[str, object] = {"crl": None}

    async def crl_route(_request: web.Request) -> web.Response:
        return web.json_response(served)

    hub = web.Application()
    hub.router.add_get("/v1/directory/crl", crl_route)
    server = TestServer(hub)
    await server.start_server()
    ctx = services.first.app[CONTEXT]
    url = str(server.make_url("/v1/directory/crl"))
    org = services.network.org("politie")
    try:
        async with aiohttp.ClientSession() as session:
            assert await fetch_crl(ctx, session, url) is None  # the hub holds none yet
            crl = services.network.crl({org[1].serial: services.clock()}, number=4)
            served["crl"] = b64e(crl.der)
            assert await fetch_crl(ctx, session, url) == 4
            assert await fetch_crl(ctx, session, url) is None  # nothing newer
            served["crl"] = b64e(b"not a crl")
            assert await fetch_crl(ctx, session, url) is None  # refused, kept the old one
    finally:
        await server.close()
    _b, request = services.request(org)
    await _problem(await services.first.post(request.to_wire()), 401, "unauthorized")
