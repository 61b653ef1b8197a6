"""A network set up by hand, as its parties would, with nothing but the ``schakel`` command.

The authority, the hub operator and two organisations each run their own commands
(as separate processes); files travel between them as they would on a USB stick. Then
the police signal the coordinator, and after the authority revokes the police, the hub
refuses them. ``hub migrate`` is run as an operator would, on an empty SQLite and an
empty PostgreSQL database.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from hub.store import head_revision

if TYPE_CHECKING:
    from fresh_databases import Databases

NETWORK = "region-west"
PASSPHRASE = "a passphrase only these tests use"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Parties:
    def __init__(self, root: Path, hub_url: str) -> None:
        self.root = root
        self.env = {
            **os.environ,
            "SCHAKEL_PASSPHRASE": PASSPHRASE,
            "SCHAKEL_WEAK_KDF": "1",
            "SCHAKEL_USER": "j.jansen",
            "SCHAKEL_PURPOSE": "case-coordination",
            "SCHAKEL_HUB_URL": hub_url,
            "SCHAKEL_AUTHORITY_DIR": str(root / "authority"),
            "SCHAKEL_HUB_DIR": str(root / "hub"),
        }

    def run(
        self, *args: str, ok: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "schakel", *args],
            env=self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=60,
            input=input,
        )
        if ok:
            assert result.returncode == 0, f"{args}: {result.stdout}{result.stderr}"
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args).stdout)

    def org(
        self, name: str, *args: str, ok: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.run("org", "--home", str(self.root / name), *args, ok=ok, input=input)


@pytest.fixture
def parties(tmp_path: Path) -> Iterator[Parties]:
    port = _free_port()
    parties = Parties(tmp_path, f"http://127.0.0.1:{port}")
    parties.run("authority", "init", "--network", NETWORK)
    parties.run("hub", "init", "--network", NETWORK)
    parties.run("authority", "certify-hub", "hub/request.pem", "--out", "hub.pem")
    parties.run("hub", "import-cert", "hub.pem", "--root", "authority/root.pem")
    hub = subprocess.Popen(
        [sys.executable, "-m", "schakel", "hub", "serve", "--port", str(port),
         "--database-url", f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"],
        env=parties.env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        _wait_ready(f"http://127.0.0.1:{port}/readyz", hub)
        yield parties
    finally:
        hub.terminate()
        output = hub.communicate(timeout=20)[0].decode(errors="replace")
        assert hub.returncode == 0, output
        assert PASSPHRASE not in output


def _wait_ready(url: str, hub: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert hub.poll() is None, "the hub exited before it was ready"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("the hub did not become ready within 30 s")


def _enrol(parties: Parties, name: str, roles: str) -> int:
    parties.org(name, "init", "--org", name, "--network", NETWORK, "--root", "authority/root.pem")
    issued = parties.json(
        "authority", "--json", "enrol", f"{name}/keys/request.pem", "--roles", roles,
        "--out", f"{name}.pem",
    )  # fmt: skip
    parties.org(name, "import-cert", f"{name}.pem")
    parties.org(name, "publish")
    parties.org(name, "export-bundle", "--out", f"{name}.bundle.json")
    return int(issued["serial"])


def test_a_network_set_up_by_hand(parties: Parties) -> None:
    # The authority publishes a revocation list when it sets the network up: a client
    # refuses a hub without one as soon as it has a signed head to check.
    parties.run("authority", "crl", "--out", "crl-0.pem")
    parties.run("authority", "publish", "--network", NETWORK, "crl-0.pem")
    police = _enrol(parties, "police", "member")
    _enrol(parties, "coordinator", "member,coordinator")

    # The authority seals the linking key to each bundle and relays it through the hub.
    parties.run("authority", "linking-key", "new")
    for name in ("police", "coordinator"):
        parties.run(
            "authority", "linking-key", "seal", "--bundle", f"{name}.bundle.json",
            "--out", f"{name}.sealed.json",
        )  # fmt: skip
    parties.run("authority", "crl", "--out", "crl.pem")
    parties.run(
        "authority", "publish", "--network", NETWORK,
        "crl.pem", "police.sealed.json", "coordinator.sealed.json",
    )  # fmt: skip
    for name in ("police", "coordinator"):
        parties.org(name, "linking-key", "fetch")

    # The coordinator's client becomes a witness: its key, certified, in a signed policy
    # that the authority relays through the hub.
    made = json.loads(parties.org("coordinator", "--json", "witness-key").stdout)
    issued = parties.json(
        "authority", "--json", "certify-witness", made["request"], "--out", "witness.json"
    )
    parties.org("coordinator", "witness-key", "--import", "witness.json")
    parties.run("authority", "witness-policy", "--quorum", "1", str(issued["serial"]))
    published = parties.run(
        "authority", "publish", "--network", NETWORK, "authority/witness-policy-1.json"
    )
    assert "witness policy 1 published" in published.stdout

    person = json.dumps({"bsn": "111222333"})  # on standard input: not in the process list
    sent = parties.org(
        "police", "--json", "send-signal", "--to", "coordinator", "--person", "-",
        "--exploitation", "labour", "--urgency", "normal", "--consent",
        "--text", "twelve people living above a shop", input=person,
    )  # fmt: skip
    assert sent.stderr == ""
    message_id = json.loads(sent.stdout)["id"]
    inbox = json.loads(parties.org("coordinator", "--json", "inbox").stdout)
    assert [m["id"] for m in inbox["messages"]] == [message_id]
    assert inbox["messages"][0]["sender"] == "police"
    shown = json.loads(parties.org("coordinator", "--json", "show", message_id).stdout)
    assert shown["payload"]["text"] == "twelve people living above a shop"
    expected = json.loads(
        parties.org(
            "coordinator", "pseudonyms", "--json", "--person", "-", input='{"bsn": "111 222 333"}'
        ).stdout
    )
    assert shown["pseudonyms"] == expected["pseudonyms"]

    # Revocation: the authority revokes the police; once the CRL is relayed, the hub
    # refuses the police, and the command says so with a non-zero exit.
    parties.run("authority", "revoke", str(police), "--out", "crl-2.pem")
    parties.run("authority", "publish", "--network", NETWORK, "crl-2.pem")
    refused = parties.org(
        "police", "send-signal", "--to", "coordinator", "--person", "-",
        "--exploitation", "labour", "--urgency", "normal", "--consent", ok=False, input=person,
    )  # fmt: skip
    assert refused.returncode != 0
    assert refused.stderr.startswith("error: ") and "Traceback" not in refused.stderr
    assert "401" in refused.stderr


def test_publish_refuses_what_the_root_did_not_sign(parties: Parties, tmp_path: Path) -> None:
    forged = tmp_path / "forged.pem"
    forged.write_text("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n")
    result = parties.run("authority", "publish", "--network", NETWORK, str(forged), ok=False)
    assert result.returncode == 1
    assert result.stderr.startswith("Error: ") and "Traceback" not in result.stderr
    assert "the hub refused it" in result.stderr and "revocation list" in result.stderr


# -- hub migrate, on both kinds of database -------------------------------------------------


def _migrate(directory: Path, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "schakel", "hub", "migrate", "--database-url", url],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def _tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names()))


async def test_hub_migrate_makes_the_newest_schema_then_changes_nothing(
    databases: Databases, tmp_path: Path
) -> None:
    url = await databases.new(empty=True)
    engine = create_async_engine(url, poolclass=NullPool)
    challenge = {"challenge": "c" * 43, "org": "police", "expires": 1_700_000_000}
    try:
        if databases.kind == "sqlite":  # not even made yet (the hub insists on making it 0600)
            assert not Path(engine.url.database or "").exists()
        else:
            assert await _tables(engine) == set()

        first = _migrate(tmp_path, url)
        assert first.returncode == 0, first.stderr
        assert first.stdout == f"database is at revision {head_revision()}\n"
        tables = await _tables(engine)
        assert {"alembic_version", "messages", "deliveries", "audit_log", "cases"} <= tables
        async with engine.begin() as conn:
            await conn.execute(
                sa.text("INSERT INTO challenges (challenge, org, expires) VALUES (:c, :o, :e)"),
                {"c": challenge["challenge"], "o": challenge["org"], "e": challenge["expires"]},
            )

        again = _migrate(tmp_path, url)  # at the newest revision already: a no-op
        assert (again.returncode, again.stdout) == (0, first.stdout), again.stderr
        assert await _tables(engine) == tables
        async with engine.connect() as conn:
            kept = await conn.execute(sa.text("SELECT challenge, org, expires FROM challenges"))
            assert [row._asdict() for row in kept] == [challenge]
    finally:
        await engine.dispose()
