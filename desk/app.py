"""The desk's aiohttp application, and ``serve``: unlock, receive, listen.

``serve`` opens the organisation's keys (the passphrase was read at the edge), the
desk's database and the local state, starts one task that keeps the hub's WebSocket and
receives what arrives (announcing it to open inboxes) and one that sends what waits in
the outbox (written while the hub was away) every ``outbox_retry`` seconds, and serves
the pages. Nothing here renders or decides: the pages live in :mod:`desk.login`,
:mod:`desk.inbox`, :mod:`desk.signals`, :mod:`desk.pages`, :mod:`desk.casework` and
:mod:`desk.privacy`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from importlib import resources
from pathlib import Path

from aiohttp import web

from desk import casework, comensha, inbox, login, overview, pages, privacy, reports, signals
from desk.accounts import Accounts
from desk.adapter import Library, LibraryError, problem_status, retention_policy
from desk.casebook import CaseBook
from desk.config import DeskConfig
from desk.factors import Sealer, hash_password
from desk.retention import erase_forever
from desk.sessions import Sessions
from desk.web import (
    MAX_FORM_BYTES,
    SERVICES,
    TEMPLATES,
    Handler,
    Services,
    csrf_middleware,
    environments,
    render,
    security_headers,
    sessions_middleware,
)

log = logging.getLogger("schakel.desk")
RECEIVER: web.AppKey[asyncio.Task[None]] = web.AppKey("receiver", asyncio.Task)
SHUTDOWN_SECONDS = 2.0
OUTBOX_SENDER: web.AppKey[asyncio.Task[None]] = web.AppKey("outbox_sender", asyncio.Task)
RETENTION: web.AppKey[asyncio.Task[None]] = web.AppKey("retention", asyncio.Task)


def package_dir(name: str) -> Path:
    return Path(str(resources.files("desk").joinpath(name)))


def make_services(
    config: DeskConfig,
    library: Library,
    *,
    clock: Callable[[], float] = time.time,
) -> Services:
    accounts = Accounts(config.database_path)
    sealer = Sealer.for_signing_key(library.keys.signing_key, library.org)
    return Services(
        config=config,
        accounts=accounts,
        sessions=Sessions(idle=config.idle_timeout, absolute=config.absolute_timeout, clock=clock),
        library=library,
        sealer=sealer,
        casebook=CaseBook(config.database_path, sealer, library.case_label_keys),
        clock=clock,
        dummy_hash=hash_password("not a password of anyone", config.password_cost),
    )


async def _not_found(request: web.Request) -> web.StreamResponse:
    return render(request, "problem.html", status=404, problem="not-found")


@web.middleware
async def friendly_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """404 and 405 as a page in the person's language; 500 without details."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return render(request, "problem.html", status=404, problem="not-found")
    except web.HTTPMethodNotAllowed:
        return render(request, "problem.html", status=405, problem="not-found")
    except web.HTTPException:
        raise
    except LibraryError as exc:  # a page that could not do without the hub or the library
        log.warning("desk: a page failed: %s", exc.category)
        return render(request, "problem.html", status=problem_status(exc), problem=exc.category)
    except Exception:
        log.exception("desk: unexpected error on %s", request.method)
        return render(request, "problem.html", status=500, problem="internal")


def make_app(services: Services, *, receive: bool = True) -> web.Application:
    app = web.Application(
        middlewares=[security_headers, sessions_middleware, friendly_errors, csrf_middleware],
        client_max_size=MAX_FORM_BYTES,
    )
    app[SERVICES] = services
    app[TEMPLATES] = environments(package_dir("templates"))
    app.add_routes(
        login.routes()
        + inbox.routes()
        + signals.routes()
        + pages.routes()
        + casework.routes()
        + overview.routes()
        + comensha.routes()
        + privacy.routes()
        + reports.routes()
    )
    app.router.add_static("/static/", package_dir("static"), follow_symlinks=False)
    if receive:
        app.cleanup_ctx.append(_receiver)
        app.cleanup_ctx.append(_outbox_sender)
        app.cleanup_ctx.append(_retention)
    return app


async def _receiver(app: web.Application) -> AsyncIterator[None]:
    services = app[SERVICES]

    async def announce(count: int) -> None:
        if count:
            services.broadcast.publish("changed")

    task = asyncio.create_task(services.library.receive_forever(announce))
    app[RECEIVER] = task
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _outbox_sender(app: web.Application) -> AsyncIterator[None]:
    """What waits in the outbox (the hub was away) goes out by itself when the hub is back."""
    services = app[SERVICES]

    async def announce(count: int) -> None:
        services.broadcast.publish("changed")

    task = asyncio.create_task(
        services.library.send_outbox_forever(announce, every=services.config.outbox_retry)
    )
    app[OUTBOX_SENDER] = task
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _retention(app: web.Application) -> AsyncIterator[None]:
    """Cases past their retention period are erased by themselves (desk.retention)."""
    services = app[SERVICES]

    async def announce(count: int) -> None:
        services.broadcast.publish("changed")

    config = services.config
    policy = retention_policy(
        config.retention_kind, config.retention_case_days, config.retention_grace_days
    )
    task = asyncio.create_task(
        erase_forever(
            services.library,
            services.casebook,
            policy,
            every=config.retention_every,
            clock=services.clock,
            announce=announce,
        )
    )
    app[RETENTION] = task
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@contextlib.asynccontextmanager
async def running_desk(
    config: DeskConfig,
    passphrase: bytes,
    *,
    hub_ssl: object = None,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[Services]:
    """A desk listening on ``config.host:port`` until the block ends."""
    library = Library.open(
        config.home,
        config.hub_url,
        passphrase,
        service_user=config.service_user,
        ssl=hub_ssl,  # type: ignore[arg-type]
        clock=clock,
    )
    async with library:
        services = make_services(config, library, clock=clock)
        try:
            # Open live pages (server-sent events) never end by themselves: at stop they
            # get a moment, not aiohttp's minute, so the desk stops when asked to.
            runner = web.AppRunner(
                make_app(services), access_log=None, shutdown_timeout=SHUTDOWN_SECONDS
            )
            await runner.setup()
            try:
                await web.TCPSite(runner, config.host, config.port).start()
                log.info("desk listening on port %d", config.port)
                yield services
            finally:
                await runner.cleanup()
        finally:
            services.close()


async def serve(config: DeskConfig, passphrase: bytes, *, hub_ssl: object = None) -> None:
    """Unlock the keys, open everything, and serve until cancelled."""
    async with running_desk(config, passphrase, hub_ssl=hub_ssl):
        await asyncio.Event().wait()
