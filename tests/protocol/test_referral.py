"""The referral state machine: every (step, code, party), legal or not."""

from __future__ import annotations

import itertools

import pytest

from protocol.referral import (
    HOLDER,
    OPEN_STEPS,
    RECIPIENT,
    REFERRER,
    STEPS,
    StepNotAllowed,
    advance,
    allowed_codes,
)

# Written out by hand from docs/protocol.md, "Referrals": (step, code, party) -> entered.
LEGAL = {
    ("sent", "delivered", "recipient"): ("delivered",),
    ("sent", "accepted", "recipient"): ("delivered", "accepted"),
    ("sent", "declined", "recipient"): ("delivered", "declined"),
    ("delivered", "accepted", "recipient"): ("accepted",),
    ("delivered", "declined", "recipient"): ("declined",),
    ("accepted", "care_started", "recipient"): ("care_started",),
    ("care_started", "closed", "recipient"): ("closed",),
    ("care_started", "closed", "referrer"): ("closed",),
    ("sent", "closed", "referrer"): ("closed",),
    ("delivered", "closed", "referrer"): ("closed",),
    ("accepted", "closed", "referrer"): ("closed",),
    ("declined", "closed", "referrer"): ("closed",),
}
ALL = list(itertools.product(STEPS, STEPS, (REFERRER, RECIPIENT)))


@pytest.mark.parametrize(("step", "code", "party"), sorted(LEGAL))
def test_legal_transition(step: str, code: str, party: str) -> None:
    assert advance(step, code, party) == LEGAL[(step, code, party)]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("step", "code", "party"), [t for t in ALL if t not in LEGAL], ids="-".join
)
def test_illegal_transition(step: str, code: str, party: str) -> None:
    with pytest.raises(StepNotAllowed):
        advance(step, code, party)  # type: ignore[arg-type]


def test_sent_accept_covers_the_skipped_acknowledgement_only_for_the_recipient() -> None:
    with pytest.raises(StepNotAllowed):
        advance("sent", "accepted", "referrer")


@pytest.mark.parametrize(
    ("step", "code", "party"),
    [("open", "closed", "referrer"), ("sent", "withdrawn", "referrer"), ("sent", "closed", "hub")],
)
def test_unknown_values_are_illegal(step: str, code: str, party: str) -> None:
    with pytest.raises(StepNotAllowed, match="unknown"):
        advance(step, code, party)  # type: ignore[arg-type]


def test_closed_is_terminal() -> None:
    assert all(not allowed_codes("closed", party) for party in (REFERRER, RECIPIENT))


def test_allowed_codes_match_the_table() -> None:
    for step, party in itertools.product(STEPS, (REFERRER, RECIPIENT)):
        expected = tuple(
            code for code in STEPS if code != "delivered" and (step, code, party) in LEGAL
        )
        if step == "sent" and party == "recipient":
            expected = ("accepted", "declined")
        assert allowed_codes(step, party) == expected  # type: ignore[arg-type]


def test_every_open_step_has_a_holder_who_can_act() -> None:
    assert set(HOLDER) == set(OPEN_STEPS)
    for step, party in HOLDER.items():
        assert allowed_codes(step, party) or step == "sent"
