"""Referrals and their statuses, checked before anything is sent.

Used through :class:`clients.organisation.Organisation` (``send_referral``,
``send_status``); the functions here take any :class:`Sender`, the narrow part of an
organisation they need.

* A **referral** (``schakel.referral/1``) goes to one organisation certified as
  shelter, care or legal aid, about a case (``case``, coordinators only) or about a
  person (pseudonyms derived from ``payload.person``); ``replaces`` names the declined
  referral it takes over.
* A **status** (``schakel.status/1``) moves a referral on. It goes to the referral's
  other party: its sender when this organisation received it, else its recipient.
  When the client can tell the referral's step from what it holds locally (what it
  received, sent, and what waits in its outbox), it offers only the codes
  :func:`protocol.referral.allowed_codes` allows; the hub is the judge. A
  ``care_started_on`` date is never before the day the referral was made.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from clients.errors import ClientError, NotReady, PayloadInvalid
from clients.linking import Linked
from clients.outbox import Draft, Sent
from clients.payloads import check_dates, day_of, validate_payload
from clients.state import LocalState, StoredMessage
from protocol import referral as machine
from protocol.cases import REFERRAL_TYPES
from protocol.certificate import Certificate
from protocol.envelope import STATUS_CODES
from protocol.errors import ProtocolError
from protocol.keybundle import KeyBundle
from protocol.types import (
    CaseRef,
    MessageId,
    OrgId,
    Pseudonym,
    parse_case_ref,
    parse_message_id,
)


class Sender(Protocol):
    """What referrals and statuses need of an organisation."""

    @property
    def state(self) -> LocalState: ...

    def now(self) -> int: ...

    def recipients_of(self, kind: str, recipients: Iterable[str]) -> list[OrgId]: ...

    async def link(self, payload: dict[str, Any]) -> Linked: ...

    def waiting_about(self, ref: str) -> list[Draft]: ...

    async def trust_anchors(self) -> None: ...

    async def recipient(self, org: str) -> tuple[Certificate, KeyBundle]: ...

    async def dispatch(
        self,
        kind: str,
        payload: dict[str, Any],
        orgs: list[OrgId],
        *,
        pseudonyms: tuple[Pseudonym, ...] = (),
        pseudonymise: bool = False,
        status: str | None = None,
        ref: MessageId | None = None,
        case: CaseRef | None = None,
    ) -> Sent: ...


async def send_referral(
    org: Sender,
    payload: dict[str, Any],
    to: str,
    *,
    case: str | None = None,
    replaces: str | None = None,
) -> Sent:
    """Validate and send a referral to ``to``; it names ``case``, or a person, or both."""
    validate_payload("referral", payload)
    check_dates(payload, today=day_of(org.now()))
    case_ref = None if case is None else CaseRef(_parsed(parse_case_ref, case, "case"))
    replaced = None if replaces is None else _message_id(replaces, "replaces")
    recipients = org.recipients_of("referral", [to])
    linked = await org.link(payload)
    if case_ref is None and not linked:
        raise PayloadInvalid(
            "a referral names a case, or a person by an identifier (BSN, phone, name with "
            "date of birth, or travel document)",
            "$.person",
        )
    await org.trust_anchors()
    cert, _ = await org.recipient(recipients[0])
    if cert.org_type not in REFERRAL_TYPES:
        raise ClientError(
            f"organisation {cert.org!r} is certified as {cert.org_type}: a referral goes to "
            f"an organisation of type {', '.join(REFERRAL_TYPES)}"
        )
    return await org.dispatch(
        "referral",
        payload,
        recipients,
        pseudonyms=linked.pseudonyms,
        pseudonymise=linked.later,
        ref=replaced,
        case=case_ref,
    )


async def send_status(org: Sender, referral_id: str, code: str, payload: dict[str, Any]) -> Sent:
    """Send status ``code`` about a referral this organisation sent or received."""
    ref = _message_id(referral_id, "referral")
    if code not in STATUS_CODES:
        raise PayloadInvalid(f"must be one of: {', '.join(STATUS_CODES)}", "status")
    validate_payload("status", payload)
    if payload.get("status") != code:
        raise PayloadInvalid(f"must be the status code sent ({code})", "$.status")
    check_dates(payload, today=day_of(org.now()))
    other, party, made = referral_party(org, ref)
    _check_care_start(payload, made)
    step = known_step(org, ref, party)
    if step is not None and code not in machine.allowed_codes(step, party):
        allowed = ", ".join(machine.allowed_codes(step, party)) or "none"
        raise ClientError(
            f"as the referral's {party}, at step {step}, this organisation can send: {allowed}"
        )
    return await org.dispatch("status", payload, [other], status=code, ref=ref)


def _check_care_start(payload: dict[str, Any], made: int) -> None:
    started = payload.get("care_started_on")
    if started is None:
        return
    made_on = day_of(made)
    if datetime.date.fromisoformat(started) < made_on:
        raise PayloadInvalid(
            f"is before the referral was made ({made_on.isoformat()}): care can not start "
            "before the referral",
            "$.care_started_on",
        )


def referral_party(org: Sender, referral_id: str) -> tuple[OrgId, machine.Party, int]:
    """(the other party, our part, when it was made) of a referral we received or sent."""
    received = org.state.message(referral_id)
    if received is not None and received.kind == "referral":
        return OrgId(received.sender), machine.RECIPIENT, received.created
    sent = org.state.sent_message(referral_id)
    if sent is not None and sent.kind == "referral" and len(sent.recipients) == 1:
        return OrgId(sent.recipients[0]), machine.REFERRER, sent.created
    raise NotReady(
        f"no referral {referral_id} here: only its sender and its recipient can answer it "
        "(a received referral arrives with 'schakel org inbox')"
    )


def known_step(
    org: Sender,
    referral_id: str,
    party: machine.Party,
    *,
    received: Sequence[StoredMessage] | None = None,
) -> str | None:
    """The referral's step as far as local state tells, or None when it can not tell.

    The recipient knows it acknowledged the referral (``delivered``); both parties know
    the statuses they sent (or that wait in the outbox) and received. The hub may know
    more (a status not yet received), so a None or a stale step only means the hub
    decides. ``received``: the received messages about the referral when the caller
    already has them (a listing that groups every stored message once), else they are
    read from local state.
    """
    referral = org.state.message(referral_id)
    step = machine.DELIVERED if referral is not None and referral.acked_at else machine.SENT
    other: machine.Party = machine.REFERRER if party == machine.RECIPIENT else machine.RECIPIENT
    moves = [(p.created, p.status, party) for p in org.state.sent_about(referral_id)]
    moves += [(d.created, d.status, party) for d in org.waiting_about(referral_id)]
    if received is None:
        received = org.state.received_about(referral_id)
    for message in received:
        moves.append((message.created, message.status, other))
    try:
        for _, code, by in sorted(moves, key=lambda move: move[0]):
            if code is not None:
                step = machine.advance(step, str(code), by)[-1]
    except machine.StepNotAllowed:
        return None
    return step


def _parsed(parse: Any, value: str, field: str) -> str:
    try:
        return str(parse(value))
    except ProtocolError as exc:
        raise PayloadInvalid(str(exc)[:120], field) from None


def _message_id(value: str, field: str) -> MessageId:
    return MessageId(_parsed(parse_message_id, value, field))
