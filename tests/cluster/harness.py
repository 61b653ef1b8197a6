"""The pieces of the cluster tests: nginx, hub replicas as child processes, TLS, listeners.

* ``ensure_nginx``: Debian's nginx, installed with apt-get when it is missing and
  the tests run as root (a ``policy-rc.d`` keeps the package from starting a
  system nginx on port 80); ``NginxMissing`` says why it could not be had.
* ``make_tls``: a throwaway CA and a server certificate for ``localhost`` and
  127.0.0.1, written to files nginx reads; ``client_ssl`` trusts only that CA.
* ``render_nginx_conf``: the shipped ``deploy/nginx/schakel.conf`` with this test's
  replica ports, listen port, certificate and log paths put in by plain string
  replacement (each replaced text must occur exactly as often as expected, so an
  edit of the shipped file that the rendering would silently miss fails here).
* ``running_nginx``: that file inside a minimal ``nginx.conf``, run in the
  foreground as a child process with its own prefix directory; never the system
  service.
* ``migrate`` / ``running_replicas``: ``schakel hub migrate`` once, then ``python -m
  schakel hub serve --no-migrate`` (the operator's own command) per replica, each on a
  free loopback port, with the hub's rate limits raised as the benchmark does.
* ``Listener``: a WebSocket to ``/v1/ws`` that collects the message notices it gets.
* ``seal_signal`` / ``send_until_answered``: a signal sealed once and posted again
  (the same bytes) until the hub answers it, as a client that retries does.
* ``fetch``: rows from the hub's database, to check what the hub committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import fcntl
import getpass
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy.ext.asyncio import create_async_engine

from bench.hub_server import RAISED_LIMITS, access_token
from bench.loadgen import LOOPBACK, free_port, server_process, stop_process
from clients.errors import HubProblem, HubUnreachable
from clients.hub_client import HubClient
from clients.organisation import Organisation
from clients.payloads import encode_payload, validate_payload
from hub.config import Limits
from keys.organisation import OrgKeys
from protocol.envelope import Envelope, new_message_id, seal
from protocol.keybundle import KeyBundle
from protocol.types import OrgId
from schakel.demo import DEMO_USER, DemoNetwork, open_organisation

REPO = Path(__file__).resolve().parents[2]
SHIPPED_NGINX_CONF = REPO / "deploy" / "nginx" / "schakel.conf"
SERVER_NAME = "localhost"  # what the clients connect to (an IP literal sends no SNI)
RETRY_STATUSES = frozenset({429, 502, 503, 504})  # answered by nginx while a replica dies
APT_PACKAGES = ("nginx", "nginx-light")  # Debian 12: nginx is the binary, -light adds a module


# -- nginx: installed if missing --------------------------------------------------------


class NginxMissing(RuntimeError):
    """nginx is not installed and could not be installed here; the message says why."""


def ensure_nginx() -> str:
    """The path of the nginx binary, installing Debian's package first if need be.

    Test processes running side by side (pytest-xdist) take turns: apt-get allows one.
    """
    found = _which_nginx()
    if found is not None:
        return found
    lock = Path(tempfile.gettempdir()) / "schakel-tests-nginx-install.lock"
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        return _which_nginx() or _install_nginx()


def _install_nginx() -> str:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise NginxMissing("nginx is not installed (and installing needs root with apt-get)")
    errors = []
    for package in APT_PACKAGES:
        if not _apt_knows(package):
            continue
        result = _apt_install(package)
        if result.returncode != 0 and "Unable to locate" in result.stderr + result.stdout:
            subprocess.run(["apt-get", "update"], capture_output=True, text=True, check=False)
            result = _apt_install(package)
        found = _which_nginx()
        if found is not None:
            return found
        errors.append(f"{package}: {(result.stderr or result.stdout).strip()[-300:]}")
    raise NginxMissing("could not install nginx: " + ("; ".join(errors) or "no package found"))


def _which_nginx() -> str | None:
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")


def _apt_knows(package: str) -> bool:
    policy = subprocess.run(
        ["apt-cache", "policy", package], capture_output=True, text=True, check=False
    )
    return "Candidate:" in policy.stdout and "Candidate: (none)" not in policy.stdout


def _apt_install(package: str) -> subprocess.CompletedProcess[str]:
    """apt-get install, with a policy-rc.d (only if none exists) so no service starts."""
    policy = Path("/usr/sbin/policy-rc.d")
    written = not policy.exists()
    if written:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        argv = ["apt-get", "install", "-y", "--no-install-recommends", package]
        return subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    finally:
        if written:
            policy.unlink()


# -- TLS: a throwaway CA and server certificate -----------------------------------------


@dataclass(frozen=True, slots=True)
class Tls:
    ca: Path
    certificate: Path
    key: Path


def make_tls(directory: Path) -> Tls:
    """A CA and a certificate for ``localhost`` and 127.0.0.1 that it signed, as PEM files."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "schakel cluster test CA")])
    ca = (
        _builder(ca_name, ca_name, ca_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName(SERVER_NAME), x509.IPAddress(ipaddress.ip_address(LOOPBACK))]
    server_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_NAME)])
    server = (
        _builder(server_name, ca_name, key.public_key(), now)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    tls = Tls(directory / "ca.pem", directory / "fullchain.pem", directory / "privkey.pem")
    tls.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    tls.certificate.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    tls.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    tls.key.chmod(0o600)
    return tls


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: Any, now: datetime.datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


def client_ssl(tls: Tls) -> ssl.SSLContext:
    """A client context that trusts only the test CA (and checks the host name)."""
    return ssl.create_default_context(cafile=str(tls.ca))


# -- nginx: the shipped file, rendered and run ------------------------------------------


def _replace(text: str, old: str, new: str, count: int = 1) -> str:
    found = text.count(old)
    if found != count:
        raise AssertionError(
            f"deploy/nginx/schakel.conf: expected {count} x {old!r}, found {found}; "
            "update tests/cluster/harness.py together with the shipped file"
        )
    return text.replace(old, new)


def render_nginx_conf(
    shipped: str,
    *,
    upstreams: Sequence[int],
    port: int,
    tls: Tls,
    logs: Path,
    address_rate: int | None = None,
) -> str:
    """The shipped file for this test: replicas, listen port, name, certificates, logs.

    ``address_rate`` (requests per second) replaces nginx's per-address limit where a
    test sends from one address faster than the shipped 20/s, as the benchmark raises
    the hub's own limits; the limit itself stays in force.
    """
    servers = "".join(
        f"    server {LOOPBACK}:{p} max_fails=3 fail_timeout=10s;\n" for p in upstreams
    )
    text = _replace(
        shipped,
        "    server 127.0.0.1:8001 max_fails=3 fail_timeout=10s;\n"
        "    server 127.0.0.1:8002 max_fails=3 fail_timeout=10s;\n",
        servers,
    )
    text = _replace(
        text, "listen 443 ssl default_server;", f"listen {LOOPBACK}:{port} ssl default_server;"
    )
    text = _replace(text, "listen 443 ssl;", f"listen {LOOPBACK}:{port} ssl;")
    text = _replace(text, "server_name hub.example.org;", f"server_name {SERVER_NAME};")
    text = _replace(text, "/etc/schakel/tls/fullchain.pem", str(tls.certificate))
    text = _replace(text, "/etc/schakel/tls/privkey.pem", str(tls.key))
    text = _replace(text, "/var/log/nginx/access.log", str(logs / "access.log"))
    text = _replace(text, "/var/log/nginx/error.log", str(logs / "error.log"))
    if address_rate is not None:
        text = _replace(text, "rate=20r/s;", f"rate={address_rate}r/s;")
    return text


@dataclass
class Nginx:
    base_url: str
    directory: Path
    process: subprocess.Popen[bytes]

    @property
    def access_log(self) -> Path:
        return self.directory / "access.log"

    def access_lines(self) -> list[dict[str, Any]]:
        """The JSON lines of the access log (the shipped ``schakel_route`` format)."""
        if not self.access_log.exists():
            return []
        text = self.access_log.read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def _main_conf(directory: Path) -> str:
    temp = {
        name: directory / "temp" / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")
    }
    for path in temp.values():
        path.mkdir(parents=True, exist_ok=True)
    # As root, nginx's workers would run as nobody, who can not enter the test's
    # private temporary directory: keep them as the user running the tests.
    user = f"user {getpass.getuser()};\n" if os.geteuid() == 0 else ""
    return (
        f"{user}worker_processes 1;\n"
        "events { worker_connections 512; }\n"
        "http {\n"
        f"    client_body_temp_path {temp['body']};\n"
        f"    proxy_temp_path {temp['proxy']};\n"
        f"    fastcgi_temp_path {temp['fastcgi']};\n"
        f"    uwsgi_temp_path {temp['uwsgi']};\n"
        f"    scgi_temp_path {temp['scgi']};\n"
        f"    include {directory / 'schakel.conf'};\n"
        "}\n"
    )


@contextlib.contextmanager
def running_nginx(
    binary: str,
    directory: Path,
    tls: Tls,
    upstreams: Sequence[int],
    *,
    address_rate: int | None = None,
) -> Iterator[Nginx]:
    """The shipped config in front of ``upstreams``, run in the foreground until the end."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    shipped = SHIPPED_NGINX_CONF.read_text(encoding="utf-8")
    rendered = render_nginx_conf(
        shipped, upstreams=upstreams, port=port, tls=tls, logs=directory, address_rate=address_rate
    )
    (directory / "schakel.conf").write_text(rendered)
    (directory / "nginx.conf").write_text(_main_conf(directory))
    globals_ = f"daemon off; pid {directory / 'nginx.pid'}; error_log {directory / 'main.log'};"
    base = [binary, "-p", str(directory), "-e", str(directory / "main.log")]
    argv = [*base, "-c", str(directory / "nginx.conf"), "-g", globals_]
    check = subprocess.run([*argv, "-t"], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        raise AssertionError(f"nginx -t refused the rendered config: {check.stderr[-1500:]}")
    with server_process("nginx", argv, port=port, log=directory / "stdout.log") as process:
        yield Nginx(f"https://{SERVER_NAME}:{port}", directory, process)


# -- hub replicas -----------------------------------------------------------------------


def hub_env(demo: DemoNetwork, limits: Limits = RAISED_LIMITS) -> dict[str, str]:
    """The environment of a hub child process: passphrase and raised rate limits."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHAKEL_")}
    env["SCHAKEL_PASSPHRASE"] = demo.passphrase.decode("utf-8")
    for name, value in asdict(limits).items():
        env[f"SCHAKEL_HUB_LIMIT_{name.upper()}"] = str(value)
    return env


def migrate(database_url: str, demo: DemoNetwork) -> None:
    """``schakel hub migrate`` once, before replicas start (they then skip it if they can)."""
    argv = [sys.executable, "-m", "schakel", "hub", "migrate", "--database-url", database_url]
    result = subprocess.run(
        argv, capture_output=True, text=True, env=hub_env(demo), cwd=REPO, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"schakel hub migrate failed: {result.stderr[-1000:]}")


def serve_skips_migration() -> bool:
    """Whether ``schakel hub serve`` has ``--no-migrate`` (replicas must not race to migrate)."""
    from hub.cli import serve

    return any("--no-migrate" in (*p.opts, *p.secondary_opts) for p in serve.params)


@dataclass
class Replica:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, no goodbye to the database."""
        self.process.kill()
        self.process.wait()


def _replica_argv(demo: DemoNetwork, database_url: str, port: int) -> list[str]:
    argv = [
        sys.executable, "-m", "schakel", "hub", "serve",
        "--dir", str(demo.hub_dir),
        "--host", LOOPBACK,
        "--port", str(port),
        "--database-url", database_url,
        "--log-level", "WARNING",
    ]  # fmt: skip
    if serve_skips_migration():
        argv.append("--no-migrate")
    return argv


@contextlib.contextmanager
def running_replicas(
    demo: DemoNetwork, database_url: str, logs: Sequence[Path], *, ready_timeout: float = 60
) -> Iterator[list[Replica]]:
    """One ``schakel hub serve`` per log file, each on a free loopback port, started
    together (with ``--no-migrate``: ``migrate`` ran before) and stopped at the end."""
    replicas: list[Replica] = []
    with contextlib.ExitStack() as stack:
        stack.callback(_stop_all, replicas)
        for log in logs:
            port = free_port()
            sink = stack.enter_context(log.open("wb"))
            process = subprocess.Popen(
                _replica_argv(demo, database_url, port),
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=hub_env(demo),
                cwd=REPO,
            )
            replicas.append(Replica(port, process, log))
            if not serve_skips_migration():  # each migrates at start: never two at once
                _wait_listening(replicas[-1], time.monotonic() + ready_timeout)
        deadline = time.monotonic() + ready_timeout
        for replica in replicas:
            _wait_listening(replica, deadline)
        yield replicas


def _stop_all(replicas: Sequence[Replica]) -> None:
    """SIGTERM to every replica at once, then wait for each (SIGKILL after a grace)."""
    for replica in replicas:
        if replica.process.poll() is None:
            replica.process.terminate()
    for replica in replicas:
        stop_process(replica.process)


def _wait_listening(replica: Replica, deadline: float) -> None:
    while time.monotonic() < deadline:
        if replica.process.poll() is not None:
            tail = replica.log.read_text(errors="replace")[-1500:]
            raise AssertionError(f"hub replica exited with {replica.process.returncode}: {tail}")
        try:
            with socket.create_connection((LOOPBACK, replica.port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"hub replica did not listen on port {replica.port} in time")


# -- clients ----------------------------------------------------------------------------


def open_org(
    demo: DemoNetwork,
    org: str,
    base_url: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    attempts: int = 3,
) -> Organisation:
    """``schakel.demo.open_organisation`` trusting the cluster's CA (the caller closes it)."""
    return open_organisation(demo, org, base_url, ssl=ssl_context, attempts=attempts)


@contextlib.asynccontextmanager
async def acting(
    demo: DemoNetwork,
    org: str,
    base_url: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    attempts: int = 3,
) -> AsyncIterator[Organisation]:
    organisation = open_org(demo, org, base_url, ssl_context=ssl_context, attempts=attempts)
    try:
        async with organisation.hub:
            yield organisation
    finally:
        organisation.state.close()


@dataclass
class Listener:
    """One organisation's ``/v1/ws`` socket; the message ids of the notices it got."""

    org: str
    base_url: str
    ids: list[str] = field(default_factory=list)
    closed: bool = False
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def wait_for(self, message_id: str, timeout: float = 10.0) -> None:
        """Return once a notice of ``message_id`` came; AssertionError after ``timeout``."""

        async def seen() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: message_id in self.ids or self.closed)

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(seen(), timeout)
        assert message_id in self.ids, (
            f"{self.org} on {self.base_url} got no notice of {message_id} "
            f"(closed: {self.closed}; got {self.ids})"
        )

    async def _note(self, message_id: str | None) -> None:
        async with self._changed:
            if message_id is None:
                self.closed = True
            else:
                self.ids.append(message_id)
            self._changed.notify_all()


@contextlib.asynccontextmanager
async def listening(
    demo: DemoNetwork, org: str, base_url: str, *, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[Listener]:
    """A WebSocket of ``org`` open on ``base_url``: subscribed once this yields.

    The hub subscribes before it completes the handshake, so every message accepted
    after ``ws_connect`` returns is announced on this socket.
    """
    keys = OrgKeys.open(demo.home(org) / "keys", demo.passphrase)
    listener = Listener(org, base_url)
    connector = aiohttp.TCPConnector(ssl=ssl_context if ssl_context is not None else True)
    async with aiohttp.ClientSession(connector=connector) as session:
        token = await access_token(session, base_url, keys)
        headers = {"Authorization": f"Bearer {token}", "Schakel-User": DEMO_USER}
        ws = await session.ws_connect(base_url + "/v1/ws", headers=headers, heartbeat=30)

        async def pump() -> None:
            try:
                async for frame in ws:
                    if frame.type != aiohttp.WSMsgType.TEXT:
                        break
                    notice = json.loads(frame.data)
                    if notice.get("type") == "message":
                        await listener._note(str(notice["id"]))
            finally:
                await listener._note(None)

        task = asyncio.create_task(pump())
        try:
            yield listener
        finally:
            await ws.close()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def seal_signal(
    sender: Organisation, payload: dict[str, Any], bundles: Mapping[OrgId, KeyBundle]
) -> Envelope:
    """A signal sealed once to ``bundles`` (verified by the caller), to send and resend."""
    validate_payload("signal", payload)
    return seal(
        message_id=new_message_id(os.urandom),
        network=sender.keys.network,
        sender=sender.certificate(),
        sender_key=sender.keys.signing_key,
        recipients=bundles,
        kind="signal",
        payload=encode_payload(payload),
        pseudonyms=sender.pseudonyms_of(payload),
        created=sender.now(),
        rng=os.urandom,
    )


async def send_until_answered(hub: HubClient, envelope: Envelope, *, within: float = 60.0) -> bool:
    """Post ``envelope`` (the same bytes each time) until the hub accepts it; True if new.

    A 502/503/504/429 or a broken connection says nothing about whether the hub
    committed the message, so the client sends it again: the hub answers a repeat
    with the first acceptance (200). Any other refusal is raised.
    """
    deadline = time.monotonic() + within
    while True:
        try:
            _, _, created = await hub.send(envelope)
            return created
        except HubUnreachable:
            pass
        except HubProblem as problem:
            if problem.status not in RETRY_STATUSES:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"message {envelope.header.id} not accepted within {within} s")
        await asyncio.sleep(0.05)


# -- the hub's database -----------------------------------------------------------------


async def fetch(database_url: str, sql: str, params: Mapping[str, Any] | None = None) -> list[Any]:
    """The rows of one query on the hub's database (a connection of its own)."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(sa.text(sql), dict(params or {}))
            return list(result.fetchall())
    finally:
        await engine.dispose()


async def audit_indexes(database_url: str) -> list[int]:
    rows = await fetch(database_url, 'SELECT "index" FROM audit_log ORDER BY "index"')
    return [int(row[0]) for row in rows]


async def stored_message_ids(database_url: str) -> list[str]:
    return [str(row[0]) for row in await fetch(database_url, "SELECT id FROM messages")]


async def messages_without_create_entry(database_url: str) -> list[str]:
    """Stored messages with no allowed ``create`` audit entry naming them."""
    rows = await fetch(
        database_url,
        "SELECT m.id FROM messages m WHERE NOT EXISTS ("
        ' SELECT 1 FROM audit_objects o JOIN audit_log a ON a."index" = o."index"'
        " WHERE o.object_id = m.id AND a.action = 'create' AND a.object_type = 'message'"
        " AND a.outcome = 'allowed')",
    )
    return [str(row[0]) for row in rows]
