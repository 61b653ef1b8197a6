"""The real hub for the client tests: ``hub.app`` on a temporary SQLite database, on loopback.

Client tests that need a hub use this one, never a hand-written stand-in that could
drift from it. :func:`hub` starts ``make_app`` on aiohttp's ``TestServer`` over a
fresh SQLite file (copied from one migrated once per test process), for a network
whose authority, certified hub key and revocation list it makes itself; every party
shares one settable :class:`Clock`. ``await hub.join("ggd")`` enrols an organisation,
publishes its certificate and key bundle, relays its linking key, and returns its
:class:`~clients.organisation.Organisation`, open and ready.

A test plays a hostile or absent hub in two ways, as a compromised hub would:

* ``hub.sql(...)`` edits the hub's database behind its back;
* each organisation reaches the hub through its own :class:`Tap`, a transport that
  forwards to the real hub and can be taken down (``tap.down = True``: the hub is out
  of reach), or change an answer on its way back (``tap.answer``).
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from clients.hub_client import HubClient, Purpose
from clients.organisation import Organisation
from clients.state import LocalState
from clients.transport import AiohttpTransport, Request, Response, Streamed, TransportFailed
from hub.app import make_app
from hub.config import HubConfig
from hub.store import Store
from keys.authority import Authority
from keys.hub import HubKeys
from keys.keyfile import KdfParams
from keys.organisation import OrgKeys
from protocol.types import NetworkId, OrgId

NETWORK = NetworkId("test-net")
PASS = b"a passphrase for the client tests"
USER = "t.tester"
MARKER = "Zwaantje-Plaintext-Marker"
_TEMPLATE: dict[str, Path] = {}


class Clock:
    """The time of every party in a test: the wall clock's at the start, then set by hand."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def seconds(self) -> int:
        return int(self.now)

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def no_sleep(delay: float) -> None:
    return None


Answer = Callable[[Request, Response], Response | None]


class Tap:
    """A transport to the real hub that a test can take down or make lie.

    ``down``: every request fails as a refused connection would; ``lost``: the requests it
    says yes to fail so, before they reach the hub. ``answer``: called with each request
    and the hub's response; what it returns (if not None) is what the client gets
    instead, and what it raises (TransportFailed: an answer lost on the way back) the
    client gets instead of it. ``requests`` records every request.
    """

    def __init__(self) -> None:
        self._real = AiohttpTransport(timeout=10.0)
        self.down = False
        self.lost: Callable[[Request], bool] | None = None
        self.answer: Answer | None = None
        self.requests: list[Request] = []

    async def open(self) -> None:
        await self._real.open()

    async def close(self) -> None:
        await self._real.close()

    def _check(self, request: Request) -> None:
        self.requests.append(request)
        if self.down or (self.lost is not None and self.lost(request)):
            raise TransportFailed("ClientConnectorError", retry=True)

    async def request(self, request: Request, *, max_bytes: int) -> Response:
        self._check(request)
        response = await self._real.request(request, max_bytes=max_bytes)
        changed = None if self.answer is None else self.answer(request, response)
        return response if changed is None else changed

    @contextlib.asynccontextmanager
    async def stream(self, request: Request, *, max_line: int) -> AsyncIterator[Streamed]:
        self._check(request)
        async with self._real.stream(request, max_line=max_line) as streamed:
            yield streamed

    @contextlib.asynccontextmanager
    async def websocket(self, request: Request) -> AsyncIterator[AsyncIterator[str]]:
        self._check(request)
        async with self._real.websocket(request) as frames:
            yield frames


@dataclass
class Hub:
    """A real hub on loopback, its network, and the organisations that joined it."""

    tmp: Path
    url: str
    clock: Clock
    authority: Authority
    database: Path
    hub_keys: HubKeys
    orgs: dict[str, Organisation] = field(default_factory=dict)
    taps: dict[str, Tap] = field(default_factory=dict)

    async def join(
        self,
        name: str,
        *roles: str,
        org_type: str = "other",
        link: bool = True,
        publish: bool = True,
    ) -> Organisation:
        """Enrol ``name`` (roles besides member), publish it, relay its linking key."""
        now = self.clock.seconds()
        keys = OrgKeys.create(
            self.home(name) / "keys", NETWORK, OrgId(name), PASS, KdfParams.for_tests(),
            allow_weak=True,
        )  # fmt: skip
        keys.pin_root(self.authority.root.der, now=now)
        cert = self.authority.enrol(
            keys.request_der, ["member", *roles], now=now, org_type=org_type
        )
        keys.import_certificate(cert.der, now=now)
        organisation = self.open(name, keys)
        await organisation.hub.__aenter__()
        if publish:
            await organisation.publish()
        if link:
            sealed = self.authority.seal_linking_key(keys.current_bundle(now=now), cert, now=now)
            await organisation.hub.put_linking_key(sealed)
            assert await organisation.fetch_linking_keys() == [1]
        return organisation

    def open(self, name: str, keys: OrgKeys) -> Organisation:
        tap = self.taps.setdefault(name, Tap())
        client = HubClient(
            self.url,
            network=NETWORK,
            org=name,
            signing_key=keys.signing_key,
            user=USER,
            purpose=Purpose("case-coordination"),
            clock=self.clock,
            sleep=no_sleep,
            transport=tap,
        )
        state = LocalState(self.home(name) / "state.sqlite")
        organisation = Organisation(keys, state, client, clock=self.clock)
        self.orgs[name] = organisation
        return organisation

    async def restart(self, name: str) -> Organisation:
        """The organisation as a new process would see it: keys and state opened again."""
        old = self.orgs.pop(name)
        await old.hub.close()
        old.state.close()
        organisation = self.open(name, OrgKeys.open(self.home(name) / "keys", PASS))
        await organisation.hub.__aenter__()
        return organisation

    async def advance(self, seconds: int) -> None:
        """Move every party's clock on, with a fresh revocation list (the old one expires)."""
        self.clock.advance(seconds)
        async with HubClient(self.url, network=NETWORK, clock=self.clock) as anonymous:
            await anonymous.put_crl(self.authority.crl(now=self.clock.seconds()).der)
        for organisation in self.orgs.values():
            organisation.directory.forget_crl()

    def home(self, name: str) -> Path:
        """An organisation's SCHAKEL_HOME: ``keys/`` and ``state.sqlite``, as the CLI keeps them."""
        return self.tmp / "orgs" / name

    def env(self, name: str, **extra: str) -> dict[str, str]:
        """The environment of ``schakel org`` acting as ``name`` on this hub."""
        return {
            "SCHAKEL_HOME": str(self.home(name)),
            "SCHAKEL_HUB_URL": self.url,
            "SCHAKEL_PASSPHRASE": PASS.decode(),
            "SCHAKEL_WEAK_KDF": "1",
            "SCHAKEL_USER": USER,
            "SCHAKEL_PURPOSE": "case-coordination",
            **extra,
        }

    def sql(self, statement: str, *params: Any) -> int:
        """Run one statement on the hub's database behind its back; rows changed."""
        with contextlib.closing(sqlite3.connect(self.database)) as db, db:
            return db.execute(statement, params).rowcount

    def rows(self, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(self.database)) as db:
            return db.execute(statement, params).fetchall()


async def _migrated(tmp: Path) -> Path:
    """A migrated, empty hub database: made once per test process, copied for each test."""
    if "path" not in _TEMPLATE:
        path = tmp / "template.db"
        store = Store(f"sqlite+aiosqlite:///{path}")
        await store.migrate()
        await store.close()
        _TEMPLATE["path"] = path
    return _TEMPLATE["path"]


@pytest.fixture(scope="session")
def template_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hub-template")


@pytest.fixture
async def hub(tmp_path: Path, template_dir: Path) -> AsyncIterator[Hub]:
    clock = Clock()
    now = clock.seconds()
    params = KdfParams.for_tests()
    authority = Authority.create(
        tmp_path / "authority", NETWORK, PASS, params, now=now, allow_weak=True
    )
    authority.new_linking_key()
    hub_keys = HubKeys.create(tmp_path / "hub", NETWORK, PASS, params, allow_weak=True)
    hub_keys.pin_root(authority.root.der, now=now)
    hub_keys.import_certificate(authority.certify_hub(hub_keys.request_der, now=now).der, now=now)
    database = tmp_path / "hub.db"
    shutil.copyfile(await _migrated(template_dir), database)
    database.chmod(0o600)
    config = HubConfig(
        network=NETWORK,
        root_der=authority.root.der,
        database_url=f"sqlite+aiosqlite:///{database}",
    )
    app = make_app(
        config,
        token_key_pem=hub_keys.token_key_pem,
        hub_certificate_der=hub_keys.certificate.der if hub_keys.certificate else None,
        log_signing_key=hub_keys.signing_key,
        clock=clock.seconds,
        migrate=False,
        sign_heads=False,
        escalate=False,
        retain=False,  # tests run the retention job by hand
    )
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    running = Hub(tmp_path, url, clock, authority, database, hub_keys)
    try:
        async with HubClient(running.url, network=NETWORK) as anonymous:
            await anonymous.put_crl(authority.crl(now=now).der)
        yield running
    finally:
        for organisation in running.orgs.values():
            await organisation.hub.close()
            organisation.state.close()
        await server.close()
