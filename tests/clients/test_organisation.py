"""Organisation: two organisations exchanging signals through a hub that is not trusted.

The hub here is an in-memory fake with HubClient's methods, so that a test can
make it lie: serve a tampered envelope, a rogue certificate, an old CRL.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from clients.errors import NotReady, PayloadInvalid, VerificationFailed
from clients.hub_client import InboxItem, InboxPage, Notice
from clients.organisation import Organisation, ReceivedMessage
from clients.payloads import identity_of
from clients.state import LocalState
from keys.authority import Authority
from keys.keyfile import KdfParams
from keys.organisation import OrgKeys
from protocol.encoding import b64d, b64e
from protocol.envelope import Envelope
from protocol.keybundle import KeyBundle
from protocol.linkingkey import SealedLinkingKey
from protocol.types import MessageId, NetworkId, OrgId

NETWORK = NetworkId("test-net")
NOW = 1_750_000_000
PASS = b"correct horse battery staple"
MARKER = "Zwaantje-Plaintext-Marker"


class Clock:
    def __init__(self) -> None:
        self.now = float(NOW)

    def __call__(self) -> float:
        return self.now


@dataclass
class MemoryHub:
    """The hub's directory and relay, in memory, shared by every organisation."""

    certificates: dict[str, bytes] = field(default_factory=dict)
    bundles: dict[str, KeyBundle] = field(default_factory=dict)
    crl: bytes | None = None
    linking_keys: list[SealedLinkingKey] = field(default_factory=list)
    messages: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    acked: set[tuple[str, str]] = field(default_factory=set)
    sent: list[dict[str, Any]] = field(default_factory=list)

    def client(self, org: str) -> MemoryClient:
        return MemoryClient(self, org)

    def deliver(self, recipient: str, wire: dict[str, Any]) -> int:
        cursor = len(self.messages) + 1
        self.messages.append((cursor, recipient, wire))
        return cursor


@dataclass
class MemoryClient:
    hub: MemoryHub
    org: str
    notices: list[Notice] = field(default_factory=list)
    on_open: Callable[[], Awaitable[None]] | None = None  # runs as the socket opens

    async def publish_certificate(self, der: bytes) -> dict[str, Any]:
        self.hub.certificates[self.org] = der
        return {}

    async def publish_bundle(self, bundle: KeyBundle) -> str:
        self.hub.bundles[bundle.org] = bundle
        return bundle.fingerprint

    async def get_org(self, org: str) -> tuple[bytes, KeyBundle | None]:
        return self.hub.certificates[org], self.hub.bundles.get(org)

    async def get_crl(self) -> bytes | None:
        return self.hub.crl

    async def get_linking_keys(self) -> list[SealedLinkingKey]:
        return [s for s in self.hub.linking_keys if s.org == self.org]

    async def send(self, envelope: Envelope) -> tuple[MessageId, int, bool]:
        wire = envelope.to_wire()
        self.hub.sent.append(wire)
        for recipient in envelope.header.recipients:
            self.hub.deliver(recipient, copy.deepcopy(wire))
        return envelope.header.id, NOW, True

    async def inbox(self, after: int = 0, limit: int = 50) -> InboxPage:
        items = [
            InboxItem(
                cursor, copy.deepcopy(wire), (self.org, wire["header"]["id"]) in self.hub.acked
            )
            for cursor, recipient, wire in self.hub.messages
            if recipient == self.org and cursor > after
        ][:limit]
        return InboxPage(tuple(items), items[-1].cursor if items else after)

    async def ack(self, message_id: str) -> None:
        self.hub.acked.add((self.org, message_id))

    async def notifications(self, *, opened: bool = False) -> AsyncIterator[Notice | None]:
        if self.on_open is not None:
            await self.on_open()
        if opened:
            yield None
        for notice in self.notices:
            yield notice

    async def audit_head(self) -> None:
        return None  # a hub that has signed no tree head yet


@dataclass
class Network:
    tmp: Path
    authority: Authority
    hub: MemoryHub
    clock: Clock
    orgs: dict[str, Organisation] = field(default_factory=dict)

    def make_org(self, org: str, *, certify: bool = True, link: bool = True) -> Organisation:
        keys = OrgKeys.create(
            self.tmp / org, NETWORK, OrgId(org), PASS, KdfParams.for_tests(), allow_weak=True
        )
        keys.pin_root(self.authority.root.der, now=NOW)
        if certify:
            cert = self.authority.enrol(keys.request_der, ["member"], now=NOW)
            keys.import_certificate(cert.der, now=NOW)
            if link:
                sealed = self.authority.seal_linking_key(
                    keys.current_bundle(now=NOW), cert, now=NOW
                )
                self.hub.linking_keys.append(sealed)
        state = LocalState(self.tmp / f"{org}.sqlite")
        organisation = Organisation(
            keys,
            state,
            self.hub.client(org),
            clock=self.clock,  # type: ignore[arg-type]
        )
        self.orgs[org] = organisation
        return organisation


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Network]:
    authority = Authority.create(
        tmp_path / "authority", NETWORK, PASS, KdfParams.for_tests(), now=NOW, allow_weak=True
    )
    authority.new_linking_key()
    network = Network(tmp_path, authority, MemoryHub(), Clock())
    network.hub.crl = authority.crl(now=NOW).der
    yield network
    for org in network.orgs.values():
        org.state.close()


async def ready(network: Network, name: str) -> Organisation:
    org = network.make_org(name)
    await org.publish()
    assert await org.fetch_linking_keys() == [1]
    return org


def signal() -> dict[str, Any]:
    return {
        "schema": "schakel.signal/1",
        "person": {
            "bsn": "111222333",
            "given_names": "Anna",
            "family_name": "van der Berg",
            "date_of_birth": "2001-02-03",
        },
        "exploitation": "labour",
        "indicators": ["work.no_payment"],
        "text": MARKER,
        "urgency": "high",
        "consent_to_share": True,
    }


async def test_two_organisations_exchange_a_signal(net: Network) -> None:
    police, ggd = await ready(net, "politie"), await ready(net, "ggd")
    message_id = await police.send_signal(signal(), ["ggd"])

    result = await ggd.receive()
    assert result.rejected == ()
    [message] = result.messages
    assert (message.id, message.sender, message.kind) == (message_id, "politie", "signal")
    assert message.payload == signal()
    # Both sides derive the same pseudonyms from the same person.
    assert message.pseudonyms == ggd.derive_pseudonyms(identity_of(signal()))
    assert {p.split(".")[0] for p in message.pseudonyms} == {"bsn", "ndob"}
    assert ("ggd", message_id) in net.hub.acked
    assert [s.id for s in police.state.sent()] == [message_id]

    # Nothing in the hub, nor in local state, holds the plaintext.
    assert MARKER not in json.dumps(net.hub.sent)
    assert MARKER.encode() not in (net.tmp / "ggd.sqlite").read_bytes()
    assert (await ggd.receive()).messages == ()
    shown = ggd.show(message_id)
    assert shown.payload == signal() and shown.cursor == message.cursor
    assert MARKER not in repr(shown)


async def test_a_message_delivered_twice_is_stored_once(net: Network) -> None:
    police, ggd = await ready(net, "politie"), await ready(net, "ggd")
    await police.send_signal(signal(), ["ggd"])
    net.hub.deliver("ggd", copy.deepcopy(net.hub.messages[0][2]))
    result = await ggd.receive()
    assert len(result.messages) == 1
    assert len(ggd.state.messages()) == 1 and ggd.state.cursor == 2


def _flip_body(wire: dict[str, Any]) -> None:
    body = bytearray(b64d(wire["body"]))
    body[-1] ^= 1
    wire["body"] = b64e(bytes(body))


def _drop_pseudonym(wire: dict[str, Any]) -> None:
    wire["header"]["pseudonyms"] = wire["header"]["pseudonyms"][1:]


def _garble(wire: dict[str, Any]) -> None:
    wire["sig"] = "not base64!"


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [(_flip_body, "envelope"), (_drop_pseudonym, "envelope"), (_garble, "malformed")],
)
async def test_a_tampered_envelope_is_rejected_and_not_acked(
    net: Network, tamper: Any, reason: str
) -> None:
    police, ggd = await ready(net, "politie"), await ready(net, "ggd")
    message_id = await police.send_signal(signal(), ["ggd"])
    tamper(net.hub.messages[0][2])
    result = await ggd.receive()
    assert result.messages == ()
    [rejected] = result.rejected
    assert (rejected.id, rejected.reason, rejected.sender) == (message_id, reason, "politie")
    assert net.hub.acked == set()
    assert ggd.state.messages() == []
    assert ggd.state.rejected() == [(message_id, 1, reason)]
    assert ggd.state.cursor == 1  # not fetched again and again


async def test_a_message_signed_under_another_certificate_is_rejected(net: Network) -> None:
    police, ggd = await ready(net, "politie"), await ready(net, "ggd")
    await police.send_signal(signal(), ["ggd"])
    # The authority re-enrols politie; the hub now serves a newer certificate.
    newer = net.authority.enrol(police.keys.request_der, ["member"], now=NOW + 1)
    net.hub.certificates["politie"] = newer.der
    result = await ggd.receive()
    assert [r.reason for r in result.rejected] == ["sender-certificate"]
    assert net.hub.acked == set()


def _rogue(net: Network, name: str) -> tuple[bytes, KeyBundle]:
    """A certificate and bundle for ``name`` from a root the clients never pinned."""
    rogue = Authority.create(
        net.tmp / "rogue", NETWORK, PASS, KdfParams.for_tests(), now=NOW, allow_weak=True
    )
    keys = OrgKeys.create(
        net.tmp / f"rogue-{name}",
        NETWORK,
        OrgId(name),
        PASS,
        KdfParams.for_tests(),
        allow_weak=True,
    )
    keys.pin_root(rogue.root.der, now=NOW)
    keys.import_certificate(rogue.enrol(keys.request_der, ["member"], now=NOW).der, now=NOW)
    return keys.certificate.der, keys.current_bundle(now=NOW)  # type: ignore[union-attr]


async def test_a_bundle_not_chained_to_the_root_is_refused(net: Network) -> None:
    police, _ = await ready(net, "politie"), await ready(net, "ggd")
    der, bundle = _rogue(net, "ggd")
    net.hub.certificates["ggd"], net.hub.bundles["ggd"] = der, bundle
    with pytest.raises(VerificationFailed, match="certificate of organisation 'ggd'"):
        await police.send_signal(signal(), ["ggd"])
    assert net.hub.sent == []


async def test_a_bundle_signed_by_another_key_is_refused(net: Network) -> None:
    police, _ = await ready(net, "politie"), await ready(net, "ggd")
    _, bundle = _rogue(net, "ggd")  # the real certificate stays; the bundle is swapped
    net.hub.bundles["ggd"] = bundle
    with pytest.raises(VerificationFailed, match="key bundle of organisation 'ggd'"):
        await police.send_signal(signal(), ["ggd"])
    assert net.hub.sent == []
    assert police.state.cached_directory("ggd", root=police.keys.root.fingerprint) is None


async def test_a_revoked_recipient_is_refused(net: Network) -> None:
    police, ggd = await ready(net, "politie"), await ready(net, "ggd")
    cert = ggd.certificate()
    net.hub.crl = net.authority.revoke(cert.serial, now=NOW).der
    with pytest.raises(VerificationFailed, match="'ggd' did not verify \\(revoked\\)"):
        await police.send_signal(signal(), ["ggd"])


async def test_crl_rollback_forgery_and_withdrawal_are_refused(
    net: Network, tmp_path: Path
) -> None:
    police, _ = await ready(net, "politie"), await ready(net, "ggd")
    old = net.hub.crl
    net.hub.crl = net.authority.crl(now=NOW).der
    await police.recipient("ggd")
    assert police.state.crl_number == 2
    for served, says in [(old, "older than one seen"), (None, "the hub serves none")]:
        police._crl = None  # what a new process would do
        net.hub.crl = served
        with pytest.raises(VerificationFailed, match=says):
            await police.recipient("ggd")
    rogue = Authority.create(
        tmp_path / "rogue-ca", NETWORK, PASS, KdfParams.for_tests(), now=NOW, allow_weak=True
    )
    net.hub.crl, police._crl = rogue.crl(now=NOW).der, None
    with pytest.raises(VerificationFailed, match="revocation list did not verify"):
        await police.recipient("ggd")


async def test_not_ready_steps_name_the_command(net: Network) -> None:
    unlinked = net.make_org("school", link=False)
    with pytest.raises(NotReady, match="linking-key fetch"):
        unlinked.derive_pseudonyms(identity_of(signal()))
    uncertified = net.make_org("opvang", certify=False)
    with pytest.raises(NotReady, match="import-cert"):
        await uncertified.send_signal(signal(), ["ggd"])
    with pytest.raises(NotReady, match="inbox"):
        unlinked.show("AAAAAAAAAAAAAAAAAAAAAA")


async def test_bad_payloads_and_recipients_are_refused_before_sending(net: Network) -> None:
    police, _ = await ready(net, "politie"), await ready(net, "ggd")
    bad = signal()
    bad["urgency"] = "soon"
    with pytest.raises(PayloadInvalid, match=r"\$\.urgency"):
        await police.send_signal(bad, ["ggd"])
    bad = signal()
    bad["person"]["bsn"] = "123456789"  # fails the 11-test
    with pytest.raises(PayloadInvalid, match=r"\$\.person"):
        await police.send_signal(bad, ["ggd"])
    for recipients in ([], ["politie"], ["Not An Org"]):
        with pytest.raises(PayloadInvalid):
            await police.send_signal(signal(), recipients)
    assert net.hub.sent == []


async def test_a_signal_without_identity_needs_no_linking_key(net: Network) -> None:
    _, ggd = await ready(net, "politie"), await ready(net, "ggd")
    school = net.make_org("school", link=False)
    await school.publish()
    anonymous = signal()
    anonymous["person"] = {"sex": "female", "age_estimate": 15}
    await school.send_signal(anonymous, ["ggd"])
    [message] = (await ggd.receive()).messages
    assert message.pseudonyms == () and message.payload == anonymous


async def test_a_linking_key_sealed_by_another_root_is_refused(net: Network) -> None:
    police = net.make_org("politie")
    good = net.hub.linking_keys[0]
    net.hub.linking_keys[0] = SealedLinkingKey(
        good.network, good.org, good.version, good.bundle, good.enc, bytes(64)
    )
    with pytest.raises(VerificationFailed, match="sealed linking key"):
        await police.fetch_linking_keys()


async def test_watch_yields_what_waits_then_what_is_announced(net: Network) -> None:
    police, ggd = await ready(net, "politie"), await ready(net, "ggd")
    first = await police.send_signal(signal(), ["ggd"])
    client = ggd.hub
    assert isinstance(client, MemoryClient)
    second_payload = signal()
    second_payload["urgency"] = "immediate_danger"
    seen: list[str] = []
    async for item in ggd.watch():
        assert isinstance(item, ReceivedMessage)
        seen.append(item.id)
        if len(seen) == 1:
            second = await police.send_signal(second_payload, ["ggd"])
            client.notices.extend([Notice(1, first), Notice(2, second)])
    assert seen == [first, second]


async def test_watch_misses_nothing_that_arrives_while_the_socket_opens(net: Network) -> None:
    police, ggd = await ready(net, "politie"), await ready(net, "ggd")
    client = ggd.hub
    assert isinstance(client, MemoryClient)
    sent: list[str] = []

    async def send_unannounced() -> None:  # accepted before the hub knew of the socket
        sent.append(await police.send_signal(signal(), ["ggd"]))

    client.on_open = send_unannounced
    seen = [item.id async for item in ggd.watch()]
    assert seen == sent and len(sent) == 1
