"""The relay: accept envelopes, keep them per recipient, hand them out, take acknowledgements.

``send_message`` checks, in this order (each failure its own problem, and
nothing stored):

1. the body is strict JSON and an envelope (400 ``malformed``);
2. ``header.sender`` is the authenticated organisation (403 ``forbidden-sender``);
3. ``header.network`` is the hub's network (422 ``invalid-envelope``);
4. ``header.sender_cert`` is the fingerprint of the sender's held certificate,
   which verifies against the root and the CRL now, and the envelope's
   signature verifies with it (422 ``invalid-envelope``);
5. every recipient has a held certificate that verifies now (so is not
   revoked), and ``recipient_keys[r]`` names a bundle the hub holds for that
   recipient whose validity covers now (422 ``unknown-recipient``).

A ``referral`` must go to an organisation certified as shelter, care or legal aid
(422 ``invalid-referral``).

Then, in one transaction with its audit entry (:func:`store_envelope`): a new id is
stored (201) and placed in its case, or moves its referral (:mod:`hub.placement`: 422
``unknown-case``, ``unknown-referral``, ``invalid-referral``, 409
``illegal-transition``, and nothing stored); the same id with the same envelope
fingerprint from the same sender returns the first acceptance (200); any other reuse of
an id is 409. Recipients' subscribers, and those of the events it raised, are notified
after the commit.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from hub import placement
from hub.accesslog import recording
from hub.accesslog.recording import Outcome, Scope
from hub.config import Clock, HubConfig, Rng
from hub.directory import Trust, TrustCache, trust_at
from hub.errors import (
    ForbiddenSender,
    InvalidEnvelope,
    Malformed,
    NotFound,
    UnknownRecipient,
)
from hub.store import InboxItem, MessageView, SentItem, Snapshot, Store, Tx
from protocol.certificate import Certificate
from protocol.envelope import Encoded, Header, parse_encoded, verify_signature
from protocol.errors import EncodingError, ValidationError, VerificationError
from protocol.retirement import Retirement, pseudonym_version
from protocol.types import (
    CASE_REF_BYTES,
    CaseRef,
    MessageId,
    OrgId,
    case_ref_from,
    parse_message_id,
)

_CURSOR = re.compile(r"[0-9]{1,18}")


@dataclass(frozen=True, slots=True)
class Accepted:
    id: MessageId
    accepted: int  # when the hub first accepted it
    cursor: int
    created: bool  # False when this was a repeat of an accepted message


@dataclass(frozen=True, slots=True)
class Page:
    """An inbox page; ``at`` is the id of the caller's message at cursor ``after`` (None
    when the hub holds none there), so that a client notices an inbox that went back."""

    items: list[InboxItem]
    next: int
    after: int = 0
    at: MessageId | None = None


@dataclass(frozen=True, slots=True)
class SentPage:
    items: list[SentItem]
    next: int


def parse_envelope(body: object) -> Encoded:
    """The envelope, parsed and checked once, with its canonical bytes, fingerprint and
    signed digest (nothing encodes it again, before or inside the writer)."""
    try:
        return parse_encoded(body)
    except (EncodingError, ValidationError) as exc:
        raise Malformed(f"envelope: {exc}") from None


async def send_message(
    store: Store,
    clock: Clock,
    config: HubConfig,
    scope: Scope,
    *,
    caller: OrgId,
    cache: TrustCache,
    body: object,
    rng: Rng,
) -> Accepted:
    encoded = parse_envelope(body)
    header = encoded.envelope.header
    scope.touch([header.id])
    if header.sender != caller:
        raise ForbiddenSender("the envelope's sender is not the authenticated organisation")
    if header.network != config.network:
        raise InvalidEnvelope("the envelope is for another network")
    now = clock()
    _check_pseudonym_versions(
        (await cache.directory(store, now)).retirements, header.pseudonyms, now
    )
    trust, seen = await trust_at(
        store,
        cache,
        now,
        orgs=(header.sender, *header.recipients),
        bundles=dict(header.recipient_keys),
    )
    sender = _check_sender(trust, seen, encoded)
    _check_recipients(trust, seen, header)
    placement.check_referral_recipient(
        header, trust.certificate(seen.organisations.get(header.recipients[0]))
    )
    scope.pseudonyms = header.pseudonyms  # recorded once the envelope passed the checks
    fresh = case_ref_from(rng(CASE_REF_BYTES))
    return await store_envelope(store, scope, encoded, now=now, sender=sender, fresh=fresh)


async def store_envelope(
    store: Store, scope: Scope, encoded: Encoded, *, now: int, sender: Certificate, fresh: CaseRef
) -> Accepted:
    """Store a checked envelope with its access-log entry (the writer's part of a send),
    with the writer batch's others, a table at a time (:mod:`hub.store.bulk`).

    A referral or a status update is checked against its case and referral then, and
    may still be refused (:class:`hub.placement.Referrals`: decided before anything of
    the batch is written, so a refusal writes nothing); any other envelope can no longer
    be refused but for its id (a conflict). Each is placed with the batch's others.
    """
    checked = encoded.envelope.header.kind in placement.CHECKED_KINDS
    stored = await recording.store_message(
        store,
        scope,
        now=now,
        encoded=encoded,
        sender=sender,
        fresh=fresh,
        place=None if checked else placement.place_all,
        checks=placement.Referrals if checked else None,
    )
    return Accepted(encoded.envelope.header.id, stored.accepted_at, stored.cursor, stored.created)


def _check_pseudonym_versions(
    retirements: Sequence[Retirement], pseudonyms: Sequence[str], now: int
) -> None:
    """InvalidEnvelope when a pseudonym is of a linking-key version retired before ``now``."""
    if not pseudonyms or not retirements:
        return
    versions = {pseudonym_version(p) for p in pseudonyms}
    for retirement in retirements:
        if retirement.version in versions and retirement.retired_at(now):
            raise InvalidEnvelope(
                f"pseudonyms of linking-key version {retirement.version} are no longer "
                "accepted: that key was retired"
            )


def _check_sender(trust: Trust, seen: Snapshot, encoded: Encoded) -> Certificate:
    header = encoded.envelope.header
    cert = trust.certificate(seen.organisations.get(header.sender))
    if cert is None or cert.fingerprint != header.sender_cert:
        raise InvalidEnvelope(
            "the sender certificate named in the header is not the sender's current, "
            "valid certificate"
        )
    try:
        verify_signature(encoded, cert.public_key)
    except VerificationError:
        raise InvalidEnvelope("the envelope signature does not verify") from None
    return cert


def _check_recipients(trust: Trust, seen: Snapshot, header: Header) -> None:
    for recipient in header.recipients:
        bundle = seen.bundles.get(recipient)
        if (
            bundle is None
            or not bundle.not_before <= trust.now < bundle.not_after
            or trust.certificate(seen.organisations.get(recipient)) is None
        ):
            raise UnknownRecipient(
                f"recipient {recipient} is not in the directory, is revoked, "
                "or has no such current key bundle"
            )


def bounded_int(text: str | None, default: int, name: str, low: int, high: int) -> int:
    if text is None:
        return default
    if not _CURSOR.fullmatch(text) or not low <= int(text) <= high:
        raise Malformed(f"{name} must be an integer from {low} to {high}")
    return int(text)


async def read_inbox(
    store: Store,
    clock: Clock,
    config: HubConfig,
    scope: Scope,
    *,
    caller: OrgId,
    after: str | None,
    limit: str | None,
) -> Page:
    limits = config.limits
    start = bounded_int(after, 0, "after", 0, 2**62)
    count = bounded_int(limit, limits.default_inbox_limit, "limit", 1, limits.max_inbox_limit)
    items = await store.inbox(caller, after=start, limit=count)
    at = await store.inbox_at(caller, start) if start else None
    scope.touch(item.envelope["header"]["id"] for item in items)  # the messages it returns
    await recording.access(store, scope, now=clock())
    return Page(items, items[-1].cursor if items else start, start, at)


async def read_sent(
    store: Store,
    clock: Clock,
    config: HubConfig,
    scope: Scope,
    *,
    caller: OrgId,
    after: str | None,
    limit: str | None,
) -> SentPage:
    """The caller's sent messages after cursor ``after``, with the deliveries held for each:
    which recipients the hub still holds it for, and which acknowledged it (no content)."""
    limits = config.limits
    start = bounded_int(after, 0, "after", 0, 2**62)
    count = bounded_int(limit, limits.default_inbox_limit, "limit", 1, limits.max_inbox_limit)
    items = await store.sent(caller, after=start, limit=count)
    scope.touch(item.id for item in items)
    await recording.access(store, scope, now=clock())
    return SentPage(items, items[-1].cursor if items else start)


def _path_message_id(text: str) -> MessageId:
    try:
        return parse_message_id(text)
    except ValidationError:
        raise NotFound() from None


async def fetch_message(
    store: Store, clock: Clock, scope: Scope, *, caller: OrgId, message_id: str
) -> MessageView:
    """The message, for its sender or a recipient; 404 for anyone else."""
    mid = _path_message_id(message_id)
    scope.touch([mid])
    view = await store.message_for(mid, caller)
    if view is None:
        raise NotFound()
    await recording.access(store, scope, now=clock())
    return view


async def acknowledge(
    store: Store,
    clock: Clock,
    scope: Scope,
    *,
    caller: OrgId,
    message_id: str,
) -> None:
    """Mark the caller's delivery read; idempotent; 404 unless the caller is a recipient.

    The recipient's first acknowledgement of a referral is its delivery.
    """
    mid = _path_message_id(message_id)
    scope.touch([mid])
    now = clock()

    def ack(tx: Tx) -> Outcome[None]:
        if not tx.acknowledge(mid, caller, now=now):
            raise NotFound()
        for org, notice in placement.acknowledged(tx, mid, caller, now=now):
            tx.notify(org, notice)
        return Outcome(None)

    await recording.act(store, scope, now=now, work=ack)
