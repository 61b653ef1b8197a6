"""``make bench-accept`` (bench/accept.py) without wrk: the request mix it seals, how it
reads wrk's answer, and the last line it prints. (wrk itself runs in ``make bench-accept``
and ``make bench``; no figure is asserted anywhere.)"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter, deque
from pathlib import Path

import pytest
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import accept  # noqa: E402 - needs the sys.path line above
from bench.hub_server import open_keys, provision_network  # noqa: E402
from protocol.envelope import Envelope  # noqa: E402
from protocol.linkingkey import LinkingKey  # noqa: E402
from protocol.pseudonym import derive_pseudonyms  # noqa: E402
from protocol.types import MessageId, Pseudonym  # noqa: E402

WRK_OUTPUT = """Running 3s test @ http://127.0.0.1:1234/v1/messages
  1 threads and 32 connections
RESULT sent=412 duration_us=3001234 p50_us=150000 p99_us=400123 timeouts=1 connect=0 \
read=2 write=0 status:201=400 status:409=3 status:200=5 first=409 _type_:_urn:schakel_
"""


def test_a_wrk_result_is_read_with_every_status() -> None:
    run = accept.parse_result("hub", WRK_OUTPUT, cpu=2.0)
    assert run.sent == 412 and run.accepted == 400
    assert run.statuses == ((200, 5), (201, 400), (409, 3))
    assert run.refused == 5 + 3 + 1 + 2  # every answer but 201, and every socket error
    assert run.seconds == pytest.approx(3.001234) and run.rate == pytest.approx(400 / 3.001234)
    assert (run.p50, run.p99) == (0.15, 0.400123)
    assert run.cpu_per_request == pytest.approx(2.0 / 400)
    assert run.first.startswith("409")


def test_no_result_line_fails_with_what_wrk_printed() -> None:
    with pytest.raises(accept.BenchError, match=r"(?s)no result.*connection refused"):
        accept.parse_result("hub", "unable to connect: connection refused\n", cpu=None)


def _run(name: str, rate: float) -> accept.Run:
    return accept.Run(name, int(rate), 1.0, 0.01, 0.02, ((201, int(rate)),), 0, "", 0.5)


def test_the_last_line_holds_the_median_ratio_of_each_database() -> None:
    def figures(database: str, floor: list[float], hub: list[float]) -> accept.Figures:
        rounds = tuple((_run("f", f), _run("h", h)) for f, h in zip(floor, hub, strict=True))
        half = (_run("f", floor[0] / 2), _run("h", hub[0] / 2))
        return accept.Figures(database, rounds, (), half, (0.01, 0.02), 10, 7000)

    sqlite = figures("sqlite", [1000, 1000, 1000], [100, 600, 500])
    pg = figures("pg", [800, 1000, 1000], [400, 100, 250])
    assert accept.final_line([sqlite, pg]) == "hub/floor sqlite 0.50 pg 0.25"
    assert accept.final_line([sqlite]) == "hub/floor sqlite 0.50 pg n/a"
    lines = accept.render([sqlite, pg], accept.Settings(seconds=2, rounds=3))
    assert any(line.startswith("| sqlite | hub |") for line in lines)
    assert any(line.startswith("| pg | floor (group commit) |") for line in lines)


class _Stream(accept.Stream):
    """Pseudonyms from a fixed linking key: the demo's comes only with a hub's bootstrap."""

    def pseudonyms(self, person: int) -> tuple[Pseudonym, ...]:
        return derive_pseudonyms(accept._identity(person), LinkingKey(1, b"k" * 32))


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> _Stream:
    now = int(time.time())
    demo = provision_network(tmp_path_factory.mktemp("accept") / "network", now=now)
    bundles = {
        org: open_keys(demo, org).current_bundle(now=now)
        for org in (accept.COORDINATOR, accept.POLICE, accept.SHELTER)
    }
    made = _Stream(demo, bundles)
    made.ensure(2 * accept.LAG + 400)
    return made


def _written(path: Path) -> list[tuple[int, Envelope]]:
    parsed = []
    for line in path.read_text(encoding="utf-8").splitlines():
        sender, _, body = line.partition("\t")
        parsed.append((int(sender), Envelope.from_wire(json.loads(body))))
    return parsed


def _runs(stream: _Stream, tmp_path: Path, size: int) -> list[tuple[int, Envelope]]:
    """The stream written in files of ``size`` positions, as the driver writes them for
    runs in which every request was answered 201."""
    referrals = accept.Referrals()
    sent: list[tuple[int, Envelope]] = []
    for start in range(0, len(stream.lines), size):
        target = tmp_path / f"{start}.requests"
        stream.write(target, start, size, referrals)
        envelopes = _written(target)
        sent += envelopes
        referrals.sent(
            start + size, [e.header.id for _, e in envelopes if e.header.kind == "referral"]
        )
    return sent


def test_the_mix_holds_new_and_joining_signals_referrals_and_status_updates(
    stream: _Stream, tmp_path: Path
) -> None:
    size = 100
    envelopes = _runs(stream, tmp_path, size)
    kinds = Counter(envelope.header.kind for _, envelope in envelopes)
    assert set(kinds) == {"signal", "referral", "status"}
    first_seen: dict[tuple[Pseudonym, ...], int] = {}
    joins = signals = 0
    referral_at = {}
    for position, (sender, envelope) in enumerate(envelopes):
        header = envelope.header
        assert accept.SENDERS[sender - 1] == header.sender  # the token wrk sends with it
        if header.kind == "referral":
            assert (header.sender, header.recipients) == (accept.POLICE, (accept.SHELTER,))
            assert first_seen[header.pseudonyms] <= position - accept.LAG  # a known person
            referral_at[header.id] = position
        elif header.kind == "status":
            assert (header.sender, header.recipients) == (accept.SHELTER, (accept.POLICE,))
            assert header.status == "accepted"
            # Each referral once, and only one of an earlier file: answered before it.
            assert header.ref is not None
            assert referral_at.pop(header.ref) // size < position // size
        else:
            assert header.recipients == (accept.COORDINATOR,)
            if header.pseudonyms in first_seen:
                assert first_seen[header.pseudonyms] <= position - accept.LAG
                joins += position >= 2 * accept.LAG
            else:
                first_seen[header.pseudonyms] = position
            signals += position >= 2 * accept.LAG
    # One in ten is a status update once referrals were answered; one in ten a referral.
    late = Counter(e.header.kind for _, e in envelopes[2 * accept.LAG :])
    assert late["status"] == late["referral"] == (len(envelopes) - 2 * accept.LAG) // 10
    # Once the stream is under way (people to join, referrals to answer): half join a case.
    assert 0.45 * signals <= joins <= 0.55 * signals


def test_the_stream_is_the_same_when_written_again(stream: _Stream, tmp_path: Path) -> None:
    target = tmp_path / "hub.requests"
    stream.write(target, 10, 9, accept.Referrals())  # positions 10-18: no status update
    assert target.read_text(encoding="utf-8").splitlines() == stream.lines[10:19]
    before = len(stream.lines)
    assert before % 10 == 0
    stream.write(target, before, 9, accept.Referrals())  # past the end: sealed in order
    assert len(stream.lines) == before + 9
    assert target.read_text(encoding="utf-8").splitlines() == stream.lines[before:]
    assert stream.lines.count(None) == len(stream.lines) // 10  # statuses: sealed when written


def test_with_no_referral_answered_a_status_update_becomes_a_referral_or_a_new_signal(
    stream: _Stream, tmp_path: Path
) -> None:
    target = tmp_path / "hub.requests"
    referrals = accept.Referrals()
    for at, kind, to in ((9, "signal", accept.COORDINATOR), (909, "referral", accept.SHELTER)):
        stream.write(target, at - 4, 10, referrals)  # no one known before LAG: a new signal
        written = target.read_text(encoding="utf-8").splitlines()
        assert (
            written[:4] == stream.lines[at - 4 : at] and written[5:] == stream.lines[at + 1 :][:5]
        )
        sender, instead = _written(target)[4]
        assert accept.SENDERS[sender - 1] == instead.header.sender == accept.POLICE
        assert (instead.header.kind, instead.header.recipients) == (kind, (to,))
        assert instead.header.ref is None and not referrals.named
    assert stream.referrals[909] == instead.header.id  # answered, it may be named later


def test_referrals_of_status_updates_not_sent_may_be_named_again_first(
    stream: _Stream, tmp_path: Path
) -> None:
    made = list(stream.referrals.values())[:4]
    referrals = accept.Referrals(deque(made[:3]))
    target = tmp_path / "hub.requests"
    stream.write(target, 0, 30, referrals)  # status updates at 9, 19 and 29
    statuses = {e.header.id: e.header.ref for _, e in _written(target) if e.header.ref is not None}
    assert sorted(statuses.values()) == sorted(made[:3]) and not referrals.ready
    first = next(s for s, ref in statuses.items() if ref == made[0])
    assert referrals.statuses({first, "not-a-status"}) == {first: made[0]}
    referrals.sent(15, [made[3]])  # 9 was sent; 19 and 29 were not
    assert list(referrals.ready) == [made[1], made[2], made[3]] and not referrals.named


_MESSAGE = {
    "sender": "police",
    "created": 1,
    "accepted_at": 1,
    "envelope_fingerprint": "f" * 43,
    "envelope": "{}",
    "size": 2,
}


@pytest.fixture
def hub_database(tmp_path: Path) -> str:
    """A hub schema with a referral (cursor 2) that a status update (3) accepted, and one
    (cursor 4, to the wrong party) with no status."""
    from hub.schema import messages, metadata, referral_updates, referrals

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            messages.insert(),
            [
                {**_MESSAGE, "cursor": cursor, "id": mid, "kind": kind}
                for cursor, mid, kind in (
                    (1, "signal1", "signal"),
                    (2, "referral1", "referral"),
                    (3, "status1", "status"),
                    (4, "referral2", "referral"),
                )
            ],
        )
        step = {"case": "c" * 22, "referrer": "police", "step_at": 1, "sent_at": 1}
        conn.execute(
            referrals.insert(),
            [
                {**step, "cursor": 2, "id": "referral1", "recipient": "shelter",
                 "step": "accepted", "accepted_at": 1},
                {**step, "cursor": 4, "id": "referral2", "recipient": "care", "step": "sent",
                 "accepted_at": None},
            ],
        )  # fmt: skip
        conn.execute(
            referral_updates.insert(), {"cursor": 3, "referral": 2, "code": "accepted", "at": 1}
        )
    engine.dispose()
    return f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"


def test_a_run_passes_when_the_database_holds_what_was_answered(hub_database: str) -> None:
    asyncio.run(
        accept.check_stored(
            hub_database,
            "hub round 1",
            answered={"signal1", "referral1", "status1"},
            referrals={MessageId("referral1")},
            statuses={MessageId("status1"): MessageId("referral1")},
        )
    )


@pytest.mark.parametrize(
    ("answered", "referrals", "statuses", "found"),
    [
        ({"signal1", "lost"}, set(), {}, "messages answered 201 and not stored: 1"),
        ({"referral1", "referral2"}, {"referral1", "referral2"}, {},
         "referrals answered 201 without their row: 1"),
        ({"referral1"}, {"referral1", "lost"}, {}, "referrals answered 201 without their row: 1"),
        ({"status1"}, set(), {"status1": "referral2"},
         "status updates answered 201 without their step: 1"),
        ({"signal1"}, set(), {"signal1": "referral1"},
         "status updates answered 201 without their step: 1"),
    ],
)  # fmt: skip
def test_a_run_fails_when_an_answered_message_is_not_stored(
    hub_database: str,
    answered: set[str],
    referrals: set[MessageId],
    statuses: dict[MessageId, MessageId],
    found: str,
) -> None:
    with pytest.raises(accept.BenchError, match=rf"^hub round 1: {found} \(of "):
        asyncio.run(
            accept.check_stored(
                hub_database,
                "hub round 1",
                answered=answered,
                referrals=referrals,
                statuses=statuses,
            )
        )


def test_the_command_refuses_to_leave_out_both_databases(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    ran: list[object] = []
    monkeypatch.setattr(accept, "run", lambda *args: ran.append(args) or [])
    outcome = CliRunner().invoke(accept.main, ["--no-sqlite", "--no-postgres"])
    assert outcome.exit_code == 2 and "leave nothing to measure" in outcome.output
    assert ran == []
    outcome = CliRunner().invoke(accept.main, ["--no-sqlite", "--rounds", "1"])
    assert outcome.exit_code == 0, outcome.output
    assert [databases for _, databases in ran] == [["pg"]]
