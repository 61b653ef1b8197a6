"""Retention at the desk: cases past their period are erased by themselves.

The desk erases (:meth:`desk.adapter.Library.erase_due`, :mod:`clients.retention`) at
start and then every ``DeskConfig.retention_every`` seconds, with the periods of
``DeskConfig.retention_kind`` (and either period set by hand, as ``schakel org
retention``), and forgets what it kept itself about what was erased: its index of
erased messages and the rows of erased cases (:meth:`CaseBook.forget`; a case's label
was sealed under the case's own key, destroyed with it). The organisation page shows
which periods apply (:meth:`~desk.adapter.Library.retention_status`).

An erased message is gone, not broken: opening it answers 410 with a sentence that
says its case's period ended, and a case page shows it as erased.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from desk.adapter import ErasedCases, Library, LibraryError, RetentionPolicy
from desk.casebook import CaseBook

log = logging.getLogger("schakel.desk")


def erase_due(
    library: Library, casebook: CaseBook, policy: RetentionPolicy, *, now: int
) -> ErasedCases:
    """One run: erase the cases due, then what the desk kept about them."""
    erased = library.erase_due(policy, now=now)
    if erased.messages or erased.cases:
        casebook.forget(cases=erased.cases, messages=erased.messages)
    return erased


async def erase_forever(
    library: Library,
    casebook: CaseBook,
    policy: RetentionPolicy,
    *,
    every: int,
    clock: Callable[[], float],
    announce: Callable[[int], Awaitable[None]],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Every ``every`` seconds, :func:`erase_due`; ``announce(n)`` after ``n`` cases went."""
    while True:
        try:
            erased = erase_due(library, casebook, policy, now=int(clock()))
        except LibraryError as exc:
            log.error("desk retention failed: %s", exc.category)
        else:
            if erased.count:
                log.info(
                    "desk retention erased %d cases (%d messages)",
                    erased.count,
                    len(erased.messages),
                )
                await announce(erased.count)
        await sleep(every)
