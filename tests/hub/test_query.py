"""hub.query: the one parser of query strings, on its own and on routes of every kind."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from multidict import MultiDict

from hub.errors import Malformed
from hub.query import INTEGER, MAX_PARAMETERS, TEXT, one_of, parse_query

if TYPE_CHECKING:
    from conftest import HubHarness

SPEC = {"after": INTEGER, "org": TEXT, "proofs": one_of("true", "false")}


def test_known_parameters_pass_once_each() -> None:
    query = MultiDict([("after", "12"), ("org", "police"), ("proofs", "false")])
    assert parse_query(query, SPEC) == {"after": "12", "org": "police", "proofs": "false"}
    assert parse_query(MultiDict(), SPEC) == {}


@pytest.mark.parametrize(
    ("pairs", "says"),
    [
        ([("after", "1"), ("after", "2")], "after is given twice"),
        ([("zzz", "1")], "unknown query parameter; this route takes after, org, proofs"),
        ([("", "1")], "unknown query parameter"),
        ([("after", str(i)) for i in range(MAX_PARAMETERS + 1)], "unknown query parameter"),
        ([("after", "-1")], "after must be a whole number"),
        ([("after", "1.5")], "after must be a whole number"),
        ([("after", "")], "after must be a whole number"),
        ([("after", "1" * 20)], "after must be a whole number"),
        ([("org", "a b")], "org must be 1-200 printable ASCII"),
        ([("org", "x" * 201)], "org must be 1-200 printable ASCII"),
        ([("proofs", "yes")], "proofs must be one of true, false"),
    ],
)
def test_unknown_repeated_and_malformed_parameters_are_refused(
    pairs: list[tuple[str, str]], says: str
) -> None:
    with pytest.raises(Malformed, match=says):
        parse_query(MultiDict(pairs), SPEC)


def test_a_detail_never_quotes_what_the_client_sent() -> None:
    with pytest.raises(Malformed) as refused:
        parse_query(MultiDict([("eyJ-a-token-pasted-here", "1")]), SPEC)
    assert "eyJ" not in refused.value.detail


REFUSED = (
    "/v1/inbox?after=1&after=2",
    "/v1/inbox?zzz=1",
    "/v1/events?after=0&after=1",
    "/v1/events?zzz=1",
    "/v1/referrals?limit=1&limit=2",
    "/v1/directory/orgs?zzz=1",
    "/v1/audit/head?zzz=1",
    "/v1/audit/entries?limit=1&limit=2",
)


@pytest.mark.parametrize("database_kind", ["sqlite"])  # the parser, not the database
async def test_every_route_refuses_unknown_and_repeated_parameters_with_a_denied_entry(
    hub: HubHarness,
) -> None:
    police = await hub.enrol("police", ["member", "privacy_officer"])
    headers = police.headers(**{"Schakel-Purpose": "audit"})
    for target in REFUSED:
        before = len(await hub.audit())
        await hub.problem(await hub.client.get(target, headers=headers), 400, "malformed")
        entries = await hub.audit()
        assert len(entries) == before + 1, target
        assert (entries[-1].outcome, entries[-1].reason) == ("denied", "malformed"), target
    for target in ("/healthz?zzz=1", "/v1/hub?x=1", "/v1/openapi.json?a=b"):  # before login
        await hub.problem(await hub.client.get(target), 400, "malformed")
