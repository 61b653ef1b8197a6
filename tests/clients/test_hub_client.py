"""HubClient: the conversation with the real hub, and what it does when answers go wrong.

The conversation (login, tokens, inbox, who and why on every request, WebSocket
notices) runs against ``hub.app`` (``conftest.hub``). Faults a real hub does not make
on demand (a dropped connection, 503s, oversized or malformed answers) come from a
:class:`~clients.transport.MockTransport` whose answers each test scripts
(:class:`Scripted`): it knows no hub logic, so it can not drift from the hub.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from client_harness import NETWORK, USER, Hub
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clients.errors import ClientError, HubProblem, HubUnreachable, VerificationFailed
from clients.hub_client import HubClient, Notice, Purpose
from clients.transport import MockTransport, Request, Response, TransportFailed

ORG = "politie"
MSG_ID = "AAAAAAAAAAAAAAAAAAAAAA"


def problem(status: int, slug: str, headers: dict[str, str] | None = None) -> Response:
    body = {"type": f"urn:schakel:problem:{slug}", "title": slug, "status": status, "detail": "d"}
    return Response(status, headers or {}, json.dumps(body).encode())


def ok(body: Any, status: int = 200) -> Response:
    return Response(status, {"content-type": "application/json"}, json.dumps(body).encode())


class Scripted:
    """Answers what a test scripted, by method and path (query left off); a login that
    always succeeds (the real one is tested against the real hub); records what came."""

    def __init__(self, network: str = NETWORK) -> None:
        self.routes: dict[tuple[str, str], Callable[[Request], Response]] = {
            ("GET", "/v1/hub"): lambda rq: ok(
                {
                    "network": network,
                    "audience": "aud",
                    "issuer": "iss",
                    "certificate": None,
                    "limits": {},
                }
            ),
            ("POST", "/v1/auth/challenge"): lambda rq: ok({"challenge": "Y2hhbGxlbmdl"}),
            ("POST", "/v1/auth/token"): lambda rq: ok({"access_token": "t", "expires_in": 900}),
        }
        self.frames: list[str] = []
        self.seen: list[Request] = []

    def route(self, method: str, path: str, answer: Callable[[Request], Response]) -> None:
        self.routes[(method, path)] = answer

    def __call__(self, request: Request) -> Response:
        self.seen.append(request)
        path = "/v1" + request.url.split("/v1", 1)[1].split("?")[0]
        answer = self.routes.get((request.method, path))
        if answer is None:
            return Response(404, {"content-type": "text/plain"}, b"404: Not Found")
        return answer(request)

    async def websocket(self, request: Request) -> AsyncIterator[str]:
        for frame in self.frames:
            yield frame

    def transport(self) -> MockTransport:
        return MockTransport(self, websocket=self.websocket)

    def calls(self, path: str) -> list[Request]:
        return [r for r in self.seen if r.url.split("?")[0].endswith(path)]


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def scripted_client(script: Scripted, **kwargs: Any) -> HubClient:
    kwargs.setdefault("user", "tester")
    kwargs.setdefault("purpose", Purpose("signal-intake"))
    kwargs.setdefault("sleep", Sleeps())
    return HubClient("https://hub.example", network=NETWORK, org=ORG,
                     signing_key=Ed25519PrivateKey.generate(), transport=script.transport(),
                     **kwargs)  # fmt: skip


def token_requests(hub: Hub, org: str) -> int:
    return sum(r.url.endswith("/v1/auth/token") for r in hub.taps[org].requests)


# -- the conversation, with the real hub ----------------------------------------------


async def test_token_is_cached_then_renewed_60s_before_expiry(hub: Hub) -> None:
    police = await hub.join(ORG)
    start = token_requests(hub, ORG)
    await police.hub.list_orgs()
    await police.hub.list_orgs()
    assert token_requests(hub, ORG) == start  # the token of joining is still good
    hub.clock.advance(900 - 61)
    await police.hub.list_orgs()
    assert token_requests(hub, ORG) == start
    hub.clock.advance(2)
    await police.hub.list_orgs()
    assert token_requests(hub, ORG) == start + 1


async def test_a_401_refreshes_the_token_once(hub: Hub) -> None:
    police = await hub.join(ORG)
    start = token_requests(hub, ORG)
    forgotten: list[Request] = []

    def forget_once(request: Request, response: Response) -> Response:
        if request.url.endswith("/v1/directory/orgs") and not forgotten:
            forgotten.append(request)  # the hub restarted with another token key
            return problem(401, "unauthorized")
        return response

    hub.taps[ORG].answer = forget_once
    assert [o["org"] for o in await police.hub.list_orgs()] == [ORG]
    assert token_requests(hub, ORG) == start + 1
    hub.taps[ORG].answer = lambda rq, rs: problem(401, "unauthorized") if "orgs" in rq.url else rs
    with pytest.raises(HubProblem) as caught:  # refused again: once is enough
        await police.hub.list_orgs()
    assert caught.value.status == 401 and token_requests(hub, ORG) == start + 2


async def test_a_wrong_key_gives_one_401_problem(hub: Hub) -> None:
    await hub.join(ORG)
    async with HubClient(hub.url, network=NETWORK, org=ORG, user=USER,
                         signing_key=Ed25519PrivateKey.generate()) as stranger:  # fmt: skip
        with pytest.raises(HubProblem) as caught:
            await stranger.list_orgs()
    assert caught.value.status == 401


async def test_who_and_why_travel_with_every_request(hub: Hub) -> None:
    police, ggd = await hub.join(ORG), await hub.join("ggd")
    text = 'Zorg voor \u00e9\u00e9n persoon; 50% = "ok"'
    ggd.hub.purpose = Purpose("case-coordination", text)
    page = await ggd.hub.inbox(after=0, limit=10)
    await ggd.hub.inbox(purpose=Purpose("referral"))
    assert page.messages == () and page.next == 0
    rows = hub.rows(
        'SELECT o."user", a.purpose, o.purpose_text FROM audit_log a JOIN audit_openings o '
        'ON o."index" = a."index" WHERE a.org = ? AND a.action = ? ORDER BY a."index"',
        "ggd", "list",
    )  # fmt: skip
    assert rows[-2:] == [(USER, "case-coordination", text), (USER, "referral", None)]
    del police


async def test_acting_for_names_the_person_in_this_task_only(hub: Hub) -> None:
    desk = await hub.join("ggd")
    desk.hub._user = "desk"
    desk.hub.purpose = Purpose("signal-intake")

    async def as_person(person: str) -> None:
        with desk.hub.acting_for(person, Purpose("referral", "casus 7")):
            await asyncio.sleep(0)  # another task runs in between
            await desk.hub.inbox()

    await asyncio.gather(as_person("a.jansen"), desk.hub.inbox(), as_person("b.visser"))
    await desk.hub.inbox()  # after the block: the service again
    with pytest.raises(ClientError, match="user id"), desk.hub.acting_for("with space", None):
        pass
    rows = hub.rows(
        'SELECT o."user", a.purpose, o.purpose_text FROM audit_log a JOIN audit_openings o '
        'ON o."index" = a."index" WHERE a.org = ? AND a.action = ? ORDER BY a."index"',
        "ggd", "list",
    )  # fmt: skip
    assert sorted(rows[-4:]) == [
        ("a.jansen", "referral", "casus 7"),
        ("b.visser", "referral", "casus 7"),
        ("desk", "signal-intake", None),
        ("desk", "signal-intake", None),
    ]
    assert rows[-1] == ("desk", "signal-intake", None)


async def test_notifications_announce_what_arrives(hub: Hub) -> None:
    police, ggd = await hub.join(ORG), await hub.join("ggd")
    payload = {"schema": "schakel.signal/1", "person": {"bsn": "111222333"},
               "exploitation": "labour", "urgency": "high", "consent_to_share": True}  # fmt: skip
    seen: list[Notice | None] = []
    async for notice in ggd.hub.notifications(opened=True):
        seen.append(notice)
        if notice is None:
            sent = await police.send_signal(payload, ["ggd"])
        else:
            break
    assert seen[0] is None and seen[1] == Notice(1, sent.id)


async def test_anonymous_client_can_not_authenticate(hub: Hub) -> None:
    async with HubClient(hub.url, network=NETWORK) as anonymous:
        assert await anonymous.get_crl() is not None
        with pytest.raises(ClientError, match="signing key"):
            await anonymous.list_orgs()


async def test_nothing_leaves_without_a_user_or_without_a_purpose_for_case_data(
    hub: Hub,
) -> None:
    police = await hub.join(ORG)
    before = len(hub.taps[ORG].requests)
    police.hub.purpose = None
    for call in (police.hub.inbox(), police.hub.get_message(MSG_ID), police.hub.audit_entries()):
        with pytest.raises(ClientError, match="purpose of use"):
            await call
    police.hub._user = None
    with pytest.raises(ClientError, match="SCHAKEL_USER"):
        await police.hub.list_orgs()
    assert len(hub.taps[ORG].requests) == before  # nothing reached the hub
    assert await police.hub.get_crl() is not None  # anonymous routes still work


# -- when answers go wrong (scripted) -------------------------------------------------


async def test_send_retries_the_same_envelope_after_a_dropped_connection() -> None:
    script, posted = Scripted(), []

    def post(request: Request) -> Response:
        posted.append(request.body)
        if len(posted) == 1:
            raise TransportFailed("ServerDisconnectedError", retry=True)  # after committing
        return ok({"id": MSG_ID, "accepted": 1234}, status=200)

    script.route("POST", "/v1/messages", post)
    sleeps = Sleeps()

    class Envelope:  # just what HubClient.send uses
        class header:
            id = MSG_ID

        def to_wire(self) -> dict[str, Any]:
            return {"header": {"id": MSG_ID}, "body": "b"}

    async with scripted_client(script, sleep=sleeps) as client:
        assert await client.send(Envelope()) == (MSG_ID, 1234, False)  # type: ignore[arg-type]
    assert len(posted) == 2 and posted[0] == posted[1]
    assert sleeps.delays == [0.5]


async def test_retries_on_5xx_with_backoff_and_honours_retry_after() -> None:
    script, failures = Scripted(), []
    script.route("GET", "/v1/directory/orgs", lambda rq: failures.pop(0) if failures
                 else ok({"orgs": []}))  # fmt: skip
    sleeps = Sleeps()
    async with scripted_client(script, sleep=sleeps) as client:
        failures[:] = [problem(503, "unavailable"), Response(502, {}, b"<html>proxy</html>")]
        await client.list_orgs()
        assert sleeps.delays == [0.5, 1.0]
        failures[:] = [problem(429, "slow-down", {"retry-after": "7"})]
        await client.list_orgs()
        assert sleeps.delays[-1] == 7.0
        failures[:] = [problem(429, "slow-down", {"retry-after": "100000"})]
        await client.list_orgs()
        assert sleeps.delays[-1] == 30.0


async def test_gives_up_after_three_attempts() -> None:
    script = Scripted()
    script.route("GET", "/v1/directory/orgs", lambda rq: problem(503, "unavailable"))
    sleeps = Sleeps()
    async with scripted_client(script, sleep=sleeps) as client:
        with pytest.raises(HubProblem) as caught:
            await client.list_orgs()
    assert caught.value.status == 503 and caught.value.slug == "unavailable"
    assert len(sleeps.delays) == 2 and len(script.calls("/v1/directory/orgs")) == 3


async def test_an_unreachable_hub() -> None:
    sleeps = Sleeps()
    key = Ed25519PrivateKey.generate()
    async with HubClient(
        "http://127.0.0.1:9", network=NETWORK, org=ORG, signing_key=key, sleep=sleeps
    ) as client:
        with pytest.raises(HubUnreachable, match="unreachable"):
            await client.get_crl()
    assert sleeps.delays == [0.5, 1.0]


async def test_an_answer_that_is_no_problem_document_is_still_a_problem() -> None:
    async with scripted_client(Scripted()) as client:
        with pytest.raises(HubProblem) as caught:
            await client.get_message(MSG_ID)  # no such route here: a plain-text 404
    assert caught.value.status == 404 and caught.value.type == "urn:schakel:problem:unknown"


async def test_responses_are_size_bounded() -> None:
    script = Scripted()
    script.route("GET", "/v1/directory/crl", lambda rq: ok({"pad": "x" * 10_000}))
    async with scripted_client(script, max_response_bytes=5000) as client:
        with pytest.raises(ClientError, match="too large"):
            await client.get_crl()
    assert len(script.calls("/v1/directory/crl")) == 1  # not retried


async def test_a_hub_of_another_network_is_refused_before_logging_in() -> None:
    script = Scripted(network="other-net")
    async with scripted_client(script) as client:
        with pytest.raises(VerificationFailed, match="another network"):
            await client.hub_info()
        with pytest.raises(VerificationFailed):
            await client.list_orgs()
    assert script.calls("/v1/auth/token") == []


async def test_notifications_skip_frames_that_are_not_well_formed() -> None:
    script = Scripted()
    script.frames = [
        '{"type": "ping"}',
        json.dumps({"type": "message", "cursor": 7, "id": MSG_ID}),
        '{"type": "message", "cursor": "x", "id": "bad"}',
        "not json",
        json.dumps({"type": "message", "cursor": 8, "id": MSG_ID}),
    ]
    async with scripted_client(script) as client:
        notices = [notice async for notice in client.notifications()]
    assert notices == [Notice(7, MSG_ID), Notice(8, MSG_ID)]  # type: ignore[arg-type]


async def test_bad_arguments_are_refused_before_sending() -> None:
    script = Scripted()
    with pytest.raises(ClientError, match="user id"):
        HubClient("http://127.0.0.1", network=NETWORK, user="has space")
    async with scripted_client(script) as client:
        with pytest.raises(ClientError, match="message id"):
            await client.ack("../../etc")
        with pytest.raises(ClientError, match="organisation id"):
            await client.get_org("../admin")
    with pytest.raises(ClientError, match="not open"):
        await scripted_client(script).get_crl()
    assert script.seen == []


@pytest.mark.parametrize(
    "url",
    ["http://hub.example", "http://10.0.0.5:8443", "ftp://hub.example", "https://", "hub.example"],
)
def test_tokens_never_travel_in_clear_beyond_this_machine(url: str) -> None:
    with pytest.raises(ClientError, match="use https://"):
        HubClient(url, network=NETWORK)


@pytest.mark.parametrize(
    "url", ["https://hub.example/", "http://127.0.0.1:8443", "http://localhost:1", "http://[::1]:2"]
)
def test_https_or_loopback_is_accepted(url: str) -> None:
    assert HubClient(url, network=NETWORK).base_url == url.rstrip("/")


def test_repr_holds_no_key() -> None:
    key = Ed25519PrivateKey.generate()
    text = repr(HubClient("https://hub.example", network=NETWORK, org=ORG, signing_key=key))
    assert "Ed25519" not in text and "politie" in text
    assert asyncio.iscoroutinefunction(HubClient.send)
    assert "Bearer" not in repr(Request("GET", "https://h/v1/x", {"Authorization": "Bearer t"}))


@pytest.mark.parametrize(
    "code, text, match",
    [
        ("curiosity", None, "purpose must be one of"),
        ("audit", "", "purpose text"),
        ("audit", "x" * 201, "purpose text"),
        ("audit", "line\nbreak", "purpose text"),
        ("audit", "bidi \u202e mark", "purpose text"),
        ("audit", "sep \u2028", "purpose text"),
    ],
)
def test_bad_purposes_are_refused(code: str, text: str | None, match: str) -> None:
    with pytest.raises(ClientError, match=match) as caught:
        Purpose(code, text)
    assert text is None or text not in str(caught.value) or text == ""
