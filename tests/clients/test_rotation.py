"""Key rotation: a new KEM key and bundle, the old one kept until it may go, then deleted.

On the real hub (``conftest.hub``). A bundle is valid for 90 days; the tests move the
shared clock instead of waiting.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from client_harness import MARKER, Hub

from clients.errors import VerificationFailed
from keys.errors import KeyStoreError
from protocol.envelope import Envelope, open_envelope
from protocol.errors import OpenError

DAY = 86400


def signal(text: str = MARKER) -> dict[str, Any]:
    return {"schema": "schakel.signal/1", "person": {"bsn": "111222333"},
            "exploitation": "labour", "urgency": "high", "consent_to_share": True,
            "text": text}  # fmt: skip


def hub_envelope(hub: Hub, message_id: str) -> Envelope:
    ((wire,),) = hub.rows("SELECT envelope FROM messages WHERE id = ?", message_id)
    return Envelope.from_wire(json.loads(wire))


async def test_a_rotation_publishes_a_new_bundle_and_old_messages_still_open(hub: Hub) -> None:
    police, ggd = await hub.join("politie"), await hub.join("ggd")
    before = await police.send_signal(signal("sealed to key 1"), ["ggd"])
    old = (await police.recipient("ggd"))[1]

    rotation = await ggd.rotate_keys()
    assert rotation.published and rotation.key == 2 and rotation.retired == (1,)
    assert rotation.bundle.not_before > old.not_before
    after = await police.send_signal(signal("sealed to key 2"), ["ggd"])
    keys_used = {
        m: hub_envelope(hub, m).header.recipient_keys["ggd"] for m in (before.id, after.id)
    }
    assert keys_used == {before.id: old.fingerprint, after.id: rotation.bundle.fingerprint}
    received = {m.id: m.payload["text"] for m in (await ggd.receive()).messages}
    assert received == {before.id: "sealed to key 1", after.id: "sealed to key 2"}
    [retired] = ggd.retired_keys()
    assert (retired.key, retired.bundles, retired.messages) == (1, (old.fingerprint,), 1)
    assert retired.valid_until == old.not_after


async def test_old_keys_are_deleted_only_when_no_sender_may_seal_to_them(hub: Hub) -> None:
    police, ggd = await hub.join("politie"), await hub.join("ggd")
    waiting = await police.send_signal(signal(), ["ggd"])  # on the hub, not yet received
    await ggd.rotate_keys()
    assert await ggd.delete_retired_keys() == ()  # its bundle is valid for 90 days more
    assert ggd.keys.kem_ids == (1, 2)
    # ... but reading the inbox came first: the message sealed to the old key is in
    assert ggd.state.message(waiting.id) is not None

    await hub.advance(91 * DAY)
    assert await ggd.delete_retired_keys() == (1,)
    assert ggd.keys.kem_ids == (2,) and ggd.retired_keys() == ()
    assert not (ggd.keys.directory / "kem-1.key").exists()
    # what was received stays readable here, from the payload kept sealed locally ...
    shown = ggd.show(waiting.id)
    assert shown.payload == signal() and shown.sender == "politie"
    state = b"".join(p.read_bytes() for p in hub.home("ggd").glob("state.sqlite*"))
    assert MARKER.encode() not in state
    # ... while the hub's copy no longer opens with every key the organisation holds
    with pytest.raises(OpenError):
        open_envelope(
            hub_envelope(hub, waiting.id),
            recipient=ggd.org,
            kem_keys=ggd.keys.kem_keys,
            sender=police.certificate(),
        )


async def test_keys_can_be_deleted_before_expiry_when_asked(hub: Hub) -> None:
    _, ggd = await hub.join("politie"), await hub.join("ggd")
    await ggd.rotate_keys()
    assert await ggd.delete_retired_keys(before_expiry=True) == (1,)
    with pytest.raises(KeyStoreError, match="current KEM key can not be deleted"):
        ggd.keys.delete_kem(ggd.keys.kem_current)


async def test_a_kept_message_that_was_altered_does_not_open(hub: Hub) -> None:
    police, ggd = await hub.join("politie"), await hub.join("ggd")
    sent = await police.send_signal(signal(), ["ggd"])
    await ggd.receive()
    await ggd.rotate_keys()
    await ggd.delete_retired_keys(before_expiry=True)
    assert ggd.show(sent.id).payload == signal()  # no KEM key needed: kept sealed locally
    db = ggd.state._db
    [(sealed,)] = db.execute("SELECT sealed FROM messages").fetchall()
    flipped = bytes(sealed[:-1]) + bytes([sealed[-1] ^ 1])
    db.execute("UPDATE messages SET sealed = ?", (flipped,))
    with pytest.raises(VerificationFailed, match="stored message of organisation 'politie'"):
        ggd.show(sent.id)


async def test_a_rotation_the_hub_can_not_take_now_is_published_later(hub: Hub) -> None:
    police, ggd = await hub.join("politie"), await hub.join("ggd")
    hub.taps["ggd"].down = True
    rotation = await ggd.rotate_keys()
    assert not rotation.published and "unreachable" in str(rotation.problem)
    assert ggd.keys.kem_current == 2  # current here all the same
    hub.taps["ggd"].down = False
    published = await ggd.publish()
    assert published.bundle == rotation.bundle.fingerprint
    assert (await police.recipient("ggd"))[1].fingerprint == rotation.bundle.fingerprint


async def test_a_rotated_bundle_served_again_is_refused(hub: Hub) -> None:
    police, ggd = await hub.join("politie"), await hub.join("ggd")
    old = (await police.recipient("ggd"))[1]
    new = (await ggd.rotate_keys()).bundle
    assert (await police.recipient("ggd"))[1] == new
    assert hub.sql('UPDATE bundles SET "current" = (fingerprint = ?) WHERE org = ?',
                   old.fingerprint, "ggd") == 2  # fmt: skip
    with pytest.raises(VerificationFailed, match=f"older than bundle {new.fingerprint}"):
        await police.recipient("ggd")
    # a new process of the police remembers it too
    police = await hub.restart("politie")
    with pytest.raises(VerificationFailed, match="key bundle of organisation 'ggd'"):
        await police.send_signal(signal(), ["ggd"])
