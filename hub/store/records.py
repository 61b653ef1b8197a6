"""Small frozen records the store returns where no protocol dataclass fits.

Rows never leave :mod:`hub.store` as rows: they become protocol objects
(``KeyBundle``, ``SealedLinkingKey``) or one of these records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from protocol.types import Fingerprint, MessageId, NetworkId, OrgId


@dataclass(frozen=True, slots=True)
class OrgRecord:
    """The certificate the hub holds for an organisation (verified when it was stored)."""

    org: OrgId
    network: NetworkId
    certificate: bytes  # DER
    fingerprint: Fingerprint
    serial: int
    roles: frozenset[str]
    not_before: int
    not_after: int


@dataclass(frozen=True, slots=True)
class OrgSummary:
    org: OrgId
    roles: frozenset[str]
    fingerprint: Fingerprint
    serial: int
    bundle: Fingerprint | None  # the current key bundle


@dataclass(frozen=True, slots=True)
class CrlRecord:
    number: int
    der: bytes
    this_update: int
    next_update: int


@dataclass(frozen=True, slots=True)
class BundleValidity:
    """A key bundle the hub holds (verified when it was stored): whose, and when valid."""

    org: OrgId
    fingerprint: Fingerprint
    not_before: int
    not_after: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one read transaction saw: the held CRL, some organisations and some bundles.

    ``organisations`` holds the records of the organisations asked for that the
    hub holds; ``bundles`` the named bundles that the hub holds *for the
    organisation they were named for*, by organisation.
    """

    crl: CrlRecord | None
    organisations: Mapping[OrgId, OrgRecord]
    bundles: Mapping[OrgId, BundleValidity]


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """What idempotency compares: the first accepted copy of a message id."""

    cursor: int
    id: MessageId
    sender: OrgId
    envelope_fingerprint: Fingerprint
    accepted_at: int


@dataclass(frozen=True, slots=True)
class InboxItem:
    cursor: int
    envelope: dict[str, Any]  # the stored canonical wire form, parsed
    acknowledged: bool


@dataclass(frozen=True, slots=True)
class MessageView:
    cursor: int | None  # the caller's inbox cursor; None for the sender
    envelope: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audit entry as stored; see :mod:`hub.audit` for the hash chain."""

    seq: int
    time: int
    org: str | None
    user: str | None
    role: str | None
    action: str
    object_type: str
    object_id: str | None
    outcome: str
    reason: str | None
    source: str | None
    request_id: str | None
    prev_hash: bytes
    entry_hash: bytes
