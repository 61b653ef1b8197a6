"""``schakel authority``: the network authority's command line.

Run it offline, on the machine that holds the authority directory. Every
command prints the fingerprints that must be compared out of band (read out
over the phone, printed on the enrolment form) and, with ``--json``, one JSON
object on stdout for scripts. Errors are one line on stderr and exit code 1;
a usage error exits with 2.

The passphrase comes from ``--passphrase-fd N``, else the environment variable
named by ``--passphrase-env`` (default ``SCHAKEL_PASSPHRASE``), else a prompt;
never from an argument. ``SCHAKEL_WEAK_KDF=1`` (tests and the demo) lets ``init`` use
libsodium's minimum Argon2id cost; production refuses weak parameters.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import click

from clients.cli.common import Repeated, hub_url_option, repeat_on_commands
from clients.errors import ClientError, HubProblem
from clients.hub_client import HubClient
from keys.authority import (
    PEM_CERTIFICATE,
    PEM_CRL,
    Authority,
    IssuedCertificate,
    key_fingerprint,
)
from keys.errors import KeysError
from keys.keyfile import KdfParams, kdf_params_from_env, read_bounded, write_public_file
from keys.passphrase import get_passphrase
from protocol.certificate import (
    MAX_CERT_BYTES,
    MAX_CRL_BYTES,
    ORG_TYPE_OTHER,
    ORG_TYPES,
    ROLES,
    Certificate,
    RevocationList,
    load_root,
    pem_decode,
    pem_encode,
    verify_certificate,
)
from protocol.encoding import b64e, canonical_json, loads_strict
from protocol.errors import ProtocolError
from protocol.keybundle import KeyBundle
from protocol.linkingkey import SealedLinkingKey
from protocol.oprfkeys import OprfKeyRequest, OprfKeyStatement
from protocol.retention import BOUNDS as RETENTION_BOUNDS
from protocol.retention import DEFAULTS as RETENTION_DEFAULTS
from protocol.retention import RetentionPolicy
from protocol.retirement import Retirement
from protocol.types import NetworkId, parse_network_id
from protocol.witness import MAX_WITNESS_BYTES, WitnessRequest
from protocol.witnesspolicy import WitnessPolicy

DEFAULT_DIR = "authority"
MAX_BUNDLE_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class AuthorityCliConfig:
    """What the group's options say, built once and passed to every command."""

    directory: Path
    passphrase_env: str
    passphrase_fd: int | None
    json: bool
    weak_kdf: bool

    def passphrase(self, *, confirm: bool = False) -> bytes:
        return get_passphrase(
            env_var=self.passphrase_env,
            fd=self.passphrase_fd,
            prompt="Authority passphrase: " if not confirm else "New authority passphrase: ",
            confirm=confirm,
        )

    def open(self) -> Authority:
        return Authority.open(self.directory, self.passphrase())


class _Group(click.Group):
    """Turns the errors of keys and protocol into one line on stderr and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (KeysError, ProtocolError) as exc:
            _fail(str(exc))
        except OSError as exc:
            _fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))


def _fail(message: str) -> NoReturn:
    raise click.ClickException(message.replace("\n", " "))


def _now() -> int:
    return int(time.time())


def _report(cfg: AuthorityCliConfig, fields: dict[str, Any], lines: list[str]) -> None:
    if cfg.json:
        click.echo(json.dumps(fields, sort_keys=True, indent=None))
    else:
        for line in lines:
            click.echo(line)


pass_cfg = click.make_pass_decorator(AuthorityCliConfig)


def _network_option(ctx: click.Context, param: click.Parameter, value: str) -> NetworkId:
    try:
        return parse_network_id(value)
    except ProtocolError as exc:
        raise click.BadParameter(str(exc)) from exc


@click.group("authority", cls=_Group)
@click.option(
    "--dir",
    "directory",
    envvar="SCHAKEL_AUTHORITY_DIR",
    default=DEFAULT_DIR,
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The authority directory (env SCHAKEL_AUTHORITY_DIR).",
)
@click.option(
    "--passphrase-env",
    default="SCHAKEL_PASSPHRASE",
    show_default=True,
    metavar="NAME",
    help="Environment variable that holds the passphrase.",
)
@click.option(
    "--passphrase-fd",
    type=click.IntRange(min=0),
    metavar="N",
    help="Read the passphrase as one line from file descriptor N (wins over the env).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@click.pass_context
def authority(
    ctx: click.Context,
    directory: Path,
    passphrase_env: str,
    passphrase_fd: int | None,
    as_json: bool,
) -> None:
    """The network authority: root key, enrolment, revocation and the linking key.

    Keep the authority directory offline. Compare every fingerprint printed here
    with the other party over a second channel.
    """
    ctx.obj = AuthorityCliConfig(
        directory=directory,
        passphrase_env=passphrase_env,
        passphrase_fd=passphrase_fd,
        json=as_json,
        weak_kdf=kdf_params_from_env(os.environ).weak,
    )


@authority.command()
@click.option(
    "--network", required=True, callback=_network_option, help="The network id, e.g. region-west."
)
@click.option("--days", default=3650, show_default=True, type=click.IntRange(1, 36500))
@pass_cfg
def init(cfg: AuthorityCliConfig, network: NetworkId, days: int) -> None:
    """Create the root key and root certificate in a new, empty directory."""
    network_id = network
    params = KdfParams.for_tests() if cfg.weak_kdf else KdfParams.production()
    passphrase = cfg.passphrase(confirm=True)
    auth = Authority.create(
        cfg.directory,
        network_id,
        passphrase,
        params,
        now=_now(),
        days=days,
        allow_weak=cfg.weak_kdf,
    )
    _report(
        cfg,
        {**_root_fields(auth), "directory": str(auth.directory)},
        [
            f"created the authority for network {network_id} in {auth.directory}",
            f"root certificate: {auth.directory / 'root.pem'} (give it to every party)",
            *_root_lines(auth),
        ],
    )


def _root_fields(auth: Authority) -> dict[str, Any]:
    return {
        "network": auth.network,
        "root_fingerprint": auth.root_fingerprint,
        "root_key_fingerprint": auth.root_key_fingerprint,
    }


def _root_lines(auth: Authority) -> list[str]:
    return [
        f"root fingerprint: {auth.root_fingerprint}",
        f"root key fingerprint: {auth.root_key_fingerprint}",
    ]


def _read_pem_or_der(path: Path, label: str, limit: int) -> bytes:
    data = read_bounded(path, 2 * limit)
    return pem_decode(data, label) if data.lstrip().startswith(b"-----BEGIN") else data


def _issue(
    cfg: AuthorityCliConfig,
    request_path: Path,
    out: Path | None,
    issue: Callable[[Authority, bytes], Certificate],
) -> None:
    request_der = _read_pem_or_der(request_path, "CERTIFICATE REQUEST", MAX_CERT_BYTES)
    auth = cfg.open()
    cert = issue(auth, request_der)
    issued = auth.directory / "issued" / f"{cert.serial}.pem"
    if out is not None:
        write_public_file(out, pem_encode(cert.der, PEM_CERTIFICATE), overwrite=False)
    fields = {
        **_root_fields(auth),
        "org": cert.org,
        "serial": cert.serial,
        "roles": sorted(cert.roles),
        "type": cert.org_type,
        "not_after": cert.not_after,
        "key_fingerprint": key_fingerprint(cert.public_key),
        "certificate_fingerprint": cert.fingerprint,
        "certificate": str(out or issued),
    }
    _report(
        cfg,
        fields,
        [
            f"issued certificate {cert.serial} to {cert.org} ({cert.org_type}): "
            f"roles {', '.join(fields['roles'])}",
            f"certificate: {out or issued}",
            f"key fingerprint: {fields['key_fingerprint']} (must match the requester's)",
            f"certificate fingerprint: {cert.fingerprint}",
            *_root_lines(auth),
        ],
    )


def _parse_roles(ctx: click.Context, param: click.Parameter, value: str) -> list[str]:
    roles = [role.strip() for role in value.split(",") if role.strip()]
    unknown = sorted(set(roles) - set(ROLES))
    if not roles or unknown:
        raise click.BadParameter(
            f"unknown role {', '.join(unknown)}; choose from {', '.join(ROLES[:-1])}"
            if unknown
            else "give at least one role"
        )
    return roles


@authority.command()
@click.argument("request", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--roles",
    required=True,
    metavar="ROLE,...",
    callback=_parse_roles,
    help="Comma-separated: member, coordinator, privacy_officer, network_privacy_officer.",
)
@click.option(
    "--type",
    "org_type",
    type=click.Choice(ORG_TYPES),
    default=ORG_TYPE_OTHER,
    show_default=True,
    help="What kind of organisation it is; referrals go to shelter, care and legal_aid.",
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Also write here.")
@click.option("--days", default=365, show_default=True, type=click.IntRange(1, 3650))
@pass_cfg
def enrol(
    cfg: AuthorityCliConfig,
    request: Path,
    roles: list[str],
    org_type: str,
    out: Path | None,
    days: int,
) -> None:
    """Issue an organisation certificate for REQUEST.pem (the organisation's request.pem)."""
    _issue(
        cfg,
        request,
        out,
        lambda auth, der: auth.enrol(der, roles, now=_now(), days=days, org_type=org_type),
    )


@authority.command("certify-hub")
@click.argument("request", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Also write here.")
@click.option("--days", default=365, show_default=True, type=click.IntRange(1, 3650))
@pass_cfg
def certify_hub(cfg: AuthorityCliConfig, request: Path, out: Path | None, days: int) -> None:
    """Issue the hub's log-signing certificate for the hub's REQUEST.pem."""
    _issue(cfg, request, out, lambda auth, der: auth.certify_hub(der, now=_now(), days=days))


@authority.command("certify-witness")
@click.argument("request", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Also write here.")
@click.option("--days", default=365, show_default=True, type=click.IntRange(1, 3650))
@pass_cfg
def certify_witness(cfg: AuthorityCliConfig, request: Path, out: Path | None, days: int) -> None:
    """Certify a witness key for REQUEST.json (a witness's request.json).

    Compare the key fingerprint printed here with the witness's operator.
    """
    data = loads_strict(read_bounded(request, MAX_WITNESS_BYTES), max_bytes=MAX_WITNESS_BYTES)
    if out is not None and out.exists():
        _fail(f"refusing to overwrite {out}")
    auth = cfg.open()
    cert = auth.certify_witness(WitnessRequest.from_wire(data), now=_now(), days=days)
    wire = canonical_json(cert.to_wire()) + b"\n"
    if out is not None:
        write_public_file(out, wire, overwrite=False)
    path = out or auth.directory / "issued" / f"{cert.serial}.json"
    fields = {
        **_root_fields(auth),
        "org": cert.org,
        "name": cert.name,
        "serial": cert.serial,
        "not_after": cert.not_after,
        "key_fingerprint": key_fingerprint(cert.public_key),
        "vkey": cert.verifier().vkey().text(),
        "certificate": str(path),
    }
    _report(
        cfg,
        fields,
        [
            f"certified witness {cert.name} of {cert.org} as serial {cert.serial}",
            f"witness certificate: {path}",
            f"key fingerprint: {fields['key_fingerprint']} (must match the witness's)",
            f"vkey: {fields['vkey']}",
            *_root_lines(auth),
        ],
    )


@authority.command("witness-policy")
@click.argument("serials", nargs=-1, required=True, type=click.IntRange(min=1))
@click.option(
    "--quorum",
    required=True,
    type=click.IntRange(min=1),
    help="How many distinct organisations must cosign a head.",
)
@pass_cfg
def witness_policy(cfg: AuthorityCliConfig, serials: tuple[int, ...], quorum: int) -> None:
    """Sign the next witness policy: the witness certificates SERIAL... and the quorum."""
    auth = cfg.open()
    policy, path = auth.witness_policy(serials, quorum=quorum, now=_now())
    orgs = sorted(policy.organisations)
    fields = {
        **_root_fields(auth),
        "number": policy.number,
        "quorum": policy.quorum,
        "witnesses": [w.serial for w in policy.witnesses],
        "organisations": orgs,
        "policy": str(path),
    }
    _report(
        cfg,
        fields,
        [
            f"witness policy {policy.number}: {path}",
            f"{len(policy.witnesses)} witnesses of {len(orgs)} organisations "
            f"({', '.join(orgs)}); a head needs {quorum}",
            *_root_lines(auth),
        ],
    )


_PERIOD_OPTIONS = (
    ("--grace-days", "ciphertext_grace_days",
     "Keep an envelope this long after every recipient acknowledged it."),
    ("--max-days", "ciphertext_max_days",
     "Delete an envelope at this age, acknowledged or not."),
    ("--case-closed-days", "case_closed_days",
     "Keep a closed case this long after its last activity."),
    ("--case-idle-days", "case_idle_days",
     "Keep a case that never closed this long after its last activity."),
    ("--access-log-days", "access_log_days",
     "Keep access-log personal fields this long (at least 1827: five years)."),
)  # fmt: skip


def _period_options(func: Any) -> Any:
    for flag, name, text in reversed(_PERIOD_OPTIONS):
        low, high = RETENTION_BOUNDS[name]
        func = click.option(
            flag, name, type=click.IntRange(low, high), default=RETENTION_DEFAULTS[name],
            show_default=True, help=text,
        )(func)  # fmt: skip
    return func


@authority.command("retention-policy")
@_period_options
@pass_cfg
def retention_policy(cfg: AuthorityCliConfig, /, **periods: int) -> None:
    """Sign the next retention policy: how long the hub keeps envelopes, cases and the
    personal fields of its access log (days). Relay it with 'publish'."""
    auth = cfg.open()
    try:
        policy, path = auth.retention_policy(periods, now=_now())
    except KeysError as exc:
        _fail(str(exc))
    _report(
        cfg,
        {
            **_root_fields(auth),
            "number": policy.number,
            "periods": policy.periods(),
            "policy": str(path),
        },
        [
            f"retention policy {policy.number}: {path}",
            *(f"  {name:<24} {days} days" for name, days in policy.periods().items()),
            *_root_lines(auth),
        ],
    )


def _report_crl(
    cfg: AuthorityCliConfig, auth: Authority, crl: RevocationList, out: Path | None, first: str
) -> None:
    if out is not None:
        write_public_file(out, pem_encode(crl.der, PEM_CRL))
    path = out or auth.directory / "crl.pem"
    fields = {
        **_root_fields(auth),
        "crl": str(path),
        "crl_number": crl.number,
        "next_update": crl.next_update,
        "revoked": {str(serial): at for serial, at in sorted(crl.revoked.items())},
    }
    _report(
        cfg,
        fields,
        [
            first,
            f"revocation list {crl.number}: {path} ({len(crl.revoked)} revoked); publish it",
            *_root_lines(auth),
        ],
    )


@authority.command()
@click.argument("serial", type=click.IntRange(min=1))
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Also write the CRL here."
)
@pass_cfg
def revoke(cfg: AuthorityCliConfig, serial: int, out: Path | None) -> None:
    """Revoke certificate SERIAL and sign a new revocation list."""
    auth = cfg.open()
    record = auth.issued.get(serial)
    crl = auth.revoke(serial, now=_now())
    org = record.org if record is not None else "?"
    _report_crl(cfg, auth, crl, out, f"revoked certificate {serial} of {org}")


@authority.command()
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Also write the CRL here."
)
@click.option("--days", default=30, show_default=True, type=click.IntRange(1, 365))
@pass_cfg
def crl(cfg: AuthorityCliConfig, out: Path | None, days: int) -> None:
    """Sign a fresh revocation list (a new number each time)."""
    auth = cfg.open()
    revocations = auth.crl(now=_now(), days=days)
    _report_crl(cfg, auth, revocations, out, "signed a new revocation list")


@authority.group("linking-key", cls=_Group)
def linking_key() -> None:
    """Make linking keys and seal them to organisations."""


@linking_key.command("new")
@pass_cfg
def linking_key_new(cfg: AuthorityCliConfig) -> None:
    """Generate the next linking-key version (the key itself is never printed)."""
    auth = cfg.open()
    key = auth.new_linking_key()
    _report(
        cfg,
        {**_root_fields(auth), "version": key.version},
        [
            f"made linking key version {key.version}; seal it to each organisation",
            *_root_lines(auth),
        ],
    )


@authority.command("retire-linking-key")
@click.option("--version", "version", required=True, type=click.IntRange(1, 2**31 - 1))
@click.option(
    "--days",
    default=30,
    show_default=True,
    type=click.IntRange(0, 3650),
    help="The transition window left: the hub accepts this version's pseudonyms until then.",
)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@pass_cfg
def retire_linking_key(cfg: AuthorityCliConfig, version: int, days: int, out: Path) -> None:
    """End the move to the pseudonymisation services: retire a linking-key version.

    Until the window ends, signals carry both the old and the new pseudonyms, so that the
    hub links old signals to new ones; after it, the hub refuses the old version's
    pseudonyms and clients stop making them. Relay the file with 'publish'; then every
    organisation runs 'schakel org destroy-linking-key'.
    """
    if out.exists():
        _fail(f"refusing to overwrite {out}")
    auth = cfg.open()
    retirement = auth.retire_linking_key(version, now=_now(), days=days)
    write_public_file(out, canonical_json(retirement.to_wire()) + b"\n", overwrite=False)
    _report(
        cfg,
        {**_root_fields(auth), "version": version, "until": retirement.until, "file": str(out)},
        [
            f"retired linking key version {version}: the hub accepts its pseudonyms until "
            f"{_date(retirement.until)} ({retirement.until}); relay {out} with 'publish', then "
            "have every organisation run 'schakel org destroy-linking-key' after that day",
            *_root_lines(auth),
        ],
    )


def _load_bundle(path: Path) -> KeyBundle:
    return KeyBundle.from_wire(loads_strict(read_bounded(path, MAX_BUNDLE_BYTES)))


@linking_key.command("seal")
@click.option(
    "--bundle", "bundle_path", required=True, type=click.Path(dir_okay=False, path_type=Path)
)
@click.option(
    "--cert",
    "cert_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The organisation's certificate; default: the one named by the bundle, as issued here.",
)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@pass_cfg
def linking_key_seal(
    cfg: AuthorityCliConfig, bundle_path: Path, cert_path: Path | None, out: Path
) -> None:
    """Seal the current linking key to an organisation's key bundle.

    The organisation exports its bundle with `schakel org export-bundle`; the sealed key
    goes to the hub with `schakel authority publish`.
    """
    bundle = _load_bundle(bundle_path)
    auth = cfg.open()
    now = _now()
    if cert_path is None:
        cert = auth.issued_certificate(bundle.cert, now=now)
    else:
        cert_der = _read_pem_or_der(cert_path, PEM_CERTIFICATE, MAX_CERT_BYTES)
        cert = verify_certificate(cert_der, auth.root, now=now, crl=None)
    sealed = auth.seal_linking_key(bundle, cert, now=now)
    write_public_file(out, canonical_json(sealed.to_wire()) + b"\n", overwrite=False)
    fields = {
        **_root_fields(auth),
        "org": sealed.org,
        "version": sealed.version,
        "bundle_fingerprint": bundle.fingerprint,
        "certificate_fingerprint": cert.fingerprint,
        "sealed": str(out),
    }
    _report(
        cfg,
        fields,
        [
            f"sealed linking key version {sealed.version} to {sealed.org}: {out}",
            f"bundle fingerprint: {bundle.fingerprint}",
            f"certificate fingerprint: {cert.fingerprint}",
            *_root_lines(auth),
        ],
    )


@authority.command("oprf-certify")
@click.argument("request", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--url", required=True, help="Where the service answers, e.g. https://oprf-1.example.nl."
)
@click.option(
    "--version", type=click.IntRange(1, 2**31 - 1), help="Pseudonym version (default: chosen)."
)
@click.option("--days", default=365, show_default=True, type=click.IntRange(1, 3650))
@pass_cfg
def oprf_certify(
    cfg: AuthorityCliConfig, request: Path, out: Path, url: str, version: int | None, days: int
) -> None:
    """Certify a pseudonymisation service's key share (its request.json).

    Compare the public key printed here with the one the service's operator read out.
    """
    if out.exists():  # checked before the authority's state changes
        _fail(f"refusing to overwrite {out}")
    parsed = OprfKeyRequest.from_wire(loads_strict(read_bounded(request, 16 * 1024)))
    auth = cfg.open()
    statement = auth.certify_oprf_key(parsed, url=url, now=_now(), days=days, version=version)
    write_public_file(out, canonical_json(statement.to_wire()) + b"\n", overwrite=False)
    public = b64e(statement.public_key)
    fields = {
        **_root_fields(auth),
        "service": statement.service,
        "share": statement.share,
        "version": statement.version,
        "public_key": public,
        "url": statement.url,
        "not_after": statement.not_after,
        "statement": str(out),
    }
    _report(
        cfg,
        fields,
        [
            f"certified share {statement.share} of pseudonym version {statement.version} "
            f"for service {statement.service}: {out}",
            f"public key: {public} (must match the service's)",
            *_root_lines(auth),
        ],
    )


@authority.command()
@pass_cfg
def fingerprint(cfg: AuthorityCliConfig) -> None:
    """Print the root certificate's fingerprint (no passphrase needed)."""
    der = _read_pem_or_der(cfg.directory / "root.pem", PEM_CERTIFICATE, MAX_CERT_BYTES)
    root = load_root(der, now=_now())
    fields = {
        "network": root.network,
        "root_fingerprint": root.fingerprint,
        "root_key_fingerprint": key_fingerprint(root.public_key),
        "not_after": root.not_after,
    }
    _report(
        cfg,
        fields,
        [
            f"network: {root.network}",
            f"root fingerprint: {root.fingerprint}",
            f"root key fingerprint: {fields['root_key_fingerprint']}",
        ],
    )


@authority.command("list")
@pass_cfg
def list_issued(cfg: AuthorityCliConfig) -> None:
    """List the certificates issued, with their state."""
    auth = cfg.open()
    revoked = auth.revoked
    sorted_records = sorted(auth.issued.values(), key=lambda r: r.serial)
    rows = [
        {
            "serial": rec.serial,
            "org": rec.org,
            "kind": rec.kind,
            "roles": sorted(rec.roles),
            "not_after": rec.not_after,
            "certificate_fingerprint": rec.fingerprint,
            "key_fingerprint": rec.key,
            "revoked_at": revoked.get(rec.serial),
        }
        for rec in sorted_records
    ]
    lines = [_list_line(rec, revoked.get(rec.serial)) for rec in sorted_records]
    _report(
        cfg,
        {**_root_fields(auth), "certificates": rows, "crl_number": auth.crl_number},
        [*(lines or ["no certificates issued yet"]), *_root_lines(auth)],
    )


def _list_line(rec: IssuedCertificate, revoked_at: int | None) -> str:
    status = "revoked" if revoked_at is not None else f"valid until {_date(rec.not_after)}"
    roles = ",".join(sorted(rec.roles))
    return f"{rec.serial:>5}  {rec.org:<32} {roles:<40} {status}  {rec.fingerprint}"


def _date(seconds: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(seconds))


def _publishable(
    path: Path,
) -> tuple[
    str, bytes | SealedLinkingKey | OprfKeyStatement | Retirement | WitnessPolicy | RetentionPolicy
]:
    """A revocation list (PEM or DER), a sealed linking key, a pseudonymisation service's
    key statement, a linking key's retirement, a witness or retention policy (JSON), by its
    content."""
    data = read_bounded(path, MAX_CRL_BYTES)
    if data.lstrip().startswith(b"{"):
        document = loads_strict(data)
        if isinstance(document, dict) and "witnesses" in document:
            return "witness-policy", WitnessPolicy.from_wire(document)
        if isinstance(document, dict) and "access_log_days" in document:
            return "retention-policy", RetentionPolicy.from_wire(document)
        if isinstance(document, dict) and "suite" in document:
            return "oprf-key", OprfKeyStatement.from_wire(document)
        if isinstance(document, dict) and "until" in document:
            return "retirement", Retirement.from_wire(document)
        return "linking-key", SealedLinkingKey.from_wire(document)
    if data.lstrip().startswith(b"-----BEGIN"):
        return "crl", pem_decode(data, PEM_CRL)
    return "crl", data


async def _publish(hub_url: str, network: str, items: list[tuple[Path, str, Any]]) -> list[str]:
    lines = []
    async with HubClient(hub_url, network=network) as hub:
        for path, kind, item in items:
            if kind == "crl":
                await hub.put_crl(item)
                lines.append(f"{path}: revocation list published")
            elif kind == "retirement":
                created = await hub.put_retirement(item)
                state = "published" if created else "already held"
                lines.append(
                    f"{path}: retirement of linking key v{item.version} "
                    f"(until {item.until}) {state}"
                )
            elif kind == "oprf-key":
                created = await hub.put_oprf_key(item)
                state = "published" if created else "already held"
                lines.append(
                    f"{path}: key statement of {item.service} (share {item.share} of pseudonym "
                    f"version {item.version}, {item.url}) {state}"
                )
            elif kind == "witness-policy":
                number = await hub.put_witness_policy(item)
                lines.append(f"{path}: witness policy {number} published")
            elif kind == "retention-policy":
                number = await hub.put_retention_policy(item)
                lines.append(f"{path}: retention policy {number} published")
            else:
                created = await hub.put_linking_key(item)
                state = "published" if created else "already held"
                lines.append(f"{path}: linking key v{item.version} for {item.org} {state}")
    return lines


@authority.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@hub_url_option
@click.option("--network", required=True, callback=_network_option, help="The network id.")
@pass_cfg
def publish(cfg: AuthorityCliConfig, files: tuple[Path, ...], hub_url: str, network: str) -> None:
    """Relay revocation lists, sealed linking keys, the pseudonymisation services' key
    statements (from oprf-certify), linking-key retirements, witness policies and
    retention policies through the hub.

    Run it on a machine that reaches the hub, with files carried from the offline
    authority; no passphrase is needed. The hub checks the root's signature on each, and
    every client checks it again.
    """
    items = [(path, *_publishable(path)) for path in files]
    try:
        lines = asyncio.run(_publish(hub_url, network, items))
    except HubProblem as exc:
        _fail(f"the hub refused it: {exc}")
    except ClientError as exc:
        _fail(str(exc))
    _report(cfg, {"published": [str(path) for path, _, _ in items]}, lines)


repeat_on_commands(
    authority,
    [
        Repeated(
            "json",
            lambda name: click.Option(["--json", name], is_flag=True, help="One JSON object."),
        )
    ],
)
