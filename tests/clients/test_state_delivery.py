"""Local state for delivery integrity: the cursor's message, predecessors, missing ones."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from clients.state import LocalState, MissingMessage, SentMessage, SentPayload

M1, M2, M3 = "AAAAAAAAAAAAAAAAAAAAAA", "BBBBBBBBBBBBBBBBBBBBBA", "CCCCCCCCCCCCCCCCCCCCCA"


def test_the_cursor_keeps_the_id_of_its_message_and_never_moves_back(tmp_path: Path) -> None:
    with LocalState(tmp_path / "state.sqlite") as state:
        assert state.inbox_position() == (0, None)
        state.advance_cursor(5, M1)
        state.advance_cursor(3, M2)  # behind: ignored, the id with it
        assert state.inbox_position() == (5, M1) and state.cursor_id == M1
        state.advance_cursor(9)  # an entry whose id did not parse
        assert state.inbox_position() == (9, None)
        state.note_went_back(9)
        assert state.went_back == 9
        state.rewind_inbox()
        assert state.inbox_position() == (0, None) and state.went_back is None


def test_a_missing_message_stays_listed_until_it_arrives(tmp_path: Path) -> None:
    with LocalState(tmp_path / "state.sqlite") as state:
        state.record_missing(M1, sender="politie", named_by=M2, now=10)
        state.record_missing(M1, sender="politie", named_by=M3, now=20)  # reported once
        assert state.missing() == [MissingMessage(M1, "politie", M2, 10)]
        state.store_message(
            message_id=M1, cursor=4, sender="politie", kind="signal", created=1,
            header={}, sealed=b"sealed", now=30,
        )  # fmt: skip
        assert state.missing() == []


def test_delivered_sends_extend_the_chain_per_recipient(tmp_path: Path) -> None:
    with LocalState(tmp_path / "state.sqlite") as state:
        for message_id, recipients in ((M1, ("ggd",)), (M2, ("ggd", "opvang"))):
            state.delivered(
                SentMessage(message_id, "signal", recipients, 1, 2, 2),
                SentPayload(message_id, "signal", None, None, None, 1, b"sealed"),
                b"sealed " + message_id.encode(),
            )
        assert state.previous_to(("ggd", "opvang", "politie")) == {"ggd": M2, "opvang": M2}
        assert state.sent_envelope(M1) == b"sealed " + M1.encode()
        assert state.sent_envelope(M3) is None


def test_a_state_file_from_before_opens_with_the_new_tables(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    with LocalState(path) as state:
        state.advance_cursor(7)
    with sqlite3.connect(path) as db:
        for table in ("sent_envelopes", "chains", "missing"):
            db.execute(f"DROP TABLE {table}")
        db.execute("DELETE FROM meta WHERE key = 'inbox_cursor_id'")
    with LocalState(path) as state:
        assert state.inbox_position() == (7, None)  # no id to compare: no false alarm
        assert state.missing() == [] and state.previous_to(("ggd",)) == {}
