"""Retention at the desk: cases past their period are erased by themselves.

The desk runs :func:`clients.retention.run` at start and then every
``DeskConfig.retention_every`` seconds, with the periods of
``DeskConfig.retention`` (``SCHAKEL_RETENTION_KIND`` and friends, as
``schakel org retention``), and forgets what it kept itself about what was erased: the
labels of erased cases and its index of erased messages (:meth:`CaseBook.forget`).
The organisation page shows which periods apply (:func:`retention_status`).

An erased message is gone, not broken: opening it answers 410 with a sentence that
says its case's period ended, and a case page shows it as erased.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from clients.errors import ClientError
from clients.retention import LocalRetention, RetentionReport, plan, run
from clients.state import LocalState
from desk.casebook import CaseBook

log = logging.getLogger("schakel.desk")


@dataclass(frozen=True, slots=True)
class RetentionStatus:
    """What the organisation page shows about retention (no content, no ids)."""

    kind: str
    statutory: bool
    case_days: int
    grace_days: int
    open: int
    waiting: int
    next_due: int | None
    erased_cases: int
    last_erased: int | None


def retention_status(state: LocalState, policy: LocalRetention, *, now: int) -> RetentionStatus:
    report = plan(state, policy, now=now)
    shredded = state.shredded()
    return RetentionStatus(
        kind=policy.kind,
        statutory=policy.statutory,
        case_days=policy.case_days,
        grace_days=policy.grace_days,
        open=report.open,
        waiting=report.waiting,
        next_due=report.next_due,
        erased_cases=len(shredded),
        last_erased=shredded[0].at if shredded else None,
    )


def erase_due(
    state: LocalState, casebook: CaseBook, policy: LocalRetention, *, now: int
) -> RetentionReport:
    """One run: erase the cases due, then what the desk kept about them."""
    report = run(state, policy, now=now)
    cases = [c.label for c in report.due if c.scope.startswith("case:")]
    if report.erased_ids or cases:
        casebook.forget(cases=cases, messages=report.erased_ids)
    return report


async def erase_forever(
    state: LocalState,
    casebook: CaseBook,
    policy: LocalRetention,
    *,
    every: int,
    clock: Callable[[], float],
    announce: Callable[[int], Awaitable[None]],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Every ``every`` seconds, :func:`erase_due`; ``announce(n)`` after ``n`` cases went."""
    while True:
        try:
            report = erase_due(state, casebook, policy, now=int(clock()))
        except ClientError as exc:
            log.error("desk retention failed: %s", type(exc).__name__)
        else:
            if report.due:
                log.info(
                    "desk retention erased %d cases (%d messages)",
                    len(report.due),
                    report.erased_messages,
                )
                await announce(len(report.due))
        await sleep(every)
