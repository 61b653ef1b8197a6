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
* personal fields of access-log entries are kept within the access-log period
  (``access-log-period``, NEN 7513); older ones go as the retention job would take them.

Nothing outside those cases is touched: another person's case, message or pseudonym rows
are never selected.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from hub.accesslog import recording
from hub.accesslog.recording import ALLOWED, Scope
from hub.auth import Caller
from hub.config import Clock
from hub.errors import Malformed, NotFound
from hub.store import Store, Tx
from protocol.auditlog import MAX_OBJECT_IDS
from protocol.certificate import ROLE_NETWORK_PRIVACY_OFFICER
from protocol.errors import EncodingError, ValidationError
from protocol.retention import ERASED, ErasureReport, parse_erasure_request
from protocol.types import CaseRef

REASON = "erasure-request"


def _requested(body: object) -> frozenset[str]:
    try:
        return frozenset(parse_erasure_request(body))
    except (EncodingError, ValidationError) as exc:
        raise Malformed(f"erasure request: {str(exc)[:200]}") from None


def erase_in(
    tx: Tx, requested: frozenset[str], *, now: int
) -> tuple[Counter[str], Counter[tuple[str, str]], list[CaseRef]]:
    """Erase what may go about the person named by ``requested``; (erased, kept, cases)."""
    erased: Counter[str] = Counter()
    kept: Counter[tuple[str, str]] = Counter()
    holding = tx.retention.cases_holding(requested)
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
    return erased, kept, sorted(holding)


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

    def work(tx: Tx) -> tuple[Counter[str], Counter[tuple[str, str]], int]:
        erased, kept, cases = erase_in(tx, requested, now=now)
        scope.touch(cases[:MAX_OBJECT_IDS])
        entry = recording.append(tx, scope.event(ALLOWED, REASON), now=now)
        return erased, kept, entry.index

    erased, kept, index = await store.write(work)
    scope.recorded = True
    return ErasureReport(
        erased={k: n for k, n in erased.items() if n},
        kept={k: n for k, n in kept.items() if n},
        entry=index,
    )
