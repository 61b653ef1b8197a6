"""Fixtures of the cluster tests: nginx, TLS, and two hub replicas on one PostgreSQL database.

``cluster`` provisions a demo network, migrates a fresh PostgreSQL database once,
starts two ``schakel hub serve`` replicas on it and nginx (the shipped
``deploy/nginx/schakel.conf``) in front of both, with a throwaway certificate, and
bootstraps the network through replica A. ``busy_cluster`` is the same with nginx's
per-address request rate raised, for tests that send hundreds of requests from one
address. Everything runs as child processes of the test and is stopped after it.

nginx is installed (Debian's package) when it is missing and the tests run as root;
otherwise the tests that need it are skipped with the reason, and fail under CI=true.
"""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from fresh_databases import PgServer
from harness import (
    Nginx,
    NginxMissing,
    Replica,
    Tls,
    client_ssl,
    ensure_nginx,
    make_tls,
    migrate,
    running_nginx,
    running_replicas,
)

from schakel import demo as demo_network

CLUSTER_ORGS = {
    "police": ("member",),
    "ggd": ("member",),
    "shelter": ("member",),
    "coordinator": ("member", "coordinator"),
    "privacy": ("member", "network_privacy_officer"),
}
BUSY_ADDRESS_RATE = 1000  # requests/s from one address, for the failover stream


@dataclass
class Cluster:
    demo: demo_network.DemoNetwork
    database_url: str
    replicas: tuple[Replica, Replica]
    nginx: Nginx
    ssl: ssl.SSLContext
    tls: Tls


@pytest.fixture(scope="session")
def nginx_binary() -> str:
    try:
        return ensure_nginx()
    except NginxMissing as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the cluster tests: {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return make_tls(tmp_path_factory.mktemp("tls"))


async def _cluster(
    tmp_path: Path, pg_server: PgServer, binary: str, tls: Tls, address_rate: int | None
) -> AsyncIterator[Cluster]:
    now = int(time.time())
    demo = demo_network.provision(tmp_path / "demo", now=now, orgs=CLUSTER_ORGS)
    name = await pg_server.take_migrated()
    try:
        url = pg_server.url_of(name)
        migrate(url, demo)
        with ExitStack() as stack:
            logs = [tmp_path / "replica-a.log", tmp_path / "replica-b.log"]
            a, b = stack.enter_context(running_replicas(demo, url, logs))
            nginx = stack.enter_context(
                running_nginx(
                    binary, tmp_path / "nginx", tls, [a.port, b.port], address_rate=address_rate
                )
            )
            await demo_network.bootstrap(demo, a.url, now=now)
            yield Cluster(demo, url, (a, b), nginx, client_ssl(tls), tls)
    finally:
        pg_server.drop_later(name)


@pytest.fixture
async def cluster(
    tmp_path: Path, pg_server: PgServer, nginx_binary: str, tls: Tls
) -> AsyncIterator[Cluster]:
    async for made in _cluster(tmp_path, pg_server, nginx_binary, tls, None):
        yield made


@pytest.fixture
async def busy_cluster(
    tmp_path: Path, pg_server: PgServer, nginx_binary: str, tls: Tls
) -> AsyncIterator[Cluster]:
    async for made in _cluster(tmp_path, pg_server, nginx_binary, tls, BUSY_ADDRESS_RATE):
        yield made
