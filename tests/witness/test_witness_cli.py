"""``schakel witness``: init, import and a real ``serve`` on loopback, end to end."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner
from witness_network import leaves

from keys.authority import Authority
from keys.hub import HubKeys
from keys.keyfile import KdfParams
from protocol import merkle
from protocol.certificate import pem_encode
from protocol.checkpoint import sign_checkpoint
from protocol.encoding import canonical_json
from protocol.note import open_note
from protocol.tlogwitness import AddCheckpoint, parse_cosignature_body
from protocol.types import NetworkId
from witness.cli import witness

NET = NetworkId("region-west")
ENV = {"SCHAKEL_WEAK_KDF": "1", "SCHAKEL_PASSPHRASE": "witness passphrase"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_init_import_and_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    keys_dir = tmp_path / "witness-keys"
    result = runner.invoke(
        witness, ["init", "--dir", str(keys_dir), "--network", NET, "--org", "coordinator"], env=ENV
    )
    assert result.exit_code == 0, result.output
    assert "key fingerprint:" in result.output and "witness passphrase" not in result.output
    bad = runner.invoke(witness, ["init", "--dir", str(tmp_path / "x"), "--network", "Bad",
                                  "--org", "a"], env=ENV)  # fmt: skip
    assert bad.exit_code == 2
    refused = runner.invoke(witness, ["serve", "--dir", str(keys_dir), "--hub-cert",
                                      str(keys_dir / "request.json")], env=ENV)  # fmt: skip
    assert refused.exit_code == 1 and "no witness certificate yet" in refused.output


@pytest.fixture
def provisioned(tmp_path: Path) -> dict[str, object]:
    """An authority, a certified hub key and a certified witness directory on disk."""
    now = int(time.time())
    weak = KdfParams.for_tests()
    authority = Authority.create(tmp_path / "authority", NET, b"a", weak, now=now, allow_weak=True)
    hub = HubKeys.create(tmp_path / "hub", NET, b"h", weak, allow_weak=True)
    hub.pin_root(authority.root.der, now=now)
    hub_cert = hub.import_certificate(authority.certify_hub(hub.request_der, now=now).der, now=now)
    (tmp_path / "hub-cert.pem").write_bytes(pem_encode(hub_cert.der, "CERTIFICATE"))
    runner = CliRunner()
    keys_dir = tmp_path / "witness-keys"
    init = ["init", "--dir", str(keys_dir), "--network", NET, "--org", "coordinator"]
    assert runner.invoke(witness, init, env=ENV).exit_code == 0
    from keys.witness import read_witness_json
    from protocol.witness import WitnessRequest

    request = WitnessRequest.from_wire(read_witness_json(keys_dir / "request.json"))
    cert = authority.certify_witness(request, now=now)
    (tmp_path / "witness-cert.json").write_bytes(canonical_json(cert.to_wire()))
    result = runner.invoke(witness, ["import", "--dir", str(keys_dir), "--root",
                                     str(authority.directory / "root.pem"), "--cert",
                                     str(tmp_path / "witness-cert.json")], env=ENV)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "vkey: schakel.invalid/region-west/witness/coordinator+" in result.output
    return {"hub": hub, "hub_cert": hub_cert, "root": authority.root, "cert": cert,
            "keys_dir": keys_dir}  # fmt: skip


async def test_serve_cosigns_over_http(tmp_path: Path, provisioned: dict[str, object]) -> None:
    port = free_port()
    env = {**os.environ, **ENV, "SCHAKEL_WITNESS_PORT": str(port),
           "SCHAKEL_WITNESS_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'w.db'}",
           "SCHAKEL_WITNESS_EVIDENCE_DIR": str(tmp_path / "evidence")}  # fmt: skip
    keys_dir, hub_cert = str(provisioned["keys_dir"]), str(tmp_path / "hub-cert.pem")
    command = [sys.executable, "-m", "schakel", "witness", "serve", "--dir", keys_dir,
               "--hub-cert", hub_cert]  # fmt: skip
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, url, process)
            hub = provisioned["hub"]
            tree = leaves(7)
            signed = sign_checkpoint(
                hub.signing_key, provisioned["hub_cert"], provisioned["root"],  # type: ignore[attr-defined,arg-type]
                size=7, root_hash=merkle.root_hash(tree),
            )  # fmt: skip
            body = AddCheckpoint(0, (), signed.to_bytes()).to_bytes()
            async with session.post(f"{url}/add-checkpoint", data=body) as response:
                assert response.status == 200
                lines = parse_cosignature_body(await response.read())
            verifier = provisioned["cert"].verifier()  # type: ignore[attr-defined]
            assert open_note(signed.note.with_signatures(lines), [verifier]).verified == lines
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    assert "witness passphrase" not in stderr


async def wait_ready(session: aiohttp.ClientSession, url: str, process: subprocess.Popen) -> None:  # type: ignore[type-arg]
    import asyncio

    for _ in range(200):
        if process.poll() is not None:
            raise AssertionError(process.stderr.read() if process.stderr else "exited")
        try:
            async with session.get(f"{url}/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError("the witness did not become ready")
