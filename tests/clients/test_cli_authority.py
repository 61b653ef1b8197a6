"""``schakel authority``: success paths, fingerprints, JSON output, errors and exit codes."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from clients.cli import authority as cli_authority
from clients.cli.authority import authority
from keys.errors import KeysError
from keys.hub import HubKeys
from keys.keyfile import KdfParams
from keys.organisation import OrgKeys
from protocol.certificate import pem_decode
from protocol.encoding import canonical_json, fingerprint, loads_strict
from protocol.linkingkey import SealedLinkingKey
from protocol.types import NetworkId, OrgId

NET = NetworkId("region-west")
PASS = "authority passphrase"
ENV = {"SCHAKEL_WEAK_KDF": "1", "SCHAKEL_PASSPHRASE": PASS}


@pytest.fixture
def adir(tmp_path: Path) -> Path:
    return tmp_path / "authority"


def _run(adir: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(authority, ["--dir", str(adir), *args], env=env or ENV)


def _ok(adir: Path, *args: str) -> dict:
    result = _run(adir, "--json", *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def _error(result: Result, code: int = 1) -> str:
    """The one-line message of a failed run; never a traceback."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    if code == 1:
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: ")
    return result.stderr


def _org(tmp_path: Path, org: str = "police") -> OrgKeys:
    return OrgKeys.create(
        tmp_path / org, NET, OrgId(org), b"org pass", KdfParams.for_tests(), allow_weak=True
    )


# -- init and fingerprint -------------------------------------------------------------------


def test_init_prints_the_fingerprints(adir: Path) -> None:
    result = _run(adir, "init", "--network", NET)
    assert result.exit_code == 0, result.stderr
    root_der = pem_decode((adir / "root.pem").read_bytes(), "CERTIFICATE")
    assert f"root fingerprint: {fingerprint(root_der)}" in result.stdout
    assert "root key fingerprint: " in result.stdout
    assert stat.S_IMODE(adir.stat().st_mode) == 0o700
    assert PASS not in result.output


def test_init_json_and_fingerprint_agree(adir: Path) -> None:
    created = _ok(adir, "init", "--network", NET)
    assert created["network"] == NET
    shown = _ok(adir, "fingerprint")
    assert shown["root_fingerprint"] == created["root_fingerprint"]
    assert shown["root_key_fingerprint"] == created["root_key_fingerprint"]
    # no passphrase needed to read the fingerprint
    plain = CliRunner().invoke(authority, ["--dir", str(adir), "fingerprint"], env={})
    assert plain.exit_code == 0 and created["root_fingerprint"] in plain.stdout


def test_init_refuses_a_non_empty_directory(adir: Path) -> None:
    _ok(adir, "init", "--network", NET)
    assert "not empty" in _error(_run(adir, "init", "--network", NET))


def test_init_uses_production_kdf_without_the_test_switch(adir: Path, monkeypatch) -> None:
    seen: list[tuple[KdfParams, bool]] = []

    def record(directory, network, passphrase, params, *, now, days, allow_weak):
        seen.append((params, allow_weak))
        raise KeysError("stop here")

    monkeypatch.setattr(cli_authority.Authority, "create", record)
    _error(_run(adir, "init", "--network", NET, env={"SCHAKEL_PASSPHRASE": PASS}))
    assert seen == [(KdfParams.production(), False)]


def test_init_usage_errors_exit_2(adir: Path) -> None:
    assert "Missing option '--network'" in _error(_run(adir, "init"), 2)
    assert "network id must be" in _error(_run(adir, "init", "--network", "Bad Id"), 2)
    assert not adir.exists()


# -- passphrases ----------------------------------------------------------------------------


def test_passphrase_from_fd(adir: Path) -> None:
    _ok(adir, "init", "--network", NET)
    read, write = os.pipe()
    os.write(write, PASS.encode() + b"\n")
    os.close(write)
    try:
        result = CliRunner().invoke(
            authority,
            ["--dir", str(adir), "--passphrase-fd", str(read), "list"],
            env={"SCHAKEL_PASSPHRASE": "wrong, but the fd wins"},
        )
    finally:
        os.close(read)
    assert result.exit_code == 0, result.stderr
    assert "no certificates issued yet" in result.stdout


def test_passphrase_from_another_env_var(adir: Path) -> None:
    _ok(adir, "init", "--network", NET)
    result = CliRunner().invoke(
        authority,
        ["--dir", str(adir), "--passphrase-env", "MY_PASS", "list"],
        env={"MY_PASS": PASS},
    )
    assert result.exit_code == 0, result.stderr


def test_wrong_or_missing_passphrase(adir: Path) -> None:
    _ok(adir, "init", "--network", NET)
    wrong = _error(_run(adir, "list", env={"SCHAKEL_PASSPHRASE": "nope"}))
    assert "wrong passphrase or damaged file" in wrong and "nope" not in wrong
    missing = CliRunner().invoke(
        authority, ["--dir", str(adir), "list"], env={"SCHAKEL_PASSPHRASE": None}
    )
    assert "--passphrase-fd" in _error(missing)


def test_not_an_authority_directory(tmp_path: Path) -> None:
    assert "not an authority directory" in _error(_run(tmp_path, "list"))
    assert "can not read" in _error(_run(tmp_path, "fingerprint"))


# -- the full flow --------------------------------------------------------------------------


def test_full_flow(adir: Path, tmp_path: Path) -> None:
    root = _ok(adir, "init", "--network", NET)
    police, ggd = _org(tmp_path, "police"), _org(tmp_path, "ggd")
    hub = HubKeys.create(tmp_path / "hub", NET, b"hub pass", KdfParams.for_tests(), allow_weak=True)
    for keys in (police, ggd, hub):
        keys.pin_root((adir / "root.pem").read_bytes(), now=int(time.time()))

    out = tmp_path / "police-cert.pem"
    issued = _ok(
        adir,
        "enrol",
        str(tmp_path / "police" / "request.pem"),
        "--roles",
        "member,coordinator",
        "--out",
        str(out),
    )
    assert issued["org"] == "police" and issued["serial"] == 1
    assert issued["roles"] == ["coordinator", "member"]
    assert issued["key_fingerprint"] == police.key_fingerprint
    assert issued["root_fingerprint"] == root["root_fingerprint"]
    cert = police.import_certificate(out.read_bytes(), now=int(time.time()))
    assert cert.fingerprint == issued["certificate_fingerprint"]

    text = _run(adir, "enrol", str(tmp_path / "ggd" / "request.pem"), "--roles", "member")
    assert text.exit_code == 0, text.stderr
    assert f"key fingerprint: {ggd.key_fingerprint}" in text.stdout
    assert f"root fingerprint: {root['root_fingerprint']}" in text.stdout
    ggd.import_certificate((adir / "issued" / "2.pem").read_bytes(), now=int(time.time()))

    hub_out = tmp_path / "hub-cert.pem"
    hub_cert = _ok(
        adir, "certify-hub", str(tmp_path / "hub" / "request.pem"), "--out", str(hub_out)
    )
    assert hub_cert["roles"] == ["hub"] and hub_cert["org"] == "hub"
    hub.import_certificate(hub_out.read_bytes(), now=int(time.time()))

    listing = _ok(adir, "list")
    assert [(c["serial"], c["org"], c["kind"]) for c in listing["certificates"]] == [
        (1, "police", "org"),
        (2, "ggd", "org"),
        (3, "hub", "hub"),
    ]

    assert _ok(adir, "linking-key", "new")["version"] == 1
    bundle_path = tmp_path / "bundle.json"
    bundle = police.current_bundle(now=int(time.time()))
    bundle_path.write_bytes(canonical_json(bundle.to_wire()))
    sealed_path = tmp_path / "sealed.json"
    sealed_info = _ok(
        adir,
        "linking-key",
        "seal",
        "--bundle",
        str(bundle_path),
        "--cert",
        str(out),
        "--out",
        str(sealed_path),
    )
    assert sealed_info["bundle_fingerprint"] == bundle.fingerprint
    assert (sealed_info["org"], sealed_info["version"]) == ("police", 1)
    sealed = SealedLinkingKey.from_wire(loads_strict(sealed_path.read_bytes()))
    assert police.store_linking_key(sealed, now=int(time.time())).version == 1

    revoked = _ok(adir, "revoke", "2")
    assert revoked["crl_number"] == 1 and list(revoked["revoked"]) == ["2"]
    crl_out = tmp_path / "crl.pem"
    fresh = _ok(adir, "crl", "--out", str(crl_out))
    assert fresh["crl_number"] == 2 and list(fresh["revoked"]) == ["2"]
    assert crl_out.read_bytes().startswith(b"-----BEGIN X509 CRL-----")
    listing = _ok(adir, "list")
    assert [c["revoked_at"] is not None for c in listing["certificates"]] == [False, True, False]
    table = _run(adir, "list").stdout
    assert "revoked" in table and "valid until" in table

    # refusals along the way
    assert "already revoked" in _error(_run(adir, "revoke", "2"))
    assert "no certificate with serial 9" in _error(_run(adir, "revoke", "9"))
    assert "refusing to overwrite" in _error(
        _run(
            adir,
            "enrol",
            str(tmp_path / "police" / "request.pem"),
            "--roles",
            "member",
            "--out",
            str(out),
        )
    )
    ggd_bundle = tmp_path / "ggd-bundle.json"
    ggd_bundle.write_bytes(canonical_json(ggd.current_bundle(now=int(time.time())).to_wire()))
    assert "is revoked" in _error(
        _run(
            adir,
            "linking-key",
            "seal",
            "--bundle",
            str(ggd_bundle),
            "--cert",
            str(adir / "issued" / "2.pem"),
            "--out",
            str(tmp_path / "x.json"),
        )
    )
    assert "hub never receives" in _error(
        _run(
            adir,
            "linking-key",
            "seal",
            "--bundle",
            str(bundle_path),
            "--cert",
            str(hub_out),
            "--out",
            str(tmp_path / "y.json"),
        )
    )
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "y.json").exists()


def test_enrol_errors(adir: Path, tmp_path: Path) -> None:
    _ok(adir, "init", "--network", NET)
    request = str(_org(tmp_path).directory / "request.pem")
    assert "unknown role admin" in _error(
        _run(adir, "enrol", request, "--roles", "member,admin"), 2
    )
    assert "at least one role" in _error(_run(adir, "enrol", request, "--roles", ","), 2)
    assert "Missing option '--roles'" in _error(_run(adir, "enrol", request), 2)
    assert "can not read" in _error(
        _run(adir, "enrol", str(tmp_path / "none.pem"), "--roles", "member")
    )
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(
        b"-----BEGIN CERTIFICATE REQUEST-----\nnot base64\n-----END CERTIFICATE REQUEST-----\n"
    )
    assert "PEM body is not base64" in _error(
        _run(adir, "enrol", str(garbage), "--roles", "member")
    )
    assert "must name organisation 'hub'" in _error(_run(adir, "certify-hub", request))


def test_seal_with_a_malformed_bundle(adir: Path, tmp_path: Path) -> None:
    _ok(adir, "init", "--network", NET)
    bundle = tmp_path / "b.json"
    bundle.write_bytes(b'{"v": 1, "v": 2}')
    cert = tmp_path / "c.pem"
    cert.write_bytes(b"")
    message = _error(
        _run(
            adir,
            "linking-key",
            "seal",
            "--bundle",
            str(bundle),
            "--cert",
            str(cert),
            "--out",
            str(tmp_path / "s.json"),
        )
    )
    assert "duplicate key" in message
    assert "Missing option '--out'" in _error(
        _run(adir, "linking-key", "seal", "--bundle", str(bundle), "--cert", str(cert)), 2
    )


def test_seal_without_a_linking_key(adir: Path, tmp_path: Path) -> None:
    _ok(adir, "init", "--network", NET)
    police = _org(tmp_path)
    police.pin_root((adir / "root.pem").read_bytes(), now=int(time.time()))
    cert_path = tmp_path / "cert.pem"
    _ok(
        adir,
        "enrol",
        str(police.directory / "request.pem"),
        "--roles",
        "member",
        "--out",
        str(cert_path),
    )
    police.import_certificate(cert_path.read_bytes(), now=int(time.time()))
    bundle = tmp_path / "b.json"
    bundle.write_bytes(canonical_json(police.current_bundle(now=int(time.time())).to_wire()))
    message = _error(
        _run(
            adir,
            "linking-key",
            "seal",
            "--bundle",
            str(bundle),
            "--cert",
            str(cert_path),
            "--out",
            str(tmp_path / "s.json"),
        )
    )
    assert "no linking key yet" in message


@pytest.mark.parametrize(
    ("passphrase", "says"),
    [("short", "too short: use at least 12 characters"), ("aaaaaaaaaaaaaaa", "too easy to guess")],
)
def test_init_refuses_a_weak_passphrase(adir: Path, passphrase: str, says: str) -> None:
    env = {"SCHAKEL_WEAK_KDF": "1", "SCHAKEL_PASSPHRASE": passphrase}
    message = _error(_run(adir, "init", "--network", NET, env=env))
    assert says in message and passphrase not in message.replace("too short", "")
    assert not (adir / "root.pem").exists()  # nothing made with it


def test_json_may_follow_the_command(adir: Path) -> None:
    _ok(adir, "init", "--network", NET)
    after = _run(adir, "fingerprint", "--json")
    assert after.exit_code == 0 and json.loads(after.stdout) == _ok(adir, "fingerprint")


# -- witnesses ------------------------------------------------------------------------------


def test_certify_witness_and_sign_a_policy(adir: Path, tmp_path: Path) -> None:
    from keys.witness import WitnessKeys
    from protocol.witness import WitnessCertificate
    from protocol.witnesspolicy import WitnessPolicy

    _ok(adir, "init", "--network", NET)
    serials = []
    for org in ("police", "coordinator"):
        keys = WitnessKeys.create(
            tmp_path / f"w-{org}", NET, OrgId(org), b"p", KdfParams.for_tests(), allow_weak=True
        )
        out = tmp_path / f"{org}-witness.json"
        shown = _ok(
            adir, "certify-witness", str(keys.directory / "request.json"), "--out", str(out)
        )
        cert = WitnessCertificate.from_wire(loads_strict(out.read_bytes()))
        assert shown["serial"] == cert.serial and shown["org"] == org
        assert shown["vkey"].startswith(f"{cert.name}+")
        assert shown["key_fingerprint"] == fingerprint(
            keys.signing_key.public_key().public_bytes_raw()
        )
        serials.append(str(cert.serial))
    result = _run(adir, "certify-witness", str(tmp_path / "w-police" / "request.json"),
                  "--out", str(tmp_path / "police-witness.json"))  # fmt: skip
    assert "refusing to overwrite" in _error(result)
    assert len(_ok(adir, "list")["certificates"]) == 2  # nothing was issued
    policy = _ok(adir, "witness-policy", "--quorum", "2", *serials)
    assert (policy["number"], policy["quorum"]) == (1, 2)
    assert policy["organisations"] == ["coordinator", "police"]
    stored = WitnessPolicy.from_wire(loads_strict((adir / "witness-policy-1.json").read_bytes()))
    assert [str(w.serial) for w in stored.witnesses] == serials
    assert "quorum" in _error(_run(adir, "witness-policy", "--quorum", "3", *serials))
    assert "not a witness" in _error(_run(adir, "witness-policy", "--quorum", "1", "99"))
    assert _run(adir, "witness-policy", *serials).exit_code == 2  # --quorum is required


def test_certify_witness_with_a_malformed_request(adir: Path, tmp_path: Path) -> None:
    _ok(adir, "init", "--network", NET)
    bad = tmp_path / "request.json"
    bad.write_text('{"v": 1}')
    assert "witness request" in _error(_run(adir, "certify-witness", str(bad)))


# -- retiring the linking key -----------------------------------------------------------------


def test_retire_linking_key_needs_an_oprf_key_set_and_writes_a_signed_retirement(
    adir: Path, tmp_path: Path
) -> None:
    from keys.authority import Authority
    from keys.pseudonymiser import ServiceKeys
    from protocol.retirement import Retirement, verify_retirement
    from protocol.types import ServiceName

    _ok(adir, "init", "--network", NET)
    _ok(adir, "linking-key", "new")
    out = tmp_path / "retired.json"
    error = _error(_run(adir, "retire-linking-key", "--version", "1", "--out", str(out)))
    assert "no pseudonymisation key set" in error and not out.exists()
    for share in (1, 2):
        service = ServiceKeys.create(
            tmp_path / f"oprf-{share}", NET, ServiceName(f"oprf-{share}"), share, b"s",
            KdfParams.for_tests(), allow_weak=True,
        )  # fmt: skip
        statement = tmp_path / f"statement-{share}.json"
        _ok(adir, "oprf-certify", str(service.directory / "request.json"), "--out",
            str(statement), "--url", f"https://oprf-{share}.nl")  # fmt: skip
    assert "no linking key version 7" in _error(
        _run(adir, "retire-linking-key", "--version", "7", "--out", str(out))
    )
    fields = _ok(adir, "retire-linking-key", "--version", "1", "--days", "14", "--out", str(out))
    retirement = Retirement.from_wire(loads_strict(out.read_bytes()))
    assert (fields["version"], fields["until"]) == (1, retirement.until)
    assert retirement.until - int(time.time()) in range(14 * 86400 - 60, 14 * 86400 + 1)
    verify_retirement(retirement, Authority.open(adir, PASS.encode()).root)
    assert "refusing to overwrite" in _error(
        _run(adir, "retire-linking-key", "--version", "1", "--out", str(out))
    )
