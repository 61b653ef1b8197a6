"""The coordinator's case view: the hub's case, with what this organisation can read inline.

The hub's case is metadata only (:mod:`clients.caseanswers`). Per message in its
timeline, this organisation can read what was addressed to it (verified and opened as
on receipt, fetched from the hub if it is not held locally) and what it sent itself
(kept encrypted in local state). A message for others is shown as ``not addressed to
you``; one that does not verify, or whose signed header does not match the hub's
timeline, is shown as ``did not verify`` and never used.

The functions take any :class:`CaseReader`, the narrow part of an organisation they use.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

from clients.comensha import CaseMaterial
from clients.errors import ClientError, Erased, HubProblem, PayloadInvalid, VerificationFailed
from clients.inbox import ReceivedMessage
from protocol.cases import MAX_PAGE, CaseDetail, CasePage, CaseSummary, TimelineEntry
from protocol.types import MessageId, OrgId

MESSAGE_TYPES: tuple[str, ...] = ("signal", "referral", "status", "reply")
MAX_CASES = 100_000  # cases one CoMensha export reads, at most

# What the case view can say about one message.
OPENED = "opened"  # addressed to this organisation; verified and opened
SENT = "sent"  # this organisation wrote it (kept encrypted in local state)
NOT_ADDRESSED = "not addressed to you"
UNVERIFIED = "did not verify"
UNAVAILABLE = "no longer available"  # not held locally, and the hub no longer serves it
ERASED = "erased"  # held here until its case's retention period ended (clients.retention)


class CaseHub(Protocol):
    """The case routes of a :class:`~clients.hub_client.HubClient` that the view reads."""

    async def case(self, ref: str) -> CaseDetail: ...

    async def cases(self, **filters: str | int | None) -> CasePage: ...


class CaseReader(Protocol):
    """What the case view needs of an organisation."""

    @property
    def org(self) -> OrgId: ...

    @property
    def hub(self) -> CaseHub: ...

    def written(self, message_id: str) -> tuple[str, dict[str, Any]] | None: ...

    async def read_message(self, message_id: str) -> ReceivedMessage: ...


@dataclass(frozen=True, slots=True, repr=False)
class Inline:
    """What this organisation can read of one timeline message; ``payload`` only if
    ``state`` is :data:`OPENED` or :data:`SENT`."""

    state: str
    payload: Mapping[str, Any] | None = None

    def __repr__(self) -> str:
        return f"Inline(state={self.state!r})"


@dataclass(frozen=True, slots=True)
class CaseView:
    """The hub's case and, per message id in its timeline, what this organisation can read."""

    case: CaseDetail
    contents: Mapping[MessageId, Inline]

    def payloads(self, kind: str) -> tuple[dict[str, Any], ...]:
        """The readable payloads of the case's messages of ``kind``, in timeline order."""
        found = []
        for entry in self.case.timeline:
            inline = self.contents.get(entry.message) if entry.message else None
            if entry.type == kind and inline is not None and inline.payload is not None:
                found.append(dict(inline.payload))
        return tuple(found)


async def case_view(reader: CaseReader, ref: str) -> CaseView:
    """The hub's case with, inline, what this organisation can read of each message."""
    detail = await reader.hub.case(ref)
    contents: dict[MessageId, Inline] = {}
    for entry in detail.timeline:
        if entry.type in MESSAGE_TYPES and entry.message and entry.message not in contents:
            contents[entry.message] = await _inline(reader, entry)
    return CaseView(detail, MappingProxyType(contents))


async def _inline(reader: CaseReader, entry: TimelineEntry) -> Inline:
    assert entry.message is not None
    try:
        if entry.sender == reader.org:
            written = reader.written(entry.message)
            if written is None:
                return Inline(UNAVAILABLE)
            kind, payload = written
            return Inline(SENT, MappingProxyType(payload)) if kind == entry.type else _unverified()
        if reader.org not in entry.recipients:
            return Inline(NOT_ADDRESSED)
        message = await reader.read_message(entry.message)
    except VerificationFailed:
        return _unverified()
    except Erased:
        return Inline(ERASED)
    except HubProblem as exc:
        if exc.status != 404:
            raise
        return Inline(UNAVAILABLE)
    matches = (message.kind, message.sender, message.status, message.ref) == (
        entry.type,
        entry.sender,
        entry.code,
        entry.referral if entry.type == "status" else message.ref,
    )
    return Inline(OPENED, MappingProxyType(message.payload)) if matches else _unverified()


def messages_of(view: CaseView) -> list[MessageId]:
    """The ids of the messages in a case's timeline."""
    return [e.message for e in view.case.timeline if e.message and e.type in MESSAGE_TYPES]


def _unverified() -> Inline:
    return Inline(UNVERIFIED)


async def all_cases(reader: CaseReader) -> AsyncIterator[CaseSummary]:
    """Every live case of the coordinator, page by page (oldest first signal first)."""
    offset = 0
    while offset < MAX_CASES:
        page = await reader.hub.cases(sort="first", order="asc", offset=offset, limit=MAX_PAGE)
        for summary in page.cases:
            yield summary
        offset += len(page.cases)
        if not page.cases or offset >= page.total:
            return
    raise ClientError(f"more than {MAX_CASES} cases: export them in parts")


def material_of(view: CaseView) -> CaseMaterial | None:
    """What the CoMensha rows of a case are made of; None for a case without a signal."""
    summary = view.case.summary
    if summary.first_signal is None:
        return None
    try:
        return CaseMaterial(
            ref=summary.case,
            first_signal=summary.first_signal,
            reporting_types=tuple(sorted({o.org_type for o in summary.orgs})),
            signals=view.payloads("signal"),
            referrals=view.payloads("referral"),
        )
    except (PayloadInvalid, TypeError, ValueError) as exc:
        raise ClientError(f"case {summary.case}: {exc}") from exc


async def materials(reader: CaseReader) -> list[CaseMaterial]:
    """The CoMensha material of every live case that has a signal."""
    found = []
    async for summary in all_cases(reader):
        material = material_of(await case_view(reader, summary.case))
        if material is not None:
            found.append(material)
    return found
