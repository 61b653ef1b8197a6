"""What every command of ``schakel org`` and ``schakel audit`` shares.

* :class:`Settings`, built once from the group's options and passed to each command;
* :func:`session_options`, the group's options, and :func:`repeat_on_commands`, which
  accepts ``--json``, ``--user``, ``--purpose`` and ``--purpose-text`` after the
  subcommand too (``schakel org inbox --json`` as ``schakel org --json inbox``);
* :func:`guarded`: every expected failure becomes one line on stderr and an exit code
  (:mod:`clients.cli`);
* :class:`Session` and :func:`acting`: keys, local state, the hub client and the
  :class:`~clients.organisation.Organisation` over them, opened and closed together;
  what waits in the outbox goes out first;
* :func:`emit`, :func:`warn`, :func:`load_json` and :func:`read_bounded` for output and input.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from clients.errors import (
    AuditLogInconsistent,
    ClientError,
    HubUnreachable,
    InboxWentBack,
    PayloadInvalid,
    VerificationFailed,
)
from clients.hub_client import HubClient, Purpose
from clients.logproofs import ExportUnreadable
from clients.organisation import Organisation
from clients.outbox import OutboxReport, Sent
from clients.state import LocalState
from keys.errors import KeysError
from keys.organisation import OrgKeys
from keys.passphrase import get_passphrase
from protocol.auditlog import PURPOSES
from protocol.encoding import loads_strict
from protocol.errors import ProtocolError

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_UNVERIFIED = 4
EXIT_LOG_INCONSISTENT = 5
EXIT_FILE_UNREADABLE = 6
EXIT_INBOX_WENT_BACK = 7
EXIT_INTERRUPTED = 130
MAX_PAYLOAD_FILE = 64 * 1024
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Settings:
    """The group's options. ``home`` is checked when a command needs it, not before, so
    that ``--help`` works after any command without one."""

    home_option: Path | None
    hub_url: str
    passphrase_env: str
    passphrase_fd: int | None
    user: str | None
    as_json: bool
    purpose: str | None = None
    purpose_text: str | None = None

    @classmethod
    def of(cls, home: Path | None, as_json: bool, **options: Any) -> Settings:
        """From the options of a group made by :func:`session_options`."""
        return cls(home_option=home, as_json=as_json, **options)

    @property
    def home(self) -> Path:
        if self.home_option is None:
            raise click.UsageError(
                "--home (or SCHAKEL_HOME) is required: the organisation's directory"
            )
        return self.home_option

    @property
    def key_dir(self) -> Path:
        return self.home / "keys"

    @property
    def state_path(self) -> Path:
        return self.home / "state.sqlite"


pass_settings = click.make_pass_decorator(Settings)


# -- failures --------------------------------------------------------------------------


def fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    raise click.exceptions.Exit(code)


def warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


def guarded(func: Callable[..., None]) -> Callable[..., None]:
    """Turn every expected failure into one line on stderr and its exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            func(*args, **kwargs)
        except AuditLogInconsistent as exc:
            fail(str(exc), EXIT_LOG_INCONSISTENT)
        except ExportUnreadable as exc:
            fail(str(exc), EXIT_FILE_UNREADABLE)
        except InboxWentBack as exc:
            fail(str(exc), EXIT_INBOX_WENT_BACK)
        except HubUnreachable as exc:
            fail(str(exc), EXIT_UNREACHABLE)
        except VerificationFailed as exc:
            fail(str(exc), EXIT_UNVERIFIED)
        except (ClientError, KeysError, ProtocolError) as exc:
            fail(str(exc), EXIT_FAILED)
        except OSError as exc:
            fail(f"{exc.filename or 'file'}: {exc.strerror}", EXIT_FAILED)
        except KeyboardInterrupt:
            fail("interrupted", EXIT_INTERRUPTED)

    return wrapper


# -- output ----------------------------------------------------------------------------


def emit(settings: Settings, data: Any, text: str) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True) if settings.as_json else text)


def plain(value: Any) -> Any:
    """Dataclasses, mappings and tuples as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def when(seconds: int | None) -> str:
    return "-" if seconds is None else time.strftime("%Y-%m-%d %H:%MZ", time.gmtime(seconds))


def day(seconds: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(seconds))


# -- input -----------------------------------------------------------------------------


def read_bounded(path: Path, limit: int) -> bytes:
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ClientError(f"{path} is larger than {limit} bytes")
    return data


def load_json(path: Path) -> dict[str, Any]:
    """A payload file: strict JSON, one object, at most MAX_PAYLOAD_FILE bytes."""
    try:
        payload = loads_strict(read_bounded(path, MAX_PAYLOAD_FILE), max_bytes=MAX_PAYLOAD_FILE)
    except ProtocolError as exc:
        raise PayloadInvalid(f"{path} is not strict JSON ({exc})") from exc
    if not isinstance(payload, dict):
        raise PayloadInvalid(f"{path} must hold a JSON object")
    return payload


def given(ctx: click.Context, *names: str) -> list[str]:
    """The options among ``names`` that were given on the command line or in the env."""
    sources = (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT)
    return [name for name in names if ctx.get_parameter_source(name) in sources]


# -- the session -----------------------------------------------------------------------


def passphrase(settings: Settings, *, confirm: bool = False) -> bytes:
    return get_passphrase(
        env_var=settings.passphrase_env,
        fd=settings.passphrase_fd,
        prompt="Passphrase of the organisation keys: ",
        confirm=confirm,
    )


def open_keys(settings: Settings) -> OrgKeys:
    if not settings.key_dir.is_dir():
        raise ClientError(f"no organisation keys in {settings.home}: run 'schakel org init' first")
    return OrgKeys.open(settings.key_dir, passphrase(settings))


@contextlib.contextmanager
def offline(settings: Settings) -> Iterator[Organisation]:
    """The organisation, for a command that never reaches the hub (its state closed after)."""
    keys = open_keys(settings)
    with LocalState(settings.state_path) as state:
        yield Organisation(keys, state, HubClient(settings.hub_url, network=keys.network))


class Session:
    """Keys, local state and a hub client, opened together and closed together.

    On entry, what waits in the outbox is sent (``send_outbox``), and a line on stderr
    says what went out or was refused; a hub still out of reach leaves it waiting.
    """

    def __init__(self, settings: Settings, *, send_outbox: bool = True) -> None:
        if settings.user is None:
            raise click.UsageError(
                "--user (or SCHAKEL_USER) is required: your own user id, which the hub "
                "records in its access log with every request"
            )
        purpose = (
            None if settings.purpose is None else Purpose(settings.purpose, settings.purpose_text)
        )
        if purpose is None and settings.purpose_text is not None:
            raise click.UsageError("--purpose-text needs --purpose")
        self._send_outbox = send_outbox
        self.keys = open_keys(settings)
        self.state = LocalState(settings.state_path)
        try:
            self.hub = HubClient(
                settings.hub_url,
                network=self.keys.network,
                org=self.keys.org,
                signing_key=self.keys.signing_key,
                user=settings.user,
                purpose=purpose,
            )
            self.org = Organisation(self.keys, self.state, self.hub)
        except BaseException:
            self.state.close()
            raise

    async def __aenter__(self) -> Organisation:
        await self.hub.__aenter__()
        if self._send_outbox and self.org.outbox.entries():
            # Still out of reach: it waits; the command itself says the hub is unreachable.
            with contextlib.suppress(HubUnreachable):
                report_outbox(await self.org.send_outbox())
        return self.org

    async def __aexit__(self, *exc: object) -> None:
        await self.hub.close()
        self.state.close()


def report_outbox(report: OutboxReport) -> None:
    """One line on stderr per message that went out or was refused in a pass."""
    for sent in report.sent:
        click.echo(f"outbox: sent {sent.kind} {sent.id}", err=True)
    for entry in report.refused:
        click.echo(f"outbox: REFUSED {entry.kind} {entry.id}: {entry.problem}", err=True)
    if report.waiting and (report.sent or report.refused):
        click.echo(f"outbox: {len(report.waiting)} still waiting", err=True)


def report_sent(settings: Settings, sent: Sent, what: str) -> None:
    """What became of a message: sent, or waiting in the outbox (with a warning)."""
    data = {
        "id": sent.id,
        "kind": sent.kind,
        "recipients": list(sent.recipients),
        "pseudonyms": list(sent.pseudonyms),
        "state": "waiting" if sent.waiting else "sent",
        "accepted": sent.accepted,
    }
    if sent.waiting:
        warn(
            f"{what} {sent.id} waits in the outbox ({sent.problem}); it goes out with the next "
            "command that reaches the hub, or with 'schakel org outbox send'"
        )
    head = f"{'waiting' if sent.waiting else 'sent'} {what}: {sent.id}"
    emit(settings, data, head + "".join(f"\n  {p}" for p in sent.pseudonyms))


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def acting(
    settings: Settings,
    act: Callable[[Organisation], Awaitable[T]],
    *,
    send_outbox: bool = True,
) -> T:
    """Open a :class:`Session`, ``act`` as its organisation, close it."""

    async def go() -> T:
        async with Session(settings, send_outbox=send_outbox) as organisation:
            return await act(organisation)

    return run(go())


# -- options ---------------------------------------------------------------------------


def hub_url_option(func: F) -> F:
    """``--hub``: the hub's base URL (env SCHAKEL_HUB_URL)."""
    return click.option(
        "--hub",
        "hub_url",
        envvar="SCHAKEL_HUB_URL",
        default="http://127.0.0.1:8443",
        show_default=True,
        help="Base URL of the hub. Env: SCHAKEL_HUB_URL.",
    )(func)


def _apply(func: F, options: Iterable[Callable[[F], F]]) -> F:
    for option in reversed(list(options)):
        func = option(func)
    return func


def session_options(*, purpose_default: str | None, purpose_help: str) -> Callable[[F], F]:
    """The options of every group that acts for an organisation (``org``, ``audit``).

    With ``purpose_default`` None the purpose comes from ``--purpose`` or SCHAKEL_PURPOSE;
    otherwise the group has its own default (the audit group reads the log for "audit").
    """

    def apply(func: F) -> F:
        return _apply(
            func,
            [
                click.option(
                    "--home",
                    envvar="SCHAKEL_HOME",
                    type=click.Path(file_okay=False, path_type=Path),
                    help="The organisation's directory (keys and local state); required. "
                    "Env: SCHAKEL_HOME.",
                ),
                hub_url_option,
                click.option(
                    "--passphrase-env",
                    default="SCHAKEL_PASSPHRASE",
                    show_default=True,
                    metavar="NAME",
                    help="Environment variable holding the key passphrase.",
                ),
                click.option(
                    "--passphrase-fd",
                    type=int,
                    metavar="N",
                    help="Read the passphrase from file descriptor N.",
                ),
                click.option(
                    "--user",
                    envvar="SCHAKEL_USER",
                    help="Your own user id, recorded in the hub's access log (required for "
                    "every command that talks to the hub). Env: SCHAKEL_USER.",
                ),
                click.option(
                    "--purpose",
                    envvar=None if purpose_default else "SCHAKEL_PURPOSE",
                    type=click.Choice(PURPOSES),
                    default=purpose_default,
                    show_default=purpose_default is not None,
                    help=purpose_help,
                ),
                click.option(
                    "--purpose-text",
                    envvar=None if purpose_default else "SCHAKEL_PURPOSE_TEXT",
                    help="Free text that explains the purpose (at most 200 characters).",
                ),
                click.option("--json", "as_json", is_flag=True, help="Machine-readable output."),
            ],
        )

    return apply


@dataclass(frozen=True, slots=True)
class Repeated:
    """A group option that each subcommand accepts too: the subcommand's value wins."""

    field: str  # the field of the group's settings object
    make: Callable[[str], click.Option]  # the option, under a parameter name of its own


def repeat_on_commands(group: click.Group, repeated: Iterable[Repeated]) -> None:
    """Give every command below ``group`` the ``repeated`` options as well.

    A value given after the subcommand replaces the group's in the settings object the
    command receives (``ctx.obj``, a frozen dataclass); one not given leaves it alone.
    """
    options = list(repeated)
    for command in _commands(group):
        names = []
        for index, option in enumerate(options):
            param = option.make(f"repeated_{index}")
            command.params.append(param)
            names.append((str(param.name), option.field))
        command.callback = _taking(command.callback, names)


def _commands(group: click.Group) -> list[click.Command]:
    found: list[click.Command] = []
    for command in group.commands.values():
        found.append(command)
        if isinstance(command, click.Group):
            found.extend(_commands(command))
    return found


def _taking(
    callback: Callable[..., Any] | None, names: list[tuple[str, str]]
) -> Callable[..., Any] | None:
    if callback is None:
        return None

    @functools.wraps(callback)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        changes = {}
        for name, field in names:
            value = kwargs.pop(name, None)
            if value is not None and value is not False:
                changes[field] = value
        if changes:
            ctx = click.get_current_context()
            ctx.obj = dataclasses.replace(ctx.obj, **changes)
        return callback(*args, **kwargs)

    return wrapper


def session_repeats() -> list[Repeated]:
    """``--json``, ``--user``, ``--purpose`` and ``--purpose-text`` after the subcommand."""
    return [
        Repeated("as_json", lambda name: click.Option(["--json", name], is_flag=True,
                                                        help="Machine-readable output.")),
        Repeated("user", lambda name: click.Option(["--user", name], metavar="ID",
                                                     help="Your own user id (as before the "
                                                     "subcommand).")),
        Repeated("purpose", lambda name: click.Option(["--purpose", name],
                                                        type=click.Choice(PURPOSES),
                                                        help="Why you read case data (as "
                                                        "before the subcommand).")),
        Repeated("purpose_text", lambda name: click.Option(["--purpose-text", name],
                                                             help="Free text that explains "
                                                             "the purpose.")),
    ]  # fmt: skip
