"""A real hub on loopback over a real, migrated database, with real keys and envelopes.

``hub`` gives a :class:`HubHarness`: an aiohttp ``TestClient`` for a hub made
by ``make_app`` (the Alembic migration runs at startup), an injected clock
that tests move by hand, and a test network :class:`Authority` that issues
certificates, key bundles and CRLs with the protocol functions.

Test modules reach every helper through the fixtures (``hub``, ``store``,
``clock``); they import names from here only for type annotations, so a
``conftest`` elsewhere in the tree can never shadow these.

Every test that uses ``hub``, ``hub_with``, ``store``, ``database_url`` or
``databases`` runs twice: on SQLite and on PostgreSQL (``database_kind``;
the PostgreSQL half carries the ``postgres`` marker), each time on a database
of its own (:mod:`fresh_databases`). The PostgreSQL server is the one named by
``SCHAKEL_TEST_PG_URL``; when it can not be reached that half is skipped,
except in CI (``CI=true``), where it fails. A test that is about SQLite
itself runs on SQLite only with ``@pytest.mark.parametrize("database_kind",
["sqlite"])`` and says why in its docstring.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fresh_databases import Databases
from openapi_harness import OPENAPI, response_mismatches

from hub.accesslog.heads import HeadSigner
from hub.app import make_app
from hub.config import HubConfig
from hub.escalation import Escalator
from hub.http.common import SERVICES
from hub.server import ConnectionCap, HubRunner, connection_cap, hub_server_kwargs
from hub.store import AuditQuery, Store
from hub.tokens import generate_signing_key
from protocol import merkle
from protocol.auditlog import AuditEntry
from protocol.certificate import (
    Certificate,
    RevocationList,
    RootCertificate,
    create_crl,
    create_enrolment_request,
    create_root,
    issue_certificate,
)
from protocol.challenge import auth_message
from protocol.encoding import b64d, b64e
from protocol.envelope import Envelope, new_message_id, seal
from protocol.keybundle import KeyBundle, kem_public_bytes, sign_bundle
from protocol.pseudonym import LinkingKey, pseudonym
from protocol.types import MessageId, NetworkId, OrgId, Pseudonym

NETWORK = NetworkId("testnet")
T0 = 1_760_000_000
DAY = 86_400
YEAR = 365 * DAY


class Clock:
    """The hub's clock in tests: integer seconds, moved only by the test."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: int) -> None:
        self.now += seconds


@dataclass
class Party:
    """An organisation: its signing key, certificate, KEM seed and current bundle."""

    org: OrgId
    key: Ed25519PrivateKey
    cert: Certificate
    bundle: KeyBundle
    token: str | None = None
    kem_seed: bytes = field(default=b"", repr=False)
    user: str = "user-1"
    purpose: str = "signal-intake"

    def headers(self, **extra: str | None) -> dict[str, str]:
        """Token, ``Schakel-User`` and ``Schakel-Purpose``; ``extra`` adds, or drops with None."""
        assert self.token is not None, "log in first"
        headers: dict[str, str | None] = {
            "Authorization": f"Bearer {self.token}",
            "Schakel-User": self.user,
            "Schakel-Purpose": self.purpose,
            **extra,
        }
        return {name: value for name, value in headers.items() if value is not None}


class Authority:
    """The network authority of the tests: root key, serial numbers, CRLs."""

    def __init__(self, network: NetworkId = NETWORK, now: int = T0) -> None:
        self.network = network
        self.key = Ed25519PrivateKey.generate()
        self.root: RootCertificate = create_root(
            self.key, network, now=now - DAY, days=3650, serial=1
        )
        self._serial = 1
        self._crl_number = 0

    def certify(
        self,
        org: str,
        key: Ed25519PrivateKey,
        roles: Iterable[str] = ("member",),
        *,
        now: int = T0,
        org_type: str = "other",
    ) -> Certificate:
        self._serial += 1
        request = create_enrolment_request(key, self.network, OrgId(org))
        return issue_certificate(
            self.key,
            self.root,
            request,
            list(roles),
            now=now,
            days=365,
            serial=self._serial,
            org_type=org_type,
        )

    def enrol(
        self,
        org: str,
        roles: Iterable[str] = ("member",),
        *,
        now: int = T0,
        org_type: str = "other",
    ) -> Party:
        key = Ed25519PrivateKey.generate()
        cert = self.certify(org, key, roles, now=now, org_type=org_type)
        seed = os.urandom(96)
        bundle = sign_bundle(
            key, cert, kem_public_bytes(seed), not_before=now - 60, not_after=now + 30 * DAY
        )
        return Party(OrgId(org), key, cert, bundle, kem_seed=seed)

    def crl(self, revoked: Iterable[Certificate], *, now: int = T0) -> RevocationList:
        self._crl_number += 1
        return create_crl(
            self.key,
            self.root,
            {cert.serial: now for cert in revoked},
            number=self._crl_number,
            now=now,
            days=7,
        )


def make_envelope(
    sender: Party,
    recipients: Iterable[Party],
    *,
    now: int = T0,
    message_id: MessageId | None = None,
    payload: bytes = b"a possible victim, seen at the port",
    pseudonyms: tuple[Pseudonym, ...] = (),
    kind: str = "signal",
    **header: Any,
) -> Envelope:
    """A sealed envelope; ``header`` adds ``status``, ``ref`` or ``case``."""
    return seal(
        message_id=message_id or new_message_id(os.urandom),
        network=NETWORK,
        sender=sender.cert,
        sender_key=sender.key,
        recipients={party.org: party.bundle for party in recipients},
        kind=kind,
        payload=payload,
        pseudonyms=pseudonyms,
        created=now,
        rng=os.urandom,
        **header,
    )


def pseudonyms_for(*values: str) -> tuple[Pseudonym, ...]:
    key = LinkingKey(1, b"k" * 32)
    return tuple(sorted(pseudonym("tel", value, key) for value in values))


class HubTestServer(TestServer):
    """aiohttp's test server running the hub's own server (:mod:`hub.server`), as
    ``hub serve`` does: parser errors as problems, connections capped per address."""

    def __init__(self, app: web.Application, config: HubConfig) -> None:
        super().__init__(app)
        self.config = config

    async def _make_runner(self, **kwargs: Any) -> web.BaseRunner:
        kwargs = {**kwargs, **hub_server_kwargs(self.config)}
        return HubRunner(self.app, cap=connection_cap(self.config), **kwargs)

    @property
    def cap(self) -> ConnectionCap:
        assert isinstance(self.runner, HubRunner)
        return self.runner.cap


@dataclass
class HubHarness:
    client: TestClient[Any, Any]
    clock: Clock
    authority: Authority
    config: HubConfig
    hub_cert: Certificate | None = None
    token_key: bytes = b""
    hub_key: Ed25519PrivateKey | None = None

    @contextlib.asynccontextmanager
    async def replica(self) -> AsyncIterator[TestClient[Any, Any]]:
        """A second hub on the same database, keys and clock, as a second replica runs."""
        app = make_app(
            self.config,
            token_key_pem=self.token_key,
            hub_certificate_der=None if self.hub_cert is None else self.hub_cert.der,
            log_signing_key=self.hub_key,
            clock=self.clock,
            migrate=False,
            sign_heads=False,
            escalate=False,
            retain=False,
        )
        async with TestClient(TestServer(app)) as client:
            yield client

    @property
    def store(self) -> Store:
        return self.client.server.app[SERVICES].store  # type: ignore[union-attr]

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``: the database this hub runs on."""
        return sa.make_url(self.config.database_url).get_backend_name()

    async def execute(self, sql: str, **params: Any) -> None:
        """Run one SQL statement on the hub's database, in a transaction of its own."""
        await self.store._engines.write(lambda conn: conn.execute(sa.text(sql), params))

    @property
    def escalator(self) -> Escalator:
        escalator = self.client.server.app[SERVICES].escalator  # type: ignore[union-attr]
        assert escalator is not None
        return escalator

    @property
    def heads(self) -> HeadSigner:
        signer = self.client.server.app[SERVICES].heads  # type: ignore[union-attr]
        assert signer is not None, "this hub has no log-signing key"
        return signer

    async def post(self, path: str, body: Any, **kw: Any) -> ClientResponse:
        return await self.client.post(path, json=body, **kw)

    async def login(self, party: Party) -> str:
        challenge = await self.post("/v1/auth/challenge", {"org": party.org})
        assert challenge.status == 200, await challenge.text()
        raw = b64d((await challenge.json())["challenge"])
        signature = party.key.sign(auth_message(NETWORK, party.org, raw, self.config.audience))
        answer = {"org": party.org, "challenge": b64e(raw), "signature": b64e(signature)}
        response = await self.post("/v1/auth/token", answer)
        assert response.status == 200, await response.text()
        party.token = (await response.json())["access_token"]
        return party.token

    async def upload_certificate(self, cert: Certificate) -> ClientResponse:
        return await self.post("/v1/directory/certificates", {"certificate": b64e(cert.der)})

    async def upload_bundle(self, party: Party, bundle: KeyBundle) -> ClientResponse:
        return await self.client.put(
            f"/v1/directory/orgs/{party.org}/bundle", json=bundle.to_wire(), headers=party.headers()
        )

    async def register(self, party: Party) -> Party:
        """Certificate in the directory, logged in, bundle uploaded."""
        response = await self.upload_certificate(party.cert)
        assert response.status in (200, 201), await response.text()
        await self.login(party)
        response = await self.upload_bundle(party, party.bundle)
        assert response.status == 200, await response.text()
        return party

    async def enrol(
        self, org: str, roles: Iterable[str] = ("member",), *, org_type: str = "other"
    ) -> Party:
        return await self.register(
            self.authority.enrol(org, roles, now=self.clock(), org_type=org_type)
        )

    async def put_crl(self, crl: RevocationList) -> ClientResponse:
        return await self.client.put("/v1/directory/crl", json={"crl": b64e(crl.der)})

    async def send(self, party: Party, envelope: Envelope | Any, **headers: str) -> ClientResponse:
        wire = envelope.to_wire() if isinstance(envelope, Envelope) else envelope
        return await self.client.post("/v1/messages", json=wire, headers=party.headers(**headers))

    def envelope(self, sender: Party, recipients: Iterable[Party], **kw: Any) -> Envelope:
        return make_envelope(sender, recipients, now=kw.pop("now", self.clock()), **kw)

    @staticmethod
    def foreign_authority() -> Authority:
        """The authority of another network root (same network id)."""
        return Authority()

    @staticmethod
    def pseudonyms(*values: str) -> tuple[Pseudonym, ...]:
        return pseudonyms_for(*values)

    @staticmethod
    async def problem(response: ClientResponse, status: int, slug: str) -> dict[str, Any]:
        return await problem(response, status, slug)

    async def counts(self) -> dict[str, int]:
        return await self.store.counts()

    async def audit(self) -> list[AuditEntry]:
        """Every entry; checks they are 0..n-1 and that their leaves give the stored root."""
        return await all_entries(self.store)


async def all_entries(store: Store) -> list[AuditEntry]:
    """Every entry of the log; asserts indexes 0..n-1 and the stored nodes' root."""
    entries: list[AuditEntry] = []
    while page := await store.audit_entries(
        AuditQuery(viewer=None, start=len(entries), limit=1000)
    ):
        entries.extend(page)
    assert [e.index for e in entries] == list(range(len(entries)))
    size, root = await store.audit_root()
    assert size == len(entries)
    assert root == merkle.root_hash([e.leaf() for e in entries])
    return entries


async def start_hub(
    database_url: str, *, signing: bool = True, **limits: Any
) -> AsyncIterator[HubHarness]:
    clock = Clock()
    authority = Authority()
    config = HubConfig.for_tests(
        network=NETWORK,
        root_der=authority.root.der,
        database_url=database_url,
        limits={"burst": 10_000, "address_burst": 10_000, **limits},
    )
    hub_key = Ed25519PrivateKey.generate()
    hub_cert = authority.certify("hub", hub_key, ["hub"]) if signing else None
    token_key = generate_signing_key()
    app = make_app(
        config,
        token_key_pem=token_key,
        hub_certificate_der=None if hub_cert is None else hub_cert.der,
        log_signing_key=hub_key if signing else None,
        clock=clock,
        sign_heads=False,  # tests tick the signer with their clock
        escalate=False,  # and the escalator
        retain=False,  # and run the retention job
    )
    answered: set[tuple[str, str, int]] = set()
    mismatches: list[str] = []
    app.middlewares.insert(0, _recorder(answered, mismatches))
    async with TestClient(HubTestServer(app, config)) as client:
        yield HubHarness(
            client, clock, authority, config, hub_cert, token_key, hub_key if signing else None
        )
    _check_documented(answered)
    assert not mismatches, "answers that do not match hub/openapi.json:\n" + "\n".join(
        mismatches[:20]
    )


# -- every answer the hub gives in these tests must be in hub/openapi.json ----------------


def _recorder(answered: set[tuple[str, str, int]], mismatches: list[str]) -> Any:
    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        response = await handler(request)
        resource = request.match_info.route.resource
        if resource is not None and response.status != 101:
            key = (request.method.lower(), resource.canonical, response.status)
            answered.add(key)
            mismatches.extend(response_mismatches(key, response))
        return response

    return record


def _check_documented(answered: set[tuple[str, str, int]]) -> None:
    missing = sorted(
        (method, path, status)
        for method, path, status in answered
        if str(status) not in OPENAPI["paths"].get(path, {}).get(method, {}).get("responses", {})
    )
    assert not missing, f"answers the OpenAPI document does not list: {missing}"


@pytest.fixture
async def database_url(databases: Databases) -> str:
    """The URL of this test's own database (it may already hold the newest schema)."""
    return await databases.new()


@pytest.fixture
async def hub(database_url: str) -> AsyncIterator[HubHarness]:
    async for harness in start_hub(database_url):
        yield harness


@pytest.fixture
def hub_with(databases: Databases) -> Callable[..., AsyncIterator[HubHarness]]:
    """``async for hub in hub_with(burst=3): ...``: a hub with other limits, on a new database.

    ``signing=False`` starts it without a log-signing key.
    """

    async def start(**limits: Any) -> AsyncIterator[HubHarness]:
        async for harness in start_hub(await databases.new(), **limits):
            yield harness

    return start


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """A migrated store with its writer running, on this test's own database."""
    store = Store(database_url)
    await store.migrate()
    await store.start()
    yield store
    await store.close()


async def problem(response: ClientResponse, status: int, slug: str) -> dict[str, Any]:
    """Assert ``response`` is the problem ``slug`` with ``status``; return its body."""
    body = await response.json(content_type=None)
    assert response.status == status, body
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert body["type"] == f"urn:schakel:problem:{slug}", body
    return body
