"""``schakel org`` through click's CliRunner: set-up, local commands, output and exit codes.

These need no hub (or one that can not be reached). The commands that talk to the real
hub are in ``test_cli_hub.py``.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clients.cli import common
from clients.cli.org import org
from clients.hub_client import HubClient
from clients.state import LocalState
from keys.authority import Authority
from keys.keyfile import KdfParams
from keys.organisation import OrgKeys
from keys.witness import WitnessKeys
from protocol.certificate import pem_encode
from protocol.encoding import canonical_json
from protocol.types import NetworkId, OrgId
from protocol.witness import WitnessRequest, create_witness_request

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

    monkeypatch.setattr(common, "HubClient", functools.partial(HubClient, sleep=no_sleep))
    return {
        "SCHAKEL_HOME": str(tmp_path / "home"),
        "SCHAKEL_PASSPHRASE": PASS,
        "SCHAKEL_WEAK_KDF": "1",
        "SCHAKEL_HUB_URL": "http://127.0.0.1:9",
        "SCHAKEL_USER": "j.jansen",
        "SCHAKEL_PURPOSE": "signal-intake",
    }


def run(env: dict[str, str], *args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(org, list(args), env=env, input=input)


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


def test_init_refuses_a_weak_passphrase_and_makes_nothing(
    authority: Authority, env: dict[str, str], tmp_path: Path
) -> None:
    weak = {**env, "SCHAKEL_PASSPHRASE": "qwertyuiop12"}
    result = run(weak, "init", "--org", "politie", "--network", str(NETWORK),
                 "--root", str(root_pem(authority, tmp_path)))  # fmt: skip
    assert result.exit_code == 1 and "too easy to guess" in result.output
    assert "qwertyuiop12" not in result.output
    assert not Path(env["SCHAKEL_HOME"]).exists()


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


def _link(enrolled: OrgKeys, authority: Authority) -> None:
    cert = enrolled.certificate
    assert cert is not None
    sealed = authority.seal_linking_key(enrolled.current_bundle(now=NOW), cert, now=NOW)
    enrolled.store_linking_key(sealed, now=NOW)


def test_pseudonyms_are_derived_locally(
    enrolled: OrgKeys, authority: Authority, env: dict[str, str], tmp_path: Path
) -> None:
    anna = json.dumps({"bsn": "111222333", "phone": "0612345678"})
    result = run(env, "pseudonyms", "--person", "-", input=anna)
    assert result.exit_code == 1 and "linking-key fetch" in result.output
    _link(enrolled, authority)
    result = run(env, "--json", "pseudonyms", "--person", "-", input=anna)
    assert result.exit_code == 0, result.output
    derived = json.loads(result.stdout)["pseudonyms"]
    assert [p.split(".")[0] for p in derived] == ["bsn", "tel"]
    assert result.stderr == ""  # nothing typed in the command line, nothing to warn of
    person_file = tmp_path / "anna.json"
    person_file.write_text(anna)
    from_file = run(env, "--json", "pseudonyms", "--person", str(person_file))
    asked = run(env, "--json", "pseudonyms", "--ask", input="111 222 333\n\n\n\n06-12345678\n\n\n")
    assert json.loads(from_file.stdout) == json.loads(asked.stdout) == {"pseudonyms": derived}
    assert "BSN: " in asked.stderr and "Phone number: " in asked.stderr
    assert "111 222 333" not in asked.stdout
    bad = run(env, "pseudonyms", "--person", "-", input='{"bsn": "123456789"}')
    assert bad.exit_code == 1 and bad.output.startswith("error: payload invalid at $.person")
    assert "123456789" not in bad.output
    assert run(env, "pseudonyms").exit_code == 2
    # A date written as Dutch forms write it meets the ISO spelling of the same date.
    person = {"given_names": "Anna", "family_name": "de Vries"}
    iso = run(
        env,
        "--json",
        "pseudonyms",
        "--person",
        "-",
        input=json.dumps(person | {"date_of_birth": "1999-03-14"}),
    )
    dutch = run(env, "--json", "pseudonyms", "--person", "-",
                input=json.dumps(person | {"date_of_birth": "14-03-1999"}))  # fmt: skip
    assert iso.exit_code == dutch.exit_code == 0, iso.output + dutch.output
    assert json.loads(iso.stdout) == json.loads(dutch.stdout)


@pytest.mark.parametrize(
    ("args", "stdin", "code", "says"),
    [
        (["--person", "-"], '{"bsn": "1", "bsn": "2"}', 1, "not strict JSON (duplicate key"),
        (["--person", "-"], '["111222333"]', 1, "must be a JSON object"),
        (["--person", "-"], '{"name": "Anna"}', 1, "at $.person.name: is not an identifying"),
        (["--person", "-"], '{"bsn": 111222333}', 1, "at $.person.bsn: must be a string"),
        (["--person", "-"], '{"phone": "' + "0" * 5000 + '"}', 1, "larger than 4096 bytes"),
        (["--person", "-"], '{"given_names": "A", "family_name": "B", "date_of_birth": '
         '"31-02-1999"}', 1, "at $.person.date_of_birth"),
        (["--person", "-"], '{"phone": "0612345678", "date_of_birth": "2099-01-01"}', 1,
         "at $.person.date_of_birth: is after today"),
        (["--person", "-", "--bsn", "111222333"], "{}", 2, "one way: --person, --ask"),
        (["--ask", "--phone", "0612345678"], "", 2, "one way"),
        (["--person", "no-such-file.json"], "", 1, "no-such-file.json"),
    ],
)  # fmt: skip
def test_bad_identifying_details_are_refused_without_repeating_them(
    enrolled: OrgKeys,
    authority: Authority,
    env: dict[str, str],
    args: list[str],
    stdin: str,
    code: int,
    says: str,
) -> None:
    _link(enrolled, authority)
    result = run(env, "pseudonyms", *args, input=stdin)
    assert result.exit_code == code, result.output
    assert says in result.output and "Traceback" not in result.output
    for value in ("111222333", "31-02-1999", "2099-01-01", "Anna"):
        assert value not in result.output.replace(f"'{value}'", "")


def test_identifying_flags_work_for_scripts_but_warn(
    enrolled: OrgKeys, authority: Authority, env: dict[str, str]
) -> None:
    _link(enrolled, authority)
    result = run(env, "--json", "pseudonyms", "--bsn", "111222333", "--phone", "0612345678")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["pseudonyms"]) == 2
    assert result.stderr.startswith("warning: --bsn, --phone: identifying details typed as")
    assert "shell history" in result.stderr and "--person" in result.stderr
    assert "111222333" not in result.stderr


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
                "person": {"sex": "female"},
                "urgency": "low",
                "exploitation": "unknown",
                "consent_to_share": False,
            }
        )
    )
    result = run(env, "send-signal", "--to", "politie", "--file", str(good))
    assert result.exit_code == 1 and "no identifier can link this signal" in result.output
    assert result.output.rstrip().endswith("--unlinked")
    # valid and confirmed: it gets as far as the (absent) hub, and waits in the outbox
    result = run(env, "--json", "send-signal", "--to", "politie", "--file", str(good), "--unlinked")
    assert result.exit_code == 0, result.output
    sent = json.loads(result.stdout)
    assert sent["state"] == "waiting" and sent["accepted"] is None
    assert "waits in the outbox (hub http://127.0.0.1:9 unreachable" in result.stderr
    listed = run(env, "outbox", "--json")
    assert [e["id"] for e in json.loads(listed.stdout)["outbox"]] == [sent["id"]]


@pytest.mark.parametrize(
    "extra",
    [
        ["--bsn", "111222333"],
        ["--person", "-"],
        ["--ask"],
        ["--exploitation", "labour"],
        ["--indicator", "work.no_payment"],
        ["--text", "x"],
        ["--urgency", "high"],
        ["--consent"],
        ["--no-consent"],
    ],
)
def test_a_signal_file_leaves_no_room_for_options_that_would_be_ignored(
    enrolled: OrgKeys, env: dict[str, str], tmp_path: Path, extra: list[str]
) -> None:
    payload = tmp_path / "signal.json"
    payload.write_text("{}")
    result = run(env, "send-signal", "--to", "politie", "--file", str(payload), *extra, input="{}")
    assert result.exit_code == 2, result.output
    assert "--file holds the whole signal: leave out --" in result.output
    assert extra[0].removeprefix("--no-") in result.output
    assert not (Path(env["SCHAKEL_HOME"]) / "state.sqlite").read_bytes().count(b"politie")


def test_options_of_the_group_may_follow_the_command(
    enrolled: OrgKeys, env: dict[str, str]
) -> None:
    before = run(env, "--json", "status")
    after = run(env, "status", "--json")
    assert before.exit_code == after.exit_code == 0, after.output
    assert json.loads(before.stdout) == json.loads(after.stdout)
    no_user = {k: v for k, v in env.items() if k not in ("SCHAKEL_USER", "SCHAKEL_PURPOSE")}
    result = run(no_user, "inbox", "--user", "j.jansen", "--purpose", "signal-intake")
    assert result.exit_code == 3, result.output  # past the user and purpose checks, to the hub
    result = run(no_user, "inbox", "--purpose", "curiosity")
    assert result.exit_code == 2 and "curiosity" in result.output
    result = run(env, "outbox", "--json")
    assert json.loads(result.stdout) == {"outbox": []}
    result = run(env, "linking-key", "fetch", "--user", "has space")
    assert result.exit_code == 1 and "user id must be" in result.output


def test_show_of_an_unknown_message_exits_1(enrolled: OrgKeys, env: dict[str, str]) -> None:
    result = run(env, "show", "AAAAAAAAAAAAAAAAAAAAAA")
    assert result.exit_code == 1 and "schakel org inbox" in result.output


def test_witness_key_is_made_certified_and_imported(
    authority: Authority, env: dict[str, str], tmp_path: Path, enrolled: OrgKeys
) -> None:
    keys = enrolled
    early = tmp_path / "early.json"
    early.write_text("{}")
    missing = run(env, "witness-key", "--import", str(early))
    assert missing.exit_code != 0 and "run 'schakel org witness-key' first" in missing.output
    made = run(env, "--json", "witness-key")
    assert made.exit_code == 0, made.output
    shown = json.loads(made.output)
    assert shown["name"] == "schakel.invalid/test-net/witness/ggd"
    again = run(env, "witness-key")
    assert again.exit_code != 0 and "a witness key exists already" in again.output
    request = WitnessRequest.from_wire(json.loads(Path(shown["request"]).read_text()))
    cert = authority.certify_witness(request, now=NOW, days=30)
    cert_file = tmp_path / "witness-cert.json"
    cert_file.write_bytes(canonical_json(cert.to_wire()))
    imported = run(env, "--json", "witness-key", "--import", str(cert_file))
    assert imported.exit_code == 0, imported.output
    assert json.loads(imported.output)["serial"] == cert.serial
    witness = WitnessKeys.open_beside(keys)
    assert witness is not None and witness.certified and witness.witness_certificate == cert
    other = authority.certify_witness(
        create_witness_request(Ed25519PrivateKey.generate(), NETWORK, OrgId("ggd"), "x.y/z"),
        now=NOW,
    )
    cert_file.write_bytes(canonical_json(other.to_wire()))
    refused = run(env, "witness-key", "--import", str(cert_file))
    assert refused.exit_code != 0 and "another key" in refused.output


def test_status_names_the_alerts_for_the_privacy_officer(
    env: dict[str, str], enrolled: OrgKeys
) -> None:
    quiet = run(env, "--json", "status")
    assert quiet.exit_code == 0, quiet.output
    assert json.loads(quiet.output)["alerts"] == [] and "ALERT" not in run(env, "status").output
    alert = {"kind": "split-view", "at": NOW, "size": 7, "evidence": "/x/e.json",
             "reason": "SPLIT VIEW: the hub's key signed two roots for size 7"}  # fmt: skip
    with LocalState(Path(env["SCHAKEL_HOME"]) / "state.sqlite") as state:
        state.raise_alert(alert)
        for size in range(200):
            state.raise_alert({**alert, "size": size})
        assert len(state.alerts()) == 100 and state.alerts()[-1]["size"] == 199  # bounded
    shown = run(env, "status")
    assert shown.exit_code == 0, shown.output
    assert "ALERT:        SPLIT VIEW: the hub's key signed two roots for size 7 (/x/e.json)" in (
        shown.output
    )
    assert len(json.loads(run(env, "--json", "status").output)["alerts"]) == 100
