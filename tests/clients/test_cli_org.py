"""``schakel org`` through click's CliRunner: flows, output and exit codes."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import clients.cli as cli
from clients.hub_client import HubClient, InboxItem, InboxPage
from clients.organisation import Organisation
from clients.state import LocalState
from keys.authority import Authority
from keys.keyfile import KdfParams
from keys.organisation import OrgKeys
from protocol.certificate import pem_encode
from protocol.encoding import b64d, b64e
from protocol.envelope import new_message_id, seal
from protocol.types import NetworkId, OrgId

NETWORK = NetworkId("test-net")
PASS = "a passphrase for tests"
NOW = int(time.time()) - 60  # the CLI reads the real clock


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    authority = Authority.create(
        tmp_path / "authority",
        NETWORK,
        PASS.encode(),
        KdfParams.for_tests(),
        now=NOW,
        allow_weak=True,
    )
    authority.new_linking_key()
    return authority


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    async def no_sleep(delay: float) -> None:
        return None

    monkeypatch.setattr(cli, "HubClient", functools.partial(HubClient, sleep=no_sleep))
    return {
        "SCHAKEL_HOME": str(tmp_path / "home"),
        "SCHAKEL_PASSPHRASE": PASS,
        "SCHAKEL_WEAK_KDF": "1",
        "SCHAKEL_HUB_URL": "http://127.0.0.1:9",
        "SCHAKEL_USER": "j.jansen",
        "SCHAKEL_PURPOSE": "signal-intake",
    }


def run(env: dict[str, str], *args: str) -> Any:
    return CliRunner().invoke(cli.org, list(args), env=env)


def root_pem(authority: Authority, tmp_path: Path) -> Path:
    path = tmp_path / "root.pem"
    path.write_bytes(pem_encode(authority.root.der, "CERTIFICATE"))
    return path


@pytest.fixture
def enrolled(authority: Authority, env: dict[str, str], tmp_path: Path) -> OrgKeys:
    result = run(
        env,
        "init",
        "--org",
        "ggd",
        "--network",
        str(NETWORK),
        "--root",
        str(root_pem(authority, tmp_path)),
    )
    assert result.exit_code == 0, result.output
    keys = OrgKeys.open(Path(env["SCHAKEL_HOME"]) / "keys", PASS.encode())
    cert = authority.enrol(keys.request_der, ["member"], now=NOW)
    cert_file = tmp_path / "cert.pem"
    cert_file.write_bytes(pem_encode(cert.der, "CERTIFICATE"))
    result = run(env, "--json", "import-cert", str(cert_file))
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["fingerprint"] == cert.fingerprint
    return OrgKeys.open(Path(env["SCHAKEL_HOME"]) / "keys", PASS.encode())


def test_init_prints_request_and_fingerprint(
    authority: Authority, env: dict[str, str], tmp_path: Path
) -> None:
    result = run(
        env,
        "--json",
        "init",
        "--org",
        "politie",
        "--network",
        str(NETWORK),
        "--root",
        str(root_pem(authority, tmp_path)),
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert Path(data["request"]).is_file()
    assert data["root"] == authority.root.fingerprint
    assert len(data["key_fingerprint"]) == 43
    again = run(
        env,
        "init",
        "--org",
        "politie",
        "--network",
        str(NETWORK),
        "--root",
        str(root_pem(authority, tmp_path)),
    )
    assert again.exit_code == 1 and again.output.startswith("error: ")


def test_status_before_and_after_linking(
    enrolled: OrgKeys, authority: Authority, env: dict[str, str]
) -> None:
    result = run(env, "status")
    assert result.exit_code == 0, result.output
    assert "organisation: ggd" in result.output
    assert "linking-key fetch" in result.output
    sealed = authority.seal_linking_key(
        enrolled.current_bundle(now=NOW),
        enrolled.certificate,
        now=NOW,  # type: ignore[arg-type]
    )
    enrolled.store_linking_key(sealed, now=NOW)
    data = json.loads(run(env, "--json", "status").output)
    assert data["linking_keys"] == [1] and data["certificate"]["roles"] == ["member"]
    assert len(data["bundles"]) == 1 and data["messages"] == 0


def test_pseudonyms_are_derived_locally(
    enrolled: OrgKeys, authority: Authority, env: dict[str, str]
) -> None:
    result = run(env, "pseudonyms", "--bsn", "111222333")
    assert result.exit_code == 1 and "linking-key fetch" in result.output
    sealed = authority.seal_linking_key(
        enrolled.current_bundle(now=NOW),
        enrolled.certificate,
        now=NOW,  # type: ignore[arg-type]
    )
    enrolled.store_linking_key(sealed, now=NOW)
    result = run(env, "--json", "pseudonyms", "--bsn", "111222333", "--phone", "0612345678")
    assert result.exit_code == 0, result.output
    derived = json.loads(result.output)["pseudonyms"]
    assert [p.split(".")[0] for p in derived] == ["bsn", "tel"]
    bad = run(env, "pseudonyms", "--bsn", "123456789")
    assert bad.exit_code == 1 and bad.output.startswith("error: payload invalid at $.person")
    assert "123456789" not in bad.output
    assert run(env, "pseudonyms").exit_code == 2
    # A date written as Dutch forms write it meets the ISO spelling of the same date.
    person = ("--given-names", "Anna", "--family-name", "de Vries")
    iso = run(env, "--json", "pseudonyms", *person, "--dob", "1999-03-14")
    dutch = run(env, "--json", "pseudonyms", *person, "--dob", "14-03-1999")
    assert iso.exit_code == dutch.exit_code == 0, iso.output + dutch.output
    assert json.loads(iso.output) == json.loads(dutch.output)
    impossible = run(env, "pseudonyms", *person, "--dob", "31-02-1999")
    assert impossible.exit_code == 1 and impossible.output.startswith("error: --dob:")
    assert "31-02-1999" not in impossible.output


def test_usage_errors_exit_2(env: dict[str, str]) -> None:
    no_home = {k: v for k, v in env.items() if k != "SCHAKEL_HOME"}
    assert run(no_home, "status").exit_code == 2
    assert run(env, "send-signal").exit_code == 2
    assert run(env, "send-signal", "--to", "ggd", "--urgency", "asap").exit_code == 2


def test_missing_keys_and_wrong_passphrase_exit_1(
    enrolled: OrgKeys, env: dict[str, str], tmp_path: Path
) -> None:
    result = run({**env, "SCHAKEL_HOME": str(tmp_path / "nothing")}, "status")
    assert result.exit_code == 1 and "schakel org init" in result.output
    result = run({**env, "SCHAKEL_PASSPHRASE": "wrong"}, "status")
    assert result.exit_code == 1 and result.output.startswith("error: ")
    assert "Traceback" not in result.output


def test_hub_commands_need_a_user_id(enrolled: OrgKeys, env: dict[str, str]) -> None:
    env = {k: v for k, v in env.items() if k != "SCHAKEL_USER"}
    for command in (["publish"], ["inbox"], ["linking-key", "fetch"]):
        result = run(env, *command)
        assert result.exit_code == 2, command
        assert "--user (or SCHAKEL_USER) is required" in result.output


def test_purpose_must_be_a_known_code(enrolled: OrgKeys, env: dict[str, str]) -> None:
    result = run({**env, "SCHAKEL_PURPOSE": "curiosity"}, "inbox")
    assert result.exit_code == 2
    assert "curiosity" in result.output and "case-coordination" in result.output


def test_purpose_text_is_checked_before_anything_is_sent(
    enrolled: OrgKeys, env: dict[str, str]
) -> None:
    result = run(env, "--purpose-text", "a\u202eb", "inbox")
    assert result.exit_code == 1
    assert "purpose text" in result.output and "\u202e" not in result.output


def test_unreachable_hub_exits_3(enrolled: OrgKeys, env: dict[str, str]) -> None:
    result = run(env, "publish")
    assert result.exit_code == 3
    assert result.output.startswith("error: hub http://127.0.0.1:9 unreachable")


def test_send_signal_validates_before_touching_the_hub(
    enrolled: OrgKeys, env: dict[str, str], tmp_path: Path
) -> None:
    result = run(env, "send-signal", "--to", "politie", "--indicator", "work.fun", "--consent")
    assert result.exit_code == 1
    assert (
        result.output == "error: payload invalid at $.indicators[0]: must be one of: "
        "control.documents_withheld, control.restricted_movement, control.always_accompanied, "
        "control.threatened, control.isolated, control.no_own_money, work.excessive_hours, "
        "work.no_payment, ...\n"
    )
    bad_file = tmp_path / "signal.json"
    bad_file.write_text('{"schema": "schakel.signal/1", "schema": "x"}')
    result = run(env, "send-signal", "--to", "politie", "--file", str(bad_file))
    assert result.exit_code == 1 and "duplicate key" in result.output
    good = tmp_path / "good.json"
    good.write_text(
        json.dumps(
            {
                "schema": "schakel.signal/1",
                "person": {},
                "urgency": "low",
                "exploitation": "unknown",
                "consent_to_share": False,
            }
        )
    )
    result = run(env, "send-signal", "--to", "politie", "--file", str(good))
    assert result.exit_code == 3  # valid: it got as far as the (absent) hub


class _Inbox:
    """Just enough of a hub for Organisation.receive: one envelope, then nothing."""

    def __init__(self, wire: dict[str, Any], sender_der: bytes, crl_der: bytes) -> None:
        self.wire, self.sender_der, self.crl_der = wire, sender_der, crl_der
        self.acked: list[str] = []

    async def inbox(self, after: int = 0, limit: int = 50) -> InboxPage:
        items = (InboxItem(1, self.wire, False),) if after < 1 else ()
        return InboxPage(items, 1 if items else after)

    async def get_crl(self) -> bytes:
        return self.crl_der

    async def get_org(self, org: str) -> tuple[bytes, None]:
        return self.sender_der, None

    async def ack(self, message_id: str) -> None:
        self.acked.append(message_id)

    async def audit_head(self) -> None:
        return None  # a hub that has signed no tree head yet


@pytest.fixture
def received(
    enrolled: OrgKeys, authority: Authority, env: dict[str, str], tmp_path: Path
) -> Iterator[str]:
    sender = OrgKeys.create(
        tmp_path / "politie",
        NETWORK,
        OrgId("politie"),
        PASS.encode(),
        KdfParams.for_tests(),
        allow_weak=True,
    )
    sender.pin_root(authority.root.der, now=NOW)
    sender_cert = authority.enrol(sender.request_der, ["member"], now=NOW)
    sender.import_certificate(sender_cert.der, now=NOW)
    payload = {
        "schema": "schakel.signal/1",
        "person": {"sex": "male"},
        "urgency": "high",
        "exploitation": "criminal",
        "consent_to_share": True,
        "text": "Zwaantje",
    }
    envelope = seal(
        message_id=new_message_id(os.urandom),
        network=NETWORK,
        sender=sender_cert,
        sender_key=sender.signing_key,
        recipients={OrgId("ggd"): enrolled.current_bundle(now=NOW)},
        kind="signal",
        payload=json.dumps(payload).encode(),
        created=NOW,
        rng=os.urandom,
    )
    state_path = Path(env["SCHAKEL_HOME"]) / "state.sqlite"
    with LocalState(state_path) as state:
        fake = _Inbox(envelope.to_wire(), sender_cert.der, authority.crl(now=NOW).der)
        org = Organisation(enrolled, state, fake, clock=lambda: float(NOW))  # type: ignore[arg-type]
        result = asyncio.run(org.receive())
        assert len(result.messages) == 1 and fake.acked == [envelope.header.id]
    yield envelope.header.id


def test_show_decrypts_from_local_state(received: str, env: dict[str, str]) -> None:
    result = run(env, "show", received)
    assert result.exit_code == 0, result.output
    assert "sender: politie" in result.output and '"text": "Zwaantje"' in result.output
    data = json.loads(run(env, "--json", "show", received).output)
    assert data["payload"]["exploitation"] == "criminal" and data["id"] == received


def test_show_of_a_tampered_stored_envelope_exits_4(received: str, env: dict[str, str]) -> None:
    path = Path(env["SCHAKEL_HOME"]) / "state.sqlite"
    db = sqlite3.connect(path)
    [(text,)] = db.execute("SELECT envelope FROM messages").fetchall()
    wire = json.loads(text)
    body = bytearray(b64d(wire["body"]))
    body[30] ^= 1
    wire["body"] = b64e(bytes(body))
    db.execute("UPDATE messages SET envelope = ?", (json.dumps(wire),))
    db.commit()
    db.close()
    result = run(env, "show", received)
    assert result.exit_code == 4
    assert result.output == "error: stored message of organisation 'politie' did not verify\n"


def test_show_of_an_unknown_message_exits_1(enrolled: OrgKeys, env: dict[str, str]) -> None:
    result = run(env, "show", "AAAAAAAAAAAAAAAAAAAAAA")
    assert result.exit_code == 1 and "schakel org inbox" in result.output
