"""The client address behind trusted proxies: X-Forwarded-For is believed only from them.

:func:`hub.http.common.forwarded_client` is checked case by case (spoofed, chained, malformed,
over-long headers); then a real hub behind a "proxy" on loopback (the test client's
address, trusted or not) shows the address reaching the per-address rate limit and the
access log's ``source``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fresh_databases import Databases

from hub.app import make_app
from hub.config import MAX_NETWORKS, ConfigError, HubConfig, Networks, parse_networks
from hub.http.common import MAX_FORWARDED_CHARS, MAX_FORWARDED_HOPS, SERVICES, forwarded_client
from hub.tokens import generate_signing_key
from protocol.certificate import create_root
from protocol.types import NetworkId

NETWORK = NetworkId("testnet")
PROXIES = parse_networks("test", "127.0.0.0/8, 10.0.0.0/8, 2001:db8:f::/48")


def client(peer: str | None, *headers: str, trusted: Networks = PROXIES) -> str | None:
    found = forwarded_client(peer, list(headers), trusted)
    return None if found is None else str(found)


# -- the walk ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [
        # An untrusted peer: its header is never read, whatever it claims.
        ("203.0.113.7", ["198.51.100.1"], "203.0.113.7"),
        ("203.0.113.7", ["10.0.0.2, 127.0.0.1"], "203.0.113.7"),
        ("2001:db8:1::5", ["198.51.100.1"], "2001:db8:1::5"),
        # A trusted peer without a header is the client itself.
        ("127.0.0.1", [], "127.0.0.1"),
        ("127.0.0.1", [""], "127.0.0.1"),
        # One proxy: the address it saw.
        ("127.0.0.1", ["203.0.113.7"], "203.0.113.7"),
        ("127.0.0.1", ["2001:db8:1::5"], "2001:db8:1::5"),
        # Entries the client wrote itself (left of the first untrusted) are ignored.
        ("127.0.0.1", ["198.51.100.1, 203.0.113.7"], "203.0.113.7"),
        ("127.0.0.1", ["10.0.0.9, 203.0.113.7"], "203.0.113.7"),
        # A chain of trusted proxies is walked past, right to left.
        ("127.0.0.1", ["198.51.100.1, 203.0.113.7, 10.0.0.3, 10.0.0.2"], "203.0.113.7"),
        ("10.0.0.2", ["203.0.113.7,10.1.2.3"], "203.0.113.7"),
        ("127.0.0.1", ["203.0.113.7", "10.0.0.2"], "203.0.113.7"),  # two header lines
        # Only trusted hops: the leftmost of them.
        ("127.0.0.1", ["10.0.0.3, 10.0.0.2"], "10.0.0.3"),
        # IPv4 mapped into IPv6 counts as IPv4, trusted or not.
        ("::ffff:127.0.0.1", ["203.0.113.7"], "203.0.113.7"),
        ("127.0.0.1", ["::ffff:203.0.113.7"], "203.0.113.7"),
        ("127.0.0.1", ["203.0.113.7, ::ffff:10.0.0.2"], "203.0.113.7"),
        # A malformed entry stops the walk at the last trusted hop.
        ("127.0.0.1", ["not-an-address"], "127.0.0.1"),
        ("127.0.0.1", ["203.0.113.7, 10.0.0.2, junk"], "127.0.0.1"),
        ("127.0.0.1", ["203.0.113.7, junk, 10.0.0.2"], "10.0.0.2"),
        ("127.0.0.1", ["203.0.113.7,"], "127.0.0.1"),  # an empty entry
        ("127.0.0.1", ["203.0.113.7:4711"], "127.0.0.1"),  # with a port
        ("127.0.0.1", ["[2001:db8:1::5]"], "127.0.0.1"),  # bracketed
        ("127.0.0.1", ["fe80::1%eth0"], "127.0.0.1"),  # with a zone
        ("127.0.0.1", ["unknown"], "127.0.0.1"),
        ("127.0.0.1", ["203.0.113.007"], "127.0.0.1"),  # leading zeros are refused
        ("127.0.0.1", ["203.0.113.7/32"], "127.0.0.1"),
        ("127.0.0.1", ["203.0.113.7\x00"], "127.0.0.1"),
        # ... but malformed entries left of the client are never reached.
        ("127.0.0.1", ["junk, 203.0.113.7"], "203.0.113.7"),
        # A peer that is not an IP address (a Unix socket) has no client address.
        (None, ["203.0.113.7"], None),
        ("", ["203.0.113.7"], None),
    ],
)
def test_the_walk(peer: str | None, headers: list[str], expected: str | None) -> None:
    assert client(peer, *headers) == expected


def test_nothing_is_trusted_by_default() -> None:
    assert client("127.0.0.1", "203.0.113.7", trusted=Networks(())) == "127.0.0.1"


def test_at_most_max_hops_are_walked() -> None:
    hops = [f"10.0.0.{i}" for i in range(1, MAX_FORWARDED_HOPS + 1)]  # all trusted
    assert client("127.0.0.1", ", ".join(hops)) == "10.0.0.1"
    # One more trusted hop: the walk stops at the bound, on the last trusted hop it read.
    assert client("127.0.0.1", ", ".join(["10.0.0.99", *hops])) == "10.0.0.1"
    # The client right of the bound is found; a client beyond it is not believed.
    assert client("127.0.0.1", ", ".join(["203.0.113.7", *hops[1:]])) == "203.0.113.7"
    assert client("127.0.0.1", ", ".join(["203.0.113.7", *hops])) == "10.0.0.1"


def test_a_long_prefix_can_not_hide_the_client() -> None:
    """A client may send a long header itself; the proxy's entry at the right still counts."""
    padding = "x" * (4 * MAX_FORWARDED_CHARS)
    assert client("127.0.0.1", f"{padding}, 203.0.113.7") == "203.0.113.7"
    assert client("127.0.0.1", f"{padding}, 203.0.113.7, 10.0.0.2") == "203.0.113.7"
    assert client("127.0.0.1", ", ".join(["198.51.100.1"] * 400 + ["203.0.113.7"])) == (
        "203.0.113.7"
    )


def test_an_address_cut_by_the_bound_is_never_read() -> None:
    """The last MAX_FORWARDED_CHARS may start inside an entry: that piece is dropped."""
    hop = " " * 60 + "10.0.0.2"  # trusted, padded so that few entries fill the bound
    rest = ",".join([hop] * 14)
    cut = "192.168.1.1,"
    header = cut + " " * (MAX_FORWARDED_CHARS + 2 - len(cut) - len(rest)) + rest
    assert header[-MAX_FORWARDED_CHARS:].startswith("2.168.1.1,")  # an address, but not his
    assert client("127.0.0.1", header) == "10.0.0.2"


# -- configuration -----------------------------------------------------------------------


def _root_der() -> bytes:
    key = Ed25519PrivateKey.generate()
    return create_root(key, NETWORK, now=int(time.time()) - 60, days=30, serial=1).der


def test_config_reads_and_checks_the_networks() -> None:
    root = _root_der()
    config = HubConfig.from_env(
        {
            "SCHAKEL_HUB_TRUSTED_PROXIES": " 127.0.0.1/32 , 10.0.0.0/8,::1",
            "SCHAKEL_HUB_METRICS_FROM": "192.0.2.0/24",
        },
        network=NETWORK,
        root_der=root,
    )
    assert [str(n) for n in config.trusted_proxies.networks] == [
        "127.0.0.1/32",
        "10.0.0.0/8",
        "::1/128",
    ]
    assert [str(n) for n in config.metrics_from.networks] == ["192.0.2.0/24"]
    defaults = HubConfig.from_env({}, network=NETWORK, root_der=root)
    assert defaults.trusted_proxies.networks == ()
    assert [str(n) for n in defaults.metrics_from.networks] == ["127.0.0.0/8", "::1/128"]
    empty = HubConfig.from_env({"SCHAKEL_HUB_METRICS_FROM": ""}, network=NETWORK, root_der=root)
    assert empty.metrics_from.networks == ()
    assert HubConfig(NETWORK, root, trusted_proxies=("10.0.0.0/8",)).trusted_proxies == (
        parse_networks("x", ["10.0.0.0/8"])
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10.0.0.1/8", "'10.0.0.1/8' is not a network in CIDR notation"),
        ("10.0.0.0/33", "'10.0.0.0/33' is not a network"),
        ("proxy.example.org", "'proxy.example.org' is not a network"),
        ("10.0.0.0/8;127.0.0.1", "is not a network"),
        ("10.0.0.0/8 127.0.0.1", "is not a network"),
        ("\x1b[31m", "a non-printable value is not a network"),
        ("0.0.0.0/0", "a /0 network would trust every address"),
        ("::/0", "a /0 network would trust every address"),
        (",".join(f"10.{i}.0.0/16" for i in range(MAX_NETWORKS + 1)), f"at most {MAX_NETWORKS}"),
    ],
)
def test_a_bad_trusted_proxy_is_refused(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"^SCHAKEL_HUB_TRUSTED_PROXIES: ") as e:
        HubConfig.from_env(
            {"SCHAKEL_HUB_TRUSTED_PROXIES": value}, network=NETWORK, root_der=_root_der()
        )
    assert message in str(e.value)


def test_a_bad_metrics_network_is_refused() -> None:
    with pytest.raises(ConfigError, match="SCHAKEL_HUB_METRICS_FROM: 'loopback' is not"):
        HubConfig.from_env(
            {"SCHAKEL_HUB_METRICS_FROM": "loopback"}, network=NETWORK, root_der=_root_der()
        )
    with pytest.raises(ConfigError, match="metrics_from: networks are given as CIDR texts"):
        HubConfig(NETWORK, _root_der(), metrics_from=(127,))  # type: ignore[arg-type]


# -- a real hub behind a proxy on loopback -------------------------------------------------


@asynccontextmanager
async def started(database_url: str, **changes: Any) -> AsyncIterator[TestClient[Any, Any]]:
    """A hub whose test client (127.0.0.1) is the proxy; its clock, and buckets, stand still."""
    limits = {"address_burst": 2, **changes.pop("limits", {})}
    config = HubConfig.for_tests(
        network=NETWORK, root_der=_root_der(), database_url=database_url, limits=limits, **changes
    )
    now = int(time.time())
    app = make_app(
        config,
        token_key_pem=generate_signing_key(),
        clock=lambda: now,
        sign_heads=False,
        escalate=False,
    )
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client


def forwarded(value: str) -> dict[str, str]:
    return {"X-Forwarded-For": value}


async def statuses(
    test_client: TestClient[Any, Any], headers: Callable[[int], dict[str, str]], n: int
) -> list[int]:
    return [(await test_client.get("/v1/hub", headers=headers(i))).status for i in range(n)]


async def test_behind_a_trusted_proxy_each_client_has_its_own_bucket(
    databases: Databases,
) -> None:
    async with started(await databases.new(), trusted_proxies="127.0.0.1/32") as proxy:
        # The proxy appends what it saw; a client's own entries at the left change nothing.
        spoofing = await statuses(proxy, lambda i: forwarded(f"198.51.100.{i}, 203.0.113.7"), 3)
        assert spoofing == [200, 200, 429]
        assert await statuses(proxy, lambda i: forwarded("203.0.113.8"), 3) == [200, 200, 429]
        assert await statuses(proxy, lambda i: forwarded("2001:db8::8"), 1) == [200]
        # Requests without the header are the proxy's own, in a bucket of their own.
        assert await statuses(proxy, lambda i: {}, 3) == [200, 200, 429]


async def test_an_untrusted_peer_can_not_choose_its_bucket(databases: Databases) -> None:
    async with started(await databases.new(), trusted_proxies="10.0.0.0/8") as peer:
        rotating = await statuses(peer, lambda i: forwarded(f"203.0.113.{i}"), 3)
        assert rotating == [200, 200, 429]


async def _crl_source(test_client: TestClient[Any, Any], headers: dict[str, str]) -> str | None:
    """Read the CRL (an audited route) and return the source of the entry it left."""
    response = await test_client.get("/v1/directory/crl", headers=headers)
    assert response.status == 200, await response.text()
    store = test_client.server.app[SERVICES].store  # type: ignore[union-attr]
    entries = await store.audit_entries()
    assert entries[-1].request_id == response.headers["X-Request-Id"]
    return entries[-1].source


async def test_the_access_log_records_the_forwarded_client(databases: Databases) -> None:
    async with started(await databases.new(), trusted_proxies="127.0.0.0/8") as proxy:
        assert await _crl_source(proxy, forwarded("198.51.100.1, 203.0.113.7")) == "203.0.113.7"
        assert await _crl_source(proxy, forwarded("2001:db8::7")) == "2001:db8::7"
        assert await _crl_source(proxy, forwarded("203.0.113.7, junk")) == "127.0.0.1"
        assert await _crl_source(proxy, {}) == "127.0.0.1"


async def test_the_access_log_ignores_an_untrusted_peers_header(databases: Databases) -> None:
    async with started(await databases.new()) as peer:  # no trusted proxies: the default
        assert await _crl_source(peer, forwarded("203.0.113.7")) == "127.0.0.1"
