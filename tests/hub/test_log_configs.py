"""What ``schakel hub serve`` and ``schakel demo run`` write to their logs: never a
credential, a query value, an id or a pseudonym, whatever a client sends; the demo shows
one short line per request."""

from __future__ import annotations

import asyncio
import io
import logging
import re
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING

import pytest

from hub.logs import configure_logging
from schakel.demo import configure_demo_logging

if TYPE_CHECKING:
    from conftest import HubHarness

SECRET = "eyJzZWNyZXQtdG9rZW4tdGhhdC1tdXN0LW5ldmVyLWJlLWxvZ2dlZA"
MESSAGE_ID = "msg-7f3a9c1e2b4d"
CONFIGS: dict[str, Callable[[IO[str]], None]] = {
    "hub serve": lambda stream: configure_logging("INFO", stream=stream),
    "demo run": configure_demo_logging,
}


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Put the root logger back as it was (the configs under test replace its handler)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:], root.level = handlers, level


async def _raw(hub: HubHarness, head: str) -> None:
    server = hub.client.server
    assert server.port is not None
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(head.encode() + b"\r\n")
    await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await writer.wait_closed()


@pytest.mark.parametrize("database_kind", ["sqlite"])  # about logging, not the database
@pytest.mark.parametrize("config", sorted(CONFIGS))
async def test_nothing_a_client_sent_as_a_credential_reaches_the_log(
    hub: HubHarness, config: str, root_logging: None
) -> None:
    police = await hub.enrol("police")
    stream = io.StringIO()
    CONFIGS[config](stream)
    await _raw(
        hub, f"GET /v1/inbox HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {SECRET}{'A' * 9000}\r\n"
    )
    await _raw(hub, f"GET /v1/inbox HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {SECRET}\x01\r\n")
    bogus = {**police.headers(), "Authorization": f"Bearer {SECRET}"}
    assert (await hub.client.get("/v1/inbox", headers=bogus)).status == 401
    asked = await hub.client.get(f"/v1/messages/{MESSAGE_ID}", headers=police.headers())
    assert asked.status == 404
    listed = await hub.client.get("/v1/inbox?after=987654321&limit=7", headers=police.headers())
    assert listed.status == 200
    text = stream.getvalue()
    assert text.count("\n") >= 3, text
    for secret in (SECRET, "AAAA", MESSAGE_ID, "987654321", police.token or "-"):
        assert secret not in text
    if config == "demo run":
        lines = text.splitlines()
        assert any(re.fullmatch(r"\d\d:\d\d:\d\d GET /v1/inbox 401 \d+ ms -", x) for x in lines)
        assert any(
            re.fullmatch(r"\d\d:\d\d:\d\d GET /v1/messages/\{id\} 404 \d+ ms police", line)
            for line in lines
        ), text
        assert any(
            re.fullmatch(r"\d\d:\d\d:\d\d GET /v1/inbox 200 \d+ ms police", x) for x in lines
        )
