"""Erasing the personal fields of access-log entries while every proof stays valid.

A version 2 entry (``protocol.auditlog``) commits to its personal fields (user, purpose
text, pseudonyms, source address) through a salted hash; the fields and the salt, its
*opening*, are stored beside the entry. Erasing the opening leaves the leaf, every node
and every signed head as they were: inclusion and consistency proofs issued before the
erasure still verify, and readers see the entry with ``"opening": "erased"``. Version 1
entries (written before migration 0005a) have no opening and are never erased.

These are pieces of work items (they take the writer's :class:`~hub.store.Tx`), so the
caller erases in the same transaction as the access-log entry that records the erasure:

* :func:`openings_before` and :func:`seqs_about` find what to erase;
* :func:`erase_openings` erases it;
* :func:`scrub`, after the commit, wipes what the deletes left in the database files.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from hub.store import Store, Tx
from hub.store.erasing import MAX_BATCH, SCRUBBED_TABLES
from protocol.auditlog import Erasure
from protocol.errors import ValidationError
from protocol.pseudonym import parse_pseudonym

__all__ = ["MAX_BATCH", "erase_openings", "openings_before", "scrub", "seqs_about"]


def erase_openings(
    tx: Tx, seqs: Sequence[int], *, reason: str, now: int, entry: int | None = None
) -> int:
    """Erase the openings of the entries ``seqs`` (indexes); how many were erased.

    Entries without a held opening (version 1, already erased, not written) are skipped.
    ``reason`` is a slug (``retention``, ``erasure-request``); ``entry`` the index of the
    access-log entry recording the erasure, if the caller appended it first. At most
    ``MAX_BATCH`` entries at a time; ValueError (or ValidationError for the reason)
    otherwise. Call :func:`scrub` once the work item committed.
    """
    Erasure(time=now, reason=reason, entry=entry)  # checks the reason, time and entry
    if len(seqs) > MAX_BATCH:
        raise ValueError(f"erase at most {MAX_BATCH} openings at a time")
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seqs):
        raise ValueError("entry indexes are non-negative integers")
    return tx.erasing.erase(seqs, reason=reason, now=now, entry=entry)


def openings_before(tx: Tx, cutoff: int, limit: int) -> list[int]:
    """Indexes of entries with ``time < cutoff`` whose opening is held, oldest first."""
    if not 1 <= limit <= MAX_BATCH:
        raise ValueError(f"limit must be 1..{MAX_BATCH}")
    return tx.erasing.held_before(cutoff, limit)


def seqs_about(tx: Tx, pseudonyms: Iterable[str], *, exclusive: bool = False) -> list[int]:
    """Indexes of entries whose held opening names any of ``pseudonyms``, ascending.

    With ``exclusive``, only entries that name no other pseudonym: an opening is erased
    whole, so erasing an entry about two persons erases the other's pseudonyms too.
    ValidationError for a value that is not a pseudonym.
    """
    wanted = [parse_pseudonym(p) for p in pseudonyms]
    if len(wanted) > MAX_BATCH:
        raise ValidationError(f"ask about at most {MAX_BATCH} pseudonyms at a time")
    return tx.erasing.held_about(wanted, exclusive=exclusive)


async def scrub(store: Store) -> None:
    """After an erasure committed: wipe what the deleted openings left in the database
    files (SQLite: checkpoint the WAL to nothing; PostgreSQL: VACUUM the tables)."""
    await store.scrub(SCRUBBED_TABLES)
