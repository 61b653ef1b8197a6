"""How a :class:`~clients.hub_client.HubClient` reaches the hub: a swappable transport.

:class:`HubClient` speaks the hub's API (docs/protocol.md); a transport only moves
bytes. The real one, :class:`AiohttpTransport`, holds one ``aiohttp.ClientSession``
with explicit timeouts. :class:`MockTransport` hands every request to a function
instead (httpx's ``MockTransport`` is the model): tests use it to answer as a hub
never would, or to forward to a real hub and change its answer on the way back.

Three shapes of exchange:

* :meth:`Transport.request`: one request, the whole response read, at most
  ``max_bytes`` of it (:class:`TransportFailed` beyond);
* :meth:`Transport.stream`: one GET whose body is read line by line, each line at
  most ``max_line`` bytes (the access-log export);
* :meth:`Transport.websocket`: the text frames of a WebSocket until it closes.

A transport raises :class:`TransportFailed` when no answer came (``retry`` says
whether another attempt may help) and :class:`WebSocketRefused` when the hub
refused a WebSocket handshake; :class:`HubClient` turns both into the errors of
:mod:`clients.errors`. A transport never follows redirects.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

MAX_FRAME = 4096  # bytes of one WebSocket frame (a notice)


@dataclass(frozen=True, slots=True)
class Request:
    """One request: ``url`` is absolute; ``body`` is already encoded (JSON) or None."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None

    def __repr__(self) -> str:  # headers carry the access token: never show them
        return f"Request({self.method} {self.url})"


@dataclass(frozen=True, slots=True)
class Response:
    """One response: header names in lower case, the whole body."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Streamed:
    """A response whose body is read line by line (without the newline)."""

    status: int
    headers: Mapping[str, str]
    lines: AsyncIterator[bytes]


class TransportFailed(Exception):
    """No usable answer: connection refused or lost, a timeout, an oversized body.

    ``retry`` is True when another attempt may get through (a connection or a timeout),
    False when it will not (an answer larger than allowed, a malformed stream).
    """

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


class AnswerTooLarge(TransportFailed):
    """The hub's answer is larger than the caller allows (never retried)."""

    def __init__(self) -> None:
        super().__init__("the hub's answer is too large", retry=False)


class WebSocketRefused(Exception):
    """The hub answered a WebSocket handshake with ``status`` instead of switching."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Transport(Protocol):
    """What :class:`~clients.hub_client.HubClient` needs to reach a hub."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def request(self, request: Request, *, max_bytes: int) -> Response: ...

    def stream(
        self, request: Request, *, max_line: int
    ) -> contextlib.AbstractAsyncContextManager[Streamed]: ...

    def websocket(
        self, request: Request
    ) -> contextlib.AbstractAsyncContextManager[AsyncIterator[str]]: ...


class AiohttpTransport:
    """The real transport: one ``aiohttp.ClientSession`` between :meth:`open` and :meth:`close`.

    ``timeout`` bounds a whole request (the export: each read); ``ssl`` is an
    ``SSLContext`` to trust another CA than the system's (None: the system's).
    """

    def __init__(self, *, timeout: float = 30.0, ssl: Any = None) -> None:
        self._timeout = aiohttp.ClientTimeout(
            total=timeout, connect=min(timeout, 10.0), sock_read=timeout
        )
        self._ssl = ssl if ssl is not None else True
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, raise_for_status=False)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _open_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise TransportFailed("the transport is not open", retry=False)
        return self._session

    async def request(self, request: Request, *, max_bytes: int) -> Response:
        session = self._open_session()
        try:
            async with session.request(
                request.method,
                request.url,
                data=request.body,
                headers=dict(request.headers),
                ssl=self._ssl,
                allow_redirects=False,
            ) as response:
                body = await _read(response, max_bytes)
                return Response(response.status, _lower(response.headers), body)
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
            raise TransportFailed(type(exc).__name__, retry=True) from exc
        except aiohttp.ClientError as exc:
            raise TransportFailed(type(exc).__name__, retry=False) from exc

    @contextlib.asynccontextmanager
    async def stream(self, request: Request, *, max_line: int) -> AsyncIterator[Streamed]:
        session = self._open_session()
        try:
            async with session.request(
                request.method,
                request.url,
                headers=dict(request.headers),
                ssl=self._ssl,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=None, sock_read=self._timeout.sock_read),
            ) as response:
                yield Streamed(
                    response.status,
                    _lower(response.headers),
                    _lines(response.content.iter_chunked(65536), max_line),
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransportFailed(type(exc).__name__, retry=True) from exc

    @contextlib.asynccontextmanager
    async def websocket(self, request: Request) -> AsyncIterator[AsyncIterator[str]]:
        session = self._open_session()
        try:
            socket = await session.ws_connect(
                request.url,
                headers=dict(request.headers),
                ssl=self._ssl,
                max_msg_size=MAX_FRAME,
                heartbeat=60.0,
            )
        except aiohttp.WSServerHandshakeError as exc:
            raise WebSocketRefused(exc.status, exc.message[:200]) from exc
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise TransportFailed(type(exc).__name__, retry=True) from exc
        async with socket:
            yield _texts(socket)


async def _texts(socket: aiohttp.ClientWebSocketResponse) -> AsyncIterator[str]:
    """Text frames until the socket closes or sends anything else."""
    async for message in socket:
        if message.type != aiohttp.WSMsgType.TEXT:
            return
        yield str(message.data)


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


async def _read(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    length = response.content_length
    if length is not None and length > max_bytes:
        raise AnswerTooLarge()
    data = bytearray()
    async for chunk in response.content.iter_chunked(65536):
        data += chunk
        if len(data) > max_bytes:
            raise AnswerTooLarge()
    return bytes(data)


async def _lines(chunks: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    """Split a stream into lines (without the newline), refusing any longer than ``limit``."""
    buffer = bytearray()
    async for chunk in chunks:
        buffer += chunk
        while (end := buffer.find(b"\n")) >= 0:
            yield bytes(buffer[:end])
            del buffer[: end + 1]
        if len(buffer) > limit:
            raise TransportFailed("the hub's stream holds a line that is too long", retry=False)
    if buffer:
        yield bytes(buffer)


Handler = Callable[[Request], Response | Awaitable[Response]]
SocketHandler = Callable[[Request], AsyncIterator[str]]


class MockTransport:
    """A transport that answers every request with ``handler(request)`` (sync or async).

    ``websocket``, when given, makes the frames of a WebSocket (its iterator ends when
    the socket would close); without it a handshake is refused with 404. The handler
    may raise :class:`TransportFailed` to play a hub out of reach. ``requests`` records
    every request made, in order.
    """

    def __init__(self, handler: Handler, *, websocket: SocketHandler | None = None) -> None:
        self._handler = handler
        self._websocket = websocket
        self.requests: list[Request] = []

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def _answer(self, request: Request) -> Response:
        self.requests.append(request)
        answer = self._handler(request)
        return await answer if inspect.isawaitable(answer) else answer

    async def request(self, request: Request, *, max_bytes: int) -> Response:
        response = await self._answer(request)
        if len(response.body) > max_bytes:
            raise AnswerTooLarge()
        return response

    @contextlib.asynccontextmanager
    async def stream(self, request: Request, *, max_line: int) -> AsyncIterator[Streamed]:
        response = await self._answer(request)
        yield Streamed(response.status, response.headers, _lines(_one(response.body), max_line))

    @contextlib.asynccontextmanager
    async def websocket(self, request: Request) -> AsyncIterator[AsyncIterator[str]]:
        self.requests.append(request)
        if self._websocket is None:
            raise WebSocketRefused(404, "no WebSocket here")
        yield self._websocket(request)


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data
