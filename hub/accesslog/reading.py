"""Use-cases of ``/v1/audit``: tree heads, proofs, entries and exports of the access log.

Who may read what (``docs/protocol.md``, "The access log"): tree heads and consistency
proofs every authenticated organisation; entries, inclusion proofs and exports only an
organisation holding ``privacy_officer`` (scoped to the entries of its own requests and
of requests that touched messages it sent or received) or ``network_privacy_officer``
(all). Anyone else gets 404 on those routes, as for an entry the caller may not see.

Every read of the log is itself audited (action ``read`` or ``export``, object type
``audit``), after the read; an export's entry is committed before the first byte of
the export is sent, and is never inside the exported tree (its index is at least the
tree size when it is appended, and the exported head was signed before).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace

from hub.accesslog import recording
from hub.accesslog.heads import HeadSigner
from hub.accesslog.recording import Outcome, Scope
from hub.auth import Caller
from hub.config import Clock, HubConfig
from hub.errors import Malformed, NotFound, Unavailable
from hub.store import AuditQuery, Store, Tx
from protocol.auditlog import ACTIONS, AuditEntry, TreeHead, check_user
from protocol.certificate import ROLE_NETWORK_PRIVACY_OFFICER, ROLE_PRIVACY_OFFICER
from protocol.encoding import MAX_SAFE_INT
from protocol.errors import ValidationError
from protocol.pseudonym import parse_pseudonym
from protocol.types import OrgId, parse_message_id, parse_org_id

MAX_ENTRIES = 1000
DEFAULT_ENTRIES = 100
EXPORT_PAGE = 500
_NUMBER = re.compile(r"[0-9]{1,16}")
FILTERS = ("start", "end", "org", "user", "action", "object", "pseudonym", "since", "until")


def viewer_of(caller: Caller) -> OrgId | None:
    """The scope of the caller's log reads (None: everything); NotFound for non-officers."""
    if ROLE_NETWORK_PRIVACY_OFFICER in caller.roles:
        return None
    if ROLE_PRIVACY_OFFICER in caller.roles:
        return caller.org
    raise NotFound()


def _signer(signer: HeadSigner | None) -> HeadSigner:
    if signer is None:
        raise Unavailable("this hub has no log-signing key and signs no tree heads")
    return signer


# -- query parameters -----------------------------------------------------------------


def number(params: Mapping[str, str], name: str, default: int | None, low: int = 0) -> int | None:
    text = params.get(name)
    if text is None:
        return default
    if not _NUMBER.fullmatch(text) or not low <= int(text) <= MAX_SAFE_INT:
        raise Malformed(f"{name} must be an integer from {low} to {MAX_SAFE_INT}")
    return int(text)


def _checked(value: str | None, check: object, name: str) -> str | None:
    if value is None:
        return None
    try:
        return str(check(value))  # type: ignore[operator]
    except ValidationError:
        raise Malformed(f"{name} is not of its form") from None


def _object_id(value: str) -> str:
    for parse in (parse_message_id, parse_org_id):
        try:
            return parse(value)
        except ValidationError:
            continue
    raise ValidationError("not an object id")


def _action(value: str) -> str:
    if value not in ACTIONS:
        raise ValidationError("unknown action")
    return value


def parse_query(params: Mapping[str, str], viewer: OrgId | None, *, limit: int) -> AuditQuery:
    """The filters of ``/v1/audit/entries`` and ``/v1/audit/export`` (400 when malformed)."""
    return AuditQuery(
        viewer=viewer,
        start=number(params, "start", 0) or 0,
        end=number(params, "end", None),
        org=_checked(params.get("org"), parse_org_id, "org"),  # type: ignore[arg-type]
        user=_checked(params.get("user"), check_user, "user"),
        action=_checked(params.get("action"), _action, "action"),
        object_id=_checked(params.get("object"), _object_id, "object"),
        pseudonym=_checked(params.get("pseudonym"), parse_pseudonym, "pseudonym"),
        since=number(params, "since", None),
        until=number(params, "until", None),
        limit=limit,
    )


# -- tree heads and consistency: every organisation ----------------------------------


async def newest_head(
    store: Store, clock: Clock, config: HubConfig, scope: Scope, *, signer: HeadSigner | None
) -> TreeHead | None:
    _signer(signer)
    head = await store.tree_head(config.network)
    await recording.access(store, scope, now=clock())
    return head


async def head_of_size(
    store: Store,
    clock: Clock,
    config: HubConfig,
    scope: Scope,
    *,
    signer: HeadSigner | None,
    size_text: str,
) -> TreeHead:
    _signer(signer)
    if not _NUMBER.fullmatch(size_text):
        raise NotFound()
    head = await store.tree_head(config.network, int(size_text))
    if head is None:
        raise NotFound()
    await recording.access(store, scope, now=clock())
    return head


@dataclass(frozen=True, slots=True)
class Signed:
    head: TreeHead | None
    created: bool


async def sign_head(
    store: Store, clock: Clock, config: HubConfig, scope: Scope, *, caller: Caller,
    signer: HeadSigner | None,
) -> Signed:  # fmt: skip
    """Privacy officers: sign a head for the current size now (before this request's entry)."""
    viewer_of(caller)
    chosen = _signer(signer)
    now = clock()

    def sign(tx: Tx) -> Outcome[TreeHead | None]:
        return Outcome(chosen.sign_in(tx, now=now))

    head = await recording.act(store, scope, now=now, work=sign)
    if head is not None:
        return Signed(head, created=True)
    return Signed(await store.tree_head(config.network), created=False)


@dataclass(frozen=True, slots=True)
class Consistency:
    old: int
    new: int
    proof: list[bytes]


async def consistency(
    store: Store, clock: Clock, scope: Scope, *, params: Mapping[str, str]
) -> Consistency:
    old, new = number(params, "from", None, 1), number(params, "to", None, 1)
    if old is None or new is None or old > new:
        raise Malformed("need 1 <= from <= to <= the tree size")
    proof = await store.consistency(old, new)
    if proof is None:
        raise Malformed("need 1 <= from <= to <= the tree size")
    await recording.access(store, scope, now=clock())
    return Consistency(old, new, proof)


# -- entries, proofs and exports: privacy officers ----------------------------------


@dataclass(frozen=True, slots=True)
class Page:
    entries: list[AuditEntry]
    next: int | None
    proofs: list[list[bytes]] | None = None  # with ``size``: each entry's inclusion proof


async def entries(
    store: Store,
    clock: Clock,
    config: HubConfig,
    scope: Scope,
    *,
    caller: Caller,
    signer: HeadSigner | None,
    params: Mapping[str, str],
) -> Page:
    """A page of visible entries; with ``size=N``, only entries below N, each with its
    inclusion proof against the signed head of size N (one request proves a page, where
    a proof per entry would cost a request, and an access-log entry, each)."""
    viewer = viewer_of(caller)
    limit = number(params, "limit", DEFAULT_ENTRIES, 1)
    if limit is None or limit > MAX_ENTRIES:
        raise Malformed(f"limit must be an integer from 1 to {MAX_ENTRIES}")
    query = parse_query(params, viewer, limit=limit + 1)
    size = number(params, "size", None, 1)
    proofs: list[list[bytes]] | None = None
    if size is None:
        found = await store.audit_entries(query)
    else:
        head = await _signed_head(store, config, signer, size)
        end = head.size if query.end is None else min(query.end, head.size)
        pairs = await store.export_page(replace(query, end=end), size=head.size, proofs=True)
        found = [entry for entry, _ in pairs]
        proofs = [proof or [] for _, proof in pairs]
    await recording.access(store, scope, now=clock())
    if len(found) > limit:
        return Page(found[:limit], found[limit - 1].index + 1, proofs and proofs[:limit])
    return Page(found, None, proofs)


async def _signed_head(
    store: Store, config: HubConfig, signer: HeadSigner | None, size: int | None
) -> TreeHead:
    """The signed head of ``size`` entries (None: the newest); 404 when none was signed."""
    _signer(signer)
    head = await store.tree_head(config.network, size)
    if head is None:
        raise NotFound("no tree head of that size was signed")
    return head


@dataclass(frozen=True, slots=True)
class Proof:
    entry: AuditEntry
    head: TreeHead
    proof: list[bytes]


async def inclusion(
    store: Store,
    clock: Clock,
    config: HubConfig,
    scope: Scope,
    *,
    caller: Caller,
    signer: HeadSigner | None,
    index_text: str,
    params: Mapping[str, str],
) -> Proof:
    viewer = viewer_of(caller)
    _signer(signer)
    if not _NUMBER.fullmatch(index_text) or int(index_text) > MAX_SAFE_INT:
        raise NotFound()
    index = int(index_text)
    size = number(params, "size", None, 1)
    found = await store.inclusion(config.network, index, size=size, viewer=viewer)
    if found.head is None:
        raise NotFound("no tree head of that size was signed")
    if index >= found.head.size:
        raise Malformed("the entry is not in the tree of that head; ask for a newer head")
    if found.entry is None:
        raise NotFound()
    await recording.access(store, scope, now=clock())
    return Proof(found.entry, found.head, found.proof)


@dataclass(frozen=True, slots=True)
class Export:
    """An export to stream: its head, then :meth:`lines` page by page."""

    store: Store
    head: TreeHead
    query: AuditQuery
    proofs: bool

    async def lines(self) -> AsyncIterator[tuple[AuditEntry, list[bytes] | None]]:
        query = self.query
        while True:
            page = await self.store.export_page(query, size=self.head.size, proofs=self.proofs)
            for item in page:
                yield item
            if len(page) < query.limit:
                return
            query = replace(query, start=page[-1][0].index + 1)


async def export(
    store: Store,
    clock: Clock,
    config: HubConfig,
    scope: Scope,
    *,
    caller: Caller,
    signer: HeadSigner | None,
    params: Mapping[str, str],
) -> Export:
    """Check the request and commit its entry; the caller then streams :class:`Export`."""
    viewer = viewer_of(caller)
    _signer(signer)
    proofs = params.get("proofs", "true")
    if proofs not in ("true", "false"):
        raise Malformed("proofs must be true or false")
    if proofs == "false" and viewer is not None:
        raise Malformed("only a network privacy officer may export without proofs")
    query = parse_query(params, viewer, limit=EXPORT_PAGE)
    head = await _signed_head(store, config, signer, number(params, "size", None, 1))
    end = head.size if query.end is None else min(query.end, head.size)
    await recording.access(store, scope, now=clock())
    return Export(store, head, replace(query, end=end), proofs == "true")
