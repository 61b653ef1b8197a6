"""``schakel pseudonymiser`` and ``schakel authority oprf-certify``, from keys to a running
service: init, certify, import, migrate, serve (a real process), usage, and the errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from clients.cli.authority import authority
from protocol.oprfkeys import OprfKeyStatement
from pseudonymiser.cli import pseudonymiser

pytestmark = pytest.mark.parametrize("database_kind", ["sqlite"])  # no database logic here
ENV = {"SCHAKEL_WEAK_KDF": "1", "SCHAKEL_PASSPHRASE": "a passphrase"}


def _run(group, *args: str) -> Result:  # type: ignore[no-untyped-def]
    return CliRunner().invoke(group, list(args), env=ENV)


def _ok(group, *args: str) -> Result:  # type: ignore[no-untyped-def]
    result = _run(group, *args)
    assert result.exit_code == 0, result.output
    return result


def _error(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.stderr.startswith("Error: ")
    return result.stderr


@pytest.fixture
def certified(tmp_path: Path, database_kind: str) -> Path:
    """An authority and service share 1 with its statement imported."""
    adir, sdir = tmp_path / "authority", tmp_path / "oprf-a"
    _ok(authority, "--dir", str(adir), "init", "--network", "region-west")
    result = _ok(
        pseudonymiser, "init", "--dir", str(sdir), "--network", "region-west",
        "--service", "oprf-a", "--share", "1",
    )  # fmt: skip
    assert "public key:" in result.stdout
    out = tmp_path / "statement.json"
    result = _ok(
        authority, "--dir", str(adir), "--json", "oprf-certify", str(sdir / "request.json"),
        "--out", str(out), "--url", "https://oprf-a.example.nl",
    )  # fmt: skip
    fields = json.loads(result.stdout)
    assert (fields["service"], fields["share"], fields["version"]) == ("oprf-a", 1, 1)
    imported = _ok(
        pseudonymiser, "import-statement", str(out), "--root", str(adir / "root.pem"),
        "--dir", str(sdir),
    )  # fmt: skip
    assert "share 1 of pseudonym version 1" in imported.stdout
    assert OprfKeyStatement.from_wire(json.loads(out.read_text())).version == 1
    return sdir


def test_the_authority_certifies_and_the_service_imports(tmp_path: Path, certified: Path) -> None:
    state = json.loads((certified / "state.json").read_text())["state"]
    assert state["statement"] is not None and state["root"] is not None
    # The same request again: a renewed statement of version 1; never over an existing file.
    out = tmp_path / "statement.json"
    error = _error(
        _run(
            authority, "--dir", str(tmp_path / "authority"), "oprf-certify",
            str(certified / "request.json"), "--out", str(out), "--url", "https://x.example.nl",
        )
    )  # fmt: skip
    assert "refusing to overwrite" in error


def test_errors_are_one_line(tmp_path: Path, certified: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"v": 1}')
    _error(_run(authority, "--dir", str(tmp_path / "authority"), "oprf-certify", str(bad),
        "--out", str(tmp_path / "x.json"), "--url", "https://x.example.nl"))  # fmt: skip
    _error(_run(pseudonymiser, "init", "--dir", str(certified), "--network", "region-west",
        "--service", "oprf-a", "--share", "1"))  # fmt: skip
    _error(_run(pseudonymiser, "serve", "--dir", str(tmp_path / "nowhere")))
    fresh = tmp_path / "fresh"
    _ok(pseudonymiser, "init", "--dir", str(fresh), "--network", "region-west",
        "--service", "oprf-b", "--share", "2")  # fmt: skip
    assert "no key statement yet" in _error(_run(pseudonymiser, "serve", "--dir", str(fresh)))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_runs_until_sigterm_and_usage_reads_the_audit(
    tmp_path: Path, certified: Path
) -> None:
    port, url = _free_port(), f"sqlite+aiosqlite:///{tmp_path / 'var' / 'oprf.db'}"
    _ok(pseudonymiser, "migrate", "--database-url", url)
    process = subprocess.Popen(
        [sys.executable, "-m", "schakel", "pseudonymiser", "serve", "--dir", str(certified),
         "--port", str(port), "--database-url", url, "--no-migrate"],
        env={**os.environ, **ENV}, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        body = None
        for _ in range(200):  # until it listens; bounded (20 s)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                    body = json.loads(r.read())
                    break
            except OSError:
                time.sleep(0.1)
        assert body == {"status": "ready"}
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/service", timeout=1) as r:
            assert json.loads(r.read())["service"] == "oprf-a"
    finally:
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert {
        "listening": f"127.0.0.1:{port}",
        "network": "region-west",
        "service": "oprf-a",
    } in lines
    result = _ok(pseudonymiser, "usage", "--database-url", url)
    assert result.stdout.splitlines()[0].startswith("day")
