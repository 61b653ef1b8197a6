"""protocol/retirement.py: a linking key's retirement is signed by the root, for its
network, and its wire form is strict."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.certificate import create_root
from protocol.encoding import canonical_json, frame
from protocol.errors import EncodingError, ValidationError, VerificationError
from protocol.retirement import (
    Retirement,
    pseudonym_version,
    sign_retirement,
    verify_retirement,
)
from protocol.types import NetworkId

NOW = 1_760_000_000
KEY = Ed25519PrivateKey.generate()
ROOT = create_root(KEY, NetworkId("region-west"), now=NOW, days=10, serial=1)


def test_a_retirement_round_trips_and_verifies_against_its_root() -> None:
    retirement = sign_retirement(KEY, ROOT, version=3, until=NOW + 5)
    verify_retirement(retirement, ROOT)
    assert Retirement.from_wire(retirement.to_wire()) == retirement
    unsigned = {k: v for k, v in retirement.to_wire().items() if k != "sig"}
    assert retirement.signed_bytes() == frame(
        "schakel/linking-key-retired/v1", canonical_json(unsigned)
    )
    assert not retirement.retired_at(NOW + 5) and retirement.retired_at(NOW + 6)


@pytest.mark.parametrize("change", [{"version": 4}, {"until": NOW + 6}])
def test_a_changed_retirement_does_not_verify(change: dict[str, int]) -> None:
    retirement = dataclasses.replace(sign_retirement(KEY, ROOT, version=3, until=NOW + 5), **change)
    with pytest.raises(VerificationError):
        verify_retirement(retirement, ROOT)


def test_a_retirement_of_another_root_or_network_does_not_verify() -> None:
    other_key = Ed25519PrivateKey.generate()
    other = create_root(other_key, NetworkId("elsewhere"), now=NOW, days=10, serial=1)
    with pytest.raises(VerificationError):
        verify_retirement(sign_retirement(other_key, other, version=1, until=NOW), ROOT)
    with pytest.raises(ValidationError):
        sign_retirement(other_key, ROOT, version=1, until=NOW)


def test_the_wire_form_is_strict() -> None:
    wire = sign_retirement(KEY, ROOT, version=3, until=NOW).to_wire()
    for broken in (
        {**wire, "extra": 1},
        {k: v for k, v in wire.items() if k != "until"},
        {**wire, "version": 0},
        {**wire, "version": True},
        {**wire, "until": "soon"},
        {**wire, "v": 2},
        {**wire, "sig": "AA"},
        [],
    ):
        with pytest.raises((EncodingError, ValidationError)):
            Retirement.from_wire(broken)


def test_the_version_of_a_pseudonym() -> None:
    assert pseudonym_version("bsn.12." + "a" * 52) == 12
