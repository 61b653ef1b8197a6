"""Hostile input on every operation of ``hub/openapi.json``, against a real hub.

For each (method, path) of the OpenAPI document, a hub (the ``hub`` fixture) gets a
valid request of that operation (which must succeed, also between the hostile ones)
and 50-250 deterministic mutations of it (``fuzz_cases``; about 3,000 requests in
all): path parameters, query strings, headers and bodies. Requests travel as raw bytes
over a socket, so nothing normalises them on the way. Every answer must:

* not be a server error (5xx);
* have a status that ``hub/openapi.json`` lists for the operation (a path mutation
  that leaves the route may also get the router's 404 or 405; the harness then
  checks the status against the route that did answer);
* when not 2xx, be an RFC 9457 ``application/problem+json`` document with ``type``,
  ``title``, ``status`` (the HTTP status), ``detail`` and ``request_id`` (the
  ``X-Request-Id`` header);
* when not 2xx, leave the data tables (messages, deliveries, directory, challenges,
  tree heads) no larger than before;
* be a refusal where the contract leaves no choice (a bad token, ``Schakel-User`` or
  purpose header on an authenticated route, a body that is not the route's strict JSON,
  a number out of range, a tampered envelope or credential): ``Case.reject``.

Violations are collected and printed together. Bugs the sweep found are tested one
case at a time in :func:`test_fixed_bug_stays_fixed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fuzz_cases import (
    PARSER_CASES,
    PURPOSE_TEXT_ESCAPES,
    Case,
    Operation,
    Valid,
    baseline,
    cases,
    make,
    operations,
)

from protocol import oprf
from protocol.challenge import auth_message
from protocol.checkpoint import Checkpoint, cosign, log_origin
from protocol.encoding import b64d, b64e
from protocol.errors import ValidationError
from protocol.linkingkey import seal_linking_key
from protocol.oprfkeys import make_key_request, sign_key_statement
from protocol.problem import PROBLEM_PREFIX
from protocol.pseudonym import LinkingKey
from protocol.retention import create_retention_policy
from protocol.retirement import sign_retirement
from protocol.types import ServiceName, parse_org_id
from protocol.witness import WitnessCertificate, create_witness_request, issue_witness_certificate
from protocol.witnesspolicy import create_policy

if TYPE_CHECKING:
    from conftest import HubHarness, Party

OPENAPI = json.loads((Path(__file__).resolve().parents[2] / "hub" / "openapi.json").read_text())
OPERATIONS = {op.key: op for op in operations(OPENAPI)}
DATA_TABLES = (
    "messages",
    "deliveries",
    "message_pseudonyms",
    "organisations",
    "bundles",
    "crl",
    "linking_keys",
    "challenges",
    "tree_heads",
    "witness_policies",
    "cosignatures",
    "retention_policies",
)
BASELINE_EVERY = 25  # a valid request after every this many hostile ones
TIMEOUT = 10.0
WS_HANDSHAKE = (
    (b"Upgrade", b"websocket"),
    (b"Connection", b"Upgrade"),
    (b"Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ=="),
    (b"Sec-WebSocket-Version", b"13"),
)


# -- a raw HTTP/1.1 client ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names; the last one of a repeated name
    body: bytes


def encode(case: Case, method: str, host: bytes) -> bytes:
    lines = [method.encode() + b" " + case.target + b" HTTP/1.1", b"Host: " + host]
    names = {name.lower() for name, _ in case.headers}
    if b"connection" not in names:
        lines.append(b"Connection: close")
    lines += [name + b": " + value for name, value in case.headers]
    body = case.body
    if body is not None and case.chunked:
        lines.append(b"Transfer-Encoding: chunked")
        step = 16 * 1024
        body = (
            b"".join(
                b"%x\r\n%s\r\n" % (len(body[i : i + step]), body[i : i + step])
                for i in range(0, len(body), step)
            )
            + b"0\r\n\r\n"
        )
    elif body is not None or case.declared_length is not None:
        length = len(body or b"") if case.declared_length is None else case.declared_length
        lines.append(b"Content-Length: %d" % length)
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


async def exchange(host: str, port: int, data: bytes) -> Reply:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(data)
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            await writer.drain()  # the hub may answer (413, say) before reading it all
        return await asyncio.wait_for(_read_reply(reader), TIMEOUT)
    finally:
        writer.close()


async def _read_reply(reader: asyncio.StreamReader) -> Reply:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head[:-4].split(b"\r\n")
    status = int(status_line.split(b" ")[1])
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(b":")
        headers[name.decode("latin-1").lower()] = value.strip().decode("latin-1")
    if status == 101:
        return Reply(status, headers, b"")
    if headers.get("transfer-encoding", "").lower() == "chunked":
        return Reply(status, headers, await _read_chunked(reader))
    if "content-length" in headers:
        return Reply(status, headers, await reader.readexactly(int(headers["content-length"])))
    return Reply(status, headers, await reader.read())


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while size := int((await reader.readline()).split(b";")[0], 16):
        parts.append(await reader.readexactly(size))
        await reader.readline()
    await reader.readline()
    return b"".join(parts)


# -- the world every operation's valid request lives in ------------------------------------


@dataclass
class World:
    hub: HubHarness
    sender: Party  # sent the message the actor received
    actor: Party  # member and network privacy officer: the caller of every valid request
    other: Party  # another organisation
    message_id: str
    head_size: int
    linking_key: dict[str, Any]
    witness: WitnessCertificate  # the actor's, in the held witness policy
    cosignature: dict[str, Any]  # the actor's witness's, of the head of head_size
    policies: Iterator[int]  # the numbers of witness policies still to upload
    retention_policies: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    async def signal(self) -> str:
        """A new signal from ``sender`` about a new person: a new case; its message id."""
        hub = self.hub
        pseudonyms = hub.pseudonyms(f"+316{random.randrange(10**8):08d}")
        envelope = hub.envelope(self.sender, [self.actor], pseudonyms=pseudonyms)
        assert (await hub.send(self.sender, envelope)).status == 201
        return envelope.header.id

    async def case_of(self, message_id: str) -> str:
        query = sa.text(
            'SELECT "case" FROM case_members JOIN messages USING (cursor) WHERE id = :id'
        )
        return str(
            await self.hub.store.run_read(
                lambda c: c.execute(query, {"id": message_id}).scalar_one()
            )
        )

    async def case_request(self, key: str) -> tuple[str, Any]:
        """A case reference and body the case operation ``key`` accepts now (fresh cases)."""
        first = await self.signal()
        if key == "POST /v1/cases/{ref}/split":
            case = await self.case_of(first)
            second = self.hub.envelope(self.sender, [self.actor], pseudonyms=await self._of(first))
            assert (await self.hub.send(self.sender, second)).status == 201
            return case, {"messages": [second.header.id]}
        one, two = await self.case_of(first), await self.case_of(await self.signal())
        if key == "POST /v1/cases/{ref}/unmerge":
            merged = await self.hub.client.post(
                f"/v1/cases/{one}/merge", json={"case": two}, headers=self.actor.headers()
            )
            assert merged.status == 200, await merged.text()
        if key in ("POST /v1/cases/{ref}/merge", "POST /v1/cases/{ref}/unmerge"):
            return one, {"case": two}
        return one, None

    async def _of(self, message_id: str) -> Any:
        query = sa.text(
            "SELECT pseudonym FROM message_pseudonyms JOIN messages USING (cursor) WHERE id = :id"
        )
        rows = await self.hub.store.run_read(
            lambda c: c.execute(query, {"id": message_id}).scalars().all()
        )
        return tuple(sorted(rows))


async def build_world(hub: HubHarness) -> World:
    sender = await hub.enrol("org-a")
    actor = await hub.enrol("org-b", ["member", "network_privacy_officer", "coordinator"])
    other = await hub.enrol("org-c")
    envelope = hub.envelope(sender, [actor], pseudonyms=hub.pseudonyms("+31600000000"))
    assert (await hub.send(sender, envelope)).status == 201
    head = await hub.client.post("/v1/audit/head", headers=actor.headers())
    assert head.status == 201, await head.text()
    sealed = seal_linking_key(
        LinkingKey(1, os.urandom(32)),
        actor.bundle,
        root_key=hub.authority.key,
        network=hub.config.network,
    )
    signed = (await head.json())["head"]
    return World(
        hub,
        sender,
        actor,
        other,
        envelope.header.id,
        signed["size"],
        sealed.to_wire(),
        *await _witness_of(hub, actor, signed["size"], b64d(signed["root"])),
        itertools.count(2),
    )


async def _witness_of(
    hub: HubHarness, actor: Party, size: int, root: bytes
) -> tuple[WitnessCertificate, dict[str, Any]]:
    """A witness of ``actor``'s in a held policy (number 1); its cosignature of that head."""
    key = Ed25519PrivateKey.generate()
    request = create_witness_request(key, hub.config.network, actor.org)
    now = hub.clock()
    cert = issue_witness_certificate(
        hub.authority.key, hub.authority.root, request, serial=900, now=now - 60, days=30
    )
    policy = create_policy(
        hub.authority.key, hub.authority.root, [cert], quorum=1, number=1, issued=now
    )
    put = await hub.client.put("/v1/audit/witness-policy", json={"policy": policy.to_wire()})
    assert put.status == 200, await put.text()
    checkpoint = Checkpoint(log_origin(hub.authority.root), size, root)
    line = cosign(key, cert.name, checkpoint, timestamp=now)
    return cert, {"size": size, "cosignature": line.line()[:-1]}


def _policy(world: World) -> dict[str, Any]:
    """A witness policy with a number not uploaded yet (each is taken once)."""
    hub = world.hub
    policy = create_policy(
        hub.authority.key, hub.authority.root, [world.witness], quorum=1,
        number=next(world.policies), issued=hub.clock(),
    )  # fmt: skip
    return {"policy": policy.to_wire()}


def _retention_policy(world: World) -> dict[str, Any]:
    """A retention policy with a number not uploaded yet (each is taken once)."""
    hub = world.hub
    policy = create_retention_policy(
        hub.authority.key, hub.authority.root, number=next(world.retention_policies),
        issued=hub.clock(),
    )  # fmt: skip
    return {"policy": policy.to_wire()}


def _auth_headers(party: Party) -> tuple[tuple[bytes, bytes], ...]:
    return tuple((k.encode(), v.encode()) for k, v in party.headers().items())


async def _token_body(world: World) -> dict[str, str]:
    hub, party = world.hub, world.actor
    challenge = await hub.post("/v1/auth/challenge", {"org": party.org})
    raw = b64d((await challenge.json())["challenge"])
    sig = party.key.sign(auth_message(hub.config.network, party.org, raw, hub.config.audience))
    return {"org": party.org, "challenge": b64e(raw), "signature": b64e(sig)}


def _oprf_statement(world: World) -> dict[str, Any]:
    """Share 1 of pseudonym version 7, certified by the hub's root (the same each time)."""
    hub = world.hub
    key = oprf.random_scalar(bytes(range(64)))
    request = make_key_request(
        key, hub.config.network, ServiceName("oprf-1"), 1, r=oprf.random_scalar(bytes(64 * [7]))
    )
    return sign_key_statement(
        hub.authority.key,
        hub.authority.root,
        request,
        version=7,
        url="https://oprf-1.example.nl",
        not_before=hub.clock() - 60,
        not_after=hub.clock() + 86_400,
    ).to_wire()


async def valid_body(world: World, op: Operation) -> Any:
    """A body the operation accepts now (fresh where a body can be used only once)."""
    hub, actor = world.hub, world.actor
    bodies: dict[str, Callable[[], Any]] = {
        "POST /v1/auth/challenge": lambda: {"org": actor.org},
        "POST /v1/directory/certificates": lambda: {"certificate": b64e(actor.cert.der)},
        "PUT /v1/directory/orgs/{org}/bundle": lambda: actor.bundle.to_wire(),
        "PUT /v1/directory/crl": lambda: {"crl": b64e(hub.authority.crl([], now=hub.clock()).der)},
        "POST /v1/directory/linking-keys": lambda: world.linking_key,
        "POST /v1/directory/oprf-keys": lambda: _oprf_statement(world),
        "POST /v1/directory/retired-linking-keys": lambda: sign_retirement(
            hub.authority.key, hub.authority.root, version=1, until=hub.clock() + 86_400
        ).to_wire(),
        "POST /v1/messages": lambda: hub.envelope(actor, [world.sender]).to_wire(),
        "POST /v1/audit/cosignatures": lambda: world.cosignature,
        "PUT /v1/audit/witness-policy": lambda: _policy(world),
        "PUT /v1/directory/retention-policy": lambda: _retention_policy(world),
        # The world's person: an open case, an unacknowledged message; nothing goes.
        "POST /v1/audit/erasures": lambda: {"pseudonyms": list(hub.pseudonyms("+31600000000"))},
    }
    if op.key == "POST /v1/auth/token":
        return await _token_body(world)
    return bodies[op.key]() if op.key in bodies else None


async def valid_request(world: World, op: Operation) -> Valid:
    hub = world.hub
    case, case_body = await world.case_request(op.key) if "{ref}" in op.template else ("", None)
    path = {
        "ref": case.encode(),
        "org": world.actor.org.encode(),
        "fingerprint": world.actor.bundle.fingerprint.encode(),
        "id": world.message_id.encode(),
        "size": str(world.head_size).encode(),
        "index": b"0",
    }
    query = {
        "GET /v1/audit/consistency": ((b"from", b"1"), (b"to", b"2")),
        "GET /v1/audit/entries": ((b"limit", b"5"),),
        "GET /v1/audit/entries/{index}/proof": ((b"size", str(world.head_size).encode()),),
        "GET /v1/audit/export": ((b"size", str(world.head_size).encode()),),
        "GET /v1/inbox": ((b"after", b"0"), (b"limit", b"10")),
    }.get(op.key, ())
    headers = _auth_headers(world.actor)
    if not op.needs_auth:  # no token where none is needed
        headers = tuple((k, v) for k, v in headers if k != b"Authorization")
    if op.key == "GET /v1/ws":
        headers += WS_HANDSHAKE
    limits = hub.config.limits
    large = op.key == "POST /v1/messages"
    return Valid(
        path={name: path[name] for name in op.path_params},
        query=query,
        headers=headers,
        body=case_body if case_body is not None else await valid_body(world, op),
        body_limit=limits.max_body_bytes if large else limits.max_json_bytes,
        other_token=f"Bearer {world.other.token}".encode(),
    )


# -- checking answers ---------------------------------------------------------------------


class Tables:
    """Row counts of the data tables, read from the hub's database in one transaction."""

    QUERY = sa.text("SELECT " + ", ".join(f"(SELECT count(*) FROM {t})" for t in DATA_TABLES))

    def __init__(self, hub: HubHarness) -> None:
        self._store = hub.store

    async def counts(self) -> dict[str, int]:
        row = await self._store.run_read(lambda conn: conn.execute(self.QUERY).one())
        return dict(zip(DATA_TABLES, row, strict=True))


def problems_of(op: Operation, case: Case, reply: Reply | str) -> list[str]:
    """What is wrong with ``reply`` to ``case`` (empty when nothing)."""
    if isinstance(reply, str):
        return [f"no answer: {reply}"]
    found = []
    status = reply.status
    if status >= 500:
        found.append("server error")
    left_route = case.label.startswith("path ") and status in (404, 405)
    if status not in op.statuses and not left_route:
        found.append(f"status {status} not listed in hub/openapi.json")
    if not 200 <= status < 300 and status != 101:
        found += _problem_document(reply)
    elif must_refuse(op, case):
        found.append("hostile input accepted")
    return found


def must_refuse(op: Operation, case: Case) -> bool:
    """``case.reject``, except a challenge for another well-formed org id (given to anyone)."""
    if op.key == "POST /v1/auth/challenge" and case.label.startswith("mutated: org"):
        try:
            parse_org_id(json.loads(case.body or b"")["org"])
        except (ValidationError, ValueError, TypeError, KeyError):
            return True
        return False
    return case.reject


def _problem_document(reply: Reply) -> list[str]:
    media = reply.headers.get("content-type", "").split(";")[0].strip()
    if media != "application/problem+json":
        return [f"content type {media!r}, not application/problem+json"]
    try:
        body = json.loads(reply.body)
    except ValueError:
        return ["problem body is not JSON"]
    if not isinstance(body, dict):
        return ["problem body is not an object"]
    found = []
    kinds = {"type": str, "title": str, "status": int, "detail": str, "request_id": str}
    for name, kind in kinds.items():
        if not isinstance(body.get(name), kind):
            found.append(f"problem member {name} missing or not {kind.__name__}")
    if body.get("status") != reply.status:
        found.append(f"problem status {body.get('status')!r} is not the HTTP status")
    if not str(body.get("type", "")).startswith(PROBLEM_PREFIX):
        found.append("problem type is not a urn:schakel:problem: URN")
    if body.get("request_id") != reply.headers.get("x-request-id"):
        found.append("problem request_id is not the X-Request-Id header")
    return found


@dataclass
class Run:
    """Sends cases for one operation and keeps every violation."""

    world: World
    op: Operation
    tables: Tables
    violations: list[str]
    sent: int = 0

    async def send(self, case: Case) -> Reply | str:
        server = self.world.hub.client.server
        host, port = server.host, server.port
        assert port is not None, "the test server is not started"
        data = encode(case, self.op.method, f"{host}:{port}".encode())
        self.sent += 1
        try:
            return await exchange(host, port, data)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
            return type(exc).__name__

    async def check(self, case: Case) -> Reply | str:
        before = await self.tables.counts()
        reply = await self.send(case)
        found = problems_of(self.op, case, reply)
        if isinstance(reply, Reply) and not 200 <= reply.status < 300 and reply.status != 101:
            after = await self.tables.counts()
            grew = sorted(t for t in DATA_TABLES if after[t] > before[t])
            if grew:
                found.append(f"rejected request left rows in {', '.join(grew)}")
        for item in found:
            self.note(case, reply, item)
        return reply

    async def check_baseline(self) -> None:
        valid = await valid_request(self.world, self.op)
        case = baseline(self.op, valid)
        reply = await self.check(case)
        if not isinstance(reply, Reply) or not (200 <= reply.status < 300 or reply.status == 101):
            self.note(case, reply, "the valid request did not succeed")

    def note(self, case: Case, reply: Reply | str, what: str) -> None:
        status = reply.status if isinstance(reply, Reply) else "-"
        head = reply.body[:160] if isinstance(reply, Reply) else b""
        self.violations.append(
            f"{self.op.method} {self.op.template} [{case.label}] -> {status}: {what}; body {head!r}"
        )


def seed_of(op: Operation) -> int:
    return zlib.crc32(op.key.encode())


# -- the tests ----------------------------------------------------------------------------


def test_every_operation_is_fuzzed() -> None:
    """Each operation of the document gets cases of every kind it has parts for."""
    assert len(OPERATIONS) == sum(len(item) for item in OPENAPI["paths"].values())
    assert {op.template for op in OPERATIONS.values() if op.path_params} >= {
        "/v1/directory/orgs/{org}",
        "/v1/messages/{id}",
        "/v1/audit/entries/{index}/proof",
    }
    assert OPERATIONS["GET /v1/audit/export"].query_params[:2] == ("start", "end")
    assert OPERATIONS["POST /v1/messages"].has_body


@pytest.mark.parametrize("key", sorted(OPERATIONS))
async def test_fuzz_operation(hub: HubHarness, key: str) -> None:
    op = OPERATIONS[key]
    world = await build_world(hub)
    valid = await valid_request(world, op)
    hostile = cases(op, valid, random.Random(seed_of(op)))
    assert 40 <= len(hostile) <= 400, len(hostile)
    run = Run(world, op, Tables(hub), [])
    await run.check_baseline()
    for i, case in enumerate(hostile, 1):
        await run.check(case)
        if i % BASELINE_EVERY == 0:
            await run.check_baseline()
    await run.check_baseline()
    print(f"{key}: {run.sent} requests, {len(run.violations)} violations")
    assert not run.violations, "\n".join(run.violations)


# -- bugs this sweep found, each with what was wrong ----------------------------------------

WS_NO_500 = (
    "hub/http/ws.py: a failed WebSocket handshake (HTTPBadRequest from socket.prepare) is "
    "masked by `await socket.close()` in the finally block, which raises RuntimeError "
    "('Call .prepare() first') on an unprepared socket: 500 instead of 400"
)
PARSER = (
    "aiohttp's HTTP parser refused the request before any middleware ran and answered "
    "a text/plain 400 quoting part of the request; hub/server.py now renders it as a "
    "problem document that quotes nothing"
)

PURPOSE_TEXT_ESCAPE = (
    "hub/http/common.py: parse_purpose_text decodes with urllib.parse.unquote, which keeps a "
    "malformed escape ('%zz', a lone '%', '%4') as literal text instead of failing, so a "
    "Schakel-Purpose-Text that is not percent-encoded UTF-8 is accepted and lands in the "
    "audit entry (the contract: 400 otherwise)"
)


def _handshake(op: Operation, valid: Valid, name: bytes, value: bytes | None) -> Case:
    """The valid WebSocket request with one handshake header changed (None: left out)."""
    headers = [(k, v) for k, v in valid.headers if k != name]
    if value is not None:
        headers.append((name, value))
    return make(op, valid, f"ws handshake: {name.decode()}={value!r}", headers=tuple(headers))


def _plain_get(op: Operation, valid: Valid) -> Case:
    handshake = {name for name, _ in WS_HANDSHAKE}
    headers = tuple((k, v) for k, v in valid.headers if k not in handshake)
    return make(op, valid, "ws handshake: none (plain GET)", headers=headers)


# Bugs this test found and that are fixed: kept as plain tests so they stay fixed.
REGRESSIONS: dict[str, tuple[str, Callable[[Operation, Valid], Case], str]] = {
    "ws-no-upgrade": (
        "GET /v1/ws",
        lambda op, v: _handshake(op, v, b"Upgrade", None),
        WS_NO_500,
    ),
    "ws-plain-get": (
        "GET /v1/ws",
        _plain_get,
        WS_NO_500,
    ),
    "ws-bad-version": (
        "GET /v1/ws",
        lambda op, v: _handshake(op, v, b"Sec-WebSocket-Version", b"12"),
        WS_NO_500,
    ),
    "ws-bad-key": (
        "GET /v1/ws",
        lambda op, v: _handshake(op, v, b"Sec-WebSocket-Key", b"short"),
        WS_NO_500,
    ),
    **{
        f"{name} | {key}": (key, mutate, PURPOSE_TEXT_ESCAPE)
        for name, mutate in PURPOSE_TEXT_ESCAPES.items()
        for key in ("GET /v1/inbox", "POST /v1/messages")
    },
    **{
        f"parser: {name} | {key}": (key, mutate, PARSER)
        for name, mutate in PARSER_CASES.items()
        for key in (
            ["GET /v1/directory/orgs/{org}"]
            if name.startswith(("path", "raw"))
            else ["GET /v1/inbox", "POST /v1/messages"]
        )
    },
}


@pytest.mark.parametrize("bug", sorted(REGRESSIONS))
async def test_fixed_bug_stays_fixed(hub: HubHarness, bug: str) -> None:
    await _check_one(hub, *REGRESSIONS[bug][:2])


async def _check_one(hub: HubHarness, key: str, mutate: Callable[[Operation, Valid], Case]) -> None:
    op = OPERATIONS[key]
    world = await build_world(hub)
    case = mutate(op, await valid_request(world, op))
    run = Run(world, op, Tables(hub), [])
    await run.check(case)
    await run.check_baseline()
    assert not run.violations, "\n".join(run.violations)


def test_the_sweep_leaves_out_only_the_regression_inputs() -> None:
    known = {case.label for case in _known_cases()}
    for op in OPERATIONS.values():
        valid = Valid(path={n: b"x" for n in op.path_params}, query=(), headers=(), body={"a": 1})
        assert not known & {case.label for case in cases(op, valid, random.Random(1))}


def _known_cases() -> list[Case]:
    found = []
    for key, mutate, _ in REGRESSIONS.values():
        op = OPERATIONS[key]
        valid = Valid(path={n: b"x" for n in op.path_params}, query=(), headers=WS_HANDSHAKE)
        found.append(mutate(op, valid))
    return found


def test_the_checks_catch_every_kind_of_violation() -> None:
    """A checker that can not fail proves nothing: each rule on a made-up answer."""
    op = OPERATIONS["GET /v1/inbox"]
    case = Case("made up", b"/v1/inbox", (), reject=True)
    good = {"type": PROBLEM_PREFIX + "malformed", "title": "t", "status": 400, "detail": "d"}
    body = json.dumps({**good, "request_id": "r"}).encode()
    problem = {"content-type": "application/problem+json", "x-request-id": "r"}
    assert problems_of(op, case, Reply(400, problem, body)) == []
    assert problems_of(op, case, Reply(500, problem, body.replace(b"400", b"500"))) == [
        "server error"
    ]
    assert problems_of(op, case, Reply(418, problem, body.replace(b"400", b"418"))) == [
        "status 418 not listed in hub/openapi.json"
    ]
    assert problems_of(op, case, Reply(400, {"content-type": "text/plain"}, b"x")) == [
        "content type 'text/plain', not application/problem+json"
    ]
    assert problems_of(op, case, Reply(401, problem, body)) == [
        "problem status 400 is not the HTTP status"
    ]
    assert problems_of(op, case, Reply(400, {**problem, "x-request-id": "s"}, body)) == [
        "problem request_id is not the X-Request-Id header"
    ]
    assert problems_of(op, case, Reply(200, {}, b"{}")) == ["hostile input accepted"]
    assert problems_of(op, case, "TimeoutError") == ["no answer: TimeoutError"]


async def test_the_table_counts_see_what_the_hub_stores(hub: HubHarness) -> None:
    """The storage check reads committed rows as soon as the answer is in."""
    world = await build_world(hub)
    tables = Tables(hub)
    before = await tables.counts()
    sent = await hub.send(world.actor, hub.envelope(world.actor, [world.sender, world.other]))
    assert sent.status == 201
    after = await tables.counts()
    assert (after["messages"], after["deliveries"]) == (
        before["messages"] + 1,
        before["deliveries"] + 2,
    )
