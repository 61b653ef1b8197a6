"""Receiving: every message is verified before it is stored, acknowledged or shown.

For each inbox entry after the stored cursor, in order: the envelope parses; a
message stored before is acknowledged again and skipped; its network is ours and we
are a recipient; the sender's certificate (:class:`~clients.directory.Directory`)
verifies and is the one the header names; ``open_envelope`` checks the signature and
decrypts; the payload parses strictly and fits its kind's schema. Then it is stored
(still encrypted), acknowledged, and the cursor moves on, remembering the id of the
message it passed.

Two checks keep a hub from losing messages silently:

* every inbox page read from a cursor above 0 names the message the hub holds for us at
  that cursor (``at``); when it is not the one taken there, the hub's inbox went back (a
  restored backup hands new messages cursors already passed) and
  :class:`~clients.errors.InboxWentBack` stops the pass before anything is read;
* a verified message's header may name the sender's previous message to us (``prev``):
  unless it is held here (stored or rejected), it is fetched from the hub and taken like
  an inbox entry (its own ``prev`` is not followed); when the hub does not serve it, it
  is recorded as missing (:class:`~clients.state.MissingMessage`): withheld.

A message that fails any check is recorded as rejected with a reason category and is
*not* acknowledged, so that the hub keeps it for an investigation.

What is kept of a verified message is its header, its payload and the sender's
signature (with the digest it signs), sealed under the message's own key
(:mod:`clients.localbox`), and the envelope's fingerprint; **not the envelope**. The
envelope is sealed to this organisation's KEM key: kept, it would let that key and any
backup of the state file open a message after its case was erased by destroying the
message's key. :meth:`Inbox.show` opens the sealed record, checks the sender's
certificate (kept, by fingerprint) against the root again and the signature over the
digest kept, so a record can not be made to look as if another organisation sent it;
that the digest is the envelope's was checked on receipt, and the record can not be
altered without the message's key. A copy the hub serves again is compared by
fingerprint. Rotating the KEM key therefore needs nothing kept any more
(:meth:`Inbox.keep_payloads` remains for the migration of a version-1 state).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature

from clients.directory import Directory
from clients.errors import (
    Erased,
    HubProblem,
    InboxWentBack,
    NotReady,
    PayloadInvalid,
    UnknownOrganisation,
    VerificationFailed,
)
from clients.hub_client import InboxPage, Notice
from clients.localbox import PayloadBox
from clients.payloads import decode_payload
from clients.state import LocalState, MissingMessage, StoredMessage
from keys.organisation import OrgKeys
from protocol.certificate import Certificate
from protocol.encoding import b64d, b64e
from protocol.envelope import Envelope, Header, open_envelope, verify_signature
from protocol.errors import OpenError, ProtocolError
from protocol.types import (
    CaseRef,
    Fingerprint,
    MessageId,
    OrgId,
    Pseudonym,
    parse_message_id,
    parse_org_id,
)

INBOX_PAGE = 50

# Reason categories of a rejected message: what failed, never why in detail.
REASON_MALFORMED = "malformed"
REASON_SENDER = "sender-certificate"
REASON_ENVELOPE = "envelope"
REASON_PAYLOAD = "payload"


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    id: MessageId
    cursor: int
    sender: OrgId
    kind: str
    created: int
    pseudonyms: tuple[Pseudonym, ...]
    payload: dict[str, Any]
    recipients: tuple[OrgId, ...] = ()
    case: CaseRef | None = None  # a referral's case, from the header
    ref: MessageId | None = None  # what a status (the referral) or referral (replaced) is about
    status: str | None = None  # a status envelope's code, from the header
    prev: MessageId | None = None  # the sender's previous message to us, from the header

    def __repr__(self) -> str:
        return f"ReceivedMessage(id={self.id!r}, sender={self.sender!r}, kind={self.kind!r})"


@dataclass(frozen=True, slots=True)
class RejectedMessage:
    """A message that failed verification; kept on the hub (not acknowledged)."""

    id: str
    cursor: int
    sender: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class ReceiveResult:
    messages: tuple[ReceivedMessage, ...]
    rejected: tuple[RejectedMessage, ...]
    missing: tuple[MissingMessage, ...] = ()  # predecessors found missing in this pass


class InboxHub(Protocol):
    """What receiving needs of a :class:`~clients.hub_client.HubClient`."""

    async def inbox(self, after: int = 0, limit: int = 50) -> InboxPage: ...

    async def ack(self, message_id: str) -> None: ...

    async def get_message(self, message_id: str) -> tuple[int | None, Any]: ...

    def notifications(self, *, opened: bool = False) -> AsyncIterator[Notice | None]: ...


class _Rejected(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Inbox:
    """Receiving for one organisation: verify, store and acknowledge; open again on demand."""

    def __init__(
        self,
        keys: OrgKeys,
        state: LocalState,
        hub: InboxHub,
        directory: Directory,
        box: PayloadBox,
        *,
        before_contact: Callable[[], Awaitable[None]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.state = state
        self.hub = hub
        self.directory = directory
        self._box = box
        self._before_contact = before_contact  # the trust anchors, checked before a pass
        self._clock = clock

    def _now(self) -> int:
        return int(self._clock())

    @property
    def org(self) -> OrgId:
        return self.keys.org

    async def receive(self) -> ReceiveResult:
        """Page through the inbox from the stored cursor; verify, store and ack each message."""
        received: list[ReceivedMessage] = []
        rejected: list[RejectedMessage] = []
        missing: list[MissingMessage] = []
        await self._before_contact()
        while True:
            after, kept = self.state.inbox_position()
            page = await self.hub.inbox(after=after, limit=INBOX_PAGE)
            self._check_at(after, kept, page)
            for item in page.messages:
                if item.cursor <= self.state.cursor:
                    continue  # a hub that repeats itself: nothing to do twice
                outcome = await self._process(item.cursor, item.envelope)
                if isinstance(outcome, ReceivedMessage):
                    received.append(outcome)
                elif isinstance(outcome, RejectedMessage):
                    rejected.append(outcome)
                await self._predecessor(_id_of(item.envelope), received, rejected, missing)
                self.state.advance_cursor(item.cursor, _id_of(item.envelope))
            if not page.messages or self.state.cursor <= after:
                return ReceiveResult(tuple(received), tuple(rejected), tuple(missing))

    def _check_at(self, after: int, kept: str | None, page: InboxPage) -> None:
        """InboxWentBack unless the hub still holds, at ``after``, the message taken there
        (``kept``)."""
        if after == 0 or kept is None:
            return  # from the start, or the entry there had no id to compare
        served = None if page.at is None else page.at.id
        if served != kept:
            self.state.note_went_back(after)  # for those who look later (the desk)
            raise InboxWentBack(after, kept, served)
        self.state.note_went_back(None)

    async def resync(self) -> ReceiveResult:
        """Read the whole inbox again from its start (after a restore of the hub was
        confirmed): messages held here are acknowledged again, not taken twice; the new
        ones are received as usual."""
        self.state.rewind_inbox()
        return await self.receive()

    async def _predecessor(
        self,
        message_id: MessageId | None,
        received: list[ReceivedMessage],
        rejected: list[RejectedMessage],
        missing: list[MissingMessage],
    ) -> None:
        """Check that the message a stored (so verified) message's sender names as its
        previous one to us is held; done again each time the entry is read, until the
        cursor passes it, so that a failing fetch can not skip the check."""
        stored = None if message_id is None else self.state.message(message_id)
        if stored is None:
            return
        prev = _prev_of(stored, self.org)
        if prev is None or self.state.seen(prev):
            return
        outcome: ReceivedMessage | RejectedMessage | None = None
        try:
            cursor, wire = await self.hub.get_message(prev)
        except HubProblem as exc:
            if exc.status != 404:
                raise
        else:
            if _id_of(wire) == prev:
                outcome = await self._process(cursor or 0, wire)
        if isinstance(outcome, ReceivedMessage):
            received.append(outcome)
        elif isinstance(outcome, RejectedMessage):
            rejected.append(outcome)
        elif not self.state.seen(prev):
            self.state.record_missing(
                prev, sender=stored.sender, named_by=stored.id, now=self._now()
            )
            missing.append(MissingMessage(prev, stored.sender, stored.id, self._now()))

    async def _process(self, cursor: int, wire: Any) -> ReceivedMessage | RejectedMessage | None:
        header = _object(wire).get("header")
        # Only well-formed ids and org names from a rejected envelope reach state or a terminal.
        label = _valid(parse_message_id, _object(header).get("id")) or f"cursor-{cursor}"
        sender = _valid(parse_org_id, _object(header).get("sender"))
        try:
            envelope = _parse_envelope(wire)
            if self.state.message(envelope.header.id) is not None or self.state.erased(
                envelope.header.id
            ):
                await self._ack(envelope.header.id)
                return None
            message = await self._open(envelope, cursor)
        except _Rejected as rejection:
            self.state.record_rejected(
                label, cursor=cursor, reason=rejection.reason, now=self._now()
            )
            return RejectedMessage(label, cursor, sender, rejection.reason)
        self.state.store_message(
            message_id=message.id,
            cursor=cursor,
            sender=message.sender,
            kind=message.kind,
            created=message.created,
            header=envelope.header.to_wire(),
            sealed=self._seal_record(envelope, message.payload),
            fingerprint=envelope.fingerprint,
            now=self._now(),
        )
        await self._ack(message.id)
        return message

    async def _ack(self, message_id: MessageId) -> None:
        await self.hub.ack(message_id)
        self.state.mark_acked(message_id, now=self._now())

    async def _open(self, envelope: Envelope, cursor: int) -> ReceivedMessage:
        header = envelope.header
        if header.network != self.keys.network or self.org not in header.recipients:
            raise _Rejected(REASON_ENVELOPE)
        cert = await self._sender_certificate(header.sender, header.sender_cert)
        return self._decrypt(envelope, cert, cursor)

    async def _sender_certificate(self, org: str, fingerprint: str) -> Certificate:
        try:
            cert = await self.directory.certificate(org, fresh=False)
            if cert.fingerprint != fingerprint:
                cert = await self.directory.certificate(org, fresh=True)
        except (VerificationFailed, UnknownOrganisation) as exc:
            raise _Rejected(REASON_SENDER) from exc
        if cert.fingerprint != fingerprint:
            raise _Rejected(REASON_SENDER)
        return cert

    def _decrypt(self, envelope: Envelope, cert: Certificate, cursor: int) -> ReceivedMessage:
        header = envelope.header
        try:
            plaintext = open_envelope(
                envelope, recipient=self.org, kem_keys=self.keys.kem_keys, sender=cert
            )
        except OpenError as exc:
            raise _Rejected(REASON_ENVELOPE) from exc
        return _message(envelope.header, cursor, _payload(header.kind, plaintext), self.org)

    def _seal_record(self, envelope: Envelope, payload: dict[str, Any]) -> bytes:
        """What is kept of a verified message, sealed under its own key."""
        record = {
            "header": envelope.header.to_wire(),
            "payload": payload,
            "sig": b64e(envelope.sig),
            "signed": b64e(envelope.signed_digest()),
        }
        return self._box.seal(envelope.header.id, f"message/{envelope.header.kind}", record)

    # -- reading again ------------------------------------------------------------------

    def show(self, message_id: str) -> ReceivedMessage:
        """Open a stored message again: its sealed record, the sender's certificate as
        verified on receipt (checked against the root again) and its signature over the
        digest kept. :class:`~clients.errors.Erased` when its case was erased."""
        stored = self.state.message(message_id)
        if stored is None:
            if self.state.erased(message_id):
                raise Erased(message_id)
            raise NotReady(f"no message {message_id[:32]!r} here: run 'schakel org inbox' first")
        if stored.sealed is None:
            raise VerificationFailed("stored message", stored.sender, "not migrated")
        try:
            record = self._box.open_object(stored.id, f"message/{stored.kind}", stored.sealed)
            header = Header.from_wire(record.get("header"))
            if (header.id, header.sender, header.kind) != (stored.id, stored.sender, stored.kind):
                raise _Rejected(REASON_ENVELOPE)
            cert = self._stored_sender(stored.sender, header.sender_cert, stored.received_at)
            if (header.sender, header.sender_cert) != (cert.org, cert.fingerprint):
                raise _Rejected(REASON_SENDER)
            cert.public_key.verify(b64d(record.get("sig")), b64d(record.get("signed")))
            payload = record.get("payload")
            if not isinstance(payload, dict):
                raise _Rejected(REASON_PAYLOAD)
        except (_Rejected, VerificationFailed, ProtocolError, InvalidSignature) as exc:
            raise VerificationFailed("stored message", stored.sender) from exc
        return _message(header, stored.cursor, payload, self.org)

    def _stored_sender(self, sender: str, fingerprint: str, received_at: int) -> Certificate:
        der = self.state.certificate(fingerprint, root=self.directory.root_fingerprint)
        if der is None:
            raise _Rejected(REASON_SENDER)
        return self.directory.verify_certificate(sender, der, received_at, None)

    def keep_payloads(self, fingerprints: Collection[Fingerprint]) -> int:
        """Before the KEM key of these bundle fingerprints is deleted: what is kept of a
        message no longer needs it (:meth:`reseal` first, for a version-1 state); how many
        stored messages were sealed to it."""
        self.reseal()
        return sum(
            1
            for stored in self.state.messages()
            if stored.recipient_keys.get(self.org) in fingerprints
        )

    def reseal(self) -> int:
        """Finish the migration of a version-1 state (:meth:`LocalState.reseal`): open each
        envelope version 1 kept (with the KEM key, or the payload version 1 kept when that
        key was deleted), seal its record under the message's key and drop the envelope.
        How many messages were migrated; one that no longer opens loses its envelope too
        (it could not be read anyway)."""
        if not self.state.needs_reseal:
            return 0
        received: dict[str, bytes | None] = {}
        for stored, kept in self.state.legacy_messages():
            received[stored.id] = self._reseal_one(stored, kept)
        self.state.reseal(self._box, received)
        return sum(1 for sealed in received.values() if sealed is not None)

    def _reseal_one(self, stored: StoredMessage, kept: bytes | None) -> bytes | None:
        try:
            envelope = _parse_envelope(stored.legacy)
            header = envelope.header
            cert = self._stored_sender(stored.sender, header.sender_cert, stored.received_at)
            if kept is not None:
                if (header.sender, header.sender_cert) != (cert.org, cert.fingerprint):
                    raise _Rejected(REASON_SENDER)
                verify_signature(envelope, cert.public_key)
                payload = self._box.legacy().open_object(stored.id, f"received/{header.kind}", kept)
            else:
                payload = self._decrypt(envelope, cert, stored.cursor).payload
        except (_Rejected, VerificationFailed, ProtocolError, KeyError):
            return None
        return self._seal_record(envelope, payload)

    async def read_message(self, message_id: str, *, from_hub: bool = False) -> ReceivedMessage:
        """A message addressed to us: from local state, else fetched from the hub.

        A fetched envelope (``GET /v1/messages/{id}``) is verified exactly as on receipt
        (network, recipient, sender certificate, signature, payload schema) and must be
        the message asked for; it is neither stored nor acknowledged here (the inbox does
        that). VerificationFailed when it does not verify.

        With ``from_hub`` the message is fetched even when it is kept here, so that the
        hub's access log records who read it (the desk opens every message so); the hub
        must then serve exactly the envelope kept, else VerificationFailed.
        """
        stored = self.state.message(message_id)
        if stored is None and self.state.erased(message_id):
            raise Erased(message_id)  # its case's period ended: not read again from the hub
        if stored is not None and not from_hub:
            return self.show(message_id)
        cursor, wire = await self.hub.get_message(message_id)
        try:
            envelope = _parse_envelope(wire)
            if envelope.header.id != message_id:
                raise _Rejected(REASON_ENVELOPE)
            if stored is not None:
                if envelope.fingerprint != stored.fingerprint:
                    raise _Rejected(REASON_ENVELOPE)
                return self.show(message_id)
            await self.directory.crl(self._now())
            return await self._open(envelope, cursor or 0)
        except _Rejected as exc:
            raise VerificationFailed("message", reason=exc.reason) from None

    async def watch(self) -> AsyncIterator[ReceivedMessage | RejectedMessage]:
        """Everything waiting, then each new message as the hub announces it.

        What waits is read once the WebSocket is open, so nothing that arrives in between
        goes unannounced. Ends when the hub closes the WebSocket; reconnecting (and so
        reading what waits again) is the caller's choice.
        """
        async for notice in self.hub.notifications(opened=True):
            if notice is not None and self.state.seen(notice.id):
                continue  # announced again: nothing new
            # A notice at a cursor already passed, of a message not held, is read too: the
            # inbox check then finds a hub whose inbox went back (a restored backup).
            result = await self.receive()
            items: list[ReceivedMessage | RejectedMessage] = [*result.messages, *result.rejected]
            for item in items:
                yield item


def _message(header: Header, cursor: int, payload: dict[str, Any], org: OrgId) -> ReceivedMessage:
    return ReceivedMessage(
        id=header.id,
        cursor=cursor,
        sender=header.sender,
        kind=header.kind,
        created=header.created,
        pseudonyms=header.pseudonyms,
        payload=payload,
        recipients=header.recipients,
        case=header.case,
        ref=header.ref,
        status=header.status,
        prev=None if header.prev is None else header.prev.get(org),
    )


def _id_of(wire: Any) -> MessageId | None:
    """The message id in an envelope's header, if there is a well-formed one."""
    found = _valid(parse_message_id, _object(_object(wire).get("header")).get("id"))
    return None if found is None else MessageId(found)


def _prev_of(stored: StoredMessage, org: OrgId) -> MessageId | None:
    """The ``prev`` a stored message's header (verified on receipt) names for ``org``."""
    found = _valid(parse_message_id, (stored.prev or {}).get(org))
    return None if found is None else MessageId(found)


def _payload(kind: str, plaintext: bytes) -> dict[str, Any]:
    try:
        return decode_payload(kind, plaintext)
    except PayloadInvalid as exc:
        raise _Rejected(REASON_PAYLOAD) from exc


def _valid(parse: Callable[[object], str], value: object) -> str | None:
    try:
        return parse(value)
    except ProtocolError:
        return None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _parse_envelope(wire: Any) -> Envelope:
    try:
        return Envelope.from_wire(wire)
    except ProtocolError as exc:
        raise _Rejected(REASON_MALFORMED) from exc
