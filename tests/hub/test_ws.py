"""GET /v1/ws: authenticated, audited, pushes a notice for each new message, refuses input."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import TYPE_CHECKING

import aiohttp
import pytest
from aiohttp import web

from hub.auth import Caller
from hub.http import ws as ws_routes
from hub.http.common import SERVICES
from hub.http.ws import _corked
from hub.notify import Notice
from hub.tokens import TokenClaims, TokenService
from protocol.types import MessageId

if TYPE_CHECKING:
    from conftest import HubHarness, Party

GUARD = 10  # seconds; only a guard against a hang, never reached when the hub works


async def _parties(hub: HubHarness) -> tuple[Party, Party, Party]:
    return await hub.enrol("police"), await hub.enrol("ggd"), await hub.enrol("shelter")


async def _next(ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
    return await asyncio.wait_for(ws.receive(), GUARD)


def _subscribers(hub: HubHarness, org: str) -> int:
    return hub.client.server.app[SERVICES].notifier.subscriber_count(org)  # type: ignore[union-attr,attr-defined,arg-type]


async def test_a_new_message_is_pushed_to_its_recipients_only(hub: HubHarness) -> None:
    police, ggd, shelter = await _parties(hub)
    async with (
        hub.client.ws_connect("/v1/ws", headers=ggd.headers()) as ggd_ws,
        hub.client.ws_connect("/v1/ws", headers=shelter.headers()) as shelter_ws,
    ):
        first = hub.envelope(police, [ggd])
        second = hub.envelope(police, [ggd, shelter])
        for envelope in (first, second):
            assert (await hub.send(police, envelope)).status == 201
        frames = [json.loads((await _next(ggd_ws)).data) for _ in range(2)]
        assert frames == [
            {"type": "message", "cursor": 1, "id": first.header.id},
            {"type": "message", "cursor": 2, "id": second.header.id},
        ]
        only = json.loads((await _next(shelter_ws)).data)
        assert only == {"type": "message", "cursor": 2, "id": second.header.id}
        assert (await hub.send(police, first)).status == 200  # a repeat notifies nobody
        await ggd_ws.send_str("hello")
        closing = await _next(ggd_ws)
        assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 1008
    connects = [e for e in await hub.audit() if e.object_type == "inbox"]
    assert [(e.org, e.outcome) for e in connects] == [("ggd", "allowed"), ("shelter", "allowed")]
    for _ in range(100):  # the server's handler finishes its cleanup on its own turn
        if _subscribers(hub, "ggd") == 0:
            break
        await asyncio.sleep(0)
    assert _subscribers(hub, "ggd") == 0


async def test_the_socket_closes_when_the_token_expires(hub: HubHarness) -> None:
    police, ggd, _ = await _parties(hub)
    async with hub.client.ws_connect("/v1/ws", headers=ggd.headers()) as ws:
        hub.clock.advance(900)
        await hub.login(police)
        assert (await hub.send(police, hub.envelope(police, [ggd]))).status == 201
        closing = await _next(ws)
        assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 1008


async def test_a_socket_without_a_token_is_refused_and_audited(hub: HubHarness) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await hub.client.ws_connect("/v1/ws")
    assert refused.value.status == 401
    last = (await hub.audit())[-1]
    assert (last.action, last.outcome, last.reason) == ("read", "denied", "unauthorized")


async def test_the_socket_closes_when_its_organisation_is_revoked(hub: HubHarness) -> None:
    _, ggd, _ = await _parties(hub)
    async with hub.client.ws_connect("/v1/ws", headers=ggd.headers()) as ws:
        assert (await hub.put_crl(hub.authority.crl([ggd.cert]))).status == 200
        # Wake the socket as a new message would (the relay itself now refuses ggd): it
        # checks its credentials again before sending anything, and closes instead.
        notifier = hub.client.server.app[SERVICES].notifier  # type: ignore[union-attr]
        notifier.deliver([("ggd", Notice(99, MessageId("A" * 22)))])
        closing = await _next(ws)
        assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 1008
        assert closing.extra == "credentials no longer valid"


async def test_the_socket_closes_at_the_revocation_without_waiting_for_a_message(
    hub: HubHarness,
) -> None:
    police, ggd, shelter = await _parties(hub)
    async with (
        hub.client.ws_connect("/v1/ws", headers=ggd.headers()) as ggd_ws,
        hub.client.ws_connect("/v1/ws", headers=shelter.headers()) as shelter_ws,
    ):
        assert (await hub.put_crl(hub.authority.crl([ggd.cert]))).status == 200
        closing = await _next(ggd_ws)
        assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 1008
        assert closing.extra == "credentials no longer valid"
        assert not shelter_ws.closed  # another organisation's socket stays open
        envelope = hub.envelope(police, [shelter])
        assert (await hub.send(police, envelope)).status == 201
        frame = json.loads((await _next(shelter_ws)).data)
        assert frame == {"type": "message", "cursor": 1, "id": envelope.header.id}


async def test_notices_do_not_verify_the_token_again(
    hub: HubHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    police, ggd, _ = await _parties(hub)
    async with hub.client.ws_connect("/v1/ws", headers=ggd.headers()) as ws:
        checked: list[str] = []
        real = TokenService.verify

        def verify(self: TokenService, token: str, *, now: int) -> TokenClaims:
            checked.append(token)
            return real(self, token, now=now)

        monkeypatch.setattr(TokenService, "verify", verify)
        for _ in range(3):
            assert (await hub.send(police, hub.envelope(police, [ggd]))).status == 201
            assert json.loads((await _next(ws)).data)["type"] == "message"
        assert checked == [police.token] * 3  # the sends'; none for the socket's frames


async def test_notices_that_arrive_together_go_out_as_a_frame_each_in_order(
    hub: HubHarness,
) -> None:
    _, ggd, _ = await _parties(hub)
    notifier = hub.client.server.app[SERVICES].notifier  # type: ignore[union-attr]
    async with hub.client.ws_connect("/v1/ws", headers=ggd.headers()) as ws:
        batch = [Notice(7, MessageId("A" * 22)), Notice(8, None, "event", "match")]
        batch += [Notice(cursor, MessageId(f"{cursor:022d}")) for cursor in range(9, 40)]
        notifier.deliver([(ggd.org, notice) for notice in batch])  # as one commit does
        frames = [json.loads((await _next(ws)).data) for _ in batch]
        assert frames[:2] == [
            {"type": "message", "cursor": 7, "id": "A" * 22},
            {"type": "event", "cursor": 8, "kind": "match"},
        ]
        assert [f["cursor"] for f in frames] == list(range(7, 40))
        notifier.deliver([(ggd.org, Notice(40, MessageId("B" * 22)))])  # and one alone
        assert json.loads((await _next(ws)).data)["cursor"] == 40


def test_frames_written_together_are_corked_and_uncorked_even_on_failure() -> None:
    cork = getattr(socket, "TCP_CORK", None)
    if cork is None:
        pytest.skip("TCP_CORK is Linux's")
    with (
        socket.create_server(("127.0.0.1", 0)) as server,
        socket.create_connection(server.getsockname()) as client,
    ):
        transport = _Transport(client)
        corked = lambda: client.getsockopt(socket.IPPROTO_TCP, cork)  # noqa: E731
        with _corked(transport, True):  # type: ignore[arg-type]
            assert corked()
        assert not corked()
        with pytest.raises(ConnectionResetError), _corked(transport, True):  # type: ignore[arg-type]
            assert corked()
            raise ConnectionResetError
        assert not corked()
        with _corked(transport, False):  # type: ignore[arg-type]  # one frame: as it is
            assert not corked()
    with _corked(None, True):  # no transport (the connection is gone): nothing to cork
        pass


class _Transport:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def get_extra_info(self, name: str) -> object:
        return self.sock if name == "socket" else None


async def test_a_directory_change_between_the_frames_of_a_batch_checks_the_caller_again(
    hub: HubHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, ggd, _ = await _parties(hub)
    services = hub.client.server.app[SERVICES]  # type: ignore[union-attr]
    checks: list[str] = []

    async def still_authorised(request: web.Request, caller: Caller) -> bool:
        checks.append(caller.org)
        return len(checks) == 1  # let in when the batch arrives, revoked after its first frame

    real_send = web.WebSocketResponse.send_str

    async def send_str(self: web.WebSocketResponse, data: str, compress: int | None = None) -> None:
        await real_send(self, data, compress=compress)
        services.trust_cache.changed()  # the directory changes while the frame goes out

    monkeypatch.setattr(ws_routes, "_still_authorised", still_authorised)
    monkeypatch.setattr(web.WebSocketResponse, "send_str", send_str)
    async with hub.client.ws_connect("/v1/ws", headers=ggd.headers()) as ws:
        batch = [Notice(cursor, MessageId(f"{cursor:022d}")) for cursor in (7, 8, 9)]
        services.notifier.deliver([(ggd.org, notice) for notice in batch])
        assert json.loads((await _next(ws)).data)["cursor"] == 7
        closing = await _next(ws)  # no frame for 8 or 9
        assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 1008
        assert closing.extra == "credentials no longer valid"
    assert checks == [ggd.org, ggd.org]
