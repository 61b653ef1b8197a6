"""``schakel org inbox`` and ``schakel org sent`` when the hub loses or withholds messages.

The real hub (``client_harness``), its SQLite file copied and restored, or a delivery
row deleted, behind its back; each command runs in a thread of its own as in a terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from client_harness import Hub, no_sleep

from clients.cli import common
from clients.cli.org import org
from clients.hub_client import HubClient

ANNA = json.dumps({"bsn": "111222333", "given_names": "Anna", "family_name": "Zwaan"})
SIGNAL = ("send-signal", "--to", "ggd", "--exploitation", "labour", "--consent", "--json")


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "HubClient", functools.partial(HubClient, sleep=no_sleep))


async def cli(hub: Hub, name: str, *args: str, input: str | None = None) -> Result:
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, org, list(args), env=hub.env(name), input=input)


def data(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


async def send(hub: Hub) -> str:
    sent = data(await cli(hub, "politie", *SIGNAL, "--person", "-", input=ANNA))
    assert sent["state"] == "sent"
    return str(sent["id"])


def copy_database(source: Path, target: Path) -> None:
    """SQLite's online backup: a consistent copy of a live database file."""
    with (
        contextlib.closing(sqlite3.connect(source)) as live,
        contextlib.closing(sqlite3.connect(target)) as copy,
    ):
        live.backup(copy)


async def test_a_restored_hub_stops_the_inbox_until_resync(hub: Hub, tmp_path: Path) -> None:
    await hub.join("politie")
    await hub.join("ggd")
    backup = tmp_path / "backup.db"
    copy_database(hub.database, backup)
    m1 = await send(hub)
    assert [m["id"] for m in data(await cli(hub, "ggd", "inbox", "--json"))["messages"]] == [m1]

    copy_database(backup, hub.database)  # the operator restores last night's backup
    m2 = await send(hub)
    stopped = await cli(hub, "ggd", "inbox")
    assert stopped.exit_code == 7
    assert stopped.stdout == ""
    assert stopped.stderr.startswith("error: INBOX WENT BACKWARDS: ")
    assert m1 in stopped.stderr and m2 in stopped.stderr
    assert "'schakel org inbox --resync'" in stopped.stderr
    assert (await cli(hub, "ggd", "inbox")).exit_code == 7  # and stays stopped

    resynced = data(await cli(hub, "ggd", "inbox", "--resync", "--json"))
    assert sorted(m["id"] for m in resynced["messages"]) == sorted([m1, m2])
    assert data(await cli(hub, "ggd", "inbox", "--json"))["missing"] == []

    lost = data(await cli(hub, "politie", "sent", "--json"))["sent"]
    assert [(c["id"], c["held"], c["lost"], c["resendable"]) for c in lost] == [
        (m1, False, ["ggd"], True)
    ]
    text = await cli(hub, "politie", "sent")
    assert text.exit_code == 0
    assert text.stdout.startswith(f"LOST     {m1}  signal to ggd, accepted ")
    assert "the hub no longer holds it; send it again with --resend ID" in text.stdout
    assert f"warning: message {m1} to ggd is lost on the hub" in text.stderr

    hub.clock.advance(60)  # the hub's per-organisation rate limit refills
    again = await cli(hub, "politie", "sent", "--resend", m1)
    assert again.exit_code == 0 and again.stdout == f"sent again: {m1} (the hub took it anew)\n"
    repeat = await cli(hub, "politie", "sent", "--resend", m1, "--json")
    assert data(repeat) == {"id": m1, "created": False}
    fine = await cli(hub, "politie", "sent")
    assert fine.stdout == "every send is held by the hub and acknowledged (within 24 h)\n"
    unknown = await cli(hub, "ggd", "sent", "--resend", m1)
    assert unknown.exit_code == 1 and "no envelope of message" in unknown.stderr


async def test_a_withheld_signal_is_listed_as_missing_and_lost(hub: Hub) -> None:
    await hub.join("politie")
    await hub.join("ggd")
    m1 = await send(hub)
    assert hub.sql("DELETE FROM deliveries WHERE recipient = 'ggd'") == 1
    m2 = await send(hub)

    inbox = await cli(hub, "ggd", "inbox")
    assert inbox.exit_code == 0, inbox.output
    expected = f"MISSING {m1} from politie: named as sent before {m2}"
    assert f"warning: {expected}" in inbox.stderr
    assert expected in inbox.stdout and m2 in inbox.stdout
    listed = data(await cli(hub, "ggd", "inbox", "--json"))
    assert [m["id"] for m in listed["messages"]] == [m2]
    assert [(m["id"], m["sender"], m["named_by"]) for m in listed["missing"]] == [
        (m1, "politie", m2)
    ]

    checks = data(await cli(hub, "politie", "sent", "--older-than", "0", "--json"))["sent"]
    assert [(c["id"], c["held"], c["lost"]) for c in checks] == [(m1, True, ["ggd"])]
    repeat = await cli(hub, "politie", "sent", "--resend", m1)
    assert repeat.exit_code == 0 and "the hub already holds" in repeat.stdout


async def test_sent_lists_what_was_not_acknowledged_in_time(hub: Hub) -> None:
    await hub.join("politie")
    await hub.join("ggd")
    m1 = await send(hub)
    assert data(await cli(hub, "politie", "sent", "--json")) == {"sent": []}  # not due yet
    late = data(await cli(hub, "politie", "sent", "--older-than", "0", "--json"))["sent"]
    assert [(c["id"], c["held"], c["lost"], c["unacknowledged"]) for c in late] == [
        (m1, True, [], ["ggd"])
    ]
    text = await cli(hub, "politie", "sent", "--older-than", "0")
    assert text.stdout.startswith(f"UNACKED  {m1}  signal to ggd, accepted ")
    assert text.stdout.rstrip().endswith(": not acknowledged by ggd")
    await cli(hub, "ggd", "inbox")
    assert data(await cli(hub, "politie", "sent", "--older-than", "0", "--json")) == {"sent": []}
    refused = await cli(hub, "politie", "sent", "--older-than", "-1")
    assert refused.exit_code == 2
