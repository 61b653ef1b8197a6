"""A real demo network for the end-to-end tests: a hub on loopback, real clients.

``network`` provisions a demo network (authority, hub keys, one key store per
organisation) in the test's temporary directory, runs the hub made by
``make_app`` on an aiohttp ``TestServer`` at 127.0.0.1 over a fresh database
of the test's kind (``hub_database``: a SQLite file, or a PostgreSQL database
of its own, so each test runs twice), and bootstraps it (certificates, bundles,
CRL and linking keys published). Everything the hub logs while it runs is
captured in ``Network.log``.

Tests play a compromised hub through :class:`HubDatabase`: SQL run on the
hub's database behind its back, the same text on both kinds (named ``:params``,
quoted column names such as ``"user"``, and booleans as bare predicates).

Test modules reach this through the fixtures; they import names from here only
for type annotations (under ``TYPE_CHECKING``), as ``tests/hub`` does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from clients.organisation import Organisation
from hub.app import make_app
from hub.http.common import SERVICES
from hub.logs import configure_logging
from keys.authority import Authority
from keys.hub import HubKeys
from schakel import demo as demo_network

if TYPE_CHECKING:
    from fresh_databases import Databases

ORGS = {
    "police": ("member",),
    "ggd": ("member",),
    "shelter": ("member",),
    "coordinator": ("member", "coordinator"),
}
SQLITE_PREFIX = "sqlite+aiosqlite:///"


class HubDatabase:
    """A hub's database, reached behind the hub's back (as a compromised hub would).

    Every call is one transaction on a connection of its own (no pool), so nothing
    stays open between the test's steps to block the hub or the database's drop.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.kind = "sqlite" if url.startswith("sqlite") else "postgresql"
        self._engine = create_async_engine(url, poolclass=NullPool)

    @property
    def path(self) -> Path | None:
        """The SQLite file (its ``-wal`` and ``-shm`` files next to it); None on PostgreSQL."""
        return Path(self.url.removeprefix(SQLITE_PREFIX)) if self.kind == "sqlite" else None

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        async with self._engine.begin() as conn:
            yield conn

    async def sql(self, statement: str, **params: Any) -> int:
        """Run one statement in a transaction of its own; the number of rows it changed."""
        async with self.transaction() as conn:
            result = await conn.execute(sa.text(statement), params)
            return int(result.rowcount)

    async def rows(self, statement: str, **params: Any) -> Sequence[sa.Row[*tuple[Any, ...]]]:
        async with self.transaction() as conn:
            return (await conn.execute(sa.text(statement), params)).all()

    async def dispose(self) -> None:
        await self._engine.dispose()


@pytest.fixture
async def hub_database(databases: Databases) -> AsyncIterator[HubDatabase]:
    """A fresh, migrated database of this test's kind for one hub; the hub migrates it too."""
    database = HubDatabase(await databases.new())
    try:
        yield database
    finally:
        await database.dispose()


@dataclass
class Network:
    demo: demo_network.DemoNetwork
    base_url: str
    database: HubDatabase
    log: io.StringIO
    linking_key: bytes
    started: int  # the Unix time the network was provisioned at
    app: web.Application | None = None  # the hub's application

    def hub_rereads_its_directory(self) -> None:
        """What a restart (or the held directory's maximum age) does: the hub reads the
        directory from its database again. For tests that change the database behind the
        hub's back and need the hub itself to act on it at once."""
        assert self.app is not None
        self.app[SERVICES].trust_cache.changed()

    def open(self, org: str) -> Organisation:
        """An organisation's client on this hub; close ``.state`` when done."""
        return demo_network.open_organisation(self.demo, org, self.base_url)

    def authority(self) -> Authority:
        return Authority.open(self.demo.authority_dir, self.demo.passphrase)


@pytest.fixture
async def network(tmp_path: Path, hub_database: HubDatabase) -> AsyncIterator[Network]:
    now = int(time.time())
    demo = demo_network.provision(tmp_path / "demo", now=now, orgs=ORGS)
    hub_keys = HubKeys.open(demo.hub_dir, demo.passphrase)
    log = io.StringIO()
    root_logger = logging.getLogger()
    saved = (root_logger.handlers[:], root_logger.level)
    configure_logging(logging.DEBUG, stream=log)
    config = dataclasses.replace(
        demo_network.hub_config(demo, host="127.0.0.1", port=0), database_url=hub_database.url
    )
    app = make_app(
        config,
        token_key_pem=hub_keys.token_key_pem,
        hub_certificate_der=hub_keys.certificate.der if hub_keys.certificate else None,
        log_signing_key=hub_keys.signing_key,
    )
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        base_url = str(server.make_url("")).rstrip("/")
        await demo_network.bootstrap(demo, base_url, now=now)
        linking_key = Authority.open(demo.authority_dir, demo.passphrase).current_linking_key()
        yield Network(demo, base_url, hub_database, log, linking_key.key, now, app)
    finally:
        await server.close()
        root_logger.handlers[:], level = saved
        root_logger.setLevel(level)
