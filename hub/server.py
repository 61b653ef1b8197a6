"""The hub's HTTP server around its application: connections and parser errors.

aiohttp's server answers two things before the application sees a request, and both
are the hub's business:

* a request its HTTP parser refuses (a header line over ``max_line_size``, a control
  character in a header, a malformed request line) gets aiohttp's plain-text 400,
  which quotes part of the offending line, and that line may be an ``Authorization``
  header. :class:`HubRequestHandler` answers it with an RFC 9457 problem that quotes
  nothing, and logs only the type of the parser's error (its message quotes the
  request);
* a body that trickles in is cut off by ``read_json`` (408, ``body_timeout_ms``);
  whatever still arrives after the answer is read for ``LINGER_SECONDS`` at most;
* every client address could open connections without end. The server admits at most
  ``connections_per_address`` open connections per TCP peer; a connection over the cap
  is closed as soon as it is accepted, before a byte is read. Peers in
  ``trusted_proxies`` are not capped (every client behind a reverse proxy shares its
  address; the proxy bounds them).

:class:`HubRunner` is ``web.AppRunner`` with this server; ``hub.app.serve`` runs it and
the tests' servers use it too (:func:`hub_server_kwargs` gives a ``TestServer`` the
same parser bounds).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import uuid
from collections import Counter
from typing import Any, cast

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from hub.config import HubConfig, Networks, unmapped
from hub.errors import HubError, Malformed
from hub.problems import problem_response

log = logging.getLogger("hub.server")
# After an answer given before the whole body was read (408, 413, 401, ...), aiohttp
# reads and drops what still comes, so that the client sees the answer, for this long
# at most (its default is 10 s); then the connection is closed.
LINGER_SECONDS = 2.0


class ConnectionCap:
    """Open connections per client address, and whether one more may be admitted."""

    def __init__(self, per_address: int, exempt: Networks) -> None:
        self._per_address = per_address
        self._exempt = exempt
        self._open: Counter[str] = Counter()
        self.refused = 0

    def admit(self, peer: str | None) -> str | None:
        """Count a new connection from ``peer``: the key to release it by, or None if
        it is over the cap (and must be closed). Unknown peers share one key."""
        key = peer or "-"
        try:
            if unmapped(ipaddress.ip_address(key)) in self._exempt:
                return key
        except ValueError:
            pass
        if self._open[key] >= self._per_address:
            self.refused += 1
            return None
        self._open[key] += 1
        return key

    def release(self, key: str) -> None:
        if self._open[key] > 1:
            self._open[key] -= 1
        else:
            self._open.pop(key, None)

    def open(self, peer: str) -> int:
        return self._open[peer]


class HubRequestHandler(RequestHandler):
    """aiohttp's connection handler with the cap and problem-shaped parser errors."""

    _cap_key: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        manager = self._manager
        assert isinstance(manager, HubServer)
        peer = transport.get_extra_info("peername")
        key = manager.cap.admit(peer[0] if isinstance(peer, tuple) and peer else None)
        if key is None:
            cast(asyncio.Transport, transport).abort()  # over the cap: closed before a read
            return
        self._cap_key = key
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        manager = self._manager
        if isinstance(manager, HubServer) and self._cap_key is not None:
            manager.cap.release(self._cap_key)
            self._cap_key = None
        super().connection_lost(exc)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The parser's (or a handler's) error as a problem that quotes nothing."""
        log.info(
            "request refused by the HTTP server" if status < 500 else "request failed",
            extra={"status": status, "exc_type": None if exc is None else type(exc).__name__},
        )
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; the connection is closed")
        response = problem_response(_problem(status, exc), uuid.uuid4().hex)
        response.force_close()
        return response


def _problem(status: int, exc: BaseException | None) -> HubError:
    """A problem with a fixed detail: the parser's own message quotes the request."""
    if not 400 <= status < 500:
        return HubError()
    if isinstance(exc, LineTooLong):
        return Malformed("a request line or header field is too long")
    return Malformed("the request is not well-formed HTTP")


class HubServer(web.Server):
    """``web.Server`` whose connections are :class:`HubRequestHandler`\\ s."""

    def __init__(self, *args: Any, cap: ConnectionCap, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cap = cap

    def __call__(self) -> HubRequestHandler:
        return HubRequestHandler(self, loop=self._loop, **self._kwargs)


class HubRunner(web.AppRunner):
    """``web.AppRunner`` serving the app through :class:`HubServer`."""

    def __init__(self, app: web.Application, *, cap: ConnectionCap, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.cap = cap

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        return HubServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=asyncio.get_running_loop(),
            cap=self.cap,
            **plain._kwargs,  # the handler's settings aiohttp gathered (parser bounds, ...)
        )


def connection_cap(config: HubConfig) -> ConnectionCap:
    return ConnectionCap(config.limits.connections_per_address, config.trusted_proxies)


def hub_server_kwargs(config: HubConfig) -> dict[str, Any]:
    """The keyword arguments that bound aiohttp's connections and parser."""
    limits = config.limits
    return {
        "access_log": None,  # hub.logs writes the access log, without raw paths
        "keepalive_timeout": limits.keepalive_timeout,
        "max_line_size": limits.max_line_size,
        "max_field_size": limits.max_field_size,
        "shutdown_timeout": limits.shutdown_timeout,
        "lingering_time": LINGER_SECONDS,
    }
