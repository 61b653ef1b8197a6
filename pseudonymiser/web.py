"""The service's aiohttp application, and running it.

Handlers only read, call one use-case of :mod:`pseudonymiser.service` and render. One
middleware numbers each request, renders every error as an RFC 9457 problem, writes
the access log line and feeds the metrics. A background task fetches the CRL from
``crl_url`` when one is configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from ipaddress import ip_address

import aiohttp
from aiohttp import web

from protocol.certificate import MAX_CRL_BYTES, load_root
from protocol.encoding import b64d, loads_strict
from protocol.errors import EncodingError, ProtocolError
from pseudonymiser import service
from pseudonymiser.config import ServiceConfig
from pseudonymiser.errors import (
    Conflict,
    Malformed,
    NotFound,
    RateLimited,
    ServiceError,
    Timeout,
    TooLarge,
    Unavailable,
    UnsupportedMedia,
)
from pseudonymiser.metrics import CONTENT_TYPE, Metrics
from pseudonymiser.service import Context, KeyShare, Trust
from pseudonymiser.store import Store

CONTEXT = web.AppKey("context", Context)
METRICS = web.AppKey("metrics", Metrics)
REQUEST_ID = web.RequestKey("request_id", str)
ORG = web.RequestKey("org", str)
PROBLEM = "application/problem+json"
NO_ROUTE = "-"
_CHUNK = 16 * 1024
CRL_FETCH_TIMEOUT = 10

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = logging.getLogger("pseudonymiser")
access = logging.getLogger("pseudonymiser.access")


# -- requests and problems -----------------------------------------------------------------


def route_pattern(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else NO_ROUTE


def problem(err: ServiceError, request_id: str) -> web.Response:
    body = {
        "type": err.type,
        "title": err.title,
        "status": err.status,
        "detail": err.detail,
        "request_id": request_id,
    }
    response = web.json_response(body, status=err.status, content_type=PROBLEM)
    response.headers.update({"Cache-Control": "no-store", "X-Request-Id": request_id})
    if isinstance(err, RateLimited):
        response.headers["Retry-After"] = str(max(1, err.retry_after))
    return response


def _from_http(exc: web.HTTPException) -> ServiceError:
    known: dict[int, type[ServiceError]] = {400: Malformed, 404: NotFound, 413: TooLarge}
    if exc.status in known:
        return known[exc.status]()
    err = ServiceError()
    if 400 <= exc.status < 500:
        err.status, err.slug = exc.status, HTTPStatus(exc.status).phrase.lower().replace(" ", "-")
        err.title = err.detail = HTTPStatus(exc.status).phrase
    return err


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id, problems, the access log line and the request metrics."""
    request_id = uuid.uuid4().hex
    request[REQUEST_ID] = request_id
    started = time.perf_counter()
    try:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            raise _from_http(exc) from None
        except ServiceError:
            raise
        except Exception as exc:
            log.error(
                "unhandled exception",
                extra={
                    "request_id": request_id,
                    "route": route_pattern(request),
                    "exc_type": f"{type(exc).__module__}.{type(exc).__qualname__}",
                    "traceback": "".join(traceback.format_tb(exc.__traceback__)),
                },
            )
            raise ServiceError() from None
        response.headers["X-Request-Id"] = request_id
    except ServiceError as err:
        response = problem(err, request_id)
    _observe(request, response.status, time.perf_counter() - started)
    return response


def _observe(request: web.Request, status: int, seconds: float) -> None:
    route = route_pattern(request)
    metrics = request.app[METRICS]
    metrics.requests.labels(route, request.method, str(status)).inc()
    metrics.latency.labels(route).observe(seconds)
    access.info(
        "request",
        extra={
            "request_id": request.get(REQUEST_ID),
            "method": request.method,
            "route": route,
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
            "org": request.get(ORG),
        },
    )


async def read_json(request: web.Request, *, max_bytes: int, timeout: float) -> object:
    """The body as strict JSON: media type, declared and actual size, time to arrive."""
    if request.content_type != "application/json":
        raise UnsupportedMedia("the body must be application/json")
    if request.content_length is not None and request.content_length > max_bytes:
        raise TooLarge(f"the body may hold at most {max_bytes} bytes")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout):
            while chunk := await request.content.read(_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise TooLarge(f"the body may hold at most {max_bytes} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise Timeout(f"the body must arrive within {timeout:g} seconds") from None
    try:
        return loads_strict(b"".join(chunks), max_bytes=max_bytes)
    except EncodingError as exc:
        raise Malformed(f"the body is not strict JSON: {exc}") from None


# -- handlers ------------------------------------------------------------------------------


async def evaluate(request: web.Request) -> web.Response:
    ctx, metrics = request.app[CONTEXT], request.app[METRICS]
    limits = ctx.config.limits
    try:
        body = await read_json(
            request, max_bytes=limits.max_body_bytes, timeout=limits.body_timeout
        )
        started = time.perf_counter()
        cert, answer = await service.evaluate(ctx, body)
    except ServiceError as err:
        metrics.refused(err.slug)
        raise
    request[ORG] = cert.org
    metrics.evaluation_seconds.observe(time.perf_counter() - started)
    metrics.evaluations.inc(len(answer.elements))
    return web.json_response(answer.to_wire(), headers={"Cache-Control": "no-store"})


async def service_info(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    statements = [share.statement for _, share in sorted(ctx.shares.items())]
    return web.json_response(
        {
            "network": ctx.config.network,
            "service": ctx.config.service,
            "share": statements[0].share,
            "max_batch": ctx.config.limits.max_batch,
            "statements": [statement.to_wire() for statement in statements],
        }
    )


async def put_crl(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    body = await read_json(
        request, max_bytes=2 * MAX_CRL_BYTES, timeout=ctx.config.limits.body_timeout
    )
    number = await service.accept_crl(ctx, body)
    log.info("revocation list stored", extra={"crl_number": number})
    return web.json_response({"number": number})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    try:
        version = await ctx.store.schema_version()
    except Exception:
        version = None
    if version is None:
        raise Unavailable("the database does not answer or holds no schema")
    return web.json_response({"status": "ready"})


async def metrics_route(request: web.Request) -> web.Response:
    ctx, metrics = request.app[CONTEXT], request.app[METRICS]
    peer = request.transport.get_extra_info("peername") if request.transport else None
    try:
        address = ip_address(peer[0]) if peer else None
    except ValueError:
        address = None
    if address is None or not any(address in net for net in ctx.config.metrics_from):
        raise NotFound()
    held = await ctx.trust.crl(ctx.store)
    metrics.crl_number.set(-1 if held is None else held.number)
    metrics.crl_age.set(-1 if held is None else max(0, ctx.clock() - held.this_update))
    return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})


# -- the application -----------------------------------------------------------------------


def make_app(
    config: ServiceConfig,
    shares: Mapping[int, KeyShare],
    *,
    clock: Callable[[], int] | None = None,
    rng: Callable[[int], bytes] | None = None,
    migrate: bool = True,
    poll_crl: bool = True,
) -> web.Application:
    """The service application; the database is migrated (if ``migrate``) on startup."""
    now = clock or (lambda: int(time.time()))
    load_root(config.root_der, now=now())  # refuse to start with a bad or expired root
    if not shares:
        raise ValueError("a service needs at least one key share with its statement")
    for version, share in shares.items():
        statement = share.statement
        if (statement.version, statement.network, statement.service) != (
            version, config.network, config.service,
        ):  # fmt: skip
            raise ValueError("a key statement is for another version, network or service")
    store = Store(config.database_url)
    executor = ThreadPoolExecutor(config.limits.evaluation_threads, "pseudonymiser-evaluate")
    ctx = Context(
        config, store, now, rng or os.urandom, dict(shares), Trust(config.root_der), executor
    )
    app = web.Application(middlewares=[middleware], client_max_size=2 * MAX_CRL_BYTES)
    app[CONTEXT] = ctx
    app[METRICS] = Metrics()

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        if migrate:
            await store.migrate()
        poller = asyncio.create_task(_poll_crl(ctx)) if poll_crl and config.crl_url else None
        yield
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        executor.shutdown(wait=True)
        await store.close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/v1/evaluate", evaluate)
    app.router.add_get("/v1/service", service_info)
    app.router.add_put("/v1/crl", put_crl)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_route)
    return app


async def _poll_crl(ctx: Context) -> None:
    """Fetch the CRL from ``crl_url`` now and every ``crl_poll_interval`` seconds."""
    assert ctx.config.crl_url is not None
    timeout = aiohttp.ClientTimeout(total=CRL_FETCH_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            await fetch_crl(ctx, session, ctx.config.crl_url)
            await asyncio.sleep(ctx.config.limits.crl_poll_interval)


async def fetch_crl(ctx: Context, session: aiohttp.ClientSession, url: str) -> int | None:
    """One fetch of ``{"crl": b64url | null}``; the new CRL's number if one was stored."""
    try:
        async with session.get(url) as response:
            if response.status != 200:
                log.warning("revocation list fetch failed", extra={"status": response.status})
                return None
            body = loads_strict(
                await response.content.read(2 * MAX_CRL_BYTES + 1), max_bytes=2 * MAX_CRL_BYTES
            )
        if not isinstance(body, dict) or body.get("crl") is None:
            return None
        return await service.store_crl(ctx, b64d(body["crl"], max_len=MAX_CRL_BYTES))
    except Conflict:
        return None  # nothing newer
    except (aiohttp.ClientError, TimeoutError, ProtocolError, ServiceError) as exc:
        log.warning("revocation list fetch failed", extra={"exc_type": type(exc).__name__})
        return None


async def serve(
    config: ServiceConfig,
    shares: Mapping[int, KeyShare],
    *,
    stop: asyncio.Event | None = None,
    migrate: bool = True,
) -> None:
    """Run the service on ``config.host:config.port`` until SIGINT/SIGTERM (or ``stop``)."""
    app = make_app(config, shares, migrate=migrate)
    limits = config.limits
    runner = web.AppRunner(
        app,
        access_log=None,
        keepalive_timeout=limits.keepalive_timeout,
        max_line_size=limits.max_line_size,
        max_field_size=limits.max_field_size,
        shutdown_timeout=limits.shutdown_timeout,
        handle_signals=False,
    )
    await runner.setup()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await web.TCPSite(runner, config.host, config.port, backlog=512).start()
        log.info("pseudonymiser listening")
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await runner.cleanup()


def info_line(config: ServiceConfig) -> str:
    return json.dumps(
        {
            "listening": f"{config.host}:{config.port}",
            "network": config.network,
            "service": config.service,
        }
    )
