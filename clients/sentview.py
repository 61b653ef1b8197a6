"""The sender's view: what the hub holds of the messages this organisation sent.

The hub lists an organisation's sent messages with, per recipient, whether it still
holds the delivery and whether the recipient acknowledged it (``GET /v1/sent``, no
content). :func:`check_sent` compares that with the messages this client recorded as
accepted (local state ``sent``) and reports, per message:

* ``lost``: recipients the hub no longer holds a delivery for (all of them when the hub
  no longer holds the message: a restored backup, or a withheld message);
* ``unacknowledged``: recipients that have not acknowledged a message accepted at least
  ``older_than`` seconds ago;
* ``deleted``: when and why the hub deleted the envelope under the network's retention
  policy (or an erasure) while a recipient had not acknowledged it (a tombstone,
  ``docs/protocol.md``, "Retention and erasure").

A message the hub lost can be sent again unchanged from the envelope kept locally
(:func:`resend`): same id, same bytes, so the hub takes it as new (201) if it lost it,
as a repeat (200) if it holds it, and refuses it (409) if it holds another envelope under
that id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from clients.errors import ClientError, NotReady, VerificationFailed
from clients.hub_client import SentItem, SentPage
from clients.localbox import PayloadBox
from clients.state import LocalState
from protocol.envelope import Envelope
from protocol.errors import ProtocolError
from protocol.types import MessageId, OrgId

SENT_PAGE = 50  # the hub's default page; every hub allows at least that many (as the inbox)
MAX_SENT_PAGES = 40_000  # 2 million messages: far beyond any organisation's history


@dataclass(frozen=True, slots=True)
class SentCheck:
    """A sent message that needs attention (no content): who lost it, who did not ack."""

    id: MessageId
    kind: str
    recipients: tuple[OrgId, ...]
    accepted: int | None  # when the hub accepted it (this client's record, else the hub's)
    held: bool  # the hub still holds the message
    lost: tuple[OrgId, ...]  # recipients the hub holds no delivery for
    unacknowledged: tuple[OrgId, ...]  # recipients that did not acknowledge it in time
    resendable: bool  # its envelope is kept here, so it can be sent again unchanged
    deleted: tuple[int, str] | None = None  # (when, why) the hub deleted it before all had it


@dataclass(frozen=True, slots=True)
class Resent:
    id: MessageId
    accepted: int
    created: bool  # False: the hub held it already (a repeat)


class SentHub(Protocol):
    async def sent(self, after: int = 0, limit: int = 50) -> SentPage: ...

    async def send(self, envelope: Envelope) -> tuple[MessageId, int, bool]: ...


async def held_by_hub(hub: SentHub) -> dict[str, SentItem]:
    """Every message the hub lists as sent by us, by id (paged, cursors ascending)."""
    found: dict[str, SentItem] = {}
    after = 0
    for _ in range(MAX_SENT_PAGES):
        page = await hub.sent(after=after, limit=SENT_PAGE)
        if not page.messages:
            return found
        found.update((item.id, item) for item in page.messages)
        after = page.next
    raise ClientError(f"the hub lists more than {MAX_SENT_PAGES * SENT_PAGE} sent messages")


@dataclass(frozen=True, slots=True)
class _Sent:
    """A sent message as this client recorded it, or else as the hub lists it."""

    id: str
    kind: str
    recipients: tuple[OrgId, ...]
    accepted: int | None


async def check_sent(
    state: LocalState, hub: SentHub, *, now: int, older_than: int
) -> tuple[SentCheck, ...]:
    """The sent messages that were lost, or not acknowledged after ``older_than`` seconds.

    Every message recorded here as accepted is compared with what the hub holds; a
    message the hub lists that this client did not record (sent from another directory)
    is judged by the hub's own record.
    """
    held = await held_by_hub(hub)
    local = [m for m in state.sent() if m.accepted is not None]
    mine = {m.id for m in local}
    sent = [
        *((_Sent(m.id, m.kind, tuple(OrgId(r) for r in m.recipients), m.accepted)) for m in local),
        *(
            _Sent(item.id, item.kind, tuple(d.org for d in item.deliveries), item.accepted)
            for item in held.values()
            if item.id not in mine
        ),
    ]
    checks = (
        _check(state, message, held.get(message.id), now=now, older_than=older_than)
        for message in sent
    )
    return tuple(check for check in checks if check is not None)


def _check(
    state: LocalState, sent: _Sent, item: SentItem | None, *, now: int, older_than: int
) -> SentCheck | None:
    delivered = {} if item is None else {d.org: d.acknowledged for d in item.deliveries}
    lost = tuple(r for r in sent.recipients if r not in delivered)
    due = sent.accepted is not None and now - sent.accepted >= older_than
    unacknowledged = tuple(r for r in sent.recipients if due and delivered.get(r) is False)
    # A tombstone is news only when a recipient never acknowledged the message: after
    # every acknowledgement it is retention at work, and all is well.
    waiting = any(delivered.get(r) is False for r in sent.recipients)
    deleted = item.deleted if item is not None and waiting else None
    if not lost and not unacknowledged and deleted is None:
        return None
    return SentCheck(
        id=MessageId(sent.id),
        kind=sent.kind,
        recipients=sent.recipients,
        accepted=sent.accepted,
        held=item is not None,
        lost=lost,
        unacknowledged=unacknowledged,
        resendable=state.sent_envelope(sent.id) is not None,
        deleted=deleted,
    )


async def resend(state: LocalState, hub: SentHub, box: PayloadBox, message_id: str) -> Resent:
    """Send a sent message again from the envelope kept here (same id, same bytes).

    NotReady when no envelope of that id is kept here; a refusal of the hub (409: it holds
    another envelope under this id; 422: a recipient's key bundle is no longer valid) is
    raised as :class:`~clients.errors.HubProblem`.
    """
    sealed = state.sent_envelope(message_id)
    if sealed is None:
        raise NotReady(
            f"no envelope of message {message_id[:32]!r} is kept here: only a message this "
            "directory sent (with a client that keeps envelopes) can be sent again"
        )
    wire = box.open(message_id, "envelope", sealed)  # (Erased once its case was erased)
    try:
        envelope = Envelope.from_wire(wire)
    except ProtocolError as exc:
        raise VerificationFailed("stored sent envelope", reason="not an envelope") from exc
    sent_id, accepted, created = await hub.send(envelope)
    return Resent(sent_id, accepted, created)
