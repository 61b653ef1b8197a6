"""The HTTP adapter of ``/v1/audit`` (use-cases in :mod:`hub.accesslog.reading`).

Every route authenticates (``Schakel-User`` required), runs inside an audit scope of
object type ``audit`` (so a refusal leaves one ``denied`` entry), calls one use-case
and renders. The export streams NDJSON after its entry committed.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from hub.accesslog import reading
from hub.http.common import audited, authenticate, query_of, render, services
from hub.problems import REQUEST_ID, REQUEST_ID_HEADER
from hub.query import INTEGER, TEXT, Spec, one_of
from protocol.auditlog import AuditEntry, TreeHead
from protocol.encoding import b64e

NDJSON = "application/x-ndjson"
FILTERS: Spec = {
    "start": INTEGER,
    "end": INTEGER,
    "org": TEXT,
    "user": TEXT,
    "action": TEXT,
    "object": TEXT,
    "pseudonym": TEXT,
    "since": INTEGER,
    "until": INTEGER,
}
CONSISTENCY_QUERY: Spec = {"from": INTEGER, "to": INTEGER}
ENTRIES_QUERY: Spec = {**FILTERS, "limit": INTEGER, "size": INTEGER}
PROOF_QUERY: Spec = {"size": INTEGER}
EXPORT_QUERY: Spec = {**FILTERS, "size": INTEGER, "proofs": one_of("true", "false")}


def _head(head: TreeHead | None) -> dict[str, Any] | None:
    return None if head is None else head.to_wire()


def _proof(proof: list[bytes]) -> list[str]:
    return [b64e(node) for node in proof]


async def get_head(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "read", "audit") as scope:
        await authenticate(request, scope)
        head = await reading.newest_head(s.store, s.clock, s.config, scope, signer=s.heads)
    return render({"head": _head(head)})


async def post_head(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "create", "audit") as scope:
        caller = await authenticate(request, scope, purpose=True)
        signed = await reading.sign_head(
            s.store, s.clock, s.config, scope, caller=caller, signer=s.heads
        )
    return render({"head": _head(signed.head)}, status=201 if signed.created else 200)


async def get_head_of_size(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "read", "audit") as scope:
        await authenticate(request, scope, purpose=True)
        head = await reading.head_of_size(
            s.store, s.clock, s.config, scope, signer=s.heads, size_text=request.match_info["size"]
        )
    return render({"head": head.to_wire()})


async def get_consistency(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "read", "audit") as scope:
        await authenticate(request, scope, query=CONSISTENCY_QUERY)
        found = await reading.consistency(s.store, s.clock, scope, params=query_of(request))
    return render({"from": found.old, "to": found.new, "proof": _proof(found.proof)})


async def get_entries(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "read", "audit") as scope:
        caller = await authenticate(request, scope, purpose=True, query=ENTRIES_QUERY)
        page = await reading.entries(
            s.store,
            s.clock,
            s.config,
            scope,
            caller=caller,
            signer=s.heads,
            params=query_of(request),
        )
    body: dict[str, Any] = {"entries": [e.to_wire() for e in page.entries], "next": page.next}
    if page.proofs is not None:
        body["proofs"] = [_proof(proof) for proof in page.proofs]
    return render(body)


async def get_proof(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "read", "audit") as scope:
        caller = await authenticate(request, scope, purpose=True, query=PROOF_QUERY)
        found = await reading.inclusion(
            s.store,
            s.clock,
            s.config,
            scope,
            caller=caller,
            signer=s.heads,
            index_text=request.match_info["index"],
            params=query_of(request),
        )
    return render(
        {
            "index": found.entry.index,
            "size": found.head.size,
            "leaf": b64e(found.entry.leaf()),
            "proof": _proof(found.proof),
        }
    )


def _line(item: dict[str, Any]) -> bytes:
    return json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


def _entry_line(entry: AuditEntry, proof: list[bytes] | None) -> bytes:
    if proof is None:
        return _line({"entry": entry.to_wire()})
    return _line({"entry": entry.to_wire(), "proof": _proof(proof)})


async def get_export(request: web.Request) -> web.StreamResponse:
    s = services(request)
    async with audited(request, "export", "audit") as scope:
        caller = await authenticate(request, scope, purpose=True, query=EXPORT_QUERY)
        export = await reading.export(
            s.store,
            s.clock,
            s.config,
            scope,
            caller=caller,
            signer=s.heads,
            params=query_of(request),
        )
    response = web.StreamResponse(
        headers={
            "Content-Type": NDJSON,
            "Cache-Control": "no-store",
            REQUEST_ID_HEADER: request[REQUEST_ID],
        }
    )
    await response.prepare(request)
    await response.write(_line({"head": export.head.to_wire()}))
    async for entry, proof in export.lines():
        await response.write(_entry_line(entry, proof))
    await response.write_eof()
    return response


def add_routes(app: web.Application) -> None:
    app.add_routes(
        [
            web.get("/v1/audit/head", get_head, allow_head=False),
            web.post("/v1/audit/head", post_head),
            web.get("/v1/audit/heads/{size}", get_head_of_size, allow_head=False),
            web.get("/v1/audit/consistency", get_consistency, allow_head=False),
            web.get("/v1/audit/entries", get_entries, allow_head=False),
            web.get("/v1/audit/entries/{index}/proof", get_proof, allow_head=False),
            web.get("/v1/audit/export", get_export, allow_head=False),
        ]
    )
