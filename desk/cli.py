"""``schakel desk``: serve the organisation's desk, and manage its first accounts.

``serve`` unlocks the organisation's key files at start (the passphrase from a file
descriptor, a systemd credential, an environment variable, or typed) and serves the
desk's pages. ``user add/disable/enable/reset-2fa/reset-password/list`` work on the desk's
database directly, for the first administrator (and when nobody can log in); everyone
else is managed on the administrator's page. A password given here is a first password:
the person chooses their own at their next login.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from pathlib import Path

import click

from desk.accounts import ROLES, Accounts
from desk.adapter import MAX_RETENTION_DAYS, RETENTION_KINDS, LibraryError
from desk.config import DeskConfig, PasswordCost
from desk.errors import DeskError
from desk.factors import hash_password, password_problem
from keys.errors import PassphraseError
from keys.passphrase import get_passphrase

EXIT_FAILED = 2


def _home(home: Path | None) -> Path:
    if home is None:
        raise click.UsageError("say where the organisation lives: --home or SCHAKEL_HOME")
    return home


def _weak() -> bool:
    return os.environ.get("SCHAKEL_WEAK_KDF") == "1"


def _cost() -> PasswordCost:
    return PasswordCost.for_tests() if _weak() else PasswordCost.production()


@click.group("desk")
def desk() -> None:
    """The organisation's desk: the web application its people work in."""


@desk.command("serve")
@click.option(
    "--home",
    envvar="SCHAKEL_HOME",
    type=click.Path(path_type=Path, file_okay=False),
    help="The organisation's directory (keys/, state.sqlite).",
)
@click.option("--hub", "hub_url", envvar="SCHAKEL_HUB_URL", required=True, help="The hub's URL.")
@click.option(
    "--origin",
    envvar="SCHAKEL_DESK_ORIGIN",
    required=True,
    help="The desk's address as browsers see it, e.g. https://desk.police.example.",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--passphrase-env", default="SCHAKEL_PASSPHRASE", show_default=True)
@click.option("--passphrase-fd", type=int, default=None)
@click.option(
    "--passphrase-credential",
    default=None,
    help="Name of the systemd credential that holds the passphrase.",
)
@click.option(
    "--hub-ca",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Trust this CA for the hub's TLS instead of the system's.",
)
@click.option(
    "--trusted-proxy",
    multiple=True,
    help="A proxy address whose X-Forwarded-For is believed (nginx in front of the desk).",
)
@click.option("--idle-timeout", default=15 * 60, show_default=True, type=int)
@click.option("--absolute-timeout", default=8 * 3600, show_default=True, type=int)
@click.option(
    "--retention-kind",
    envvar="SCHAKEL_RETENTION_KIND",
    type=click.Choice(RETENTION_KINDS),
    default=None,
    help="The kind of organisation, whose legal retention period the desk applies "
    "(this or --retention-case-days is required: the desk erases by itself).",
)
@click.option(
    "--retention-case-days",
    envvar="SCHAKEL_RETENTION_CASE_DAYS",
    type=click.IntRange(1, MAX_RETENTION_DAYS),
    default=None,
    help="Days a closed case is kept, instead of the kind's.",
)
@click.option(
    "--retention-grace-days",
    envvar="SCHAKEL_RETENTION_GRACE_DAYS",
    type=click.IntRange(0, MAX_RETENTION_DAYS),
    default=None,
    help="Days added before a case is erased.",
)
def serve_command(
    home: Path | None,
    hub_url: str,
    origin: str,
    host: str,
    port: int,
    passphrase_env: str,
    passphrase_fd: int | None,
    passphrase_credential: str | None,
    hub_ca: Path | None,
    trusted_proxy: tuple[str, ...],
    idle_timeout: int,
    absolute_timeout: int,
    retention_kind: str | None,
    retention_case_days: int | None,
    retention_grace_days: int | None,
) -> None:
    """Unlock the organisation's keys and serve its desk."""
    from desk.app import serve

    if retention_kind is None and retention_case_days is None:
        # The desk erases cases by itself and an erasure can not be undone: the period it
        # applies is said by the operator, never a default.
        _fail(
            "say which retention period the desk applies: --retention-kind "
            "(SCHAKEL_RETENTION_KIND: " + ", ".join(RETENTION_KINDS) + ") "
            "or --retention-case-days"
        )

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        config = DeskConfig(
            home=_home(home),
            hub_url=hub_url,
            origin=origin,
            host=host,
            port=port,
            idle_timeout=idle_timeout,
            absolute_timeout=absolute_timeout,
            password_cost=_cost(),
            trusted_proxies=trusted_proxy,
            allow_weak=_weak(),
            retention_kind=retention_kind or "general",  # with --retention-case-days: custom
            retention_case_days=retention_case_days,
            retention_grace_days=retention_grace_days,
        )
        passphrase = get_passphrase(
            env_var=passphrase_env,
            fd=passphrase_fd,
            credential=passphrase_credential,
            prompt="Passphrase of the organisation keys: ",
        )
        context = ssl.create_default_context(cafile=str(hub_ca)) if hub_ca else None
        asyncio.run(serve(config, passphrase, hub_ssl=context))
    except (DeskError, PassphraseError) as exc:
        _fail(str(exc))
    except LibraryError as exc:
        _fail(f"cannot open the organisation in {home}: {exc.category}")
    except KeyboardInterrupt:
        click.echo("desk stopped")
    except OSError as exc:
        _fail(f"cannot serve the desk on {host}:{port}: {exc.strerror}")


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    raise click.exceptions.Exit(EXIT_FAILED)


@desk.group("user")
def user() -> None:
    """People at this desk (for the first administrator; then use the desk's own page)."""


_home_option = click.option(
    "--home", envvar="SCHAKEL_HOME", type=click.Path(path_type=Path, file_okay=False)
)


def _accounts(home: Path | None) -> Accounts:
    directory = _home(home)
    if not directory.is_dir():
        _fail(f"no organisation directory {directory}")
    return Accounts(directory / "desk.sqlite")


@user.command("add")
@_home_option
@click.argument("person")
@click.option("--name", required=True, help="The person's name as colleagues know it.")
@click.option(
    "--role",
    "roles",
    multiple=True,
    type=click.Choice(ROLES),
    default=("caseworker",),
    show_default=True,
)
@click.option("--password-env", default=None, help="Read the first password from this variable.")
@click.option("--password-fd", type=int, default=None)
def add(
    home: Path | None,
    person: str,
    name: str,
    roles: tuple[str, ...],
    password_env: str | None,
    password_fd: int | None,
) -> None:
    """Add PERSON (their user id, as the hub's access log will name them)."""
    password = _first_password(person, password_env, password_fd)
    with _accounts(home) as accounts:
        try:
            accounts.add(
                person,
                name,
                roles,
                hash_password(password, _cost()),
                now=int(time.time()),
                first_password=True,
            )
        except DeskError as exc:
            _fail(str(exc))
        accounts.log("account-added", now=int(time.time()), person=person, actor="command-line")
    click.echo(
        f"added {person} ({', '.join(sorted(roles))}); at first login they choose their own "
        "password and set up a second factor"
    )


def _first_password(person: str, env: str | None, fd: int | None) -> str:
    """A first password for ``person``, read without echo (or from ``env`` / ``fd``)."""
    try:
        password = get_passphrase(
            env_var=env, fd=fd, confirm=True, prompt=f"First password of {person}: "
        ).decode()
    except PassphraseError as exc:
        _fail(str(exc).replace("passphrase", "password"))
    problem = password_problem(password)
    if problem:
        _fail(f"the password is {problem.replace('-', ' ')} (at least 12 characters)")
    return password


def _change(home: Path | None, person: str, event: str, action: str) -> None:
    with _accounts(home) as accounts:
        try:
            if action == "disable":
                accounts.set_disabled(person, True)
            elif action == "enable":
                accounts.set_disabled(person, False)
            else:
                accounts.reset_second_factor(person)
        except DeskError as exc:
            _fail(str(exc))
        accounts.log(event, now=int(time.time()), person=person, actor="command-line")


@user.command("disable")
@_home_option
@click.argument("person")
def disable(home: Path | None, person: str) -> None:
    """Disable PERSON's account; their sessions end at their next request."""
    _change(home, person, "account-disabled", "disable")
    click.echo(f"disabled {person}")


@user.command("enable")
@_home_option
@click.argument("person")
def enable(home: Path | None, person: str) -> None:
    """Enable PERSON's account again."""
    _change(home, person, "account-enabled", "enable")
    click.echo(f"enabled {person}")


@user.command("reset-2fa")
@_home_option
@click.argument("person")
def reset_2fa(home: Path | None, person: str) -> None:
    """Forget PERSON's second factors; they set up a new one at their next login."""
    _change(home, person, "second-factor-reset", "reset-2fa")
    click.echo(f"second factor of {person} reset; sessions ended")


@user.command("reset-password")
@_home_option
@click.argument("person")
@click.option("--password-env", default=None, help="Read the first password from this variable.")
@click.option("--password-fd", type=int, default=None)
def reset_password(
    home: Path | None, person: str, password_env: str | None, password_fd: int | None
) -> None:
    """Give PERSON a new first password; their sessions end, and at their next login they
    choose their own."""
    password = _first_password(person, password_env, password_fd)
    with _accounts(home) as accounts:
        try:
            accounts.reset_password(person, hash_password(password, _cost()))
        except DeskError as exc:
            _fail(str(exc))
        accounts.log("password-reset", now=int(time.time()), person=person, actor="command-line")
    click.echo(f"new first password of {person} set; sessions ended")


@user.command("list")
@_home_option
def list_people(home: Path | None) -> None:
    """Everyone at this desk, with roles and state."""
    with _accounts(home) as accounts:
        for person in accounts.people():
            state = "disabled" if person.disabled else "active"
            factor = "2fa" if person.has_second_factor else "no 2fa yet"
            roles = ",".join(sorted(person.roles))
            click.echo(f"{person.id:<24} {state:<9} {factor:<11} {roles}  {person.name}")
