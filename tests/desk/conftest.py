"""Fixtures of the desk's tests.

* ``desk_app`` (HTTP level, no hub): one organisation provisioned offline, its desk built
  in this process with an injected clock and cheap password hashing, served through
  aiohttp's test server. The hub URL points nowhere; pages that need the hub say so.
* ``demo_desks`` (browser level): ``schakel demo run`` as a child process on free ports,
  exactly as ``make run`` starts it (hub and one desk per organisation), with its log
  kept for the canary; and ``chrome``, one headless Chromium (the browser tour is one
  test, so both are made once).
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from deskharness import ORIGIN, ROOT, Clock, DeskUnderTest, no_sleep

from desk.adapter import Library
from desk.app import make_app, make_services
from desk.config import DeskConfig, LoginLimits, PasswordCost
from schakel.demo import DESK_ORGS, PASSPHRASE, provision


@pytest.fixture(scope="session")
def provisioned() -> Iterator[Path]:
    """An organisation 'police' (keys, certificate), provisioned offline once."""
    with tempfile.TemporaryDirectory(prefix="schakel-desk-") as directory:
        now = int(time.time())
        provision(Path(directory), now=now, orgs={"police": ("member",)})
        yield Path(directory)


@pytest.fixture
async def desk_app(provisioned: Path, tmp_path: Path) -> AsyncIterator[DeskUnderTest]:
    clock = Clock(time.time())
    home = provisioned / "orgs" / "police"
    config = DeskConfig(
        home=home,
        hub_url="http://127.0.0.1:9",
        origin=ORIGIN,
        database=tmp_path / "desk.sqlite",
        password_cost=PasswordCost.for_tests(),
        allow_weak=True,
        limits=LoginLimits(),
    )
    library = Library.open(
        home, config.hub_url, PASSPHRASE.encode(), service_user="desk", clock=clock, sleep=no_sleep
    )
    async with library:
        services = make_services(config, library, clock=clock)
        client = TestClient(TestServer(make_app(services, receive=False)))
        await client.start_server()
        try:
            yield DeskUnderTest(client, services, clock)
        finally:
            await client.close()
            services.close()


# -- the demo network with its desks, for the browser ------------------------------------


def _free_run(count: int) -> int:
    """The first of ``count`` consecutive loopback ports that are free now, below the
    kernel's ephemeral range: test servers on port 0 (other tests, other workers) take
    ports from that range, and one could take a desk's port while the demo starts."""
    low = _ephemeral_low()
    for _ in range(50):
        first = random.randrange(min(20000, low // 2), low - count)
        sockets = []
        try:
            for port in range(first, first + count):
                probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(probe)
                probe.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for probe in sockets:
                probe.close()
    raise RuntimeError("no run of free ports")


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (Linux; 32768 when unknown)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


@dataclass
class DemoDesks:
    directory: Path
    log: Path
    hub_url: str
    urls: dict[str, str]
    process: subprocess.Popen[bytes]

    def log_text(self) -> str:
        return self.log.read_text("utf-8", "replace")


LOGGING_MAIN = (
    "import logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stderr); "
    "from schakel.cli import main; sys.argv[0] = 'schakel'; main()"
)


@pytest.fixture(scope="session")
def demo_desks() -> Iterator[DemoDesks]:
    """``schakel demo run`` with its desks, in a child process, logging at INFO."""
    with tempfile.TemporaryDirectory(prefix="schakel-demo-desks-") as directory:
        root = Path(directory)
        hub_port = _free_run(1)
        first = _free_run(len(DESK_ORGS))
        log = root / "demo.log"
        env = {**os.environ, "SCHAKEL_WEAK_KDF": "1"}
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    LOGGING_MAIN,
                    "demo",
                    "run",
                    "--dir",
                    str(root / "demo"),
                    "--port",
                    str(hub_port),
                    "--desk-port",
                    str(first),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=env,
            )
        try:
            urls = _wait_for_banner(log, process)
            yield DemoDesks(root / "demo", log, f"http://127.0.0.1:{hub_port}", urls, process)
        finally:
            # The hub's own stop waits ~20 s for the desks' WebSockets to it (schakel demo
            # run stops the hub before the desks); nothing is checked after the tour, so
            # a few seconds, then the process is killed.
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_for_banner(log: Path, process: subprocess.Popen[bytes]) -> dict[str, str]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        text = log.read_text("utf-8", "replace")
        if "Open them in a browser" in text:
            return dict(re.findall(r"^  (\S+)\s+(http://localhost:\d+)\s+user", text, re.M))
        if process.poll() is not None:
            raise RuntimeError("schakel demo run stopped:\n" + text[-3000:])
        time.sleep(0.2)
    raise RuntimeError("schakel demo run did not start its desks in 120 s")


@pytest.fixture(scope="session")
def chrome(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from deskbrowser import HOW_TO_ENABLE, ChromiumMissing, start_browser

    try:
        driver = start_browser(tmp_path_factory.mktemp("chromium-profile"))
    except ChromiumMissing as exc:
        message = f"browser tests need Chromium: {exc}; {HOW_TO_ENABLE}"
        if os.environ.get("CI") == "true":
            pytest.fail("CI must run the browser tests: " + message)
        pytest.skip(message)
    try:
        yield driver
    finally:
        driver.quit()
