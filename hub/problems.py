"""Every error the hub answers with, rendered as one RFC 9457 problem document.

``problem_middleware`` is the one place where exceptions become responses:

* a :class:`hub.errors.HubError` renders with its own status, slug and title;
* an aiohttp ``HTTPException`` of status 400 or more (unknown route 404,
  405, 413 from ``client_max_size``, ...) renders as the matching problem,
  its own text dropped; one below 400 (a redirect) passes through;
* anything else is a 500 ``internal``: the log gets the exception type and
  traceback under the request id, never the exception message, the request
  body, headers or query; the caller gets only the request id.

Every request gets a fresh request id (``uuid4().hex``) in
``request[REQUEST_ID]`` and the ``X-Request-Id`` response header (unless the
handler has already sent its headers, as a WebSocket does: it should set the
header itself before ``prepare``). An incoming ``X-Request-Id`` is ignored:
callers do not choose what lands in our logs.

Request storage uses ``web.RequestKey`` objects, not strings: aiohttp 3.14
warns on a string key, and the test suite turns warnings into errors.
``REQUEST_ID`` is set here; ``ORG`` is for the authentication code to set
(the authenticated organisation id), and the access log reads it.

``read_json`` is the one way a handler reads a JSON body: media type, size
(declared and actual), the time it takes to arrive and strict parsing, each failure
its own problem.
"""

from __future__ import annotations

import asyncio
import json
import logging
import traceback
import uuid
from collections.abc import Awaitable, Callable
from http import HTTPStatus

from aiohttp import web

from hub.errors import (
    HubError,
    Malformed,
    NotFound,
    RateLimited,
    RequestTimeout,
    TooLarge,
    Unauthorized,
    Unavailable,
    UnsupportedMedia,
)
from protocol.encoding import loads_strict
from protocol.errors import EncodingError

PROBLEM_CONTENT_TYPE = "application/problem+json"
REQUEST_ID_HEADER = "X-Request-Id"
REQUEST_ID = web.RequestKey("request_id", str)
ORG = web.RequestKey("org", str)
_READ_CHUNK = 64 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class MethodNotAllowed(HubError):
    status, slug, title = 405, "method-not-allowed", "Method not allowed"

    def __init__(self, allowed: frozenset[str] = frozenset()) -> None:
        super().__init__()
        self.allowed = allowed


class HTTPProblem(HubError):
    """Any other 4xx status aiohttp raises; slug and title from the status phrase.

    A status that is not a client error becomes the root ``internal`` 500.
    """

    def __init__(self, status: int) -> None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase, status = "Bad Request", (400 if status < 500 else 500)
        if not 400 <= status < 500:
            super().__init__()
            return
        self.status = status
        self.slug = phrase.lower().replace(" ", "-").replace("'", "")
        self.title = phrase
        super().__init__()


_BY_STATUS: dict[int, type[HubError]] = {
    400: Malformed,
    401: Unauthorized,
    404: NotFound,
    413: TooLarge,
    415: UnsupportedMedia,
    500: HubError,
    503: Unavailable,
}


def problem_for(exc: web.HTTPException) -> HubError:
    """The problem that stands for an aiohttp HTTP error (status 400 or more)."""
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return MethodNotAllowed(frozenset(exc.allowed_methods))
    known = _BY_STATUS.get(exc.status)
    return known() if known is not None else HTTPProblem(exc.status)


def problem_response(err: HubError, request_id: str) -> web.Response:
    """``err`` as an ``application/problem+json`` response."""
    body = {
        "type": err.type,
        "title": err.title,
        "status": err.status,
        "detail": err.detail,
        "request_id": request_id,
    }
    response = web.Response(
        status=err.status,
        body=json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8"),
        headers={
            "Content-Type": PROBLEM_CONTENT_TYPE,
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            REQUEST_ID_HEADER: request_id,
        },
    )
    if isinstance(err, RateLimited | Unavailable) and err.retry_after is not None:
        response.headers["Retry-After"] = str(max(1, int(err.retry_after)))
    if isinstance(err, Unauthorized):
        response.headers["WWW-Authenticate"] = "Bearer"
    if isinstance(err, RequestTimeout):
        response.force_close()  # never wait for the rest of a body that trickles in
    if isinstance(err, MethodNotAllowed) and err.allowed:
        response.headers["Allow"] = ", ".join(sorted(err.allowed))
    return response


def problem_middleware(logger: logging.Logger) -> Callable[..., Awaitable[web.StreamResponse]]:
    """The middleware that numbers requests and renders every error as a problem."""

    @web.middleware
    async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = uuid.uuid4().hex
        request[REQUEST_ID] = request_id
        try:
            response = await handler(request)
        except HubError as err:
            return problem_response(err, request_id)
        except web.HTTPException as exc:
            if exc.status < 400:
                exc.headers[REQUEST_ID_HEADER] = request_id
                raise
            return problem_response(problem_for(exc), request_id)
        except Exception as exc:
            _log_internal(logger, request, request_id, exc)
            return problem_response(HubError(), request_id)
        if not response.prepared:
            response.headers[REQUEST_ID_HEADER] = request_id
        return response

    return problems


def _log_internal(
    logger: logging.Logger, request: web.Request, request_id: str, exc: Exception
) -> None:
    """Type and stack of an unexpected error; its message may hold data, so it is left out."""
    logger.error(
        "unhandled exception",
        extra={
            "request_id": request_id,
            "route": route_pattern(request),
            "method": request.method,
            "exc_type": f"{type(exc).__module__}.{type(exc).__qualname__}",
            "traceback": "".join(traceback.format_tb(exc.__traceback__)),
        },
    )


NO_ROUTE = "-"  # the pattern of a request that matched no route


def route_pattern(request: web.Request) -> str:
    """The matched route's pattern (``/v1/messages/{id}``), never the raw path."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else NO_ROUTE


async def read_json(request: web.Request, *, max_bytes: int, timeout: float) -> object:
    """The request body as strict JSON.

    415 unless the media type is ``application/json`` (charset, if given,
    ``utf-8``); 413 when ``Content-Length`` or the bytes actually sent pass
    ``max_bytes``; 408 when the whole body has not arrived within ``timeout``
    seconds (a client trickling a body can not hold a connection open for longer);
    400 when the body is not strict JSON (see ``protocol.encoding.loads_strict``).
    """
    if (
        request.content_type != "application/json"
        or (request.charset or "utf-8").lower() != "utf-8"
    ):
        raise UnsupportedMedia("the body must be application/json")
    if request.content_length is not None and request.content_length > max_bytes:
        raise TooLarge(f"the body may hold at most {max_bytes} bytes")
    try:
        async with asyncio.timeout(timeout):
            body = await _read_at_most(request, max_bytes)
    except TimeoutError:
        raise RequestTimeout(f"the body must arrive within {timeout:g} seconds") from None
    try:
        return loads_strict(body, max_bytes=max_bytes)
    except EncodingError as exc:
        # protocol.encoding's messages are fixed strings that never quote the input.
        raise Malformed(f"the body is not strict JSON: {exc}") from None


async def _read_at_most(request: web.Request, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(_READ_CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise TooLarge(f"the body may hold at most {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
