"""``schakel witness``: run an always-on witness of the network's access log.

::

    schakel witness init --dir witness-keys --network region-west --org coordinator
    schakel authority certify-witness witness-keys/request.json --out witness-cert.json
    schakel witness import --dir witness-keys --root root.pem --cert witness-cert.json
    schakel witness serve --dir witness-keys --hub-cert hub-cert.pem [--crl crl.pem]

The passphrase of the key directory comes from ``--passphrase-fd N``, else the
environment variable named by ``--passphrase-env`` (default ``SCHAKEL_PASSPHRASE``), else
a prompt; never from an argument. Other settings come from ``SCHAKEL_WITNESS_*`` (see
:mod:`witness.config`), which the options override. Errors are one line on stderr and exit
code 1. ``SCHAKEL_WEAK_KDF=1`` (tests only) lets ``init`` use cheap key-file KDF costs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from sqlalchemy.exc import SQLAlchemyError

from keys.errors import KeysError
from keys.keyfile import kdf_params_from_env, read_bounded
from keys.passphrase import get_passphrase, passphrase_options
from keys.witness import WitnessKeys
from protocol.certificate import MAX_CERT_BYTES, MAX_CRL_BYTES, load_crl, pem_decode
from protocol.checkpoint import log_origin
from protocol.errors import ProtocolError
from protocol.types import NetworkId, OrgId, parse_network_id, parse_org_id
from protocol.witness import MAX_WITNESS_BYTES
from witness.config import ConfigError, WitnessConfig, system_clock
from witness.core import Cosigner, Witness, trusted_log
from witness.store import SchemaMismatch, WitnessStore

DEFAULT_DIR = "witness-keys"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
F = TypeVar("F", bound=Callable[..., Any])


class _Group(click.Group):
    """Turns the errors of keys, protocol, config and the database into one line, exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (KeysError, ProtocolError, ConfigError, SchemaMismatch) as exc:
            _fail(str(exc))
        except OSError as exc:
            _fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))
        except SQLAlchemyError as exc:
            _fail(f"database error: {type(exc).__name__}")


def _fail(message: str) -> NoReturn:
    raise click.ClickException(message.replace("\n", " "))


def _dir_option(func: F) -> F:
    return click.option(
        "--dir",
        "directory",
        envvar="SCHAKEL_WITNESS_DIR",
        default=DEFAULT_DIR,
        show_default=True,
        type=click.Path(file_okay=False, path_type=Path),
        help="The witness's key directory (env SCHAKEL_WITNESS_DIR).",
    )(func)


def _passphrase(env: str, fd: int | None, *, confirm: bool = False) -> bytes:
    return get_passphrase(env_var=env, fd=fd, prompt="Witness key passphrase: ", confirm=confirm)


Callback = Callable[[click.Context, click.Parameter, str], str]


def _checked(parse: Callable[[object], str]) -> Callback:
    def callback(ctx: click.Context, param: click.Parameter, value: str) -> str:
        try:
            return parse(value)
        except ProtocolError as exc:
            raise click.BadParameter(str(exc)) from exc

    return callback


def _der(path: Path, label: str, limit: int) -> bytes:
    data = read_bounded(path, 2 * limit)
    return pem_decode(data, label) if data.lstrip().startswith(b"-----BEGIN") else data


@click.group("witness", cls=_Group)
def witness() -> None:
    """An always-on witness: cosigns the hub's checkpoints it has checked (C2SP tlog-witness).

    It holds the latest checkpoint of the network's access log, cosigns only one that is
    consistent with it, and keeps evidence when the hub shows two histories.
    """


@witness.command()
@_dir_option
@click.option("--network", required=True, callback=_checked(parse_network_id), help="Network id.")
@click.option(
    "--org",
    required=True,
    callback=_checked(parse_org_id),
    help="The organisation that runs this witness (cosignatures count per organisation).",
)
@click.option("--name", help="Key name (default schakel.invalid/<network>/witness/<org>).")
@passphrase_options
def init(
    directory: Path, network: str, org: str, name: str | None, passphrase_env: str,
    passphrase_fd: int | None,
) -> None:  # fmt: skip
    """Create the witness key and its request in a new, empty directory."""
    params = kdf_params_from_env(os.environ)
    passphrase = _passphrase(passphrase_env, passphrase_fd, confirm=True)
    keys = WitnessKeys.create(
        directory, NetworkId(network), OrgId(org), passphrase, params, name=name,
        allow_weak=params.weak,
    )  # fmt: skip
    click.echo(f"created witness {keys.name} of {org} in {keys.directory}")
    click.echo(f"request: {keys.directory / 'request.json'} (send it to the authority)")
    click.echo(f"key fingerprint: {keys.key_fingerprint} (compare it with the authority)")


@witness.command("import")
@_dir_option
@click.option("--root", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--cert", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@passphrase_options
def import_(
    directory: Path, root: Path, cert: Path, passphrase_env: str, passphrase_fd: int | None
) -> None:
    """Pin the network root and store the witness certificate the authority issued."""
    keys = WitnessKeys.open(directory, _passphrase(passphrase_env, passphrase_fd))
    now = int(time.time())
    pinned = keys.pin_root(read_bounded(root, 2 * MAX_CERT_BYTES), now=now)
    issued = keys.import_witness_certificate(read_bounded(cert, MAX_WITNESS_BYTES), now=now)
    click.echo(f"pinned root {pinned.fingerprint} of network {pinned.network}")
    click.echo(f"witness certificate {issued.serial} valid until {issued.not_after}")
    click.echo(f"vkey: {issued.verifier().vkey().text()}")
    click.echo(f"follows log: {log_origin(pinned)}")


@witness.command()
@_dir_option
@click.option(
    "--hub-cert",
    "hub_certs",
    multiple=True,
    required=True,
    envvar="SCHAKEL_WITNESS_HUB_CERT",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The hub's certificate (PEM or DER); repeat it while the hub changes keys "
    "(env SCHAKEL_WITNESS_HUB_CERT, paths separated by ':').",
)
@click.option(
    "--crl",
    envvar="SCHAKEL_WITNESS_CRL",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The network's newest revocation list: a revoked hub key is not trusted.",
)
@click.option("--host", help="Address to listen on (env SCHAKEL_WITNESS_HOST; 127.0.0.1).")
@click.option(
    "--port", type=click.IntRange(0, 65535), help="Port (env SCHAKEL_WITNESS_PORT; 8480)."
)
@click.option("--database-url", metavar="URL", help="Env SCHAKEL_WITNESS_DATABASE_URL.")
@click.option(
    "--evidence-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where evidence files go (env SCHAKEL_WITNESS_EVIDENCE_DIR).",
)
@passphrase_options
@click.option("--log-level", default="INFO", show_default=True, help="Logging level.")
def serve(
    directory: Path, hub_certs: tuple[Path, ...], crl: Path | None, host: str | None,
    port: int | None, database_url: str | None, evidence_dir: Path | None,
    passphrase_env: str, passphrase_fd: int | None, log_level: str,
) -> None:  # fmt: skip
    """Serve add-checkpoint until SIGINT or SIGTERM."""
    from witness.app import serve as run  # aiohttp is needed only here

    keys = WitnessKeys.open(directory, _passphrase(passphrase_env, passphrase_fd))
    certificate = keys.witness_certificate
    now = system_clock()
    root = keys.root
    revocations = None
    if crl is not None:
        revocations = load_crl(_der(crl, "X509 CRL", MAX_CRL_BYTES), root, now=now)
    ders = [_der(path, "CERTIFICATE", MAX_CERT_BYTES) for path in hub_certs]
    log = trusted_log(root, ders, crl=revocations, now=now)
    config = WitnessConfig.from_env(os.environ)
    overrides: dict[str, Any] = {
        "host": host, "port": port, "database_url": database_url, "evidence_dir": evidence_dir,
    }  # fmt: skip
    config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr, format=LOG_FORMAT)
    cosigner = Cosigner(keys.signing_key, certificate.name)
    asyncio.run(_serve(config, root, log, cosigner, run))


async def _serve(config: WitnessConfig, root: Any, log: Any, cosigner: Cosigner, run: Any) -> None:
    store = await WitnessStore.open(config.database_url)
    witness_ = Witness(
        store, root, [log], cosigner, clock=system_clock, evidence_dir=config.evidence_dir
    )
    click.echo(f"witness {cosigner.name} listening on {config.host}:{config.port}", err=True)
    await run(config, witness_, store)
