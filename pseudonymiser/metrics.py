"""Prometheus metrics of a pseudonymisation service (``GET /metrics``).

Each application has its own registry. No label ever holds an organisation, an element,
a key or a certificate: the metrics say how the service is doing, not whom it serves
(the audit table says that, and only as counts).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

PREFIX = "schakel_pseudonymiser_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
REASONS = ("malformed", "unauthorized", "replayed", "rate-limited", "too-large", "other")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            PREFIX + "requests",
            "Requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            PREFIX + "request_seconds",
            "Time to answer a request, by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.evaluations = Counter(
            PREFIX + "evaluations", "Blinded elements evaluated.", registry=self.registry
        )
        self.evaluation_seconds = Histogram(
            PREFIX + "evaluation_seconds",
            "Time to evaluate one batch and prove it.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.refusals = Counter(
            PREFIX + "refusals",
            "Evaluation requests refused, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.crl_number = Gauge(
            PREFIX + "crl_number", "Number of the revocation list held (-1: none).",
            registry=self.registry,
        )  # fmt: skip
        self.crl_age = Gauge(
            PREFIX + "crl_age_seconds",
            "Seconds since the revocation list held was issued (-1: none).",
            registry=self.registry,
        )

    def refused(self, slug: str) -> None:
        self.refusals.labels(slug if slug in REASONS else "other").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
