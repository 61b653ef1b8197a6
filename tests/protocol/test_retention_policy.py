"""The retention policy and the erasure report: signing, verifying, bounds and strict wire forms."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.certificate import create_root
from protocol.encoding import b64e
from protocol.errors import EncodingError, ProtocolError, ValidationError, VerificationError
from protocol.pseudonym import LinkingKey, pseudonym
from protocol.retention import (
    BOUNDS,
    DEFAULTS,
    ErasureReport,
    RetentionPolicy,
    create_retention_policy,
    parse_erasure_request,
    verify_retention_policy,
)
from protocol.types import NetworkId

T0 = 1_760_000_000
KEY = Ed25519PrivateKey.generate()
ROOT = create_root(KEY, NetworkId("testnet"), now=T0, days=3650, serial=1)


def policy(**periods: int) -> RetentionPolicy:
    return create_retention_policy(KEY, ROOT, number=1, issued=T0, periods=periods)


def test_a_policy_round_trips_and_verifies() -> None:
    signed = policy(ciphertext_grace_days=7)
    wire = signed.to_wire()
    assert set(wire) == {"v", "network", "number", "issued", "sig", *DEFAULTS}
    assert wire["ciphertext_grace_days"] == 7
    assert wire["access_log_days"] == DEFAULTS["access_log_days"] == 1827
    again = RetentionPolicy.from_wire(wire)
    assert again == signed
    assert verify_retention_policy(again, ROOT) is again
    assert signed.seconds("ciphertext_grace_days") == 7 * 86_400


def test_a_forged_or_altered_policy_does_not_verify() -> None:
    signed = policy()
    longer = replace(signed, case_closed_days=signed.case_closed_days + 1)
    with pytest.raises(VerificationError):
        verify_retention_policy(longer, ROOT)
    other_key = Ed25519PrivateKey.generate()
    forged = replace(signed, sig=other_key.sign(signed.signed_bytes()))
    with pytest.raises(VerificationError):
        verify_retention_policy(forged, ROOT)


def test_a_policy_of_another_network_does_not_verify() -> None:
    other_root = create_root(KEY, NetworkId("othernet"), now=T0, days=3650, serial=1)
    theirs = create_retention_policy(KEY, other_root, number=1, issued=T0)
    with pytest.raises(VerificationError, match="another network"):
        verify_retention_policy(theirs, ROOT)


def test_only_the_roots_own_key_signs() -> None:
    with pytest.raises(ValidationError, match="root certificate"):
        create_retention_policy(Ed25519PrivateKey.generate(), ROOT, number=1, issued=T0)
    with pytest.raises(ValidationError, match="no period"):
        create_retention_policy(KEY, ROOT, number=1, issued=T0, periods={"forever_days": 1})


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_every_period_has_bounds(name: str) -> None:
    low, high = BOUNDS[name]
    others = {"ciphertext_grace_days": 0} if name == "ciphertext_max_days" else {}
    assert policy(**others, **{name: low}).periods()[name] == low
    assert policy(**{name: high}).periods()[name] == high
    for bad in (low - 1, high + 1):
        with pytest.raises(ValidationError, match=name):
            policy(**others, **{name: bad})


def test_the_maximum_age_is_not_below_the_grace_period() -> None:
    with pytest.raises(ValidationError, match="ciphertext_max_days"):
        policy(ciphertext_grace_days=30, ciphertext_max_days=29)
    assert policy(ciphertext_grace_days=30, ciphertext_max_days=30).ciphertext_max_days == 30


def test_the_access_log_keeps_at_least_five_years() -> None:
    assert BOUNDS["access_log_days"][0] == 5 * 365 + 2  # five calendar years, two leap days
    with pytest.raises(ValidationError):
        policy(access_log_days=365)


@pytest.mark.parametrize(
    "change",
    [
        {"extra": 1},
        {"v": 2},
        {"number": 0},
        {"number": True},
        {"issued": -1},
        {"ciphertext_grace_days": "30"},
        {"ciphertext_grace_days": 1.5},
        {"case_idle_days": None},
        {"network": "Not A Network"},
        {"sig": b64e(b"\x00" * 63)},
    ],
)
def test_a_malformed_policy_is_refused(change: dict[str, Any]) -> None:
    wire = {**policy().to_wire(), **change}
    with pytest.raises(ProtocolError):
        RetentionPolicy.from_wire(wire)


def test_a_policy_missing_a_field_is_refused() -> None:
    wire = policy().to_wire()
    del wire["access_log_days"]
    with pytest.raises(EncodingError):
        RetentionPolicy.from_wire(wire)
    with pytest.raises(EncodingError):
        RetentionPolicy.from_wire([wire])


# -- erasure requests and reports --------------------------------------------------------------

LINK = LinkingKey(1, b"k" * 32)
ANNA = sorted(pseudonym("tel", n, LINK) for n in ("0611111111", "0622222222"))


def test_an_erasure_request_names_1_to_32_distinct_pseudonyms() -> None:
    assert parse_erasure_request({"pseudonyms": ANNA[::-1]}) == tuple(ANNA)
    for bad in (
        {"pseudonyms": []},
        {"pseudonyms": [ANNA[0], ANNA[0]]},
        {"pseudonyms": ["tel.1.short"]},
        {"pseudonyms": ANNA[0]},
        {"pseudonyms": [ANNA[0]] * 33},
        {"pseudonyms": ANNA, "more": 1},
        [ANNA],
    ):
        with pytest.raises(ProtocolError):
            parse_erasure_request(bad)


def test_an_erasure_report_round_trips_and_is_strict() -> None:
    report = ErasureReport(
        erased={"case": 1, "ciphertext": 3},
        kept={("access-log", "access-log-period"): 4, ("case", "shared-case"): 1},
        entry=12,
    )
    wire = report.to_wire()
    assert wire["erased"] == [{"kind": "case", "count": 1}, {"kind": "ciphertext", "count": 3}]
    assert ErasureReport.from_wire(wire) == report
    for bad in (
        {**wire, "entry": -1},
        {**wire, "erased": [{"kind": "everything", "count": 1}]},
        {**wire, "erased": [{"kind": "case", "count": 0}]},
        {**wire, "kept": [{"kind": "case", "reason": "because", "count": 1}]},
        {**wire, "kept": [{"kind": "case", "count": 1}]},
        {**wire, "kept": ["case"]},
        {"erased": [], "kept": []},
    ):
        with pytest.raises(ProtocolError):
            ErasureReport.from_wire(bad)
