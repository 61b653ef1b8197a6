"""``schakel org`` against the real hub: sending the safe way, the outbox, key rotation.

The hub runs in the test's event loop (``conftest.hub``); each command runs in a thread
of its own, as it would in a terminal, with the organisation's home as the CLI keeps it.
"""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Any

import pytest
from click.testing import CliRunner, Result
from client_harness import USER, Hub, no_sleep

from clients.cli import common
from clients.cli.audit import audit as audit_group
from clients.cli.org import org
from clients.hub_client import HubClient
from hub.accesslog import erasure
from hub.store import Store, Tx

ANNA = json.dumps({"bsn": "111222333", "given_names": "Anna", "family_name": "Zwaan"})
SIGNAL = ("send-signal", "--to", "ggd", "--exploitation", "labour", "--consent")
DOWN = "http://127.0.0.1:9"


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "HubClient", functools.partial(HubClient, sleep=no_sleep))


async def cli(hub: Hub, name: str, *args: str, input: str | None = None, **env: str) -> Result:
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, org, list(args), env=hub.env(name, **env),
                                   input=input)  # fmt: skip


def data(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


async def test_a_signal_sent_the_safe_way_is_received_and_shown(hub: Hub) -> None:
    await hub.join("politie")
    await hub.join("ggd")
    sent = data(await cli(hub, "politie", *SIGNAL, "--json", "--person", "-", input=ANNA))
    assert sent["state"] == "sent" and sent["accepted"] is not None
    assert [p.split(".")[0] for p in sent["pseudonyms"]] == ["bsn"]
    inbox = data(await cli(hub, "ggd", "inbox", "--json"))
    assert [m["id"] for m in inbox["messages"]] == [sent["id"]]
    shown = await cli(hub, "ggd", "show", sent["id"])
    assert shown.exit_code == 0 and '"family_name": "Zwaan"' in shown.stdout

    # a stored message altered in local state does not open: exit 4, one line
    db = hub.orgs["ggd"].state._db
    [(sealed,)] = db.execute("SELECT sealed FROM messages").fetchall()
    altered = bytearray(sealed)
    altered[30] ^= 1
    db.execute("UPDATE messages SET sealed = ?", (bytes(altered),))
    tampered = await cli(hub, "ggd", "show", sent["id"])
    assert tampered.exit_code == 4
    assert tampered.output == "error: stored message of organisation 'politie' did not verify\n"


async def test_a_signal_that_links_nothing_needs_unlinked(hub: Hub) -> None:
    await hub.join("politie")
    await hub.join("ggd")
    given_name_only = json.dumps({"given_names": "Anna"})
    refused = await cli(hub, "politie", *SIGNAL, "--person", "-", input=given_name_only)
    assert refused.exit_code == 1
    assert "a name links only as given names, family name and date of birth" in refused.output
    assert refused.output.rstrip().endswith("--unlinked") and "Anna" not in refused.output
    confirmed = await cli(hub, "politie", *SIGNAL, "--unlinked", "--person", "-",
                          input=given_name_only)  # fmt: skip
    assert confirmed.exit_code == 0, confirmed.output
    assert "warning: no identifier links this signal to any other" in confirmed.stderr


async def test_what_the_hub_can_not_take_waits_in_the_outbox_and_goes_out_later(
    hub: Hub,
) -> None:
    await hub.join("politie")
    ggd = await hub.join("ggd")
    waiting = await cli(hub, "politie", *SIGNAL, "--json", "--person", "-", input=ANNA,
                        SCHAKEL_HUB_URL=DOWN)  # fmt: skip
    assert waiting.exit_code == 0, waiting.output  # kept: a script must not send it again
    sent = json.loads(waiting.stdout)
    assert sent["state"] == "waiting" and sent["pseudonyms"]
    assert "waits in the outbox" in waiting.stderr and "schakel org outbox send" in waiting.stderr
    listed = await cli(hub, "politie", "outbox")
    assert listed.stdout.startswith(f"WAITING  {sent['id']}  signal to ggd")
    assert "1 attempts" in listed.stdout and "unreachable" in listed.stdout
    still = await cli(hub, "politie", "outbox", "send", SCHAKEL_HUB_URL=DOWN)
    assert still.exit_code == 0 and "0 sent, 0 refused, 1 still waiting" in still.stdout
    assert "warning: the hub is still out of reach" in still.stderr

    # the next command that reaches the hub takes it along, with the same id
    status = await cli(hub, "politie", "linking-key", "fetch")
    assert status.exit_code == 0, status.output
    assert f"outbox: sent signal {sent['id']}" in status.stderr
    assert data(await cli(hub, "politie", "outbox", "--json")) == {"outbox": []}
    assert [m.id for m in (await ggd.receive()).messages] == [sent["id"]]


async def test_outbox_send_reports_and_a_refused_message_can_be_dropped(hub: Hub) -> None:
    await hub.join("politie")
    await hub.join("ggd")
    first = await cli(hub, "politie", *SIGNAL, "--json", "--person", "-", input=ANNA,
                      SCHAKEL_HUB_URL=DOWN)  # fmt: skip
    message_id = json.loads(first.stdout)["id"]
    # meanwhile the recipient's key bundles are gone from the directory: refused
    assert hub.sql("DELETE FROM bundles WHERE org = ?", "ggd") >= 1
    report = data(await cli(hub, "politie", "outbox", "send", "--json"))
    assert report["sent"] == [] and [e["id"] for e in report["refused"]] == [message_id]
    assert "has not published a key bundle" in report["refused"][0]["problem"]
    listed = await cli(hub, "politie", "outbox")
    assert listed.stdout.startswith(f"REFUSED  {message_id}")
    assert data(await cli(hub, "politie", "status", "--json"))["outbox"] == {
        "waiting": 0, "refused": 1,
    }  # fmt: skip
    dropped = await cli(hub, "politie", "outbox", "drop", message_id)
    assert dropped.exit_code == 0 and "dropped" in dropped.stdout
    again = await cli(hub, "politie", "outbox", "drop", message_id)
    assert again.exit_code == 1 and again.output.startswith("error: no message")


async def test_rotate_keys_then_old_keys_then_delete_old_keys(hub: Hub) -> None:
    police = await hub.join("politie")
    await hub.join("ggd")
    before = (await police.recipient("ggd"))[1]
    rotated = data(await cli(hub, "ggd", "rotate-keys", "--json"))
    assert rotated["key"] == 2 and rotated["old_keys"] == [1] and rotated["published"]
    assert (await police.recipient("ggd"))[1].fingerprint == rotated["bundle"] != before.fingerprint
    old = await cli(hub, "ggd", "old-keys")
    assert old.stdout.startswith("key 1: 0 stored messages sealed to it; senders may seal")
    kept = data(await cli(hub, "ggd", "delete-old-keys", "--json"))
    assert kept == {"deleted": [], "kept": [1]}
    deleted = data(await cli(hub, "ggd", "delete-old-keys", "--before-expiry", "--json"))
    assert deleted == {"deleted": [1], "kept": []}
    assert (await cli(hub, "ggd", "old-keys")).stdout == "no older keys are kept\n"


async def test_a_rotation_that_can_not_be_published_says_what_to_do(hub: Hub) -> None:
    await hub.join("ggd")
    result = await cli(hub, "ggd", "rotate-keys", SCHAKEL_HUB_URL=DOWN)
    assert result.exit_code == 0, result.output
    assert "encryption key 2 is current here, but the hub did not take its bundle" in result.stderr
    assert "run 'schakel org publish' when the hub is back" in result.stderr
    published = await cli(hub, "ggd", "publish")
    assert published.exit_code == 0, published.output


async def test_the_privacy_officer_s_commands(hub: Hub, tmp_path: Any) -> None:
    police = await hub.join("politie")
    await hub.join("ggd")
    await hub.join("privacy", "network_privacy_officer")
    await police.send_signal({"schema": "schakel.signal/1", "person": {"bsn": "111222333"},
                              "exploitation": "labour", "urgency": "high",
                              "consent_to_share": True}, ["ggd"])  # fmt: skip
    audit = functools.partial(audit_cli, hub, "privacy")
    verified = await audit("verify")
    assert verified.exit_code == 0, verified.output
    assert verified.stdout.startswith("verified all ") and "no entry was changed" in verified.stdout
    sample = await audit("verify", "--sample", "3", "--json")
    assert json.loads(sample.stdout)["mode"] == "sample"
    assert "NOT that no other entry was changed" in json.loads(sample.stdout)["proves"]
    both = await audit("verify", "--sample", "3", "--full")
    assert both.exit_code == 2 and "exclude each other" in both.output
    garbage = tmp_path / "garbage.ndjson"
    garbage.write_text("this is not an export\n")
    unreadable = await audit("verify", "--export", str(garbage))
    assert unreadable.exit_code == 6
    assert unreadable.output == (
        f"error: {garbage} is not a Schakel access-log export (its first line is not strict "
        "JSON); nothing was verified\n"
    )
    report = await audit("--purpose", "data-subject-request", "report", "--subject",
                         "--person", "-", "--out-csv", str(tmp_path / "anna.csv"),
                         input='{"bsn": "111222333"}')  # fmt: skip
    assert report.exit_code == 0 and report.stderr == "", report.output
    employee = await audit("report", "--employee", USER, "--out-csv", str(tmp_path / "u.csv"))
    assert employee.exit_code == 0, employee.output
    mixed = await audit("report", "--employee", USER, "--person", "-", "--out-csv",
                        str(tmp_path / "x.csv"), input='{"bsn": "111222333"}')  # fmt: skip
    assert mixed.exit_code == 2 and "leave out the person" in mixed.output


async def audit_cli(hub: Hub, name: str, *args: str, input: str | None = None) -> Result:
    runner = CliRunner()
    env = hub.env(name, SCHAKEL_PURPOSE="audit")
    return await asyncio.to_thread(runner.invoke, audit_group, list(args), env=env, input=input)


async def _erase_on_hub(hub: Hub, seqs: list[int]) -> None:
    """Erase the openings of ``seqs`` in the hub's database (a second store on its file)."""
    store = Store(f"sqlite+aiosqlite:///{hub.database}")
    await store.start()
    try:

        def item(tx: Tx) -> int:
            return erasure.erase_openings(tx, seqs, reason="retention", now=hub.clock.seconds())

        assert await store.write(item) == len(seqs)
        await erasure.scrub(store)
    finally:
        await store.close()


async def test_audit_verify_full_passes_after_erasure_and_names_a_tampered_opening(
    hub: Hub, tmp_path: Any
) -> None:
    police = await hub.join("politie")
    await hub.join("ggd")
    await hub.join("privacy", "network_privacy_officer")
    await police.send_signal({"schema": "schakel.signal/1", "person": {"bsn": "111222333"},
                              "exploitation": "labour", "urgency": "high",
                              "consent_to_share": True}, ["ggd"])  # fmt: skip
    audit = functools.partial(audit_cli, hub, "privacy")
    assert (await audit("verify", "--full")).exit_code == 0
    await _erase_on_hub(hub, [0, 1, 2])
    full = await audit("verify", "--full", "--json")
    assert full.exit_code == 0, full.output
    verdict = json.loads(full.stdout)
    assert verdict["mode"] == "full" and verdict["erased"] == 3
    assert "the personal fields of 3 of them were erased" in verdict["proves"]
    out = tmp_path / "log.ndjson"
    exported = await audit("export", "--out", str(out))
    assert exported.exit_code == 0, exported.output
    assert out.read_text().count('"opening":"erased"') == 3
    offline = await audit("verify", "--export", str(out), "--json")
    assert offline.exit_code == 0, offline.output
    assert json.loads(offline.stdout)["erased"] == 3
    csv = tmp_path / "log.csv"
    assert (await audit("export", "--format", "csv", "--out", str(csv))).exit_code == 0
    assert csv.read_text().count(",erased,") >= 3
    assert hub.sql('UPDATE audit_openings SET "user" = ? WHERE "index" = 3', "mallory") == 1
    tampered = await audit("verify", "--full")
    assert tampered.exit_code == common.EXIT_LOG_INCONSISTENT
    assert "the personal fields of entry 3 do not match its commitment" in tampered.output
