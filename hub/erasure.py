"""Erasure on request: the network privacy officer erases what the hub holds about one person.

``POST /v1/audit/erasures`` (``docs/protocol.md``, "Retention") takes the pseudonyms of one
person, which the officer's client computed from the person's identifiers as for a
subject report (the hub never sees an identifier). In one work item, with its own
access-log entry (action ``delete``, reason ``erasure-request``, the cases it touched as
objects and never the pseudonyms), the hub erases what the law lets go and keeps the
rest, and answers a :class:`~protocol.retention.ErasureReport`:

* the live cases holding any of the pseudonyms are the person's only when *every*
  pseudonym they hold was named; a case that holds others may be another person's too
  and is kept whole (``shared-case``);
* of the person's cases, a closed one goes with its pseudonyms and envelopes; an open one
  stays (``case-open``: the case is still handled, the policy's case periods apply);
* in the person's open cases, an envelope every recipient acknowledged goes when all the
  pseudonyms it carries were named (else ``shared-message``); one not yet acknowledged
  stays (``not-acknowledged``: its recipient has not fetched it; it goes at the maximum age);
* personal fields of access-log entries about the person (:mod:`hub.accesslog.erasure`)
  are kept within the access-log period of the held policy, five years without one
  (``access-log-period``, NEN 7513); older ones go as the retention job would take them,
  each erased opening naming the erasure's entry. The erased fields are scrubbed from
  the database files by the retention job's next tick (:meth:`RetentionJob.scrub_soon`).

Nothing outside those cases is touched: another person's case, message or pseudonym rows
are never selected.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from hub.accesslog import erasure, recording
from hub.accesslog.recording import ALLOWED, Scope
from hub.auth import Caller
from hub.config import Clock
from hub.errors import Malformed, NotFound
from hub.store import Store, Tx
from protocol.auditlog import MAX_OBJECT_IDS
from protocol.certificate import ROLE_NETWORK_PRIVACY_OFFICER
from protocol.errors import EncodingError, ValidationError
from protocol.retention import (
    ACCESS_LOG,
    DAY,
    DEFAULTS,
    ERASED,
    ErasureReport,
    parse_erasure_request,
)
from protocol.types import CaseRef

REASON = "erasure-request"


def _requested(body: object) -> frozenset[str]:
    try:
        return frozenset(parse_erasure_request(body))
    except (EncodingError, ValidationError) as exc:
        raise Malformed(f"erasure request: {str(exc)[:200]}") from None


def erase_in(
    tx: Tx, requested: frozenset[str], holding: dict[CaseRef, frozenset[str]], *,
    access_cutoff: int, now: int, entry: int,
) -> tuple[Counter[str], Counter[tuple[str, str]]]:  # fmt: skip
    """Erase what may go about the person named by ``requested``; (erased, kept) counts.
    ``holding``: the live cases holding any of them; ``entry``: the erasure's own entry."""
    erased: Counter[str] = Counter()
    kept: Counter[tuple[str, str]] = Counter()
    own = [ref for ref, held in holding.items() if held <= requested]
    kept["case", "shared-case"] += len(holding) - len(own)
    closed = tx.retention.closed_cases(own)
    still_open = [ref for ref in own if ref not in set(closed)]
    kept["case", "case-open"] += len(still_open)
    _erase_envelopes(tx, still_open, requested, erased, kept, now=now)
    gone = tx.retention.delete_cases(closed, reason=ERASED, now=now)
    erased["case"] += len(gone.cases)
    erased["pseudonym"] += gone.pseudonyms
    erased["ciphertext"] += len(gone.messages)
    _erase_openings(tx, requested, erased, kept, cutoff=access_cutoff, now=now, entry=entry)
    return erased, kept


def _erase_openings(
    tx: Tx, requested: frozenset[str], erased: Counter[str], kept: Counter[tuple[str, str]],
    *, cutoff: int, now: int, entry: int,
) -> None:  # fmt: skip
    """Access-log fields about the person: past the access-log period they go (as the
    retention job would take them), within it they are kept by law."""
    about = erasure.seqs_about(tx, requested)
    times = tx.retention.entry_times(about)
    old = [index for index in about if times[index] <= cutoff]
    kept["access-log", "access-log-period"] += len(about) - len(old)
    for start in range(0, len(old), erasure.MAX_BATCH):
        part = old[start : start + erasure.MAX_BATCH]
        erased["access-log"] += erasure.erase_openings(
            tx, part, reason=REASON, now=now, entry=entry
        )


def _erase_envelopes(
    tx: Tx, refs: Sequence[CaseRef], requested: frozenset[str],
    erased: Counter[str], kept: Counter[tuple[str, str]], *, now: int,
) -> None:  # fmt: skip
    going = []
    for message in tx.retention.live_messages_of(refs):
        if not message.acknowledged:
            kept["ciphertext", "not-acknowledged"] += 1
        elif not message.pseudonyms <= requested:
            kept["ciphertext", "shared-message"] += 1
        else:
            going.append(message.cursor)
    erased["ciphertext"] += len(tx.retention.empty_messages(going, reason=ERASED, now=now))


async def erase_person(
    store: Store, clock: Clock, scope: Scope, *, caller: Caller, body: object
) -> ErasureReport:
    """Erase what may go about one person (see the module docstring); the report."""
    if ROLE_NETWORK_PRIVACY_OFFICER not in caller.roles:
        raise NotFound()
    requested = _requested(body)
    now = clock()
    policy = await store.retention_policy()
    days = DEFAULTS[ACCESS_LOG] if policy is None else policy.access_log_days
    access_cutoff = now - days * DAY

    def work(tx: Tx) -> tuple[Counter[str], Counter[tuple[str, str]], int]:
        holding = tx.retention.cases_holding(requested)
        scope.touch(sorted(holding)[:MAX_OBJECT_IDS])
        entry = recording.append(tx, scope.event(ALLOWED, REASON), now=now)
        erased, kept = erase_in(
            tx, requested, holding, access_cutoff=access_cutoff, now=now, entry=entry.index
        )
        return erased, kept, entry.index

    erased, kept, index = await store.write(work)
    scope.recorded = True
    return ErasureReport(
        erased={k: n for k, n in erased.items() if n},
        kept={k: n for k, n in kept.items() if n},
        entry=index,
    )
