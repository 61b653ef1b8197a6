"""The hub's SQLite files are private: created 0600, and a shared one is refused.

SQLite only: these are about the database file the hub itself creates. On
PostgreSQL the server owns its files and their modes, so there is nothing to test.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hub.store import Store
from hub.store.engines import private_database_file


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_a_new_database_and_its_wal_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        db = tmp_path / "var" / "hub.db"
        store = Store(f"sqlite+aiosqlite:///{db}")
        await store.migrate()
        await store.start()
        await store.close()
    finally:
        os.umask(old)
    assert _mode(db.parent) == 0o700
    files = sorted(tmp_path.glob("var/hub.db*"))
    assert db in files
    assert {path.name: _mode(path) for path in files} == {path.name: 0o600 for path in files}


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_database_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    db = tmp_path / "hub.db"
    db.touch()
    db.chmod(mode)
    with pytest.raises(PermissionError, match=f"readable by other users .mode {mode:o}.; "):
        private_database_file(f"sqlite+aiosqlite:///{db}")


def test_an_existing_private_database_is_accepted_as_it_is(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    db.write_bytes(b"")
    db.chmod(0o600)
    private_database_file(f"sqlite+aiosqlite:///{db}")
    assert _mode(db) == 0o600
