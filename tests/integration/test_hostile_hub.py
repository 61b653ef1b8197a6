"""A hostile hub: a real hub on loopback whose database the test rewrites behind its back.

The hub is the party the clients must not trust: it holds every envelope, the
directory (certificates, key bundles) and the revocation list. Each test lets
real clients talk to a real hub (``make_app`` on a ``TestServer``), then edits
the hub's database (SQLite or PostgreSQL: each test runs on both, the cases of a
matrix partly, see ``on_both_databases``) the way a compromised hub would, and
checks that the client notices:

* an altered envelope is rejected with its reason category, not acknowledged,
  not stored, and does not stop the good message next to it;
* a substituted key bundle or certificate is refused before anything is sealed, and
  so is an organisation's replaced bundle served again after it rotated its keys;
* a revoked organisation is refused by the client and by the hub, and a hub
  that rolls the revocation list back or withholds it is caught;
* a repeated delivery is received once;
* a message's existence is not revealed to an organisation that is neither its
  sender nor a recipient.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clients.errors import HubProblem, NotReady, VerificationFailed
from clients.inbox import REASON_ENVELOPE, REASON_MALFORMED, REASON_SENDER, RejectedMessage
from clients.organisation import Organisation
from clients.payloads import encode_payload
from keys.hub import HubKeys
from keys.organisation import OrgKeys
from protocol.certificate import (
    ROLE_COORDINATOR,
    ROLE_MEMBER,
    create_crl,
    create_enrolment_request,
    create_root,
    issue_certificate,
)
from protocol.encoding import b64d, b64e, fingerprint
from protocol.envelope import Envelope, new_message_id, seal
from protocol.keybundle import KEM_SEED_BYTES, KeyBundle, kem_public_bytes
from protocol.types import OrgId

if TYPE_CHECKING:
    from conftest import Network

COORDINATOR = "coordinator"


def _signal(text: str, bsn: str) -> dict[str, object]:
    return {
        "schema": "schakel.signal/1",
        "person": {"given_names": "Ilse", "family_name": "Verbeek", "bsn": bsn},
        "exploitation": "labour",
        "indicators": ["control.documents_withheld"],
        "text": text,
        "urgency": "high",
        "consent_to_share": True,
    }


# -- acting as an organisation, and as the hub's database -----------------------------


@contextlib.asynccontextmanager
async def acting_as(network: Network, org: str) -> AsyncIterator[Organisation]:
    organisation = network.open(org)
    try:
        async with organisation.hub:
            yield organisation
    finally:
        organisation.state.close()


async def send(
    network: Network,
    org: str,
    text: str,
    *,
    bsn: str = "111222333",
    recipients: tuple[str, ...] = (COORDINATOR,),
) -> str:
    async with acting_as(network, org) as organisation:
        return (await organisation.send_signal(_signal(text, bsn), recipients)).id


async def stored_envelope(network: Network, message_id: str) -> dict[str, Any]:
    ((text,),) = await network.database.rows(
        "SELECT envelope FROM messages WHERE id = :id", id=message_id
    )
    envelope: dict[str, Any] = json.loads(text)
    return envelope


async def rewrite_envelope(network: Network, message_id: str, envelope: dict[str, Any]) -> None:
    text = json.dumps(envelope, sort_keys=True, separators=(",", ":"))
    changed = await network.database.sql(
        "UPDATE messages SET envelope = :text WHERE id = :id", text=text, id=message_id
    )
    assert changed == 1


async def message_count(network: Network) -> int:
    ((count,),) = await network.database.rows("SELECT count(*) FROM messages")
    return int(count)


async def acked_at(network: Network, message_id: str, recipient: str = COORDINATOR) -> int | None:
    ((when,),) = await network.database.rows(
        "SELECT d.acked_at FROM deliveries d JOIN messages m ON m.cursor = d.cursor "
        "WHERE m.id = :id AND d.recipient = :recipient",
        id=message_id,
        recipient=recipient,
    )
    return None if when is None else int(when)


async def cursor_of(network: Network, message_id: str) -> int:
    ((cursor,),) = await network.database.rows(
        "SELECT cursor FROM messages WHERE id = :id", id=message_id
    )
    return int(cursor)


async def held_certificate(network: Network, org: str) -> tuple[bytes, str]:
    ((der, fp),) = await network.database.rows(
        "SELECT certificate, fingerprint FROM organisations WHERE org = :org", org=org
    )
    return bytes(der), str(fp)


async def current_bundle(network: Network, org: str) -> KeyBundle:
    ((wire,),) = await network.database.rows(
        'SELECT wire FROM bundles WHERE org = :org AND "current"', org=org
    )
    return KeyBundle.from_wire(json.loads(wire))


async def serve_bundle(
    network: Network, org: str, bundle: KeyBundle, *, refingerprint: bool
) -> None:
    """Make the hub serve ``bundle`` as ``org``'s current one (and accept envelopes to it)."""
    wire = json.dumps(bundle.to_wire(), sort_keys=True, separators=(",", ":"))
    if refingerprint:  # so that the hub would relay an envelope sealed to it
        changed = await network.database.sql(
            'UPDATE bundles SET wire = :wire, fingerprint = :fp WHERE org = :org AND "current"',
            wire=wire,
            fp=bundle.fingerprint,
            org=org,
        )
    else:
        changed = await network.database.sql(
            'UPDATE bundles SET wire = :wire WHERE org = :org AND "current"', wire=wire, org=org
        )
    assert changed == 1


async def serve_certificate(network: Network, org: str, der: bytes, fp: str | None) -> None:
    if fp is None:  # the fingerprint column is unique: keep it when the DER is another org's
        changed = await network.database.sql(
            "UPDATE organisations SET certificate = :der WHERE org = :org", der=der, org=org
        )
    else:
        changed = await network.database.sql(
            "UPDATE organisations SET certificate = :der, fingerprint = :fp WHERE org = :org",
            der=der,
            fp=fp,
            org=org,
        )
    assert changed == 1


def org_keys(network: Network, org: str) -> OrgKeys:
    return OrgKeys.open(network.demo.home(org) / "keys", network.demo.passphrase)


def forge_bundle(template: KeyBundle, key: Ed25519PrivateKey, **changes: Any) -> KeyBundle:
    """``template`` with a KEM key the hub holds the private half of, signed by ``key``."""
    hub_kem = kem_public_bytes(os.urandom(KEM_SEED_BYTES))
    unsigned = dataclasses.replace(template, public_key=hub_kem, **changes)
    return dataclasses.replace(unsigned, sig=key.sign(unsigned.signed_bytes()))


def on_both_databases(cases: list[Any], *, postgres: set[str]) -> list[Any]:
    """Each case on SQLite, and those named in ``postgres`` on PostgreSQL too.

    The cases of one matrix differ in what the test changes in memory, not in the SQL
    it runs on the hub's database: a few of them (together running every statement of
    the helpers above) cover PostgreSQL, and keep the suite fast. Overrides the
    ``database_kind`` fixture; the PostgreSQL cases skip or fail as the fixture's do.
    """
    assert postgres <= {case.id for case in cases}, postgres
    both = []
    for case in cases:
        both.append(pytest.param("sqlite", *case.values, id=f"sqlite-{case.id}", marks=case.marks))
        if case.id in postgres:
            marks = [*case.marks, pytest.mark.postgres]
            both.append(
                pytest.param("postgresql", *case.values, id=f"postgresql-{case.id}", marks=marks)
            )
    return both


def _flip(text: str, index: int) -> str:
    data = bytearray(b64d(text))
    data[index] ^= 0x01
    return b64e(bytes(data))


# -- 1. altered envelopes ---------------------------------------------------------------

Tamper = Callable[[dict[str, Any], dict[str, Any], "Network"], Awaitable[None]]


async def _body_byte(env: dict[str, Any], good: dict[str, Any], network: Network) -> None:
    env["body"] = _flip(env["body"], 30)  # in the ciphertext, past the 24-byte nonce


async def _pseudonyms(env: dict[str, Any], good: dict[str, Any], network: Network) -> None:
    assert env["header"]["pseudonyms"] != good["header"]["pseudonyms"]
    env["header"]["pseudonyms"] = good["header"]["pseudonyms"]  # link it to another person


async def _kind(env: dict[str, Any], good: dict[str, Any], network: Network) -> None:
    env["header"]["kind"] = "referral"


async def _sender(env: dict[str, Any], good: dict[str, Any], network: Network) -> None:
    env["header"]["sender"] = "ggd"  # attributed to another, genuine and valid, sender
    env["header"]["sender_cert"] = (await held_certificate(network, "ggd"))[1]


async def _sender_cert(env: dict[str, Any], good: dict[str, Any], network: Network) -> None:
    env["header"]["sender_cert"] = fingerprint(b"no such certificate")


async def _wrapped_key(env: dict[str, Any], good: dict[str, Any], network: Network) -> None:
    env["keys"][COORDINATOR] = _flip(env["keys"][COORDINATOR], 1130)


async def _other_recipients_key(
    env: dict[str, Any], good: dict[str, Any], network: Network
) -> None:
    # Our own key and the body still decrypt: only the signature can tell.
    env["keys"]["ggd"] = _flip(env["keys"]["ggd"], 1130)


async def _signature(env: dict[str, Any], good: dict[str, Any], network: Network) -> None:
    env["sig"] = _flip(env["sig"], 0)


async def _swap_body(env: dict[str, Any], good: dict[str, Any], network: Network) -> None:
    env["body"] = good["body"]


async def _unparsable(env: dict[str, Any], good: dict[str, Any], network: Network) -> None:
    env["body"] = "not base64url!"


TAMPERS: list[Any] = [
    pytest.param(_body_byte, REASON_ENVELOPE, "police", False, id="body-byte"),
    pytest.param(_pseudonyms, REASON_ENVELOPE, "police", False, id="header-pseudonyms"),
    pytest.param(_kind, REASON_ENVELOPE, "police", False, id="header-kind"),
    pytest.param(_sender, REASON_ENVELOPE, "ggd", False, id="header-sender"),
    pytest.param(_sender_cert, REASON_SENDER, "police", False, id="header-sender-cert"),
    pytest.param(_wrapped_key, REASON_ENVELOPE, "police", False, id="wrapped-key"),
    pytest.param(_other_recipients_key, REASON_ENVELOPE, "police", True, id="other-wrapped-key"),
    pytest.param(_signature, REASON_ENVELOPE, "police", False, id="signature"),
    pytest.param(_swap_body, REASON_ENVELOPE, "police", False, id="swapped-body"),
    pytest.param(_unparsable, REASON_MALFORMED, "police", False, id="unparsable"),
]


@pytest.mark.parametrize(
    ("database_kind", "tamper", "reason", "named_sender", "to_ggd_too"),
    on_both_databases(TAMPERS, postgres={"body-byte", "header-sender", "unparsable"}),
)
async def test_an_altered_envelope_is_rejected_kept_unacknowledged_and_the_next_one_received(
    network: Network, tamper: Tamper, reason: str, named_sender: str, to_ggd_too: bool
) -> None:
    recipients = (COORDINATOR, "ggd") if to_ggd_too else (COORDINATOR,)
    bad_id = await send(network, "police", "altered", bsn="111222333", recipients=recipients)
    good_id = await send(network, "police", "intact", bsn="123456782")
    envelope = await stored_envelope(network, bad_id)
    await tamper(envelope, await stored_envelope(network, good_id), network)
    assert envelope != await stored_envelope(network, bad_id)  # the hub really changed something
    await rewrite_envelope(network, bad_id, envelope)

    async with acting_as(network, COORDINATOR) as coordinator:
        result = await coordinator.receive()
        page = await coordinator.hub.inbox(after=0)
        stored_bad = coordinator.state.message(bad_id)
        stored_good = coordinator.state.message(good_id)
        rejected = coordinator.state.rejected()
        with pytest.raises(NotReady):
            coordinator.show(bad_id)
        shown = coordinator.show(good_id)

    bad_cursor = await cursor_of(network, bad_id)
    # rejected, with the category of what failed, and the good message next to it received
    assert result.rejected == (RejectedMessage(bad_id, bad_cursor, named_sender, reason),)
    assert [m.id for m in result.messages] == [good_id]
    assert result.messages[0].payload["text"] == "intact"
    assert shown.payload["text"] == "intact"
    # not acknowledged: the hub keeps it for an investigation (both in its table and its API)
    assert await acked_at(network, bad_id) is None
    assert await acked_at(network, good_id) is not None
    assert {item.cursor: item.acknowledged for item in page.messages} == {
        bad_cursor: False,
        await cursor_of(network, good_id): True,
    }
    # not stored as received; recorded as rejected
    assert stored_bad is None
    assert stored_good is not None and stored_good.acked_at is not None
    assert rejected == [(bad_id, bad_cursor, reason)]


async def test_a_message_for_someone_else_put_in_our_inbox_is_rejected(network: Network) -> None:
    """The hub delivers police's message to the GGD into the coordinator's inbox too."""
    other_id = await send(network, "police", "for the GGD only", recipients=("ggd",))
    cursor = await cursor_of(network, other_id)
    await network.database.sql(
        "INSERT INTO deliveries (recipient, cursor) VALUES (:org, :cursor)",
        org=COORDINATOR,
        cursor=cursor,
    )
    async with acting_as(network, COORDINATOR) as coordinator:
        result = await coordinator.receive()
        stored = coordinator.state.message(other_id)
    assert result.messages == ()
    assert result.rejected == (RejectedMessage(other_id, cursor, "police", REASON_ENVELOPE),)
    assert stored is None
    assert await acked_at(network, other_id) is None


# -- 2. and 3. substituted key bundles and certificates ---------------------------------


async def _bundle_fresh_key(network: Network, genuine: KeyBundle) -> tuple[KeyBundle, bool]:
    return forge_bundle(genuine, Ed25519PrivateKey.generate()), True


async def _bundle_ggd_key(network: Network, genuine: KeyBundle) -> tuple[KeyBundle, bool]:
    # names the coordinator's genuine certificate, signed by the GGD's genuine key
    return forge_bundle(genuine, org_keys(network, "ggd").signing_key), True


async def _bundle_ggd_certificate(network: Network, genuine: KeyBundle) -> tuple[KeyBundle, bool]:
    # names the GGD's genuine certificate and is signed by its key: valid, but not the
    # coordinator's
    ggd_fp = (await held_certificate(network, "ggd"))[1]
    return forge_bundle(genuine, org_keys(network, "ggd").signing_key, cert=ggd_fp), True


async def _bundle_of_ggd(network: Network, genuine: KeyBundle) -> tuple[KeyBundle, bool]:
    return await current_bundle(network, "ggd"), False  # the GGD's own, untouched


@pytest.mark.parametrize(
    ("database_kind", "forge"),
    on_both_databases(
        [
            pytest.param(_bundle_fresh_key, id="fresh-key"),
            pytest.param(_bundle_ggd_key, id="signed-by-ggd-key"),
            pytest.param(_bundle_ggd_certificate, id="signed-by-ggd-certificate"),
            pytest.param(_bundle_of_ggd, id="ggd-genuine-bundle"),
        ],
        postgres={"fresh-key", "ggd-genuine-bundle"},
    ),
)
async def test_a_substituted_key_bundle_is_refused_and_nothing_is_sent(
    network: Network, forge: Callable[[Network, KeyBundle], Awaitable[tuple[KeyBundle, bool]]]
) -> None:
    genuine = await current_bundle(network, COORDINATOR)
    forged, refingerprint = await forge(network, genuine)
    assert forged.fingerprint != genuine.fingerprint
    await serve_bundle(network, COORDINATOR, forged, refingerprint=refingerprint)

    async with acting_as(network, "police") as police:
        with pytest.raises(VerificationFailed) as caught:
            await police.send_signal(_signal("never sealed", "111222333"), [COORDINATOR])
        sent = police.state.sent()
        cached = police.state.cached_directory(COORDINATOR, root=police.keys.root.fingerprint)

    assert (caught.value.what, caught.value.org) == ("key bundle", COORDINATOR)
    assert await message_count(network) == 0
    assert sent == []
    assert cached is None  # a bundle that did not verify drops the entry


async def test_a_rotated_bundle_served_again_is_refused_naming_the_organisation(
    network: Network,
) -> None:
    """After the coordinator rotates its keys, the hub serves its old bundle again.

    The old bundle is genuine and still valid, and the hub would relay envelopes sealed to
    it (its private key is the one the coordinator may already have deleted, or that a
    thief of old keys holds). A sender that saw the new bundle refuses the old one.
    """
    old = await current_bundle(network, COORDINATOR)
    async with acting_as(network, COORDINATOR) as coordinator:
        rotation = await coordinator.rotate_keys()
    assert rotation.published and rotation.bundle.not_before > old.not_before
    new = await current_bundle(network, COORDINATOR)
    assert new.fingerprint == rotation.bundle.fingerprint
    first = await send(network, "police", "sealed to the new key")
    header = (await stored_envelope(network, first))["header"]
    assert header["recipient_keys"][COORDINATOR] == new.fingerprint

    # the hostile operator makes the old bundle current again
    changed = await network.database.sql(
        'UPDATE bundles SET "current" = (fingerprint = :old) WHERE org = :org',
        old=old.fingerprint,
        org=COORDINATOR,
    )
    assert changed == 2
    assert (await current_bundle(network, COORDINATOR)).fingerprint == old.fingerprint
    before = await message_count(network)
    async with acting_as(network, "police") as police:
        with pytest.raises(VerificationFailed) as caught:
            await police.send_signal(_signal("never sealed", "111222333"), [COORDINATOR])
        floor = police.state.bundle_floor(COORDINATOR, root=police.keys.root.fingerprint)
    assert (caught.value.what, caught.value.org) == ("key bundle", COORDINATOR)
    assert f"older than bundle {new.fingerprint}" in str(caught.value)
    assert f"{COORDINATOR!r}" in str(caught.value)
    assert await message_count(network) == before
    assert floor is not None and floor.fingerprint == new.fingerprint
    # A sender that never saw the new bundle can not tell (SECURITY.md says so); the
    # coordinator's own key is still there, so what is sealed to the old bundle opens.


async def _rogue_root_certificate(network: Network) -> tuple[bytes, str | None, Ed25519PrivateKey]:
    """A coordinator certificate from another root for the same network name."""
    root_key, key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    now = network.started
    root = create_root(root_key, network.demo.network, now=now, days=30, serial=1)
    request = create_enrolment_request(key, network.demo.network, OrgId(COORDINATOR))
    roles = (ROLE_MEMBER, ROLE_COORDINATOR)
    cert = issue_certificate(root_key, root, request, roles, now=now, days=30, serial=7)
    return cert.der, cert.fingerprint, key


async def _ggd_certificate(network: Network) -> tuple[bytes, str | None, Ed25519PrivateKey]:
    """The GGD's genuine certificate, served as the coordinator's (the GGD colludes)."""
    return (await held_certificate(network, "ggd"))[0], None, org_keys(network, "ggd").signing_key


async def _hub_certificate(network: Network) -> tuple[bytes, str | None, Ed25519PrivateKey]:
    """The hub's own genuine, root-issued certificate, whose key the hub holds."""
    keys = HubKeys.open(network.demo.hub_dir, network.demo.passphrase)
    assert keys.certificate is not None
    return keys.certificate.der, keys.certificate.fingerprint, keys.signing_key


@pytest.mark.parametrize(
    ("database_kind", "substitute"),
    on_both_databases(
        [
            pytest.param(_rogue_root_certificate, id="another-root"),
            pytest.param(_ggd_certificate, id="ggd-certificate"),
            pytest.param(_hub_certificate, id="hub-certificate"),
        ],
        postgres={"another-root", "ggd-certificate"},
    ),
)
async def test_a_substituted_certificate_is_refused_and_nothing_is_sent(
    network: Network,
    substitute: Callable[[Network], Awaitable[tuple[bytes, str | None, Ed25519PrivateKey]]],
) -> None:
    der, fp, key = await substitute(network)
    # A consistent forgery: the bundle names the substituted certificate and is signed by
    # its key, so only the certificate's own checks can catch it.
    bundle = forge_bundle(await current_bundle(network, COORDINATOR), key, cert=fingerprint(der))
    await serve_certificate(network, COORDINATOR, der, fp)
    await serve_bundle(network, COORDINATOR, bundle, refingerprint=True)

    async with acting_as(network, "police") as police:
        with pytest.raises(VerificationFailed) as caught:
            await police.send_signal(_signal("never sealed", "111222333"), [COORDINATOR])
        sent = police.state.sent()

    assert (caught.value.what, caught.value.org) == ("certificate", COORDINATOR)
    assert await message_count(network) == 0
    assert sent == []


# -- 4. revocation ----------------------------------------------------------------------


async def _sealed_to_shelter(network: Network) -> Envelope:
    """An envelope from police to the shelter, sealed while the shelter was still valid."""
    async with acting_as(network, "police") as police:
        _, bundle = await police.recipient("shelter")
        return seal(
            message_id=new_message_id(os.urandom),
            network=police.keys.network,
            sender=police.certificate(),
            sender_key=police.keys.signing_key,
            recipients={OrgId("shelter"): bundle},
            kind="signal",
            payload=encode_payload(_signal("sealed before revocation", "111222333")),
            created=police.now(),
            rng=os.urandom,
        )


async def _revoke(network: Network, org: str) -> int:
    """The authority revokes ``org`` and uploads the new CRL to the hub; its number."""
    authority = network.authority()
    (serial,) = [s for s, record in authority.issued.items() if record.org == org]
    crl = authority.revoke(serial, now=network.started)
    async with acting_as(network, "police") as anyone:
        await anyone.hub.put_crl(crl.der)
    return crl.number


async def test_a_revoked_recipient_is_refused_by_the_client_and_by_the_hub(
    network: Network,
) -> None:
    early = await _sealed_to_shelter(network)
    from_shelter = await send(network, "shelter", "sent before revocation")
    before = await message_count(network)
    await _revoke(network, "shelter")

    async with acting_as(network, "police") as police:
        with pytest.raises(VerificationFailed) as caught:
            await police.send_signal(_signal("never sealed", "111222333"), ["shelter"])
        with pytest.raises(HubProblem) as refused:
            await police.hub.send(early)
        sent = police.state.sent()

    assert (caught.value.what, caught.value.org) == ("certificate", "shelter")
    assert "revoked" in str(caught.value)
    assert (refused.value.status, refused.value.slug) == (422, "unknown-recipient")
    assert await message_count(network) == before
    assert sent == []

    # ... and the shelter's signature is no longer accepted either
    async with acting_as(network, COORDINATOR) as coordinator:
        result = await coordinator.receive()
    cursor = await cursor_of(network, from_shelter)
    assert result.messages == ()
    assert result.rejected == (RejectedMessage(from_shelter, cursor, "shelter", REASON_SENDER),)
    assert await acked_at(network, from_shelter) is None


@pytest.mark.parametrize("withheld", ["newest", "all"])
async def test_a_hub_that_rolls_back_or_withholds_the_crl_is_caught(
    network: Network, withheld: str
) -> None:
    early = await _sealed_to_shelter(network)
    number = await _revoke(network, "shelter")
    async with acting_as(network, "police") as police:  # police sees the new list once
        with pytest.raises(VerificationFailed):
            await police.send_signal(_signal("never sealed", "111222333"), ["shelter"])
        assert police.state.crl_number == number

    # the hub forgets the revocation
    if withheld == "newest":
        forgotten = await network.database.sql("DELETE FROM crl WHERE number = :n", n=number)
        assert forgotten == 1
    else:
        assert await network.database.sql("DELETE FROM crl") >= 1
    network.hub_rereads_its_directory()  # the hostile hub acts on what it now holds

    async with acting_as(network, "police") as police:
        with pytest.raises(VerificationFailed) as caught:
            await police.send_signal(_signal("never sealed", "111222333"), ["shelter"])
        sent = police.state.sent()
    assert caught.value.what == "revocation list"
    assert await message_count(network) == 0
    assert sent == []

    # the hub itself relays to the shelter again: only the client stood in the way
    async with acting_as(network, "police") as police:
        _, _, created = await police.hub.send(early)
    assert created and await message_count(network) == 1


async def test_a_crl_signed_by_another_root_is_refused(network: Network) -> None:
    number = await _revoke(network, "shelter")
    rogue_key = Ed25519PrivateKey.generate()
    now = network.started
    rogue_root = create_root(rogue_key, network.demo.network, now=now, days=30, serial=1)
    # a newer-numbered list that revokes nobody, from a root of the same network name
    forged = create_crl(rogue_key, rogue_root, {}, number=number + 10, now=now, days=30)
    replaced = await network.database.sql(
        "UPDATE crl SET der = :der WHERE number = :n", der=forged.der, n=number
    )
    assert replaced == 1

    async with acting_as(network, "police") as police:
        assert police.state.crl_number == 0  # nothing seen before: the signature alone decides
        with pytest.raises(VerificationFailed) as caught:
            await police.send_signal(_signal("never sealed", "111222333"), ["shelter"])
        sent = police.state.sent()
    assert caught.value.what == "revocation list"
    assert await message_count(network) == 0
    assert sent == []


async def test_a_client_that_never_saw_a_crl_does_not_accept_a_hub_without_one(
    network: Network,
) -> None:
    await _revoke(network, "shelter")
    assert await network.database.sql("DELETE FROM crl") >= 1
    async with acting_as(network, "police") as police:
        assert police.state.crl_number == 0  # police never looked before
        with pytest.raises(VerificationFailed):
            await police.send_signal(_signal("to a revoked shelter", "111222333"), ["shelter"])


# -- 5. replays -------------------------------------------------------------------------


async def _duplicate_delivery(network: Network, message_id: str) -> int:
    """Copy the message under a new hub-side row and deliver it again; the new cursor."""
    columns = "sender, kind, created, accepted_at, envelope_fingerprint, envelope, size"
    async with network.database.transaction() as db:
        copied = await db.execute(
            sa.text(
                f"INSERT INTO messages (id, {columns}) "
                f"SELECT :new_id, {columns} FROM messages WHERE id = :id RETURNING cursor"
            ),
            {"new_id": b64e(os.urandom(16)), "id": message_id},
        )
        (cursor,) = copied.one()
        await db.execute(
            sa.text("INSERT INTO deliveries (recipient, cursor) VALUES (:org, :cursor)"),
            {"org": COORDINATOR, "cursor": cursor},
        )
    return int(cursor)


async def _forget_ack_and_reset_cursor(network: Network, message_id: str) -> None:
    cursor = await cursor_of(network, message_id)
    forgotten = await network.database.sql(
        "UPDATE deliveries SET acked_at = NULL WHERE recipient = :org AND cursor = :cursor",
        org=COORDINATOR,
        cursor=cursor,
    )
    assert forgotten == 1
    state = sqlite3.connect(network.demo.home(COORDINATOR) / "state.sqlite", isolation_level=None)
    try:
        state.execute("UPDATE meta SET value = '0' WHERE key = 'inbox_cursor'")
    finally:
        state.close()


@pytest.mark.parametrize("replay", ["cursor-reset", "duplicate-later", "duplicate-same-page"])
async def test_a_replayed_message_is_received_once(network: Network, replay: str) -> None:
    message_id = await send(network, "police", "once only")
    if replay == "duplicate-same-page":
        await _duplicate_delivery(network, message_id)
    async with acting_as(network, COORDINATOR) as coordinator:
        first = await coordinator.receive()
    if replay == "cursor-reset":
        await _forget_ack_and_reset_cursor(network, message_id)
    elif replay == "duplicate-later":
        await _duplicate_delivery(network, message_id)
    async with acting_as(network, COORDINATOR) as coordinator:
        assert replay != "cursor-reset" or coordinator.state.cursor == 0
        again = await coordinator.receive()
        stored = coordinator.state.messages()
        rejected = coordinator.state.rejected()

    assert [m.id for m in first.messages] == [message_id]
    assert first.rejected == ()
    assert again.messages == ()
    assert again.rejected == ()
    assert [m.id for m in stored] == [message_id]
    assert rejected == []
    assert await acked_at(network, message_id) is not None


# -- 6. a non-recipient learns nothing --------------------------------------------------


async def _raw_problem(organisation: Organisation, method: str, path: str) -> dict[str, Any]:
    token = await organisation.hub._ensure_token()
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method,
            organisation.hub.base_url + path,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        ) as response,
    ):
        body = await response.json(content_type=None)
        return {
            "status": response.status,
            "content_type": response.content_type,
            "headers": sorted(
                name.lower() for name in response.headers if name.lower() not in {"date"}
            ),
            "keys": sorted(body),
            **{name: body[name] for name in ("type", "title", "status", "detail")},
        }


async def test_a_non_recipient_cannot_tell_a_message_exists(network: Network) -> None:
    message_id = await send(network, "police", "between police and the coordinator")
    unknown_id = b64e(os.urandom(16))

    async with acting_as(network, "ggd") as ggd:
        outcomes: dict[str, list[Any]] = {}
        for label, mid in (("real", message_id), ("unknown", unknown_id)):
            with pytest.raises(HubProblem) as fetched:
                await ggd.hub.get_message(mid)
            with pytest.raises(HubProblem) as acked:
                await ggd.hub.ack(mid)
            outcomes[label] = [
                (p.status, p.type, p.title, p.detail) for p in (fetched.value, acked.value)
            ]
            outcomes[label + " raw"] = [
                await _raw_problem(ggd, "GET", f"/v1/messages/{mid}"),
                await _raw_problem(ggd, "POST", f"/v1/messages/{mid}/ack"),
            ]
        inbox = await ggd.hub.inbox(after=0)

    assert outcomes["real"][0][0] == 404 and outcomes["real"][1][0] == 404
    assert outcomes["real"] == outcomes["unknown"]
    assert outcomes["real raw"] == outcomes["unknown raw"]
    assert message_id not in json.dumps(outcomes)  # the detail does not echo the id either
    assert inbox.messages == ()
    assert await acked_at(network, message_id) is None  # the GGD's ack touched nothing

    # the same request from the sender and from the recipient finds it: the id is real
    for org in ("police", COORDINATOR):
        async with acting_as(network, org) as party:
            _, envelope = await party.hub.get_message(message_id)
        assert envelope["header"]["id"] == message_id
