"""What an accepted envelope does to cases and referrals, inside its work item.

The relay has each newly accepted envelope placed in the same transaction as the
message and its audit entry: a referral or status update by :func:`place` in its own
work item (a refusal here rolls all of it back), the other kinds, which can not be
refused, by :func:`place_all` with the rest of the writer's batch. ``docs/protocol.md``
("Cases", "Referrals") specifies the rules:

* a ``signal`` joins the case clusters its pseudonyms link (:meth:`CaseTx.attach`); when
  it joins an existing case, every coordinator gets a ``match`` event;
* a ``referral`` goes to one organisation of a referral type; it names a case (only a
  coordinator may) or carries pseudonyms, and may replace a declined referral (``ref``);
* a ``status`` moves its referral (``ref``) by the state machine of
  :mod:`protocol.referral`, from a party of that referral, to the other party;
* the recipient's acknowledgement of a referral is its delivery (:func:`acknowledged`).

Each returns the notices to publish after the commit. Events for coordinators carry the
case reference; events for any other organisation never do.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from hub.errors import IllegalTransition, InvalidReferral, UnknownCase, UnknownReferral
from hub.notify import Notice, event_notice
from hub.store import Tx
from hub.store.bulk import NewMessage
from hub.store.casebatch import Signal
from hub.store.casewrites import Attached, Referral
from protocol import referral as machine
from protocol.auditlog import MAX_PSEUDONYMS
from protocol.cases import REFERRAL_TYPES
from protocol.certificate import ROLE_COORDINATOR, Certificate
from protocol.envelope import Header
from protocol.types import CaseRef, MessageId, OrgId

Notices = list[tuple[OrgId, Notice]]


def check_referral_recipient(header: Header, recipient: Certificate | None) -> None:
    """A referral goes to an organisation certified as shelter, care or legal aid."""
    if header.kind == "referral" and (
        recipient is None or recipient.org_type not in REFERRAL_TYPES
    ):
        raise InvalidReferral(
            "a referral goes to an organisation of type " + ", ".join(REFERRAL_TYPES)
        )


# Kinds whose placement reads and checks case state, and may refuse the envelope.
CHECKED_KINDS = ("referral", "status")


def place_all(tx: Tx, placed: Sequence[tuple[NewMessage, int]]) -> Notices:
    """:func:`place` for a batch's new messages (none of a :data:`CHECKED_KINDS` kind).

    Its signals are clustered together (:meth:`CaseTx.attach_signals`), and the match
    events of those that joined a case are kept with one statement.
    """
    notices: Notices = []
    signals = [
        (item, cursor) for item, cursor in placed if item.encoded.envelope.header.kind == "signal"
    ]
    for item, cursor in placed:
        if item.encoded.envelope.header.kind != "signal":
            header = item.encoded.envelope.header
            notices += place(
                tx, header, cursor, sender=item.sender, now=item.accepted_at, fresh=item.fresh
            )
    attached = tx.cases.attach_signals(
        [
            Signal(cursor, item.encoded.envelope.header.pseudonyms, item.accepted_at,
                   item.sender.org_type, item.fresh)
            for item, cursor in signals
        ]
    )  # fmt: skip
    joined = [(item, a) for (item, _), a in zip(signals, attached, strict=True) if a.joined]
    if not joined:
        return notices
    coordinators = tx.cases.coordinators()
    rows: list[dict[str, Any]] = []
    for item, a in joined:
        header = item.encoded.envelope.header
        detail = _match_detail(header, a, item.sender)
        rows += [
            {"org": org, "kind": "match", "at": item.accepted_at, "case": a.case,
             "message": header.id, "step": None, "detail": detail}
            for org in coordinators
        ]  # fmt: skip
    ids = tx.cases.add_events(rows)
    return notices + [
        (row["org"], event_notice(event_id, "match"))
        for row, event_id in zip(rows, ids, strict=True)
    ]


def _match_detail(header: Header, attached: Attached, sender: Certificate) -> dict[str, Any]:
    return {
        "kind": header.kind,
        "sender": header.sender,
        "sender_type": sender.org_type,
        "merged": list(attached.merged),
        "kept_apart": list(attached.kept_apart),
    }


def place(
    tx: Tx, header: Header, cursor: int, *, sender: Certificate, now: int, fresh: CaseRef
) -> Notices:
    """Cluster, track or advance for a new envelope; the notices to publish after commit."""
    if header.kind == "signal":
        attached = tx.cases.attach(cursor, header.pseudonyms, now=now, fresh=fresh)
        return _matched(tx, header, attached, sender, now=now)
    if header.kind == "referral":
        return _refer(tx, header, cursor, sender=sender, now=now, fresh=fresh)
    if header.kind == "status":
        return _advance(tx, header, cursor, now=now)
    return []


def _matched(
    tx: Tx, header: Header, attached: Attached, sender: Certificate, *, now: int
) -> Notices:
    if not attached.joined:
        return []
    detail = _match_detail(header, attached, sender)
    return events(tx, "match", audience(tx, attached.case), now, header.id, None, detail)


def _refer(
    tx: Tx, header: Header, cursor: int, *, sender: Certificate, now: int, fresh: CaseRef
) -> Notices:
    target = None
    if header.case is not None:
        target = tx.cases.live(header.case) if ROLE_COORDINATOR in sender.roles else None
        if target is None:
            raise UnknownCase("the referral names no case this organisation may refer in")
    replaced = _declined_referral(tx, header, target) if header.ref is not None else None
    if replaced is not None:
        target = replaced.case
    attached = tx.cases.attach(cursor, header.pseudonyms, now=now, fresh=fresh, target=target)
    recipient = header.recipients[0]
    tx.cases.add_referral(
        cursor, header.id, case=attached.case, referrer=header.sender, recipient=recipient, now=now
    )
    if replaced is not None:
        tx.cases.enter(replaced, (machine.CLOSED,), now=now)
        tx.cases.replace(replaced, header.id)
    notices = _matched(tx, header, attached, sender, now=now) if target is None else []
    heard = audience(tx, attached.case)
    heard.pop(header.sender, None)
    detail = {"referrer": header.sender, "recipient": recipient}
    return notices + events(tx, "referral", heard, now, header.id, machine.SENT, detail)


def _declined_referral(tx: Tx, header: Header, target: CaseRef | None) -> Referral:
    assert header.ref is not None
    old = tx.cases.referral(header.ref)
    if old is None or old.referrer != header.sender or (target and old.case != target):
        raise UnknownReferral("the referral replaces no referral of this organisation")
    if old.step != machine.DECLINED:
        raise IllegalTransition("only a declined referral can be referred again")
    return old


def _advance(tx: Tx, header: Header, cursor: int, *, now: int) -> Notices:
    assert header.ref is not None and header.status is not None
    referral = tx.cases.referral(header.ref)
    party = _party(referral, header.sender)
    if referral is None or party is None:
        raise UnknownReferral("the status refers to no referral this organisation is party to")
    other = referral.referrer if party == machine.RECIPIENT else referral.recipient
    if other not in header.recipients:
        raise InvalidReferral("a status goes to the other party of its referral")
    try:
        steps = machine.advance(referral.step, header.status, party)
    except machine.StepNotAllowed as exc:
        raise IllegalTransition(str(exc)) from None
    tx.cases.enter(referral, steps, now=now)
    tx.cases.add_update(cursor, referral, header.status, now=now)
    return _stepped(tx, referral, steps[-1], now=now, actor=header.sender)


def logged_pseudonyms(tx: Tx, header: Header) -> tuple[str, ...]:
    """The pseudonyms the access-log entry of a new envelope carries.

    A signal's are its own. A referral or a status update may carry none (a coordinator
    refers by naming the case; a status names its referral), yet it is about the people
    of its case: its entry carries the case's pseudonyms too, so that a person's subject
    report finds the referral, its status updates and every read of them. At most
    ``MAX_PSEUDONYMS``: the envelope's own first, then the case's in sorted order.
    """
    own = tuple(sorted(set(header.pseudonyms)))
    if header.kind not in ("referral", "status"):
        return own
    referral = tx.cases.referral(header.id if header.kind == "referral" else header.ref or "")
    case = None if referral is None else tx.cases.live(referral.case)
    if case is None:
        return own
    room = MAX_PSEUDONYMS - len(own)
    others = [p for p in tx.cases.pseudonyms_of(case, limit=MAX_PSEUDONYMS) if p not in own]
    return own + tuple(others[: max(room, 0)])


def acknowledged(tx: Tx, message_id: MessageId, org: OrgId, *, now: int) -> Notices:
    """The recipient's acknowledgement of a referral it had not yet received: delivered."""
    referral = tx.cases.referral(message_id)
    if referral is None or referral.recipient != org or referral.step != machine.SENT:
        return []
    tx.cases.enter(referral, (machine.DELIVERED,), now=now)
    return _stepped(tx, referral, machine.DELIVERED, now=now, actor=org)


def _party(referral: Referral | None, org: OrgId) -> machine.Party | None:
    if referral is None:
        return None
    if org == referral.recipient:
        return machine.RECIPIENT
    return machine.REFERRER if org == referral.referrer else None


def _stepped(tx: Tx, referral: Referral, step: str, *, now: int, actor: OrgId) -> Notices:
    heard = audience(tx, referral.case, also=[referral.referrer])
    heard.pop(actor, None)  # the organisation that took the step knows
    detail = {"referrer": referral.referrer, "recipient": referral.recipient}
    return events(tx, "referral", heard, now, referral.id, step, detail)


def audience(tx: Tx, case: CaseRef, *, also: Iterable[OrgId] = ()) -> dict[OrgId, CaseRef | None]:
    """Who hears of it: every coordinator (with the case), and ``also`` (without)."""
    heard: dict[OrgId, CaseRef | None] = dict.fromkeys(also)
    heard.update(dict.fromkeys(tx.cases.coordinators(), case))
    return heard


def events(
    tx: Tx,
    kind: str,
    heard: dict[OrgId, CaseRef | None],
    now: int,
    message: MessageId,
    step: str | None,
    detail: dict[str, Any],
) -> Notices:
    notices: Notices = []
    for org, case in sorted(heard.items()):
        event_id = tx.cases.add_event(
            org, kind, now=now, case=case, message=message, step=step, detail=detail
        )
        notices.append((org, event_notice(event_id, kind)))
    return notices
