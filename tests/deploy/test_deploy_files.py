"""The files in ``deploy/`` stay correct, and in step with the hub they deploy.

What the hub reads (``SCHAKEL_HUB_*`` variables, limits, ports) is taken from
``hub.config`` and ``hub.cli`` themselves, so these tests fail when either side
changes without the other. The compose file is read with PyYAML when it is
installed, and always with the small block-YAML reader below (compose.yaml keeps
to plain block style for it). ``nginx -t`` and ``systemd-analyze`` run when those
programs are on PATH, and skip with the reason otherwise.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import click
import click.testing
import pytest
import sqlalchemy
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fresh_databases import Databases
from sqlalchemy.engine import make_url

from hub import app as hub_app
from hub import cli as hub_cli
from hub.config import (
    DEFAULT_ESCALATION,
    ENV_PREFIX,
    ConfigError,
    HubConfig,
    Limits,
    check_database_url,
)
from hub.store import Store, head_revision
from protocol.referral import OPEN_STEPS
from protocol.types import NetworkId, parse_network_id
from schakel import demo as demo_network
from witness import cli as witness_cli
from witness.config import ENV_PREFIX as WITNESS_PREFIX
from witness.config import WitnessConfig

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
NGINX_CONF = DEPLOY / "nginx" / "schakel.conf"
ENV_EXAMPLE = DEPLOY / "hub.env.example"
COMPOSE = DEPLOY / "compose.yaml"
HUB_UNIT = DEPLOY / "systemd" / "schakel-hub@.service"
MIGRATE_UNIT = DEPLOY / "systemd" / "schakel-migrate.service"
WITNESS_UNIT = DEPLOY / "systemd" / "schakel-witness.service"
WITNESS_ENV_EXAMPLE = DEPLOY / "witness.env.example"
HUB_SERVICES = ("hub-1", "hub-2")
INSTALLED_SCHAKEL = "/opt/schakel/venv/bin/schakel"


# -- a reader for the block-style YAML subset compose.yaml keeps to ------------------


class YamlSubsetError(ValueError):
    """The text uses YAML the small reader does not accept; the message names the line."""


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.\-]+")
_INT = re.compile(r"[-+]?[0-9]+")
_FLOAT = re.compile(r"[-+]?[0-9]*\.[0-9]+")
_AMBIGUOUS = {"yes", "no", "on", "off", "y", "n"}  # booleans in YAML 1.1: quote them
_FORBIDDEN_START = tuple("[{&*!>%@`")


@dataclass
class _Lines:
    lines: list[str]
    pos: int = 0

    def peek(self) -> tuple[int, str] | None:
        """(indent, stripped text) of the next line that is not blank or a comment."""
        while self.pos < len(self.lines):
            line = self.lines[self.pos]
            stripped = line.strip()
            if stripped and not stripped.startswith("#"):
                if "\t" in line[: len(line) - len(line.lstrip())]:
                    raise YamlSubsetError(f"line {self.pos + 1}: tab in indentation")
                return len(line) - len(line.lstrip(" ")), stripped
            self.pos += 1
        return None

    def fail(self, message: str) -> YamlSubsetError:
        return YamlSubsetError(f"line {self.pos + 1}: {message}")


def parse_block_yaml(text: str) -> Any:
    """Parse block mappings, block sequences of scalars, scalars and ``|`` literals."""
    reader = _Lines(text.splitlines())
    first = reader.peek()
    if first is None:
        return None
    if first[0] != 0:
        raise reader.fail("the document must start at column 0")
    value = _node(reader, 0)
    if reader.peek() is not None:
        raise reader.fail("unexpected indentation")
    return value


def _is_item(text: str) -> bool:
    return text == "-" or text.startswith("- ")


def _node(reader: _Lines, indent: int) -> Any:
    head = reader.peek()
    assert head is not None
    return _sequence(reader, indent) if _is_item(head[1]) else _mapping(reader, indent)


def _mapping(reader: _Lines, indent: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    while (head := reader.peek()) is not None and head[0] == indent and not _is_item(head[1]):
        key, rest = _split_key(reader, head[1])
        if key in result:
            raise reader.fail(f"duplicate key {key!r}")
        reader.pos += 1
        result[key] = _mapping_value(reader, indent, rest)
    if head is not None and head[0] > indent:
        raise reader.fail("unexpected indentation")
    return result


def _mapping_value(reader: _Lines, indent: int, rest: str) -> Any:
    if rest in ("|", "|-"):
        return _literal(reader, indent, keep_newline=rest == "|")
    if rest:
        return _scalar(reader, rest)
    head = reader.peek()
    if head is not None and (head[0] > indent or (head[0] == indent and _is_item(head[1]))):
        return _node(reader, head[0])
    return None


def _sequence(reader: _Lines, indent: int) -> list[Any]:
    items: list[Any] = []
    while (head := reader.peek()) is not None and head[0] == indent and _is_item(head[1]):
        rest = head[1][1:].strip()
        reader.pos += 1
        if not rest:
            nested = reader.peek()
            if nested is None or nested[0] <= indent:
                raise reader.fail("empty sequence item")
            items.append(_node(reader, nested[0]))
        elif _key_match(rest) is not None:
            raise reader.fail("sequences of mappings are not supported; use a mapping")
        else:
            items.append(_scalar(reader, rest))
    return items


def _key_match(text: str) -> re.Match[str] | None:
    return re.match(r"(\"[^\"]*\"|'[^']*'|[A-Za-z0-9_.\-]+):(?: |$)", text)


def _split_key(reader: _Lines, text: str) -> tuple[str, str]:
    match = _key_match(text)
    if match is None:
        raise reader.fail("expected `key: value`")
    key = match.group(1)
    if not _PLAIN_KEY.fullmatch(key):
        key = key[1:-1]
    return key, text[match.end() :].strip()


def _literal(reader: _Lines, indent: int, *, keep_newline: bool) -> str:
    body: list[str] = []
    while reader.pos < len(reader.lines):
        line = reader.lines[reader.pos]
        if line.strip() and len(line) - len(line.lstrip(" ")) <= indent:
            break
        body.append(line)
        reader.pos += 1
    while body and not body[-1].strip():
        body.pop()
    if not body:
        raise reader.fail("empty literal block")
    margin = min(len(line) - len(line.lstrip(" ")) for line in body if line.strip())
    text = "\n".join(line[margin:] for line in body)
    return text + "\n" if keep_newline else text


def _scalar(reader: _Lines, text: str) -> Any:
    if text.startswith('"'):
        if not text.endswith('"') or len(text) < 2:
            raise reader.fail("unterminated double-quoted scalar")
        return json.loads(text)
    if text.startswith("'"):
        if not text.endswith("'") or len(text) < 2:
            raise reader.fail("unterminated single-quoted scalar")
        return text[1:-1].replace("''", "'")
    if text.startswith(_FORBIDDEN_START):
        raise reader.fail(f"{text[0]!r} (flow style, anchor, tag or folding) is not supported")
    if " #" in text:
        text = text[: text.index(" #")].rstrip()
    return _plain(reader, text)


def _plain(reader: _Lines, text: str) -> Any:
    if text.lower() in _AMBIGUOUS:
        raise reader.fail(f"quote {text!r}: YAML 1.1 reads it as a boolean")
    if ": " in text or text.endswith(":"):
        raise reader.fail("a plain scalar must not contain ': '")
    if text in ("true", "false"):
        return text == "true"
    if text in ("null", "~"):
        return None
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return text


class TestBlockYamlReader:
    """The reader the compose tests rely on: right on its subset, loud outside it."""

    def test_reads_the_subset(self) -> None:
        text = (
            "# comment\n"
            "name: demo\n"
            "services:\n"
            "  a:\n"
            "    image: 'x:1'\n"
            '    restart: "no"\n'
            "    retries: 3\n"
            "    command:\n"
            "      - sh\n"
            "      - -c  # trailing comment\n"
            "    script: |\n"
            "      line 1\n"
            "\n"
            "        indented\n"
            "    empty:\n"
            "list:\n"
            "- at key indent\n"
        )
        assert parse_block_yaml(text) == {
            "name": "demo",
            "services": {
                "a": {
                    "image": "x:1",
                    "restart": "no",
                    "retries": 3,
                    "command": ["sh", "-c"],
                    "script": "line 1\n\n  indented\n",
                    "empty": None,
                }
            },
            "list": ["at key indent"],
        }

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("a:\n\tb: 1\n", "tab"),
            ("a: [1, 2]\n", "flow style"),
            ("a: {b: 1}\n", "flow style"),
            ("a: &x 1\n", "anchor"),
            ("a: *x\n", "anchor"),
            ("a: 1\na: 2\n", "duplicate key"),
            ("a: no\n", "boolean"),
            ("a:\n  - b: 1\n", "sequences of mappings"),
            ("a: 1\n   b: 2\n", "unexpected indentation"),
            ("  a: 1\n", "column 0"),
            ("just text\n", "key: value"),
            ("a: 'open\n", "unterminated"),
            ('a: "open\n', "unterminated"),
            ("a: b: c\n", "': '"),
            ("a: |\nb: 1\n", "empty literal"),
        ],
    )
    def test_refuses_what_it_does_not_read(self, text: str, message: str) -> None:
        with pytest.raises(YamlSubsetError, match=message):
            parse_block_yaml(text)


# -- compose.yaml --------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    text = COMPOSE.read_text()
    parsed = parse_block_yaml(text)
    assert isinstance(parsed, dict), "compose.yaml is not a mapping"
    try:
        import yaml
    except ImportError:
        return parsed
    assert yaml.safe_load(text) == parsed, "the small reader and PyYAML disagree"
    return parsed


def _upstream_ports() -> list[int]:
    block = re.search(r"upstream schakel_hub \{(.*?)\}", NGINX_CONF.read_text(), re.S)
    assert block is not None, "schakel.conf has no `upstream schakel_hub` block"
    return [int(p) for p in re.findall(r"^\s*server 127\.0\.0\.1:(\d+)\b", block[1], re.M)]


class TestCompose:
    def test_has_the_services(self, compose: dict[str, Any]) -> None:
        assert set(compose["services"]) == {"db", "migrate", "nginx", "witness", *HUB_SERVICES}
        assert compose["services"]["db"]["image"] == "postgres:15"

    def test_long_running_services_have_healthchecks(self, compose: dict[str, Any]) -> None:
        for name in ("db", "nginx", "witness", *HUB_SERVICES):
            check = compose["services"][name].get("healthcheck")
            assert check and check["test"][0] == "CMD", f"{name} has no exec healthcheck"

    def test_start_order(self, compose: dict[str, Any]) -> None:
        services = compose["services"]
        assert services["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"
        assert "hub migrate" in services["migrate"]["command"][-1]
        for name in HUB_SERVICES:
            needs = services[name]["depends_on"]
            assert needs["migrate"]["condition"] == "service_completed_successfully"
            assert services[name]["network_mode"] == "service:nginx"

    def test_replica_ports_match_nginx_upstream(self, compose: dict[str, Any]) -> None:
        ports = []
        for name in HUB_SERVICES:
            found = re.search(r"hub serve --port (\d+)", compose["services"][name]["command"][-1])
            assert found, f"{name} does not run `schakel hub serve --port N`"
            ports.append(int(found[1]))
            readyz = compose["services"][name]["healthcheck"]["test"][-1]
            assert f"127.0.0.1:{found[1]}/readyz" in readyz
        assert sorted(ports) == sorted(_upstream_ports())

    def test_named_volume_for_the_database(self, compose: dict[str, Any]) -> None:
        assert "pgdata" in compose["volumes"]
        assert "pgdata:/var/lib/postgresql/data" in compose["services"]["db"]["volumes"]

    def test_secrets_come_read_only_from_secrets_dir(self, compose: dict[str, Any]) -> None:
        for name, secret in compose["secrets"].items():
            assert secret["file"].startswith("./secrets/"), name
        for name, service in compose["services"].items():
            for volume in service.get("volumes", []):
                source = volume.split(":")[0]
                if source.startswith("./"):
                    assert volume.endswith(":ro"), f"{name} mounts {source} writable"
                    if not source.startswith("./secrets/"):
                        assert (DEPLOY / source).is_file(), f"{name} mounts missing {source}"

    def test_no_secret_values(self, compose: dict[str, Any]) -> None:
        for name, service in compose["services"].items():
            for key, value in (service.get("environment") or {}).items():
                assert not re.search(r"PASSWORD$|PASSPHRASE$|SECRET", key), (name, key)
                if key.endswith("DATABASE_URL"):
                    assert make_url(value).password is None, f"{name}: password in URL"

    def test_hub_variables_are_ones_the_hub_reads(self, compose: dict[str, Any]) -> None:
        for name in ("migrate", *HUB_SERVICES):
            env = compose["services"][name]["environment"]
            unknown = {k for k in env if k.startswith(ENV_PREFIX)} - hub_reads()
            assert not unknown, f"{name} sets variables the hub ignores: {unknown}"
            HubConfig.from_env(env, network=_network(), root_der=b"\x30")  # values valid


# -- hub.env.example -----------------------------------------------------------------


class _Recording(Mapping[str, str]):
    """An empty environment that records every name looked up in it."""

    def __init__(self) -> None:
        self.asked: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _network() -> NetworkId:
    return parse_network_id("region-west")


def hub_reads() -> set[str]:
    """Every SCHAKEL_HUB_* name the hub reads: HubConfig.from_env and hub CLI options."""
    recording = _Recording()
    HubConfig.from_env(recording, network=_network(), root_der=b"\x30")
    names = {name for name in recording.asked if name.startswith(ENV_PREFIX)}
    for command in hub_cli.hub.commands.values():
        for param in command.params:
            if isinstance(param, click.Option) and isinstance(param.envvar, str):
                names.add(param.envvar)
    return {name for name in names if name.startswith(ENV_PREFIX)}


_ENV_LINE = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")


def env_example() -> list[tuple[bool, str, str]]:
    """(active, name, value) for each `NAME=value` line, commented out or not."""
    found = []
    for line in ENV_EXAMPLE.read_text().splitlines():
        if match := _ENV_LINE.match(line.strip()):
            found.append((match[1] is None, match[2], match[3]))
    return found


class TestEnvExample:
    def test_names_exactly_what_the_hub_reads(self) -> None:
        named = {name for _, name, _ in env_example() if name.startswith(ENV_PREFIX)}
        reads = hub_reads()
        assert named - reads == set(), "the example names variables the hub does not read"
        assert reads - named == set(), "the hub reads variables the example does not name"

    def test_recording_sees_every_limit(self) -> None:
        # Guards hub_reads itself: if from_env stopped reading, the set would shrink.
        expected = {f"{ENV_PREFIX}LIMIT_{f.name.upper()}" for f in fields(Limits)}
        assert expected <= hub_reads()
        assert f"{ENV_PREFIX}DIR" in hub_reads()

    def test_active_lines_make_a_valid_config(self) -> None:
        active = {name: value for on, name, value in env_example() if on}
        assert {"SCHAKEL_HUB_DIR", "SCHAKEL_HUB_DATABASE_URL", "SCHAKEL_HUB_HOST"} <= set(active)
        config = HubConfig.from_env(active, network=_network(), root_der=b"\x30")
        assert config.database_url.startswith("postgresql+asyncpg://")

    def test_commented_defaults_are_the_real_defaults(self) -> None:
        shown = {name: value for on, name, value in env_example() if not on}
        for item in fields(Limits):
            name = f"{ENV_PREFIX}LIMIT_{item.name.upper()}"
            assert shown[name] == str(item.default), f"{name} shows a wrong default"
        assert shown[f"{ENV_PREFIX}PORT"] == str(HubConfig.__dataclass_fields__["port"].default)
        defaults = HubConfig(_network(), b"\x30")
        shown_from = HubConfig.from_env(
            {f"{ENV_PREFIX}METRICS_FROM": shown[f"{ENV_PREFIX}METRICS_FROM"]},
            network=_network(),
            root_der=b"\x30",
        )
        assert shown_from.metrics_from == defaults.metrics_from
        for step in OPEN_STEPS:
            name = f"{ENV_PREFIX}ESCALATE_{step.upper()}"
            default = DEFAULT_ESCALATION.get(step)
            assert shown[name] == ("off" if default is None else str(default)), name

    def test_every_shown_value_is_accepted(self) -> None:
        # Uncommenting any line (placeholders aside) must give a config the hub accepts.
        every = {name: value for _, name, value in env_example() if "<" not in value}
        config = HubConfig.from_env(every, network=_network(), root_der=b"\x30")
        assert config.limits == Limits()

    def test_every_database_url_is_accepted_and_has_no_password(self) -> None:
        urls = [v for _, n, v in env_example() if n == f"{ENV_PREFIX}DATABASE_URL"]
        assert any(u.startswith("postgresql+asyncpg://") for u in urls)
        for url in urls:
            check_database_url(url)
            assert make_url(url).password is None

    def test_no_secrets(self) -> None:
        names = {name for _, name, _ in env_example()}
        assert not names & {"SCHAKEL_PASSPHRASE", "PGPASSWORD"}

    def test_a_bad_value_is_refused(self) -> None:
        # The file's values go through the same checks as any environment.
        with pytest.raises(ConfigError, match="LIMIT_MAX_BODY_BYTES must be an integer"):
            HubConfig.from_env(
                {"SCHAKEL_HUB_LIMIT_MAX_BODY_BYTES": "512k"}, network=_network(), root_der=b"0"
            )


# -- systemd units -------------------------------------------------------------------


def read_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections of a unit file; a key that repeats keeps every value in order."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
        elif "=" in line and current is not None:
            key, value = line.split("=", 1)
            current.setdefault(key.strip(), []).append(value.strip())
        else:
            raise AssertionError(f"{path.name}:{number}: not `Key=value` inside a section")
    return sections


HARDENING = {
    "User": "schakel",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "ReadWritePaths": "/var/lib/schakel",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "SystemCallArchitectures": "native",
    "EnvironmentFile": "/etc/schakel/hub.env",
}


@pytest.mark.parametrize("path", [HUB_UNIT, MIGRATE_UNIT], ids=lambda p: p.name)
def test_units_are_hardened(path: Path) -> None:
    service = read_unit(path)["Service"]
    for key, value in HARDENING.items():
        assert service.get(key) == [value], f"{path.name}: {key}={value} missing"
    assert "@system-service" in service["SystemCallFilter"]
    assert all("SCHAKEL_PASSPHRASE" not in v for vs in service.values() for v in vs)


def test_hub_unit_runs_one_replica_per_port_after_migration() -> None:
    unit = read_unit(HUB_UNIT)
    assert "schakel-migrate.service" in " ".join(unit["Unit"]["Requires"])
    assert "schakel-migrate.service" in " ".join(unit["Unit"]["After"])
    service = unit["Service"]
    assert service["Restart"] == ["on-failure"]
    (command,) = service["ExecStart"]
    assert f"{INSTALLED_SCHAKEL} hub serve --port %i" in command
    assert "--passphrase-fd 3 3<%d/passphrase" in command
    assert service["LoadCredentialEncrypted"] == ["passphrase:/etc/schakel/hub-passphrase.cred"]
    stop = int(service["TimeoutStopSec"][0].rstrip("s"))
    assert stop > Limits().shutdown_timeout


def test_hub_unit_leaves_migration_to_the_migrate_unit() -> None:
    (command,) = read_unit(HUB_UNIT)["Service"]["ExecStart"]
    assert " --no-migrate" in command
    options = {opt for p in hub_cli.serve.params if isinstance(p, click.Option) for opt in p.opts}
    assert "--port" in options
    assert "--no-migrate" in {o for p in hub_cli.serve.params for o in p.secondary_opts}


# -- `schakel hub serve --no-migrate`: replicas check the schema, never migrate it ----------


@pytest.fixture
def hub_dir(tmp_path: Path) -> tuple[Path, str]:
    """The key directory of a provisioned hub, and its passphrase."""
    demo = demo_network.provision(tmp_path / "demo", now=int(time.time()), orgs={})
    return demo.hub_dir, demo.passphrase.decode()


class _Served:
    """Stands in for hub.app.serve: records how it was called, returns at once."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def __call__(self, config: HubConfig, **options: Any) -> None:
        self.calls.append({"database_url": config.database_url, **options})


def _serve(hub_dir: tuple[Path, str], url: str, *args: str, **env: str) -> click.testing.Result:
    directory, passphrase = hub_dir
    command = ["serve", "--dir", str(directory), "--database-url", url, "--port", "0", *args]
    runner = click.testing.CliRunner()
    return runner.invoke(hub_cli.hub, command, env={"SCHAKEL_PASSPHRASE": passphrase, **env})


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> _Served:
    fake = _Served()
    monkeypatch.setattr(hub_app, "serve", fake)
    monkeypatch.setattr(hub_cli, "configure_logging", lambda *args, **kwargs: None)
    return fake


def _stamp(url: str, revision: str) -> None:
    """Set the database's recorded revision (its tables stay as they are)."""

    async def stamp() -> None:
        store = Store(url)
        try:
            await store._engines.write(
                lambda conn: conn.execute(
                    sqlalchemy.text("UPDATE alembic_version SET version_num = :r"), {"r": revision}
                )
            )
        finally:
            await store.close()

    asyncio.run(stamp())


@pytest.mark.parametrize("how", [("--no-migrate",), ("--migrate", "--no-migrate")])
def test_no_migrate_refuses_a_database_without_schema(
    databases: Databases, hub_dir: tuple[Path, str], served: _Served, how: tuple[str, ...]
) -> None:
    url = asyncio.run(databases.new(empty=True))
    result = _serve(hub_dir, url, *how)
    assert result.exit_code == 1, result.output
    assert result.output == (
        f"Error: the database has no schema, not {head_revision()}: "
        "run `schakel hub migrate` first\n"
    )
    assert served.calls == []


def test_no_migrate_from_the_environment(
    databases: Databases, hub_dir: tuple[Path, str], served: _Served
) -> None:
    url = asyncio.run(databases.new(empty=True))
    result = _serve(hub_dir, url, SCHAKEL_HUB_MIGRATE="0")
    assert result.exit_code == 1 and "run `schakel hub migrate` first" in result.output
    assert _serve(hub_dir, url, SCHAKEL_HUB_MIGRATE="1").exit_code == 0
    assert [call["migrate"] for call in served.calls] == [True]


def test_no_migrate_refuses_an_older_revision_and_accepts_the_newest(
    databases: Databases, hub_dir: tuple[Path, str], served: _Served
) -> None:
    url = asyncio.run(databases.new(empty=True))
    migrated = click.testing.CliRunner().invoke(hub_cli.hub, ["migrate", "--database-url", url])
    assert migrated.exit_code == 0, migrated.output
    assert head_revision() != "0002"
    _stamp(url, "0002")
    result = _serve(hub_dir, url, "--no-migrate")
    assert result.exit_code == 1
    assert f"the database is at revision 0002, not {head_revision()}" in result.output
    assert served.calls == []
    _stamp(url, head_revision())
    result = _serve(hub_dir, url, "--no-migrate")
    assert result.exit_code == 0, result.output
    ((call),) = served.calls
    assert (call["database_url"], call["migrate"]) == (url, False)


def test_migrate_unit_is_a_oneshot_migration() -> None:
    service = read_unit(MIGRATE_UNIT)["Service"]
    assert service["Type"] == ["oneshot"]
    assert service["ExecStart"] == [f"{INSTALLED_SCHAKEL} hub migrate"]
    assert "migrate" in hub_cli.hub.commands


@pytest.fixture
def units_for_analysis(tmp_path: Path) -> list[Path]:
    """The units with the installed program swapped for /bin/true, which exists here."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not on PATH: the units were not checked by systemd")
    copies = []
    units = (
        (HUB_UNIT, "schakel-hub@8001.service"),
        (MIGRATE_UNIT, None),
        (OPRF_UNIT, None),
        (WITNESS_UNIT, None),
    )
    for source, name in units:
        target = tmp_path / (name or source.name)
        target.write_text(source.read_text().replace(INSTALLED_SCHAKEL, "/bin/true"))
        copies.append(target)
    return copies


def test_systemd_accepts_the_units(units_for_analysis: list[Path]) -> None:
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *map(str, units_for_analysis)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", f"systemd warns:\n{done.stderr}"


def test_systemd_rates_the_units_exposure_ok(units_for_analysis: list[Path]) -> None:
    # --threshold is in tenths: 20 means an overall exposure of at most 2.0 ("OK").
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=20"]
        + [str(p) for p in units_for_analysis],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr


# -- nginx ---------------------------------------------------------------------------


def _directive(text: str, name: str) -> list[str]:
    return re.findall(rf"^\s*{name}\s+([^;]*);", text, re.M)


def _location(text: str, path: str) -> str:
    found = re.search(rf"location = {re.escape(path)} \{{(.*?)\}}", text, re.S)
    assert found is not None, f"no `location = {path}`"
    return found[1]


def _seconds(value: str) -> int:
    return int(value[:-1]) * {"s": 1, "m": 60, "h": 3600}[value[-1]]


class TestNginxConfig:
    text = NGINX_CONF.read_text()

    def test_tls_1_2_and_1_3_only(self) -> None:
        assert _directive(self.text, "ssl_protocols") == ["TLSv1.2 TLSv1.3"]
        (ciphers,) = _directive(self.text, "ssl_ciphers")
        assert all(c.startswith("ECDHE-") for c in ciphers.split(":"))
        assert all(("GCM" in c or "CHACHA20" in c) for c in ciphers.split(":"))
        assert _directive(self.text, "ssl_stapling") == ["off"]
        assert any("Strict-Transport-Security" in h for h in _directive(self.text, "add_header"))
        assert _directive(self.text, "server_tokens") == ["off"]

    def test_body_limit_matches_the_hub(self) -> None:
        (size,) = _directive(self.text, "client_max_body_size")
        assert size.endswith("k") and int(size[:-1]) * 1024 == Limits().max_body_bytes
        for name in ("client_body_timeout", "client_header_timeout", "send_timeout"):
            assert _directive(self.text, name), f"{name} missing"
        (buffers,) = _directive(self.text, "large_client_header_buffers")
        size_k = buffers.split()[1]
        assert int(size_k.rstrip("k")) * 1024 < Limits().max_line_size

    def test_upstream_with_passive_checks_and_keepalive(self) -> None:
        assert len(_upstream_ports()) >= 2
        block = re.search(r"upstream schakel_hub \{(.*?)\}", self.text, re.S)
        assert block is not None
        assert all("max_fails=" in s for s in _directive(block[1], "server"))
        assert _directive(block[1], "keepalive")
        (idle,) = _directive(block[1], "keepalive_timeout")
        assert _seconds(idle) < Limits().keepalive_timeout

    def test_retries_never_resend_a_request(self) -> None:
        (retry,) = _directive(self.text, "proxy_next_upstream")
        assert set(retry.split()) == {"error", "timeout"}

    def test_websocket_upgrade_with_long_read_timeout_only_there(self) -> None:
        ws = _location(self.text, "/v1/ws")
        assert "proxy_set_header Upgrade $http_upgrade" in ws
        (ws_timeout,) = _directive(ws, "proxy_read_timeout")
        timeouts = [_seconds(t) for t in _directive(self.text, "proxy_read_timeout")]
        assert _seconds(ws_timeout) > 2 * Limits().ws_heartbeat
        assert min(timeouts) < _seconds(ws_timeout)

    def test_forwarded_headers(self) -> None:
        headers = _directive(self.text, "proxy_set_header")
        # Appended: the hub walks it from the right past SCHAKEL_HUB_TRUSTED_PROXIES.
        assert "X-Forwarded-For $proxy_add_x_forwarded_for" in headers
        assert not any(h.startswith("X-Forwarded-For $remote_addr") for h in headers)
        assert "X-Request-Id $request_id" in headers

    def test_metrics_are_not_served_to_the_outside(self) -> None:
        found = re.search(r"location = /metrics \{\n(.*?)\n    \}\n", self.text, re.S)
        assert found is not None, "no `location = /metrics`"
        block = found[1]  # its JSON body holds braces: read up to the block's own
        assert "proxy_pass" not in block
        (answer,) = _directive(block, "return")
        status, body = answer.split(" ", 1)
        assert status == "404"
        assert json.loads(body.strip("'")) == {
            "type": "urn:schakel:problem:not-found",
            "title": "Not found",
            "status": 404,
            "detail": "Not found",
        }

    def test_access_log_has_no_query_or_client_address(self) -> None:
        log_format = self.text[self.text.index("log_format") :]
        log_format = log_format[: log_format.index(";")]
        for variable in ("$request ", '$request"', "$request_uri", "$args", "$arg_", "$query"):
            assert variable not in log_format, variable
        assert "$remote_addr" not in log_format and "$uri" not in log_format
        (access_log,) = _directive(self.text, "access_log")
        assert access_log.endswith(" schakel_route")


def _self_signed(directory: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hub.example.org")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (directory / "fullchain.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "privkey.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def nginx_test(tmp_path: Path, conf: Path, replacements: Mapping[str, str]) -> None:
    """``nginx -t`` on ``conf`` inside a minimal nginx.conf, paths replaced; skips without
    nginx. Asserts that nginx accepts it without a warning."""
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if nginx is None:
        # Not installed in CI yet (issue 5 adds it with the cluster test).
        pytest.skip(f"nginx is not on PATH: `nginx -t` was not run on {conf.name}")
    text = conf.read_text()
    for old, new in replacements.items():
        assert old in text
        text = text.replace(old, new)
    (tmp_path / conf.name).write_text(text)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{ include {tmp_path}/{conf.name}; }}\n"
    )
    done = subprocess.run(
        [
            nginx,
            "-t",
            "-p",
            f"{tmp_path}/",
            "-e",
            f"{tmp_path}/error.log",
            "-c",
            f"{tmp_path}/nginx.conf",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "[warn]" not in done.stderr and "[emerg]" not in done.stderr, done.stderr


# -- the pseudonymisation service: unit, env example, compose file ---------------------

OPRF_UNIT = DEPLOY / "systemd" / "schakel-pseudonymiser.service"
OPRF_ENV = DEPLOY / "pseudonymiser.env.example"
OPRF_COMPOSE = DEPLOY / "compose.pseudonymiser.yaml"


def pseudonymiser_reads() -> set[str]:
    """Every SCHAKEL_PSEUDONYMISER_* name the service reads: its config and CLI options."""
    from pseudonymiser import cli as oprf_cli
    from pseudonymiser.config import ENV_PREFIX as OPRF_PREFIX
    from pseudonymiser.config import ServiceConfig

    recording = _Recording()
    ServiceConfig.from_env(
        recording,
        network=_network(),
        service="oprf-a",
        root_der=b"\x30",  # type: ignore[arg-type]
    )
    names = set(recording.asked)
    for command in oprf_cli.pseudonymiser.commands.values():
        for param in command.params:
            if isinstance(param, click.Option) and isinstance(param.envvar, str):
                names.add(param.envvar)
    return {name for name in names if name.startswith(OPRF_PREFIX)}


class TestPseudonymiserDeploy:
    def test_the_unit_is_hardened_and_runs_the_service(self) -> None:
        service = read_unit(OPRF_UNIT)["Service"]
        for key, value in HARDENING.items():
            expected = {
                "EnvironmentFile": "/etc/schakel/pseudonymiser.env",
                "ReadWritePaths": "/var/lib/schakel-pseudonymiser",
            }.get(key, value)
            assert service.get(key) == [expected], f"{key}={expected} missing"
        (command,) = service["ExecStart"]
        assert f"{INSTALLED_SCHAKEL} pseudonymiser serve" in command
        assert "--passphrase-fd 3 3<%d/passphrase" in command
        assert service["LoadCredentialEncrypted"] == [
            "passphrase:/etc/schakel/pseudonymiser-passphrase.cred"
        ]
        from pseudonymiser.config import Limits as OprfLimits

        assert int(service["TimeoutStopSec"][0].rstrip("s")) > OprfLimits().shutdown_timeout
        assert all("SCHAKEL_PASSPHRASE" not in v for vs in service.values() for v in vs)

    def test_the_env_example_names_exactly_what_the_service_reads(self) -> None:
        from pseudonymiser.config import Limits as OprfLimits
        from pseudonymiser.config import ServiceConfig

        lines = []
        for line in OPRF_ENV.read_text().splitlines():
            if match := _ENV_LINE.match(line.strip()):
                lines.append((match[1] is None, match[2], match[3]))
        assert {name for _, name, _ in lines} == pseudonymiser_reads()
        every = {name: value for _, name, value in lines}
        for url in [v for _, n, v in lines if n.endswith("DATABASE_URL")]:
            assert make_url(url).password is None
        config = ServiceConfig.from_env(
            {k: v for k, v in every.items() if not k.endswith(("DATABASE_URL", "MIGRATE"))},
            network=_network(), service="oprf-a", root_der=b"\x30",  # type: ignore[arg-type]
        )  # fmt: skip
        assert config.limits == OprfLimits()  # the commented values are the defaults

    def test_the_compose_file_runs_one_service_alone(self) -> None:
        text = OPRF_COMPOSE.read_text()
        parsed = parse_block_yaml(text)
        (name,) = parsed["services"]
        service = parsed["services"][name]
        assert "pseudonymiser serve --passphrase-fd 3" in service["command"][-1]
        assert "COPY pseudonymiser ./pseudonymiser" in service["build"]["dockerfile_inline"]
        assert service["ports"] == ["127.0.0.1:8444:8444"]
        assert "8444/readyz" in service["healthcheck"]["test"][-1]
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
        unknown = set(service["environment"]) - pseudonymiser_reads()
        assert not unknown, unknown
        for volume in service["volumes"]:
            if volume.startswith("./"):
                assert volume.startswith("./secrets/") and volume.endswith(":ro")
        assert all(s["file"].startswith("./secrets/") for s in parsed["secrets"].values())
        try:
            import yaml
        except ImportError:
            return
        assert yaml.safe_load(text) == parsed


# -- the always-on witness: unit, environment, compose ----------------------------------


def witness_reads() -> set[str]:
    """Every SCHAKEL_WITNESS_* name the witness reads: WitnessConfig.from_env and its CLI."""
    recording = _Recording()
    WitnessConfig.from_env(recording)
    names = {name for name in recording.asked if name.startswith(WITNESS_PREFIX)}
    for command in witness_cli.witness.commands.values():
        for param in command.params:
            if isinstance(param, click.Option) and isinstance(param.envvar, str):
                names.add(param.envvar)
    return {name for name in names if name.startswith(WITNESS_PREFIX)}


def witness_env_example() -> list[tuple[bool, str, str]]:
    found = []
    for line in WITNESS_ENV_EXAMPLE.read_text().splitlines():
        if match := _ENV_LINE.match(line.strip()):
            found.append((match[1] is None, match[2], match[3]))
    return found


class TestWitness:
    def test_env_example_names_exactly_what_the_witness_reads(self) -> None:
        named = {name for _, name, _ in witness_env_example()}
        assert named == witness_reads()
        assert {"SCHAKEL_WITNESS_DIR", "SCHAKEL_WITNESS_HUB_CERT", "SCHAKEL_WITNESS_CRL"} <= named

    def test_env_example_values_are_accepted(self) -> None:
        every = {name: value for _, name, value in witness_env_example()}
        config = WitnessConfig.from_env(every)
        assert config.port == 8480 and str(config.evidence_dir).startswith("/var/lib/schakel")
        shown = {name: value for on, name, value in witness_env_example() if not on}
        defaults = WitnessConfig()
        assert (
            WitnessConfig.from_env(
                {"SCHAKEL_WITNESS_METRICS_FROM": shown["SCHAKEL_WITNESS_METRICS_FROM"]}
            ).metrics_from
            == defaults.metrics_from
        )
        assert not {name for _, name, _ in witness_env_example()} & {"SCHAKEL_PASSPHRASE"}

    def test_unit_is_hardened_and_reads_the_passphrase_from_a_credential(self) -> None:
        service = read_unit(WITNESS_UNIT)["Service"]
        expected = {
            **HARDENING,
            "EnvironmentFile": "/etc/schakel/witness.env",
            "ReadWritePaths": "/var/lib/schakel-witness",
        }
        for key, value in expected.items():
            assert service.get(key) == [value], f"{key}={value} missing"
        (command,) = service["ExecStart"]
        assert f"{INSTALLED_SCHAKEL} witness serve --passphrase-fd 3 3<%d/passphrase" in command
        assert service["LoadCredentialEncrypted"] == [
            "passphrase:/etc/schakel/witness-passphrase.cred"
        ]
        assert service["StateDirectory"] == ["schakel-witness"]
        assert int(service["TimeoutStopSec"][0].rstrip("s")) > WitnessConfig().shutdown_timeout

    def test_compose_service(self, compose: dict[str, Any]) -> None:
        service = compose["services"]["witness"]
        env = {key: str(value) for key, value in service["environment"].items()}
        assert set(env) <= witness_reads()
        config = WitnessConfig.from_env(env)
        readyz = service["healthcheck"]["test"][-1]
        assert f"127.0.0.1:{config.port}/readyz" in readyz
        assert "witness serve --passphrase-fd 3" in service["command"][-1]
        assert "witnessdata" in compose["volumes"]
        assert config.database_url.startswith("sqlite+aiosqlite:////var/lib/schakel/witness/")
        assert "COPY witness ./witness" in service["build"]["dockerfile_inline"]
        for name in ("migrate", *HUB_SERVICES):
            assert (
                "COPY witness ./witness" in compose["services"][name]["build"]["dockerfile_inline"]
            )


def test_nginx_accepts_the_config(tmp_path: Path) -> None:
    _self_signed(tmp_path)
    nginx_test(
        tmp_path,
        NGINX_CONF,
        {"/etc/schakel/tls/": f"{tmp_path}/", "/var/log/nginx/": f"{tmp_path}/"},
    )
