"""Case clusters: matching, chains, split and merge, stable references, and who may see them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from hub.http.common import SERVICES
from protocol.envelope import Envelope
from protocol.pseudonym import LinkingKey, pseudonym
from protocol.types import Pseudonym

if TYPE_CHECKING:
    from conftest import HubHarness, Party

COORDINATOR = ("member", "coordinator")


class Network:
    """A coordinator and three signalling organisations on one test hub."""

    def __init__(self, hub: HubHarness) -> None:
        self.hub = hub

    async def start(self) -> Network:
        hub = self.hub
        self.coordinator = await hub.enrol("coordinator", COORDINATOR, org_type="coordination")
        self.coordinator.purpose = "case-coordination"
        self.police = await hub.enrol("police", org_type="police")
        self.ggd = await hub.enrol("ggd", org_type="ggd")
        self.school = await hub.enrol("school", org_type="school")
        return self

    async def signal(self, sender: Party, *pseudonyms: Pseudonym) -> Envelope:
        envelope = self.hub.envelope(
            sender, [self.coordinator], pseudonyms=tuple(sorted(set(pseudonyms)))
        )
        response = await self.hub.send(sender, envelope)
        assert response.status == 201, await response.text()
        self.hub.clock.advance(1)
        return envelope

    async def get(self, path: str, party: Party | None = None, **query: Any) -> Any:
        party = party or self.coordinator
        response = await self.hub.client.get(path, headers=party.headers(), params=query)
        assert response.status == 200, await response.text()
        return await response.json()

    async def post(self, path: str, body: Any, party: Party | None = None) -> Any:
        party = party or self.coordinator
        return await self.hub.client.post(path, json=body, headers=party.headers())

    async def cases(self, **query: Any) -> list[dict[str, Any]]:
        return list((await self.get("/v1/cases", **query))["cases"])

    async def case_of(self, envelope: Envelope) -> str:
        for case in await self.cases(limit=200):
            detail = await self.get(f"/v1/cases/{case['case']}")
            if any(item.get("message") == envelope.header.id for item in detail["timeline"]):
                return str(case["case"])
        raise AssertionError("the message is in no case")


@pytest.fixture
async def net(hub: HubHarness) -> Network:
    return await Network(hub).start()


KEY = LinkingKey(1, b"k" * 32)


def ps(*values: str) -> tuple[Pseudonym, ...]:
    """Phone-number pseudonyms, as the tests' other helpers make them."""
    return tuple(sorted(pseudonym("tel", value, KEY) for value in values))


# -- clustering --------------------------------------------------------------------------


async def test_a_chain_of_overlaps_is_one_case(net: Network) -> None:
    a, b, c = ps("0611111111"), ps("0622222222"), ps("0633333333")
    first = await net.signal(net.police, *a)
    second = await net.signal(net.ggd, *a, *b)
    third = await net.signal(net.school, *b, *c)
    cases = await net.cases()
    assert len(cases) == 1
    case = cases[0]
    assert case["signals"] == 3 and case["state"] == "new"
    assert [o["org_type"] for o in case["orgs"]] == ["police", "ggd", "school"]
    assert {await net.case_of(e) for e in (first, second, third)} == {case["case"]}


async def test_a_late_bridge_merges_two_cases_under_a_stable_reference(net: Network) -> None:
    a, b = ps("0611111111"), ps("0622222222")
    first = await net.signal(net.police, *a)
    second = await net.signal(net.ggd, *b)
    before = {await net.case_of(first), await net.case_of(second)}
    assert len(before) == 2
    await net.signal(net.school, *a, *b)  # links the two
    (case,) = await net.cases()
    survivor = case["case"]
    assert survivor == await net.case_of(first)  # the older case keeps its reference
    (absorbed,) = before - {survivor}
    redirected = await net.get(f"/v1/cases/{absorbed}")
    assert (redirected["case"], redirected["merged_from"]) == (survivor, absorbed)
    merges = [i for i in redirected["timeline"] if i["type"] == "merge"]
    assert merges == [
        {
            "at": merges[0]["at"],
            "type": "merge",
            "other": absorbed,
            "automatic": True,
            "messages": [second.header.id],
        }
    ]


async def test_identifier_types_link_across_each_other(net: Network, hub: HubHarness) -> None:
    bsn = pseudonym("bsn", "111222333", KEY)
    tel = pseudonym("tel", "+31611111111", KEY)
    doc = pseudonym("doc", "NL|AB1234567", KEY)
    await net.signal(net.police, bsn)
    await net.signal(net.ggd, tel, doc)
    assert len(await net.cases()) == 2
    await net.signal(net.school, bsn, doc)
    assert len(await net.cases()) == 1


async def test_unrelated_signals_stay_apart(net: Network) -> None:
    await net.signal(net.police, *ps("0611111111"))
    await net.signal(net.ggd, *ps("0622222222"))
    await net.signal(net.school)  # no pseudonyms at all: a case of its own
    assert len(await net.cases()) == 3


async def test_a_split_holds_against_later_signals(net: Network) -> None:
    shared, anna, bea = ps("0600000000"), ps("0611111111"), ps("0622222222")
    anna_signal = await net.signal(net.police, *shared, *anna)
    bea_signal = await net.signal(net.ggd, *shared, *bea)
    (case,) = await net.cases()
    response = await net.post(
        f"/v1/cases/{case['case']}/split", {"messages": [bea_signal.header.id]}
    )
    assert response.status == 201, await response.text()
    split = await response.json()
    assert split["from"] == case["case"] and split["case"] != case["case"]
    assert {await net.case_of(anna_signal), await net.case_of(bea_signal)} == {
        case["case"],
        split["case"],
    }
    # A later signal carrying everything joins one of them, never both.
    later = await net.signal(net.school, *shared, *anna, *bea)
    assert len(await net.cases()) == 2
    assert await net.case_of(later) == case["case"]  # shares more with it (2 against 2: older)
    events = (await net.get("/v1/events"))["events"]
    match = [e for e in events if e["kind"] == "match" and e["message"] == later.header.id]
    assert match[0]["detail"]["kept_apart"] == [split["case"]]
    assert match[0]["detail"]["merged"] == []


async def test_merge_and_unmerge_are_reversible(net: Network) -> None:
    first = await net.signal(net.police, *ps("0611111111"))
    second = await net.signal(net.ggd, *ps("0622222222"))
    one, two = await net.case_of(first), await net.case_of(second)
    response = await net.post(f"/v1/cases/{one}/merge", {"case": two})
    assert response.status == 200, await response.text()
    assert await response.json() == {"case": one, "absorbed": two}
    assert [c["case"] for c in await net.cases()] == [one]
    response = await net.post(f"/v1/cases/{one}/unmerge", {"case": two})
    assert response.status == 200, await response.text()
    assert await response.json() == {"case": two, "from": one}
    assert (await net.case_of(first), await net.case_of(second)) == (one, two)
    # Kept apart now: a bridge does not merge them again.
    await net.signal(net.school, *ps("0611111111", "0622222222"))
    assert len(await net.cases()) == 2
    # A split is undone by a merge, which ends the separation.
    response = await net.post(f"/v1/cases/{one}/merge", {"case": two})
    assert response.status == 200
    assert len(await net.cases()) == 1


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({}, 400),
        ({"messages": []}, 400),
        ({"messages": "x"}, 400),
        ({"messages": ["not-an-id"]}, 400),
        ({"messages": ["A" * 22], "extra": 1}, 400),
        ({"messages": ["A" * 22]}, 409),  # not a member
    ],
)
async def test_bad_splits_are_refused_and_change_nothing(
    net: Network, hub: HubHarness, body: Any, status: int
) -> None:
    first = await net.signal(net.police, *ps("0611111111"))
    case = await net.case_of(first)
    before = await hub.counts()
    response = await net.post(f"/v1/cases/{case}/split", body)
    await hub.problem(response, status, "malformed" if status == 400 else "conflict")
    assert (await hub.counts())["messages"] == before["messages"]
    assert [c["case"] for c in await net.cases()] == [case]


async def test_a_split_can_not_empty_a_case(net: Network, hub: HubHarness) -> None:
    only = await net.signal(net.police, *ps("0611111111"))
    case = await net.case_of(only)
    response = await net.post(f"/v1/cases/{case}/split", {"messages": [only.header.id]})
    await hub.problem(response, 409, "conflict")


async def test_merging_a_case_with_itself_or_unknown_is_refused(
    net: Network, hub: HubHarness
) -> None:
    first = await net.signal(net.police, *ps("0611111111"))
    case = await net.case_of(first)
    await hub.problem(await net.post(f"/v1/cases/{case}/merge", {"case": case}), 409, "conflict")
    unknown = "a" * 16
    await hub.problem(
        await net.post(f"/v1/cases/{case}/merge", {"case": unknown}), 404, "not-found"
    )
    await hub.problem(
        await net.post(f"/v1/cases/{case}/unmerge", {"case": unknown}), 409, "conflict"
    )
    await hub.problem(await net.post(f"/v1/cases/{case}/merge", {"other": case}), 400, "malformed")


async def test_split_and_merge_are_audited(net: Network, hub: HubHarness) -> None:
    first = await net.signal(net.police, *ps("0611111111"))
    second = await net.signal(net.ggd, *ps("0622222222"))
    one, two = await net.case_of(first), await net.case_of(second)
    await net.post(f"/v1/cases/{one}/merge", {"case": two})
    await net.post(f"/v1/cases/{one}/split", {"messages": [second.header.id]})
    entries = [e for e in await hub.audit() if e.action in ("merge", "split")]
    assert [(e.action, e.outcome, e.org, e.purpose) for e in entries] == [
        ("merge", "allowed", "coordinator", "case-coordination"),
        ("split", "allowed", "coordinator", "case-coordination"),
    ]
    assert {one, two, second.header.id} <= set(entries[0].object_ids)
    assert {one, second.header.id} <= set(entries[1].object_ids)


# -- views -------------------------------------------------------------------------------


async def test_cases_filter_and_sort(net: Network, hub: HubHarness) -> None:
    await net.signal(net.police, *ps("0611111111"))
    hub.clock.advance(60)
    await net.signal(net.school, *ps("0622222222"))
    hub.clock.advance(60)
    await net.signal(net.ggd, *ps("0622222222"))
    newest_first = await net.cases()
    assert [c["signals"] for c in newest_first] == [2, 1]
    assert [c["signals"] for c in await net.cases(sort="last", order="asc")] == [1, 2]
    assert [c["signals"] for c in await net.cases(sort="signals", order="desc")] == [2, 1]
    assert len(await net.cases(type="school")) == 1
    assert len(await net.cases(type="shelter")) == 0
    assert len(await net.cases(state="new")) == 2
    assert len(await net.cases(state="in_care")) == 0
    assert len(await net.cases(limit=1)) == 1
    assert (await net.get("/v1/cases", limit=1))["total"] == 2


@pytest.mark.parametrize(
    "query",
    [{"state": "open"}, {"type": "bank"}, {"sort": "name"}, {"order": "up"}, {"limit": "0"},
     {"limit": "201"}, {"offset": "-1"}, {"since": "yesterday"}],
)  # fmt: skip
async def test_bad_case_queries_are_400(net: Network, hub: HubHarness, query: Any) -> None:
    response = await hub.client.get("/v1/cases", headers=net.coordinator.headers(), params=query)
    await hub.problem(response, 400, "malformed")


async def test_case_views_need_a_purpose(net: Network, hub: HubHarness) -> None:
    response = await hub.client.get(
        "/v1/cases", headers=net.coordinator.headers(**{"Schakel-Purpose": None})
    )
    await hub.problem(response, 400, "malformed")


async def test_reading_a_case_is_audited_with_its_messages_and_pseudonyms(
    net: Network, hub: HubHarness
) -> None:
    anna = ps("0611111111")
    signal = await net.signal(net.police, *anna)
    case = await net.case_of(signal)
    read = [e for e in await hub.audit() if e.action == "read" and e.object_type == "case"]
    assert read[-1].org == "coordinator"
    assert {case, signal.header.id} <= set(read[-1].object_ids)
    assert read[-1].pseudonyms == anna


# -- privacy -----------------------------------------------------------------------------


CASE_ROUTES = [
    ("get", "/v1/cases", None),
    ("get", "/v1/cases/{case}", None),
    ("post", "/v1/cases/{case}/split", {"messages": ["A" * 22]}),
    ("post", "/v1/cases/{case}/merge", {"case": "{case}"}),
    ("post", "/v1/cases/{case}/unmerge", {"case": "{case}"}),
    ("get", "/v1/referrals", None),
]


@pytest.mark.parametrize(("method", "path", "body"), CASE_ROUTES)
async def test_an_ordinary_organisation_gets_404_on_every_case_route(
    net: Network, hub: HubHarness, method: str, path: str, body: Any
) -> None:
    signal = await net.signal(net.police, *ps("0611111111"))
    case = await net.case_of(signal)
    url = path.replace("{case}", case)
    if body is not None:
        body = {
            k: (v.replace("{case}", case) if isinstance(v, str) else v) for k, v in body.items()
        }
    for party in (net.police, net.ggd):  # the signal's own sender too
        party.purpose = "signal-intake"
        response = await hub.client.request(method, url, json=body, headers=party.headers())
        await hub.problem(response, 404, "not-found")
    denied = [e for e in await hub.audit() if e.object_type == "case" and e.outcome == "denied"]
    assert {(e.org, e.reason) for e in denied} == {("police", "not-found"), ("ggd", "not-found")}


async def test_an_unknown_case_looks_like_anothers(net: Network, hub: HubHarness) -> None:
    for ref in ("a" * 16, "not-a-case", "A" * 16):
        response = await hub.client.get(f"/v1/cases/{ref}", headers=net.coordinator.headers())
        await hub.problem(response, 404, "not-found")


async def test_sending_tells_nothing_about_known_pseudonyms(net: Network, hub: HubHarness) -> None:
    """Same status, same body fields and headers, whether the pseudonym is known or not."""
    known = ps("0611111111")
    await net.signal(net.ggd, *known)

    async def answer(pseudonyms: tuple[Pseudonym, ...]) -> tuple[int, set[str], set[str]]:
        envelope = hub.envelope(net.police, [net.coordinator], pseudonyms=pseudonyms)
        response = await hub.send(net.police, envelope)
        body = await response.json()
        headers = {h for h in response.headers if h.lower() not in ("date", "content-length")}
        return response.status, set(body), headers

    assert await answer(known) == await answer(ps("0699999999"))
    events = (await net.get("/v1/events", net.police))["events"]
    assert events == []  # nothing about matches for an ordinary organisation
    response = await hub.client.get("/v1/inbox", headers=net.police.headers())
    assert (await response.json())["messages"] == []


async def test_events_of_a_coordinator_carry_the_case_and_no_pseudonym(
    net: Network, hub: HubHarness
) -> None:
    await net.signal(net.police, *ps("0611111111"))
    joining = await net.signal(net.ggd, *ps("0611111111"))
    (event,) = (await net.get("/v1/events"))["events"]
    case = await net.case_of(joining)
    assert event["kind"] == "match" and event["case"] == case
    assert event["message"] == joining.header.id
    assert event["detail"]["sender_type"] == "ggd"
    assert "tel." not in str(event)
    follow = await net.get("/v1/events", after=str(event["id"]))
    assert follow == {"events": [], "next": event["id"]}


async def test_a_match_is_pushed_to_the_coordinator(net: Network, hub: HubHarness) -> None:
    notifier = hub.client.server.app[SERVICES].notifier  # type: ignore[union-attr]
    subscription = notifier.subscribe(net.coordinator.org)
    await net.signal(net.police, *ps("0611111111"))
    await net.signal(net.ggd, *ps("0611111111"))
    notices = [await subscription.next(), await subscription.next(), await subscription.next()]
    subscription.close()
    assert [n.type for n in notices] == ["message", "message", "event"]
    assert notices[2].kind == "match"
