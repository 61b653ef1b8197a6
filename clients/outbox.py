"""The outbox: nothing an organisation writes is lost while the hub can not be reached.

Every signal, referral and status goes through the outbox. It is written to local
state (:class:`~clients.state.LocalState`, table ``outbox``) before anything is sent,
with a message id chosen there and then, and leaves it only when the hub accepted it
(or when a person drops it). :meth:`Outbox.send` then sends what waits, oldest first:

* an entry not sealed yet is sealed (recipients' certificates and bundles verified
  fresh; on an OPRF network the person's pseudonyms are made first, by the two
  pseudonymisation services), and its envelope is kept *before* it is posted, so that
  every later attempt posts the very same envelope: the hub takes a repeat of an
  accepted envelope as the same message (200), never as a second one;
* a hub that can not be reached, or answers 408, 429 or 5xx, or a pseudonymisation
  service that can not make the pseudonyms now (down, over its limit, or answering
  with a proof that does not verify), leaves the entry **waiting** and stops the pass:
  later entries wait behind it, so that statuses about one referral reach the hub in
  the order they were written;
* any other failure (a 4xx refusal, a recipient that does not verify or is unknown)
  makes the entry **refused**: it is not sent again, and is shown with the reason until
  it is dropped;
* an accepted entry becomes a sent message (``sent``, ``sent_payloads`` and its envelope
  in ``sent_envelopes``), the last message to each of its recipients (``chains``: the
  next envelope to them names it in its header ``prev``), and leaves the outbox, all in
  the same transaction. An entry is sealed only when every entry before it went out or
  was refused, so ``prev`` names a message the hub accepted.

What an entry holds (payload, recipients, pseudonyms, header fields, the sealed
envelope) is kept sealed by the :class:`~clients.localbox.PayloadBox` under the key of
its message, like the payloads an organisation sent and their envelopes; only its id,
kind, recipients, times, state and the last problem are in clear. One
:class:`Outbox` sends one entry at a time (a lock), so two tasks of one process never
seal an entry twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

from clients.errors import (
    AuditLogInconsistent,
    ClientError,
    HubProblem,
    HubUnreachable,
    NotReady,
    PseudonymsUnavailable,
    VerificationFailed,
)
from clients.localbox import PayloadBox
from clients.state import LocalState, OutboxRow, SentMessage, SentPayload
from protocol.envelope import Envelope
from protocol.errors import ProtocolError
from protocol.types import CaseRef, MessageId, OrgId, Pseudonym

WAITING = "waiting"
REFUSED = "refused"
TRANSIENT_STATUSES = frozenset({408, 429})  # and every 5xx


@dataclass(frozen=True, slots=True, repr=False)
class Draft:
    """A message as written: everything needed to seal it, and (once sealed) its envelope."""

    id: MessageId
    kind: str
    payload: Mapping[str, Any]
    recipients: tuple[OrgId, ...]
    created: int
    pseudonyms: tuple[Pseudonym, ...] = ()
    ref: MessageId | None = None
    case: CaseRef | None = None
    status: str | None = None
    envelope: Mapping[str, Any] | None = None  # wire form, once sealed
    # The person's pseudonyms are still to be made by the pseudonymisation services (an
    # OPRF network): when the draft is sealed, so that it waits while a service can not.
    pseudonymise: bool = False
    # The person who wrote it and the purpose they chose (a desk acting for a person):
    # every attempt to send it names them in the hub's access log, whoever sends it.
    author: str | None = None
    purpose: str | None = None
    purpose_text: str | None = None

    def __repr__(self) -> str:
        return f"Draft(id={self.id!r}, kind={self.kind!r}, sealed={self.envelope is not None})"

    def to_json(self) -> dict[str, Any]:
        return {
            "payload": dict(self.payload),
            "recipients": list(self.recipients),
            "created": self.created,
            "pseudonyms": list(self.pseudonyms),
            "ref": self.ref,
            "case": self.case,
            "status": self.status,
            "envelope": None if self.envelope is None else dict(self.envelope),
            "pseudonymise": self.pseudonymise,
            "author": self.author,
            "purpose": self.purpose,
            "purpose_text": self.purpose_text,
        }

    @classmethod
    def from_json(cls, message_id: str, kind: str, doc: Any) -> Draft:
        if not isinstance(doc, dict) or not isinstance(doc.get("payload"), dict):
            raise VerificationFailed("stored outbox entry", reason="not an entry")
        return cls(
            id=MessageId(message_id),
            kind=kind,
            payload=doc["payload"],
            recipients=tuple(OrgId(r) for r in doc["recipients"]),
            created=int(doc["created"]),
            pseudonyms=tuple(Pseudonym(p) for p in doc["pseudonyms"]),
            ref=doc["ref"],
            case=doc["case"],
            status=doc["status"],
            envelope=doc["envelope"],
            pseudonymise=doc.get("pseudonymise", False) is True,
            author=_optional_text(doc.get("author")),
            purpose=_optional_text(doc.get("purpose")),
            purpose_text=_optional_text(doc.get("purpose_text")),
        )


@dataclass(frozen=True, slots=True)
class Sent:
    """What became of a message handed to the hub: ``accepted`` (hub time) once it got
    there; while it waits in the outbox ``accepted`` is None and ``problem`` says why."""

    id: MessageId
    kind: str
    recipients: tuple[OrgId, ...]
    pseudonyms: tuple[Pseudonym, ...]
    created: int
    accepted: int | None = None
    problem: str | None = None

    @property
    def waiting(self) -> bool:
        return self.accepted is None


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One entry as a person sees it (no content): its state and the last problem."""

    id: MessageId
    kind: str
    recipients: tuple[OrgId, ...]
    created: int  # when it was written
    state: str  # WAITING or REFUSED
    attempts: int
    tried_at: int | None
    problem: str | None  # why it waits, or why it was refused
    sealed: bool  # its envelope is sealed: every attempt posts the same bytes
    ref: MessageId | None = None
    case: CaseRef | None = None
    status: str | None = None


@dataclass(frozen=True, slots=True)
class OutboxReport:
    """One pass of :meth:`Outbox.send`: what went out, what still waits, what was refused
    in this pass (``errors`` holds the reason of each refusal, by message id)."""

    sent: tuple[Sent, ...] = ()
    waiting: tuple[OutboxEntry, ...] = ()
    refused: tuple[OutboxEntry, ...] = ()
    errors: Mapping[MessageId, ClientError] = dataclasses.field(
        default_factory=lambda: MappingProxyType({})
    )


class Courier(Protocol):
    """What the outbox needs to send a draft (an :class:`~clients.organisation.Organisation`)."""

    async def seal(self, draft: Draft) -> Envelope: ...

    async def post(self, envelope: Envelope) -> int: ...

    def acting_as(self, draft: Draft) -> AbstractContextManager[None]:
        """Hub requests inside name the draft's author and purpose (when it has one)."""
        ...


def transient(error: ClientError) -> bool:
    """True when trying again later may succeed: no answer, 408, 429 or 5xx; or the
    pseudonymisation services could not make the pseudonyms now."""
    if isinstance(error, HubUnreachable):
        return True
    if isinstance(error, PseudonymsUnavailable):
        return error.transient
    return isinstance(error, HubProblem) and (
        error.status in TRANSIENT_STATUSES or error.status >= 500
    )


class Outbox:
    """The outbox of one organisation, kept in its local state."""

    def __init__(
        self, state: LocalState, box: PayloadBox, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.state = state
        self._box = box
        self._clock = clock
        self._lock = asyncio.Lock()

    def _now(self) -> int:
        return int(self._clock())

    # -- what a person sees --------------------------------------------------------------

    def put(self, draft: Draft) -> None:
        """Keep a new draft (waiting); durable before anything is sent."""
        now = self._now()
        self.state.queue(
            OutboxRow(
                id=draft.id,
                kind=draft.kind,
                recipients=draft.recipients,
                created=draft.created,
                queued_at=now,
                state=WAITING,
                attempts=0,
                tried_at=None,
                problem=None,
                sealed=self._seal(draft),
            )
        )

    def entries(self) -> tuple[OutboxEntry, ...]:
        """Every entry, oldest first: waiting ones in the order they go out, refused ones
        until they are dropped."""
        return tuple(self._entry(row) for row in self.state.outbox())

    def draft(self, message_id: str) -> Draft:
        """The whole entry, payload included (to show it, or to write it again)."""
        row = self.state.outbox_entry(message_id)
        if row is None:
            raise NotReady(f"no message {message_id[:32]!r} in the outbox")
        return self._open(row)

    def drop(self, message_id: str) -> None:
        """Remove an entry (waiting or refused): it will not be sent."""
        if not self.state.drop_from_outbox(message_id):
            raise NotReady(f"no message {message_id[:32]!r} in the outbox")

    def waiting_about(self, ref: str) -> list[Draft]:
        """Waiting drafts whose header names ``ref`` (statuses about a referral)."""
        drafts = [self._open(r) for r in self.state.outbox() if r.state == WAITING]
        return [d for d in drafts if d.ref == ref]

    # -- sending -------------------------------------------------------------------------

    async def send(self, courier: Courier) -> OutboxReport:
        """Send what waits, oldest first, until the hub can not be reached (see above).

        AuditLogInconsistent stops the pass and is raised: the hub is not to be used.
        """
        async with self._lock:
            sent: list[Sent] = []
            refused: list[OutboxEntry] = []
            errors: dict[MessageId, ClientError] = {}
            for row in self.state.outbox():
                if row.state != WAITING:
                    continue
                draft = self._open(row)
                try:
                    sent.append(await self._send_one(courier, draft, row.sealed))
                except AuditLogInconsistent:
                    raise
                except ClientError as exc:
                    if self.state.outbox_entry(draft.id) is None:
                        continue  # another process sent (or dropped) it meanwhile
                    if transient(exc):
                        self.state.note_attempt(
                            draft.id, state=WAITING, now=self._now(), problem=_text(exc)
                        )
                        break
                    self.state.note_attempt(
                        draft.id, state=REFUSED, now=self._now(), problem=_text(exc)
                    )
                    refused.append(self._entry(self._row(draft.id)))
                    errors[draft.id] = exc
            waiting = tuple(e for e in self.entries() if e.state == WAITING)
            return OutboxReport(tuple(sent), waiting, tuple(refused), MappingProxyType(errors))

    async def _send_one(self, courier: Courier, draft: Draft, kept: bytes) -> Sent:
        with courier.acting_as(draft):
            draft, envelope = await self._sealed(courier, draft, kept)
            accepted = await courier.post(envelope)
        now = self._now()
        self.state.delivered(
            SentMessage(draft.id, draft.kind, draft.recipients, draft.created, now, accepted),
            SentPayload(
                draft.id,
                draft.kind,
                draft.ref,
                draft.case,
                draft.status,
                draft.created,
                self._box.seal(draft.id, draft.kind, dict(draft.payload)),
            ),
            self._box.seal(draft.id, "envelope", envelope.to_wire()),
        )
        return Sent(
            draft.id, draft.kind, draft.recipients, draft.pseudonyms, draft.created, accepted
        )

    async def _sealed(self, courier: Courier, draft: Draft, kept: bytes) -> tuple[Draft, Envelope]:
        """The entry's envelope: the one kept, or a new one, kept before it is posted."""
        if draft.envelope is None:
            envelope = await courier.seal(draft)
            sealed = dataclasses.replace(
                draft,
                envelope=envelope.to_wire(),
                pseudonyms=envelope.header.pseudonyms,
                pseudonymise=False,
            )
            if self.state.keep_sealed(draft.id, was=kept, sealed=self._seal(sealed)):
                return sealed, envelope
            draft = self._open(self._row(draft.id))  # another process sealed it first
        if draft.envelope is None:
            raise VerificationFailed("stored outbox entry", reason="changed while it was sealed")
        try:
            return draft, Envelope.from_wire(draft.envelope)
        except ProtocolError as exc:
            raise VerificationFailed("stored outbox entry", reason="not an envelope") from exc

    # -- helpers -------------------------------------------------------------------------

    def _seal(self, draft: Draft) -> bytes:
        return self._box.seal(draft.id, f"outbox/{draft.kind}", draft.to_json())

    def _open(self, row: OutboxRow) -> Draft:
        try:
            doc = self._box.open(row.id, f"outbox/{row.kind}", row.sealed)
            return Draft.from_json(row.id, row.kind, doc)
        except (KeyError, TypeError, ValueError) as exc:
            raise VerificationFailed("stored outbox entry", reason="not an entry") from exc

    def _row(self, message_id: str) -> OutboxRow:
        row = self.state.outbox_entry(message_id)
        if row is None:  # dropped by another process while it was being sent
            raise NotReady(f"no message {message_id[:32]!r} in the outbox")
        return row

    def _entry(self, row: OutboxRow) -> OutboxEntry:
        draft = self._open(row)
        return OutboxEntry(
            id=MessageId(row.id),
            kind=row.kind,
            recipients=tuple(OrgId(r) for r in row.recipients),
            created=row.created,
            state=row.state,
            attempts=row.attempts,
            tried_at=row.tried_at,
            problem=row.problem,
            sealed=draft.envelope is not None,
            ref=draft.ref,
            case=draft.case,
            status=draft.status,
        )


def _optional_text(value: object) -> str | None:
    """A stored text field; None for an entry written before it existed."""
    return value if isinstance(value, str) else None


def _text(error: ClientError) -> str:
    return str(error)[:300]
