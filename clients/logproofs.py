"""Entries of the hub's access log checked against a verified signed tree head.

:class:`ExportChecker` checks entries against a head, line by line, as the export
streams or from a file: every inclusion proof, the order of the indexes, and (for the
whole log) that the leaves rebuild the head's root. Failures name the first bad index
(:class:`~clients.errors.AuditLogInconsistent`). :func:`locate_first_bad` finds the
first leaf that breaks a root by binary search over the hub's consistency proofs.

An export *file* that does not parse (not strict JSON, not a head or an entry) is not
evidence about the log at all: reading one raises :class:`ExportUnreadable`, a file
error, never an inconsistency. From the hub's own stream the same faults are the hub's,
and :func:`from_hub` turns them into an inconsistency.

A version 2 entry's personal fields are checked against its commitment
(:func:`check_opening`); one whose fields were erased (``"opening": "erased"``) verifies
like any other and is counted in :attr:`ExportChecker.erased`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from clients.errors import AuditLogInconsistent, ClientError
from protocol import merkle
from protocol.auditlog import AuditEntry, TreeHead, exported_leaf
from protocol.encoding import b64d, loads_as_encoded, loads_strict
from protocol.errors import ProtocolError

MAX_LINE = 256 * 1024
RECORD_KEYS = frozenset({"entry", "proof"})
# How export lines are written: by the hub (``hub.http.accesslog``, keys in the entry's
# order, UTF-8) and by ``schakel audit export`` (``clients.exports.ndjson_line``). A line
# exactly as one of them writes it is parsed without the strict parser's Python hooks
# (:func:`protocol.encoding.loads_as_encoded`); any other line goes through the strict one.
_WRITERS = (
    json.JSONEncoder(separators=(",", ":"), ensure_ascii=False),
    json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, sort_keys=True),
)


class ExportUnreadable(ClientError):
    """A file that is not a Schakel access-log export (nothing in it was verified).

    Raised for a line that is not strict JSON, a first line that is not a tree head, an
    entry line that is not an entry with a well-formed proof. It says nothing about the
    hub's log: check that the right file was given.
    """


@dataclass(frozen=True, slots=True)
class ExportRecord:
    entry: AuditEntry
    proof: tuple[bytes, ...] | None


def parse_export_head(line: bytes) -> TreeHead:
    """The first line of an export: ``{"head": <tree head>}``."""
    doc = _line_object(line, "first line")
    try:
        return TreeHead.from_wire(doc.get("head"))
    except ProtocolError as exc:
        raise ExportUnreadable("its first line is not a signed tree head") from exc


def parse_export_record(line: bytes, position: int) -> ExportRecord:
    """An entry line: ``{"entry": <entry>, "proof": [b64url...]}`` (proof absent or null)."""
    doc = _record_as_written(line)
    if doc is not None:
        try:
            return _record(doc, position)
        except ExportUnreadable:
            pass  # the strict parser says what is wrong, first things first, as always
    return _record(_line_object(line, f"line {position}"), position)


def _record(doc: dict[str, Any], position: int) -> ExportRecord:
    try:
        entry = AuditEntry.from_wire(doc.get("entry"))
    except ProtocolError as exc:
        raise ExportUnreadable(
            f"line {position} is not an access-log entry ({str(exc)[:100]})"
        ) from exc
    proof = doc.get("proof")
    if proof is None:
        return ExportRecord(entry, None)
    if not isinstance(proof, list):
        raise ExportUnreadable(f"line {position}: the inclusion proof is not a list")
    try:
        hashes = tuple(b64d(h, max_len=32) for h in proof)
    except ProtocolError as exc:
        raise ExportUnreadable(f"line {position}: the inclusion proof is malformed") from exc
    return ExportRecord(entry, hashes)


def _record_as_written(line: bytes) -> dict[str, Any] | None:
    """The line's object when it is byte for byte as a writer of exports writes it and
    holds no key but ``entry`` and ``proof`` (every value of which is then validated, by
    ``AuditEntry.from_wire`` and ``b64d``); None: parse it strictly."""
    if line.endswith(b"\n"):
        line = line[:-1]
    doc = loads_as_encoded(line, _WRITERS, max_bytes=MAX_LINE)
    if not isinstance(doc, dict) or not doc.keys() <= RECORD_KEYS:
        return None
    return doc


# An entry line without a proof, as the hub writes it and as ``schakel audit export`` does.
_ENTRY_START = b'{"entry":'
_ENTRY_ENDS = (b',"proof":null}', b"}")


def _exported_leaf(line: bytes) -> tuple[int, bytes, bool] | None:
    """``exported_leaf`` of the entry on an entry line without a proof; None for any other
    line (parse it with :func:`parse_export_record`)."""
    if line.endswith(b"\n"):
        line = line[:-1]
    if len(line) > MAX_LINE or not line.startswith(_ENTRY_START):
        return None
    for end in _ENTRY_ENDS:
        if line.endswith(end):
            found = exported_leaf(line[len(_ENTRY_START) : -len(end)])
            if found is not None:
                return found
    return None


def _line_object(line: bytes, what: str) -> dict[str, Any]:
    try:
        doc = loads_strict(line, max_bytes=MAX_LINE)
    except ProtocolError as exc:
        raise ExportUnreadable(f"its {what} is not strict JSON") from exc
    if not isinstance(doc, dict):
        raise ExportUnreadable(f"its {what} is not a JSON object")
    return doc


def from_hub(error: ExportUnreadable) -> AuditLogInconsistent:
    """A hub's export stream that does not parse: the hub serves something else as its log."""
    return AuditLogInconsistent(f"the hub's export does not parse: {error}")


def check_opening(entry: AuditEntry) -> None:
    """AuditLogInconsistent (naming the index) unless a version 2 entry's personal fields
    match its commitment. An erased entry passes: erasure is not tampering."""
    try:
        entry.verify_opening()
    except ProtocolError as exc:
        raise AuditLogInconsistent(
            f"the personal fields of entry {entry.index} do not match its commitment",
            index=entry.index,
        ) from exc


def check_inclusion(entry: AuditEntry, proof: Sequence[bytes], head: TreeHead) -> None:
    """AuditLogInconsistent (naming the index) unless ``entry`` is in the tree of ``head``
    and its personal fields, if any were committed to, are the ones committed to."""
    try:
        merkle.verify_inclusion(entry.leaf(), entry.index, head.size, list(proof), head.root)
    except ProtocolError as exc:
        raise AuditLogInconsistent(
            f"entry {entry.index} does not match the signed head of size {head.size}",
            index=entry.index,
        ) from exc
    check_opening(entry)


class ExportChecker:
    """Entries of one export, fed in order, checked against a verified head.

    ``full``: the export must hold every entry ``0 .. size-1`` (a network privacy
    officer's); a missing index is reported, and the leaves must rebuild the root.
    """

    def __init__(self, head: TreeHead, *, full: bool) -> None:
        self.head = head
        self.full = full
        self.count = 0
        self.proven = 0
        self.erased = 0  # entries whose personal fields were erased (not an error)
        self.leaves: list[bytes] = []
        self._last = -1

    def feed_line(self, line: bytes, position: int) -> None:
        """``feed(parse_export_record(line, position))``, the same checks and the same
        failures; a line of a full export that holds a version 2 entry without a proof,
        written as the hub and ``schakel audit export`` write one, is checked straight from
        its text (:func:`protocol.auditlog.exported_leaf`) without building the entry."""
        found = _exported_leaf(line) if self.full else None
        if found is None:
            self.feed(parse_export_record(line, position))
            return
        index, leaf, erased = found
        if index != self._last + 1 or index >= self.head.size:
            self._check_order(index)  # it raises, saying which
        self.erased += erased
        self.leaves.append(leaf)
        self._last = index
        self.count += 1

    def feed(self, record: ExportRecord) -> None:
        entry = record.entry
        index = entry.index
        self._check_order(index)
        if record.proof is not None:
            check_inclusion(entry, record.proof, self.head)
            self.proven += 1
        elif not self.full:
            raise AuditLogInconsistent("an entry carries no inclusion proof", index=index)
        else:
            check_opening(entry)
        self.erased += entry.erased
        if self.full:
            self.leaves.append(entry.leaf())
        self._last = index
        self.count += 1

    def _check_order(self, index: int) -> None:
        if index <= self._last or index >= self.head.size:
            raise AuditLogInconsistent(
                f"entry {index} is out of order or beyond the head of size {self.head.size}",
                index=index,
            )
        if self.full and index != self._last + 1:
            raise AuditLogInconsistent(f"entry {self._last + 1} is missing", index=self._last + 1)

    def finish(self) -> bool:
        """True if everything held; False when the full leaves do not rebuild the root."""
        if self.full:
            if self.count != self.head.size:
                missing = self.count
                raise AuditLogInconsistent(
                    f"the export ends after {self.count} of {self.head.size} entries "
                    "(entries truncated)",
                    index=missing,
                )
            return merkle.root_hash(self.leaves) == self.head.root
        return True


async def locate_first_bad(
    leaves: Sequence[bytes],
    head: TreeHead,
    consistency: Callable[[int, int], Awaitable[list[bytes]]],
) -> int:
    """The first leaf that breaks the root, by binary search over consistency proofs.

    A prefix of ``m`` leaves is good when the hub's consistency proof from ``m`` to the
    head verifies against the prefix's locally computed root; good prefixes are exactly
    the ones before the first bad leaf.
    """
    good, bad = 0, len(leaves)
    while bad - good > 1:
        middle = (good + bad) // 2
        try:
            proof = await consistency(middle, head.size)
            merkle.verify_consistency(
                middle, head.size, merkle.root_hash(leaves[:middle]), head.root, proof
            )
        except (ProtocolError, ClientError):
            bad = middle
        else:
            good = middle
    return bad - 1
