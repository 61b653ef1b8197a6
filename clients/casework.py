"""Case work: referrals and their statuses, the coordinator's case view, the CoMensha export.

Used through :class:`clients.organisation.Organisation` (``send_referral``,
``send_status``, ``case_view``, ``comensha``); the functions here take that
organisation as their first argument.

* A **referral** (``schakel.referral/1``) goes to one organisation certified as
  shelter, care or legal aid, about a case (``case``, coordinators only) or about a
  person (pseudonyms derived from ``payload.person``); ``replaces`` names the declined
  referral it takes over.
* A **status** (``schakel.status/1``) moves a referral on. It goes to the referral's
  other party: its sender when this organisation received it, else its recipient.
  When the client can tell the referral's step from what it holds locally, it offers
  only the codes :func:`protocol.referral.allowed_codes` allows; the hub is the judge.
* The **case view** is the hub's case (metadata only) with, inline, what this
  organisation can read of each message: what was addressed to it (verified and opened
  as on receipt, fetched from the hub if it is not held locally) and what it sent
  itself (kept encrypted in local state). A message for others is shown as
  ``not addressed to you``; one that does not verify, or whose signed header does not
  match the hub's timeline, is shown as ``did not verify`` and never used.
"""

from __future__ import annotations

import io
import os
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from clients.caseanswers import (
    MAX_PAGE,
    STATUS_CODES,
    CaseDetail,
    CaseSummary,
    TimelineEntry,
)
from clients.comensha import (
    REGISTRATION_COLUMNS,
    STATISTICS_COLUMNS,
    CaseMaterial,
    registration_rows,
    statistics_rows,
    write_csv,
)
from clients.errors import ClientError, HubProblem, NotReady, PayloadInvalid, VerificationFailed
from clients.payloads import validate_payload
from protocol import referral as machine
from protocol.errors import ProtocolError
from protocol.types import CaseRef, MessageId, OrgId, parse_case_ref, parse_message_id

if TYPE_CHECKING:
    from clients.organisation import Organisation

REFERRAL_TYPES: tuple[str, ...] = ("shelter", "care", "legal_aid")
MESSAGE_TYPES: tuple[str, ...] = ("signal", "referral", "status", "reply")
MAX_CASES = 100_000  # cases one CoMensha export reads, at most

# What the case view can say about one message.
OPENED = "opened"  # addressed to this organisation; verified and opened
SENT = "sent"  # this organisation wrote it (kept encrypted in local state)
NOT_ADDRESSED = "not addressed to you"
UNVERIFIED = "did not verify"
UNAVAILABLE = "no longer available"  # not held locally, and the hub no longer serves it


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


# -- referrals and statuses ------------------------------------------------------------


async def send_referral(
    org: Organisation,
    payload: dict[str, Any],
    to: str,
    *,
    case: str | None = None,
    replaces: str | None = None,
) -> MessageId:
    """Validate and send a referral to ``to``; it names ``case``, or a person, or both."""
    validate_payload("referral", payload)
    case_ref = None if case is None else CaseRef(_parsed(parse_case_ref, case, "case"))
    replaced = None if replaces is None else _message_id(replaces, "replaces")
    recipients = org.recipients_of("referral", [to])
    pseudonyms = org.pseudonyms_of(payload)
    if case_ref is None and not pseudonyms:
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
    return await org.send_sealed(
        "referral", payload, recipients, pseudonyms=pseudonyms, ref=replaced, case=case_ref
    )


async def send_status(
    org: Organisation, referral_id: str, code: str, payload: dict[str, Any]
) -> MessageId:
    """Send status ``code`` about a referral this organisation sent or received."""
    ref = _message_id(referral_id, "referral")
    if code not in STATUS_CODES:
        raise PayloadInvalid(f"must be one of: {', '.join(STATUS_CODES)}", "status")
    validate_payload("status", payload)
    if payload.get("status") != code:
        raise PayloadInvalid(f"must be the status code sent ({code})", "$.status")
    other, party = referral_party(org, ref)
    step = known_step(org, ref, party)
    if step is not None and code not in machine.allowed_codes(step, party):
        allowed = ", ".join(machine.allowed_codes(step, party)) or "none"
        raise ClientError(
            f"as the referral's {party}, at step {step}, this organisation can send: {allowed}"
        )
    await org.trust_anchors()
    return await org.send_sealed("status", payload, [other], status=code, ref=ref)


def referral_party(org: Organisation, referral_id: str) -> tuple[OrgId, machine.Party]:
    """(the other party, our part) of a referral this organisation received or sent."""
    received = org.state.message(referral_id)
    if received is not None and received.kind == "referral":
        return OrgId(received.sender), machine.RECIPIENT
    sent = org.state.sent_message(referral_id)
    if sent is not None and sent.kind == "referral" and len(sent.recipients) == 1:
        return OrgId(sent.recipients[0]), machine.REFERRER
    raise NotReady(
        f"no referral {referral_id} here: only its sender and its recipient can answer it "
        "(a received referral arrives with 'schakel org inbox')"
    )


def known_step(org: Organisation, referral_id: str, party: machine.Party) -> str | None:
    """The referral's step as far as local state tells, or None when it can not tell.

    The recipient knows it acknowledged the referral (``delivered``); both parties know
    the statuses they sent and received. The hub may know more (a status not yet
    received), so a None or a stale step only means the hub decides.
    """
    received = org.state.message(referral_id)
    step = machine.DELIVERED if received is not None and received.acked_at else machine.SENT
    other: machine.Party = machine.REFERRER if party == machine.RECIPIENT else machine.RECIPIENT
    moves = [(p.created, p.status, party) for p in org.state.sent_about(referral_id)]
    for message in org.state.received_about(referral_id):
        moves.append((message.created, message.envelope["header"].get("status"), other))
    try:
        for _, code, by in sorted(moves, key=lambda move: move[0]):
            if code is not None:
                step = machine.advance(step, str(code), by)[-1]
    except machine.IllegalTransition:
        return None
    return step


# -- the coordinator's view ------------------------------------------------------------


async def case_view(org: Organisation, ref: str) -> CaseView:
    """The hub's case with, inline, what this organisation can read of each message."""
    detail = await org.hub.case(ref)
    contents: dict[MessageId, Inline] = {}
    for entry in detail.timeline:
        if entry.type in MESSAGE_TYPES and entry.message and entry.message not in contents:
            contents[entry.message] = await _inline(org, entry)
    return CaseView(detail, MappingProxyType(contents))


async def _inline(org: Organisation, entry: TimelineEntry) -> Inline:
    assert entry.message is not None
    try:
        if entry.sender == org.org:
            payload = org.sent_payload(entry.message)
            kept = org.state.sent_payload(entry.message)
            if payload is None or kept is None or kept.kind != entry.type:
                return Inline(UNVERIFIED if kept is not None else UNAVAILABLE)
            return Inline(SENT, MappingProxyType(payload))
        if org.org not in entry.recipients:
            return Inline(NOT_ADDRESSED)
        message = await org.read_message(entry.message)
    except VerificationFailed:
        return Inline(UNVERIFIED)
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
    return Inline(OPENED, MappingProxyType(message.payload)) if matches else Inline(UNVERIFIED)


# -- CoMensha --------------------------------------------------------------------------


async def all_cases(org: Organisation) -> AsyncIterator[CaseSummary]:
    """Every live case of the coordinator, page by page (oldest first signal first)."""
    offset = 0
    while offset < MAX_CASES:
        page = await org.hub.cases(sort="first", order="asc", offset=offset, limit=MAX_PAGE)
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


async def write_comensha(
    org: Organisation,
    out_registrations: str | os.PathLike[str],
    out_statistics: str | os.PathLike[str],
) -> tuple[int, int]:
    """Write both CSVs for every case (0600, all or nothing, never over an existing file)."""
    targets = (Path(out_registrations), Path(out_statistics))
    if targets[0].resolve() == targets[1].resolve():
        raise ClientError("the registrations and statistics files must be two different files")
    for target in targets:
        if target.exists() or target.is_symlink():
            raise ClientError(f"{target} already exists: choose another name, or remove it")
    materials = []
    async for summary in all_cases(org):
        material = material_of(await case_view(org, summary.case))
        if material is not None:
            materials.append(material)
    registrations, statistics = registration_rows(materials), statistics_rows(materials)
    texts = (
        _csv(registrations, REGISTRATION_COLUMNS),
        _csv(statistics, STATISTICS_COLUMNS),
    )
    _write_all(targets, texts)
    return len(registrations), len(statistics)


def _csv(rows: Sequence[Mapping[str, object]], columns: Sequence[str]) -> bytes:
    buffer = io.StringIO(newline="")
    write_csv(rows, columns, buffer)
    return buffer.getvalue().encode("utf-8")


def _write_all(targets: Sequence[Path], texts: Sequence[bytes]) -> None:
    """Write every file to a private temporary name, then link each into place.

    ``os.link`` refuses an existing target, so nothing is overwritten; if any step
    fails, every file written so far (temporary or linked) is removed again.
    """
    made: list[Path] = []
    try:
        temps = [
            _write_private(target, text, made) for target, text in zip(targets, texts, strict=True)
        ]
        for temp, target in zip(temps, targets, strict=True):
            os.link(temp, target)
            made.append(target)
        for temp in temps:
            temp.unlink()
            made.remove(temp)
    except BaseException:
        for path in made:
            path.unlink(missing_ok=True)
        raise


def _write_private(target: Path, data: bytes, made: list[Path]) -> Path:
    temp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(temp, flags, 0o600)
    made.append(temp)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return temp


# -- helpers ---------------------------------------------------------------------------


def _parsed(parse: Any, value: str, field: str) -> str:
    try:
        return str(parse(value))
    except ProtocolError as exc:
        raise PayloadInvalid(str(exc)[:120], field) from None


def _message_id(value: str, field: str) -> MessageId:
    return MessageId(_parsed(parse_message_id, value, field))
