"""The organisation's local SQLite state."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from clients.errors import ClientError
from clients.state import LocalState

ROOT_A = "A" * 43
ROOT_B = "B" * 43
ENVELOPE = {"header": {"id": "m1"}, "body": "Y2lwaGVy"}


def _store(state: LocalState, message_id: str, cursor: int) -> bool:
    return state.store_message(
        message_id=message_id,
        cursor=cursor,
        sender="politie",
        kind="signal",
        created=1000,
        header=ENVELOPE["header"],
        sealed=b"sealed",
        now=2000,
    )


def test_file_is_created_0600_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    with LocalState(path) as state:
        _store(state, "m1", 1)
        for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            if name.exists():
                assert stat.S_IMODE(name.stat().st_mode) == 0o600, name
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_loose_permissions_are_tightened(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    path.touch(mode=0o644)
    os.chmod(path, 0o644)
    LocalState(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_refuses_a_symlink_and_a_non_database(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"")
    link = tmp_path / "state.sqlite"
    link.symlink_to(target)
    with pytest.raises(ClientError, match="cannot open local state"):
        LocalState(link)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database at all, not even close" * 100)
    with pytest.raises(ClientError, match="not a usable database"):
        LocalState(junk)


def test_a_message_seen_twice_is_stored_once(tmp_path: Path) -> None:
    with LocalState(tmp_path / "s.sqlite") as state:
        assert not state.seen("m1")
        assert _store(state, "m1", 1) is True
        assert _store(state, "m1", 1) is False
        assert state.seen("m1")
        assert [m.id for m in state.messages()] == ["m1"]
        stored = state.message("m1")
        assert stored is not None
        assert stored.sealed == b"sealed" and stored.acked_at is None
        assert stored.scope == "msg:m1" and stored.legacy is None
        state.mark_acked("m1", now=3000)
        state.mark_acked("m1", now=4000)
        stored = state.message("m1")
        assert stored is not None and stored.acked_at == 3000
        assert state.message("nope") is None


def test_cursor_survives_reopening_and_never_moves_back(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with LocalState(path) as state:
        assert state.cursor == 0
        state.advance_cursor(5)
        state.advance_cursor(3)
        assert state.cursor == 5
    with LocalState(path) as state:
        assert state.cursor == 5


def test_rejected_messages_are_seen_and_cleared_when_stored(tmp_path: Path) -> None:
    with LocalState(tmp_path / "s.sqlite") as state:
        state.record_rejected("m2", cursor=2, reason="verification", now=10)
        assert state.seen("m2")
        assert state.rejected() == [("m2", 2, "verification")]
        _store(state, "m2", 2)
        assert state.rejected() == []


def test_directory_cache_is_pinned_to_the_root(tmp_path: Path) -> None:
    with LocalState(tmp_path / "s.sqlite") as state:
        state.cache_directory("ggd", root=ROOT_A, certificate=b"\x30\x01", now=7)
        entry = state.cached_directory("ggd", root=ROOT_A)
        assert entry is not None
        assert entry.certificate == b"\x30\x01"
        assert entry.verified_at == 7
        assert state.cached_directory("ggd", root=ROOT_B) is None
        assert state.cached_directory("other", root=ROOT_A) is None
        state.forget_directory("ggd")
        assert state.cached_directory("ggd", root=ROOT_A) is None


def test_sent_messages_are_recorded(tmp_path: Path) -> None:
    with LocalState(tmp_path / "s.sqlite") as state:
        state.record_sent("m9", kind="signal", recipients=("ggd", "zorg"), created=1, now=2)
        state.record_sent(
            "m9", kind="signal", recipients=("ggd", "zorg"), created=1, now=2, accepted=3
        )
        [sent] = state.sent()
        assert sent.id == "m9" and sent.recipients == ("ggd", "zorg") and sent.accepted == 3


def test_unsupported_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    LocalState(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(ClientError, match="unsupported version 99"):
        LocalState(path)


def test_a_bundle_floor_only_moves_to_a_newer_bundle(tmp_path: Path) -> None:
    with LocalState(tmp_path / "s.sqlite") as state:
        assert state.bundle_floor("ggd", root=ROOT_A) is None
        state.raise_bundle_floor("ggd", root=ROOT_A, not_before=100, fingerprint="new")
        state.raise_bundle_floor("ggd", root=ROOT_A, not_before=50, fingerprint="old")
        state.raise_bundle_floor("ggd", root=ROOT_A, not_before=100, fingerprint="same-time")
        floor = state.bundle_floor("ggd", root=ROOT_A)
        assert floor is not None and (floor.not_before, floor.fingerprint) == (100, "new")
        assert state.bundle_floor("ggd", root=ROOT_B) is None
        # forgetting the directory entry (a bundle that did not verify) keeps the floor
        state.forget_directory("ggd")
        assert state.bundle_floor("ggd", root=ROOT_A) == floor
