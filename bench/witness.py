"""Benchmarks of witnessing: checking cosignatures, and the witness's add-checkpoint rate.

* **Cosignatures checked per second.** The floor is bare Ed25519 verification
  (``Ed25519PublicKey.verify``) of the very messages a cosignature signs; against it, in
  the same run, one cosignature/v1 line checked as a client does it
  (``CosignatureVerifier.verify``: the header line built, the signature checked) and a
  whole quorum tally (``tally_cosignatures`` over a checkpoint with ``witnesses`` lines:
  match by name and key id, certificate validity, revocation, timestamp, signature),
  reported per cosignature.
* **add-checkpoint.** The always-on witness's use-case (``witness.core.Witness``) over a
  SQLite file (WAL, ``synchronous=FULL``), one request after another, each a new
  checkpoint of a log that grew by one entry with its consistency proof: parse, verify
  the hub's signature, check the proof, cosign, compare-and-set, commit. The floor is the
  same engine committing one row update per request; the figure is the ratio.
* **The added delay before a head meets its quorum.** The real hub (``hub.app``) and one
  always-on witness in this process on loopback, a provisioned organisation with a
  certified witness key, and the authority's policy (quorum 2: the organisation and the
  always-on witness). Per round the hub signs a new head; the floor is the client's check
  of it without witnessing (signature, consistency proof); against it, the check with
  the witnessing round: fetch the policy, cosign and post (the hub verifies and stores
  it), read the checkpoint and count, then, as the hub's background task does at its
  next tick, submit the head to the witness (add-checkpoint with its proof, the
  cosignature kept), read and count again. The figure is the ratio, and the design's
  waits come on top: up to one tick of the hub's submitter (1 s) and one poll of the
  client (1 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import statistics
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import event
from sqlalchemy.ext.asyncio import create_async_engine

from bench.loadgen import LOOPBACK
from protocol import merkle
from protocol.certificate import (
    ROLE_HUB,
    ROLE_MEMBER,
    create_enrolment_request,
    create_root,
    issue_certificate,
)
from protocol.checkpoint import SignedCheckpoint, cosign, cosignature_message, sign_checkpoint
from protocol.tlogwitness import AddCheckpoint
from protocol.types import NetworkId, OrgId
from protocol.witness import create_witness_request, issue_witness_certificate
from protocol.witnesspolicy import create_policy, tally_cosignatures
from witness.core import Cosigner, Witness, trusted_log
from witness.store import WitnessStore

if TYPE_CHECKING:
    from schakel.demo import DemoNetwork

NETWORK = NetworkId("bench")


@dataclass(frozen=True, slots=True)
class CosignatureRate:
    witnesses: int
    bare_per_s: float  # Ed25519PublicKey.verify of the same messages
    line_per_s: float  # CosignatureVerifier.verify per line
    tally_per_s: float  # cosignatures per second inside tally_cosignatures

    @property
    def line_ratio(self) -> float:
        return self.line_per_s / self.bare_per_s

    @property
    def tally_ratio(self) -> float:
        return self.tally_per_s / self.bare_per_s


@dataclass(frozen=True, slots=True)
class AddCheckpointRate:
    requests: int
    witness_per_s: float
    floor_per_s: float  # one row update committed per request, same engine and file

    @property
    def ratio(self) -> float:
        return self.witness_per_s / self.floor_per_s


@dataclass(frozen=True, slots=True)
class QuorumDelay:
    rounds: int
    plain_ms: float  # the client's check of a new head, without witnessing (median)
    witnessed_ms: float  # the same check with the witnessing round, to the quorum (median)

    @property
    def ratio(self) -> float:
        return self.witnessed_ms / self.plain_ms

    @property
    def added_ms(self) -> float:
        return self.witnessed_ms - self.plain_ms


@dataclass(frozen=True, slots=True)
class WitnessFigures:
    cosignatures: CosignatureRate
    add_checkpoint: AddCheckpointRate
    quorum: QuorumDelay


def _key(label: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(label.encode()).digest())


class _Network:
    def __init__(self, now: int, witnesses: int) -> None:
        self.now = now
        self.root_key = _key("bench/root")
        self.root = create_root(self.root_key, NETWORK, now=now, days=30, serial=1)
        self.hub_key = _key("bench/hub")
        request = create_enrolment_request(self.hub_key, NETWORK, OrgId("hub"))
        self.hub_cert = issue_certificate(
            self.root_key, self.root, request, {ROLE_HUB}, now=now, days=30, serial=2
        )
        self.witnesses = []
        for i in range(witnesses):
            key = _key(f"bench/witness/{i}")
            wreq = create_witness_request(key, NETWORK, OrgId(f"org-{i}"))
            cert = issue_witness_certificate(
                self.root_key, self.root, wreq, serial=10 + i, now=now, days=30
            )
            self.witnesses.append((key, cert))

    def checkpoint(self, tree: list[bytes]) -> SignedCheckpoint:
        return sign_checkpoint(
            self.hub_key, self.hub_cert, self.root, size=len(tree), root_hash=merkle.root_hash(tree)
        )


def _rate(count: int, run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return count / (time.perf_counter() - start)


def cosignature_rate(iterations: int, *, witnesses: int = 8, now: int) -> CosignatureRate:
    net = _Network(now, witnesses)
    tree = [merkle.leaf_hash(b"%d" % i) for i in range(100)]
    signed = net.checkpoint(tree)
    checkpoint = signed.checkpoint
    lines = [cosign(key, cert.name, checkpoint, timestamp=now) for key, cert in net.witnesses]
    verifiers = [cert.verifier() for _, cert in net.witnesses]
    messages = [cosignature_message(checkpoint, now) for _ in lines]
    publics = [key.public_key() for key, _ in net.witnesses]
    text = checkpoint.text().encode()
    policy = create_policy(
        net.root_key, net.root, [c for _, c in net.witnesses], quorum=witnesses, number=1,
        issued=now,
    )  # fmt: skip
    rounds = max(1, iterations // witnesses)

    def bare() -> None:
        for _ in range(rounds):
            for public, message, line in zip(publics, messages, lines, strict=True):
                public.verify(line.signature[8:], message)

    def per_line() -> None:
        for _ in range(rounds):
            for verifier, line in zip(verifiers, lines, strict=True):
                verifier.verify(text, line.signature)

    def tally() -> None:
        for _ in range(rounds):
            found = tally_cosignatures(checkpoint, lines, policy, net.root, crl=None, now=now)
            assert len(found.counted) == witnesses

    count = rounds * witnesses
    bare_per_s = max(_rate(count, bare) for _ in range(3))
    line_per_s = max(_rate(count, per_line) for _ in range(3))
    tally_per_s = max(_rate(count, tally) for _ in range(3))
    return CosignatureRate(witnesses, bare_per_s, line_per_s, tally_per_s)


async def _add_checkpoint_rate(workdir: Path, requests: int, now: int) -> AddCheckpointRate:
    net = _Network(now, 1)
    key, cert = net.witnesses[0]
    tree = [merkle.leaf_hash(b"%d" % i) for i in range(requests + 1)]
    bodies = [AddCheckpoint(0, (), net.checkpoint(tree[:1]).to_bytes()).to_bytes()]
    for size in range(2, requests + 2):
        proof = tuple(merkle.consistency_proof(size - 1, tree[:size]))
        note = net.checkpoint(tree[:size]).to_bytes()
        bodies.append(AddCheckpoint(size - 1, proof, note).to_bytes())
    store = await WitnessStore.open(f"sqlite+aiosqlite:///{workdir / 'witness-bench.db'}")
    try:
        log = trusted_log(net.root, [net.hub_cert.der], crl=None, now=now)
        witness = Witness(
            store, net.root, [log], Cosigner(key, cert.name), clock=lambda: now,
            evidence_dir=workdir / "evidence",
        )  # fmt: skip
        await witness.add_checkpoint(bodies[0])
        start = time.perf_counter()
        for body in bodies[1:]:
            await witness.add_checkpoint(body)
        witness_per_s = requests / (time.perf_counter() - start)
        held = await store.held(log.origin)
        assert held is not None and held.size == requests + 1
    finally:
        await store.close()
    floor_per_s = await _floor_rate(workdir / "floor.db", requests)
    return AddCheckpointRate(requests, witness_per_s, floor_per_s)


async def _floor_rate(path: Path, requests: int) -> float:
    """One row update committed per request: the same driver, pragmas and durability."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")

    def pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=FULL"):
            cursor.execute("PRAGMA " + pragma)
        cursor.close()

    event.listen(engine.sync_engine, "connect", pragmas)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text("CREATE TABLE held (id INTEGER PRIMARY KEY, n INTEGER)"))
            await conn.execute(sa.text("INSERT INTO held VALUES (1, 0)"))
        start = time.perf_counter()
        for i in range(requests):
            async with engine.begin() as conn:
                await conn.execute(sa.text("UPDATE held SET n = :n WHERE id = 1"), {"n": i})
        return requests / (time.perf_counter() - start)
    finally:
        await engine.dispose()


def add_checkpoint_rate(workdir: Path, requests: int, *, now: int) -> AddCheckpointRate:
    return asyncio.run(_add_checkpoint_rate(workdir, requests, now))


@contextlib.asynccontextmanager
async def _running_hub(demo: DemoNetwork, witness_url: str) -> AsyncIterator[tuple[str, Any]]:
    """The real hub app on a loopback port, submitting to ``witness_url``; yields its URL
    and the app's services (heads signed and submissions made by hand, per round)."""
    from hub.app import make_app
    from hub.http.common import SERVICES
    from keys.hub import HubKeys
    from schakel.demo import hub_config

    hub_keys = HubKeys.open(demo.hub_dir, demo.passphrase)
    assert hub_keys.certificate is not None
    config = hub_config(demo, host=LOOPBACK, port=0, witness_urls=(witness_url,))
    app = make_app(
        config, token_key_pem=hub_keys.token_key_pem,
        hub_certificate_der=hub_keys.certificate.der, log_signing_key=hub_keys.signing_key,
        sign_heads=False, escalate=False,
    )  # fmt: skip
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, LOOPBACK, 0).start()
        yield f"http://{LOOPBACK}:{runner.addresses[0][1]}", app[SERVICES]
    finally:
        await runner.cleanup()


async def _quorum_delay(workdir: Path, rounds: int, now: int) -> QuorumDelay:
    from schakel.demo import bootstrap, provision
    from schakel.demowitness import provision_witnesses, publish_policy, running_witness

    demo = provision(workdir / "quorum", now=now, orgs={"police": (ROLE_MEMBER,)})
    provision_witnesses(demo, now=now)
    async with contextlib.AsyncExitStack() as stack:
        witness_url = await stack.enter_async_context(running_witness(demo, host=LOOPBACK, port=0))
        base_url, services = await stack.enter_async_context(_running_hub(demo, witness_url))
        await bootstrap(demo, base_url, now=now)
        await publish_policy(demo, base_url)
        plain_ms, witnessed_ms = await _rounds(workdir, demo, base_url, services, rounds + 1)
    # the first round warms connections and caches: left out
    return QuorumDelay(rounds, statistics.median(plain_ms[1:]), statistics.median(witnessed_ms[1:]))


async def _rounds(
    workdir: Path, demo: DemoNetwork, base_url: str, services: Any, rounds: int
) -> tuple[list[float], list[float]]:
    """Per round, a new head checked without and with witnessing; milliseconds of each."""
    from clients.logwatch import LogWatch
    from clients.organisation import Organisation
    from clients.state import LocalState
    from schakel.demo import open_organisation

    opened = open_organisation(demo, "police", base_url)

    async def next_tick(seconds: float) -> None:
        await services.witnesses.tick()  # what the hub's background task does each second

    org = Organisation(opened.keys, opened.state, opened.hub, sleep=next_tick)
    plain_state = LocalState(workdir / "quorum-plain.sqlite")
    plain = LogWatch(
        plain_state, opened.hub, root_der=opened.keys.root.der, network=demo.network,
        crl=org.directory.crl,
    )  # fmt: skip
    plain_ms, witnessed_ms = [], []
    try:
        async with opened.hub:
            for _ in range(rounds):
                await opened.hub.audit_head()  # the log grows
                head = await services.heads.sign_now()
                start = time.perf_counter()
                await plain.check(head)
                plain_ms.append(1000 * (time.perf_counter() - start))
                start = time.perf_counter()
                assert await org.log.check(head) == head
                witnessed_ms.append(1000 * (time.perf_counter() - start))
                assert org.log.witnessed is not None and org.log.witnessed.met
    finally:
        plain_state.close()
        opened.state.close()
    return plain_ms, witnessed_ms


def quorum_delay(workdir: Path, rounds: int, *, now: int) -> QuorumDelay:
    return asyncio.run(_quorum_delay(workdir, rounds, now))


def measure_witness(workdir: Path, *, iterations: int, requests: int, now: int) -> WitnessFigures:
    return WitnessFigures(
        cosignature_rate(iterations, now=now),
        add_checkpoint_rate(workdir, requests, now=now),
        quorum_delay(workdir, max(3, requests // 50), now=now),
    )


def witness_lines(figures: WitnessFigures) -> list[str]:
    c, a, q = figures.cosignatures, figures.add_checkpoint, figures.quorum
    return [
        f"Witnessing: bare Ed25519 verification ran at {c.bare_per_s:,.0f}/s; a cosignature/v1 "
        f"line checked at {c.line_per_s:,.0f}/s ({c.line_ratio:.2f}x) and, inside a quorum "
        f"tally of {c.witnesses} witnesses, {c.tally_per_s:,.0f} cosignatures/s "
        f"({c.tally_ratio:.2f}x). The always-on witness took {a.witness_per_s:,.0f} "
        f"add-checkpoint requests/s over SQLite ({a.requests} checkpoints, each with its "
        f"proof), {a.ratio:.2f}x the {a.floor_per_s:,.0f}/s of one committed row update.",
        f"Quorum: a client's check of a new head took {q.plain_ms:.1f} ms without witnessing "
        f"and {q.witnessed_ms:.1f} ms with the witnessing round to a quorum of two "
        f"(cosign and post, the hub's submission to the always-on witness, two counts): "
        f"{q.ratio:.1f}x, {q.added_ms:.1f} ms added (median of {q.rounds} rounds), before "
        "the design's waits of up to one submitter tick and one client poll (1 s each).",
    ]
