"""What a privacy officer does with the hub's access log, without trusting the hub.

Every operation starts from a fresh tree head that :class:`~clients.logwatch.LogWatch`
has verified (signed by the certified hub key, consistent with the head this client
kept), and checks what the hub serves against it:

* :meth:`PrivacyOfficer.verify`: the strongest check that is cheap here: the whole log
  for a network privacy officer (up to :data:`FULL_BY_DEFAULT` entries, else a sample),
  every visible entry with its inclusion proof for an organisation's officer;
* :meth:`PrivacyOfficer.verify_full`: the whole log from an export, rebuilt to the
  head's root; a mismatch is located by binary search over consistency proofs. This
  shows that no entry was changed, removed or reordered;
* :meth:`PrivacyOfficer.verify_visible` and :meth:`PrivacyOfficer.verify_sample`:
  inclusion proofs for every visible entry, or for random ones (for a network privacy
  officer also that no index is missing). A sample shows only that the entries drawn
  are in the signed log; it says nothing about the entries not drawn;
* :func:`verify_export_file`: as the whole log, offline, on an export file;
* :meth:`PrivacyOfficer.subject_report`: every access to the messages that carry a
  data subject's pseudonyms (derived locally with the linking key), each entry proven
  (the proofs come with the pages of entries: a request per filter, not per entry);
  an entry whose personal fields were erased is listed, shown as erased (its pseudonyms
  are gone with them, so a message found only through an erased entry is not found);
* :meth:`PrivacyOfficer.anomalies`: unusual volumes and denied reads.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from clients.errors import AuditLogInconsistent, ClientError, NotReady
from clients.exports import ReportRow, iso_time
from clients.hub_client import EntryPage
from clients.logproofs import (
    MAX_LINE,
    ExportChecker,
    ExportUnreadable,
    check_inclusion,
    from_hub,
    locate_first_bad,
    parse_export_head,
)
from clients.logwatch import inconsistent
from clients.organisation import Organisation
from protocol.auditlog import AuditEntry, TreeHead, verify_tree_head
from protocol.certificate import ROLE_NETWORK_PRIVACY_OFFICER, ROLE_PRIVACY_OFFICER
from protocol.errors import ProtocolError
from protocol.pseudonym import Identity, derive_pseudonyms, normalised_values
from protocol.types import Pseudonym

DEFAULT_SAMPLE = 20
DEFAULT_MAX_OBJECTS_PER_DAY = 50
FULL_BY_DEFAULT = 100_000  # entries a network privacy officer rebuilds by default

# What a verification proved.
FULL = "full"  # every entry: the leaves rebuild the signed root
ALL = "all"  # every entry visible to this organisation, each with its inclusion proof
SAMPLE = "sample"  # some visible entries, drawn at random, each with its inclusion proof
EXPORT = "export"  # an export file, offline


@dataclass(frozen=True, slots=True)
class Verified:
    head: TreeHead
    checked: int  # entries whose inclusion (or place in the rebuilt tree) was checked
    mode: str  # FULL, ALL, SAMPLE or EXPORT
    visible: int | None = None  # entries this organisation may see (ALL and SAMPLE)
    erased: int = 0  # of the checked entries, those whose personal fields were erased

    def text(self) -> str:
        """What was proven, and what was not, in words."""
        size = self.head.size
        if self.mode == FULL:
            return (
                f"verified all {self.checked} entries: they rebuild the root of the signed "
                f"tree head of size {size}, so no entry was changed, removed or reordered"
                + self._erased_text()
            )
        if self.mode == EXPORT:
            return (
                f"verified {self.checked} entries of the export against its signed tree head "
                f"of size {size}" + self._erased_text()
            )
        if self.mode == ALL:
            return (
                f"proved all {self.checked} entries visible to this organisation against the "
                f"signed tree head of size {size}{self._erased_text()}; entries of other "
                "organisations are checked by the network privacy officer (--full)"
            )
        return (
            f"proved {self.checked} randomly drawn of {self.visible} visible entries against "
            f"the signed tree head of size {size}. A sample shows that these entries are in "
            "the signed log, NOT that no other entry was changed or removed: use --all, or "
            "--full as the network privacy officer"
        )

    def _erased_text(self) -> str:
        if not self.erased:
            return ""
        return (
            f"; the personal fields of {self.erased} of them were erased (their leaves, "
            "and every proof, are unchanged)"
        )


@dataclass(frozen=True, slots=True)
class Anomaly:
    kind: str  # "volume" or "outside-recipients"
    day: str
    org: str | None
    user: str | None
    count: int
    indexes: tuple[int, ...]

    def text(self) -> str:
        who = f"{self.org or '-'}/{self.user or '-'}"
        if self.kind == "volume":
            return f"{self.day}  {who}: touched {self.count} distinct objects in a day"
        return (
            f"{self.day}  {who}: {self.count} denied reads of messages it was not a "
            f"sender or recipient of (log indexes {', '.join(map(str, self.indexes[:10]))})"
        )


@dataclass
class _Subject:
    pseudonyms: set[Pseudonym] = field(default_factory=set)
    messages: set[str] = field(default_factory=set)


class PrivacyOfficer:
    """The access-log operations of an organisation holding a privacy officer role."""

    def __init__(self, organisation: Organisation, *, rng: random.Random | None = None) -> None:
        self.org = organisation
        self.hub = organisation.hub
        self._rng = rng or random.SystemRandom()

    @property
    def network_officer(self) -> bool:
        return ROLE_NETWORK_PRIVACY_OFFICER in self.org.certificate().roles

    def _require_officer(self) -> None:
        roles = self.org.certificate().roles
        if not roles & {ROLE_PRIVACY_OFFICER, ROLE_NETWORK_PRIVACY_OFFICER}:
            raise NotReady(
                f"organisation {self.org.org!r} holds no privacy officer role: "
                "only privacy officers may read the access log"
            )

    async def fresh_head(self) -> TreeHead:
        """Have the hub sign a head for its current size; verify it against the kept one."""
        self._require_officer()
        head = await self.org.log.check(await self.hub.sign_audit_head())
        if head is None:  # no head has met the witness quorum yet
            witnessed = self.org.log.witnessed
            raise ClientError(
                "no tree head meets the witness quorum yet"
                + ("" if witnessed is None else f": {witnessed.text()}")
            )
        return head

    async def entries(
        self, head: TreeHead, *, proven: bool = False, **filters: str | int | None
    ) -> list[AuditEntry]:
        """Every visible entry below ``head.size`` matching ``filters``, ascending;
        ``proven``: each with its inclusion proof checked against ``head``, the proofs
        coming with the pages (a request per 1,000 entries, not one per entry)."""
        found: list[AuditEntry] = []
        start: int | None = 0
        while start is not None:
            page = await self.page(head, start=start, limit=1000, proven=proven, **filters)
            found += page.entries  # each page's from its start on: in order throughout
            start = page.next
        return found

    async def page(
        self,
        head: TreeHead,
        *,
        start: int,
        limit: int,
        proven: bool,
        **filters: str | int | None,
    ) -> EntryPage:
        """One page of visible entries from ``start``, in order and below ``head.size``;
        ``proven``: each entry's inclusion proof (asked with the page) checked against
        ``head``, or AuditLogInconsistent naming the first that fails."""
        page: EntryPage = await self.hub.audit_entries(
            start=start,
            end=head.size,
            limit=limit,
            size=head.size if proven else None,
            filters=filters,
        )
        last = start - 1
        for entry in page.entries:
            if entry.index <= last or entry.index >= head.size:
                raise AuditLogInconsistent(
                    "the hub listed entries out of order or beyond the head", index=entry.index
                )
            last = entry.index
        if page.next is not None and page.next <= start:
            raise ClientError("the hub's entry listing does not advance")
        if proven:
            assert page.proofs is not None  # the client refuses a page without them
            for entry, proof in zip(page.entries, page.proofs, strict=True):
                check_inclusion(entry, proof, head)
        return page

    async def prove(self, entries: Iterable[AuditEntry], head: TreeHead) -> int:
        """Check each entry's inclusion proof against ``head``; how many were checked."""
        count = 0
        for entry in entries:
            proof = await self.hub.audit_inclusion(entry.index, head.size)
            if proof.index != entry.index or proof.size != head.size or proof.leaf != entry.leaf():
                raise AuditLogInconsistent(
                    f"the hub's proof for entry {entry.index} is for another leaf",
                    index=entry.index,
                )
            check_inclusion(entry, proof.proof, head)
            count += 1
        return count

    # -- verify ----------------------------------------------------------------------------

    async def verify(self) -> Verified:
        """The strongest check that is cheap: see the module docstring."""
        head = await self.fresh_head()
        if not self.network_officer:
            return await self._verify_visible(head)
        if head.size <= FULL_BY_DEFAULT:
            return await self._verify_full(head)
        return await self._sample(head, await self._visible(head), DEFAULT_SAMPLE)

    async def verify_visible(self) -> Verified:
        """Every visible entry, each with its inclusion proof."""
        return await self._verify_visible(await self.fresh_head())

    async def _verify_visible(self, head: TreeHead) -> Verified:
        visible = await self._visible(head, proven=True)
        return Verified(head, len(visible), ALL, len(visible), _erased(visible))

    async def verify_sample(self, n: int = DEFAULT_SAMPLE) -> Verified:
        """``n`` random visible entries, each with its inclusion proof."""
        head = await self.fresh_head()
        return await self._sample(head, await self._visible(head), n)

    async def _sample(self, head: TreeHead, visible: list[AuditEntry], n: int) -> Verified:
        chosen = sorted(self._rng.sample(visible, min(n, len(visible))), key=lambda e: e.index)
        proven = await self.prove(chosen, head)
        return Verified(head, proven, SAMPLE, len(visible), _erased(chosen))

    async def _visible(self, head: TreeHead, *, proven: bool = False) -> list[AuditEntry]:
        """The visible entries; for a network officer, also that none is missing."""
        visible = await self.entries(head, proven=proven)
        if self.network_officer:
            for expected, entry in enumerate(visible):
                if entry.index != expected:
                    raise AuditLogInconsistent(f"entry {expected} is missing", index=expected)
            if len(visible) != head.size:
                raise AuditLogInconsistent(
                    f"the log lists {len(visible)} of {head.size} entries (truncated)",
                    index=len(visible),
                )
        return visible

    async def verify_full(self) -> Verified:
        """The whole log, rebuilt to the signed root (network privacy officer)."""
        if not self.network_officer:
            raise NotReady("--full needs the network privacy officer role (all entries)")
        return await self._verify_full(await self.fresh_head())

    async def _verify_full(self, head: TreeHead) -> Verified:
        lines = self.hub.audit_export(size=head.size, proofs=False)
        first = await anext(lines, None)
        if first is None:
            raise AuditLogInconsistent("the hub's export is empty")
        checker = ExportChecker(head, full=True)
        try:
            served = parse_export_head(first)
            if (served.size, served.root) != (head.size, head.root):
                raise AuditLogInconsistent("the export is for another head than the verified one")
            position = 1
            async for line in lines:
                position += 1
                checker.feed_line(line, position)
        except ExportUnreadable as exc:
            raise from_hub(exc) from exc
        if not checker.finish():
            index = await locate_first_bad(checker.leaves, head, self.hub.audit_consistency)
            raise AuditLogInconsistent(
                f"the entries do not rebuild the root of the head of size {head.size}",
                index=index,
            )
        return Verified(head, checker.count, FULL, erased=checker.erased)

    # -- reports ---------------------------------------------------------------------------

    async def subject_pseudonyms(self, identity: Identity) -> set[Pseudonym]:
        """The subject's pseudonyms: under every linking-key version held (derived locally)
        and, on an OPRF network, from the two pseudonymisation services (one round trip),
        so that messages from before and after a move to the OPRF are all found."""
        keys = self.org.keys.linking_keys
        try:
            found = {p for key in keys.values() for p in derive_pseudonyms(identity, key)}
            values = normalised_values(identity)
        except ProtocolError as exc:
            raise ClientError(f"subject: {exc}") from exc
        oprf = bool(values) and await self.org.linking.on_oprf()
        if oprf:
            found |= set(
                await self.org.linking.pseudonyms(self.org.signer(), sorted(values.items()))
            )
        if not keys and not oprf:
            raise NotReady("no linking key yet: run 'schakel org linking-key fetch'")
        return found

    async def subject_report(self, identity: Identity) -> tuple[TreeHead, list[ReportRow]]:
        """Every access to the messages carrying the subject's pseudonyms, proven, by time."""
        head = await self.fresh_head()
        subject = _Subject(await self.subject_pseudonyms(identity))
        touched: dict[int, AuditEntry] = {}
        for pseudonym in sorted(subject.pseudonyms):
            created = await self.entries(head, proven=True, pseudonym=pseudonym, action="create")
            for entry in created:
                if entry.object_type == "message" and subject.pseudonyms & set(entry.pseudonyms):
                    subject.messages.update(entry.object_ids)
                    touched[entry.index] = entry
        for message_id in sorted(subject.messages):
            for entry in await self.entries(head, proven=True, object=message_id):
                if message_id in entry.object_ids:
                    touched[entry.index] = entry
        entries = sorted(touched.values(), key=lambda e: (e.time, e.index))
        rows = [
            ReportRow.of(e, sorted(subject.messages.intersection(e.object_ids))) for e in entries
        ]
        return head, rows

    async def user_report(
        self, user: str, org: str | None = None
    ) -> tuple[TreeHead, list[ReportRow]]:
        head = await self.fresh_head()
        entries = await self.entries(head, proven=True, user=user, org=org)
        entries = [e for e in entries if e.user == user and (org is None or e.org == org)]
        entries.sort(key=lambda e: (e.time, e.index))
        return head, [ReportRow.of(e) for e in entries]

    async def anomalies(
        self, max_objects: int = DEFAULT_MAX_OBJECTS_PER_DAY
    ) -> tuple[TreeHead, list[Anomaly]]:
        head = await self.fresh_head()
        return head, find_anomalies(await self.entries(head), max_objects)


def _erased(entries: Iterable[AuditEntry]) -> int:
    return sum(entry.erased for entry in entries)


def find_anomalies(entries: Iterable[AuditEntry], max_objects: int) -> list[Anomaly]:
    """Users touching more than ``max_objects`` distinct objects in a UTC day, and denied
    reads or acknowledgements of messages: an organisation asking for a message it was
    neither sender nor recipient of (the hub answers those with 404, logged as denied)."""
    objects: dict[tuple[str, str | None, str | None], set[str]] = defaultdict(set)
    volume_indexes: dict[tuple[str, str | None, str | None], list[int]] = defaultdict(list)
    outside: dict[tuple[str, str | None, str | None], list[int]] = defaultdict(list)
    for entry in entries:
        key = (iso_time(entry.time)[:10], entry.org, entry.user)
        if entry.object_type in ("message", "case"):
            objects[key].update(entry.object_ids)
            volume_indexes[key].append(entry.index)
        if (
            entry.object_type == "message"
            and entry.action in ("read", "acknowledge")
            and entry.outcome == "denied"
        ):
            outside[key].append(entry.index)
    found = [
        Anomaly("volume", k[0], k[1], k[2], len(v), tuple(volume_indexes[k]))
        for k, v in objects.items()
        if len(v) > max_objects
    ]
    found += [Anomaly("outside-recipients", *k, len(v), tuple(v)) for k, v in outside.items()]
    return sorted(found, key=lambda a: (a.day, a.kind, a.org or "", a.user or ""))


def _file_lines(handle: IO[bytes]) -> Iterator[bytes]:
    for position, line in enumerate(handle, start=1):
        if len(line) > MAX_LINE:
            raise ExportUnreadable(f"line {position} is longer than {MAX_LINE} bytes")
        stripped = line.rstrip(b"\r\n")
        if stripped:
            yield stripped


def verify_export_file(organisation: Organisation, path: Path, *, full: bool) -> Verified:
    """Offline: the file's head verifies with a hub certificate kept in state, does not
    fork from the kept head, and every entry is proven (``full``: the leaves rebuild the
    root, no index missing). No request goes to the hub.

    A file that does not parse raises :class:`~clients.logproofs.ExportUnreadable` (a file
    error, nothing verified); one that parses but does not hold together raises
    AuditLogInconsistent.
    """
    try:
        with path.open("rb") as handle:
            lines = _file_lines(handle)
            first = next(lines, None)
            if first is None:
                raise ExportUnreadable("it is empty")
            head = parse_export_head(first)
            _check_offline_head(organisation, head)
            checker = ExportChecker(head, full=full)
            for position, line in enumerate(lines, start=2):
                checker.feed_line(line, position)
    except ExportUnreadable as exc:
        raise ExportUnreadable(
            f"{path} is not a Schakel access-log export ({exc}); nothing was verified"
        ) from exc
    if not checker.finish():
        raise AuditLogInconsistent(
            f"the entries do not rebuild the root of the head of size {head.size} "
            "(the first bad index needs the hub's proofs: run online, or export with proofs)"
        )
    return Verified(head, checker.count, EXPORT, erased=checker.erased)


def _check_offline_head(organisation: Organisation, head: TreeHead) -> None:
    if head.network != organisation.keys.network:
        raise AuditLogInconsistent("the export's head is for another network")
    cert = organisation.log.kept_hub_certificate(head.hub_cert, at=head.time)
    try:
        verify_tree_head(head, cert)
    except ProtocolError as exc:
        raise AuditLogInconsistent("the export's head is not signed by the hub") from exc
    kept = organisation.state.tree_head
    if kept is not None and kept.size == head.size and kept.root != head.root:
        raise inconsistent("the export's head forks from the kept head", kept, head)
