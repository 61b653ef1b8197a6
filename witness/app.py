"""The witness's HTTP service (aiohttp): routes, problems, health and metrics.

* ``POST /add-checkpoint``: C2SP tlog-witness. 200 with the cosignature line
  (``text/plain; charset=utf-8``); 409 with ``<size>\\n`` (``text/x.tlog.size``); 400,
  403, 404, 413 and 422 as problems.
* ``GET /<origin hash>/checkpoint``: the checkpoint held for that log with this
  witness's cosignature (tlog-witness's monitoring retrieval); 404 when none.
* ``GET /healthz``: 200 while the process runs. ``GET /readyz``: 200 when the database
  answers, else 503.
* ``GET /metrics``: Prometheus text, to peers in ``metrics_from`` only (else 404).

Every error but the 409 is an RFC 9457 ``application/problem+json`` document; an
unexpected exception is a 500 whose log line names only its type. Bodies are bounded by
``protocol.tlogwitness.MAX_REQUEST_BYTES`` (413 beyond). No label of a metric holds a
request's content.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import signal
from collections.abc import Awaitable, Callable, Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric

from protocol.tlogwitness import (
    ADD_CHECKPOINT_PATH,
    MAX_REQUEST_BYTES,
    SIZE_CONTENT_TYPE,
    cosignature_body,
    size_body,
)
from witness.config import WitnessConfig
from witness.core import Witness
from witness.errors import (
    Conflict,
    Malformed,
    MethodNotAllowed,
    TooLarge,
    Unavailable,
    UnknownLog,
    WitnessError,
)
from witness.store import WitnessStore

PROBLEM_CONTENT_TYPE = "application/problem+json"
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
WITNESS = web.AppKey("witness", Witness)
STORE = web.AppKey("store", WitnessStore)
CONFIG = web.AppKey("config", WitnessConfig)
REGISTRY = web.AppKey("registry", CollectorRegistry)
REQUESTS = web.AppKey("requests", Counter)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = logging.getLogger("witness.app")


def problem_response(err: WitnessError) -> web.Response:
    if isinstance(err, Conflict):
        return web.Response(status=409, body=size_body(err.size), content_type=SIZE_CONTENT_TYPE)
    body = {"type": err.type, "title": err.title, "status": err.status, "detail": err.detail}
    return web.Response(
        status=err.status,
        body=json.dumps(body, separators=(",", ":")).encode("utf-8"),
        content_type=PROBLEM_CONTENT_TYPE,
    )


def _from_http(exc: web.HTTPException) -> WitnessError:
    if exc.status == 413:
        return TooLarge(f"the body is limited to {MAX_REQUEST_BYTES} bytes")
    if exc.status == 405:
        return MethodNotAllowed()
    if exc.status == 404:
        return UnknownLog("no such route")
    if 400 <= exc.status < 500:
        return Malformed()
    return WitnessError()


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    route = request.match_info.route.resource
    label = route.canonical if route is not None else "unmatched"
    try:
        response = await handler(request)
    except WitnessError as err:
        response = problem_response(err)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = problem_response(_from_http(exc))
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.error("internal error on %s: %s", label, type(exc).__name__)
        response = problem_response(WitnessError())
    request.app[REQUESTS].labels(route=label, status=str(response.status)).inc()
    return response


async def add_checkpoint(request: web.Request) -> web.Response:
    body = await request.read()
    line = await request.app[WITNESS].add_checkpoint(body)
    return web.Response(body=cosignature_body([line]), content_type="text/plain", charset="utf-8")


async def held_checkpoint(request: web.Request) -> web.Response:
    note = await request.app[WITNESS].held_note(request.match_info["hash"])
    return web.Response(text=note, content_type="text/plain", charset="utf-8")


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    try:
        await asyncio.wait_for(request.app[STORE].ping(), timeout=3)
    except Exception as exc:
        raise Unavailable("the database does not answer") from exc
    return web.Response(text="ready\n")


async def metrics(request: web.Request) -> web.Response:
    peer = request.remote
    try:
        address = ipaddress.ip_address(peer or "")
    except ValueError:
        address = None
    if address is None or not any(address in net for net in request.app[CONFIG].metrics_from):
        raise UnknownLog("no such route")
    return web.Response(
        body=generate_latest(request.app[REGISTRY]), headers={"Content-Type": METRICS_CONTENT_TYPE}
    )


class _Counters:
    """Reads the witness's own counters at each scrape."""

    def __init__(self, witness: Witness) -> None:
        self._witness = witness

    def collect(self) -> Iterator[Metric]:
        counters = self._witness.counters
        cosigned = CounterMetricFamily(
            "schakel_witness_cosignatures", "Checkpoints this witness cosigned."
        )
        cosigned.add_metric([], counters.cosigned)
        yield cosigned
        split = CounterMetricFamily(
            "schakel_witness_split_views",
            "Split views found: evidence files kept (fork: one size, two roots; "
            "inconsistent: a proof binding the held size to another root).",
            labels=["kind"],
        )
        for kind in ("fork", "inconsistent"):
            split.add_metric([kind], counters.split_views.get(kind, 0))
        yield split
        bad = CounterMetricFamily(
            "schakel_witness_bad_proofs", "Consistency proofs that did not verify (refused 422)."
        )
        bad.add_metric([], counters.bad_proofs)
        yield bad


def make_app(config: WitnessConfig, witness: Witness, store: WitnessStore) -> web.Application:
    app = web.Application(client_max_size=MAX_REQUEST_BYTES, middlewares=[problem_middleware])
    registry = CollectorRegistry()
    registry.register(_Counters(witness))
    app[REGISTRY] = registry
    app[REQUESTS] = Counter(
        "schakel_witness_requests",
        "HTTP requests by route template and status.",
        ["route", "status"],
        registry=registry,
    )
    app[WITNESS] = witness
    app[STORE] = store
    app[CONFIG] = config
    app.router.add_post(ADD_CHECKPOINT_PATH, add_checkpoint)
    app.router.add_get(r"/{hash:[0-9a-f]{64}}/checkpoint", held_checkpoint)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def serve(config: WitnessConfig, witness: Witness, store: WitnessStore) -> None:
    """Run until SIGINT or SIGTERM; then stop accepting and finish the requests in flight."""
    app = make_app(config, witness, store)
    runner = web.AppRunner(
        app,
        access_log_format='%a "%r" %s %b %Tf',
        shutdown_timeout=config.shutdown_timeout,
        handle_signals=False,
    )
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await web.TCPSite(runner, config.host, config.port).start()
        log.info("witness listening on %s:%d for %s", config.host, config.port, witness.origins)
        await stop.wait()
    finally:
        await runner.cleanup()
        await store.close()
