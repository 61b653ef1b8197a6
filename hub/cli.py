"""``schakel hub``: the hub operator's command line.

::

    schakel hub init --dir hubkeys --network region-west   # keys + enrolment request
    schakel hub import-cert cert.pem --root root.pem --dir hubkeys
    schakel hub migrate --database-url sqlite+aiosqlite:///var/hub.db
    schakel hub serve --dir hubkeys --host 127.0.0.1 --port 8443
    schakel hub serve --no-migrate ...   # replicas: `schakel hub migrate` ran before
    schakel hub retention --dry-run      # what the retention policy lets go now

The passphrase of the key directory comes from ``--passphrase-fd N``, else
the environment variable named by ``--passphrase-env`` (default
``SCHAKEL_PASSPHRASE``), else a prompt; never from an argument. Other
settings come from ``SCHAKEL_HUB_*`` variables (see :mod:`hub.config`),
which the options override. Errors are one line on stderr and exit code 1.
``SCHAKEL_WEAK_KDF=1`` (tests and the demo) lets ``init`` use cheap key-file KDF costs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from hub.config import DEFAULT_DATABASE_URL, ConfigError, HubConfig, check_database_url
from hub.errors import StartError
from hub.logs import configure_logging
from hub.store import Store, head_revision
from keys.errors import KeysError
from keys.hub import HubKeys
from keys.keyfile import kdf_params_from_env, read_bounded
from keys.passphrase import get_passphrase
from protocol.certificate import MAX_CERT_BYTES
from protocol.errors import ProtocolError
from protocol.types import NetworkId, parse_network_id

DEFAULT_DIR = "hub-keys"
F = TypeVar("F", bound=Callable[..., Any])


class _Group(click.Group):
    """Turns the errors of keys, protocol and config into one line and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (KeysError, ProtocolError, ConfigError, StartError) as exc:
            _fail(str(exc))
        except OSError as exc:
            _fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))
        except SQLAlchemyError as exc:
            _fail(f"database error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")


def _fail(message: str) -> NoReturn:
    raise click.ClickException(message.replace("\n", " "))


def _now() -> int:
    return int(time.time())


def _dir_option(func: F) -> F:
    return click.option(
        "--dir",
        "directory",
        envvar="SCHAKEL_HUB_DIR",
        default=DEFAULT_DIR,
        show_default=True,
        type=click.Path(file_okay=False, path_type=Path),
        help="The hub's key directory (env SCHAKEL_HUB_DIR).",
    )(func)


def _passphrase_options(func: F) -> F:
    func = click.option(
        "--passphrase-fd",
        type=click.IntRange(min=0),
        metavar="N",
        help="Read the passphrase as one line from file descriptor N (wins over the env).",
    )(func)
    return click.option(
        "--passphrase-env",
        default="SCHAKEL_PASSPHRASE",
        show_default=True,
        metavar="NAME",
        help="Environment variable that holds the passphrase.",
    )(func)


def _database_option(func: F) -> F:
    return click.option(
        "--database-url",
        metavar="URL",
        help="SQLAlchemy async URL (env SCHAKEL_HUB_DATABASE_URL; "
        f"default {DEFAULT_DATABASE_URL}).",
    )(func)


def _passphrase(env: str, fd: int | None, *, confirm: bool = False) -> bytes:
    return get_passphrase(env_var=env, fd=fd, prompt="Hub key passphrase: ", confirm=confirm)


def _network_option(ctx: click.Context, param: click.Parameter, value: str) -> NetworkId:
    try:
        return parse_network_id(value)
    except ProtocolError as exc:
        raise click.BadParameter(str(exc)) from exc


def _read_pem(path: Path) -> bytes:
    return read_bounded(path, 2 * MAX_CERT_BYTES)


@click.group("hub", cls=_Group)
def hub() -> None:
    """The hub operator: keys, database and the hub service.

    The hub relays ciphertext; it never holds a KEM key or a linking key.
    """


@hub.command()
@_dir_option
@click.option("--network", required=True, callback=_network_option, help="The network id.")
@_passphrase_options
def init(
    directory: Path, network: NetworkId, passphrase_env: str, passphrase_fd: int | None
) -> None:
    """Create the hub's keys and its enrolment request in a new, empty directory."""
    params = kdf_params_from_env(os.environ)
    weak = params.weak
    passphrase = _passphrase(passphrase_env, passphrase_fd, confirm=True)
    keys = HubKeys.create(directory, network, passphrase, params, allow_weak=weak)
    click.echo(f"created the hub's keys for network {network} in {keys.directory}")
    click.echo(f"enrolment request: {keys.directory / 'request.pem'} (send it to the authority)")
    click.echo(f"key fingerprint: {keys.key_fingerprint} (compare it with the authority)")


@hub.command("import-cert")
@click.argument("certificate", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--root",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The network root certificate (PEM) to pin.",
)
@_dir_option
@_passphrase_options
def import_cert(
    certificate: Path,
    root: Path,
    directory: Path,
    passphrase_env: str,
    passphrase_fd: int | None,
) -> None:
    """Pin the network root and store the hub certificate the authority issued."""
    keys = HubKeys.open(directory, _passphrase(passphrase_env, passphrase_fd))
    now = _now()
    pinned = keys.pin_root(_read_pem(root), now=now)
    cert = keys.import_certificate(_read_pem(certificate), now=now)
    click.echo(f"pinned root {pinned.fingerprint} of network {pinned.network}")
    click.echo(f"hub certificate {cert.fingerprint} valid until {cert.not_after}")


@hub.command()
@_database_option
def migrate(database_url: str | None) -> None:
    """Create or upgrade the database schema to the newest migration."""
    url = database_url or os.environ.get("SCHAKEL_HUB_DATABASE_URL", DEFAULT_DATABASE_URL)
    check_database_url(url)
    _ensure_sqlite_dir(url)
    revision = asyncio.run(_migrate(url))
    click.echo(f"database is at revision {revision}")


async def _migrate(url: str) -> str | None:
    store = Store(url)
    try:
        await store.migrate()
        return await store.revision()
    finally:
        await store.close()


def _ensure_sqlite_dir(url: str) -> None:
    prefix = "sqlite+aiosqlite:///"
    if url.startswith(prefix) and url[len(prefix) :] not in ("", ":memory:"):
        Path(url[len(prefix) :]).parent.mkdir(parents=True, exist_ok=True)


@hub.command()
@_dir_option
@click.option("--host", help="Address to listen on (env SCHAKEL_HUB_HOST; default 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (env SCHAKEL_HUB_PORT; 8443).")
@_database_option
@_passphrase_options
@click.option("--log-level", default="INFO", show_default=True, help="Logging level.")
@click.option(
    "--migrate/--no-migrate",
    default=True,
    envvar="SCHAKEL_HUB_MIGRATE",
    show_default=True,
    help="Migrate the database at startup (env SCHAKEL_HUB_MIGRATE=0 for --no-migrate). "
    "Replicas take --no-migrate, so that they never race to migrate: they then refuse to "
    "start unless the database is at the newest revision.",
)
def serve(
    directory: Path,
    host: str | None,
    port: int | None,
    database_url: str | None,
    passphrase_env: str,
    passphrase_fd: int | None,
    log_level: str,
    migrate: bool,
) -> None:
    """Migrate the database (unless --no-migrate) and run the hub until SIGINT or SIGTERM."""
    from hub.app import serve as run  # aiohttp is needed only here

    keys = HubKeys.open(directory, _passphrase(passphrase_env, passphrase_fd))
    cert = keys.certificate
    config = HubConfig.from_env(os.environ, network=keys.network, root_der=keys.root.der)
    overrides: dict[str, Any] = {"host": host, "port": port, "database_url": database_url}
    config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})
    if migrate:
        _ensure_sqlite_dir(config.database_url)
    else:
        asyncio.run(_require_newest_revision(config.database_url))
    configure_logging(log_level.upper(), stream=sys.stderr)
    click.echo(
        json.dumps({"listening": f"{config.host}:{config.port}", "network": config.network}),
        err=True,
    )
    asyncio.run(
        run(
            config,
            token_key_pem=keys.token_key_pem,
            hub_certificate_der=None if cert is None else cert.der,
            log_signing_key=None if cert is None else keys.signing_key,
            migrate=migrate,
        )
    )


def _require_existing_file(url: str) -> None:
    """Fail when a SQLite URL names no file: a maintenance command creates no database
    (nor its directory) where a mistyped path points."""
    path = sa.make_url(url).database
    local = url.startswith("sqlite") and path and not path.startswith(("file:", ":memory:"))
    if local and not Path(str(path)).is_file():
        _fail(f"no database at {path}: check --database-url (or SCHAKEL_HUB_DATABASE_URL)")


async def _require_newest_revision(url: str) -> None:
    """Fail unless the database is at the newest revision this code knows."""
    store = Store(url)
    try:
        revision = await store.revision()
    finally:
        await store.close()
    if revision != head_revision():
        at = "has no schema" if revision is None else f"is at revision {revision}"
        _fail(f"the database {at}, not {head_revision()}: run `schakel hub migrate` first")


@hub.command()
@_database_option
@click.option("--dry-run", is_flag=True, help="Say what each phase would delete; delete nothing.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
def retention(database_url: str | None, dry_run: bool, as_json: bool) -> None:
    """Run one pass of the retention job now (the hub runs it every hour by itself).

    Under the retention policy the authority published: envelopes acknowledged by every
    recipient past the grace period, envelopes past the maximum age, cases past their
    period, access-log personal fields past the access-log period. Each batch is its own
    transaction with its own access-log entry; a pass cut off is finished by the next.
    """
    url = database_url or os.environ.get("SCHAKEL_HUB_DATABASE_URL", DEFAULT_DATABASE_URL)
    check_database_url(url)
    _require_existing_file(url)
    asyncio.run(_require_newest_revision(url))
    data, lines = asyncio.run(_retention(url, dry_run=dry_run))
    click.echo(json.dumps(data, indent=2, sort_keys=True) if as_json else "\n".join(lines))


_NO_POLICY = (
    "the hub holds no retention policy, so nothing is deleted: the authority signs one "
    "(`schakel authority retention-policy`) and publishes it (`schakel authority publish`)"
)


async def _retention(url: str, *, dry_run: bool) -> tuple[dict[str, Any], list[str]]:
    from hub.retention import PHASES, RetentionJob
    from hub.retention import dry_run as plan

    store = Store(url)
    try:
        if dry_run:
            planned = await plan(store, _now())
            if planned is None:
                _fail(_NO_POLICY)
            policy, due = planned
            data = {
                "policy": policy.number,
                "dry_run": True,
                "due": {p: {"count": d.count, "oldest": d.oldest} for p, d in due.items()},
            }
            lines = [f"retention policy {policy.number}; would delete now (nothing deleted):"]
            lines += [f"  {p:<13} {d.count:>8}  {_oldest(d.oldest)}" for p, d in due.items()]
            return data, lines
        await store.start()
        done = await RetentionJob(store, _now, interval=1).run_once()
        if done.policy is None:
            _fail(_NO_POLICY)
        data = {"policy": done.policy, "deleted": done.deleted, "batches": done.batches}
        lines = [f"retention policy {done.policy}; deleted in {done.batches} batches:"]
        lines += [f"  {phase:<13} {done.deleted[phase]:>8}" for phase in PHASES]
        return data, lines
    finally:
        await store.close()


def _oldest(seconds: int | None) -> str:
    if seconds is None:
        return ""
    return "oldest " + time.strftime("%Y-%m-%d", time.gmtime(seconds))
