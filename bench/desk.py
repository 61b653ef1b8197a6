"""The desk: its inbox page with 1,000 messages held, opening one message, the coordinator's
cases and case pages with 10,000 cases held, and the subject report over 10^5 log entries.

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

* **Cases and one case.** A hub database is filled (as :mod:`bench.cases` fills it:
  raw sqlite3, one transaction, every case's kept summary brought up to date) with
  ``cases`` cases of 1-5 signals and a referral in every third case, before the hub
  starts; then a real hub (in this process, on loopback) takes a real case of two
  signals from the police. The coordinator's desk (its index already holding every
  case, as a desk that has seen them) serves the cases page (``GET /casussen``: the
  hub's first page of 25 with every open referral, the event feed, labels, render)
  against the library call it wraps (``Library.cases``), and the real case's page
  (``GET /casussen/{ref}``: each signal re-read as the person and decrypted, why they
  were linked, render) against ``Library.case_file(ref)``.
* **The subject report.** The same hub's access log is first filled with
  ``log_entries`` entries of the police (each with an object and a pseudonym, through
  the hub's own append, so the tree and its indexes are real); the police's privacy
  officer posts the subject access request form (``POST /inzageverzoek``: pseudonyms
  derived, every access to the subject's messages found and proven against a fresh
  signed head, rendered) against ``Library.subject_report(identity)``.

p50 and p95 of ``repeats`` timings each (at most :data:`CASEWORK_REPEATS` for the
casework), in milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import jinja2
from aiohttp.test_utils import TestClient, TestServer

from bench.cases import _new_database
from clients.state import LocalState
from desk.adapter import Library
from desk.app import make_app, make_services
from desk.config import DeskConfig, PasswordCost
from desk.sessions import FULL, cookie_name
from desk.web import Services
from hub.config import HubConfig
from hub.store import Store
from protocol.pseudonym import Identity
from schakel import demo as demo_network

MESSAGES = 1000
REPEATS = 200
CASES = 10_000
LOG_ENTRIES = 100_000
CASEWORK_REPEATS = 30  # timings of each casework page and call
T_LOG = 1_790_000_000  # the pre-filled entries' times, before the real ones
SUBJECT = {"bsn": "111222333", "given_names": "Anna", "family_name": "de Vries"}
CASEWORK_ORGS = {
    "police": ("member", "privacy_officer"),
    "ggd": ("member",),
    "school": ("member",),
    "municipality": ("member",),
    "shelter": ("member",),
    "coordinator": ("member", "coordinator"),
}
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
class CaseworkFigures:
    cases: int
    log_entries: int
    cases_page: Timing
    cases_library: Timing
    case_page: Timing
    case_library: Timing
    subject_page: Timing
    subject_library: Timing


@dataclass(frozen=True, slots=True)
class DeskFigures:
    messages: int
    inbox: Timing
    inbox_floor: Timing
    open_page: Timing
    open_library: Timing
    casework: CaseworkFigures | None = None


async def _timed(call: Callable[[], Awaitable[Any]], repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - start)
    return samples


def _logged_in(
    services: Services,
    person: str,
    roles: tuple[str, ...] = ("caseworker",),
    purpose: str = "signal-intake",
) -> str:
    services.accounts.add(person, "Bench", list(roles), "x", now=services.now())
    session_id, session = services.sessions.new()
    session.stage, session.person, session.purpose = FULL, person, purpose
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
    roles: tuple[str, ...] = ("caseworker",),
    purpose: str = "signal-intake",
) -> Any:
    library = Library.open(config.home, hub_url, passphrase, service_user="desk")
    async with library:
        services = make_services(config, library)
        client = TestClient(TestServer(make_app(services, receive=False)))
        await client.start_server()
        try:
            session = _logged_in(services, "bench", roles, purpose)
            cookies = {"Cookie": f"{cookie_name(library.org)}={session}"}
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
    now = int(time.time())
    demo = demo_network.provision(
        workdir / "open",
        now=now,
        orgs={"police": ("member",), "coordinator": ("member", "coordinator")},
    )
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    hub = _serve_hub(demo, port)
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


# -- the coordinator's cases and the subject report, on a filled hub ------------------------


def _fill_cases(path: Path, cases: int) -> list[tuple[str, str]]:
    """``cases`` cases in the new hub database at ``path`` (its organisations come with the
    bootstrap); (message, case) of every signal, for the desk's index."""
    from bench.cases import _fill_case, _fill_referral, _Filler, view_shape

    rng = random.Random(cases)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("BEGIN")
        filler = _Filler(db, '{"stand-in":"' + "x" * 240 + '"}', "A" * 43)
        for number in range(cases):
            ref = _fill_case(filler, number, view_shape(number), rng)
            if number % 3 == 0:
                _fill_referral(filler, ref, number // 3, rng)
        filler.flush()
        # Nothing of it waits in an inbox: the filled envelopes are stand-ins that no
        # client could open (the cases list and the referrals never read them).
        db.execute("DELETE FROM deliveries")
        db.execute("COMMIT")
        found = db.execute(
            'SELECT m.id, c."case" FROM messages m JOIN case_members c ON c.cursor = m.cursor '
            "WHERE m.kind = 'signal'"
        ).fetchall()
    finally:
        db.close()
    return [(str(m), str(c)) for m, c in found]


async def _fill_log(url: str, entries: int) -> None:
    """Every case's kept summary up to date, and ``entries`` access-log entries of the
    police, through the hub's own append (its tree, nodes and indexes), 500 a work item."""
    from bench.cases import _summarise, bench_pseudonym
    from hub.accesslog.recording import Event, append

    store = Store(url)
    await store.start()
    try:
        await _summarise(store)

        def event(number: int) -> Event:
            return Event(
                action="read",
                object_type="message",
                outcome="allowed",
                org="police",
                user=f"user-{number % 40}",
                role="member",
                purpose="signal-intake",
                object_ids=(f"log{number:019d}",),
                pseudonyms=(bench_pseudonym(10**9 + number),),
            )

        def batch(numbers: range) -> Callable[[Any], None]:
            def work(tx: Any) -> None:
                for number in numbers:
                    append(tx, event(number), now=T_LOG + number)

            return work

        for first in range(0, entries, 500):
            await store.write(batch(range(first, min(entries, first + 500))))
    finally:
        await store.close()


async def _casework(workdir: Path, cases: int, entries: int, repeats: int) -> CaseworkFigures:
    now = int(time.time())
    demo = demo_network.provision(workdir / "casework", now=now, orgs=CASEWORK_ORGS)
    path = demo.directory / "hub.db"
    await _new_database(path)
    held = _fill_cases(path, cases)
    await _fill_log(demo.database_url, entries)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    hub = _serve_hub(demo, port)
    try:
        await demo_network.wait_until_listening("127.0.0.1", port, hub)
        await demo_network.bootstrap(demo, base, now=now)
        ref = await _real_case(demo, base)
        coordinator = await _desk(
            _config(demo.home("coordinator"), base),
            demo.passphrase,
            base,
            lambda s, c, k: _time_cases(s, c, k, ref, held, repeats),
            roles=("caseworker", "coordinator"),
            purpose="case-coordination",
        )
        subject = await _desk(
            _config(demo.home("police"), base),
            demo.passphrase,
            base,
            lambda s, c, k: _time_subject(s, c, k, repeats),
            roles=("caseworker", "privacy_officer"),
            purpose="data-subject-request",
        )
        return CaseworkFigures(cases, entries, *coordinator, *subject)
    finally:
        hub.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await hub


async def _real_case(demo: demo_network.DemoNetwork, base: str) -> str:
    """Two signals about the subject from the police, received by the coordinator; the
    reference of the case they make."""
    police = demo_network.open_organisation(demo, "police", base)
    async with police.hub:
        for text in ("eerste", "tweede"):
            await police.send_signal(
                {
                    "schema": "schakel.signal/1",
                    "person": SUBJECT,
                    "exploitation": "labour",
                    "text": text,
                    "urgency": "normal",
                    "consent_to_share": True,
                },
                ["coordinator"],
            )
    police.state.close()
    coordinator = demo_network.open_organisation(demo, "coordinator", base)
    async with coordinator.hub:
        (message, _) = (await coordinator.receive()).messages
        view = await coordinator.case_view(str((await coordinator.hub.cases()).cases[0].case))
        refs = [e.message for e in view.case.timeline]
        if message.id not in refs:
            raise RuntimeError("the newest case is not the police's two signals")
        ref = str(view.case.summary.case)
    coordinator.state.close()
    return ref


async def _time_cases(
    services: Services,
    client: TestClient[Any, Any],
    cookies: dict[str, str],
    ref: str,
    held: list[tuple[str, str]],
    repeats: int,
) -> tuple[Timing, Timing, Timing, Timing]:
    for message, case in held:  # a desk that has seen every case before
        services.casebook.index(message, case)
    library = services.library

    async def get(path: str) -> None:
        response = await client.get(path, headers=cookies, allow_redirects=False)
        assert response.status == 200, (path, response.status)
        await response.read()

    async def listed() -> None:
        with library.acting("bench", "case-coordination"):
            await library.cases(
                state=None, org_type=None, sort="last", order="desc", offset=0, limit=25
            )

    async def opened() -> None:
        with library.acting("bench", "case-coordination"):
            await library.case_file(ref)

    timings = []
    for call in (partial(get, "/casussen"), listed, partial(get, f"/casussen/{ref}"), opened):
        await _timed(call, 5)
        timings.append(Timing.of(await _timed(call, repeats)))
    return timings[0], timings[1], timings[2], timings[3]


async def _time_subject(
    services: Services, client: TestClient[Any, Any], cookies: dict[str, str], repeats: int
) -> tuple[Timing, Timing]:
    library = services.library
    session = services.sessions.get(cookies["Cookie"].split("=", 1)[1], touch=False)
    assert session is not None
    form = {"csrf": session.csrf, "bsn": SUBJECT["bsn"]}
    headers = {**cookies, "Origin": services.config.secure_origin, "Sec-Fetch-Site": "same-origin"}

    async def page() -> None:
        response = await client.post("/inzageverzoek", data=form, headers=headers)
        text = await response.text()
        assert response.status == 200 and "eerste" not in text, response.status
        assert "inzageverzoek" in text

    async def report() -> None:
        with library.acting("bench", "data-subject-request"):
            found = await library.subject_report(Identity(bsn=SUBJECT["bsn"]))
        assert len(found.rows) >= 2, found.rows

    timings = []
    for call in (page, report):
        await _timed(call, 5)
        timings.append(Timing.of(await _timed(call, repeats)))
    return timings[0], timings[1]


def _serve_hub(demo: demo_network.DemoNetwork, port: int) -> asyncio.Task[None]:
    """The demo network's hub on ``port``, in this process, with its keys."""
    from hub.app import serve
    from keys.hub import HubKeys

    hub_keys = HubKeys.open(demo.hub_dir, demo.passphrase)
    cert = hub_keys.certificate
    return asyncio.create_task(
        serve(
            _hub_config(demo, port),
            token_key_pem=hub_keys.token_key_pem,
            hub_certificate_der=cert.der if cert else None,
            log_signing_key=hub_keys.signing_key if cert else None,
        )
    )


def _hub_config(demo: demo_network.DemoNetwork, port: int) -> HubConfig:
    """The demo's hub, with the per-organisation rate limit raised out of the way: a
    subject report asks for a proof of every entry it found, and at the default 20
    requests a second the timings would be the limiter's ``retry-after`` (a second per
    call after the burst), not the desk's or the library's work."""
    config = demo_network.hub_config(demo, host="127.0.0.1", port=port)
    limits = replace(config.limits, rate_per_sec=100_000, burst=100_000)
    return replace(config, limits=limits)


def _free_port() -> int:
    from bench.loadgen import free_port

    return free_port()


def measure_desk(
    workdir: Path,
    *,
    messages: int = MESSAGES,
    repeats: int = REPEATS,
    cases: int = CASES,
    log_entries: int = LOG_ENTRIES,
) -> DeskFigures:
    workdir.mkdir(parents=True, exist_ok=True)

    async def go() -> DeskFigures:
        inbox, floor = await _inbox(workdir, messages, repeats)
        page, library = await _open(workdir, repeats)
        casework = await _casework(workdir, cases, log_entries, min(repeats, CASEWORK_REPEATS))
        return DeskFigures(messages, inbox, floor, page, library, casework)

    return asyncio.run(go())


def desk_lines(figures: DeskFigures) -> list[str]:
    def row(name: str, timing: Timing, floor: Timing) -> str:
        return (
            f"| {name} | {timing.p50:.2f} | {timing.p95:.2f} | {floor.p50:.2f} | "
            f"{floor.p95:.2f} | {timing.p50 / floor.p50:.1f}x |"
        )

    lines = [
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
    work = figures.casework
    if work is None:
        return lines
    return [
        *lines,
        "",
        "### The desk: the coordinator's cases and one case, the subject report (ms)",
        "",
        f"The hub holds {work.cases:,} cases (1-5 signals, a referral in every third) and "
        f"an access log of {work.log_entries:,} entries more; the case page shows a case of "
        "two signals, each re-read and decrypted.",
        "",
        "| what | p50 | p95 | against: p50 | p95 | p50 ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        row("`GET /casussen` against `Library.cases`", work.cases_page, work.cases_library),
        row(
            "`GET /casussen/{ref}` against `Library.case_file(ref)`",
            work.case_page,
            work.case_library,
        ),
        row(
            "`POST /inzageverzoek` against `Library.subject_report(identity)`",
            work.subject_page,
            work.subject_library,
        ),
    ]


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        print("\n".join(desk_lines(measure_desk(Path(scratch), repeats=50))))
