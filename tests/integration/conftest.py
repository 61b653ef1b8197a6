"""A real demo network for the end-to-end tests: a hub on loopback, real clients.

``network`` provisions a demo network (authority, hub keys, one key store per
organisation) in the test's temporary directory, runs the hub made by
``make_app`` on an aiohttp ``TestServer`` at 127.0.0.1 over a real SQLite file,
and bootstraps it (certificates, bundles, CRL and linking keys published).
Everything the hub logs while it runs is captured in ``Network.log``.

Test modules reach this through the ``network`` fixture; they import names from
here only for type annotations (under ``TYPE_CHECKING``), as ``tests/hub`` does.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from clients.organisation import Organisation
from hub.app import make_app
from hub.logs import configure_logging
from keys.authority import Authority
from keys.hub import HubKeys
from schakel import demo as demo_network

ORGS = {
    "police": ("member",),
    "ggd": ("member",),
    "shelter": ("member",),
    "coordinator": ("member", "coordinator"),
}


@dataclass
class Network:
    demo: demo_network.DemoNetwork
    base_url: str
    db_path: Path
    log: io.StringIO
    linking_key: bytes
    started: int  # the Unix time the network was provisioned at

    def open(self, org: str) -> Organisation:
        """An organisation's client on this hub; close ``.state`` when done."""
        return demo_network.open_organisation(self.demo, org, self.base_url)

    def authority(self) -> Authority:
        return Authority.open(self.demo.authority_dir, self.demo.passphrase)


@pytest.fixture
async def network(tmp_path: Path) -> AsyncIterator[Network]:
    now = int(time.time())
    demo = demo_network.provision(tmp_path / "demo", now=now, orgs=ORGS)
    hub_keys = HubKeys.open(demo.hub_dir, demo.passphrase)
    log = io.StringIO()
    root_logger = logging.getLogger()
    saved = (root_logger.handlers[:], root_logger.level)
    configure_logging(logging.DEBUG, stream=log)
    config = demo_network.hub_config(demo, host="127.0.0.1", port=0)
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
        yield Network(demo, base_url, tmp_path / "demo" / "hub.db", log, linking_key.key, now)
    finally:
        await server.close()
        root_logger.handlers[:], level = saved
        root_logger.setLevel(level)
