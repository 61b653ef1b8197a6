"""The referral's state machine: which step follows which, and who may take it.

A referral moves ``sent -> delivered -> accepted | declined -> care_started -> closed``
(``docs/protocol.md``, "Referrals"). ``delivered`` is the recipient's acknowledgement of
the referral envelope; every later step is a signed ``status`` envelope whose header
carries the code, from the *recipient* (accepted, declined, care_started) or, for
``closed``, from the *referrer* at any open step (a withdrawal, or no re-referral after a
decline) or from the recipient once care has started. A status from the recipient while
the referral is still ``sent`` implies its delivery: both steps are entered.

The hub enforces this table; clients use it to offer only the steps that can follow.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal

from protocol.errors import ValidationError

SENT = "sent"
DELIVERED = "delivered"
ACCEPTED = "accepted"
DECLINED = "declined"
CARE_STARTED = "care_started"
CLOSED = "closed"
STEPS: tuple[str, ...] = (SENT, DELIVERED, ACCEPTED, DECLINED, CARE_STARTED, CLOSED)
OPEN_STEPS: tuple[str, ...] = (SENT, DELIVERED, ACCEPTED, DECLINED, CARE_STARTED)

Party = Literal["referrer", "recipient"]
REFERRER: Party = "referrer"
RECIPIENT: Party = "recipient"

# (step, code, party) -> the step entered. "delivered" comes from an acknowledgement.
_TRANSITIONS: Mapping[tuple[str, str, Party], str] = MappingProxyType(
    {
        (SENT, DELIVERED, RECIPIENT): DELIVERED,
        (DELIVERED, ACCEPTED, RECIPIENT): ACCEPTED,
        (DELIVERED, DECLINED, RECIPIENT): DECLINED,
        (ACCEPTED, CARE_STARTED, RECIPIENT): CARE_STARTED,
        (CARE_STARTED, CLOSED, RECIPIENT): CLOSED,
        (CARE_STARTED, CLOSED, REFERRER): CLOSED,
        (SENT, CLOSED, REFERRER): CLOSED,
        (DELIVERED, CLOSED, REFERRER): CLOSED,
        (ACCEPTED, CLOSED, REFERRER): CLOSED,
        (DECLINED, CLOSED, REFERRER): CLOSED,
    }
)

# Who must act next, at each open step.
HOLDER: Mapping[str, Party] = MappingProxyType(
    {
        SENT: RECIPIENT,  # to receive it
        DELIVERED: RECIPIENT,  # to accept or decline
        ACCEPTED: RECIPIENT,  # to start care
        DECLINED: REFERRER,  # to refer again, or close
        CARE_STARTED: REFERRER,  # to close the chain once care runs
    }
)


class StepNotAllowed(ValidationError):
    """This party can not take this step from the referral's current step."""


def advance(step: str, code: str, party: Party) -> tuple[str, ...]:
    """The steps ``party`` enters by sending ``code`` at ``step``, in order.

    Usually one step; two when the recipient answers a referral it never acknowledged
    (``delivered`` first). Raises :class:`StepNotAllowed` for anything else.
    """
    if step not in STEPS or code not in STEPS or party not in (REFERRER, RECIPIENT):
        raise StepNotAllowed("unknown step, status code or party")
    if (step, code, party) in _TRANSITIONS:
        return (_TRANSITIONS[(step, code, party)],)
    if step == SENT and party == RECIPIENT and (DELIVERED, code, party) in _TRANSITIONS:
        return (DELIVERED, _TRANSITIONS[(DELIVERED, code, party)])
    raise StepNotAllowed(f"a {party} can not move a referral from {step} to {code}")


def allowed_codes(step: str, party: Party) -> tuple[str, ...]:
    """The status codes ``party`` may send at ``step`` (for a client's menu)."""
    return tuple(code for code in STEPS if code != DELIVERED and _can(step, code, party))


def _can(step: str, code: str, party: Party) -> bool:
    try:
        advance(step, code, party)
    except StepNotAllowed:
        return False
    return True
