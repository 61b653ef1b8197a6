"""The hub's own server: bodies bounded in time, connections per address, and parser
errors as problems that quote nothing (``hub.server``), over raw sockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import pytest

from hub.config import HubConfig, parse_networks
from hub.server import LINGER_SECONDS, ConnectionCap
from protocol.types import NetworkId

if TYPE_CHECKING:
    from conftest import HubHarness

# Routes that read a body before any login: a trickling client needs no credentials.
BEFORE_LOGIN = (
    "/v1/auth/challenge",
    "/v1/auth/token",
    "/v1/directory/certificates",
    "/v1/directory/linking-keys",
)
SECRET = "Bearer eyJzZWNyZXQtdG9rZW4tdGhhdC1tdXN0LW5ldmVyLWJlLWVjaG9lZA"


async def _open(hub: HubHarness) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    server = hub.client.server
    assert server.port is not None
    return await asyncio.open_connection(server.host, server.port)


async def _reply(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    status_line, *lines = head[:-4].split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(b":")
        headers[name.decode().lower()] = value.strip().decode()
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 5)
    return int(status_line.split(b" ")[1]), headers, body


@contextlib.asynccontextmanager
async def _hub(hub_with: Callable[..., AsyncIterator[HubHarness]], **limits: Any) -> Any:
    async for hub in hub_with(**limits):
        yield hub


@pytest.mark.parametrize("database_kind", ["sqlite"])  # about the HTTP server, not the database
@pytest.mark.parametrize("path", BEFORE_LOGIN)
async def test_a_trickled_body_is_cut_off_with_408(
    hub_with: Callable[..., AsyncIterator[HubHarness]], path: str
) -> None:
    async with _hub(hub_with, body_timeout_ms=300) as hub:
        reader, writer = await _open(hub)
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n"
            "Content-Length: 60000\r\n\r\n{".encode()
        )
        started = time.monotonic()
        trickle = asyncio.ensure_future(_trickle(writer))
        try:
            status, headers, body = await _reply(reader)
        finally:
            trickle.cancel()
        assert status == 408
        assert time.monotonic() - started < 3
        problem = json.loads(body)
        assert problem["type"] == "urn:schakel:problem:request-timeout"
        assert headers["content-type"] == "application/problem+json"
        assert headers.get("connection", "").lower() == "close"
        if path == BEFORE_LOGIN[0]:  # what still trickles in is dropped for a moment, then
            assert await asyncio.wait_for(reader.read(), LINGER_SECONDS + 3) == b""  # closed
        writer.close()


async def _trickle(writer: asyncio.StreamWriter) -> None:
    while True:
        await asyncio.sleep(0.05)
        writer.write(b" ")
        await writer.drain()


@pytest.mark.parametrize("database_kind", ["sqlite"])
async def test_connections_over_the_cap_per_address_are_closed_at_once(
    hub_with: Callable[..., AsyncIterator[HubHarness]],
) -> None:
    async with _hub(hub_with, connections_per_address=3) as hub:
        held = [await _open(hub) for _ in range(3)]
        reader, writer = await _open(hub)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed before a byte is read
        writer.close()
        await writer.wait_closed()
        cap = hub.client.server.cap  # type: ignore[attr-defined]
        assert cap.open("127.0.0.1") == 3 and cap.refused == 1
        held[0][1].close()  # one leaves: there is room again
        await held[0][1].wait_closed()
        for _ in range(100):
            if cap.open("127.0.0.1") < 3:
                break
            await asyncio.sleep(0.01)
        reader, writer = await _open(hub)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n")
        status, _, _ = await _reply(reader)
        assert status == 200
        writer.close()
        for _, other in held[1:]:
            other.close()
            await other.wait_closed()


@pytest.mark.parametrize("database_kind", ["sqlite"])
@pytest.mark.parametrize(
    "request_head",
    [
        f"GET /v1/inbox HTTP/1.1\r\nHost: hub\r\nAuthorization: {SECRET}{'A' * 9000}\r\n",
        f"GET /v1/inbox HTTP/1.1\r\nHost: hub\r\nAuthorization: {SECRET}\x01\r\n",
        f"GET /v1/inbox?{SECRET.replace(' ', '')}{'A' * 9000} HTTP/1.1\r\nHost: hub\r\n",
    ],
    ids=["long header", "control character", "long request line"],
)
async def test_parser_errors_are_problems_that_quote_nothing(
    hub: HubHarness, request_head: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    reader, writer = await _open(hub)
    writer.write((request_head + "\r\n").encode())
    status, headers, body = await _reply(reader)
    writer.close()
    assert status == 400
    assert headers["content-type"] == "application/problem+json"
    problem = json.loads(body)
    assert problem["type"] == "urn:schakel:problem:malformed"
    assert problem["request_id"] == headers["x-request-id"]
    assert "eyJzZWNyZXQ" not in body.decode() and "AAAA" not in body.decode()
    assert "eyJzZWNyZXQ" not in caplog.text and "AAAA" not in caplog.text


def test_the_bounds_are_read_from_the_environment() -> None:
    config = HubConfig.from_env(
        {
            "SCHAKEL_HUB_LIMIT_BODY_TIMEOUT_MS": "250",
            "SCHAKEL_HUB_LIMIT_CONNECTIONS_PER_ADDRESS": "7",
        },
        network=NetworkId("testnet"),
        root_der=b"root",
    )
    assert (config.limits.body_timeout_ms, config.limits.connections_per_address) == (250, 7)


def test_the_cap_counts_per_address_and_spares_trusted_proxies() -> None:
    cap = ConnectionCap(2, parse_networks("trusted_proxies", ["10.0.0.1"]))
    keys = [cap.admit("192.0.2.7"), cap.admit("192.0.2.7"), cap.admit("192.0.2.7")]
    assert keys == ["192.0.2.7", "192.0.2.7", None]
    assert cap.admit("192.0.2.8") == "192.0.2.8"  # another address has its own count
    assert all(cap.admit("10.0.0.1") for _ in range(5))  # the proxy carries everyone
    assert all(cap.admit("::ffff:10.0.0.1") for _ in range(5))
    cap.release("192.0.2.7")
    assert cap.admit("192.0.2.7") == "192.0.2.7"
    assert (cap.open("192.0.2.7"), cap.refused) == (2, 1)
