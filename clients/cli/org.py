"""``schakel org``: what an organisation runs.

Everything lives under ``--home`` (``SCHAKEL_HOME``)::

    keys/            the organisation's key directory (keys.organisation.OrgKeys)
    state.sqlite     local state: inbox cursor, received envelopes, directory cache

Exit codes: 0 done, 1 refused or failed, 2 usage, 3 hub unreachable,
4 something did not verify, 5 the hub's access log does not match what this
client saw before (or an entry does not match a signed tree head). Errors are
one line on stderr, ``error: ...``. The coordinator's case commands live in
:mod:`clients.cli_casework`, imported at the end of this module.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from clients.errors import (
    AuditLogInconsistent,
    ClientError,
    HubUnreachable,
    PayloadInvalid,
    VerificationFailed,
)
from clients.hub_client import (
    HubClient,
    Purpose,
)
from clients.organisation import Organisation, ReceivedMessage, RejectedMessage
from clients.payloads import identity_of, summary_of, validate_payload
from clients.state import LocalState
from keys.errors import KeysError
from keys.keyfile import kdf_params_from_env, write_public_file
from keys.organisation import OrgKeys
from keys.passphrase import get_passphrase
from protocol.auditlog import PURPOSES
from protocol.certificate import MAX_CERT_BYTES
from protocol.encoding import canonical_json, loads_strict
from protocol.errors import ProtocolError, ValidationError
from protocol.pseudonym import Identity, normalise_date
from protocol.types import parse_network_id, parse_org_id

EXIT_FAILED, EXIT_UNREACHABLE, EXIT_UNVERIFIED, EXIT_LOG_INCONSISTENT = 1, 3, 4, 5
MAX_SIGNAL_FILE = 64 * 1024
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Settings:
    home: Path
    hub_url: str
    passphrase_env: str
    passphrase_fd: int | None
    user: str | None
    as_json: bool
    purpose: str | None = None
    purpose_text: str | None = None

    @property
    def key_dir(self) -> Path:
        return self.home / "keys"

    @property
    def state_path(self) -> Path:
        return self.home / "state.sqlite"


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    raise click.exceptions.Exit(code)


def _guarded(func: Callable[..., None]) -> Callable[..., None]:
    """Turn every expected failure into one line on stderr and its exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            func(*args, **kwargs)
        except AuditLogInconsistent as exc:
            _fail(str(exc), EXIT_LOG_INCONSISTENT)
        except HubUnreachable as exc:
            _fail(str(exc), EXIT_UNREACHABLE)
        except VerificationFailed as exc:
            _fail(str(exc), EXIT_UNVERIFIED)
        except (ClientError, KeysError, ProtocolError) as exc:
            _fail(str(exc), EXIT_FAILED)
        except OSError as exc:
            _fail(f"{exc.filename or 'file'}: {exc.strerror}", EXIT_FAILED)
        except KeyboardInterrupt:
            _fail("interrupted", 130)

    return wrapper


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def _acting(settings: Settings, act: Callable[[Organisation], Awaitable[T]]) -> T:
    """Open a session (:class:`_Session`), ``act`` as its organisation, close it."""

    async def go() -> T:
        async with _Session(settings) as organisation:
            return await act(organisation)

    return _run(go())


def _emit(settings: Settings, data: Any, text: str) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True) if settings.as_json else text)


def _passphrase(settings: Settings, *, confirm: bool = False) -> bytes:
    return get_passphrase(
        env_var=settings.passphrase_env,
        fd=settings.passphrase_fd,
        prompt="Passphrase of the organisation keys: ",
        confirm=confirm,
    )


def _open_keys(settings: Settings) -> OrgKeys:
    if not settings.key_dir.is_dir():
        raise ClientError(f"no organisation keys in {settings.home}: run 'schakel org init' first")
    return OrgKeys.open(settings.key_dir, _passphrase(settings))


class _Session:
    """Keys, local state and a hub client, opened together and closed together."""

    def __init__(self, settings: Settings) -> None:
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
        self.keys = _open_keys(settings)
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
        except BaseException:
            self.state.close()
            raise
        self.org = Organisation(self.keys, self.state, self.hub)

    async def __aenter__(self) -> Organisation:
        await self.hub.__aenter__()
        return self.org

    async def __aexit__(self, *exc: object) -> None:
        await self.hub.close()
        self.state.close()


def _now() -> int:
    return int(time.time())


# -- the group ---------------------------------------------------------------------------


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


def session_options(*, purpose_default: str | None, purpose_help: str) -> Callable[[F], F]:
    """The options of every group that acts for an organisation (``org``, ``audit``).

    With ``purpose_default`` None the purpose comes from ``--purpose`` or SCHAKEL_PURPOSE;
    otherwise the group has its own default (the audit group reads the log for "audit").
    """

    def apply(func: F) -> F:
        options = [
            click.option(
                "--home",
                envvar="SCHAKEL_HOME",
                required=True,
                type=click.Path(file_okay=False, path_type=Path),
                help="The organisation's directory (keys and local state). Env: SCHAKEL_HOME.",
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
                help="Your own user id, recorded in the hub's access log (required for every "
                "command that talks to the hub). Env: SCHAKEL_USER.",
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
        ]
        for option in reversed(options):
            func = option(func)
        return func

    return apply


@click.group("org")
@session_options(
    purpose_default=None,
    purpose_help="Why you read case data, recorded in the hub's access log (required for "
    "inbox). Env: SCHAKEL_PURPOSE.",
)
@click.pass_context
def org(
    ctx: click.Context,
    home: Path,
    hub_url: str,
    passphrase_env: str,
    passphrase_fd: int | None,
    user: str | None,
    purpose: str | None,
    purpose_text: str | None,
    as_json: bool,
) -> None:
    """An organisation: keys, enrolment, signals and the inbox.

    \b
    First time:
      schakel org init --org ID --network ID --root root.pem
      (send the printed request to the network authority)
      schakel org import-cert certificate.pem
      schakel org publish
      schakel org linking-key fetch
    """
    ctx.obj = Settings(
        home, hub_url, passphrase_env, passphrase_fd, user, as_json, purpose, purpose_text
    )


def org_group() -> click.Group:
    """The ``org`` group, to mount under the root command."""
    return org


pass_settings = click.make_pass_decorator(Settings)


@org.command()
@click.option("--org", "org_id", required=True, help="Your organisation id (a-z, 0-9, '-').")
@click.option("--network", required=True, help="The network id.")
@click.option(
    "--root",
    "root_file",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The network root certificate (PEM), as received from the authority.",
)
@pass_settings
@_guarded
def init(settings: Settings, org_id: str, network: str, root_file: Path) -> None:
    """Create the keys, pin the network root and write the enrolment request."""
    params = kdf_params_from_env(os.environ)
    weak = params.weak
    root_pem = _read(root_file, 2 * MAX_CERT_BYTES)
    settings.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    keys = OrgKeys.create(
        settings.key_dir,
        parse_network_id(network),
        parse_org_id(org_id),
        _passphrase(settings, confirm=True),
        params,
        allow_weak=weak,
    )
    root = keys.pin_root(root_pem, now=_now())
    LocalState(settings.state_path).close()
    request = settings.key_dir / "request.pem"
    _emit(
        settings,
        {
            "request": str(request),
            "key_fingerprint": keys.key_fingerprint,
            "root": root.fingerprint,
        },
        f"enrolment request: {request}\n"
        f"key fingerprint:   {keys.key_fingerprint}\n"
        f"pinned root:       {root.fingerprint}\n"
        "Send the request to the network authority and confirm the key fingerprint by phone.",
    )


@org.command("import-cert")
@click.argument("cert_file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@pass_settings
@_guarded
def import_cert(settings: Settings, cert_file: Path) -> None:
    """Import the certificate the authority issued (checked against the pinned root)."""
    keys = _open_keys(settings)
    cert = keys.import_certificate(_read(cert_file, 2 * MAX_CERT_BYTES), now=_now())
    data = _cert_json(cert)
    _emit(settings, data, f"certificate {cert.fingerprint} for {cert.org}, roles {data['roles']}")


@org.command()
@pass_settings
@_guarded
def publish(settings: Settings) -> None:
    """Publish the certificate and the current encryption key bundle to the hub."""

    cert_fp, bundle_fp = _acting(settings, lambda organisation: organisation.publish())
    _emit(
        settings,
        {"certificate": cert_fp, "bundle": bundle_fp},
        f"published certificate {cert_fp}\npublished key bundle {bundle_fp}",
    )


@org.command("export-bundle")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the signed key bundle (JSON) for the network authority.",
)
@pass_settings
@_guarded
def export_bundle(settings: Settings, out: Path) -> None:
    """Write the current key bundle for the authority, who seals the linking key to it."""
    bundle = _open_keys(settings).current_bundle(now=_now())
    write_public_file(out, canonical_json(bundle.to_wire()) + b"\n", overwrite=False)
    _emit(
        settings,
        {"bundle": bundle.fingerprint, "file": str(out)},
        f"wrote key bundle {bundle.fingerprint} to {out}\n"
        "give it to the network authority: schakel authority linking-key seal --bundle ...",
    )


@org.group("linking-key")
def linking_key() -> None:
    """The network's linking key, sealed to this organisation by the authority."""


@linking_key.command("fetch")
@pass_settings
@_guarded
def linking_key_fetch(settings: Settings) -> None:
    """Fetch, verify and store the linking keys sealed to this organisation."""

    versions = _acting(settings, lambda organisation: organisation.fetch_linking_keys())
    if not versions:
        raise ClientError("the hub holds no linking key for this organisation yet")
    _emit(settings, {"versions": versions}, f"linking key versions held: {versions}")


def _identity_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--bsn", help="Citizen service number (BSN)."),
        click.option("--given-names"),
        click.option("--family-name"),
        click.option("--dob", help="Date of birth: YYYY-MM-DD or DD-MM-YYYY."),
        click.option("--phone"),
        click.option("--document", help="Travel-document number (with --country)."),
        click.option("--country", help="Issuing country of the document (ISO 3166)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _person(**fields: str | None) -> dict[str, str]:
    names = {
        "bsn": "bsn",
        "given_names": "given_names",
        "family_name": "family_name",
        "dob": "date_of_birth",
        "phone": "phone",
        "document": "document_number",
        "country": "document_country",
    }
    person = {names[k]: v for k, v in fields.items() if k in names and v is not None}
    if "date_of_birth" in person:
        # Forms write DD-MM-YYYY; the payload carries the ISO date.
        try:
            person["date_of_birth"] = normalise_date(person["date_of_birth"])
        except ValidationError as exc:
            raise ClientError(f"--dob: {exc}") from None
    return person


@org.command()
@_identity_options
@pass_settings
@_guarded
def pseudonyms(settings: Settings, **fields: str | None) -> None:
    """Derive the pseudonyms of a person locally (nothing is sent)."""
    person = _person(**fields)
    if not person:
        raise click.UsageError("give at least one identifier (--bsn, --phone, ...)")
    keys = _open_keys(settings)
    with LocalState(settings.state_path) as state:
        hub = HubClient(settings.hub_url, network=keys.network)
        derived = Organisation(keys, state, hub).derive_pseudonyms(Identity(**person))
    _emit(settings, {"pseudonyms": list(derived)}, "\n".join(derived) or "(none)")


@org.command("send-signal")
@click.option("--to", "recipients", multiple=True, required=True, help="Recipient org (repeat).")
@click.option(
    "--file",
    "signal_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The whole signal payload as JSON (instead of the flags below).",
)
@_identity_options
@click.option(
    "--exploitation",
    type=click.Choice(["sexual", "labour", "criminal", "organ_removal", "unknown"]),
    default="unknown",
    show_default=True,
)
@click.option("--indicator", "indicators", multiple=True, help="Indicator code (repeat).")
@click.option("--text", help="Free text (at most 4000 characters).")
@click.option(
    "--urgency",
    type=click.Choice(["low", "normal", "high", "immediate_danger"]),
    default="normal",
    show_default=True,
)
@click.option("--consent/--no-consent", default=None, help="Did the person consent to sharing?")
@pass_settings
@_guarded
def send_signal(
    settings: Settings,
    recipients: tuple[str, ...],
    signal_file: Path | None,
    exploitation: str,
    indicators: tuple[str, ...],
    text: str | None,
    urgency: str,
    consent: bool | None,
    **fields: str | None,
) -> None:
    """Send a signal about a possible victim to one or more organisations."""
    if signal_file is not None:
        payload = _load_json(signal_file)
    else:
        if consent is None:
            raise click.UsageError("say --consent or --no-consent (or give --file)")
        payload = {
            "schema": "schakel.signal/1",
            "person": _person(**fields),
            "exploitation": exploitation,
            "urgency": urgency,
            "consent_to_share": consent,
        }
        if indicators:
            payload["indicators"] = list(indicators)
        if text is not None:
            payload["text"] = text
    validate_payload("signal", payload)

    async def go() -> tuple[str, tuple[str, ...]]:
        async with _Session(settings) as organisation:
            message_id = await organisation.send_signal(payload, recipients)
            identity = identity_of(payload)
            derived = (
                organisation.derive_pseudonyms(identity)
                if any(getattr(identity, f) for f in Identity.__dataclass_fields__)
                else ()
            )
            return message_id, derived

    message_id, derived = _run(go())
    _emit(
        settings,
        {"id": message_id, "recipients": sorted(set(recipients)), "pseudonyms": list(derived)},
        f"sent {message_id}\n" + "".join(f"  {p}\n" for p in derived).rstrip("\n"),
    )


def _load_json(path: Path) -> dict[str, Any]:
    """A payload file: strict JSON, one object, at most MAX_SIGNAL_FILE bytes."""
    try:
        payload = loads_strict(_read(path, MAX_SIGNAL_FILE), max_bytes=MAX_SIGNAL_FILE)
    except ProtocolError as exc:
        raise PayloadInvalid(f"{path} is not strict JSON ({exc})") from exc
    if not isinstance(payload, dict):
        raise PayloadInvalid(f"{path} must hold a JSON object")
    return payload


def _read(path: Path, limit: int) -> bytes:
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ClientError(f"{path} is larger than {limit} bytes")
    return data


def _line(message: ReceivedMessage) -> dict[str, Any]:
    line = {
        "cursor": message.cursor,
        "id": message.id,
        "sender": message.sender,
        "kind": message.kind,
        "created": message.created,
        "pseudonyms": [p[:16] for p in message.pseudonyms],
        "summary": _summary(message.kind, message.payload, message.ref, message.case),
    }
    header = {"case": message.case, "ref": message.ref, "status": message.status}
    return line | {key: value for key, value in header.items() if value is not None}


def _summary(
    kind: str, payload: Mapping[str, Any], ref: str | None = None, case: str | None = None
) -> str:
    """One line about a payload: its coded fields, never names or free text."""
    if kind == "referral":
        text = f"referral for {payload.get('service', '?')}, urgency {payload.get('urgency', '?')}"
        text += f", case {case}" if case else ""
        return text + (f", replaces {ref}" if ref else "")
    if kind == "status":
        reason = payload.get("reason_code")
        about = f" about referral {ref}" if ref else ""
        return f"status {payload.get('status', '?')}{about}" + (f" ({reason})" if reason else "")
    return summary_of(kind, dict(payload))


def _text_line(item: dict[str, Any]) -> str:
    created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(item["created"]))
    short = ",".join(item["pseudonyms"]) or "-"
    return (
        f"{item['cursor']:>6}  {item['id']}  {item['sender']:<16} {item['kind']:<8} "
        f"{created}Z  {short}  {item['summary']}"
    )


def _rejected_line(item: RejectedMessage) -> dict[str, Any]:
    return {"cursor": item.cursor, "id": item.id, "sender": item.sender, "rejected": item.reason}


@org.command()
@click.option("--watch", is_flag=True, help="Keep listening for new messages.")
@pass_settings
@_guarded
def inbox(settings: Settings, watch: bool) -> None:
    """Receive new messages, verify and acknowledge them, then list the inbox."""

    async def go() -> None:
        async with _Session(settings) as organisation:
            result = await organisation.receive()
            lines = [_line(organisation.show(m.id)) for m in organisation.state.messages()]
            rejected = [_rejected_line(r) for r in result.rejected]
            if settings.as_json:
                click.echo(json.dumps({"messages": lines, "rejected": rejected}, indent=2))
            else:
                for line in lines:
                    click.echo(_text_line(line))
                for item in rejected:
                    click.echo(f"{item['cursor']:>6}  {item['id']}  REJECTED ({item['rejected']})")
            if watch:
                await _watch(settings, organisation)

    _run(go())


async def _watch(settings: Settings, organisation: Organisation) -> None:
    while True:
        try:
            async for item in organisation.watch():
                if isinstance(item, RejectedMessage):
                    data: dict[str, Any] = _rejected_line(item)
                    text = f"{item.cursor:>6}  {item.id}  REJECTED ({item.reason})"
                else:
                    data = _line(item)
                    text = _text_line(data)
                click.echo(json.dumps(data) if settings.as_json else text)
        except HubUnreachable as exc:
            click.echo(f"warning: {exc}; retrying in 10 s", err=True)
        await asyncio.sleep(10)


@org.command()
@click.argument("message_id")
@pass_settings
@_guarded
def show(settings: Settings, message_id: str) -> None:
    """Decrypt and show one received message in full."""
    keys = _open_keys(settings)
    with LocalState(settings.state_path) as state:
        hub = HubClient(settings.hub_url, network=keys.network)
        message = Organisation(keys, state, hub).show(message_id)
    data = {**_line(message), "pseudonyms": list(message.pseudonyms), "payload": message.payload}
    del data["summary"]
    shown = {**data, "created": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(message.created))}
    header = "\n".join(f"{k}: {v}" for k, v in shown.items() if k not in ("payload", "pseudonyms"))
    _emit(
        settings,
        data,
        header
        + "\npseudonyms:\n"
        + "".join(f"  {p}\n" for p in message.pseudonyms)
        + json.dumps(message.payload, indent=2, ensure_ascii=False, sort_keys=True),
    )


def _date(seconds: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(seconds))


def _cert_json(cert: Any) -> dict[str, Any]:
    return {
        "fingerprint": cert.fingerprint,
        "serial": cert.serial,
        "roles": sorted(cert.roles),
        "not_after": cert.not_after,
    }


def _local_status(settings: Settings) -> None:
    """Organisation, network, certificate, key bundles, linking keys and inbox (local only)."""
    keys = _open_keys(settings)
    cert = keys.certificate
    with LocalState(settings.state_path) as state:
        data = {
            "org": keys.org,
            "network": keys.network,
            "key_fingerprint": keys.key_fingerprint,
            "root": keys.root.fingerprint if keys.root_pinned else None,
            "certificate": None if cert is None else _cert_json(cert),
            "bundles": sorted(keys.kem_keys),
            "linking_keys": sorted(keys.linking_keys),
            "inbox_cursor": state.cursor,
            "messages": len(state.messages()),
            "rejected": len(state.rejected()),
            "sent": len(state.sent()),
        }
    bundles = ", ".join(sorted(keys.kem_keys))
    expiry = (
        "none yet: run 'schakel org import-cert CERT.pem'"
        if cert is None
        else f"{cert.fingerprint} (expires {_date(cert.not_after)})"
    )
    _emit(
        settings,
        data,
        f"organisation: {data['org']}\nnetwork:      {data['network']}\n"
        f"certificate:  {expiry}\n"
        f"key bundles:  {bundles or 'none yet: run schakel org publish'}\n"
        f"linking keys: {data['linking_keys'] or 'none yet: run schakel org linking-key fetch'}\n"
        f"inbox:        {data['messages']} messages, {data['rejected']} rejected, "
        f"cursor {data['inbox_cursor']}; {data['sent']} sent",
    )


# The coordinator's case commands register themselves on ``org``; imported last, since
# they import from this module.
from clients import cli_casework  # noqa: E402, F401
