"""The desk's deploy files: its systemd unit, nginx in front of it, its settings."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from desk import casework, comensha, inbox, login, overview, pages, privacy, reports, signals
from desk import cli as desk_cli

from .test_deploy_files import (
    DEPLOY,
    HARDENING,
    INSTALLED_SCHAKEL,
    _self_signed,
    nginx_test,
    read_unit,
)

DESK_UNIT = DEPLOY / "systemd" / "schakel-desk.service"
DESK_NGINX = DEPLOY / "nginx" / "schakel-desk.conf"
DESK_ENV = DEPLOY / "desk.env.example"


def _options() -> set[str]:
    return {o for p in desk_cli.serve_command.params if isinstance(p, click.Option) for o in p.opts}


def test_desk_unit_is_hardened_and_reads_the_passphrase_from_a_credential() -> None:
    service = read_unit(DESK_UNIT)["Service"]
    for key, value in {**HARDENING, "EnvironmentFile": "/etc/schakel/desk.env"}.items():
        assert service.get(key) == [value], f"{key}={value} missing"
    (command,) = service["ExecStart"]
    assert command.startswith(f"{INSTALLED_SCHAKEL} desk serve ")
    assert "--passphrase-credential passphrase" in command
    assert service["LoadCredentialEncrypted"] == ["passphrase:/etc/schakel/desk-passphrase.cred"]
    assert "--host 127.0.0.1" in command  # behind nginx only
    for option in re.findall(r"(--[a-z-]+)", command):
        assert option in _options(), option
    assert all("SCHAKEL_PASSPHRASE" not in v for vs in service.values() for v in vs)


def test_desk_env_names_what_the_desk_reads() -> None:
    names = set(re.findall(r"^([A-Z_]+)=", DESK_ENV.read_text(), re.M))
    envvars = {p.envvar for p in desk_cli.serve_command.params if isinstance(p, click.Option)}
    assert names == {"SCHAKEL_HUB_URL", "SCHAKEL_DESK_ORIGIN", "SCHAKEL_RETENTION_KIND"}
    assert names <= envvars and "SCHAKEL_RETENTION_CASE_DAYS" in envvars
    assert "PASSPHRASE" not in DESK_ENV.read_text()


def test_desk_nginx_logs_routes_only_and_streams_the_live_inbox() -> None:
    text = DESK_NGINX.read_text()
    log_format = re.search(r"log_format schakel_desk(.*?);", text, re.S)
    assert log_format is not None
    variables = set(re.findall(r"\$([a-z0-9_]+)", log_format[1]))
    assert variables == {
        "time_iso8601",
        "request_method",
        "schakel_desk_route",
        "status",
        "request_time",
    }
    live = re.search(r"location = /postvak/live \{(.*?)\}", text, re.S)
    assert live is not None and "proxy_buffering off" in live[1]
    assert re.search(r"ssl_protocols TLSv1\.2 TLSv1\.3;", text)
    assert "client_max_body_size 64k;" in text
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in text  # not appended to
    assert "add_header" not in text  # the desk sets its own security headers


def test_every_desk_route_is_in_the_log_map() -> None:
    text = DESK_NGINX.read_text()
    routes = {
        route.path  # type: ignore[attr-defined]
        for module in (login, inbox, signals, pages, casework, privacy, overview, comensha, reports)
        for route in module.routes()
    }
    mapped = set(re.findall(r"^\s+(/\S*)\s", text, re.M))
    patterns = re.findall(r"^\s+~(\S+)\s", text, re.M)
    for path in routes - {"/"}:
        templated = re.sub(r"\{id\}", "X", path)
        covered = path in mapped or any(re.fullmatch(p.strip("^$"), templated) for p in patterns)
        if not covered:
            assert path.startswith(
                ("/inloggen/", "/signaal/", "/beheer/", "/doelbinding", "/uitloggen", "/taal")
            ), path


@pytest.fixture
def desk_unit_copy(tmp_path: Path) -> Path:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not on PATH: the desk unit was not checked by systemd")
    target = tmp_path / DESK_UNIT.name
    target.write_text(DESK_UNIT.read_text().replace(INSTALLED_SCHAKEL, "/bin/true"))
    return target


def test_systemd_accepts_and_rates_the_desk_unit(desk_unit_copy: Path) -> None:
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(desk_unit_copy)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=20", str(desk_unit_copy)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr


def test_nginx_accepts_the_desk_config(tmp_path: Path) -> None:
    _self_signed(tmp_path)
    for name in ("fullchain.pem", "privkey.pem"):
        shutil.copy(tmp_path / name, tmp_path / f"desk-{name}")
    nginx_test(
        tmp_path,
        DESK_NGINX,
        {"/etc/schakel/tls/": f"{tmp_path}/", "/var/log/nginx/": f"{tmp_path}/"},
    )


def test_the_desk_does_not_start_without_a_stated_retention_period(tmp_path: Path) -> None:
    # The desk erases cases by itself, and an erasure can not be undone: no default period.
    env = {"SCHAKEL_RETENTION_KIND": "", "SCHAKEL_RETENTION_CASE_DAYS": "", "SCHAKEL_PW": "x"}
    result = CliRunner().invoke(
        desk_cli.desk,
        ["serve", "--home", str(tmp_path), "--hub", "http://127.0.0.1:9",
         "--origin", "http://localhost:8501", "--passphrase-env", "SCHAKEL_PW"],
        env=env,
    )  # fmt: skip
    assert result.exit_code != 0
    assert "say which retention period the desk applies: --retention-kind" in result.output
    assert list(tmp_path.iterdir()) == []  # nothing written: not even a desk database
