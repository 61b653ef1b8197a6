"""HubClient's case routes against scripted answers: good ones, lies, refusals, event frames.

The answers come from a :class:`~clients.transport.MockTransport` that serves what a
test puts in ``answers`` (route -> (status, JSON)), as a lying hub would; it holds no
hub logic. A malformed answer must give a :class:`MalformedAnswer` that names the field
and never the value. (The real hub's case routes are read in test_organisation_casework.)
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from client_harness import NETWORK
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_hub_client import MSG_ID, ORG, Scripted, Sleeps, ok, problem

from clients.errors import CaseNotFound, ClientError, HubProblem, MalformedAnswer
from clients.hub_client import EventNotice, HubClient, Notice, Purpose
from clients.transport import MockTransport, Request, Response

REF = "abcdefghijklmnop"
OTHER = "qrstuvwxyz234567"
MSG_2 = "BBBBBBBBBBBBBBBBBBBBBA"
SECRET = "Fenneke"  # a value a lying hub might put in a field; never echoed


def summary() -> dict[str, Any]:
    return {
        "case": REF,
        "state": "referred",
        "signals": 3,
        "first_signal": 100,
        "last_signal": 300,
        "orgs": [
            {"org": "police", "org_type": "police", "count": 2, "first": 100, "last": 300},
            {"org": "ggd", "org_type": "ggd", "count": 1, "first": 200, "last": 200},
        ],
        "referrals": {"delivered": 1, "closed": 1},
        "open_referrals": 1,
    }


def referral(**changes: Any) -> dict[str, Any]:
    return {
        "id": MSG_ID,
        "case": REF,
        "referrer": "coordinator",
        "recipient": "shelter",
        "recipient_type": "shelter",
        "step": "delivered",
        "step_at": 450,
        "steps": {"sent": 400, "delivered": 450},
        "replaced_by": None,
    } | changes


def case() -> dict[str, Any]:
    return summary() | {
        "referral_list": [referral()],
        "timeline": [
            {"at": 100, "type": "signal", "message": MSG_2, "sender": "police",
             "sender_type": "police", "recipients": ["coordinator"]},
            {"at": 400, "type": "referral", "message": MSG_ID, "sender": "coordinator",
             "sender_type": "coordination", "recipients": ["shelter"]},
            {"at": 450, "type": "delivered", "sender": "shelter", "referral": MSG_ID},
            {"at": 500, "type": "status", "message": MSG_2, "sender": "shelter",
             "sender_type": "shelter", "recipients": ["coordinator"], "code": "accepted",
             "referral": MSG_ID},
            {"at": 600, "type": "split", "other": OTHER, "automatic": False,
             "messages": [MSG_2]},
        ],
        "truncated": False,
    }  # fmt: skip


def open_referral(**changes: Any) -> dict[str, Any]:
    extra = {"holder": "shelter", "age": 90, "waiting": 40, "due": 1000, "overdue": True}
    return referral() | extra | changes


def events() -> dict[str, Any]:
    return {
        "events": [
            {"id": 4, "kind": "match", "at": 100, "case": REF, "message": MSG_2,
             "detail": {"kind": "signal", "sender": "ggd", "sender_type": "ggd",
                        "merged": [OTHER], "kept_apart": []}},
            {"id": 9, "kind": "escalation", "at": 200, "case": REF, "message": MSG_ID,
             "step": "delivered",
             "detail": {"referrer": "coordinator", "recipient": "shelter", "due": 150}},
        ],
        "next": 9,
    }  # fmt: skip


ROUTES = (
    ("GET", r"/v1/cases", "cases"),
    ("GET", r"/v1/cases/[^/]+", "case"),
    ("POST", r"/v1/cases/[^/]+/split", "split"),
    ("POST", r"/v1/cases/[^/]+/merge", "merge"),
    ("POST", r"/v1/cases/[^/]+/unmerge", "unmerge"),
    ("GET", r"/v1/referrals", "referrals"),
    ("GET", r"/v1/events", "events"),
)


class CaseHub(Scripted):
    """The case routes answer what ``answers`` holds (404 when nothing); ``asked`` records
    (route, path and query, body) of each case request that reached it."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: dict[str, tuple[int, Any]] = {}
        self.asked: list[tuple[str, str, Any]] = []
        self.raw: bytes | None = None  # an answer that is not a JSON document at all

    def __call__(self, request: Request) -> Response:
        path_qs = "/v1" + request.url.split("/v1", 1)[1]
        for method, pattern, name in ROUTES:
            if request.method == method and re.fullmatch(pattern, path_qs.split("?")[0]):
                body = None if request.body is None else json.loads(request.body)
                self.asked.append((name, path_qs, body))
                self.seen.append(request)
                if self.raw is not None:
                    return Response(200, {"content-type": "application/json"}, self.raw)
                status, answer = self.answers.get(name, (404, None))
                return problem(404, "not-found") if status == 404 else ok(answer, status)
        return super().__call__(request)


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def fake() -> CaseHub:
    return CaseHub()


@pytest.fixture
def server(fake: CaseHub) -> MockTransport:
    return fake.transport()


def client(server: MockTransport, key: Ed25519PrivateKey, **kwargs: Any) -> HubClient:
    kwargs.setdefault("purpose", Purpose("case-coordination"))
    return HubClient(
        "https://hub.example",
        network=NETWORK,
        org=ORG,
        signing_key=key,
        user="coordinator-1",
        sleep=Sleeps(),
        transport=server,
        **kwargs,
    )


# -- good answers ----------------------------------------------------------------------


async def test_cases_are_parsed_and_filters_travel_in_the_query(
    server: MockTransport, fake: CaseHub, key: Ed25519PrivateKey
) -> None:
    fake.answers["cases"] = (200, {"cases": [summary()], "total": 7})
    async with client(server, key) as hub:
        page = await hub.cases(state="referred", type="school", sort="open", limit=10, offset=2)
    [found] = page.cases
    assert page.total == 7 and found.case == REF and found.signals == 3
    assert [o.org_type for o in found.orgs] == ["police", "ggd"]
    assert dict(found.referrals) == {"delivered": 1, "closed": 1} and found.open_referrals == 1
    assert fake.asked == [
        ("cases", "/v1/cases?state=referred&type=school&sort=open&limit=10&offset=2", None)
    ]
    [request] = fake.calls("/v1/cases")
    assert request.headers["Schakel-Purpose"] == "case-coordination"
    assert "Schakel-Purpose-Text" not in request.headers


async def test_one_case_with_its_timeline_and_referrals(
    server: MockTransport, fake: CaseHub, key: Ed25519PrivateKey
) -> None:
    fake.answers["case"] = (200, case())
    async with client(server, key) as hub:
        detail = await hub.case(REF)
    assert detail.merged_from is None and detail.truncated is False
    assert detail.referrals[0].steps == {"sent": 400, "delivered": 450}
    types = [(e.type, e.code, e.referral) for e in detail.timeline]
    assert types[3] == ("status", "accepted", MSG_ID) and types[2][0] == "delivered"
    assert detail.timeline[4].other == OTHER and detail.timeline[4].messages == (MSG_2,)


async def test_a_merged_reference_answers_with_the_live_case(
    server: MockTransport, fake: CaseHub, key: Ed25519PrivateKey
) -> None:
    fake.answers["case"] = (200, case() | {"merged_from": OTHER})
    async with client(server, key) as hub:
        detail = await hub.case(OTHER)
        assert detail.summary.case == REF and detail.merged_from == OTHER
        fake.answers["case"] = (200, case())  # answered for another case than asked
        with pytest.raises(MalformedAnswer, match="not the case asked for"):
            await hub.case(OTHER)


async def test_split_merge_unmerge_send_and_check_their_answers(
    server: MockTransport, fake: CaseHub, key: Ed25519PrivateKey
) -> None:
    fake.answers["split"] = (201, {"case": OTHER, "from": REF})
    fake.answers["merge"] = (200, {"case": REF, "absorbed": OTHER})
    fake.answers["unmerge"] = (200, {"case": OTHER, "from": REF})
    async with client(server, key) as hub:
        assert await hub.split(REF, [MSG_2, MSG_ID, MSG_2]) == (OTHER, REF)
        assert await hub.merge(REF, OTHER) == (REF, OTHER)
        assert await hub.unmerge(REF, OTHER) == (OTHER, REF)
        fake.answers["merge"] = (200, {"case": REF, "absorbed": REF})
        with pytest.raises(MalformedAnswer, match="not the merge asked for"):
            await hub.merge(REF, OTHER)
        fake.answers["split"] = (201, {"case": REF, "from": REF})
        with pytest.raises(MalformedAnswer, match="not the case split"):
            await hub.split(REF, [MSG_2])
    assert fake.asked[0] == ("split", f"/v1/cases/{REF}/split", {"messages": [MSG_ID, MSG_2]})
    assert fake.asked[1][2] == {"case": OTHER} and fake.asked[2][2] == {"case": OTHER}


async def test_open_referrals_and_events(
    server: MockTransport, fake: CaseHub, key: Ed25519PrivateKey
) -> None:
    fake.answers["referrals"] = (200, {"referrals": [open_referral()]})
    fake.answers["events"] = (200, events())
    async with client(server, key) as hub:
        [found] = await hub.referrals(limit=5)
        page = await hub.events(after=3, limit=20)
    assert found.holder == "shelter" and found.overdue and found.due == 1000
    assert found.referral.step == "delivered"
    assert [e.id for e in page.events] == [4, 9] and page.next == 9
    assert page.events[0].detail["merged"] == (OTHER,) and page.events[1].detail["due"] == 150
    assert [a[1] for a in fake.asked] == ["/v1/referrals?limit=5", "/v1/events?after=3&limit=20"]


# -- refusals --------------------------------------------------------------------------


async def test_404_means_no_case_or_not_a_coordinator(
    server: MockTransport, fake: CaseHub, key: Ed25519PrivateKey
) -> None:
    async with client(server, key) as hub:
        for call in (
            hub.case(REF),
            hub.cases(),
            hub.referrals(),
            hub.split(REF, [MSG_ID]),
            hub.merge(REF, OTHER),
            hub.unmerge(REF, OTHER),
        ):
            with pytest.raises(CaseNotFound, match="no such case, or this organisation is not"):
                await call
    caught = CaseNotFound("case")
    assert isinstance(caught, HubProblem) and caught.status == 404


async def test_other_problems_pass_through(
    server: MockTransport, fake: CaseHub, key: Ed25519PrivateKey
) -> None:
    fake.answers["merge"] = (409, {"type": "urn:schakel:problem:conflict"})
    async with client(server, key) as hub:
        with pytest.raises(HubProblem) as caught:
            await hub.merge(REF, OTHER)
    assert caught.value.status == 409 and not isinstance(caught.value, CaseNotFound)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda hub: hub.case("../etc"), "case reference"),
        (lambda hub: hub.case("ABCDEFGHIJKLMNOP"), "case reference"),
        (lambda hub: hub.split(REF, []), "1 to 198"),
        (lambda hub: hub.split(REF, ["x"]), "message id"),
        (lambda hub: hub.merge(REF, "nope"), "case reference"),
        (lambda hub: hub.cases(state="lost"), "state must be one of"),
        (lambda hub: hub.cases(type="bank"), "type must be one of"),
        (lambda hub: hub.cases(sort="name"), "sort must be one of"),
        (lambda hub: hub.cases(limit=0), "limit must be from 1 to 200"),
        (lambda hub: hub.cases(limit=201), "limit must be from 1 to 200"),
        (lambda hub: hub.cases(since=-1), "since must be an integer"),
        (lambda hub: hub.cases(since="1; drop"), "since must be an integer"),
        (lambda hub: hub.cases(person="x"), "unknown case filter"),
        (lambda hub: hub.referrals(limit=0), "limit must be"),
        (lambda hub: hub.events(after=-1), "after must be"),
        (lambda hub: hub.events(limit=500), "limit must be"),
    ],
)
async def test_bad_arguments_never_reach_the_hub(
    server: MockTransport, fake: CaseHub, key: Ed25519PrivateKey, call: Any, match: str
) -> None:
    async with client(server, key) as hub:
        with pytest.raises(ClientError, match=match):
            await call(hub)
    assert fake.asked == []


async def test_case_routes_need_a_purpose(
    server: MockTransport, fake: CaseHub, key: Ed25519PrivateKey
) -> None:
    async with client(server, key, purpose=None) as hub:
        for call in (hub.cases(), hub.case(REF), hub.referrals(), hub.events()):
            with pytest.raises(ClientError, match="purpose of use"):
                await call
    assert fake.asked == []


# -- malformed answers -------------------------------------------------------------------


def _set(path: tuple[Any, ...], value: Any) -> Callable[[Any], None]:
    def change(doc: Any) -> None:
        for step in path[:-1]:
            doc = doc[step]
        doc[path[-1]] = value

    return change


def _drop(path: tuple[Any, ...]) -> Callable[[Any], None]:
    def change(doc: Any) -> None:
        for step in path[:-1]:
            doc = doc[step]
        del doc[path[-1]]

    return change


CASE_LIES = [
    (_set(("state",), SECRET), "state"),
    (_set(("case",), SECRET), "case"),
    (_set(("signals",), 4), "signals"),
    (_set(("signals",), True), "signals"),
    (_set(("first_signal",), 50), "first_signal"),
    (_set(("last_signal",), -1), "last_signal"),
    (_set(("orgs", 0, "org_type"), SECRET), "orgs[0].org_type"),
    (_set(("orgs", 0, "org"), SECRET), "orgs[0].org"),
    (_set(("orgs", 0, "first"), 400), "orgs[0].first"),
    (_set(("orgs", 1, "count"), 0), "orgs[1].count"),
    (_set(("orgs", 0, "name"), SECRET), "orgs[0].(a field)"),
    (_set(("referrals", SECRET.lower()), 1), "referrals.(a field)"),
    (_set(("referrals", "sent"), -1), "referrals.sent"),
    (_set(("open_referrals",), 2), "open_referrals"),
    (_drop(("truncated",)), "truncated"),
    (_set(("truncated",), "no"), "truncated"),
    (_set(("person",), SECRET), "(a field)"),
    (_set(("referral_list", 0, "step"), "lost"), "referral_list[0].step"),
    (_set(("referral_list", 0, "step_at"), 451), "referral_list[0].steps"),
    (_set(("referral_list", 0, "case"), OTHER), "referral_list"),
    (_set(("referral_list", 0, "recipient"), "coordinator"), "referral_list[0].recipient"),
    (_set(("referral_list", 0, "replaced_by"), SECRET), "referral_list[0].replaced_by"),
    (_set(("timeline", 0, "type"), "note"), "timeline[0].type"),
    (_set(("timeline", 0, "at"), 10**12), "timeline[0].at"),
    (_set(("timeline", 0, "message"), SECRET), "timeline[0].message"),
    (_set(("timeline", 0, "recipients"), [SECRET]), "timeline[0].recipients[0]"),
    (_set(("timeline", 0, "recipients"), ["ggd"] * 17), "timeline[0].recipients"),
    (_set(("timeline", 0, "code"), "accepted"), "timeline[0].(a field)"),
    (_drop(("timeline", 3, "referral")), "timeline[3].referral"),
    (_set(("timeline", 3, "code"), "delivered"), "timeline[3].code"),
    (_set(("timeline", 4, "automatic"), 0), "timeline[4].automatic"),
    (_set(("timeline", 4, "messages"), [SECRET]), "timeline[4].messages[0]"),
    (_set(("timeline", 1, "at"), 50), "timeline"),
    (_set(("timeline",), {}), "timeline"),
    (_set(("merged_from",), SECRET), "merged_from"),
]


@pytest.mark.parametrize("lie, where", CASE_LIES)
async def test_a_malformed_case_is_refused_naming_the_field_not_the_value(
    server: MockTransport, fake: CaseHub, key: Ed25519PrivateKey, lie: Any, where: str
) -> None:
    body = case()
    lie(body)
    fake.answers["case"] = (200, body)
    async with client(server, key) as hub:
        with pytest.raises(MalformedAnswer) as caught:
            await hub.case(REF)
    assert caught.value.where == where, str(caught.value)
    assert SECRET not in str(caught.value) and SECRET.lower() not in str(caught.value)
    assert "did not verify" in str(caught.value)


@pytest.mark.parametrize(
    "route, body, where",
    [
        ("cases", [], "$"),
        ("cases", {"cases": [summary()]}, "total"),
        ("cases", {"cases": [summary(), summary()], "total": 2}, "cases"),
        ("cases", {"cases": [summary()] * 51, "total": 51}, "cases"),
        ("cases", {"cases": [summary()], "total": 0}, "total"),
        ("cases", {"cases": [summary() | {"referral_list": []}], "total": 1}, "cases[0].(a field)"),
        ("referrals", {"referrals": [open_referral(holder="coordinator")]}, "referrals[0].holder"),
        ("referrals", {"referrals": [open_referral(due=None)]}, "referrals[0].overdue"),
        (
            "referrals",
            {
                "referrals": [
                    open_referral(step="closed", step_at=400, steps={"sent": 400, "closed": 400})
                ]
            },
            "referrals[0].step",
        ),
        ("referrals", {"referrals": [open_referral(age="old")]}, "referrals[0].age"),
        ("referrals", {"referrals": [referral()]}, "referrals[0].age"),
        ("events", events() | {"next": 4}, "next"),
        ("events", {"events": events()["events"][::-1], "next": 4}, "events"),
        ("events", {"events": [], "next": 0}, "next"),
    ],
)
async def test_malformed_lists_are_refused(
    server: MockTransport, fake: CaseHub, key: Ed25519PrivateKey, route: str, body: Any, where: str
) -> None:
    fake.answers[route] = (200, body)
    async with client(server, key) as hub:
        with pytest.raises(MalformedAnswer) as caught:
            if route == "cases":
                await hub.cases()
            elif route == "referrals":
                await hub.referrals()
            else:
                await hub.events(after=3)
    assert caught.value.where == where, str(caught.value)


@pytest.mark.parametrize(
    "index, change, where",
    [
        (0, {"kind": "gossip"}, "events[0].kind"),
        (0, {"id": 0}, "events[0].id"),
        (0, {"case": SECRET}, "events[0].case"),
        (0, {"person": SECRET}, "events[0].(a field)"),
        (0, {"detail": {"kind": "signal"}}, "events[0].detail.kept_apart"),
        (0, {"step": "lost"}, "events[0].step"),
        (1, {"detail": {"referrer": "coordinator", "recipient": "shelter", "due": SECRET}},
         "events[1].detail.due"),
        (1, {"detail": {"referrer": "coordinator", "recipient": "shelter", "due": 1,
                        "text": SECRET}}, "events[1].detail.(a field)"),
    ],
)  # fmt: skip
async def test_malformed_events_are_refused(
    server: MockTransport,
    fake: CaseHub,
    key: Ed25519PrivateKey,
    index: int,
    change: dict[str, Any],
    where: str,
) -> None:
    body = copy.deepcopy(events())
    body["events"][index] |= change
    fake.answers["events"] = (200, body)
    async with client(server, key) as hub:
        with pytest.raises(MalformedAnswer) as caught:
            await hub.events(after=3)
    assert caught.value.where == where and SECRET not in str(caught.value)


@pytest.mark.parametrize("text", ['{"cases": [], "total": 1.5}', '{"total": 1, "total": 1}'])
async def test_an_answer_that_is_not_strict_json_is_refused(
    server: MockTransport, fake: CaseHub, key: Ed25519PrivateKey, text: str
) -> None:
    fake.raw = text.encode()
    async with client(server, key) as hub:
        with pytest.raises(ClientError, match="malformed JSON"):
            await hub.cases()


# -- WebSocket frames -------------------------------------------------------------------


async def test_event_frames_come_apart_from_message_notices(
    server: MockTransport, fake: CaseHub, key: Ed25519PrivateKey
) -> None:
    fake.frames = [
        '{"type": "ping"}',
        json.dumps({"type": "event", "cursor": 3, "kind": "match"}),
        json.dumps({"type": "message", "cursor": 7, "id": MSG_ID}),
        json.dumps({"type": "event", "cursor": 4, "kind": "gossip"}),  # unknown kind: skipped
        json.dumps({"type": "event", "cursor": "4", "kind": "referral"}),  # bad cursor
        json.dumps({"type": "event", "cursor": 5, "kind": "escalation"}),
    ]
    async with client(server, key) as hub:
        live = [notice async for notice in hub.live()]
        messages_only = [notice async for notice in hub.notifications()]
    assert live == [EventNotice(3, "match"), Notice(7, MSG_ID), EventNotice(5, "escalation")]  # type: ignore[arg-type]
    assert messages_only == [Notice(7, MSG_ID)]  # type: ignore[arg-type]
