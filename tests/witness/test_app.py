"""The witness over HTTP: tlog-witness's bodies and statuses, problems, health, metrics.

The use-case's decisions are tested in test_core.py on both databases; here, on SQLite,
what the HTTP adapter adds: media types, the 409 body, limits, routes, metrics.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from witness_harness import Rig
from witness_network import fork, leaves

from protocol import merkle
from protocol.note import open_note
from protocol.tlogwitness import MAX_REQUEST_BYTES, parse_cosignature_body
from witness.app import make_app
from witness.config import WitnessConfig, parse_networks
from witness.core import origin_hash

pytestmark = pytest.mark.parametrize("database_kind", ["sqlite"])


@pytest.fixture
async def client(rig: Rig) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    app = make_app(WitnessConfig(), rig.witness, rig.store)
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_cosignature_lines_on_200(rig: Rig, client: TestClient) -> None:  # type: ignore[type-arg]
    response = await client.post("/add-checkpoint", data=rig.body(leaves(3), 0))
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    lines = parse_cosignature_body(await response.read())
    assert len(lines) == 1
    note = rig.net.cosigned(rig.net.checkpoint(3), *lines)
    assert open_note(note, [rig.me.cert.verifier()]).verified == lines


async def test_409_says_the_size_held(rig: Rig, client: TestClient) -> None:  # type: ignore[type-arg]
    await client.post("/add-checkpoint", data=rig.body(leaves(4), 0))
    response = await client.post("/add-checkpoint", data=rig.body(leaves(9), 0))
    assert response.status == 409
    assert response.headers["Content-Type"] == "text/x.tlog.size"
    assert await response.read() == b"4\n"


@pytest.mark.parametrize(
    ("status", "slug"),
    [
        (400, "malformed"),
        (403, "not-signed-by-the-log"),
        (404, "unknown-log"),
        (422, "inconsistent"),
    ],
)
async def test_other_errors_are_problems(
    rig: Rig,
    client: TestClient,
    status: int,
    slug: str,  # type: ignore[type-arg]
) -> None:
    await client.post("/add-checkpoint", data=rig.body(leaves(5), 0))
    signed = rig.net.checkpoint(6)
    bodies = {
        400: b"old 1\n",
        403: rig.body(leaves(6), 5).replace(signed.log[0].line().encode()[-20:], b"A" * 19 + b"\n"),
        404: rig.note_body(
            dataclasses.replace(signed.note, text=signed.note.text.replace("schakel", "other")), 0
        ),
        422: rig.body(fork(5, 1), 5, proof=[]),
    }
    response = await client.post("/add-checkpoint", data=bodies[status])
    assert response.status == status
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = await response.json()
    assert problem["status"] == status and problem["type"].endswith("/" + slug)
    assert "old 1" not in str(problem)


async def test_limits_and_routes(client: TestClient) -> None:  # type: ignore[type-arg]
    response = await client.post("/add-checkpoint", data=b"x" * (MAX_REQUEST_BYTES + 1))
    assert response.status == 413
    assert (await response.json())["type"].endswith("/too-large")
    response = await client.get("/add-checkpoint")
    assert response.status == 405
    response = await client.get("/nothing-here")
    assert response.status == 404
    assert response.headers["Content-Type"] == "application/problem+json"


async def test_monitoring_retrieval(rig: Rig, client: TestClient) -> None:  # type: ignore[type-arg]
    response = await client.get(f"/{origin_hash(rig.origin)}/checkpoint")
    assert response.status == 404
    await client.post("/add-checkpoint", data=rig.body(leaves(2), 0))
    response = await client.get(f"/{origin_hash(rig.origin)}/checkpoint")
    assert response.status == 200
    text = await response.text()
    assert text.startswith(f"{rig.origin}\n2\n") and rig.me.cert.name in text


async def test_health_readiness_and_metrics(rig: Rig, client: TestClient) -> None:  # type: ignore[type-arg]
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200
    await client.post("/add-checkpoint", data=rig.body(leaves(6), 0))
    await client.post("/add-checkpoint", data=rig.body(fork(6, 2), 6, proof=[]))
    await client.post("/add-checkpoint", data=rig.body(leaves(9), 6, proof=[bytes(32)] * 3))
    text = await (await client.get("/metrics")).text()
    assert 'schakel_witness_split_views_total{kind="fork"} 1.0' in text
    assert "schakel_witness_bad_proofs_total 1.0" in text
    assert "schakel_witness_cosignatures_total 1.0" in text
    assert 'schakel_witness_requests_total{route="/add-checkpoint",status="422"} 2.0' in text
    assert merkle.root_hash(leaves(6)).hex() not in text


async def test_metrics_only_for_the_configured_peers(rig: Rig) -> None:
    config = WitnessConfig(metrics_from=parse_networks("10.0.0.0/8"))
    async with TestClient(TestServer(make_app(config, rig.witness, rig.store))) as client:
        assert (await client.get("/metrics")).status == 404


async def test_readyz_is_503_without_the_database(rig: Rig) -> None:
    """A store over a PostgreSQL port where nothing listens: the database is gone."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from witness.store import WitnessStore

    gone = WitnessStore(create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:9/none"))
    async with TestClient(TestServer(make_app(WitnessConfig(), rig.witness, gone))) as client:
        response = await client.get("/readyz")
        assert response.status == 503
        assert (await response.json())["type"].endswith("/unavailable")
        assert (await client.get("/healthz")).status == 200
    await gone.close()
