"""The hub's aiohttp application, and running it.

``make_app`` wires one :class:`~hub.http.common.Services` together: store (migrated
and its writer started on startup, drained and closed on cleanup), token
service, notifier and rate limits, behind the access-log, metrics and problem
middlewares. ``serve`` runs it with explicit HTTP parser bounds and a
graceful shutdown.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import time
from collections.abc import AsyncIterator
from importlib import resources

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hub.accesslog.heads import HeadSigner
from hub.checkpoints import WitnessSubmitter
from hub.config import Clock, HubConfig, Rng, system_clock
from hub.directory import TrustCache
from hub.errors import StartError
from hub.escalation import Escalator
from hub.http import (
    accesslog,
    auth,
    cases,
    checkpoints,
    directory,
    operations,
    relay,
    retention,
    ws,
)
from hub.http.common import SERVICES, Services
from hub.logs import ACCESS_LOGGER, access_log_middleware
from hub.metrics import Metrics, add_metrics_route
from hub.notify import Notifier, notifier_for
from hub.problems import problem_middleware
from hub.ratelimit import TokenBucket
from hub.retention import RetentionJob
from hub.server import HubRunner, connection_cap, hub_server_kwargs
from hub.store import Store
from hub.tokens import TokenService
from protocol.certificate import Certificate, load_root, verify_certificate

log = logging.getLogger("hub")


def start_failure(config: HubConfig, exc: OSError) -> StartError:
    """``exc`` (a port in use, a database file others can read, ...) as a StartError."""
    cause = exc.strerror or str(exc) or type(exc).__name__
    if exc.strerror and exc.filename:
        cause = f"{exc.filename}: {cause}"
    return StartError(f"cannot start the hub on {config.host}:{config.port}: {cause}")


def _openapi() -> bytes | None:
    try:
        return resources.files("hub").joinpath("openapi.json").read_bytes()
    except (FileNotFoundError, OSError):
        return None


def _hub_certificate(config: HubConfig, der: bytes | None, now: int) -> Certificate:
    """The hub certificate, verified against the pinned root (ValueError otherwise)."""
    if der is None:
        raise ValueError("a log-signing key needs the hub certificate that certifies it")
    return verify_certificate(der, load_root(config.root_der, now=now), now=now, crl=None)


def make_app(
    config: HubConfig,
    *,
    token_key_pem: bytes,
    hub_certificate_der: bytes | None = None,
    log_signing_key: Ed25519PrivateKey | None = None,
    clock: Clock | None = None,
    rng: Rng | None = None,
    notifier: Notifier | None = None,
    migrate: bool = True,
    sign_heads: bool = True,
    escalate: bool = True,
    retain: bool = True,
) -> web.Application:
    """The hub application; the database is migrated (if ``migrate``) on startup.

    With ``log_signing_key`` (the key ``hub_certificate_der`` certifies, role ``hub``)
    the hub signs tree heads of its access log, every ``tree_head_interval`` seconds in
    a background task unless ``sign_heads`` is false (tests tick it by hand), and on
    request; without it the routes that need a head answer 503. With a log key and
    ``config.witness_urls``, each new head is submitted to those always-on witnesses
    (:class:`hub.checkpoints.WitnessSubmitter`, started with the head signer; tests tick
    ``Services.witnesses`` by hand). Overdue referrals are
    escalated every ``escalation_interval`` seconds unless ``escalate`` is false (tests
    call ``Services.escalator`` by hand), and the retention job runs every
    ``retention_interval`` seconds unless ``retain`` is false (tests run
    ``Services.retention`` by hand).
    """
    now = clock or system_clock
    load_root(config.root_der, now=now())  # refuse to start with a bad or expired root
    limits = config.limits
    limiter_clock = clock or time.monotonic
    notifier = notifier or notifier_for(config.database_url)
    store = Store(
        config.database_url,
        max_queue=limits.write_queue,
        max_batch=limits.write_batch,
        logger=logging.getLogger("hub.writer"),
        notices=notifier,
    )
    heads = None
    if log_signing_key is not None:
        heads = HeadSigner(
            store,
            now,
            key=log_signing_key,
            certificate=_hub_certificate(config, hub_certificate_der, now()),
            interval=limits.tree_head_interval,
            logger=logging.getLogger("hub.treeheads"),
        )
    trust_cache = TrustCache(config.root_der, listening=lambda: notifier.listening)
    notifier.watch_directory(trust_cache.changed)  # a change here or on another replica
    witnesses = None
    if heads is not None and config.witness_urls:
        witnesses = WitnessSubmitter(
            store, now, config, trust_cache, heads, logger=logging.getLogger("hub.witnesses")
        )
    escalator = Escalator(
        store,
        now,
        limits=config.escalation,
        interval=limits.escalation_interval,
        logger=logging.getLogger("hub.escalation"),
    )
    retention_job = RetentionJob(
        store, now, interval=limits.retention_interval, logger=logging.getLogger("hub.retention")
    )
    services = Services(
        config=config,
        clock=now,
        rng=rng or os.urandom,
        store=store,
        trust_cache=trust_cache,
        tokens=TokenService(
            token_key_pem,
            issuer=config.issuer,
            audience=config.audience,
            lifetime=limits.token_lifetime,
        ),
        notifier=notifier,
        org_limits=TokenBucket(limits.rate_per_sec, limits.burst, clock=limiter_clock),
        address_limits=TokenBucket(
            limits.address_rate_per_sec, limits.address_burst, clock=limiter_clock
        ),
        hub_certificate_der=hub_certificate_der,
        openapi=_openapi(),
        heads=heads,
        escalator=escalator,
        witnesses=witnesses,
        retention=retention_job,
    )
    metrics = Metrics()
    app = web.Application(
        middlewares=[
            access_log_middleware(logging.getLogger(ACCESS_LOGGER), observe=metrics.observe),
            problem_middleware(logging.getLogger("hub.errors")),
        ],
        client_max_size=limits.client_max_size,
    )
    app[SERVICES] = services

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        store = app[SERVICES].store
        if migrate:
            await store.migrate()
        await notifier.start()
        await store.start()
        if heads is not None and sign_heads:
            heads.start()
        if escalate:
            escalator.start()
        if witnesses is not None and sign_heads:
            witnesses.start()
        if retain:
            retention_job.start()
        yield
        await retention_job.stop()
        if witnesses is not None:
            await witnesses.stop()
        await escalator.stop()
        if heads is not None:
            await heads.stop()
        await store.close()
        await notifier.stop()

    app.cleanup_ctx.append(lifecycle)
    for routes in (
        auth,
        operations,
        directory,
        relay,
        ws,
        accesslog,
        cases,
        checkpoints,
        retention,
    ):
        routes.add_routes(app)
    add_metrics_route(app, metrics)
    return app


async def serve(
    config: HubConfig,
    *,
    token_key_pem: bytes,
    hub_certificate_der: bytes | None = None,
    log_signing_key: Ed25519PrivateKey | None = None,
    stop: asyncio.Event | None = None,
    migrate: bool = True,
    clock: Clock | None = None,
) -> None:
    """Run the hub on ``config.host:config.port`` until SIGINT/SIGTERM (or ``stop`` is set).

    ``migrate=False`` leaves the schema alone (replicas behind ``schakel hub migrate``).
    A hub that can not start (its port taken, a database file others can read) raises
    :class:`StartError`. While it listens, the objects made before are left out of the
    garbage collector's passes (``gc.freeze``). On stopping, every WebSocket is closed
    with 1001 "hub stopped" (:func:`hub.http.ws.close_sockets`), requests in flight may
    finish, and "hub stopped" is logged.
    """
    try:
        app = make_app(
            config,
            token_key_pem=token_key_pem,
            hub_certificate_der=hub_certificate_der,
            log_signing_key=log_signing_key,
            migrate=migrate,
            clock=clock,
        )
    except OSError as exc:
        raise start_failure(config, exc) from None
    runner = HubRunner(
        app, cap=connection_cap(config), handle_signals=False, **hub_server_kwargs(config)
    )
    await runner.setup()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        site = web.TCPSite(runner, config.host, config.port, backlog=1024)
        try:
            await site.start()
        except OSError as exc:
            raise start_failure(config, exc) from None
        log.info("hub listening")
        # What the hub made to start (modules, the application, the engines) stays out
        # of the collector's full collections, which walked all of it with the event loop
        # stopped: 100-200 ms, a few times a minute under load (make bench-accept).
        gc.freeze()
        await stop.wait()
        log.info("hub stopping")
    finally:
        gc.unfreeze()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await runner.cleanup()  # stops accepting, closes sockets, drains, then the writer
    log.info("hub stopped")
