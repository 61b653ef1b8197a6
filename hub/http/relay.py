"""Routes of the relay: ``/v1/messages``, ``/v1/inbox``, ``/v1/sent`` and acknowledgements
(use-cases in :mod:`hub.relay`)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from hub import relay
from hub.http.common import INBOX_QUERY, audited, authenticate, body_of, query_of, render, services
from hub.store import InboxItem, SentItem
from protocol.retention import deleted_to_wire


async def post_message(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "create", "message") as scope:
        caller = await authenticate(request, scope)
        body = await body_of(request, large=True)
        accepted = await relay.send_message(
            s.store,
            s.clock,
            s.config,
            scope,
            caller=caller.org,
            cache=s.trust_cache,
            body=body,
            rng=s.rng,
        )
    return render(
        {"id": accepted.id, "accepted": accepted.accepted},
        status=201 if accepted.created else 200,
    )


def _inbox_item(item: InboxItem) -> dict[str, Any]:
    return {"cursor": item.cursor, "envelope": item.envelope, "acknowledged": item.acknowledged}


async def get_inbox(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "list", "inbox") as scope:
        caller = await authenticate(request, scope, purpose=True, query=INBOX_QUERY)
        page = await relay.read_inbox(
            s.store,
            s.clock,
            s.config,
            scope,
            caller=caller.org,
            after=query_of(request).get("after"),
            limit=query_of(request).get("limit"),
        )
    body: dict[str, Any] = {
        "messages": [_inbox_item(item) for item in page.items],
        "next": page.next,
    }
    if page.after:
        body["at"] = {"cursor": page.after, "id": page.at}
    return render(body)


def _sent_item(item: SentItem) -> dict[str, Any]:
    return {
        "cursor": item.cursor,
        "id": item.id,
        "kind": item.kind,
        "accepted": item.accepted,
        "deliveries": [
            {"org": d.recipient, "acknowledged": d.acknowledged} for d in item.deliveries
        ],
        # A tombstone: the hub deleted the envelope (docs/protocol.md, "Retention").
        "deleted": deleted_to_wire(item.deleted, item.deleted_reason),
    }


async def get_sent(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "list", "message") as scope:
        caller = await authenticate(request, scope, query=INBOX_QUERY)  # same paging
        page = await relay.read_sent(
            s.store,
            s.clock,
            s.config,
            scope,
            caller=caller.org,
            after=query_of(request).get("after"),
            limit=query_of(request).get("limit"),
        )
    return render({"messages": [_sent_item(item) for item in page.items], "next": page.next})


async def get_message(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "read", "message") as scope:
        caller = await authenticate(request, scope, purpose=True)
        view = await relay.fetch_message(
            s.store, s.clock, scope, caller=caller.org, message_id=request.match_info["id"]
        )
    return render({"cursor": view.cursor, "envelope": view.envelope})


async def post_ack(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "acknowledge", "message") as scope:
        caller = await authenticate(request, scope)
        await relay.acknowledge(
            s.store,
            s.clock,
            scope,
            caller=caller.org,
            message_id=request.match_info["id"],
        )
    return web.Response(status=204, headers={"Cache-Control": "no-store"})


def add_routes(app: web.Application) -> None:
    app.add_routes(
        [
            web.post("/v1/messages", post_message),
            web.get("/v1/inbox", get_inbox, allow_head=False),
            web.get("/v1/sent", get_sent, allow_head=False),
            web.get("/v1/messages/{id}", get_message, allow_head=False),
            web.post("/v1/messages/{id}/ack", post_ack),
        ]
    )
