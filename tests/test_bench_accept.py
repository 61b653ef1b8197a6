"""``make bench-accept`` (bench/accept.py) without wrk: the request mix it seals, how it
reads wrk's answer, and the last line it prints. (wrk itself runs in ``make bench-accept``
and ``make bench``; no figure is asserted anywhere.)"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import accept  # noqa: E402 - needs the sys.path line above
from bench.hub_server import open_keys, provision_network  # noqa: E402
from protocol.envelope import Envelope  # noqa: E402
from protocol.linkingkey import LinkingKey  # noqa: E402
from protocol.pseudonym import derive_pseudonyms  # noqa: E402
from protocol.types import Pseudonym  # noqa: E402

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


def _envelopes(stream: _Stream) -> list[tuple[int, Envelope]]:
    parsed = []
    for line in stream.lines:
        sender, _, body = line.partition("\t")
        parsed.append((int(sender), Envelope.from_wire(json.loads(body))))
    return parsed


def test_the_mix_holds_new_and_joining_signals_referrals_and_status_updates(
    stream: _Stream,
) -> None:
    envelopes = _envelopes(stream)
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
            assert referral_at.pop(header.ref) <= position - accept.LAG  # each once, earlier
        else:
            assert header.recipients == (accept.COORDINATOR,)
            if header.pseudonyms in first_seen:
                assert first_seen[header.pseudonyms] <= position - accept.LAG
                joins += position >= 2 * accept.LAG
            else:
                first_seen[header.pseudonyms] = position
            signals += position >= 2 * accept.LAG
    assert kinds["status"] > 0 and kinds["referral"] >= kinds["status"]
    # Once the stream is under way (people to join, referrals to answer): half join a case.
    assert 0.45 * signals <= joins <= 0.55 * signals


def test_the_stream_is_the_same_when_written_again(stream: _Stream, tmp_path: Path) -> None:
    target = tmp_path / "hub.requests"
    stream.write(target, 10, 50)
    assert target.read_text(encoding="utf-8").splitlines() == stream.lines[10:60]
    before = len(stream.lines)
    stream.write(target, before - 5, 20)  # past the end: sealed on demand, in order
    assert len(stream.lines) == before + 15
    assert target.read_text(encoding="utf-8").splitlines() == stream.lines[before - 5 :]


def test_a_status_of_a_referral_cut_off_by_a_run_becomes_a_new_signal(
    stream: _Stream, tmp_path: Path
) -> None:
    at, ref = next(iter(stream.answers.items()))
    target = tmp_path / "hub.requests"
    stream.write(target, at - 5, 10, {ref})
    written = target.read_text(encoding="utf-8").splitlines()
    assert written[:5] == stream.lines[at - 5 : at] and written[6:] == stream.lines[at + 1 : at + 5]
    sender, _, body = written[5].partition("\t")
    instead = Envelope.from_wire(json.loads(body)).header
    assert accept.SENDERS[int(sender) - 1] == instead.sender == accept.POLICE
    assert (instead.kind, instead.recipients, instead.ref) == (
        "signal",
        (accept.COORDINATOR,),
        None,
    )
    assert stream.referrals_between(0, len(stream.lines)) >= {ref}


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
