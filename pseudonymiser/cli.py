"""``schakel pseudonymiser``: the command line of a pseudonymisation service's operator.

::

    schakel pseudonymiser init --dir oprf-keys --network region-west --service oprf-a --share 1
    schakel pseudonymiser import-statement statement.json --root root.pem --dir oprf-keys
    schakel pseudonymiser migrate --database-url sqlite+aiosqlite:///var/pseudonymiser.db
    schakel pseudonymiser serve --dir oprf-keys [--host 127.0.0.1] [--port 8444]
    schakel pseudonymiser usage [--days 7] [--org police-west]

The passphrase of the key directory comes from ``--passphrase-fd N``, else the
environment variable named by ``--passphrase-env`` (default ``SCHAKEL_PASSPHRASE``),
else a prompt. Other settings come from ``SCHAKEL_PSEUDONYMISER_*`` (see
:mod:`pseudonymiser.config`), which the options override. Errors are one line on
stderr and exit code 1.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from sqlalchemy.exc import SQLAlchemyError

from keys.errors import KeysError
from keys.keyfile import kdf_params_from_env, read_bounded
from keys.passphrase import get_passphrase
from keys.pseudonymiser import ServiceKeys
from protocol.certificate import MAX_CERT_BYTES
from protocol.encoding import b64e, loads_strict
from protocol.errors import ProtocolError
from protocol.oprfkeys import OprfKeyStatement
from protocol.types import parse_network_id, parse_service_name
from pseudonymiser.config import DEFAULT_DATABASE_URL, ENV_PREFIX, ConfigError, ServiceConfig
from pseudonymiser.store import DAY, Store

DEFAULT_DIR = "pseudonymiser-keys"
F = TypeVar("F", bound=Callable[..., Any])


class _Group(click.Group):
    """Turns the errors of keys, protocol, config and the database into one line, exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (KeysError, ProtocolError, ConfigError) as exc:
            _fail(str(exc))
        except OSError as exc:
            _fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))
        except SQLAlchemyError as exc:
            _fail(f"database error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")


def _fail(message: str) -> NoReturn:
    raise click.ClickException(message.replace("\n", " "))


def _dir_option(func: F) -> F:
    return click.option(
        "--dir",
        "directory",
        envvar=ENV_PREFIX + "DIR",
        default=DEFAULT_DIR,
        show_default=True,
        type=click.Path(file_okay=False, path_type=Path),
        help=f"The service's key directory (env {ENV_PREFIX}DIR).",
    )(func)


def _passphrase_options(func: F) -> F:
    func = click.option(
        "--passphrase-fd", type=click.IntRange(min=0), metavar="N",
        help="Read the passphrase as one line from file descriptor N (wins over the env).",
    )(func)  # fmt: skip
    return click.option(
        "--passphrase-env", default="SCHAKEL_PASSPHRASE", show_default=True, metavar="NAME",
        help="Environment variable that holds the passphrase.",
    )(func)  # fmt: skip


def _database_option(func: F) -> F:
    return click.option(
        "--database-url", metavar="URL",
        help=f"SQLAlchemy async URL (env {ENV_PREFIX}DATABASE_URL; "
        f"default {DEFAULT_DATABASE_URL}).",
    )(func)  # fmt: skip


def _passphrase(env: str, fd: int | None, *, confirm: bool = False) -> bytes:
    return get_passphrase(env_var=env, fd=fd, prompt="Service key passphrase: ", confirm=confirm)


def _url(database_url: str | None) -> str:
    return database_url or os.environ.get(ENV_PREFIX + "DATABASE_URL", DEFAULT_DATABASE_URL)


@click.group("pseudonymiser", cls=_Group)
def pseudonymiser() -> None:
    """A pseudonymisation service: one share of the network's split OPRF key.

    Two services, run by two different parties and never by the hub's operator, each
    hold one share; no one holds the whole key.
    """


@pseudonymiser.command()
@_dir_option
@click.option("--network", required=True, help="The network id.")
@click.option("--service", "service_name", required=True, help="This service's name (a-z, 0-9, -).")
@click.option("--share", required=True, type=click.IntRange(1, 2), help="Share 1 or share 2.")
@_passphrase_options
def init(
    directory: Path,
    network: str,
    service_name: str,
    share: int,
    passphrase_env: str,
    passphrase_fd: int | None,
) -> None:
    """Generate a key share and its key request in a new, empty directory."""
    params = kdf_params_from_env(os.environ)
    passphrase = _passphrase(passphrase_env, passphrase_fd, confirm=True)
    keys = ServiceKeys.create(
        directory, parse_network_id(network), parse_service_name(service_name), share,
        passphrase, params, allow_weak=params.weak,
    )  # fmt: skip
    click.echo(f"created key share {share} of service {keys.service} in {keys.directory}")
    click.echo(f"key request: {keys.directory / 'request.json'} (send it to the authority)")
    click.echo(f"public key: {b64e(keys.public_key)} (compare it with the authority)")


@pseudonymiser.command("import-statement")
@click.argument("statement", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--root", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The network root certificate (PEM) to pin.",
)  # fmt: skip
@_dir_option
@_passphrase_options
def import_statement(
    statement: Path, root: Path, directory: Path, passphrase_env: str, passphrase_fd: int | None
) -> None:
    """Pin the network root and keep the authority's key statement for this share."""
    keys = ServiceKeys.open(directory, _passphrase(passphrase_env, passphrase_fd))
    parsed = OprfKeyStatement.from_wire(loads_strict(read_bounded(statement, 16 * 1024)))
    keys.import_statement(parsed, read_bounded(root, 2 * MAX_CERT_BYTES), now=int(time.time()))
    click.echo(
        f"share {parsed.share} of pseudonym version {parsed.version} certified until "
        f"{parsed.not_after}; root {keys.root.fingerprint}"
    )


@pseudonymiser.command()
@_database_option
def migrate(database_url: str | None) -> None:
    """Create the service's tables (SQLite or PostgreSQL)."""
    url = _url(database_url)

    async def run() -> int | None:
        store = Store(url)
        try:
            await store.migrate()
            return await store.schema_version()
        finally:
            await store.close()

    click.echo(f"database schema version {asyncio.run(run())}")


@pseudonymiser.command()
@_dir_option
@click.option("--host", help=f"Address to listen on (env {ENV_PREFIX}HOST; default 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), help=f"Port (env {ENV_PREFIX}PORT; 8444).")
@_database_option
@_passphrase_options
@click.option("--log-level", default="INFO", show_default=True, help="Logging level.")
@click.option(
    "--migrate/--no-migrate", default=True, envvar=ENV_PREFIX + "MIGRATE", show_default=True,
    help="Create the tables at startup (replicas: --no-migrate after `migrate`).",
)  # fmt: skip
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
    """Run the service until SIGINT or SIGTERM."""
    from pseudonymiser.logs import configure_logging
    from pseudonymiser.service import KeyShare
    from pseudonymiser.web import info_line
    from pseudonymiser.web import serve as run

    keys = ServiceKeys.open(directory, _passphrase(passphrase_env, passphrase_fd))
    statement = keys.statement
    if statement is None:
        _fail(f"{directory} holds no key statement yet: import the authority's (import-statement)")
    config = ServiceConfig.from_env(
        os.environ, network=keys.network, service=keys.service, root_der=keys.root.der
    )
    overrides: dict[str, Any] = {"host": host, "port": port, "database_url": database_url}
    config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})
    configure_logging(log_level.upper(), stream=sys.stderr)
    click.echo(info_line(config), err=True)
    shares = {statement.version: KeyShare(keys.key, statement)}
    asyncio.run(run(config, shares, migrate=migrate))


@pseudonymiser.command()
@_database_option
@click.option(
    "--days", default=7, show_default=True, type=click.IntRange(1, 3660), help="How far back."
)
@click.option("--org", help="Only this organisation.")
def usage(database_url: str | None, days: int, org: str | None) -> None:
    """How many evaluations each organisation asked for, per UTC day (never what)."""
    url = _url(database_url)
    since = int(time.time()) // DAY * DAY - (days - 1) * DAY

    async def run() -> list[Any]:
        store = Store(url)
        try:
            return await store.usage(since=since, org=org)
        finally:
            await store.close()

    click.echo("day         organisation                      requests  evaluations  refused")
    for row in asyncio.run(run()):
        day = datetime.fromtimestamp(row.day, UTC).date().isoformat()
        click.echo(
            f"{day}  {row.org:<32}  {row.requests:>8}  {row.evaluations:>11}  {row.refused:>7}"
        )
