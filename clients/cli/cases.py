"""``schakel org``: referrals, statuses and the coordinator's case work.

Referrals and their statuses, the coordinator's views of cases, referrals and events,
splits and merges, and the CoMensha files. Options, output and exit codes as the rest
of ``schakel org`` (:mod:`clients.cli.common`); :mod:`clients.cli.org` registers these
commands on its group, and sends a status through :func:`move_referral`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from clients.caseview import SENT, CaseView, Inline
from clients.cli.common import (
    Settings,
    acting,
    emit,
    guarded,
    load_json,
    pass_settings,
    plain,
    report_sent,
    warn,
    when,
)
from clients.errors import HubUnreachable
from clients.hub_client import EventNotice
from clients.organisation import Organisation
from protocol.cases import (
    CASE_SORTS,
    CASE_STATES,
    MAX_PAGE,
    CaseSummary,
    Event,
    OpenReferral,
    TimelineEntry,
)
from protocol.certificate import ORG_TYPES

DECLINE_REASONS = (
    "no_capacity", "not_eligible", "person_unreachable", "person_declined", "safety", "other",
)  # fmt: skip


def move_referral(
    settings: Settings,
    referral_id: str,
    code: str,
    status_file: Path | None,
    note: str | None,
    reason: str | None,
    started_on: str | None,
) -> None:
    """``schakel org status REFERRAL_ID CODE ...``: send a status about a referral."""
    payload = _status_payload(code, status_file, note, reason, started_on)
    sent = acting(
        settings, lambda organisation: organisation.send_status(referral_id, code, payload)
    )
    report_sent(settings, sent, f"status {code} about referral {referral_id}")


def _status_payload(
    code: str, path: Path | None, note: str | None, reason: str | None, started: str | None
) -> dict[str, Any]:
    if (path is None) == (note is None):
        raise click.UsageError("give exactly one of --file or --note")
    if path is not None:
        if reason or started:
            raise click.UsageError("--reason and --started-on go with --note, not --file")
        return load_json(path)
    payload: dict[str, Any] = {"schema": "schakel.status/1", "status": code, "explanation": note}
    if reason is not None:
        payload["reason_code"] = reason
    if started is not None:
        payload["care_started_on"] = started
    return payload


@click.command()
@click.option("--to", "recipient", required=True, help="The shelter, care or legal-aid org.")
@click.option("--case", "case_ref", help="The case reference (coordinators only).")
@click.option("--replaces", help="The declined referral this one replaces (its message id).")
@click.option(
    "--file",
    "referral_file",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The referral payload (schakel.referral/1) as JSON.",
)
@pass_settings
@guarded
def refer(
    settings: Settings,
    recipient: str,
    case_ref: str | None,
    replaces: str | None,
    referral_file: Path,
) -> None:
    """Refer a person to a shelter, care or legal-aid organisation."""
    payload = load_json(referral_file)
    sent = acting(
        settings,
        lambda organisation: organisation.send_referral(
            payload, recipient, case=case_ref, replaces=replaces
        ),
    )
    report_sent(settings, sent, f"referral to {recipient}")


@click.command()
@click.option("--state", type=click.Choice(CASE_STATES), help="Only cases in this state.")
@click.option("--type", "org_type", type=click.Choice(ORG_TYPES), help="With a signal from...")
@click.option("--sort", type=click.Choice(CASE_SORTS), default="last", show_default=True)
@click.option("--order", type=click.Choice(("desc", "asc")), default="desc", show_default=True)
@click.option("--limit", type=click.IntRange(1, MAX_PAGE), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0)
@pass_settings
@guarded
def cases(
    settings: Settings,
    state: str | None,
    org_type: str | None,
    sort: str,
    order: str,
    limit: int,
    offset: int,
) -> None:
    """The coordinator's cases: state, signals, organisation types, open referrals."""

    page = acting(
        settings,
        lambda organisation: organisation.hub.cases(
            state=state, type=org_type, sort=sort, order=order, limit=limit, offset=offset
        ),
    )
    head = f"{'case':<16}  {'state':<8} {'signals':>7}  {'first':<17}  {'last':<17}  open  types"
    rows = [_case_row(c) for c in page.cases]
    footer = f"{len(page.cases)} of {page.total} cases"
    emit(settings, plain(page), "\n".join([head, *rows, footer]))


def _case_row(case: CaseSummary) -> str:
    types = ",".join(sorted({o.org_type for o in case.orgs})) or "-"
    return (
        f"{case.case:<16}  {case.state:<8} {case.signals:>7}  {when(case.first_signal):<17}  "
        f"{when(case.last_signal):<17}  {case.open_referrals:>4}  {types}"
    )


@click.command()
@click.argument("ref")
@pass_settings
@guarded
def case(settings: Settings, ref: str) -> None:
    """One case: referrals with their step and due time, and the timeline with what
    this organisation can read of each message shown inline."""

    async def look(organisation: Organisation) -> tuple[CaseView, dict[str, OpenReferral]]:
        view = await organisation.case_view(ref)
        open_now = await organisation.hub.referrals()
        return view, {o.referral.id: o for o in open_now}

    view, open_now = acting(settings, look)
    data = plain(view.case) | {
        "contents": {key: plain(inline) for key, inline in view.contents.items()},
        "due": {key: plain(item) for key, item in open_now.items() if key in _ids(view)},
    }
    emit(settings, data, _case_text(view, open_now))


def _ids(view: CaseView) -> set[str]:
    return {r.id for r in view.case.referrals}


def _case_text(view: CaseView, open_now: Mapping[str, OpenReferral]) -> str:
    summary = view.case.summary
    lines = [f"case {summary.case}  state {summary.state}"]
    if view.case.merged_from:
        lines[0] += f"  (asked for {view.case.merged_from}, merged into this case)"
    lines.append(
        f"signals {summary.signals}, first {when(summary.first_signal)}, last "
        f"{when(summary.last_signal)}, from "
        + (", ".join(f"{o.org} ({o.org_type}) x{o.count}" for o in summary.orgs) or "-")
    )
    lines.append("referrals:" if view.case.referrals else "referrals: none")
    for referral in view.case.referrals:
        due = open_now.get(referral.id)
        late = " OVERDUE" if due and due.overdue else ""
        lines.append(
            f"  {referral.id}  {referral.referrer} -> {referral.recipient} "
            f"({referral.recipient_type})  {referral.step} since {when(referral.step_at)}"
            + (f", due {when(due.due)}{late}" if due and due.due else "")
        )
    lines.append("timeline:" + (" (older entries left out)" if view.case.truncated else ""))
    for entry in view.case.timeline:
        lines.append("  " + _entry_text(entry))
        inline = view.contents.get(entry.message) if entry.message else None
        if inline is not None:
            lines.extend(_inline_text(inline))
    return "\n".join(lines)


def _entry_text(entry: TimelineEntry) -> str:
    at = when(entry.at)
    if entry.type in ("merge", "split"):
        how = "automatic " if entry.automatic else ""
        return f"{at}  {how}{entry.type} with {entry.other} ({len(entry.messages)} messages)"
    if entry.type == "delivered":
        return f"{at}  delivered to {entry.sender}: referral {entry.referral}"
    to = ",".join(entry.recipients) or "-"
    text = f"{at}  {entry.type:<8} {entry.message}  {entry.sender} ({entry.sender_type}) -> {to}"
    return text + (f"  {entry.code} about {entry.referral}" if entry.type == "status" else "")


def _inline_text(inline: Inline) -> list[str]:
    if inline.payload is None:
        return [f"      [{inline.state}]"]
    label = "      [written by this organisation]" if inline.state == SENT else None
    text = json.dumps(dict(inline.payload), indent=2, ensure_ascii=False, sort_keys=True)
    body = ["      " + line for line in text.splitlines()]
    return [label, *body] if label else body


@click.command()
@click.option("--limit", type=click.IntRange(1, MAX_PAGE), help="At most this many.")
@pass_settings
@guarded
def referrals(settings: Settings, limit: int | None) -> None:
    """Open referrals: overdue first, with their age, step, who holds it and when due."""

    found = sorted(
        acting(settings, lambda organisation: organisation.hub.referrals(limit)), key=_urgency
    )
    head = f"{'referral':<22}  {'case':<16}  {'step':<12} {'holder':<16} {'age':>6}  due"
    emit(
        settings,
        {"referrals": plain(found)},
        "\n".join([head, *(_referral_row(item) for item in found)]) if found else "none open",
    )


def _urgency(item: OpenReferral) -> tuple[bool, int, int]:
    """Overdue first (earliest due first), then the longest waiting."""
    return (not item.overdue, item.due if item.overdue and item.due else 0, -item.waiting)


def _referral_row(item: OpenReferral) -> str:
    info = item.referral
    late = "  OVERDUE" if item.overdue else ""
    return (
        f"{info.id:<22}  {info.case:<16}  {info.step:<12} {item.holder:<16} "
        f"{_age(item.age):>6}  {when(item.due)}{late}"
    )


def _age(seconds: int) -> str:
    if seconds >= 86400:
        return f"{seconds // 86400}d"
    return f"{seconds // 3600}h" if seconds >= 3600 else f"{seconds // 60}m"


@click.command()
@click.argument("ref")
@click.argument("message_ids", nargs=-1, required=True)
@pass_settings
@guarded
def split(settings: Settings, ref: str, message_ids: tuple[str, ...]) -> None:
    """Split these signals or referrals off a case into a new case, kept apart."""

    new, old = acting(settings, lambda organisation: organisation.hub.split(ref, message_ids))
    emit(settings, {"case": new, "from": old}, f"split {len(set(message_ids))} off {old}: {new}")


@click.command()
@click.argument("ref")
@click.argument("other")
@pass_settings
@guarded
def merge(settings: Settings, ref: str, other: str) -> None:
    """Merge case OTHER into case REF (OTHER then redirects to REF)."""

    kept, absorbed = acting(settings, lambda organisation: organisation.hub.merge(ref, other))
    emit(settings, {"case": kept, "absorbed": absorbed}, f"merged {absorbed} into {kept}")


@click.command()
@click.argument("ref")
@click.argument("other")
@pass_settings
@guarded
def unmerge(settings: Settings, ref: str, other: str) -> None:
    """Undo the newest merge of case OTHER into case REF."""

    revived, old = acting(settings, lambda organisation: organisation.hub.unmerge(ref, other))
    emit(settings, {"case": revived, "from": old}, f"{revived} lives again, apart from {old}")


@click.command()
@click.option("--after", type=click.IntRange(0), default=0, help="Only events after this id.")
@click.option("--follow", is_flag=True, help="Keep listening for new events.")
@pass_settings
@guarded
def events(settings: Settings, after: int, follow: bool) -> None:
    """This organisation's event feed: matches, referral steps, escalations, reminders."""

    async def follow_events(organisation: Organisation) -> None:
        cursor = await _print_events(settings, organisation, after)
        while follow:
            try:  # once the socket is open, and on each new event: print what is new
                async for notice in organisation.hub.live(opened=True):
                    if notice is None or (
                        isinstance(notice, EventNotice) and notice.cursor > cursor
                    ):
                        cursor = await _print_events(settings, organisation, cursor)
            except HubUnreachable as exc:
                warn(f"{exc}; retrying in 10 s")
            await asyncio.sleep(10)

    acting(settings, follow_events)


async def _print_events(settings: Settings, organisation: Organisation, after: int) -> int:
    """Print every event after ``after``; the id of the last one printed."""
    while True:
        page = await organisation.hub.events(after=after)
        for event in page.events:
            data = plain(event)
            click.echo(json.dumps(data, sort_keys=True) if settings.as_json else _event_text(event))
        if not page.events:
            return after
        after = page.next


def _event_text(event: Event) -> str:
    detail = event.detail
    about = f" case {event.case}" if event.case else ""
    about += f" message {event.message}" if event.message else ""
    if event.kind == "match":
        more = f" {detail['kind']} from {detail['sender']} ({detail['sender_type']})"
        more += f", merged {','.join(detail['merged'])}" if detail["merged"] else ""
        more += f", kept apart {','.join(detail['kept_apart'])}" if detail["kept_apart"] else ""
    else:
        more = f" {detail['referrer']} -> {detail['recipient']}"
        more += f" step {event.step}" if event.step else ""
        more += f", due {when(detail['due'])}" if "due" in detail else ""
    return f"{event.id:>6}  {when(event.at)}  {event.kind:<10}{about}{more}"


@click.command()
@click.option(
    "--registrations",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="CSV of cases with consent to registration (holds names: keep it safe).",
)
@click.option(
    "--statistics",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="CSV of anonymised rows for cases without that consent.",
)
@pass_settings
@guarded
def comensha(settings: Settings, registrations: Path, statistics: Path) -> None:
    """Write the CoMensha files from every case (made here; the hub never sees them)."""

    files = acting(settings, lambda organisation: organisation.comensha(registrations, statistics))
    for case_ref, fields in files.disagreements:
        warn(
            f"case {case_ref}: signals disagree on {fields.replace(';', ', ')}; the registration "
            "takes the best-identified signal's value (column disagreements): check it"
        )
    emit(
        settings,
        {
            "registrations": files.registrations,
            "statistics": files.statistics,
            "disagreements": [{"case": c, "fields": f.split(";")} for c, f in files.disagreements],
        },
        f"wrote {files.registrations} registration rows to {registrations} and "
        f"{files.statistics} statistics rows to {statistics}",
    )
