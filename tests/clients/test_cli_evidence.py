"""``schakel audit evidence verify``: plain words, and exit codes 0, 4 and 6."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from witness_network import T0, WitnessNet, fork, leaves, seeded_key

from clients.cli.audit import audit
from protocol import merkle
from protocol.certificate import pem_encode
from protocol.evidence import Head, make_evidence


@pytest.fixture(scope="module")
def net() -> WitnessNet:
    return WitnessNet()


@pytest.fixture
def home(tmp_path: Path, net: WitnessNet) -> Path:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "root.pem").write_bytes(pem_encode(net.root.der, "CERTIFICATE"))
    return tmp_path


def write(tmp_path: Path, net: WitnessNet, first: list[bytes], second: list[bytes],
          proof: list[bytes] | None = None) -> Path:  # fmt: skip
    made = make_evidence(
        Head(checkpoint=net.checkpoint_of(first).to_bytes()),
        Head(checkpoint=net.checkpoint_of(second).to_bytes()),
        [net.hub_cert], net.root, proof=proof or [], observed=T0, observer="police",
    )  # fmt: skip
    path = tmp_path / "evidence.json"
    path.write_bytes(made.to_bytes())
    return path


def run(home: Path, *args: str) -> Result:
    return CliRunner().invoke(audit, ["--home", str(home), "evidence", "verify", *args])


def test_a_fork_is_proven(home: Path, net: WitnessNet) -> None:
    path = write(home, net, leaves(6), fork(6, 2))
    result = run(home, str(path))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("PROVEN: the hub of network witness-test showed two")
    assert "one root for each size" in result.output and "Seen by police" in result.output
    as_json = CliRunner().invoke(
        audit, ["--home", str(home), "--json", "evidence", "verify", str(path)]
    )
    shown = json.loads(as_json.output)
    assert shown["proves"] is True and shown["kind"] == "fork"
    assert shown["first"]["size"] == shown["second"]["size"] == 6


def test_an_inconsistency_is_proven(home: Path, net: WitnessNet) -> None:
    other = fork(9, 3)
    path = write(home, net, leaves(5), other, merkle.consistency_proof(5, other))
    result = run(home, str(path))
    assert result.exit_code == 0, result.output
    assert "the first 5 entries of the second head have root" in result.output


def test_a_file_that_proves_nothing_exits_4(home: Path, net: WitnessNet) -> None:
    path = write(home, net, leaves(6), leaves(6))
    result = run(home, str(path))
    assert result.exit_code == 4
    assert result.output.startswith("NOT EVIDENCE of a split view")
    other_root = WitnessNet(root_key=seeded_key("another root"))
    (home / "other.pem").write_bytes(pem_encode(other_root.root.der, "CERTIFICATE"))
    forked = write(home, net, leaves(6), fork(6, 2))
    assert run(home, str(forked), "--root", str(home / "other.pem")).exit_code == 4


def test_a_file_that_does_not_parse_exits_6(home: Path) -> None:
    for content in (b"", b"{}", b"not json", b'{"format": "schakel-evidence", "v": 1}'):
        path = home / "bad.json"
        path.write_bytes(content)
        result = run(home, str(path))
        assert result.exit_code == 6, result.output
        assert "is not an evidence file" in result.output


def test_without_a_root_exits_1(tmp_path: Path, net: WitnessNet) -> None:
    path = write(tmp_path, net, leaves(6), fork(6, 2))
    result = run(tmp_path, str(path))
    assert result.exit_code == 1 and "can not read the network root" in result.output
    assert run(tmp_path, str(tmp_path / "missing.json")).exit_code == 2
