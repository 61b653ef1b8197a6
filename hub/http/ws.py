"""``GET /v1/ws``: live notices of new messages, over a WebSocket.

Authenticated like every other route (bearer token in ``Authorization``) and
audited as a ``read`` of the ``inbox``. The hub then sends text frames
``{"type":"message","cursor":N,"id":"..."}`` for each new message addressed
to the caller, ``{"type":"event","cursor":N,"kind":"..."}`` for each new event in its
feed (``GET /v1/events``), and ``{"type":"ping"}`` after each heartbeat interval without
one. The client sends nothing: any data frame closes the socket with 1008.
The socket is closed (1008) when the token expires or, as soon as the hub learns of it,
when the organisation's certificate is revoked or replaced (the caller is checked again
against the directory held in memory before every frame, once for the frames of notices
that arrived together, and at every directory change, never by verifying the token
again), (1013, try again) when the client fell too far behind, and (1001, going away)
when the hub stops; clients then reconnect and read the inbox.

Open sockets are held in the application (:data:`SOCKETS`), so that stopping the hub
closes each of them at once (:func:`close_sockets`, an ``on_shutdown`` hook) instead
of waiting out the shutdown timeout for handlers that would never end by themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import socket as socket_module
from collections.abc import Iterator
from typing import Any

from aiohttp import WSMsgType, web

from hub.accesslog import recording
from hub.auth import Caller, still_valid
from hub.errors import Malformed
from hub.http.common import audited, authenticate, services
from hub.notify import Notice, Subscription
from hub.problems import REQUEST_ID, REQUEST_ID_HEADER

MAX_CLIENT_FRAME = 1024
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN = 1013
CLOSE_TIMEOUT = 1.0  # seconds to wait for the client's answer to our close frame


class OpenSockets:
    """The WebSockets of one application that are open now."""

    def __init__(self) -> None:
        self.open: set[web.WebSocketResponse] = set()


SOCKETS = web.AppKey("schakel_websockets", OpenSockets)
_PING = json.dumps({"type": "ping"})
_TCP_CORK: int | None = getattr(socket_module, "TCP_CORK", None)


@functools.lru_cache(maxsize=256)
def _notice_frame(notice: Notice) -> str:
    """A notice's frame, encoded once for all the subscribers it goes to."""
    if notice.type == "event":
        return json.dumps({"type": "event", "cursor": notice.cursor, "kind": notice.kind})
    return json.dumps({"type": "message", "cursor": notice.cursor, "id": notice.id})


async def websocket(request: web.Request) -> web.StreamResponse:
    s = services(request)
    socket = web.WebSocketResponse(
        max_msg_size=MAX_CLIENT_FRAME, autoping=True, timeout=CLOSE_TIMEOUT
    )
    async with audited(request, "read", "inbox") as scope:
        caller = await authenticate(request, scope)
        if not socket.can_prepare(request).ok:
            raise Malformed("not a WebSocket handshake (version 13, with Upgrade and a key)")
        await recording.access(s.store, scope, now=s.clock())
    subscription = s.notifier.subscribe(caller.org)  # before the handshake: nothing is missed
    socket.headers[REQUEST_ID_HEADER] = request[REQUEST_ID]
    sockets = request.app[SOCKETS].open
    try:
        await socket.prepare(request)
        sockets.add(socket)
        await _pump(socket, subscription, caller, request)
    finally:
        sockets.discard(socket)
        subscription.close()
        if socket.prepared:
            await socket.close()
    return socket


def add_routes(app: web.Application) -> None:
    """``GET /v1/ws``; the open sockets are held in ``app`` and closed when it shuts down."""
    app[SOCKETS] = OpenSockets()
    app.on_shutdown.append(close_sockets)
    app.add_routes([web.get("/v1/ws", websocket, allow_head=False)])


async def close_sockets(app: web.Application) -> None:
    """Close every open socket with 1001 "hub stopped", all at once."""
    sockets = list(app[SOCKETS].open)
    await asyncio.gather(
        *(s.close(code=CLOSE_GOING_AWAY, message=b"hub stopped") for s in sockets),
        return_exceptions=True,
    )


async def _still_authorised(request: web.Request, caller: Caller) -> bool:
    """The socket's caller as every request checks it, at this moment (in memory)."""
    s = services(request)
    return await still_valid(s.store, s.trust_cache, caller, now=s.clock())


@contextlib.contextmanager
def _corked(transport: asyncio.BaseTransport | None, many: bool) -> Iterator[None]:
    """Frames written inside leave in as few TCP segments as they fill (Linux
    ``TCP_CORK``, where there is one): every segment costs the hub a ``send`` that also
    does the network stack's work of delivering it, and a client woken once per frame."""
    sock = transport.get_extra_info("socket") if many and transport is not None else None
    if sock is None or _TCP_CORK is None:
        yield
        return
    try:
        sock.setsockopt(socket_module.IPPROTO_TCP, _TCP_CORK, 1)
    except OSError:  # closing, or not TCP: the frames go out one by one
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket_module.IPPROTO_TCP, _TCP_CORK, 0)  # sends what is held


async def _pump(
    socket: web.WebSocketResponse, subscription: Subscription, caller: Caller, request: web.Request
) -> None:
    s = services(request)
    heartbeat = s.config.limits.ws_heartbeat
    changed = s.trust_cache.watch()  # set when the directory changes: check the caller again
    reader: asyncio.Task[Any] = asyncio.ensure_future(socket.receive())
    notices: asyncio.Task[Notice | None] = asyncio.ensure_future(subscription.next())
    watching: asyncio.Task[Any] = asyncio.ensure_future(changed.wait())
    try:
        while True:
            done, _ = await asyncio.wait(
                {reader, notices, watching}, timeout=heartbeat, return_when=asyncio.FIRST_COMPLETED
            )
            if reader in done:
                if reader.result().type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    await socket.close(code=CLOSE_POLICY, message=b"clients send nothing")
                return
            if s.clock() >= caller.expires_at:
                await socket.close(code=CLOSE_POLICY, message=b"token expired")
                return
            if watching in done:
                changed.clear()
                watching = asyncio.ensure_future(changed.wait())
            if not await _still_authorised(request, caller):
                # Revoked, or enrolled anew, since the socket opened: nothing more flows.
                await socket.close(code=CLOSE_POLICY, message=b"credentials no longer valid")
                return
            if notices not in done:
                if not done:  # the heartbeat interval passed without a frame
                    await socket.send_str(_PING)
                continue
            notice = notices.result()
            if notice is None:
                await socket.close(code=CLOSE_TRY_AGAIN, message=b"fell behind; read the inbox")
                return
            # The notices of a committed batch arrive together and go out together, the
            # caller checked once for all of them: between frames only a client that
            # stopped reading makes the hub wait, and a directory change meanwhile sets
            # ``changed``, which has the caller checked again before the next frame.
            batch = [notice, *subscription.ready()]
            with _corked(request.transport, len(batch) > 1):
                for notice in batch:
                    if changed.is_set() and not await _still_authorised(request, caller):
                        await socket.close(
                            code=CLOSE_POLICY, message=b"credentials no longer valid"
                        )
                        return
                    await socket.send_str(_notice_frame(notice))
            notices = asyncio.ensure_future(subscription.next())
    finally:
        s.trust_cache.unwatch(changed)
        for task in (reader, notices, watching):
            task.cancel()
