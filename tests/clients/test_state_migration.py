"""A version-1 state file (envelopes kept sealed to the KEM key, one PayloadBox key) opens
as version 2: every message under a key of its own, no envelope left in the file."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from client_harness import MARKER, Hub

from clients.errors import ClientError, Erased
from clients.localbox import PayloadBox
from clients.organisation import Organisation
from clients.retention import LocalRetention, run
from clients.state import LocalState

# The tables of version 1 whose form changed, as version 1 made them.
V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE messages (
    id TEXT PRIMARY KEY, cursor INTEGER NOT NULL, sender TEXT NOT NULL, kind TEXT NOT NULL,
    created INTEGER NOT NULL, envelope TEXT NOT NULL, received_at INTEGER NOT NULL,
    acked_at INTEGER);
CREATE TABLE certificates (
    fingerprint TEXT PRIMARY KEY, org TEXT NOT NULL, root TEXT NOT NULL, der BLOB NOT NULL);
CREATE TABLE sent (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, recipients TEXT NOT NULL,
    created INTEGER NOT NULL, sent_at INTEGER NOT NULL, accepted INTEGER);
CREATE TABLE sent_payloads (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, ref TEXT, case_ref TEXT, status TEXT,
    created INTEGER NOT NULL, sealed BLOB NOT NULL);
CREATE TABLE outbox (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, recipients TEXT NOT NULL,
    created INTEGER NOT NULL, queued_at INTEGER NOT NULL, state TEXT NOT NULL,
    attempts INTEGER NOT NULL, tried_at INTEGER, problem TEXT, sealed BLOB NOT NULL);
CREATE TABLE kept_payloads (id TEXT PRIMARY KEY, sealed BLOB NOT NULL);
CREATE TABLE sent_envelopes (id TEXT PRIMARY KEY, envelope TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '1');
"""


def signal(text: str) -> dict[str, Any]:
    return {"schema": "schakel.signal/1", "person": {"bsn": "111222333"},
            "exploitation": "labour", "urgency": "high", "consent_to_share": True,
            "text": text}  # fmt: skip


def hub_envelope(hub: Hub, message_id: str) -> dict[str, Any]:
    ((wire,),) = hub.rows("SELECT envelope FROM messages WHERE id = ?", message_id)
    return dict(json.loads(wire))


async def version_1_file(hub: Hub, path: Path) -> tuple[str, str, str]:
    """GGD's state as version 1 kept it: two messages received (the payload of one kept
    sealed after its KEM key was deleted), one signal sent, with its envelope."""
    police, ggd = await hub.join("politie"), await hub.join("ggd")
    first = (await police.send_signal(signal(f"{MARKER} first"), ["ggd"])).id
    second = (await police.send_signal(signal(f"{MARKER} second"), ["ggd"])).id
    mine = (await ggd.send_signal(signal(f"{MARKER} mine"), ["politie"])).id
    legacy = PayloadBox.for_signing_key(ggd.keys.signing_key, "ggd")
    cert = police.certificate()
    db = sqlite3.connect(path)
    db.executescript(V1_SCHEMA)
    now = hub.clock.seconds()
    for cursor, message_id in enumerate((first, second), start=1):
        text = json.dumps(hub_envelope(hub, message_id), sort_keys=True, separators=(",", ":"))
        db.execute(
            "INSERT INTO messages VALUES (?, ?, 'politie', 'signal', ?, ?, ?, ?)",
            (message_id, cursor, now, text, now, now),
        )
    kept = legacy.seal(second, "received/signal", signal(f"{MARKER} second"))
    db.execute("INSERT INTO kept_payloads VALUES (?, ?)", (second, kept))
    db.execute(
        "INSERT INTO certificates VALUES (?, 'politie', ?, ?)",
        (cert.fingerprint, ggd.directory.root_fingerprint, cert.der),
    )
    db.execute("INSERT INTO sent VALUES (?, 'signal', 'politie', ?, ?, ?)", (mine, now, now, now))
    db.execute(
        "INSERT INTO sent_payloads VALUES (?, 'signal', NULL, NULL, NULL, ?, ?)",
        (mine, now, legacy.seal(mine, "signal", signal(f"{MARKER} mine"))),
    )
    db.execute(
        "INSERT INTO sent_envelopes VALUES (?, ?)", (mine, json.dumps(hub_envelope(hub, mine)))
    )
    db.commit()
    db.close()
    return first, second, mine


async def test_a_version_1_file_migrates_when_opened(hub: Hub, tmp_path: Path) -> None:
    path = tmp_path / "v1" / "state.sqlite"
    path.parent.mkdir()
    first, second, mine = await version_1_file(hub, path)
    ggd = hub.orgs["ggd"]
    with LocalState(path) as state:
        assert state.needs_reseal  # the schema moved on; sealing waits for the keys
        assert state.message(first).legacy is not None  # type: ignore[union-attr]
        assert {m.scope for m in state.messages()} == {f"msg:{first}", f"msg:{second}"}
        organisation = Organisation(ggd.keys, state, ggd.hub, clock=hub.clock)
        assert not state.needs_reseal
        assert organisation.show(first).payload["text"] == f"{MARKER} first"
        assert organisation.show(second).payload["text"] == f"{MARKER} second"
        assert organisation.written(mine) == ("signal", signal(f"{MARKER} mine"))
        assert state.sent_envelope(mine) is not None
        assert (await organisation.resend(mine)).created is False  # same bytes as before
        rows = state._db.execute(
            "SELECT count(*) FROM messages WHERE envelope IS NOT NULL OR sealed IS NULL"
        ).fetchone()
        assert rows == (0,)
        assert state._db.execute("SELECT count(*) FROM kept_payloads").fetchone() == (0,)
        assert state._get_meta("schema_version") == "2"
    every = b"".join(p.read_bytes() for p in path.parent.glob("state.sqlite*"))
    assert b'"body"' not in every and b"recipient_keys\\" not in every  # no envelope left
    with LocalState(path) as state:  # opened again: nothing more to do
        assert not state.needs_reseal
        organisation = Organisation(ggd.keys, state, ggd.hub, clock=hub.clock)
        report = run(state, LocalRetention(1, 0), now=hub.clock.seconds() + 2 * 86400)
        assert len(report.due) == 3
        with pytest.raises(Erased):
            organisation.show(first)


def test_an_unknown_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                     "INSERT INTO meta VALUES ('schema_version', '3');")  # fmt: skip
    db.close()
    with pytest.raises(ClientError, match="unsupported version 3"):
        LocalState(path)
