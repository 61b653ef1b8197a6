"""``hub.app.serve``: stopping on a real SIGTERM with a watching client, and a hub that
can not start saying why, the same way for ``schakel hub serve`` and ``schakel demo run``."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import os
import signal
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import pytest
from click.testing import CliRunner

from hub.app import serve
from hub.cli import hub as hub_cli
from schakel import demo

if TYPE_CHECKING:
    from conftest import HubHarness

GUARD = 10  # seconds; only a guard against a hang


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("database_kind", ["sqlite"])  # about the process, not the database
async def test_sigterm_closes_watching_sockets_with_1001_and_stops_at_once(
    hub: HubHarness, caplog: pytest.LogCaptureFixture
) -> None:
    police = await hub.enrol("police")  # on the database the served hub will use
    config = dataclasses.replace(hub.config, port=_free_port())
    caplog.set_level(logging.INFO, logger="hub")
    served = asyncio.ensure_future(
        serve(config, token_key_pem=hub.token_key, migrate=False, clock=hub.clock)
    )
    url = f"http://127.0.0.1:{config.port}/v1/ws"
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                ws = await session.ws_connect(url, headers=police.headers())
                break
            except aiohttp.ClientConnectorError:
                await asyncio.sleep(0.02)
        else:
            pytest.fail("the hub did not start listening")
        assert gc.get_freeze_count() > 0  # what it made to start: out of the collector's way
        started = time.monotonic()
        os.kill(os.getpid(), signal.SIGTERM)
        message = await asyncio.wait_for(ws.receive(), GUARD)
        await asyncio.wait_for(served, GUARD)
        took = time.monotonic() - started
        await ws.close()
    assert message.type == aiohttp.WSMsgType.CLOSE
    assert (message.data, message.extra) == (1001, "hub stopped")
    assert took < 2, f"stopping took {took:.1f} s"
    assert gc.get_freeze_count() == 0  # given back to the collector
    said = [r.getMessage() for r in caplog.records if r.name == "hub"]
    assert said[-2:] == ["hub stopping", "hub stopped"]


def _shared_database(tmp_path: Path) -> demo.DemoNetwork:
    """A provisioned demo network (one organisation) whose hub.db others can read."""
    network = demo.provision(tmp_path, now=int(time.time()), orgs={"police": ("member",)})
    demo.mark_ready(network)
    database = tmp_path / "hub.db"
    database.touch()
    database.chmod(0o644)
    return network


def test_a_database_others_can_read_is_named_alike_by_hub_serve_and_demo_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    network = _shared_database(tmp_path)
    port, url = str(_free_port()), network.database_url
    monkeypatch.setenv("SCHAKEL_WEAK_KDF", "1")
    monkeypatch.setenv("SCHAKEL_PASSPHRASE", demo.PASSPHRASE)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        served = CliRunner().invoke(
            hub_cli,
            ["serve", "--dir", str(network.hub_dir), "--port", port, "--database-url", url],
        )
        ran = CliRunner().invoke(
            demo.demo, ["run", "--dir", str(tmp_path), "--port", port, "--desk-port", "0"]
        )
    finally:
        root.handlers[:], root.level = handlers, level
    expected = (
        f"Error: cannot start the hub on 127.0.0.1:{port}: {tmp_path / 'hub.db'} is readable "
        "by other users (mode 644)"
    )
    assert served.exit_code == ran.exit_code == 1
    assert expected in served.output, served.output
    assert expected in ran.output, ran.output
    assert "None" not in ran.output
