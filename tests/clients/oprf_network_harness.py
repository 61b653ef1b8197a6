"""Two real pseudonymisation services beside the real hub of ``client_harness``.

:func:`start_services` generates the two key shares, has the hub's authority certify
them (each statement names its service's loopback URL), starts ``pseudonymiser.web``
for each on its own SQLite database and the hub's clock, and uploads both statements to
the hub, as ``schakel authority relay`` does: the network is then on the OPRF.

In front of each service sits a :class:`Switch` a test turns, as a broken or hostile
service would behave: ``down`` (a proxy answering 502), or ``lie`` (the service's answer
replaced by an evaluation under another key, with a valid proof for that key).
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web
from client_harness import Hub

from clients.hub_client import HubClient
from protocol import oprf
from protocol.encoding import b64e, canonical_json, loads_strict
from protocol.evaluation import EvaluationRequest, evaluate_request
from protocol.oprfkeys import OprfKeyStatement, make_key_request
from protocol.ristretto import Scalar
from protocol.types import ServiceName
from pseudonymiser.config import ServiceConfig
from pseudonymiser.service import KeyShare
from pseudonymiser.web import make_app

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def scalar(tag: bytes) -> Scalar:
    return oprf.random_scalar(hashlib.sha512(tag).digest())


@dataclass
class Switch:
    """How one service behaves towards the organisations; ``asked`` counts requests."""

    down: bool = False
    lie: bool = False
    asked: int = 0


@dataclass
class OprfServices:
    shares: tuple[Scalar, Scalar]
    statements: tuple[OprfKeyStatement, OprfKeyStatement]
    switches: tuple[Switch, Switch]
    urls: tuple[str, str]
    runners: list[web.AppRunner] = field(default_factory=list)

    @property
    def version(self) -> int:
        return self.statements[0].version

    async def publish(self, hub: Hub) -> None:
        """Relay both statements through the hub: the network is on the OPRF from now."""
        async with HubClient(hub.url, network=hub.authority.network) as anonymous:
            for statement in self.statements:
                await anonymous.put_oprf_key(statement)

    async def push_crl(self, der: bytes) -> None:
        """Hand both services a new revocation list (as the authority does)."""
        async with aiohttp.ClientSession() as session:
            for url in self.urls:
                async with session.put(f"{url}/v1/crl", json={"crl": b64e(der)}) as response:
                    assert response.status == 200, await response.text()


def _switched(switch: Switch) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    @web.middleware
    async def front(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path != "/v1/evaluate":
            return await handler(request)
        switch.asked += 1
        if switch.down:
            return web.json_response({"detail": "bad gateway"}, status=502)
        if not switch.lie:
            return await handler(request)
        asked = EvaluationRequest.from_wire(loads_strict(await request.read()))
        forged = evaluate_request(scalar(b"not the certified key"), asked, r=scalar(b"r"))
        return web.Response(body=canonical_json(forged.to_wire()), content_type="application/json")

    return front


@contextlib.asynccontextmanager
async def start_services(
    hub: Hub, tmp: Path, *, publish: bool = True
) -> AsyncIterator[OprfServices]:
    """Both services running, certified by the hub's authority; with ``publish`` their
    statements on the hub."""
    now = hub.clock.seconds()
    sockets = []
    for _ in range(2):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
    urls = tuple(f"http://127.0.0.1:{s.getsockname()[1]}" for s in sockets)
    shares = (scalar(b"client share 1"), scalar(b"client share 2"))
    statements = tuple(
        hub.authority.certify_oprf_key(
            make_key_request(
                key, hub.authority.network, ServiceName(f"oprf-{i}"), i, r=scalar(b"pop")
            ),
            url=urls[i - 1],
            now=now,
        )
        for i, key in ((1, shares[0]), (2, shares[1]))
    )
    switches = (Switch(), Switch())
    services = OprfServices(shares, statements, switches, urls)  # type: ignore[arg-type]
    try:
        for index in (0, 1):
            config = ServiceConfig.for_tests(
                network=hub.authority.network,
                service=f"oprf-{index + 1}",
                root_der=hub.authority.root.der,
                database_url=f"sqlite+aiosqlite:///{tmp / f'oprf-{index + 1}.db'}",
                limits={"hourly": 12, "daily": 20},
            )
            share = KeyShare(shares[index], statements[index])
            app = make_app(
                config, {share.statement.version: share}, clock=hub.clock.seconds, poll_crl=False
            )
            app.middlewares.insert(0, _switched(switches[index]))
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            services.runners.append(runner)
            await web.SockSite(runner, sockets[index]).start()
        if publish:
            await services.publish(hub)
        yield services
    finally:
        for runner in services.runners:
            await runner.cleanup()
        for sock in sockets:
            sock.close()
