"""Smoke test of ``make bench``: the machinery runs end to end with tiny counts.

No performance figure is asserted: only that both servers answered every
request 201, the results have the right shape, the child processes are gone
afterwards, and the report is written only where and when it should be. The
PostgreSQL section (``bench.replicas``) runs on its own, like the PostgreSQL
tests: skipped with a message where the server is out of reach, failed under
``CI=true`` (the ``pg_server`` fixture).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

# bench/ is not an installed package (make bench runs it from the checkout), and
# plain `pytest` puts tests/, not the checkout, on sys.path.
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.__main__ import (  # noqa: E402 - needs the sys.path line above
    BEGIN,
    END,
    BenchResult,
    Options,
    main,
    render,
    run_bench,
    write_section,
)
from bench.cases import (  # noqa: E402
    WorkloadError,
    bench_pseudonym,
    cluster_rounds,
    clustering_shape,
    fill,
    make_template,
    new_database,
    percentile,
)
from bench.loadgen import (  # noqa: E402
    ServerFailed,
    free_port,
    server_process,
    spread_request,
)
from bench.replicas import (  # noqa: E402
    GIVE_UP_AFTER,
    PREFIX,
    ReplicaFigures,
    Settings,
    Skipped,
    measure_replicas,
    render_lines,
)
from bench.seal import OPEN, PRIMITIVES, SEAL_1, SEAL_5  # noqa: E402
from protocol.pseudonym import parse_pseudonym  # noqa: E402

TINY = Options(
    requests=20,
    concurrency=2,
    rounds=2,
    warmup=4,
    iterations=2,
    repeats=1,
    log_sizes=(64, 1_000),
    log_samples=5,
    verify_entries=200,
    append_entries=100,
    case_sizes=(30, 300),  # multiples of 15: exactly that many pseudonyms (cases of 3, 5, 7)
    case_signals=10,
    case_rounds=2,
    view_cases=60,
    view_repeats=3,
    desk_messages=30,
    desk_repeats=2,
    desk_cases=30,
    desk_log_entries=200,
    postgres=False,  # the PostgreSQL section has tests of its own, below
    accept=False,  # bench.accept needs wrk: tests/test_bench_accept.py tests its parts
    oprf_signals=3,
    cosignatures=16,
    witness_requests=10,
    retention_sizes=(300,),
)
TINY_REPLICAS = Settings(requests=8, concurrency=2, rounds=2, warmup=2, senders=2, notices=3)


@pytest.fixture(scope="module")
def result() -> BenchResult:
    return run_bench(TINY)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_both_servers_accepted_every_request(result: BenchResult) -> None:
    servers = result.servers
    assert len(servers.rounds) == 2
    assert [w.name for w in servers.warmups] == ["floor warm-up", "hub warm-up"]
    for load in [*servers.warmups, *(r for pair in servers.rounds for r in (pair.floor, pair.hub))]:
        expected = 4 if "warm-up" in load.name else 20
        assert load.statuses == ((201, expected),), load.first_error
        assert load.errors == 0 and load.first_error == ""
        assert load.rate > 0 and len(load.latencies) == expected
        assert list(load.latencies) == sorted(load.latencies)
    assert servers.floor.errors == servers.hub.errors == 0
    assert servers.ratio > 0 and servers.hub_bytes > servers.floor_bytes == 4096


def test_server_processes_are_stopped(result: BenchResult) -> None:
    assert len(result.servers.pids) == 2
    assert all(_gone(pid) for pid in result.servers.pids)


def test_client_side_figures_cover_every_operation(result: BenchResult) -> None:
    figures = result.seal
    assert set(figures.micros) == {SEAL_1, SEAL_5, OPEN, *PRIMITIVES}
    assert all(value > 0 and math.isfinite(value) for value in figures.micros.values())
    for operation in (SEAL_1, SEAL_5, OPEN):
        assert figures.ratio(operation) > 0
    # Five recipients are five HPKE encryptions in the bare sum, against one.
    assert figures.bare_sum(SEAL_5) > figures.bare_sum(SEAL_1)


def test_pseudonymisation_figures_count_the_client_path_and_time_both_services(
    result: BenchResult,
) -> None:
    from bench.oprf import ADD, BASE_MULT, FROM_HASH, INVERT, MULT, PRIMITIVES

    figures = result.oprf
    assert figures is not None and len(figures.latencies) == 3
    assert all(0 < seconds < 60 for seconds in figures.latencies)
    assert len(figures.library_latencies) == 3  # the client library's path, as a send
    assert all(0 < seconds < 60 for seconds in figures.library_latencies)
    # Five identifiers: five one-way maps, five blinds, five unblinds with one inversion
    # (batched), and for each of the two services' proofs 2 x 5 + 3 multiplications and
    # one of the generator.
    assert figures.counts[FROM_HASH] == 5 and figures.counts[INVERT] == 1
    assert figures.counts[MULT] == 5 + 2 * (2 * 5 + 3) + 5 and figures.counts[BASE_MULT] == 2
    assert figures.counts[ADD] > 0
    assert set(figures.primitive_micros) == set(PRIMITIVES)
    assert figures.client_ratio > 0 and figures.service_evals_per_second > 0
    assert "Pseudonymisation services" in render(result)


def test_access_log_figures_cover_every_size(result: BenchResult) -> None:
    assert [p.size for p in result.log.proofs] == [64, 1_000]
    for proof in result.log.proofs:
        assert proof.inclusion_us > 0 and proof.consistency_us > 0
        assert 0 < proof.nodes_read <= 2 * proof.size.bit_length() + 2
    assert result.log.verify.entries == 200 and result.log.verify.ratio > 0
    appends = result.log.appends
    assert appends.entries == 100 and appends.hub_per_s > 0 and appends.floor_per_s > 0


def test_witness_figures(result: BenchResult) -> None:
    figures = result.witness
    assert figures is not None
    rates = figures.cosignatures
    assert rates.witnesses == 8
    assert all(r > 0 and math.isfinite(r) for r in (rates.bare_per_s, rates.line_per_s,
                                                    rates.tally_per_s))  # fmt: skip
    checkpoints = figures.add_checkpoint
    assert checkpoints.requests == 10 and checkpoints.ratio > 0
    quorum = figures.quorum
    assert quorum.rounds == 3 and quorum.plain_ms > 0 and math.isfinite(quorum.witnessed_ms)
    assert quorum.witnessed_ms > quorum.plain_ms  # the round adds work; it is not free
    text = render(result)
    assert "add-checkpoint requests/s" in text and "witnessing round to a quorum of two" in text


def test_clustering_figures_cover_every_size(result: BenchResult) -> None:
    figures = result.cases.clustering
    assert [c.filled.pseudonyms for c in figures] == [30, 300]
    assert [(c.filled.cases, c.filled.messages) for c in figures] == [(6, 12), (60, 120)]
    for rate in figures:
        assert rate.signals == 10 and len(rate.clustered) == len(rate.floor) == 2
        assert all(r > 0 and math.isfinite(r) for r in (*rate.clustered, *rate.floor))
        assert rate.ratios[0] == rate.clustered[0] / rate.floor[0]
        assert min(rate.ratios) <= rate.ratio <= max(rate.ratios)


def test_cases_view_figures_list_every_case(result: BenchResult) -> None:
    view = result.cases.view
    filled = view.filled
    # Cases of 1..5 signals (3 on average), a referral in every third case.
    assert (filled.cases, filled.messages, filled.referrals) == (60, 200, 20)
    assert (view.total, view.page) == (60, 50)
    for timings in (view.listed, view.floor, view.detail):
        assert len(timings) == 3 and list(timings) == sorted(timings) and timings[0] > 0
    assert percentile(view.listed, 50) == view.listed[1] and view.ratio > 0


def test_desk_figures_time_the_casework_pages_and_their_library_calls(
    result: BenchResult,
) -> None:
    work = result.desk.casework
    assert work is not None and (work.cases, work.log_entries) == (30, 200)
    timings = (work.cases_page, work.cases_library, work.case_page, work.case_library)
    timings += (work.subject_page, work.subject_library)
    assert all(0 < t.p50 <= t.p95 for t in timings)


def test_bench_pseudonyms_are_well_formed_and_distinct() -> None:
    made = [bench_pseudonym(number) for number in range(2_000)]
    assert len(set(made)) == len(made)
    assert all(parse_pseudonym(p) == p for p in made)
    assert {p.split(".")[0] for p in made} == {"bsn", "ndob", "doc", "tel"}


def test_fill_keeps_the_schema_and_links_each_case(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    new_database(path)
    schema = "SELECT type, name, sql FROM sqlite_master ORDER BY name"
    db = sqlite3.connect(path)
    before = db.execute(schema).fetchall()
    db.close()  # the fill needs the file to itself
    filled = fill(path, 3, clustering_shape)
    db = sqlite3.connect(path)
    try:
        assert db.execute(schema).fetchall() == before  # the dropped indexes are back
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        # The signals of a case share one pseudonym: cases of 1, 2 and 3 signals.
        shared = db.execute(
            "SELECT count(*) FROM (SELECT pseudonym FROM message_pseudonyms "
            "GROUP BY pseudonym HAVING count(*) > 1)"
        ).fetchone()
        assert shared == (2,)  # one in the case of 2 signals, one in the case of 3
    finally:
        db.close()
    assert (filled.cases, filled.messages, filled.pseudonyms) == (3, 6, 15)


def test_clustering_refuses_a_workload_that_did_not_match(tmp_path: Path) -> None:
    """Claiming pseudonyms the database does not hold: the joining half starts new cases,
    and the run says so instead of reporting a rate."""
    path = tmp_path / "hub.db"
    new_database(path)
    filled = fill(path, 6, clustering_shape)
    lie = dataclasses.replace(filled, pseudonyms=10**9)
    with pytest.raises(WorkloadError, match=r"expected \d+ new cases and \d+ joined"):
        asyncio.run(cluster_rounds(path, lie, make_template(), 20, 1, 2))


def test_options_refuse_bad_case_settings() -> None:
    with pytest.raises(ValueError, match="case_signals"):
        Options(case_signals=1)
    with pytest.raises(ValueError, match="case size"):
        Options(case_sizes=(4,))
    with pytest.raises(ValueError, match="view_repeats"):
        Options(view_repeats=0)
    with pytest.raises(ValueError, match="notices"):
        Options(notices=0)
    with pytest.raises(ValueError, match="replica_requests"):
        Options(replica_requests=0)
    with pytest.raises(ValueError, match=r"2 x \(warmup \+ rounds x replica_requests"):
        Options(replica_requests=10_000)
    assert Options(replica_requests=10_000, postgres=False).replicas.requests == 10_000


def test_report_names_the_machine_and_both_tables(result: BenchResult) -> None:
    text = render(result)
    assert text.startswith("## Latest run\n")
    for needle in (
        "Machine: ",
        "Python ",
        "cryptography ",
        "| **hub / floor** |",
        "`seal, 5",
        "### Access log",
        "### Case clustering",
        "| **clustered / floor** |",
        "### Cases view: a coordinator with 60 cases",
        "| **list / floor** (p50) |",
    ):
        assert needle in text
    assert "rate_per_sec 1,000,000" in text  # the raised limit is stated


def test_write_section_keeps_the_text_around_it(tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    doc.write_text(f"# Performance\n\nintro\n\n{BEGIN}\nold figures\n{END}\n\n## After\n")
    write_section(doc, "new figures\n")
    text = doc.read_text()
    assert text == f"# Performance\n\nintro\n\n{BEGIN}\nnew figures\n{END}\n\n## After\n"
    write_section(doc, "newer\n")
    assert text.replace("new figures", "newer") == doc.read_text()


def test_write_section_appends_when_markers_are_missing(tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    doc.write_text("# Performance\n\nintro\n")
    write_section(doc, "figures\n")
    assert doc.read_text() == f"# Performance\n\nintro\n\n{BEGIN}\nfigures\n{END}\n"


def test_command_quick_prints_and_does_not_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What --quick does (print, never write), not its counts: ``bench.__main__.QUICK``'s
    10,000 cases and log entries would take minutes here, so the command gets TINY's."""
    import bench.__main__ as bench_main  # the module, to replace QUICK in

    assert isinstance(bench_main.QUICK, Options)  # built, so validated, at import
    monkeypatch.setattr(bench_main, "QUICK", TINY)
    doc = tmp_path / "performance.md"
    args = ["--quick", "--requests", "10", "--concurrency", "2", "--warmup", "0", "--no-postgres"]
    args.append("--no-accept")  # needs wrk: tests/test_bench_accept.py
    outcome = CliRunner().invoke(main, [*args, "--iterations", "1", "--output", str(doc)])
    assert outcome.exit_code == 0, outcome.output
    assert "| **hub / floor** |" in outcome.output and "not written" in outcome.output
    assert "### PostgreSQL" not in outcome.output  # left out, not skipped
    assert not doc.exists()


def test_command_refuses_too_many_envelopes() -> None:
    outcome = CliRunner().invoke(main, ["--requests", "20000", "--rounds", "20", "--no-write"])
    assert outcome.exit_code == 2
    assert "at most 50000" in outcome.output


def test_a_server_that_exits_fails_with_its_log(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import sys; print('cannot bind'); sys.exit(3)"]
    log = tmp_path / "log"
    with (
        pytest.raises(ServerFailed, match=r"exited with 3: cannot bind"),
        server_process("broken", argv, port=free_port(), log=log),
    ):
        pytest.fail("the block must not run")


def test_a_server_that_never_listens_is_stopped(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = (
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    )
    with (
        pytest.raises(ServerFailed, match="did not listen"),
        server_process(
            "silent",
            [sys.executable, "-c", script],
            port=free_port(),
            log=tmp_path / "log",
            ready_timeout=2.0,
        ),
    ):
        pytest.fail("the block must not run")
    assert _gone(int(pid_file.read_text()))


# -- the PostgreSQL section -----------------------------------------------------------------


async def _bench_databases(dsn: str) -> list[str]:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        rows = await conn.fetch("SELECT datname FROM pg_database")
    finally:
        await conn.close()
    return [name for (name,) in rows if name.startswith(f"{PREFIX}{os.getpid()}_")]


@pytest.fixture(scope="module")
def replicas(pg_server: Any, tmp_path_factory: pytest.TempPathFactory) -> ReplicaFigures:
    url = pg_server.url.render_as_string(hide_password=False)
    figures = measure_replicas(TINY_REPLICAS, tmp_path_factory.mktemp("replicas"), url=url)
    assert isinstance(figures, ReplicaFigures), figures  # the server was reached just now
    return figures


def test_replicas_accepted_every_request(replicas: ReplicaFigures) -> None:
    names = ["floor warm-up", "1 replica warm-up", "2 replicas warm-up"]
    assert [w.name for w in replicas.warmups] == names
    assert len(replicas.rounds) == 2
    for load in [*replicas.warmups, *(r for x in replicas.rounds for r in (x.floor, x.one, x.two))]:
        expected = 2 if "warm-up" in load.name else 8
        assert load.statuses == ((201, expected),), load.first_error
        assert len(load.latencies) == expected and load.rate > 0
        assert load.server_cpu is not None and load.server_cpu >= 0
    assert [r.two.name for r in replicas.rounds] == ["2 replicas", "2 replicas"]
    for name in ("one", "two", "scaling"):
        assert len(replicas.ratios(name)) == 2 and replicas.ratio(name) > 0
    assert replicas.body_bytes > 4096 and replicas.server[:2].isdigit()


def test_replicas_notices_are_timed_on_both_replicas(replicas: ReplicaFigures) -> None:
    notices = replicas.notices
    same, cross = notices.of(False), notices.of(True)
    assert len(same) == 3 and len(notices.delays(False)) == 3  # the baseline always arrives
    assert all(n.answered > 0 and n.framed is not None and n.framed > 0 for n in same)
    delivered = notices.delays(True)
    # Either every notice crossed, or the series ended after GIVE_UP_AFTER misses in a row.
    assert (len(cross), len(delivered)) in ((3, 3), (GIVE_UP_AFTER, 0))
    assert list(delivered) == sorted(delivered) and all(d > 0 for d in delivered)
    assert (notices.ratio(50) is None) == (not delivered)


def test_replicas_stop_their_servers_and_drop_their_databases(
    replicas: ReplicaFigures, pg_server: Any
) -> None:
    assert len(replicas.pids) == 3 and all(_gone(pid) for pid in replicas.pids)
    assert asyncio.run(_bench_databases(pg_server.dsn)) == []


def test_replicas_report(replicas: ReplicaFigures) -> None:
    text = "\n".join(render_lines(replicas))
    for needle in (
        "### PostgreSQL: one and two replicas",
        "| floor: aiohttp + asyncpg, group commit (one INSERT per batch) |",
        "| hub, 1 replica |",
        "| hub, 2 replicas (one database) |",
        "**2 replicas / 1 replica: ",
        "| A (same replica: the baseline) | 3 of 3 |",
        "| **B / A** |",
    ):
        assert needle in text
    # Every table row has as many cells as its header.
    for table in text.split("\n\n"):
        rows = [line for line in table.splitlines() if line.startswith("|")]
        assert len({row.count("|") for row in rows}) <= 1, rows


def test_replicas_skip_when_postgresql_is_out_of_reach(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/test"
    figures = measure_replicas(TINY_REPLICAS, tmp_path, url=url)
    assert isinstance(figures, Skipped)
    assert figures.url == url and figures.reason
    text = "\n".join(render_lines(figures))
    assert f"Skipped: PostgreSQL at {url} is out of reach" in text
    assert "SCHAKEL_BENCH_PG_URL" in text
    assert not (tmp_path / "pg-network").exists()  # nothing was provisioned


class _Recorder:
    """A stand-in for an aiohttp session that records where each POST went."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    @contextlib.asynccontextmanager
    async def post(self, url: str, *, data: bytes, headers: object) -> Any:
        self.sent.append((url, data))
        yield _Answer()


class _Answer:
    status = 201

    async def read(self) -> bytes:
        return b"{}"


def test_spread_request_sends_round_robin_from_the_offset() -> None:
    bodies = [({}, bytes([n])) for n in range(10)]
    send = spread_request(["http://a", "http://b"], bodies, offset=3)
    session = _Recorder()
    for number in range(4):
        assert asyncio.run(send(session, number)) == (201, b"{}")  # type: ignore[arg-type]
    assert session.sent == [
        ("http://a", b"\x03"),
        ("http://b", b"\x04"),
        ("http://a", b"\x05"),
        ("http://b", b"\x06"),
    ]
    with pytest.raises(ValueError, match="at least one URL"):
        spread_request([], bodies)


def test_the_retention_job_and_its_floor_delete_every_row(result: BenchResult) -> None:
    (rate,) = result.retention
    assert rate.rows == 300 and rate.batches == 2  # batches of 200
    assert rate.job_per_s > 0 and rate.floor_per_s > 0 and rate.ratio > 0
    assert "### Retention job (SQLite)" in render(result)


def test_retention_sizes_come_from_the_environment() -> None:
    from bench.retention import SIZES, sizes_from_env

    assert sizes_from_env({}) == SIZES == (100_000, 1_000_000)
    assert sizes_from_env({"SCHAKEL_BENCH_RETENTION_SIZES": "1000,5000"}) == (1000, 5000)
    for bad in ("", "ten", "0", "1,99999999"):
        if bad:
            with pytest.raises(ValueError):
                sizes_from_env({"SCHAKEL_BENCH_RETENTION_SIZES": bad})
