"""Small frozen records the store returns where no protocol dataclass fits.

Rows never leave :mod:`hub.store` as rows: they become protocol objects
(``KeyBundle``, ``SealedLinkingKey``) or one of these records.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from protocol.auditlog import AuditEntry, TreeHead
from protocol.retirement import Retirement
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
    org_type: str = "other"


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
class Directory:
    """What the trust decisions need of the whole directory, read in ONE transaction: the
    held CRL, every organisation's record, every key bundle not expired when it was read
    (by fingerprint), every linking-key retirement. Held in memory by
    :class:`hub.directory.TrustCache` until the directory changes."""

    crl: CrlRecord | None
    organisations: Mapping[OrgId, OrgRecord]
    bundles: Mapping[Fingerprint, BundleValidity]
    retirements: tuple[Retirement, ...]

    def snapshot(
        self, orgs: Collection[OrgId] = (), bundles: Mapping[OrgId, Fingerprint] | None = None
    ) -> Snapshot:
        """What :meth:`hub.store.Store.snapshot` would read for ``orgs`` and ``bundles``."""
        held = self.bundles
        named = {}
        for org, fp in (bundles or {}).items():
            found = held.get(fp)
            if found is not None and found.org == org:
                named[org] = found
        records = self.organisations
        return Snapshot(
            crl=self.crl,
            organisations={org: records[org] for org in orgs if org in records},
            bundles=named,
        )


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
class SentDelivery:
    recipient: OrgId
    acknowledged: bool


@dataclass(frozen=True, slots=True)
class SentItem:
    """A message the caller sent, with the deliveries the hub holds for it (no content)."""

    cursor: int
    id: MessageId
    kind: str
    accepted: int
    deliveries: tuple[SentDelivery, ...]
    deleted: int | None = None  # when its envelope was deleted (a tombstone), if it was
    deleted_reason: str | None = None  # acknowledged, expired, case-ended, erased


@dataclass(frozen=True, slots=True)
class MessageView:
    cursor: int | None  # the caller's inbox cursor; None for the sender
    envelope: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Which entries of the access log a read asks for; None means "any".

    ``viewer`` scopes the read: None sees every entry (network privacy officer); an org
    sees the entries of its own requests and of requests that touched a message it sent
    or received. ``start <= index < end`` and ``since <= time < until``.
    """

    viewer: OrgId | None
    start: int = 0
    end: int | None = None
    org: OrgId | None = None
    user: str | None = None
    action: str | None = None
    object_id: str | None = None
    pseudonym: str | None = None
    since: int | None = None
    until: int | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True)
class Inclusion:
    """What one read transaction found for an inclusion proof.

    ``head`` None: no such signed head; ``entry`` None: no entry the viewer may see at
    that index inside the head's tree (``proof`` is then empty).
    """

    head: TreeHead | None
    entry: AuditEntry | None
    proof: list[bytes]
