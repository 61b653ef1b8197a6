"""Two real pseudonymisation services on loopback, over real databases, with real keys.

``oprf_network`` (one per module) is a test network: a root, the two key shares of
pseudonym version 5 with their statements, and a way to certify organisations and
sign CRLs. ``services`` starts service 1 on a fresh database of this test's kind (SQLite
and PostgreSQL, ``tests/conftest.py``; on PostgreSQL a copy of the hub's migrated
template, whose tables the service's ``oprf_*`` tables sit beside) and service 2 on
SQLite, with an injected clock the test moves.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fresh_databases import Databases

from protocol import oprf
from protocol.certificate import (
    ROLE_MEMBER,
    Certificate,
    RevocationList,
    RootCertificate,
    create_crl,
    create_enrolment_request,
    create_root,
    issue_certificate,
)
from protocol.encoding import canonical_json
from protocol.evaluation import BlindedBatch, EvaluationRequest, blind_batch, sign_request
from protocol.oprfkeys import (
    OprfKeySet,
    OprfKeyStatement,
    key_set,
    make_key_request,
    sign_key_statement,
)
from protocol.ristretto import Scalar
from protocol.types import NetworkId, OrgId, ServiceName
from pseudonymiser.config import ServiceConfig
from pseudonymiser.service import KeyShare
from pseudonymiser.web import make_app

NET = NetworkId("testnet")
T0 = 1_760_000_800  # 400 s into a clock hour
VERSION = 5
VALUES = [("bsn", "111222333"), ("tel", "+31612345678"), ("ndob", "vries|anna|1990-01-31")]


class Clock:
    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: int) -> None:
        self.now += seconds


def scalar(tag: bytes) -> Scalar:
    return oprf.random_scalar(hashlib.sha512(tag).digest())


@dataclass
class OprfNetwork:
    root_key: Ed25519PrivateKey
    root: RootCertificate
    shares: tuple[Scalar, Scalar]
    statements: tuple[OprfKeyStatement, OprfKeyStatement]
    serials: itertools.count[int] = field(default_factory=lambda: itertools.count(10))

    @property
    def keys(self) -> OprfKeySet:
        return key_set(self.statements, self.root, now=T0, version=VERSION)

    def org(
        self, name: str, roles: Sequence[str] = (ROLE_MEMBER,)
    ) -> tuple[Ed25519PrivateKey, Certificate]:
        key = Ed25519PrivateKey.generate()
        request = create_enrolment_request(key, NET, OrgId(name))
        cert = issue_certificate(
            self.root_key,
            self.root,
            request,
            roles,
            now=T0 - 10,
            days=365,
            serial=next(self.serials),
        )
        return key, cert

    def crl(self, revoked: dict[int, int], *, number: int, now: int = T0) -> RevocationList:
        return create_crl(self.root_key, self.root, revoked, number=number, now=now, days=30)


@pytest.fixture(scope="module")
def oprf_network() -> OprfNetwork:
    root_key = Ed25519PrivateKey.generate()
    root = create_root(root_key, NET, now=T0 - 100, days=3650, serial=1)
    shares = (scalar(b"share 1"), scalar(b"share 2"))
    statements = tuple(
        sign_key_statement(
            root_key,
            root,
            make_key_request(k, NET, ServiceName(f"oprf-{i}"), i, r=scalar(b"pop")),
            version=VERSION,
            url=f"http://127.0.0.1/oprf-{i}",
            not_before=T0 - 100,
            not_after=T0 + 365 * 86400,
        )
        for i, k in ((1, shares[0]), (2, shares[1]))
    )
    return OprfNetwork(root_key, root, shares, statements)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@dataclass
class Service:
    """One running service and what a test needs to talk to it."""

    client: TestClient[Any, Any]
    config: ServiceConfig
    app: web.Application

    @property
    def url(self) -> str:
        return str(self.client.make_url("/")).rstrip("/")

    async def post(self, body: object, **headers: str) -> ClientResponse:
        data = body if isinstance(body, bytes) else canonical_json(body)
        return await self.client.post(
            "/v1/evaluate", data=data, headers={"Content-Type": "application/json", **headers}
        )


@dataclass
class Services:
    network: OprfNetwork
    clock: Clock
    first: Service
    second: Service
    nonces: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def request(
        self,
        signer: tuple[Ed25519PrivateKey, Certificate],
        *,
        service: str = "oprf-1",
        values: Sequence[tuple[str, str]] = VALUES[:2],
        time: int | None = None,
        nonce: bytes | None = None,
    ) -> tuple[BlindedBatch, EvaluationRequest]:
        batch = blind_batch(
            values, [hashlib.sha512(b"%d" % i).digest() for i in range(len(values))]
        )
        request = sign_request(
            signer[0],
            signer[1],
            service=ServiceName(service),
            version=VERSION,
            elements=batch.elements,
            time=self.clock() if time is None else time,
            nonce=nonce or next(self.nonces).to_bytes(16, "big"),
        )
        return batch, request


@contextlib.asynccontextmanager
async def start_service(
    network: OprfNetwork, clock: Clock, index: int, url: str, **changes: Any
) -> AsyncIterator[Service]:
    config = ServiceConfig.for_tests(
        network=NET,
        service=f"oprf-{index}",
        root_der=network.root.der,
        database_url=url,
        **changes,
    )
    share = KeyShare(network.shares[index - 1], network.statements[index - 1])
    app = make_app(config, {VERSION: share}, clock=clock, poll_crl=False)
    async with TestClient(TestServer(app)) as client:
        yield Service(client, config, app)


@pytest.fixture
async def services(
    databases: Databases, oprf_network: OprfNetwork, clock: Clock, tmp_path: Path
) -> AsyncIterator[Services]:
    limits = {"hourly": 10, "daily": 14}
    async with contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(
            start_service(oprf_network, clock, 1, await databases.new(), limits=limits)
        )
        # The other party's service: on SQLite whatever this test's kind (storage is
        # tested through service 1; a second fresh PostgreSQL database costs a second).
        second_url = f"sqlite+aiosqlite:///{tmp_path / 'oprf-2.db'}"
        second = await stack.enter_async_context(start_service(oprf_network, clock, 2, second_url))
        yield Services(oprf_network, clock, first, second)
