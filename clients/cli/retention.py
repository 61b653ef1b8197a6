"""``schakel org retention``: erase the cases whose retention period ended.

The organisation's kind sets the periods (:data:`clients.retention.DEFAULTS`); either
can be set by hand. Only local state is touched: no passphrase and no hub are needed,
because erasing is destroying message keys and deleting rows.
"""

from __future__ import annotations

import time
from typing import Any

import click

from clients.cli.common import Settings, day, emit, guarded, pass_settings
from clients.retention import (
    DEFAULTS,
    ENV_CASE_DAYS,
    ENV_GRACE_DAYS,
    ENV_KIND,
    MAX_DAYS,
    CaseState,
    LocalRetention,
    RetentionReport,
    plan,
    run,
)
from clients.state import LocalState

ASSUMED = "general"  # the kind a dry run without --kind shows


@click.command("retention")
@click.option(
    "--dry-run", is_flag=True, help="Only say which cases would be erased; change nothing."
)
@click.option(
    "--kind",
    type=click.Choice(sorted(DEFAULTS)),
    envvar=ENV_KIND,
    help=f"The kind of organisation, whose legal period applies (needed to erase; a dry run "
    f"without it assumes {ASSUMED}). Env: {ENV_KIND}.",
)
@click.option(
    "--case-days",
    type=click.IntRange(1, MAX_DAYS),
    envvar=ENV_CASE_DAYS,
    help=f"Days a closed case is kept, instead of the kind's. Env: {ENV_CASE_DAYS}.",
)
@click.option(
    "--grace-days",
    type=click.IntRange(0, MAX_DAYS),
    envvar=ENV_GRACE_DAYS,
    help=f"Days added before erasing (late messages). Env: {ENV_GRACE_DAYS}.",
)
@pass_settings
@guarded
def retention(
    settings: Settings,
    dry_run: bool,
    kind: str | None,
    case_days: int | None,
    grace_days: int | None,
) -> None:
    """Erase every case kept here whose retention period ended (crypto-shredding).

    A case is closed when each referral in it reached its last step (or, without a
    referral, when its last message came); it is erased CASE_DAYS + GRACE_DAYS after.
    Erasing destroys the keys of its messages and deletes their rows: nothing of it can
    be read again, from the state file or from any backup of it. A run killed half-way
    is finished by the next one.
    """
    if kind is None and case_days is None and not dry_run:
        # Erasing can not be undone: it never rests on a default period.
        raise click.UsageError(
            f"say which period applies before erasing: --kind (or {ENV_KIND}) or --case-days"
        )
    policy = LocalRetention.for_kind(kind or ASSUMED, case_days=case_days, grace_days=grace_days)
    now = int(time.time())
    with LocalState(settings.state_path) as state:
        report = plan(state, policy, now=now) if dry_run else run(state, policy, now=now)
    emit(settings, _json(report), _text(report))


def _json(report: RetentionReport) -> dict[str, Any]:
    policy = report.retention
    return {
        "retention": {
            "kind": policy.kind,
            "statutory": policy.statutory,
            "case_days": policy.case_days,
            "grace_days": policy.grace_days,
        },
        "dry_run": report.dry_run,
        "erased" if not report.dry_run else "would_erase": [_case(c) for c in report.due],
        "messages": report.erased_messages,
        "open": report.open,
        "waiting": report.waiting,
        "next_due": report.next_due,
        "finished": list(report.finished),
        "checkpoint_pending": report.unchecked,
    }


def _case(case: CaseState) -> dict[str, Any]:
    return {
        "case": case.scope,
        "messages": case.messages,
        "closed_at": case.closed_at,
        "due_at": case.due_at,
    }


def _text(report: RetentionReport) -> str:
    policy = report.retention
    basis = "statutory" if policy.statutory else "no statutory duty"
    lines = [
        f"retention:  {policy.kind} ({basis}): a closed case is kept {policy.case_days} days "
        f"+ {policy.grace_days} days grace",
        f"cases:      {report.open} open, {report.waiting} closed and kept"
        + ("" if report.next_due is None else f" (next erased on {day(report.next_due)})"),
    ]
    verb = "would erase" if report.dry_run else "erased"
    lines.append(
        f"{verb}: {len(report.due)} cases, {report.erased_messages} messages"
        if report.due
        else f"{verb}: nothing (no case's period has ended)"
    )
    lines += [
        f"  {c.scope}: {c.messages} messages, closed {day(c.closed_at or 0)}" for c in report.due
    ]
    if report.finished:
        lines.append(f"finished {len(report.finished)} erasures a run before left half done")
    if report.unchecked:
        lines.append("warning: another process kept the files from being checkpointed: run again")
    return "\n".join(lines)
