"""When no entry can be appended to the access log, the hub fails closed with a 503.

Rows of the log cut under a running hub, or an append that the database refuses: every
audited request answers ``503 access-log-unavailable`` with ``Retry-After`` (nothing is
done without its entry), and the operator's log gets ONE line saying what is wrong,
however many requests are refused, never an "unhandled exception" per request.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pytest

from hub.errors import AccessLogUnavailable
from hub.problems import problem_response
from hub.writer import CommitFailed

if TYPE_CHECKING:
    from conftest import HubHarness

# A trigger that refuses every new entry, as a full disk or a broken table would.
REFUSE_APPENDS = {
    "sqlite": [
        "CREATE TRIGGER refuse_appends BEFORE INSERT ON audit_log "
        "BEGIN SELECT RAISE(FAIL, 'no space left'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_appends() RETURNS trigger AS $$ "
        "BEGIN RAISE EXCEPTION 'no space left'; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER refuse_appends BEFORE INSERT ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION refuse_appends()",
    ],
}


async def _expect_closed(
    hub: HubHarness, caplog: pytest.LogCaptureFixture, headers: dict[str, str]
) -> None:
    entries = await hub.counts()
    for _ in range(3):
        response = await hub.client.get("/v1/directory/orgs", headers=headers)
        body = await hub.problem(response, 503, "access-log-unavailable")
        assert "access log is unavailable" in body["detail"]
        assert response.headers["Retry-After"] == str(AccessLogUnavailable.RETRY_AFTER)
    assert await hub.counts() == entries  # nothing was written
    said = [r for r in caplog.records if r.name == "hub.accesslog"]
    assert len(said) == 1, "one line, however many requests are refused"
    assert said[0].levelno == logging.ERROR
    assert said[0].getMessage().startswith("access log unavailable: ")
    assert not [r for r in caplog.records if r.name == "hub.errors"], "no unhandled exception"


def _said(caplog: pytest.LogCaptureFixture) -> str:
    return next(r.getMessage() for r in caplog.records if r.name == "hub.accesslog")


async def test_cut_rows_make_audited_requests_503_with_one_log_line(
    hub: HubHarness, caplog: pytest.LogCaptureFixture
) -> None:
    police = await hub.enrol("police")
    newest = len(await hub.audit()) - 1
    await hub.execute('DELETE FROM audit_log WHERE "index" >= :cut', cut=newest - 1)
    caplog.set_level(logging.INFO, logger="hub")
    await _expect_closed(hub, caplog, police.headers())
    assert "rows were removed" in _said(caplog)


async def test_an_append_the_database_refuses_is_503_not_500(
    hub: HubHarness, caplog: pytest.LogCaptureFixture
) -> None:
    police = await hub.enrol("police")
    for statement in REFUSE_APPENDS[hub.backend]:
        await hub.execute(statement)
    caplog.set_level(logging.INFO, logger="hub")
    await _expect_closed(hub, caplog, police.headers())
    assert "could not be written" in _said(caplog)
    assert "no space left" not in caplog.text  # the database's message stays out
    await hub.execute("DROP TRIGGER refuse_appends" + (" ON audit_log" * (hub.backend != "sqlite")))
    assert (await hub.client.get("/v1/directory/orgs", headers=police.headers())).status == 200


def test_a_failed_commit_is_503_with_retry_after() -> None:
    response = problem_response(CommitFailed("the change could not be stored"), "0" * 32)
    assert response.status == 503
    assert response.headers["Retry-After"] == str(CommitFailed.RETRY_AFTER)
