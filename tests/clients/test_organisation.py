"""Organisation: organisations exchanging signals through the real hub, which is not trusted.

The hub is ``hub.app`` on loopback (``conftest.hub``). A test makes it lie by changing
an answer on its way to one client (``Tap.answer``) or by editing its database, and
takes it out of reach with ``Tap.down``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from client_harness import MARKER, NETWORK, PASS, Hub

from clients.errors import NotReady, PayloadInvalid, UnknownOrganisation, VerificationFailed
from clients.inbox import ReceivedMessage
from clients.payloads import Unlinked, identity_of
from clients.transport import Request, Response
from keys.authority import Authority
from keys.keyfile import KdfParams
from keys.organisation import OrgKeys
from protocol.encoding import b64d, b64e, canonical_json, loads_strict
from protocol.keybundle import KeyBundle
from protocol.types import OrgId


def signal(**changes: Any) -> dict[str, Any]:
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
    } | changes


def hub_bytes(hub: Hub) -> bytes:
    return b"".join(p.read_bytes() for p in hub.database.parent.glob(hub.database.name + "*"))


def rewrite(path: str, change: Callable[[Any], None]) -> Callable[[Request, Response], Response]:
    """An answer hook: ``change`` the JSON the hub answers on ``path`` (a prefix)."""

    def answer(request: Request, response: Response) -> Response:
        if not request.url.split("/v1", 1)[1].startswith(path) or response.status != 200:
            return response
        doc = loads_strict(response.body)
        change(doc)
        return Response(response.status, response.headers, json.dumps(doc).encode())

    return answer


def posted(hub: Hub, org: str) -> int:
    return sum(
        r.method == "POST" and r.url.endswith("/v1/messages") for r in hub.taps[org].requests
    )


async def test_two_organisations_exchange_a_signal(hub: Hub) -> None:
    police, ggd = await hub.join("politie"), await hub.join("ggd")
    sent = await police.send_signal(signal(), ["ggd"])
    assert not sent.waiting and sent.recipients == ("ggd",) and sent.kind == "signal"

    result = await ggd.receive()
    assert result.rejected == ()
    [message] = result.messages
    assert (message.id, message.sender, message.kind) == (sent.id, "politie", "signal")
    assert message.payload == signal()
    # Both sides derive the same pseudonyms; the sender's result names them.
    assert (
        message.pseudonyms == sent.pseudonyms == await ggd.derive_pseudonyms(identity_of(signal()))
    )
    assert {p.split(".")[0] for p in message.pseudonyms} == {"bsn", "ndob"}
    assert hub.rows("SELECT acked_at IS NOT NULL FROM deliveries") == [(1,)]
    assert [s.id for s in police.state.sent()] == [sent.id]
    assert police.sent_payload(sent.id) == signal()

    # Nothing in the hub, nor in either organisation's local state, holds the plaintext.
    assert MARKER.encode() not in hub_bytes(hub)
    for name in ("politie", "ggd"):
        files = hub.home(name).glob("state.sqlite*")
        assert all(MARKER.encode() not in f.read_bytes() for f in files)
    assert (await ggd.receive()).messages == ()
    shown = ggd.show(sent.id)
    assert shown.payload == signal() and shown.cursor == message.cursor
    assert MARKER not in repr(shown)


async def test_reading_from_the_hub_records_the_read_and_refuses_a_substitute(hub: Hub) -> None:
    police, ggd = await hub.join("politie"), await hub.join("ggd")
    sent = await police.send_signal(signal(), ["ggd"])
    await ggd.receive()
    entries = "SELECT count(*) FROM audit_log WHERE org = ? AND action = 'read' AND object_ids = ?"
    read_by_ggd = ("ggd", canonical_json([sent.id]).decode())

    assert (await ggd.read_message(sent.id)).payload == signal()
    assert hub.rows(entries, *read_by_ggd) == [(0,)]  # kept here: the hub saw no read
    assert (await ggd.read_message(sent.id, from_hub=True)).payload == signal()
    assert hub.rows(entries, *read_by_ggd) == [(1,)]  # the hub's access log has the read

    def another_envelope(doc: Any) -> None:
        doc["envelope"]["header"]["created"] += 1  # the hub serves another envelope

    hub.taps["ggd"].answer = rewrite(f"/messages/{sent.id}", another_envelope)
    with pytest.raises(VerificationFailed):
        await ggd.read_message(sent.id, from_hub=True)


async def test_a_message_the_hub_hands_out_twice_is_stored_once(hub: Hub) -> None:
    police, ggd = await hub.join("politie"), await hub.join("ggd")
    await police.send_signal(signal(), ["ggd"])

    repeated: list[str] = []

    def twice(doc: Any) -> None:
        if doc["messages"]:
            again = copy.deepcopy(doc["messages"][0])
            again["cursor"] += 1000
            doc["messages"].append(again)
            doc["next"] = again["cursor"]
            repeated.append(again["envelope"]["header"]["id"])
        elif doc.get("at", {}).get("cursor", 0) > 1000:
            doc["at"]["id"] = repeated[0]  # the hub stands by the repeat it made up

    hub.taps["ggd"].answer = rewrite("/inbox", twice)
    result = await ggd.receive()
    assert len(result.messages) == 1 and result.rejected == ()
    assert len(ggd.state.messages()) == 1


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
    hub: Hub, tamper: Callable[[dict[str, Any]], None], reason: str
) -> None:
    police, ggd = await hub.join("politie"), await hub.join("ggd")
    sent = await police.send_signal(signal(), ["ggd"])

    def change(doc: Any) -> None:
        for item in doc["messages"]:
            tamper(item["envelope"])

    hub.taps["ggd"].answer = rewrite("/inbox", change)
    result = await ggd.receive()
    assert result.messages == ()
    [rejected] = result.rejected
    assert (rejected.id, rejected.reason, rejected.sender) == (sent.id, reason, "politie")
    assert hub.rows("SELECT acked_at FROM deliveries") == [(None,)]
    assert ggd.state.messages() == []
    assert ggd.state.rejected() == [(sent.id, rejected.cursor, reason)]
    assert ggd.state.cursor == rejected.cursor  # not fetched again and again


async def test_a_message_signed_under_another_certificate_is_rejected(hub: Hub) -> None:
    police, ggd = await hub.join("politie"), await hub.join("ggd")
    await police.send_signal(signal(), ["ggd"])
    # The authority re-enrols politie; the hub now holds a newer certificate.
    hub.clock.advance(5)
    newer = hub.authority.enrol(police.keys.request_der, ["member"], now=hub.clock.seconds())
    await police.hub.publish_certificate(newer.der)
    result = await ggd.receive()
    assert [r.reason for r in result.rejected] == ["sender-certificate"]
    assert hub.rows("SELECT acked_at FROM deliveries") == [(None,)]


def _rogue(hub: Hub, name: str) -> tuple[bytes, KeyBundle]:
    """A certificate and bundle for ``name`` from a root the clients never pinned."""
    now = hub.clock.seconds()
    rogue = Authority.create(
        hub.tmp / "rogue", NETWORK, PASS, KdfParams.for_tests(), now=now, allow_weak=True
    )
    keys = OrgKeys.create(
        hub.tmp / f"rogue-{name}", NETWORK, OrgId(name), PASS, KdfParams.for_tests(),
        allow_weak=True,
    )  # fmt: skip
    keys.pin_root(rogue.root.der, now=now)
    keys.import_certificate(rogue.enrol(keys.request_der, ["member"], now=now).der, now=now)
    assert keys.certificate is not None
    return keys.certificate.der, keys.current_bundle(now=now)


async def test_a_certificate_not_chained_to_the_root_is_refused(hub: Hub) -> None:
    police, _ = await hub.join("politie"), await hub.join("ggd")
    der, bundle = _rogue(hub, "ggd")

    def swap(doc: Any) -> None:
        doc["certificate"], doc["bundle"] = b64e(der), bundle.to_wire()

    hub.taps["politie"].answer = rewrite("/directory/orgs/ggd", swap)
    with pytest.raises(VerificationFailed, match="certificate of organisation 'ggd'"):
        await police.send_signal(signal(), ["ggd"])
    assert posted(hub, "politie") == 0
    [entry] = police.outbox.entries()  # refused, kept to be seen, never sent again
    assert entry.state == "refused" and "certificate of organisation 'ggd'" in str(entry.problem)


async def test_a_bundle_signed_by_another_key_is_refused(hub: Hub) -> None:
    police, _ = await hub.join("politie"), await hub.join("ggd")
    _, bundle = _rogue(hub, "ggd")  # the real certificate stays; the bundle is swapped

    def swap(doc: Any) -> None:
        doc["bundle"] = bundle.to_wire()

    hub.taps["politie"].answer = rewrite("/directory/orgs/ggd", swap)
    with pytest.raises(VerificationFailed, match="key bundle of organisation 'ggd'"):
        await police.send_signal(signal(), ["ggd"])
    assert posted(hub, "politie") == 0
    assert police.state.cached_directory("ggd", root=police.keys.root.fingerprint) is None


async def test_a_revoked_recipient_is_refused(hub: Hub) -> None:
    police, ggd = await hub.join("politie"), await hub.join("ggd")
    crl = hub.authority.revoke(ggd.certificate().serial, now=hub.clock.seconds())
    await police.hub.put_crl(crl.der)
    police.directory.forget_crl()
    with pytest.raises(VerificationFailed, match="'ggd' did not verify \\(revoked\\)"):
        await police.send_signal(signal(), ["ggd"])


async def test_crl_rollback_forgery_and_withdrawal_are_refused(hub: Hub) -> None:
    police, _ = await hub.join("politie"), await hub.join("ggd")
    old = b64e(hub.authority.crl(now=hub.clock.seconds()).der)  # number 2
    await police.hub.put_crl(hub.authority.crl(now=hub.clock.seconds()).der)  # number 3
    police.directory.forget_crl()
    await police.recipient("ggd")
    assert police.state.crl_number == 3
    rogue = Authority.create(
        hub.tmp / "rogue-ca", NETWORK, PASS, KdfParams.for_tests(), now=hub.clock.seconds(),
        allow_weak=True,
    )  # fmt: skip
    forged = b64e(rogue.crl(now=hub.clock.seconds()).der)
    for served, says in [
        (old, "older than one seen"),
        (None, "the hub serves none"),
        (forged, "revocation list did not verify"),
    ]:

        def serve(doc: Any, crl: str | None = served) -> None:
            doc["crl"] = crl

        police.directory.forget_crl()  # what a new process would do
        hub.taps["politie"].answer = rewrite("/directory/crl", serve)
        with pytest.raises(VerificationFailed, match=says):
            await police.recipient("ggd")


async def test_an_unknown_recipient_is_named(hub: Hub) -> None:
    police = await hub.join("politie")
    with pytest.raises(UnknownOrganisation, match="'nobody' is not in the hub's directory"):
        await police.send_signal(signal(), ["nobody"])


async def test_not_ready_steps_name_the_command(hub: Hub) -> None:
    unlinked = await hub.join("school", link=False)
    with pytest.raises(NotReady, match="linking-key fetch"):
        await unlinked.derive_pseudonyms(identity_of(signal()))
    with pytest.raises(NotReady, match="linking-key fetch"):
        await unlinked.send_signal(signal(), ["ggd"])
    assert unlinked.outbox.entries() == ()  # nothing kept of what was never valid
    with pytest.raises(NotReady, match="inbox"):
        unlinked.show("AAAAAAAAAAAAAAAAAAAAAA")
    keys = OrgKeys.create(
        hub.home("opvang") / "keys", NETWORK, OrgId("opvang"), PASS, KdfParams.for_tests(),
        allow_weak=True,
    )  # fmt: skip
    keys.pin_root(hub.authority.root.der, now=hub.clock.seconds())
    uncertified = hub.open("opvang", keys)
    await uncertified.hub.__aenter__()
    with pytest.raises(NotReady, match="import-cert"):
        await uncertified.send_signal(signal(), ["ggd"])


async def test_bad_payloads_and_recipients_are_refused_before_sending(hub: Hub) -> None:
    police, _ = await hub.join("politie"), await hub.join("ggd")
    today = police.now()
    bad_cases: list[tuple[dict[str, Any], list[str], str]] = [
        (signal(urgency="soon"), ["ggd"], r"\$\.urgency"),
        (signal(person={"bsn": "123456789"}), ["ggd"], r"\$\.person"),  # fails the 11-test
        (signal(person={"phone": "0612345678", "date_of_birth": "2999-01-01"}), ["ggd"],
         r"\$\.person\.date_of_birth: is after today"),
        (signal(observed_at="2999-01-01"), ["ggd"], r"\$\.observed_at: is after today"),
        (signal(), [], "at least one recipient"),
        (signal(), ["politie"], "to itself"),
        (signal(), ["Not An Org"], "recipients"),
    ]  # fmt: skip
    for payload, recipients, says in bad_cases:
        with pytest.raises(PayloadInvalid, match=says):
            await police.send_signal(payload, recipients)
    assert posted(hub, "politie") == 0 and police.outbox.entries() == ()
    assert police.now() == today


@pytest.mark.parametrize(
    ("person", "says"),
    [
        ({}, "names no BSN, phone number"),
        ({"given_names": "Anna"}, "a name links only as given names, family name and date"),
        ({"given_names": "Anna", "family_name": "Berg"}, "a name links only"),
        ({"document_number": "XN1234567"}, "a travel-document number links only together"),
        ({"sex": "female", "age_estimate": 15}, "names no BSN"),
    ],
)
async def test_a_signal_that_links_to_nothing_needs_a_confirmation(
    hub: Hub, person: dict[str, Any], says: str
) -> None:
    _, ggd = await hub.join("politie"), await hub.join("ggd")
    school = await hub.join("school", link=False)  # and needs no linking key
    with pytest.raises(Unlinked, match=says):
        await school.send_signal(signal(person=person), ["ggd"])
    assert posted(hub, "school") == 0
    sent = await school.send_signal(signal(person=person), ["ggd"], unlinked=True)
    assert sent.pseudonyms == ()
    [message] = (await ggd.receive()).messages
    assert message.pseudonyms == () and message.payload == signal(person=person)


async def test_a_linking_key_sealed_by_another_root_is_refused(hub: Hub) -> None:
    police = await hub.join("politie", link=False)
    now = hub.clock.seconds()
    sealed = hub.authority.seal_linking_key(
        police.keys.current_bundle(now=now), police.certificate(), now=now
    )
    await police.hub.put_linking_key(sealed)

    def forge(doc: Any) -> None:
        for wire in doc["linking_keys"]:
            wire["sig"] = b64e(bytes(64))

    hub.taps["politie"].answer = rewrite("/directory/linking-keys", forge)
    with pytest.raises(VerificationFailed, match="sealed linking key"):
        await police.fetch_linking_keys()


async def test_watch_yields_what_waits_then_what_is_announced(hub: Hub) -> None:
    police, ggd = await hub.join("politie"), await hub.join("ggd")
    first = await police.send_signal(signal(), ["ggd"])
    seen: list[str] = []
    async for item in ggd.watch():
        assert isinstance(item, ReceivedMessage)
        seen.append(item.id)
        if len(seen) == 1:
            second = await police.send_signal(signal(urgency="immediate_danger"), ["ggd"])
        if len(seen) == 2:
            break
    assert seen == [first.id, second.id]


async def test_watch_misses_nothing_that_arrives_while_the_socket_opens(hub: Hub) -> None:
    police, ggd = await hub.join("politie"), await hub.join("ggd")
    tap = hub.taps["ggd"]
    real = tap.websocket
    sent: list[str] = []

    def opening(request: Request) -> Any:
        async def frames() -> Any:
            async with real(request) as socket:
                # accepted while the socket opens, before anything waiting was read
                sent.append((await police.send_signal(signal(), ["ggd"])).id)
                async for frame in socket:
                    yield frame

        class Opened:
            async def __aenter__(self) -> Any:
                return frames()

            async def __aexit__(self, *exc: object) -> None:
                return None

        return Opened()

    tap.websocket = opening  # type: ignore[method-assign]
    async for item in ggd.watch():
        assert item.id == sent[0]
        break
    assert len(sent) == 1 and len(ggd.state.messages()) == 1


async def test_the_sealed_payload_is_canonical_json(hub: Hub) -> None:
    police, _ = await hub.join("politie"), await hub.join("ggd")
    sent = await police.send_signal(signal(), ["ggd"])
    ((wire,),) = hub.rows("SELECT envelope FROM messages WHERE id = ?", sent.id)
    header = json.loads(wire)["header"]
    assert header["pseudonyms"] == list(sent.pseudonyms)
    assert canonical_json(police.sent_payload(sent.id)) == canonical_json(signal())
