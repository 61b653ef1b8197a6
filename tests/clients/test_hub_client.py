"""HubClient against a small fake hub that follows docs/protocol.md."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clients.errors import ClientError, HubProblem, HubUnreachable, VerificationFailed
from clients.hub_client import HubClient, Notice, Purpose
from protocol.encoding import b64d, b64e, frame

NETWORK = "test-net"
ORG = "politie"
AUDIENCE = "urn:schakel:hub:test"
MSG_ID = "AAAAAAAAAAAAAAAAAAAAAA"


def problem(status: int, slug: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"type": f"urn:schakel:problem:{slug}", "title": slug, "status": status, "detail": "d"}
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type="application/problem+json",
        headers=headers,
    )


@dataclass
class FakeHub:
    """Records what it was asked; failure knobs set by each test."""

    public_key: Any
    tokens: set[str] = field(default_factory=set)
    challenges: set[bytes] = field(default_factory=set)
    token_requests: int = 0
    posted: list[bytes] = field(default_factory=list)
    users: list[str | None] = field(default_factory=list)
    purposes: list[tuple[str | None, str | None]] = field(default_factory=list)
    drop_posts: int = 0
    fail_statuses: list[int] = field(default_factory=list)
    retry_after: str | None = None
    stored: dict[str, bytes] = field(default_factory=dict)
    network: str = NETWORK

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/hub", self.hub)
        app.router.add_post("/v1/auth/challenge", self.challenge)
        app.router.add_post("/v1/auth/token", self.token)
        app.router.add_get("/v1/directory/orgs", self.orgs)
        app.router.add_get("/v1/directory/crl", self.crl)
        app.router.add_post("/v1/messages", self.post_message)
        app.router.add_get("/v1/inbox", self.inbox)
        app.router.add_post("/v1/messages/{id}/ack", self.ack)
        app.router.add_get("/v1/big", self.big)
        app.router.add_get("/v1/ws", self.ws)
        return app

    async def hub(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "network": self.network,
                "audience": AUDIENCE,
                "issuer": "hub",
                "certificate": None,
                "limits": {"max_body_bytes": 524288, "max_inbox_limit": 200},
            }
        )

    async def challenge(self, request: web.Request) -> web.Response:
        challenge = secrets.token_bytes(32)
        self.challenges.add(challenge)
        return web.json_response({"challenge": b64e(challenge), "expires": 60})

    async def token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        body = await request.json()
        challenge = b64d(body["challenge"])
        if challenge not in self.challenges:
            return problem(401, "unauthorized")
        self.challenges.discard(challenge)
        signed = frame(
            "schakel/auth/v1", NETWORK.encode(), body["org"].encode(), challenge, AUDIENCE.encode()
        )
        try:
            self.public_key.verify(b64d(body["signature"]), signed)
        except InvalidSignature:
            return problem(401, "unauthorized")
        token = secrets.token_urlsafe(16)
        self.tokens.add(token)
        return web.json_response({"access_token": token, "token_type": "Bearer", "expires_in": 900})

    def authorised(self, request: web.Request) -> bool:
        self.users.append(request.headers.get("Schakel-User"))
        self.purposes.append(
            (request.headers.get("Schakel-Purpose"), request.headers.get("Schakel-Purpose-Text"))
        )
        header = request.headers.get("Authorization", "")
        return header.startswith("Bearer ") and header[7:] in self.tokens

    async def orgs(self, request: web.Request) -> web.Response:
        if self.fail_statuses:
            status = self.fail_statuses.pop(0)
            headers = {"Retry-After": self.retry_after} if self.retry_after else None
            return problem(status, "unavailable", headers)
        if not self.authorised(request):
            return problem(401, "unauthorized")
        return web.json_response({"orgs": [{"org": "ggd", "roles": ["member"]}]})

    async def crl(self, request: web.Request) -> web.Response:
        return web.json_response({"crl": None})

    async def post_message(self, request: web.Request) -> web.StreamResponse:
        if not self.authorised(request):
            return problem(401, "unauthorized")
        data = await request.read()
        self.posted.append(data)
        envelope = json.loads(data)
        message_id = envelope["header"]["id"]
        created = message_id not in self.stored
        if created:
            self.stored[message_id] = data  # committed before the answer is lost
        elif self.stored[message_id] != data:
            return problem(409, "conflict")
        if self.drop_posts:
            self.drop_posts -= 1
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=201)
        return web.json_response(
            {"id": message_id, "accepted": 1234}, status=201 if created else 200
        )

    async def inbox(self, request: web.Request) -> web.Response:
        if not self.authorised(request):
            return problem(401, "unauthorized")
        after = int(request.query["after"])
        return web.json_response(
            {
                "messages": [{"cursor": after + 1, "envelope": {"x": 1}, "acknowledged": False}],
                "next": after + 1,
            }
        )

    async def ack(self, request: web.Request) -> web.Response:
        if not self.authorised(request):
            return problem(401, "unauthorized")
        return web.Response(status=204)

    async def big(self, request: web.Request) -> web.Response:
        return web.json_response({"pad": "x" * 10000})

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        if not self.authorised(request):
            raise web.HTTPUnauthorized()
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        await socket.send_str('{"type": "ping"}')
        await socket.send_str(json.dumps({"type": "message", "cursor": 7, "id": MSG_ID}))
        await socket.send_str('{"type": "message", "cursor": "x", "id": "bad"}')
        await socket.send_str(json.dumps({"type": "message", "cursor": 8, "id": MSG_ID}))
        await socket.close()
        return socket


@dataclass
class FakeEnvelope:
    """Just what HubClient.send uses: ``header.id`` and ``to_wire()``."""

    @dataclass
    class _Header:
        id: str

    header: _Header
    wire: dict[str, Any]

    def to_wire(self) -> dict[str, Any]:
        return self.wire


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def fake(key: Ed25519PrivateKey) -> FakeHub:
    return FakeHub(key.public_key())


@pytest.fixture
async def server(fake: FakeHub) -> AsyncIterator[TestServer]:
    async with TestServer(fake.app()) as srv:
        yield srv


def client(server: TestServer, key: Ed25519PrivateKey, **kwargs: Any) -> HubClient:
    kwargs.setdefault("user", "tester")
    kwargs.setdefault("purpose", Purpose("signal-intake"))
    kwargs.setdefault("clock", Clock())
    kwargs.setdefault("sleep", Sleeps())
    return HubClient(str(server.make_url("")), network=NETWORK, org=ORG, signing_key=key, **kwargs)


async def test_token_is_cached_then_renewed_60s_before_expiry(
    server: TestServer, fake: FakeHub, key: Ed25519PrivateKey
) -> None:
    clock = Clock()
    async with client(server, key, clock=clock) as hub:
        await hub.list_orgs()
        await hub.list_orgs()
        assert fake.token_requests == 1
        clock.now += 900 - 61
        await hub.list_orgs()
        assert fake.token_requests == 1
        clock.now += 2
        await hub.list_orgs()
        assert fake.token_requests == 2


async def test_a_401_refreshes_the_token_once(
    server: TestServer, fake: FakeHub, key: Ed25519PrivateKey
) -> None:
    async with client(server, key) as hub:
        await hub.list_orgs()
        fake.tokens.clear()  # the hub forgot (restart, key rotation): cached token now fails
        assert await hub.list_orgs() == [{"org": "ggd", "roles": ["member"]}]
        assert fake.token_requests == 2


async def test_a_wrong_key_gives_one_401_problem(server: TestServer, fake: FakeHub) -> None:
    async with client(server, Ed25519PrivateKey.generate()) as hub:
        with pytest.raises(HubProblem) as info:
            await hub.list_orgs()
    assert info.value.status == 401 and info.value.slug == "unauthorized"
    assert fake.token_requests == 1


async def test_send_retries_the_same_envelope_after_a_dropped_connection(
    server: TestServer, fake: FakeHub, key: Ed25519PrivateKey
) -> None:
    fake.drop_posts = 1
    sleeps = Sleeps()
    envelope = FakeEnvelope(FakeEnvelope._Header(MSG_ID), {"header": {"id": MSG_ID}, "body": "b"})
    async with client(server, key, sleep=sleeps) as hub:
        message_id, accepted, created = await hub.send(envelope)  # type: ignore[arg-type]
    assert (message_id, accepted, created) == (MSG_ID, 1234, False)
    assert len(fake.posted) == 2 and fake.posted[0] == fake.posted[1]
    assert sleeps.delays == [0.5]


async def test_retries_on_503_with_backoff_and_honours_retry_after(
    server: TestServer, fake: FakeHub, key: Ed25519PrivateKey
) -> None:
    sleeps = Sleeps()
    async with client(server, key, sleep=sleeps) as hub:
        fake.fail_statuses = [503, 502]
        await hub.list_orgs()
        assert sleeps.delays == [0.5, 1.0]
        fake.fail_statuses, fake.retry_after = [429], "7"
        await hub.list_orgs()
        assert sleeps.delays[-1] == 7.0
        fake.fail_statuses, fake.retry_after = [429], "100000"
        await hub.list_orgs()
        assert sleeps.delays[-1] == 30.0


async def test_gives_up_after_three_attempts(
    server: TestServer, fake: FakeHub, key: Ed25519PrivateKey
) -> None:
    fake.fail_statuses = [503, 503, 503, 503]
    sleeps = Sleeps()
    async with client(server, key, sleep=sleeps) as hub:
        with pytest.raises(HubProblem) as info:
            await hub.list_orgs()
    assert info.value.status == 503 and info.value.slug == "unavailable"
    assert len(sleeps.delays) == 2 and fake.fail_statuses == [503]


async def test_an_unreachable_hub(key: Ed25519PrivateKey) -> None:
    sleeps = Sleeps()
    async with HubClient(
        "http://127.0.0.1:9", network=NETWORK, org=ORG, signing_key=key, sleep=sleeps
    ) as hub:
        with pytest.raises(HubUnreachable, match="unreachable"):
            await hub.get_crl()
    assert sleeps.delays == [0.5, 1.0]


async def test_problem_documents_become_hub_problem(
    server: TestServer, key: Ed25519PrivateKey
) -> None:
    async with client(server, key) as hub:
        with pytest.raises(HubProblem) as info:
            await hub.get_message(MSG_ID)
    assert info.value.status == 404  # the fake has no such route: aiohttp's plain 404
    assert info.value.type == "urn:schakel:problem:unknown"


async def test_responses_are_size_bounded(server: TestServer, key: Ed25519PrivateKey) -> None:
    async with client(server, key, max_response_bytes=5000) as hub:
        with pytest.raises(ClientError, match="too large"):
            await hub._call("GET", "/v1/big", auth=False)


async def test_a_hub_of_another_network_is_refused(
    server: TestServer, fake: FakeHub, key: Ed25519PrivateKey
) -> None:
    fake.network = "other-net"
    async with client(server, key) as hub:
        with pytest.raises(VerificationFailed, match="another network"):
            await hub.hub_info()
        with pytest.raises(VerificationFailed):
            await hub.list_orgs()
    assert fake.token_requests == 0


async def test_inbox_ack_and_user_header(
    server: TestServer, fake: FakeHub, key: Ed25519PrivateKey
) -> None:
    async with client(server, key, user="caseworker-17") as hub:
        page = await hub.inbox(after=4, limit=10)
        await hub.ack(MSG_ID)
        assert await hub.get_crl() is None
    assert page.next == 5 and page.messages[0].cursor == 5
    assert page.messages[0].envelope == {"x": 1} and page.messages[0].acknowledged is False
    assert fake.users == ["caseworker-17", "caseworker-17"]


async def test_bad_arguments_are_refused_before_sending(
    server: TestServer, key: Ed25519PrivateKey
) -> None:
    with pytest.raises(ClientError, match="user id"):
        HubClient("http://x", network=NETWORK, user="has space")
    async with client(server, key) as hub:
        with pytest.raises(ClientError, match="message id"):
            await hub.ack("../../etc")
        with pytest.raises(ClientError, match="organisation id"):
            await hub.get_org("../admin")
    with pytest.raises(ClientError, match="not open"):
        await client(server, key).get_crl()


async def test_notifications_yield_well_formed_notices(
    server: TestServer, key: Ed25519PrivateKey
) -> None:
    async with client(server, key) as hub:
        notices = [notice async for notice in hub.notifications()]
    assert notices == [Notice(7, MSG_ID), Notice(8, MSG_ID)]  # type: ignore[arg-type]


async def test_anonymous_client_can_not_authenticate(server: TestServer) -> None:
    async with HubClient(str(server.make_url("")), network=NETWORK) as hub:
        assert await hub.get_crl() is None
        with pytest.raises(ClientError, match="signing key"):
            await hub.list_orgs()


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


def test_repr_holds_no_key(key: Ed25519PrivateKey) -> None:
    text = repr(HubClient("https://hub.example", network=NETWORK, org=ORG, signing_key=key))
    assert "Ed25519" not in text and "politie" in text
    assert asyncio.iscoroutinefunction(HubClient.send)


async def test_purpose_travels_percent_encoded_and_per_call_wins(
    server: TestServer, fake: FakeHub, key: Ed25519PrivateKey
) -> None:
    text = 'Zorg voor \u00e9\u00e9n persoon; 50% = "ok"'
    async with client(server, key, purpose=Purpose("case-coordination", text)) as hub:
        await hub.inbox()
        await hub.inbox(purpose=Purpose("referral"))
    encoded = "Zorg%20voor%20%C3%A9%C3%A9n%20persoon%3B%2050%25%20%3D%20%22ok%22"
    assert fake.purposes == [("case-coordination", encoded), ("referral", None)]


async def test_reading_case_data_without_a_purpose_is_refused_before_sending(
    server: TestServer, fake: FakeHub, key: Ed25519PrivateKey
) -> None:
    async with client(server, key, purpose=None) as hub:
        with pytest.raises(ClientError, match="purpose of use"):
            await hub.inbox()
        with pytest.raises(ClientError, match="purpose of use"):
            await hub.get_message(MSG_ID)
        with pytest.raises(ClientError, match="purpose of use"):
            await hub.audit_entries()
    assert fake.users == []  # nothing reached the hub


async def test_authenticated_requests_need_a_user(
    server: TestServer, fake: FakeHub, key: Ed25519PrivateKey
) -> None:
    async with client(server, key, user=None) as hub:
        with pytest.raises(ClientError, match="SCHAKEL_USER"):
            await hub.list_orgs()
        assert await hub.get_crl() is None  # anonymous routes still work


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
