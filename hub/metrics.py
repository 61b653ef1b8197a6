"""Prometheus metrics at ``GET /metrics``, for the operator's monitoring.

Every app has its own :class:`Metrics` (its own ``CollectorRegistry``, so that tests
can build many apps). The access log (:func:`hub.logs.access_log_middleware`) hands it
each request, counted and timed by route template (``/v1/messages/{id}``, or
``unmatched``), method and status. A scrape reads
the rest at that moment: the writer's queue, the WebSocket subscriptions and whether
notices of other replicas arrive (this process), and from the database the size of the
access log, how far the signed tree heads lag behind it, the escalations so far and
the open referrals per step (one bounded read: counts grouped by step), and what the
retention job of this process deleted (rows per kind, runs, the last run's end and length).

No label ever holds a case reference, pseudonym, message id, organisation, user or
purpose: the metrics say how the hub is doing, not whom it serves. ``/metrics`` answers
only peers in ``HubConfig.metrics_from``, judged on the TCP peer address (never on
``X-Forwarded-For``); to anyone else it is the 404 of an unknown route, whatever the
method. It holds no data, so it is not audited; the access log logs it like any request.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from hub.errors import NotFound
from hub.http.common import services
from hub.problems import NO_ROUTE, MethodNotAllowed, route_pattern
from hub.query import NONE, parse_query
from hub.retention import KINDS, RunStats
from protocol.referral import OPEN_STEPS

PREFIX = "schakel_"
METRICS_PATH = "/metrics"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UNMATCHED = "unmatched"
OTHER_METHOD = "other"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
# Seconds; a WebSocket request lasts as long as its connection and lands in +Inf.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ESCALATION_STEPS = tuple(OPEN_STEPS)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Reading:
    """What one scrape read from the store, the notifier and the database."""

    queue_depth: int
    subscriptions: int
    listening: bool
    audit_size: int
    head_size: int | None  # None: no tree head signed yet
    head_age: int | None  # seconds since the newest signed head
    escalations: Mapping[str, int]  # step -> escalations fired so far
    open_referrals: Mapping[str, int]  # open step -> referrals at it now
    retention: RunStats | None = None  # what this process's retention job did so far


class _ReadingCollector:
    """Renders the reading a scrape hands it; nothing outside a scrape."""

    def __init__(self) -> None:
        self.reading: Reading | None = None

    def collect(self) -> Iterator[Metric]:
        reading = self.reading
        if reading is None:
            return
        yield _gauge(
            "writer_queue_depth", "Work items waiting for the writer.", reading.queue_depth
        )
        yield _gauge(
            "websocket_subscriptions",
            "WebSocket subscriptions open in this process.",
            reading.subscriptions,
        )
        yield _gauge(
            "replica_listening",
            "1 while notices committed by other replicas reach this process.",
            int(reading.listening),
        )
        yield _gauge("audit_tree_size", "Entries in the access log.", reading.audit_size)
        yield _gauge(
            "audit_unsigned_entries",
            "Access-log entries not yet covered by a signed tree head.",
            reading.audit_size - (reading.head_size or 0),
        )
        age = _gauge(
            "tree_head_age_seconds",
            "Seconds since the newest signed tree head (no sample: none signed).",
        )
        if reading.head_age is not None:
            age.add_metric([], reading.head_age)
        yield age
        fired = CounterMetricFamily(
            PREFIX + "escalations", "Escalations of overdue referrals, by step.", labels=["step"]
        )
        for step in ESCALATION_STEPS:
            fired.add_metric([step], reading.escalations.get(step, 0))
        yield fired
        waiting = _gauge(
            "open_referrals", "Open referrals, by the step they are at.", labels=["step"]
        )
        for step in OPEN_STEPS:
            waiting.add_metric([step], reading.open_referrals.get(step, 0))
        yield waiting
        if reading.retention is not None:
            yield from _retention(reading.retention)


def _retention(stats: RunStats) -> Iterator[Metric]:
    deleted = CounterMetricFamily(
        PREFIX + "retention_deleted_rows",
        "Rows the retention job deleted in this process, by kind (ciphertext, case).",
        labels=["kind"],
    )
    for kind in sorted(set(KINDS.values())):
        deleted.add_metric([kind], stats.deleted.get(kind, 0))
    yield deleted
    yield CounterMetricFamily(
        PREFIX + "retention_runs", "Runs of the retention job in this process.", value=stats.runs
    )
    last = _gauge(
        "retention_last_run_timestamp_seconds",
        "When the retention job last finished a run (no sample: not yet).",
    )
    duration = _gauge(
        "retention_last_run_duration_seconds", "How long the last run of the retention job took."
    )
    if stats.last_run is not None and stats.last_duration is not None:
        last.add_metric([], stats.last_run)
        duration.add_metric([], stats.last_duration)
    yield last
    yield duration


def _gauge(
    name: str, documentation: str, value: float | None = None, labels: list[str] | None = None
) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, documentation, value=value, labels=labels)


class Metrics:
    """The metrics of one app: its own registry, the request counters, the scrape reading."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ("route", "method", "status")
        self._requests = Counter(
            PREFIX + "http_requests",
            "HTTP requests answered, by route template, method and status.",
            labels,
            registry=self.registry,
        )
        self._latency = Histogram(
            PREFIX + "http_request_duration_seconds",
            "Time to answer an HTTP request, by route template, method and status.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._reading = _ReadingCollector()
        self.registry.register(self._reading)

    def observe(self, request: web.Request, status: int, seconds: float) -> None:
        """Count one answered request."""
        route = route_pattern(request)
        route = UNMATCHED if route == NO_ROUTE else route
        method = request.method if request.method in METHODS else OTHER_METHOD
        labels = (route, method, str(status))
        self._requests.labels(*labels).inc()
        self._latency.labels(*labels).observe(max(seconds, 0.0))

    def render(self, reading: Reading) -> bytes:
        """The text exposition of every metric, with ``reading`` for the scraped ones."""
        self._reading.reading = reading
        try:
            return generate_latest(self.registry)
        finally:
            self._reading.reading = None


METRICS = web.AppKey("schakel_metrics", Metrics)


# -- the route ---------------------------------------------------------------------------


def may_scrape(request: web.Request) -> bool:
    """Whether the TCP peer (never a forwarded address) is in ``metrics_from``."""
    try:
        peer = ipaddress.ip_address(request.remote or "")
    except ValueError:
        return False
    return peer in services(request).config.metrics_from


async def get_metrics(request: web.Request) -> web.Response:
    if not may_scrape(request):
        raise NotFound()
    parse_query(request.query, NONE)
    reading = await read_metrics(request)
    body = request.app[METRICS].render(reading)
    return web.Response(
        body=body, headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"}
    )


async def other_method(request: web.Request) -> web.Response:
    """Any method but GET: 405 to a scraper, the unknown route's 404 to anyone else."""
    if not may_scrape(request):
        raise NotFound()
    raise MethodNotAllowed(frozenset({"GET"}))


async def read_metrics(request: web.Request) -> Reading:
    s = services(request)
    store, notifier = s.store, s.notifier
    audit_size = await store.audit_size()
    head = await store.tree_head(s.config.network)
    escalations, open_referrals = await store.step_counts()
    return Reading(
        queue_depth=store.queue_depth,
        subscriptions=notifier.subscriber_total(),
        listening=notifier.listening,
        audit_size=audit_size,
        head_size=None if head is None else head.size,
        head_age=None if head is None else max(0, s.clock() - head.time),
        escalations=escalations,
        open_referrals=open_referrals,
        retention=None if s.retention is None else s.retention.stats,
    )


def add_metrics_route(app: web.Application, metrics: Metrics) -> None:
    """``GET /metrics`` (and every other method, refused) for ``metrics``."""
    app[METRICS] = metrics
    app.add_routes(
        [
            web.get(METRICS_PATH, get_metrics, allow_head=False),
            web.route("*", METRICS_PATH, other_method),
        ]
    )
