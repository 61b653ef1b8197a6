"""A local demo network: every party of a Schakel network on one machine.

``schakel demo run`` (what ``make run`` calls) provisions, on first use, a
network in ``./var/demo``::

    var/demo/
      authority/            the network authority (root key and certificate)
      hub/                  the hub's keys: log-signing key + certificate, token key
      hub.db                the hub's SQLite database
      oprf/oprf-1, oprf-2/  the two pseudonymisation services' key shares
      oprf-1.db, oprf-2.db  their SQLite databases (counts and audit, never what)
      orgs/<org>/           one SCHAKEL_HOME per organisation: keys/ (with witness/)
                            and state.sqlite
      witness/, witness.db  the always-on witness (schakel.demowitness)
      witness-policy.json   the authority's witness policy (quorum 2)
      authority/retention-policy-1.json
                            the network's retention policy (the defaults), published
      env.sh                the environment to act as an organisation

then starts the hub on 127.0.0.1:8443 and both pseudonymisation services (in this
process, on free ports: their key statements are renewed for those addresses at each
start and relayed through the hub), publishes every organisation's certificate and
key bundle, starts a desk (the organisation's web application) for each organisation
on the ports after ``--desk-port`` (8501 by default), and prints each desk's address,
how to log in to it, and how to act as each organisation from another terminal. One
always-on witness runs beside the hub, which submits each new checkpoint to it; every
organisation's client cosigns the heads it checked, and relies on a head once two
organisations did.

The demo network starts on the OPRF, as new networks do: no organisation holds a
linking key, and every pseudonym is made by the two services. (A demo directory
provisioned before the services existed keeps its linking key and runs without them.)

The demo protects its keys with one published passphrase and the cheapest
key-derivation settings. It is for trying Schakel, never for real data.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from ssl import SSLContext
from typing import TextIO

import click
from aiohttp import web

from clients.errors import HubProblem
from clients.hub_client import HubClient, Purpose
from clients.organisation import Organisation
from clients.state import LocalState
from desk.demo import DEMO_PASSWORD
from hub.app import serve
from hub.config import HubConfig, Limits
from hub.errors import StartError
from hub.logs import LineFormatter, configure_logging
from keys.authority import Authority
from keys.hub import HubKeys
from keys.keyfile import KdfParams
from keys.organisation import OrgKeys
from keys.pseudonymiser import ServiceKeys
from protocol.certificate import (
    ORG_TYPE_OTHER,
    ROLE_COORDINATOR,
    ROLE_MEMBER,
    ROLE_NETWORK_PRIVACY_OFFICER,
    ROLE_PRIVACY_OFFICER,
)
from protocol.encoding import loads_strict
from protocol.retention import RetentionPolicy
from protocol.types import NetworkId, OrgId, ServiceName
from pseudonymiser.config import ServiceConfig
from pseudonymiser.service import KeyShare
from pseudonymiser.web import make_app as make_service_app
from schakel.demowitness import (
    provision_witnesses,
    publish_policy,
    running_witness,
    witness_dir,
)

NETWORK = NetworkId("demo")
PASSPHRASE = "demo-only-passphrase"  # noqa: S105 - published on purpose, demo only
DEMO_USER = "demo.user"  # the user id the demo's own requests carry (Schakel-User)
DEMO_PURPOSE = "case-coordination"
# Every organisation's own privacy officer works from that organisation's directory;
# `privacy` is the network's privacy officer (sees the whole access log).
ORGS: Mapping[str, tuple[str, ...]] = {
    "police": (ROLE_MEMBER, ROLE_PRIVACY_OFFICER),
    "ggd": (ROLE_MEMBER, ROLE_PRIVACY_OFFICER),
    "school": (ROLE_MEMBER, ROLE_PRIVACY_OFFICER),
    "municipality": (ROLE_MEMBER, ROLE_PRIVACY_OFFICER),
    "shelter": (ROLE_MEMBER, ROLE_PRIVACY_OFFICER),
    "legal-aid": (ROLE_MEMBER, ROLE_PRIVACY_OFFICER),
    "coordinator": (ROLE_MEMBER, ROLE_COORDINATOR, ROLE_PRIVACY_OFFICER),
    "privacy": (ROLE_MEMBER, ROLE_NETWORK_PRIVACY_OFFICER),
}
MARKER = "provisioned.json"
SERVICES = ("oprf-1", "oprf-2")  # share 1 and share 2 (two parties outside the demo)
DESK_ORGS = tuple(org for org in ORGS if org != "privacy")  # each gets a desk in `demo run`
# What kind of organisation each demo organisation is (its certificate says so).
TYPES: Mapping[str, str] = {
    "police": "police",
    "ggd": "ggd",
    "school": "school",
    "municipality": "municipality",
    "shelter": "shelter",
    "legal-aid": "legal_aid",
    "coordinator": "coordination",
}


@dataclass(frozen=True, slots=True)
class DemoNetwork:
    """Where the parts of a provisioned demo network live."""

    directory: Path
    network: NetworkId
    orgs: tuple[OrgId, ...]
    passphrase: bytes

    @property
    def authority_dir(self) -> Path:
        return self.directory / "authority"

    @property
    def hub_dir(self) -> Path:
        return self.directory / "hub"

    @property
    def database_url(self) -> str:
        return f"sqlite+aiosqlite:///{self.directory / 'hub.db'}"

    def home(self, org: str) -> Path:
        return self.directory / "orgs" / org

    @property
    def oprf_dir(self) -> Path:
        return self.directory / "oprf"

    @property
    def on_oprf(self) -> bool:
        """Provisioned with the two pseudonymisation services (else: a linking key)."""
        return self.oprf_dir.is_dir()

    def root_der(self) -> bytes:
        return Authority.open(self.authority_dir, self.passphrase).root.der


def provision(
    directory: Path,
    *,
    now: int,
    orgs: Mapping[str, tuple[str, ...]] = ORGS,
    passphrase: bytes = PASSPHRASE.encode(),
    network: NetworkId = NETWORK,
    oprf: bool = False,
) -> DemoNetwork:
    """The offline steps: authority, hub keys, organisation keys and certificates; with
    ``oprf`` the two pseudonymisation services' key shares, else a linking key."""
    directory.mkdir(parents=True, exist_ok=True)
    params = KdfParams.for_tests()
    authority = Authority.create(
        directory / "authority", network, passphrase, params, now=now, allow_weak=True
    )
    hub_keys = HubKeys.create(directory / "hub", network, passphrase, params, allow_weak=True)
    hub_keys.pin_root(authority.root.der, now=now)
    hub_keys.import_certificate(authority.certify_hub(hub_keys.request_der, now=now).der, now=now)
    for org, roles in orgs.items():
        keys = OrgKeys.create(
            directory / "orgs" / org / "keys",
            network,
            OrgId(org),
            passphrase,
            params,
            allow_weak=True,
        )
        keys.pin_root(authority.root.der, now=now)
        org_type = TYPES.get(org, ORG_TYPE_OTHER)
        cert = authority.enrol(keys.request_der, roles, now=now, org_type=org_type)
        keys.import_certificate(cert.der, now=now)
    if oprf:
        for share, name in enumerate(SERVICES, start=1):
            ServiceKeys.create(
                directory / "oprf" / name,
                network,
                ServiceName(name),
                share,
                passphrase,
                params,
                allow_weak=True,
            )
    else:
        authority.new_linking_key()
    return DemoNetwork(directory, network, tuple(OrgId(o) for o in orgs), passphrase)


def mark_ready(demo: DemoNetwork) -> None:
    """Record that provisioning and bootstrap finished; ``load`` finds the network again."""
    record = {"network": demo.network, "orgs": list(demo.orgs)}
    (demo.directory / MARKER).write_text(json.dumps(record) + "\n")


def reset(directory: Path) -> None:
    """Remove what an interrupted first run left behind (demo directories only)."""
    for name in ("authority", "hub", "orgs", "oprf", "witness", "witness-evidence"):
        if (directory / name).is_dir():
            shutil.rmtree(directory / name)
    for pattern in ("hub.db*", "oprf-*.db*", "witness.db*", "witness-policy.json"):
        for path in directory.glob(pattern):
            path.unlink()


def load(directory: Path, *, passphrase: bytes = PASSPHRASE.encode()) -> DemoNetwork | None:
    """The demo network provisioned earlier in ``directory``, if any."""
    marker = directory / MARKER
    if not marker.is_file():
        return None
    data = json.loads(marker.read_text())
    return DemoNetwork(
        directory, NetworkId(data["network"]), tuple(OrgId(o) for o in data["orgs"]), passphrase
    )


def open_organisation(
    demo: DemoNetwork,
    org: str,
    base_url: str,
    *,
    clock: Callable[[], float] = time.time,
    user: str = DEMO_USER,
    purpose: str = DEMO_PURPOSE,
    ssl: SSLContext | None = None,
    attempts: int = 3,
) -> Organisation:
    """An ``Organisation`` acting for one demo organisation (the caller closes it).

    ``ssl`` trusts another CA than the system's (a hub behind a test proxy); ``attempts``
    is how often the client tries a request that failed in transit.
    """
    keys = OrgKeys.open(demo.home(org) / "keys", demo.passphrase)
    hub = HubClient(
        base_url,
        network=demo.network,
        org=org,
        signing_key=keys.signing_key,
        user=user,
        purpose=Purpose(purpose),
        ssl=ssl,
        attempts=attempts,
    )
    return Organisation(keys, LocalState(demo.home(org) / "state.sqlite"), hub, clock=clock)


async def bootstrap(demo: DemoNetwork, base_url: str, *, now: int) -> None:
    """The online steps: publish certificates and bundles, CRL, and (on a linking-key
    network) relay the linking key sealed to each organisation."""
    authority = Authority.open(demo.authority_dir, demo.passphrase)
    linking = bool(authority.linking_key_versions)
    async with HubClient(base_url, network=demo.network) as anonymous:
        await anonymous.put_crl(authority.crl(now=now).der)
        for org in demo.orgs:
            organisation = open_organisation(demo, org, base_url)
            try:
                async with organisation.hub:
                    _, published = await organisation.publish()
                    if not linking:
                        continue
                    bundle = await organisation.hub.get_bundle(published)
                    cert = organisation.certificate()
                    sealed = authority.seal_linking_key(bundle, cert, now=now)
                    await anonymous.put_linking_key(sealed)
                    await organisation.fetch_linking_keys()
            finally:
                organisation.state.close()


@contextlib.asynccontextmanager
async def pseudonymisation_services(
    demo: DemoNetwork, base_url: str, *, host: str, now: int
) -> AsyncIterator[tuple[str, ...]]:
    """Both pseudonymisation services, in this process on free ports of ``host``; their
    key statements renewed for those addresses and relayed through the hub. Their URLs."""
    authority = Authority.open(demo.authority_dir, demo.passphrase)
    runners: list[web.AppRunner] = []
    try:
        statements = []
        for name in SERVICES:
            keys = ServiceKeys.open(demo.oprf_dir / name, demo.passphrase)
            sock = socket.socket()
            sock.bind((host, 0))
            port = sock.getsockname()[1]
            statement = authority.certify_oprf_key(
                keys.request, url=f"http://{host}:{port}", now=now
            )
            config = ServiceConfig(
                network=demo.network,
                service=ServiceName(name),
                root_der=authority.root.der,
                database_url=f"sqlite+aiosqlite:///{demo.directory / f'{name}.db'}",
                host=host,
                port=port,
                crl_url=f"{base_url}/v1/directory/crl",
            )
            app = make_service_app(config, {statement.version: KeyShare(keys.key, statement)})
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            runners.append(runner)
            await web.SockSite(runner, sock).start()
            statements.append(statement)
        async with HubClient(base_url, network=demo.network) as anonymous:
            for statement in statements:
                await anonymous.put_oprf_key(statement)
        yield tuple(statement.url for statement in statements)
    finally:
        for runner in runners:
            await runner.cleanup()


async def publish_retention_policy(demo: DemoNetwork, base_url: str, *, now: int) -> int:
    """Sign the network's retention policy once (the defaults: SECURITY.md says why) and
    upload it to the hub, as ``schakel authority retention-policy`` and ``publish`` do."""
    path = demo.authority_dir / "retention-policy-1.json"
    if not path.is_file():
        Authority.open(demo.authority_dir, demo.passphrase).retention_policy({}, now=now)
    policy = RetentionPolicy.from_wire(loads_strict(path.read_bytes()))
    async with HubClient(base_url, network=demo.network) as anonymous:
        return await anonymous.put_retention_policy(policy)


def hub_config(
    demo: DemoNetwork, *, host: str, port: int, witness_urls: tuple[str, ...] = ()
) -> HubConfig:
    return HubConfig(
        network=demo.network,
        root_der=demo.root_der(),
        issuer=f"schakel-hub:{demo.network}",
        audience=f"schakel:{demo.network}",
        database_url=demo.database_url,
        host=host,
        port=port,
        # Every organisation of the demo, desks included, reaches the hub from this one
        # address: the per-address limits (requests before login, open connections) are
        # raised to fit eight of them.
        limits=Limits(address_rate_per_sec=40, address_burst=400, connections_per_address=800),
        witness_urls=witness_urls,
    )


def env_script(demo: DemoNetwork, base_url: str) -> str:
    return (
        "# Source this file to act as a demo organisation; then pick one:\n"
        f"#   export SCHAKEL_HOME={demo.directory}/orgs/police\n"
        f"export SCHAKEL_HUB_URL={base_url}\n"
        f"export SCHAKEL_PASSPHRASE={PASSPHRASE}\n"
        "export SCHAKEL_WEAK_KDF=1\n"
        f"export SCHAKEL_USER={DEMO_USER}\n"
        f"export SCHAKEL_PURPOSE={DEMO_PURPOSE}\n"
    )


def banner(demo: DemoNetwork, base_url: str) -> str:
    homes = "\n".join(f"  {org:<13} export SCHAKEL_HOME={demo.home(org)}" for org in demo.orgs)
    return f"""
Schakel demo hub on {base_url}  (network "{demo.network}", database {demo.directory}/hub.db)

Act as an organisation from another terminal, in this directory:
  source {demo.directory}/env.sh
and then choose who you are:
{homes}
  .venv/bin/schakel org status
and, as the network's privacy officer, check the access log:
  export SCHAKEL_HOME={demo.home("privacy")}
  .venv/bin/schakel audit verify --full

The demo's keys use the passphrase "{PASSPHRASE}" and weak key derivation:
never put real data into it. Stop the hub with Ctrl-C; `make run` again reuses it.
"""


async def run(
    directory: Path, *, host: str, port: int, desk_port: int | None = None, witness_port: int = 0
) -> None:
    """Provision on first use, start the witness and the hub, bootstrap, start the desks,
    print, serve."""
    demo = load(directory)
    fresh = demo is None
    if demo is None:
        reset(directory)
        demo = provision(directory, now=int(time.time()), oprf=True)
    if not witness_dir(demo).is_dir():  # first run, or a demo made before witnesses
        provision_witnesses(demo, now=int(time.time()))
    async with running_witness(demo, host=host, port=witness_port) as witness_url:
        await _run(demo, fresh, host=host, port=port, desk_port=desk_port, witness=witness_url)


async def _run(
    demo: DemoNetwork, fresh: bool, *, host: str, port: int, desk_port: int | None, witness: str
) -> None:
    directory = demo.directory
    base_url = f"http://{host}:{port}"
    hub_keys = HubKeys.open(demo.hub_dir, demo.passphrase)
    config = hub_config(demo, host=host, port=port, witness_urls=(witness,))
    hub_cert = _hub_cert(hub_keys)
    hub = asyncio.create_task(
        serve(
            config,
            token_key_pem=hub_keys.token_key_pem,
            hub_certificate_der=hub_cert,
            log_signing_key=None if hub_cert is None else hub_keys.signing_key,
        )
    )
    await wait_until_listening(host, port, hub)
    async with contextlib.AsyncExitStack() as desks:
        services = ""
        if demo.on_oprf:
            urls = await desks.enter_async_context(
                pseudonymisation_services(demo, base_url, host=host, now=int(time.time()))
            )
            services = services_banner(urls)
        if fresh:
            await bootstrap(demo, base_url, now=int(time.time()))
            (directory / "env.sh").write_text(env_script(demo, base_url))
            mark_ready(demo)
        with contextlib.suppress(HubProblem):  # 409: the hub holds this policy already
            await publish_policy(demo, base_url)
        with contextlib.suppress(HubProblem):  # 409: and this one
            await publish_retention_policy(demo, base_url, now=int(time.time()))
        if desk_port is None:
            click.echo(banner(demo, base_url) + services + witness_banner(witness))
            await hub
            return
        lines = []
        for index, org in enumerate(DESK_ORGS):
            desk_url, person = await desks.enter_async_context(
                _demo_desk(demo, org, base_url, host=host, port=desk_port + index)
            )
            lines.append(f"  {org:<13} {desk_url:<24} user {person}")
        click.echo(banner(demo, base_url) + services + witness_banner(witness) + desk_banner(lines))
        await hub


def services_banner(urls: tuple[str, ...]) -> str:
    return (
        "\nPseudonymisation services (every pseudonym is made by both; neither can alone):\n"
        + "\n".join(f"  {name:<13} {url}" for name, url in zip(SERVICES, urls, strict=True))
        + "\n"
    )


def witness_banner(url: str) -> str:
    return (
        f"\nAlways-on witness of the network authority on {url}: the hub submits each new\n"
        "tree head to it, every organisation's client cosigns the heads it checked, and a\n"
        "head is relied on once two organisations cosigned it (schakel audit verify says who).\n"
    )


def desk_banner(lines: list[str]) -> str:
    return (
        "\nDesks (the organisations' web applications, in Dutch), one per organisation:\n"
        + "\n".join(lines)
        + f'\nLog in with the password "{DEMO_PASSWORD}"; the second step shows the current '
        'code in a box\nmarked "alleen demo" (demo only). Open them in a browser on this '
        "machine.\n"
    )


@contextlib.asynccontextmanager
async def _demo_desk(
    demo: DemoNetwork, org: str, base_url: str, *, host: str, port: int
) -> AsyncIterator[tuple[str, str]]:
    """One organisation's desk in this process, with its demo person."""
    from desk.app import running_desk
    from desk.config import DeskConfig, PasswordCost
    from desk.demo import ensure_demo_person

    url = f"http://localhost:{port}"
    config = DeskConfig(
        home=demo.home(org),
        hub_url=base_url,
        origin=url,
        host=host,
        port=port,
        demo=True,
        password_cost=PasswordCost.for_tests(),
        allow_weak=True,
    )
    async with running_desk(config, demo.passphrase) as services:
        person = ensure_demo_person(services)
        yield url, person.id


async def wait_until_listening(host: str, port: int, server: asyncio.Task[None]) -> None:
    """Return once the hub accepts connections; raise what the hub raised if it died."""
    for _ in range(200):
        if server.done():
            server.result()
            raise RuntimeError("the hub stopped before it started listening")
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.1)  # a port held by another process: our server fails by now
        if server.done():
            server.result()
        return
    server.cancel()
    raise RuntimeError(f"the hub did not start listening on {host}:{port} within 10 s")


def _hub_cert(hub_keys: HubKeys) -> bytes | None:
    cert = hub_keys.certificate
    return cert.der if cert is not None else None


@click.group("demo")
def demo() -> None:
    """A local demo network for trying Schakel on one machine."""


@demo.command("run")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("var/demo"),
    show_default=True,
    help="Where the demo network lives.",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8443, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--desk-port",
    default=8501,
    show_default=True,
    type=click.IntRange(0, 65000),
    help="Port of the first organisation's desk; the others follow. 0: no desks.",
)
@click.option(
    "--witness-port",
    default=0,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port of the always-on witness; 0: a free one.",
)
def run_command(directory: Path, host: str, port: int, desk_port: int, witness_port: int) -> None:
    """Provision the demo network on first use and run its hub, witness and desks (`make run`).

    Each request to the hub is shown as one line (method, route, status, time,
    organisation; never query values, ids, pseudonyms or headers).
    """
    os.environ.setdefault("SCHAKEL_WEAK_KDF", "1")
    configure_demo_logging(sys.stderr)
    try:
        asyncio.run(
            run(
                directory,
                host=host,
                port=port,
                desk_port=desk_port or None,
                witness_port=witness_port,
            )
        )
    except KeyboardInterrupt:
        click.echo("hub stopped")
    except StartError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:  # a desk's port
        raise click.ClickException(
            f"cannot start the demo on {host} (hub port {port}, desks from {desk_port}): "
            f"{exc.strerror or exc}"
        ) from None


def configure_demo_logging(stream: TextIO) -> None:
    """The hub's filtered logging, one short line per record (``hub.logs.LineFormatter``)."""
    configure_logging(logging.INFO, stream=stream, formatter=LineFormatter())
    # Schema migrations at start say nothing a newcomer can use (and their arguments are
    # redacted): only their warnings and errors are shown.
    logging.getLogger("alembic").setLevel(logging.WARNING)
