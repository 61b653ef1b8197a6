"""The pseudonymisation services: their cost against the group operations they are made of.

Three figures, each against a floor measured in the same run:

1. **Service core.** ``evaluate_request`` (evaluate a batch and prove it) in one thread,
   as evaluations per second, against bare ristretto255 scalar multiplications per
   second (``protocol.ristretto.times``, one libsodium call through rbcl).
2. **Client cost.** Deriving a signal's pseudonyms from five identifiers on the client:
   blinding, checking both services' proofs, combining, unblinding and finalizing
   (``blind_batch`` + ``pseudonyms_from``; the services' answers are made beforehand).
   Against the old HMAC derivation of the same five pseudonyms, and against **the
   primitives it needs**: every libsodium group call and every SHA-512 the client path
   makes is counted in one traced run, and each is timed alone; the floor is the sum
   of count x time. The ratio is the protocol code's own overhead.
3. **End to end over loopback.** Two real services (``schakel pseudonymiser`` code in
   child processes, on SQLite) and ``clients.pseudonymise.pseudonymise`` with five
   identifiers, one signal after another: the latency an organisation adds to a send.

Targets (issue 15): client cost within 1.3x its primitives; a signal with five
identifiers pseudonymised in under 50 ms over loopback.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import oprf
from protocol import ristretto as group
from protocol.certificate import (
    ROLE_MEMBER,
    Certificate,
    create_enrolment_request,
    create_root,
    issue_certificate,
    load_root,
    verify_certificate,
)
from protocol.evaluation import (
    EvaluationResponse,
    blind_batch,
    evaluate_request,
    pseudonyms_from,
    sign_request,
)
from protocol.oprfkeys import (
    OprfKeySet,
    OprfKeyStatement,
    key_set,
    make_key_request,
    sign_key_statement,
)
from protocol.pseudonym import LinkingKey, pseudonym
from protocol.types import NetworkId, OrgId, ServiceName

NETWORK = NetworkId("bench-oprf")
VERSION = 3
VALUES = (
    ("bsn", "111222333"),
    ("ndob", "vries|anna|1990-01-31"),
    ("doc", "NLD:NW12345A"),
    ("tel", "+31612345678"),
    ("ndob", "byl|maria|1985-07-04"),
)
CLIENT_TARGET = 1.3  # client cost / its primitives, at most
LATENCY_TARGET = 0.050  # seconds for a five-identifier signal over loopback, at most
MULT, BASE_MULT = "scalar multiplication", "scalar multiplication of G"
ADD, FROM_HASH = "point addition", "one-way map (from_hash)"
INVERT, SCALAR_MUL = "scalar inversion", "scalar product"
REDUCE, SHA512 = "scalar reduction (64 bytes)", "SHA-512 (~200 bytes)"
PRIMITIVES = (MULT, BASE_MULT, ADD, FROM_HASH, INVERT, SCALAR_MUL, REDUCE, SHA512)


@dataclass(frozen=True, slots=True)
class OprfFigures:
    service_evals_per_second: float  # batches of five, one thread
    mults_per_second: float  # the floor
    client_seconds: float  # five identifiers, both proofs checked
    hmac_seconds: float  # the old derivation of five pseudonyms
    primitive_seconds: float  # sum of count x time of what the client path calls
    counts: Mapping[str, int]
    primitive_micros: Mapping[str, float]
    latencies: tuple[float, ...]  # end to end, seconds, one per signal
    skipped: str | None = None  # why there are no latencies
    # The client library's path (clients.linking), as a send makes a signal's pseudonyms:
    # its own HTTP session and connections per signal, the sorted pseudonyms.
    library_latencies: tuple[float, ...] = ()

    @property
    def client_ratio(self) -> float:
        return self.client_seconds / self.primitive_seconds

    @property
    def latency_p50(self) -> float | None:
        return statistics.median(self.latencies) if self.latencies else None

    @property
    def latency_p95(self) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def _scalar(tag: str) -> group.Scalar:
    return oprf.random_scalar(hashlib.sha512(b"bench " + tag.encode()).digest())


def _best(fn: Callable[[], object], iterations: int, repeats: int) -> float:
    """Median seconds per call over ``repeats`` timings of ``iterations`` calls, gc off."""
    timings = []
    for _ in range(repeats):
        gc.disable()
        try:
            started = time.perf_counter()
            for _ in range(iterations):
                fn()
            timings.append((time.perf_counter() - started) / iterations)
        finally:
            gc.enable()
    return statistics.median(timings)


# -- a network: root, two shares, an organisation -------------------------------------------


@dataclass(frozen=True, slots=True)
class Network:
    root_der: bytes
    shares: tuple[group.Scalar, group.Scalar]
    statements: tuple[OprfKeyStatement, OprfKeyStatement]
    org_key: Ed25519PrivateKey
    org_cert_der: bytes

    @property
    def keys(self) -> OprfKeySet:
        now = int(time.time())
        return key_set(self.statements, load_root(self.root_der, now=now), now=now, version=VERSION)


def make_network(
    now: int, urls: tuple[str, str] = ("http://127.0.0.1/oprf-1", "http://127.0.0.1/oprf-2")
) -> Network:
    root_key = Ed25519PrivateKey.generate()
    root = create_root(root_key, NETWORK, now=now - 60, days=30, serial=1)
    shares = (_scalar("share 1"), _scalar("share 2"))
    statements = tuple(
        sign_key_statement(
            root_key,
            root,
            make_key_request(k, NETWORK, ServiceName(f"oprf-{i}"), i, r=_scalar("pop")),
            version=VERSION,
            url=urls[i - 1],
            not_before=now - 60,
            not_after=now + 86400,
        )
        for i, k in ((1, shares[0]), (2, shares[1]))
    )
    org_key = Ed25519PrivateKey.generate()
    request = create_enrolment_request(org_key, NETWORK, OrgId("bench-org"))
    cert = issue_certificate(root_key, root, request, [ROLE_MEMBER], now=now - 60, days=1, serial=2)
    return Network(root.der, shares, statements, org_key, cert.der)  # type: ignore[arg-type]


# -- 1 and 2: in-process -------------------------------------------------------------------


def _certificate(network: Network) -> Certificate:
    now = int(time.time())
    root = load_root(network.root_der, now=now)
    return verify_certificate(network.org_cert_der, root, now=now, crl=None)


def _answers(
    network: Network, batch_elements: tuple[group.Element, ...]
) -> tuple[EvaluationResponse, ...]:
    cert = _certificate(network)
    request = sign_request(
        network.org_key, cert, service=ServiceName("oprf-1"), version=VERSION,
        elements=batch_elements, time=int(time.time()), nonce=bytes(16),
    )  # fmt: skip
    return tuple(
        evaluate_request(k, request, r=_scalar(f"r{i}")) for i, k in enumerate(network.shares)
    )


@contextmanager
def _counting() -> Iterator[Counter[str]]:
    """Count the group calls and SHA-512s of protocol.oprf while the block runs."""
    counts: Counter[str] = Counter()
    labels = {
        "times": MULT,
        "generator_times": BASE_MULT,
        "add": ADD,
        "element_from_uniform": FROM_HASH,
        "invert": INVERT,
        "scalar_from_uniform": REDUCE,
        "scalar_mul": SCALAR_MUL,
    }
    originals = {name: getattr(group, name) for name in labels}

    def wrap(name: str) -> Callable[..., Any]:
        def counted(*args: Any) -> Any:
            counts[labels[name]] += 1
            return originals[name](*args)

        return counted

    def sha512(data: bytes = b"") -> Any:
        counts[SHA512] += 1
        return hashlib.sha512(data)

    for name in originals:
        setattr(group, name, wrap(name))
    setattr(oprf, "hashlib", SimpleNamespace(sha512=sha512))  # noqa: B010 (a shim, undone below)
    try:
        yield counts
    finally:
        for name, original in originals.items():
            setattr(group, name, original)
        setattr(oprf, "hashlib", hashlib)  # noqa: B010


def measure_in_process(network: Network, *, iterations: int, repeats: int) -> dict[str, Any]:
    keys = network.keys
    randomness = [hashlib.sha512(b"blind %d" % i).digest() for i in range(len(VALUES))]
    batch = blind_batch(VALUES, randomness)
    first, second = _answers(network, batch.elements)

    def client() -> object:
        fresh = blind_batch(VALUES, randomness)  # same blinds: the prepared answers fit
        return pseudonyms_from(fresh, keys, first, second)

    with _counting() as counts:
        client()
    counted = dict(counts)
    element, scalar = batch.elements[0], _scalar("x")
    uniform, message = hashlib.sha512(b"u").digest(), b"\x00" * 200
    primitive: dict[str, Callable[[], object]] = {
        MULT: lambda: group.times(scalar, element),
        BASE_MULT: lambda: group.generator_times(scalar),
        SCALAR_MUL: lambda: group.scalar_mul(scalar, scalar),
        ADD: lambda: group.add(element, element),
        FROM_HASH: lambda: group.element_from_uniform(uniform),
        INVERT: lambda: group.invert(scalar),
        REDUCE: lambda: group.scalar_from_uniform(uniform),
        SHA512: lambda: hashlib.sha512(message).digest(),
    }
    micros = {name: _best(fn, iterations, repeats) * 1e6 for name, fn in primitive.items()}
    linking = LinkingKey(1, bytes(32))
    cert = _certificate(network)
    request = sign_request(
        network.org_key, cert, service=ServiceName("oprf-1"), version=VERSION,
        elements=batch.elements, time=int(time.time()), nonce=bytes(16),
    )  # fmt: skip
    service = _best(
        lambda: evaluate_request(network.shares[0], request, r=scalar),
        max(1, iterations // 5),
        repeats,
    )
    return {
        "service_evals_per_second": len(VALUES) / service,
        "mults_per_second": 1e6 / micros[MULT],
        "client_seconds": _best(client, max(1, iterations // 10), repeats),
        "hmac_seconds": _best(
            lambda: [pseudonym(k, v, linking) for k, v in VALUES], iterations, repeats
        ),
        "primitive_seconds": sum(counted.get(name, 0) * micros[name] for name in PRIMITIVES) / 1e6,
        "counts": counted,
        "primitive_micros": micros,
    }


# -- 3: end to end over loopback ------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve_child(
    workdir: Path, network: Network, index: int, port: int
) -> tuple[subprocess.Popen[bytes], str]:
    spec = {
        "root": network.root_der.hex(),
        "share": network.shares[index].hex(),
        "statement": network.statements[index].to_wire(),
        "port": port,
        "database": f"sqlite+aiosqlite:///{workdir / f'oprf-{index + 1}.db'}",
    }
    path = workdir / f"oprf-{index + 1}.json"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(spec, handle)
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.oprf", str(path)],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return process, f"http://127.0.0.1:{port}"


async def _wait_ready(session: aiohttp.ClientSession, url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            async with session.get(url + "/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise RuntimeError(f"the service at {url} did not become ready")


async def _latencies(network: Network, urls: tuple[str, str], signals: int) -> list[float]:
    from clients.pseudonymise import Signer, pseudonymise

    signer, keys = Signer(network.org_key, _certificate(network)), network.keys
    found = []
    async with aiohttp.ClientSession() as session:
        for url in urls:
            await _wait_ready(session, url, time.monotonic() + 30)
        for number in range(signals + 3):  # three to warm up
            started = time.perf_counter()
            await pseudonymise(session, keys, urls, signer, VALUES, now=int(time.time()))
            if number >= 3:
                found.append(time.perf_counter() - started)
    return found


class _Statements:
    """The hub as ``clients.linking.Linking`` asks it: the two key statements, no retirement."""

    def __init__(self, network: Network) -> None:
        self._statements = list(network.statements)

    async def get_oprf_keys(self) -> list[OprfKeyStatement]:
        return self._statements

    async def get_retirements(self) -> list[Any]:
        return []


async def _library_latencies(
    network: Network, urls: tuple[str, str], signals: int, workdir: Path
) -> list[float]:
    """``Linking.pseudonyms`` as ``Organisation.seal`` calls it, one signal after another."""
    from clients.linking import Linking
    from clients.pseudonymise import Signer
    from clients.state import LocalState

    assert tuple(s.url for s in network.statements) == urls  # where the library asks
    signer = Signer(network.org_key, _certificate(network))
    found = []
    with LocalState(workdir / "state.sqlite") as state:
        linking = Linking(lambda: network.root_der, state, _Statements(network))
        for number in range(signals + 3):
            started = time.perf_counter()
            await linking.pseudonyms(signer, VALUES)
            if number >= 3:
                found.append(time.perf_counter() - started)
    return found


def measure_oprf(workdir: Path, *, iterations: int, repeats: int, signals: int) -> OprfFigures:
    ports = (_free_port(), _free_port())
    urls = (f"http://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[1]}")
    network = make_network(int(time.time()), urls)
    figures = measure_in_process(network, iterations=iterations, repeats=repeats)
    children = [_serve_child(workdir, network, index, ports[index]) for index in (0, 1)]
    try:
        latencies = asyncio.run(_latencies(network, urls, signals))
        library = asyncio.run(_library_latencies(network, urls, signals, workdir))
    finally:
        for process, _url in children:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return OprfFigures(latencies=tuple(latencies), library_latencies=tuple(library), **figures)


def render_lines(figures: OprfFigures) -> list[str]:
    micros = figures.primitive_micros
    p50, p95 = figures.latency_p50, figures.latency_p95
    ratio = figures.client_ratio
    lines = [
        "### Pseudonymisation services (split-key OPRF, ristretto255 through rbcl)",
        "",
        "| what | figure | floor in the same run | ratio |",
        "| --- | --- | --- | --- |",
        f"| one service, one core: evaluations (batches of 5, with proof) | "
        f"{figures.service_evals_per_second:,.0f}/s | {figures.mults_per_second:,.0f} scalar "
        f"multiplications/s | {figures.mults_per_second / figures.service_evals_per_second:.2f} "
        "multiplications' time per evaluation |",
        f"| client: five identifiers, both proofs checked, unblinded | "
        f"{figures.client_seconds * 1000:.2f} ms | primitives it calls: "
        f"{figures.primitive_seconds * 1000:.2f} ms | {ratio:.2f}x "
        f"({'within' if ratio <= CLIENT_TARGET else 'OVER'} the {CLIENT_TARGET}x target) |",
        f"| the old derivation: HMAC-SHA256 of the same five | "
        f"{figures.hmac_seconds * 1e6:.1f} µs | | the OPRF client costs "
        f"{figures.client_seconds / figures.hmac_seconds:,.0f}x that |",
    ]
    if p50 is not None and p95 is not None:
        met = "within" if p95 <= LATENCY_TARGET else "OVER"
        lines.append(
            f"| end to end over loopback: a signal with five identifiers, both services | "
            f"p50 {p50 * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms "
            f"({len(figures.latencies)} signals) | "
            f"| p95 {met} the {LATENCY_TARGET * 1000:.0f} ms target |"
        )
    if figures.library_latencies:
        ordered = sorted(figures.library_latencies)
        p50, p95 = (
            statistics.median(ordered),
            ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
        )
        met = "within" if p95 <= LATENCY_TARGET else "OVER"
        lines.append(
            "| the client library's path (`clients.linking`, as a send makes a signal's "
            f"pseudonyms: a session and two connections of its own) | p50 {p50 * 1000:.1f} ms, "
            f"p95 {p95 * 1000:.1f} ms | the bare round trip above: p50 "
            f"{(figures.latency_p50 or 0) * 1000:.1f} ms | p95 {met} the "
            f"{LATENCY_TARGET * 1000:.0f} ms target |"
        )
    counts = ", ".join(f"{figures.counts.get(n, 0)} x {n} ({micros[n]:.1f} µs)" for n in PRIMITIVES)
    lines += ["", f"What the client path calls for five identifiers: {counts}."]
    return lines


def _serve(spec_path: str) -> None:
    """A child process: one service from a spec file (``python -m bench.oprf SPEC``)."""
    from pseudonymiser.config import ServiceConfig
    from pseudonymiser.service import KeyShare
    from pseudonymiser.web import serve

    spec = json.loads(Path(spec_path).read_text())
    statement = OprfKeyStatement.from_wire(spec["statement"])
    config = ServiceConfig.for_tests(
        network=NETWORK, service=statement.service, root_der=bytes.fromhex(spec["root"]),
        database_url=spec["database"], port=spec["port"],
        limits={"hourly": 1_000_000, "daily": 1_000_000},
    )  # fmt: skip
    share = KeyShare(group.decode_scalar(bytes.fromhex(spec["share"])), statement)
    asyncio.run(serve(config, {statement.version: share}))


if __name__ == "__main__":
    _serve(sys.argv[1])
