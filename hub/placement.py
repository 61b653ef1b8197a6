"""What an accepted envelope does to cases and referrals, in the writer's batch.

The relay has each newly accepted envelope placed in the same transaction as the
message and its audit entry, with the rest of the writer's batch
(:mod:`hub.store.bulk`): signals by :func:`place_all`; referrals and status updates,
which may still be refused for what they say, by :class:`Referrals`, which decides them
before anything is written and places them once written. ``docs/protocol.md``
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
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from hub.errors import IllegalTransition, InvalidReferral, UnknownCase, UnknownReferral
from hub.notify import Notice, event_notice
from hub.store import Tx
from hub.store.bulk import NewMessage, Undecided
from hub.store.casebatch import Signal
from hub.store.casewrites import Attached, CaseTx, KeptReferral, Referral
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
    """Place a batch's new messages (none of a :data:`CHECKED_KINDS` kind): its signals
    are clustered together (:meth:`CaseTx.attach_signals`), and the match events of
    those that joined a case are kept with one statement. A reply is placed nowhere."""
    signals = [
        (item, cursor) for item, cursor in placed if item.encoded.envelope.header.kind == "signal"
    ]
    attached = tx.cases.attach_signals(
        [
            Signal(cursor, item.encoded.envelope.header.pseudonyms, item.accepted_at,
                   item.sender.org_type, item.fresh)
            for item, cursor in signals
        ]
    )  # fmt: skip
    joined = [(item, a) for (item, _), a in zip(signals, attached, strict=True) if a.joined]
    if not joined:
        return []
    coordinators = tx.cases.coordinators()
    rows: list[dict[str, Any]] = []
    for item, a in joined:
        header = item.encoded.envelope.header
        rows += _match_rows(header, a, item.sender, coordinators, now=item.accepted_at)
    return _kept_events(tx, rows)


def _match_rows(
    header: Header, attached: Attached, sender: Certificate, coordinators: list[OrgId], *, now: int
) -> list[dict[str, Any]]:
    """The ``match`` events of a message that joined a case held before: none otherwise."""
    if not attached.joined:
        return []
    detail = {
        "kind": header.kind,
        "sender": header.sender,
        "sender_type": sender.org_type,
        "merged": list(attached.merged),
        "kept_apart": list(attached.kept_apart),
    }
    heard = _heard(coordinators, attached.case)
    return _event_rows("match", heard, now, header.id, None, detail)


@dataclass(frozen=True, slots=True)
class _Decided:
    """What a referral (``referral``: the new one) or a status update (``referral``: the
    one it moves into ``steps``) was decided to do."""

    referral: KeptReferral
    steps: tuple[str, ...] = ()
    replaced: KeptReferral | None = None  # the declined referral a referral replaces


class Referrals:
    """The referrals and status updates of one writer batch (:class:`bulk.Checks`).

    Made with one lookup of the referrals they name (``ref``) and one of the cases
    coordinators name. :meth:`check` decides each new one in batch order against the
    referrals as the ones before it left them, in memory, so that a status update of a
    referral of the same batch, two updates of one referral, or a referral replacing one
    declined in the same batch are decided as one after another would be; a refused one
    changes nothing. :meth:`place` then places the accepted ones in order, each
    referral by :meth:`CaseTx.attach`, and keeps the referral rows, status updates,
    case summaries and events with a statement per table.

    A referral naming both a case and the referral it replaces is decided only alone
    (:class:`bulk.Undecided` in a batch of more): whether that referral is of that case
    can change with the batch's merges before it.
    """

    def __init__(self, conn: sa.Connection, items: Sequence[NewMessage], alone: bool) -> None:
        cases = CaseTx(conn)
        headers = [item.encoded.envelope.header for item in items]
        self._alone = alone
        self._referrals = cases.kept_referrals({h.ref for h in headers if h.ref is not None})
        named = {h.case for h in headers if h.kind == "referral" and h.case is not None}
        self._cases = cases.live_cases(named)
        self._decided: dict[MessageId, _Decided] = {}

    # -- deciding, before anything is written ----------------------------------------------

    def check(self, item: NewMessage) -> None:
        header = item.encoded.envelope.header
        if header.kind == "referral":
            self._refer(header, item.sender, now=item.accepted_at)
        else:
            self._advance(header, now=item.accepted_at)

    def _refer(self, header: Header, sender: Certificate, *, now: int) -> None:
        target = None
        if header.case is not None:
            target = self._cases.get(header.case) if ROLE_COORDINATOR in sender.roles else None
            if target is None:
                raise UnknownCase("the referral names no case this organisation may refer in")
        replaced = None
        if header.ref is not None:
            if target is not None and not self._alone:
                raise Undecided()
            replaced = self._declined(header, target)
        referral = KeptReferral(
            0, header.id, None, header.sender, header.recipients[0], machine.SENT, now,
            {step: now if step == machine.SENT else None for step in machine.STEPS},
            stored=False,
        )  # fmt: skip
        if replaced is not None:
            replaced.enter((machine.CLOSED,), now=now)
            replaced.replaced_by = header.id
        self._referrals[header.id] = referral
        self._decided[header.id] = _Decided(referral, replaced=replaced)

    def _declined(self, header: Header, target: CaseRef | None) -> KeptReferral:
        assert header.ref is not None
        old = self._referrals.get(header.ref)
        if old is None or old.referrer != header.sender or (target and old.case != target):
            raise UnknownReferral("the referral replaces no referral of this organisation")
        if old.step != machine.DECLINED:
            raise IllegalTransition("only a declined referral can be referred again")
        return old

    def _advance(self, header: Header, *, now: int) -> None:
        assert header.ref is not None and header.status is not None
        referral = self._referrals.get(header.ref)
        party = None if referral is None else _party(referral, header.sender)
        if referral is None or party is None:
            raise UnknownReferral("the status refers to no referral this organisation is party to")
        other = referral.referrer if party == machine.RECIPIENT else referral.recipient
        if other not in header.recipients:
            raise InvalidReferral("a status goes to the other party of its referral")
        try:
            steps = machine.advance(referral.step, header.status, party)
        except machine.StepNotAllowed as exc:
            raise IllegalTransition(str(exc)) from None
        referral.enter(steps, now=now)
        self._decided[header.id] = _Decided(referral, steps)

    # -- placing, once written -------------------------------------------------------------

    def place(
        self, tx: Tx, placed: Sequence[tuple[NewMessage, int]]
    ) -> tuple[Notices, list[tuple[str, ...]]]:
        coordinators = tx.cases.coordinators()
        events: list[dict[str, Any]] = []
        updates: list[tuple[int, int, str, int]] = []
        touched: set[CaseRef] = set()
        logged: list[tuple[str, ...]] = []
        for item, cursor in placed:
            header = item.encoded.envelope.header
            decided = self._decided[header.id]
            referral = decided.referral
            if header.kind == "referral":
                events += self._place_referral(tx, item, cursor, decided, coordinators, touched)
            else:
                assert header.status is not None
                updates.append((cursor, referral.cursor, header.status, item.accepted_at))
            assert referral.case is not None
            case, pseudonyms = tx.cases.live_pseudonyms(referral.case, limit=MAX_PSEUDONYMS)
            assert case is not None  # a referral's case is never erased within its batch
            touched.add(case)
            logged.append(_logged(header, pseudonyms))
            if header.kind == "status":
                heard = _heard(coordinators, case, also=[referral.referrer])
                heard.pop(header.sender, None)  # the organisation that took the step knows
                step = decided.steps[-1]
                events += _event_rows("referral", heard, item.accepted_at, referral.id, step,
                                      _parties(referral))  # fmt: skip
        tx.cases.keep_referrals(self._referrals.values())
        tx.cases.add_updates(updates)
        tx.cases.refresh_all(touched)
        return _kept_events(tx, events), logged

    def _place_referral(
        self,
        tx: Tx,
        item: NewMessage,
        cursor: int,
        decided: _Decided,
        coordinators: list[OrgId],
        touched: set[CaseRef],
    ) -> list[dict[str, Any]]:
        """Attach the referral to its case; its events (match, then referral)."""
        header, now = item.encoded.envelope.header, item.accepted_at
        target = None if header.case is None else tx.cases.live(header.case)
        if decided.replaced is not None:
            assert decided.replaced.case is not None
            target = tx.cases.live(decided.replaced.case)
        attached = tx.cases.attach(
            cursor, header.pseudonyms, now=now, fresh=item.fresh, target=target, summary=False
        )
        for absorbed in attached.merged:  # as the merge moved the stored ones
            touched.discard(absorbed)
            for kept in self._referrals.values():
                if kept.case == absorbed:
                    kept.case = attached.case
        decided.referral.cursor, decided.referral.case = cursor, attached.case
        rows = [] if target is not None else _match_rows(
            header, attached, item.sender, coordinators, now=now
        )  # fmt: skip
        heard = _heard(coordinators, attached.case)
        heard.pop(header.sender, None)
        detail = _parties(decided.referral)
        return rows + _event_rows("referral", heard, now, header.id, machine.SENT, detail)


def _logged(header: Header, case_pseudonyms: Sequence[str]) -> tuple[str, ...]:
    """The pseudonyms the access-log entry of a new referral or status update carries.

    It may carry none of its own (a coordinator refers by naming the case; a status
    names its referral), yet it is about the people of its case: its entry carries the
    case's pseudonyms too, so that a person's subject report finds the referral, its
    status updates and every read of them. At most ``MAX_PSEUDONYMS``: the envelope's
    own first, then the case's in sorted order.
    """
    own = tuple(sorted(set(header.pseudonyms)))
    room = MAX_PSEUDONYMS - len(own)
    others = [p for p in case_pseudonyms if p not in own]
    return own + tuple(others[: max(room, 0)])


def _parties(referral: KeptReferral | Referral) -> dict[str, Any]:
    return {"referrer": referral.referrer, "recipient": referral.recipient}


def acknowledged(tx: Tx, message_id: MessageId, org: OrgId, *, now: int) -> Notices:
    """The recipient's acknowledgement of a referral it had not yet received: delivered."""
    referral = tx.cases.referral(message_id)
    if referral is None or referral.recipient != org or referral.step != machine.SENT:
        return []
    tx.cases.enter(referral, (machine.DELIVERED,), now=now)
    return _stepped(tx, referral, machine.DELIVERED, now=now, actor=org)


def _party(referral: KeptReferral, org: OrgId) -> machine.Party | None:
    if org == referral.recipient:
        return machine.RECIPIENT
    return machine.REFERRER if org == referral.referrer else None


def _stepped(tx: Tx, referral: Referral, step: str, *, now: int, actor: OrgId) -> Notices:
    heard = audience(tx, referral.case, also=[referral.referrer])
    heard.pop(actor, None)  # the organisation that took the step knows
    return events(tx, "referral", heard, now, referral.id, step, _parties(referral))


def audience(tx: Tx, case: CaseRef, *, also: Iterable[OrgId] = ()) -> dict[OrgId, CaseRef | None]:
    """Who hears of it: every coordinator (with the case), and ``also`` (without)."""
    return _heard(tx.cases.coordinators(), case, also=also)


def _heard(
    coordinators: Iterable[OrgId], case: CaseRef, *, also: Iterable[OrgId] = ()
) -> dict[OrgId, CaseRef | None]:
    heard: dict[OrgId, CaseRef | None] = dict.fromkeys(also)
    heard.update(dict.fromkeys(coordinators, case))
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
    """Keep an event of ``kind`` for each organisation ``heard`` (with its case, if any)."""
    return _kept_events(tx, _event_rows(kind, heard, now, message, step, detail))


def _event_rows(
    kind: str,
    heard: dict[OrgId, CaseRef | None],
    now: int,
    message: MessageId,
    step: str | None,
    detail: dict[str, Any],
) -> list[dict[str, Any]]:
    return [
        {"org": org, "kind": kind, "at": now, "case": case, "message": message, "step": step,
         "detail": detail}
        for org, case in sorted(heard.items())
    ]  # fmt: skip


def _kept_events(tx: Tx, rows: list[dict[str, Any]]) -> Notices:
    """Keep ``rows`` with one statement; the notice of each, in order."""
    ids = tx.cases.add_events(rows)
    return [
        (row["org"], event_notice(event_id, row["kind"]))
        for row, event_id in zip(rows, ids, strict=True)
    ]
