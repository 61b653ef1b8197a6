"""Two hub replicas behind the shipped nginx config: a signal → referral exchange across them.

Replica A and replica B share one PostgreSQL database; nginx (``deploy/nginx/
schakel.conf`` with this test's ports and a throwaway certificate) sits in front.
Organisations work through nginx, and also straight at one replica, so that a
message accepted by one replica must be pushed to a WebSocket held by the other:
the coordinator listens on A, the shelter on B, and the coordinator once more
through nginx. Two signals about one person make one case; the coordinator refers
the person to the shelter, which receives the referral and accepts it. Then the edges
of the shipped config: TLS only for our name, no plain HTTP, bodies over 512 KiB
refused with a problem document, and no query string in nginx's access log.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from harness import SERVER_NAME, acting, listening

from clients import caseview

if TYPE_CHECKING:
    from conftest import Cluster

pytestmark = pytest.mark.postgres

TEXT = "CANARY-cluster-5b1e"
PERSON = {
    "given_names": "Ilse",
    "family_name": "Vermeulen",
    "date_of_birth": "1998-07-02",
    "phone": "06-9876 5432",
}
SAME_PERSON = {"given_names": "ILSE", "family_name": "VERMEULEN", "date_of_birth": "1998-07-02"}


def _signal(person: dict[str, str]) -> dict[str, Any]:
    return {
        "schema": "schakel.signal/1",
        "person": person,
        "exploitation": "labour",
        "indicators": ["control.documents_withheld"],
        "text": f"{TEXT} signal",
        "urgency": "high",
        "consent_to_share": True,
    }


REFERRAL = {
    "schema": "schakel.referral/1",
    "service": "shelter",
    "urgency": "urgent",
    "reason": f"{TEXT} needs a safe place tonight",
    "shared_with_person": f"{TEXT} told about the shelter",
    "consent": {
        "share_with_recipient": True,
        "comensha_registration": False,
        "recorded_on": "2025-01-10",
    },
    "exploitation": "labour",
}
ACCEPTED = {"schema": "schakel.status/1", "status": "accepted", "explanation": f"{TEXT} yes"}


async def test_signal_and_referral_through_nginx_push_across_replicas(cluster: Cluster) -> None:
    demo, tls = cluster.demo, cluster.ssl
    a, b = cluster.replicas
    proxy = cluster.nginx.base_url
    async with AsyncExitStack() as stack:
        coordinator_on_a = await stack.enter_async_context(listening(demo, "coordinator", a.url))
        shelter_on_b = await stack.enter_async_context(listening(demo, "shelter", b.url))
        coordinator_via_proxy = await stack.enter_async_context(
            listening(demo, "coordinator", proxy, ssl_context=tls)
        )

        # a signal accepted by replica B is pushed to the coordinator's socket on A
        async with acting(demo, "police", b.url) as police:
            first = (await police.send_signal(_signal(PERSON), ["coordinator"])).id
        await coordinator_on_a.wait_for(first)
        await coordinator_via_proxy.wait_for(first)

        # a second signal about the same person, through nginx, wherever it lands
        async with acting(demo, "ggd", proxy, ssl_context=tls) as ggd:
            second = (await ggd.send_signal(_signal(SAME_PERSON), ["coordinator"])).id
        await coordinator_on_a.wait_for(second)
        await coordinator_via_proxy.wait_for(second)

        async with acting(demo, "coordinator", proxy, ssl_context=tls) as coordinator:
            signals = await coordinator.receive()
            assert signals.rejected == ()
            assert sorted(m.id for m in signals.messages) == sorted([first, second])
            page = await coordinator.hub.cases()
        assert page.total == 1
        [case] = page.cases
        assert case.signals == 2

        # the referral, accepted by replica A, is pushed to the shelter's socket on B
        async with acting(demo, "coordinator", a.url) as coordinator:
            referral = (await coordinator.send_referral(REFERRAL, "shelter", case=case.case)).id
        await shelter_on_b.wait_for(referral)
        assert first not in shelter_on_b.ids  # a notice goes to the addressee only

        async with acting(demo, "shelter", proxy, ssl_context=tls) as shelter:
            got = await shelter.receive()
            assert [(m.id, m.kind) for m in got.messages] == [(referral, "referral")]
            assert got.messages[0].payload["reason"] == REFERRAL["reason"]
            accepted = (await shelter.send_status(referral, "accepted", ACCEPTED)).id
        await coordinator_on_a.wait_for(accepted)
        await coordinator_via_proxy.wait_for(accepted)

        async with acting(demo, "coordinator", proxy, ssl_context=tls) as coordinator:
            answers = await coordinator.receive()
            assert [(m.id, m.status) for m in answers.messages] == [(accepted, "accepted")]
            view = await coordinator.case_view(case.case)
        [tracked] = view.case.referrals
        assert tracked.id == referral and tracked.step == "accepted"
        assert view.contents[first].state == caseview.OPENED

    _assert_nginx_used_both_replicas(cluster)
    await _assert_nginx_refuses_other_names_plain_http_and_oversized_bodies(cluster)


def _assert_nginx_used_both_replicas(cluster: Cluster) -> None:
    lines = cluster.nginx.access_lines()
    a, b = cluster.replicas
    upstreams = {line["upstream"] for line in lines}
    assert f"127.0.0.1:{a.port}" in upstreams and f"127.0.0.1:{b.port}" in upstreams
    routes = {line["route"] for line in lines}
    assert {"/v1/messages", "/v1/inbox", "/v1/ws"} <= routes
    # the shipped log format keeps query strings (inbox cursors) out of the log
    assert "after=" not in cluster.nginx.access_log.read_text()


async def _assert_nginx_refuses_other_names_plain_http_and_oversized_bodies(
    cluster: Cluster,
) -> None:
    port = urlsplit(cluster.nginx.base_url).port
    assert port is not None
    # another server name (or none): the handshake is refused, no certificate shown
    unchecked = ssl.create_default_context()
    unchecked.check_hostname = False
    unchecked.verify_mode = ssl.CERT_NONE
    for name in ("hub.example.org", None):
        with pytest.raises(ssl.SSLError, match=r"UNRECOGNIZED_NAME|unrecognized name"):
            _handshake(port, unchecked, name)
    _handshake(port, unchecked, SERVER_NAME)
    _handshake(port, cluster.ssl, SERVER_NAME)

    async with aiohttp.ClientSession() as session:
        # nobody trusts the test CA by default: a client without it refuses the hub
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await session.get(cluster.nginx.base_url + "/healthz")
        async with session.get(cluster.nginx.base_url + "/healthz", ssl=cluster.ssl) as answer:
            assert answer.status == 200
            assert answer.headers["Strict-Transport-Security"] == "max-age=63072000"
            assert "nginx/" not in answer.headers.get("Server", "")
        too_large = b"x" * (512 * 1024 + 1)
        async with session.post(
            cluster.nginx.base_url + "/v1/messages", data=too_large, ssl=cluster.ssl
        ) as answer:
            assert answer.status == 413
            assert answer.content_type == "application/problem+json"
            assert (await answer.json())["type"] == "urn:schakel:problem:too-large"
    # plain HTTP on the TLS port is no way in either
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
    await writer.drain()
    reply = await reader.read(4096)
    writer.close()
    assert b"200 OK" not in reply


def _handshake(port: int, context: ssl.SSLContext, name: str | None) -> None:
    """A TLS handshake with ``name`` as SNI (None: none)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        with context.wrap_socket(raw, server_hostname=name) as wrapped:
            assert wrapped.version() in ("TLSv1.2", "TLSv1.3")
    finally:
        raw.close()
