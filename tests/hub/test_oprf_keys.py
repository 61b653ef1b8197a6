"""The hub holds and serves the pseudonymisation services' key statements (issue 15):
root-signed, one per version and share, renewed for the same key only; it never uses them.
On both databases (the ``hub`` fixture)."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import oprf
from protocol.oprfkeys import OprfKeyStatement, make_key_request, sign_key_statement
from protocol.retirement import sign_retirement
from protocol.types import ServiceName

if TYPE_CHECKING:
    from conftest import HubHarness

DAY = 86_400
ROUTE = "/v1/directory/oprf-keys"


def _statement(
    hub: HubHarness,
    share: int,
    *,
    seed: bytes = b"key",
    version: int = 3,
    url: str = "https://oprf.example.nl",
    not_before: int | None = None,
) -> OprfKeyStatement:
    key = oprf.random_scalar(hashlib.sha512(seed + bytes([share])).digest())
    request = make_key_request(
        key,
        hub.config.network,
        ServiceName(f"oprf-{share}"),
        share,
        r=oprf.random_scalar(bytes(63) + b"\x01"),
    )
    start = hub.clock() - 10 if not_before is None else not_before
    return sign_key_statement(
        hub.authority.key,
        hub.authority.root,
        request,
        version=version,
        url=url,
        not_before=start,
        not_after=start + 30 * DAY,
    )


async def _served(hub: HubHarness) -> list[object]:
    response = await hub.client.get(ROUTE)  # no token: the statements are public
    assert response.status == 200
    return (await response.json())["oprf_keys"]


async def test_statements_are_held_by_version_and_share_and_served_without_a_token(
    hub: HubHarness,
) -> None:
    assert await _served(hub) == []
    two, one = _statement(hub, 2), _statement(hub, 1)
    assert (await hub.post(ROUTE, two.to_wire())).status == 201
    assert (await hub.post(ROUTE, one.to_wire())).status == 201
    assert (await hub.post(ROUTE, one.to_wire())).status == 200  # identical: held
    assert await _served(hub) == [one.to_wire(), two.to_wire()]
    # A later statement for the same key (renewed, or the service moved) replaces it ...
    moved = _statement(hub, 1, url="https://oprf-new.example.nl", not_before=hub.clock() - 5)
    assert (await hub.post(ROUTE, moved.to_wire())).status == 201
    assert await _served(hub) == [moved.to_wire(), two.to_wire()]
    # ... an earlier one, or another key for the share, does not.
    await hub.problem(await hub.post(ROUTE, one.to_wire()), 409, "conflict")
    rival = _statement(hub, 1, seed=b"rival")
    await hub.problem(await hub.post(ROUTE, rival.to_wire()), 409, "conflict")
    assert await _served(hub) == [moved.to_wire(), two.to_wire()]
    entries = await hub.audit()
    assert [e.outcome for e in entries if e.action == "create"][-2:] == ["denied", "denied"]


async def test_a_statement_not_signed_by_the_root_or_not_valid_now_is_refused(
    hub: HubHarness,
) -> None:
    honest = _statement(hub, 1)
    forged = dataclasses.replace(
        honest, sig=Ed25519PrivateKey.generate().sign(honest.signed_bytes())
    )
    await hub.problem(await hub.post(ROUTE, forged.to_wire()), 422, "invalid-credential")
    future = _statement(hub, 1, not_before=hub.clock() + DAY)
    await hub.problem(await hub.post(ROUTE, future.to_wire()), 422, "invalid-credential")
    wire = _statement(hub, 1).to_wire()
    for broken in ({**wire, "extra": 1}, {**wire, "url": "ftp://x"}, {**wire, "share": 3}, []):
        await hub.problem(await hub.post(ROUTE, broken), 400, "malformed")
    assert await _served(hub) == []


RETIRED = "/v1/directory/retired-linking-keys"


async def test_a_retirement_is_held_once_and_served_without_a_token(hub: HubHarness) -> None:
    root_key, root = hub.authority.key, hub.authority.root
    retirement = sign_retirement(root_key, root, version=1, until=hub.clock() + DAY)
    assert (await hub.post(RETIRED, retirement.to_wire())).status == 201
    assert (await hub.post(RETIRED, retirement.to_wire())).status == 200
    other = sign_retirement(root_key, root, version=1, until=hub.clock() + 2 * DAY)
    await hub.problem(await hub.post(RETIRED, other.to_wire()), 409, "conflict")
    forged = dataclasses.replace(other, sig=Ed25519PrivateKey.generate().sign(other.signed_bytes()))
    await hub.problem(await hub.post(RETIRED, forged.to_wire()), 422, "invalid-credential")
    await hub.problem(await hub.post(RETIRED, {**other.to_wire(), "until": -1}), 400, "malformed")
    response = await hub.client.get(RETIRED)
    assert (await response.json()) == {"retired_linking_keys": [retirement.to_wire()]}


async def test_after_its_retirement_the_relay_refuses_a_linking_key_version(
    hub: HubHarness,
) -> None:
    """Until ``until`` a signal with version-1 pseudonyms is accepted (the window); after
    it, refused, while other versions and signals without pseudonyms still pass."""
    police, ggd = await hub.enrol("police"), await hub.enrol("ggd")
    old = hub.pseudonyms("+31612345678")  # version 1
    assert old[0].startswith("tel.1.")
    retirement = sign_retirement(
        hub.authority.key, hub.authority.root, version=1, until=hub.clock()
    )
    assert (await hub.post(RETIRED, retirement.to_wire())).status == 201
    within = hub.envelope(police, [ggd], pseudonyms=old)
    assert (await hub.send(police, within)).status == 201  # the last second of the window
    hub.clock.advance(1)
    late = hub.envelope(police, [ggd], pseudonyms=old)
    problem = await hub.problem(await hub.send(police, late), 422, "invalid-envelope")
    assert "version 1" in problem["detail"] and "retired" in problem["detail"]
    newer = tuple(p.replace("tel.1.", "tel.2.", 1) for p in old)
    assert (await hub.send(police, hub.envelope(police, [ggd], pseudonyms=newer))).status == 201
    assert (await hub.send(police, hub.envelope(police, [ggd]))).status == 201
