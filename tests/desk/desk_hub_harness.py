"""A desk on a real hub in this process, for what only a hub can show (the outbox).

:func:`desk_on_hub` provisions a small demo network (a shelter and a coordinator), runs
the hub made by ``hub.app.make_app`` on an aiohttp ``TestServer`` at 127.0.0.1 over a
SQLite file, bootstraps it, and serves the shelter's (or the coordinator's) desk through
aiohttp's test client (cheap password hashing, no waiting between the hub client's
attempts). ``stop_hub`` and ``start_hub`` take the hub away and bring it back on the
same port and database, as a hub restart would: the desk keeps running throughout.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from deskharness import ORIGIN, Clock, DeskUnderTest, no_sleep

from desk.adapter import Library
from desk.app import make_app as make_desk_app
from desk.app import make_services
from desk.config import DeskConfig, PasswordCost
from hub.app import make_app as make_hub_app
from keys.hub import HubKeys
from schakel import demo as demo_network

ORGS = {"shelter": ("member",), "coordinator": ("member", "coordinator")}


@dataclass
class HubAndDesk:
    demo: demo_network.DemoNetwork
    desk: DeskUnderTest
    port: int
    server: TestServer | None

    @property
    def hub_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop_hub(self) -> None:
        assert self.server is not None
        await self.server.close()
        self.server = None

    async def start_hub(self) -> None:
        assert self.server is None
        self.server = await _hub_server(self.demo, self.port)

    def hub_message_ids(self) -> list[str]:
        """Every message id the hub holds, read from its database behind its back."""
        path = self.demo.directory / "hub.db"
        with contextlib.closing(sqlite3.connect(path)) as db:
            return [str(r[0]) for r in db.execute("SELECT id FROM messages ORDER BY id")]

    def hub_access(self, object_id: str) -> list[tuple[str, str, str, str]]:
        """(action, outcome, user, purpose) of each access-log entry naming ``object_id``,
        oldest first, read from the hub's database behind its back (the user of a version 2
        entry from its opening)."""
        path = self.demo.directory / "hub.db"
        query = (
            'SELECT l.action, l.outcome, COALESCE(p."user", l."user"), l.purpose FROM audit_log l '
            'JOIN audit_objects o ON o."index" = l."index" '
            'LEFT JOIN audit_openings p ON p."index" = l."index" WHERE o.object_id = ? '
            'ORDER BY l."index"'
        )
        with contextlib.closing(sqlite3.connect(path)) as db:
            return [tuple(str(v) for v in r) for r in db.execute(query, (object_id,))]  # type: ignore[misc]


async def _hub_server(demo: demo_network.DemoNetwork, port: int) -> TestServer:
    hub_keys = HubKeys.open(demo.hub_dir, demo.passphrase)
    app = make_hub_app(
        demo_network.hub_config(demo, host="127.0.0.1", port=port),
        token_key_pem=hub_keys.token_key_pem,
        hub_certificate_der=hub_keys.certificate.der if hub_keys.certificate else None,
        log_signing_key=hub_keys.signing_key,
    )
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    return server


@contextlib.asynccontextmanager
async def desk_on_hub(
    directory: Path, desk_org: str = "shelter", orgs: Mapping[str, tuple[str, ...]] = ORGS
) -> AsyncIterator[HubAndDesk]:
    """The hub, and the desk of ``desk_org`` (one of ``orgs``, with its network roles) on it."""
    now = int(time.time())
    demo = demo_network.provision(directory / "demo", now=now, orgs=orgs)
    server = await _hub_server(demo, 0)
    assert server.port is not None
    both = HubAndDesk(demo, None, server.port, server)  # type: ignore[arg-type]
    try:
        await demo_network.bootstrap(demo, both.hub_url, now=now)
        clock = Clock(time.time())
        home = demo.home(desk_org)
        config = DeskConfig(
            home=home,
            hub_url=both.hub_url,
            origin=ORIGIN,
            database=directory / "desk.sqlite",
            password_cost=PasswordCost.for_tests(),
            allow_weak=True,
        )
        library = Library.open(
            home, config.hub_url, demo.passphrase, service_user="desk", clock=clock, sleep=no_sleep
        )
        async with library:
            services = make_services(config, library, clock=clock)
            client = TestClient(TestServer(make_desk_app(services, receive=False)))
            await client.start_server()
            try:
                both.desk = DeskUnderTest(client, services, clock)
                yield both
            finally:
                await client.close()
                services.close()
    finally:
        if both.server is not None:
            await both.server.close()
