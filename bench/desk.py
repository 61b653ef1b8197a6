"""The desk: its inbox page with 1,000 messages held, and opening one message.

* **Inbox.** An organisation's local state holds ``messages`` received messages (their
  envelopes as kept, headers only read); a logged-in person asks for the first page of
  the inbox (``GET /postvak``) through the desk's whole stack (aiohttp, sessions, CSRF
  and header middlewares, the adapter, Jinja2 with autoescape and the Dutch catalogue).
  The floor is a bare Jinja2 render of the same rows with a minimal template, timed in
  the same run.
* **Opening one message.** A real hub (in this process, on loopback) relays one signal
  from the police to the coordinator; the desk's message page (``GET /bericht/{id}``:
  re-read from the hub as the person, verified, decrypted, rendered) against the library
  call it wraps (``Organisation.read_message(id, from_hub=True)``).

p50 and p95 of ``repeats`` timings each, in milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from aiohttp.test_utils import TestClient, TestServer

from clients.state import LocalState
from desk.adapter import Library
from desk.app import make_app, make_services
from desk.config import DeskConfig, PasswordCost
from desk.sessions import FULL, cookie_name
from desk.web import Services
from schakel import demo as demo_network

MESSAGES = 1000
REPEATS = 200
FLOOR_TEMPLATE = """<table>{% for r in rows %}<tr><td><a href="/bericht/{{ r.id }}">{{ r.kind }}</a>
</td><td>{{ r.sender }}</td><td>{{ r.received }}</td><td>{{ r.status }}</td></tr>{% endfor %}
</table>"""


@dataclass(frozen=True, slots=True)
class Timing:
    p50: float  # ms
    p95: float

    @classmethod
    def of(cls, samples: list[float]) -> Timing:
        ordered = sorted(samples)
        p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
        return cls(statistics.median(ordered) * 1000, p95 * 1000)


@dataclass(frozen=True, slots=True)
class DeskFigures:
    messages: int
    inbox: Timing
    inbox_floor: Timing
    open_page: Timing
    open_library: Timing


async def _timed(call: Callable[[], Awaitable[Any]], repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - start)
    return samples


def _logged_in(services: Services, person: str) -> str:
    services.accounts.add(person, "Bench", ["caseworker"], "x", now=services.now())
    session_id, session = services.sessions.new()
    session.stage, session.person, session.purpose = FULL, person, "signal-intake"
    session.generation = services.accounts.require(person).generation
    return session_id


def _fill(state_path: Path, count: int, sender: str, recipient: str) -> None:
    with LocalState(state_path) as state:
        for index in range(count):
            message_id = f"bench{index:017d}"
            header = {
                "id": message_id,
                "kind": "signal",
                "sender": sender,
                "recipients": [recipient],
                "created": 1_800_000_000 + index,
            }
            state.store_message(
                message_id=message_id,
                cursor=index + 1,
                sender=sender,
                kind="signal",
                created=1_800_000_000 + index,
                header=header,
                sealed=b"sealed",
                now=1_800_000_000 + index,
            )


async def _desk(
    config: DeskConfig,
    passphrase: bytes,
    hub_url: str,
    measure: Callable[[Services, TestClient[Any, Any], dict[str, str]], Awaitable[Any]],
) -> Any:
    library = Library.open(config.home, hub_url, passphrase, service_user="desk")
    async with library:
        services = make_services(config, library)
        client = TestClient(TestServer(make_app(services, receive=False)))
        await client.start_server()
        try:
            cookies = {"Cookie": f"{cookie_name(library.org)}={_logged_in(services, 'bench')}"}
            return await measure(services, client, cookies)
        finally:
            await client.close()
            services.close()


def _config(home: Path, hub_url: str) -> DeskConfig:
    return DeskConfig(
        home=home,
        hub_url=hub_url,
        origin="http://localhost:8080",
        database=home / "bench-desk.sqlite",
        password_cost=PasswordCost.for_tests(),
        allow_weak=True,
    )


async def _inbox(workdir: Path, messages: int, repeats: int) -> tuple[Timing, Timing]:
    demo = demo_network.provision(
        workdir / "inbox", now=int(time.time()), orgs={"coordinator": ("member", "coordinator")}
    )
    home = demo.home("coordinator")
    _fill(home / "state.sqlite", messages, "police", "coordinator")

    async def measure(
        services: Services, client: TestClient[Any, Any], cookies: dict[str, str]
    ) -> Any:
        async def page() -> None:
            response = await client.get("/postvak", headers=cookies, allow_redirects=False)
            assert response.status == 200, response.status
            await response.read()

        await _timed(page, 10)
        desk = await _timed(page, repeats)
        template = jinja2.Environment(autoescape=True).from_string(FLOOR_TEMPLATE)

        rows, _ = services.library.inbox(0, 25)

        async def floor() -> None:
            template.render(rows=rows)

        bare = await _timed(floor, repeats)
        return Timing.of(desk), Timing.of(bare)

    result: tuple[Timing, Timing] = await _desk(
        _config(home, "http://127.0.0.1:9"), demo.passphrase, "http://127.0.0.1:9", measure
    )
    return result


async def _open(workdir: Path, repeats: int) -> tuple[Timing, Timing]:
    from hub.app import serve
    from keys.hub import HubKeys

    now = int(time.time())
    demo = demo_network.provision(
        workdir / "open",
        now=now,
        orgs={"police": ("member",), "coordinator": ("member", "coordinator")},
    )
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    hub_keys = HubKeys.open(demo.hub_dir, demo.passphrase)
    cert = hub_keys.certificate
    hub = asyncio.create_task(
        serve(
            demo_network.hub_config(demo, host="127.0.0.1", port=port),
            token_key_pem=hub_keys.token_key_pem,
            hub_certificate_der=cert.der if cert else None,
            log_signing_key=hub_keys.signing_key if cert else None,
        )
    )
    try:
        await demo_network.wait_until_listening("127.0.0.1", port, hub)
        await demo_network.bootstrap(demo, base, now=now)
        police = demo_network.open_organisation(demo, "police", base)
        async with police.hub:
            await police.send_signal(
                {
                    "schema": "schakel.signal/1",
                    "person": {"bsn": "111222333"},
                    "exploitation": "labour",
                    "urgency": "normal",
                    "consent_to_share": True,
                },
                ["coordinator"],
            )
        police.state.close()
        coordinator = demo_network.open_organisation(demo, "coordinator", base)
        async with coordinator.hub:
            (message,) = (await coordinator.receive()).messages

            async def library() -> None:
                await coordinator.read_message(message.id, from_hub=True)

            await _timed(library, 10)
            direct = await _timed(library, repeats)
        coordinator.state.close()

        async def measure(
            services: Services, client: TestClient[Any, Any], cookies: dict[str, str]
        ) -> Any:
            async def page() -> None:
                response = await client.get(f"/bericht/{message.id}", headers=cookies)
                assert response.status == 200, response.status
                await response.read()

            await _timed(page, 10)
            return Timing.of(await _timed(page, repeats))

        home = demo.home("coordinator")
        desk = await _desk(_config(home, base), demo.passphrase, base, measure)
        return desk, Timing.of(direct)
    finally:
        hub.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await hub


def _free_port() -> int:
    from bench.loadgen import free_port

    return free_port()


def measure_desk(workdir: Path, *, messages: int = MESSAGES, repeats: int = REPEATS) -> DeskFigures:
    workdir.mkdir(parents=True, exist_ok=True)

    async def go() -> DeskFigures:
        inbox, floor = await _inbox(workdir, messages, repeats)
        page, library = await _open(workdir, repeats)
        return DeskFigures(messages, inbox, floor, page, library)

    return asyncio.run(go())


def desk_lines(figures: DeskFigures) -> list[str]:
    def row(name: str, timing: Timing, floor: Timing) -> str:
        return (
            f"| {name} | {timing.p50:.2f} | {timing.p95:.2f} | {floor.p50:.2f} | "
            f"{floor.p95:.2f} | {timing.p50 / floor.p50:.1f}x |"
        )

    return [
        "### The desk: the inbox page and opening one message (ms)",
        "",
        f"The inbox holds {figures.messages:,} messages; the page shows the newest 25.",
        "",
        "| what | p50 | p95 | against: p50 | p95 | p50 ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        row(
            "`GET /postvak` against a bare Jinja2 render of the same rows",
            figures.inbox,
            figures.inbox_floor,
        ),
        row(
            "`GET /bericht/{id}` against `read_message(id, from_hub=True)`",
            figures.open_page,
            figures.open_library,
        ),
    ]


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        print("\n".join(desk_lines(measure_desk(Path(scratch), repeats=50))))
