"""Writes: what a work item may do inside the writer's transaction.

A work item is a plain function of a :class:`Tx`: it runs, with the whole
batch, in the writer's transaction (on SQLite in the writer's thread), so it
can not wait on anything else while it holds the write lock. A :class:`Tx`
wraps the one write connection for the duration of one work item (one
SAVEPOINT); it is handed to the item by :class:`Batch` and must not be kept
after the item returns.

The audit tree's size and right frontier (:class:`~hub.store.tree.Frontier`) are
carried from item to item and from batch to batch in memory, so an append costs its
inserts and no read. That is safe because only the single writer appends (on
PostgreSQL: one replica at a time, under an advisory lock), and because the frontier
is only trusted where it is known to match the database: a batch starts from the tree
the previous batch *committed* (or reads it, after a failed batch and at start, see
``Store._commit``), an item starts from the tree of the items before it, and an item
that failed leaves the tree unknown, to be read again. Even a wrong tree can not leave
a gap or take an index twice: :meth:`Tx.insert_audit` stores an entry only if its
index directly follows the newest stored entry, checked in the same statement, and
answers False otherwise. A log whose stored rows no longer fit together (entries or
nodes cut under a running hub) raises :class:`~hub.errors.AccessLogUnavailable`: the
item, and with it whatever it was to record, rolls back.

Notices for live delivery (:mod:`hub.notify`) are asked for inside the item
(:meth:`Tx.notify`), so they exist exactly when the item's change does: the batch
keeps those of the items that did not roll back, and the store publishes them with
the commit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from hub import schema as t
from hub.errors import AccessLogUnavailable
from hub.notify import Notice
from hub.store.casewrites import CaseTx
from hub.store.erasing import ErasureTx
from hub.store.records import StoredMessage
from hub.store.retaining import RetentionTx
from hub.store.tree import Frontier, frontier_nodes
from hub.store.witnessing import WitnessTx
from hub.writer import ItemOutcome
from protocol.auditlog import AuditEntry, Node, TreeHead
from protocol.certificate import Certificate, RevocationList
from protocol.encoding import b64e, canonical_json
from protocol.envelope import Encoded
from protocol.keybundle import KeyBundle
from protocol.linkingkey import SealedLinkingKey
from protocol.oprfkeys import OprfKeyStatement
from protocol.retirement import Retirement
from protocol.types import Fingerprint, MessageId, OrgId

Placed = Literal["new", "held", "older", "conflict"]


class UnknownTree:
    """The audit tree is not known and must be read from the database."""


UNKNOWN: Final = UnknownTree()
AuditTree = Frontier | UnknownTree

# Statements built once; SQLAlchemy caches their compiled form.
_m = t.messages
# A new id is stored; a held one is left alone (and RETURNING gives no row).
_NEW_MESSAGE: Final = {
    name: dialect.insert(_m).on_conflict_do_nothing(index_elements=[_m.c.id]).returning(_m.c.cursor)
    for name, dialect in (("sqlite", sqlite), ("postgresql", postgresql))
}
_NEW_DELIVERIES: Final = sa.insert(t.deliveries)
_NEW_PSEUDONYMS: Final = sa.insert(t.message_pseudonyms)
_FIND_MESSAGE: Final = sa.select(
    _m.c.cursor, _m.c.id, _m.c.sender, _m.c.envelope_fingerprint, _m.c.accepted_at
).where(_m.c.id == sa.bindparam("id"))
_a, _n, _h = t.audit_log, t.audit_nodes, t.tree_heads
_AUDIT_SIZE: Final = sa.select(sa.func.max(_a.c.index))
_AUDIT_COLUMNS: Final = tuple(column.name for column in _a.c)
_NEW_NODES: Final = sa.insert(_n)
_NEW_OBJECTS: Final = sa.insert(t.audit_objects)
_NEW_AUDIT_PSEUDONYMS: Final = sa.insert(t.audit_pseudonyms)
_NEW_OPENING: Final = sa.insert(t.audit_openings)
_LATEST_HEAD_SIZE: Final = sa.select(sa.func.max(_h.c.size))


def _append_audit() -> sa.Insert:
    """INSERT ... SELECT the entry's values WHERE its index directly follows the newest one."""
    given = {name: sa.bindparam("v_" + name, type_=_a.c[name].type) for name in _AUDIT_COLUMNS}
    index = given["index"]
    nothing_after = ~sa.exists().where(_a.c.index >= index)
    previous = sa.exists().where(_a.c.index == index - 1)
    follows = sa.select(*given.values()).where(nothing_after, sa.or_(index == 0, previous))
    return sa.insert(_a).from_select(list(_AUDIT_COLUMNS), follows)


_APPEND: Final = _append_audit()


def entry_row(entry: AuditEntry) -> dict[str, Any]:
    """The ``audit_log`` row of ``entry`` (lists as canonical JSON text).

    A version 2 entry's personal fields are not in it (null, ``[]``): they go to
    ``audit_openings`` (:func:`opening_row`)."""
    row = {name: getattr(entry, name) for name in _AUDIT_COLUMNS if name != "leaf_hash"}
    row["object_ids"] = canonical_json(list(entry.object_ids)).decode("utf-8")
    row["pseudonyms"] = canonical_json(list(entry.pseudonyms)).decode("utf-8")
    if entry.v != 1:
        row.update(user=None, purpose_text=None, pseudonyms="[]", source=None)
    row["leaf_hash"] = entry.leaf()
    return row


def opening_row(entry: AuditEntry) -> dict[str, Any] | None:
    """The ``audit_openings`` row of a version 2 entry with its opening, else None."""
    if entry.v == 1 or entry.salt is None:
        return None
    return {
        "index": entry.index,
        "salt": entry.salt,
        "user": entry.user,
        "purpose_text": entry.purpose_text,
        "pseudonyms": canonical_json(list(entry.pseudonyms)).decode("utf-8"),
        "source": entry.source,
    }


def read_nodes(conn: sa.Connection, wanted: list[Node]) -> dict[Node, bytes]:
    """The stored nodes of ``wanted`` (those stored), one statement per level."""
    by_level: dict[int, list[int]] = {}
    for level, idx in wanted:
        by_level.setdefault(level, []).append(idx)
    if not by_level:
        return {}
    where = sa.or_(*(sa.and_(_n.c.level == lv, _n.c.idx.in_(ix)) for lv, ix in by_level.items()))
    rows = conn.execute(sa.select(_n.c.level, _n.c.idx, _n.c.hash).where(where)).all()
    return {(row.level, row.idx): bytes(row.hash) for row in rows}


BROKEN_LOG = "its stored entries and nodes no longer fit together (rows were removed)"


def read_tree(conn: sa.Connection) -> Frontier:
    """The tree as stored: its size and right frontier."""
    newest = conn.execute(_AUDIT_SIZE).scalar_one_or_none()
    return tree_of_size(conn, 0 if newest is None else int(newest) + 1)


def tree_of_size(conn: sa.Connection, size: int) -> Frontier:
    """The stored tree of ``size`` entries (its right frontier read from the nodes), for
    a caller that has just read the newest index; KeyError if a node is missing."""
    return Frontier.from_nodes(size, read_nodes(conn, frontier_nodes(size)))


def _roles_text(roles: frozenset[str]) -> str:
    return ",".join(sorted(roles))


class Tx:
    """The write operations of the hub, on the writer's connection."""

    __slots__ = ("_cases", "_conn", "_tree", "notices")

    def __init__(self, conn: sa.Connection, tree: AuditTree = UNKNOWN) -> None:
        self._conn = conn
        self._tree = tree
        self._cases: CaseTx | None = None
        self.notices: list[tuple[OrgId, Notice]] = []

    def notify(self, org: OrgId, notice: Notice) -> None:
        """Announce ``notice`` to ``org``'s live subscribers once this item is committed."""
        self.notices.append((org, notice))

    @property
    def cases(self) -> CaseTx:
        """Case clusters, referrals and event feeds (:mod:`hub.store.casewrites`); one per
        work item (or bulk write), so that what it reads once (the coordinators) is read
        once."""
        if self._cases is None:
            self._cases = CaseTx(self._conn)
        return self._cases

    @property
    def erasing(self) -> ErasureTx:
        """Erasing access-log openings (:mod:`hub.store.erasing`)."""
        return ErasureTx(self._conn)

    @property
    def witnessing(self) -> WitnessTx:
        """Witness policies and cosignatures (:mod:`hub.store.witnessing`)."""
        return WitnessTx(self._conn)

    @property
    def retention(self) -> RetentionTx:
        """Retention policies and deletions (:mod:`hub.store.retaining`)."""
        return RetentionTx(self._conn)

    @property
    def tree(self) -> AuditTree:
        """The audit tree as this item's own appends left it."""
        return self._tree

    def _scalar(self, statement: Any) -> Any:
        return (self._conn.execute(statement)).scalar_one_or_none()

    # -- authentication -----------------------------------------------------------------

    def insert_challenge(self, challenge: str, org: OrgId, *, expires: int) -> None:
        self._conn.execute(
            sa.insert(t.challenges).values(challenge=challenge, org=org, expires=expires)
        )

    def purge_challenges(self, *, now: int) -> None:
        """Forget challenges that expired (used or not)."""
        self._conn.execute(sa.delete(t.challenges).where(t.challenges.c.expires <= now))

    def consume_challenge(self, challenge: str, org: OrgId, *, now: int) -> bool:
        """Mark the challenge used; False unless it existed for ``org``, unused and unexpired."""
        c = t.challenges.c
        result = self._conn.execute(
            sa.update(t.challenges)
            .where(c.challenge == challenge, c.org == org)
            .where(c.used_at.is_(None), c.expires > now)
            .values(used_at=now)
        )
        return result.rowcount == 1

    # -- directory ----------------------------------------------------------------------

    def put_organisation(self, cert: Certificate) -> Placed:
        """Store ``cert`` unless the one held is the same ("held") or newer ("older")."""
        c = t.organisations.c
        row = (
            self._conn.execute(sa.select(c.fingerprint, c.not_before).where(c.org == cert.org))
        ).one_or_none()
        if row is not None and row.fingerprint == cert.fingerprint:
            return "held"
        if row is not None and row.not_before >= cert.not_before:
            return "older"
        values = {
            "network": cert.network,
            "certificate": cert.der,
            "fingerprint": cert.fingerprint,
            "serial": str(cert.serial),
            "roles": _roles_text(cert.roles),
            "org_type": cert.org_type,
            "not_before": cert.not_before,
            "not_after": cert.not_after,
        }
        if row is None:
            self._conn.execute(sa.insert(t.organisations).values(org=cert.org, **values))
        else:
            self._conn.execute(sa.update(t.organisations).where(c.org == cert.org).values(**values))
        self._cases = None  # its roles may make (or unmake) a coordinator
        return "new"

    def put_bundle(self, bundle: KeyBundle) -> None:
        """Store ``bundle`` (if new) and make it the organisation's current one."""
        c = t.bundles.c
        fp = bundle.fingerprint
        self._conn.execute(
            sa.update(t.bundles).where(c.org == bundle.org, c.current).values(current=False)
        )
        held = self._scalar(sa.select(c.fingerprint).where(c.fingerprint == fp))
        if held is not None:
            self._conn.execute(sa.update(t.bundles).where(c.fingerprint == fp).values(current=True))
            return
        self._conn.execute(
            sa.insert(t.bundles).values(
                fingerprint=fp,
                org=bundle.org,
                wire=canonical_json(bundle.to_wire()).decode("utf-8"),
                not_before=bundle.not_before,
                not_after=bundle.not_after,
                current=True,
            )
        )

    def put_crl(self, crl: RevocationList) -> bool:
        """Store ``crl``; False (nothing stored) unless its number is above the held one."""
        held = self._scalar(sa.select(sa.func.max(t.crl.c.number)))
        if held is not None and crl.number <= held:
            return False
        self._conn.execute(
            sa.insert(t.crl).values(
                number=crl.number,
                der=crl.der,
                this_update=crl.this_update,
                next_update=crl.next_update,
            )
        )
        return True

    def put_linking_key(self, sealed: SealedLinkingKey) -> Placed:
        """Store ``sealed``: "new", "held" (identical one held) or "conflict"."""
        c = t.linking_keys.c
        wire = canonical_json(sealed.to_wire()).decode("utf-8")
        held = self._scalar(
            sa.select(c.wire).where(c.org == sealed.org, c.version == sealed.version)
        )
        if held is not None:
            return "held" if held == wire else "conflict"
        self._conn.execute(
            sa.insert(t.linking_keys).values(
                org=sealed.org, version=sealed.version, bundle=sealed.bundle, wire=wire
            )
        )
        return "new"

    def put_oprf_key(self, statement: OprfKeyStatement) -> Placed:
        """Store a key statement: "new" (also a later statement for the same key, which
        replaces it), "held" (identical), "older" (an earlier one for the same key) or
        "conflict" (another key for this version and share)."""
        c = t.oprf_keys.c
        wire = canonical_json(statement.to_wire()).decode("utf-8")
        public = b64e(statement.public_key)
        where = sa.and_(c.version == statement.version, c.share == statement.share)
        held = self._conn.execute(
            sa.select(c.public_key, c.not_before, c.wire).where(where)
        ).first()
        if held is None:
            self._conn.execute(
                sa.insert(t.oprf_keys).values(
                    version=statement.version,
                    share=statement.share,
                    public_key=public,
                    not_before=statement.not_before,
                    wire=wire,
                )
            )
            return "new"
        if held.wire == wire:
            return "held"
        if held.public_key != public:
            return "conflict"
        if statement.not_before <= held.not_before:
            return "older"
        self._conn.execute(
            sa.update(t.oprf_keys).where(where).values(not_before=statement.not_before, wire=wire)
        )
        return "new"

    def put_retirement(self, retirement: Retirement) -> Placed:
        """Store a retirement: "new", "held" (identical) or "conflict" (another one held
        for this version)."""
        c = t.retired_linking_keys.c
        wire = canonical_json(retirement.to_wire()).decode("utf-8")
        held = self._scalar(sa.select(c.wire).where(c.version == retirement.version))
        if held is not None:
            return "held" if held == wire else "conflict"
        self._conn.execute(
            sa.insert(t.retired_linking_keys).values(
                version=retirement.version, until=retirement.until, wire=wire
            )
        )
        return "new"

    # -- relay --------------------------------------------------------------------------

    def find_message(self, message_id: MessageId) -> StoredMessage | None:
        row = (self._conn.execute(_FIND_MESSAGE, {"id": message_id})).one_or_none()
        if row is None:
            return None
        return StoredMessage(
            cursor=row.cursor,
            id=MessageId(row.id),
            sender=OrgId(row.sender),
            envelope_fingerprint=Fingerprint(row.envelope_fingerprint),
            accepted_at=row.accepted_at,
        )

    def insert_message(self, encoded: Encoded, *, accepted_at: int) -> int | None:
        """Store the envelope, one delivery per recipient and its pseudonyms; return the cursor.

        The envelope's bytes and fingerprint come encoded already: nothing is encoded inside
        the work item. None, and nothing stored, when a message with this id is held already
        (one ``INSERT ... ON CONFLICT DO NOTHING``: no read before the write).
        """
        header = encoded.envelope.header
        wire = encoded.wire
        values = {
            "id": header.id,
            "sender": header.sender,
            "kind": header.kind,
            "created": header.created,
            "accepted_at": accepted_at,
            "envelope_fingerprint": encoded.fingerprint,
            "envelope": wire.decode("utf-8"),
            "size": len(wire),
        }
        statement = _NEW_MESSAGE[self._conn.dialect.name]
        cursor = (self._conn.execute(statement, values)).scalar_one_or_none()
        if cursor is None:
            return None
        self._conn.execute(
            _NEW_DELIVERIES,
            [{"recipient": r, "cursor": cursor, "acked_at": None} for r in header.recipients],
        )
        if header.pseudonyms:
            self._conn.execute(
                _NEW_PSEUDONYMS, [{"cursor": cursor, "pseudonym": p} for p in header.pseudonyms]
            )
        return int(cursor)

    def acknowledge(self, message_id: MessageId, recipient: OrgId, *, now: int) -> bool:
        """Mark the delivery acknowledged (first time only); False if there is none."""
        d = t.deliveries.c
        cursor = sa.select(t.messages.c.cursor).where(t.messages.c.id == message_id)
        held = (
            self._conn.execute(
                sa.select(d.acked_at).where(
                    d.recipient == recipient, d.cursor == cursor.scalar_subquery()
                )
            )
        ).one_or_none()
        if held is None:
            return False
        if held.acked_at is None:
            self._conn.execute(
                sa.update(t.deliveries)
                .where(d.recipient == recipient, d.cursor == cursor.scalar_subquery())
                .values(acked_at=now)
            )
        return True

    # -- audit --------------------------------------------------------------------------

    def audit_tree(self, *, fresh: bool = False) -> Frontier:
        """The audit tree's size and right frontier.

        From memory when this writer knows it (see the module docstring), else,
        or when ``fresh``, from the database.
        """
        if fresh or isinstance(self._tree, UnknownTree):
            try:
                self._tree = read_tree(self._conn)
            except KeyError:  # a node of the frontier is missing
                raise AccessLogUnavailable(cause=BROKEN_LOG) from None
        return self._tree

    def insert_audit(self, entry: AuditEntry, tree: Frontier) -> bool:
        """Store ``entry`` as leaf ``tree.size`` with the nodes it completes; else False.

        ``entry.index`` must be ``tree.size``. The entry is stored only if its index
        directly follows the newest stored entry (none stored at or after it, and the one
        before it stored), checked by the database in the insert itself, so a stale tree
        can not leave a gap or take an index twice.
        """
        if entry.index != tree.size:
            raise ValueError("an entry is appended at the index of the tree's size")
        row = entry_row(entry)
        try:
            result = self._conn.execute(_APPEND, {"v_" + name: v for name, v in row.items()})
        except sa.exc.SQLAlchemyError as exc:
            raise AccessLogUnavailable(
                cause=f"an entry could not be written ({type(exc).__name__})"
            ) from None
        if result.rowcount != 1:
            self._tree = UNKNOWN
            return False
        done = tree.append(row["leaf_hash"])
        try:
            self._write_entry_parts(entry, done)
        except sa.exc.IntegrityError:  # a node of a leaf that was cut is still stored
            raise AccessLogUnavailable(cause=BROKEN_LOG) from None
        self._tree = tree.appended(done)
        return True

    def _write_entry_parts(self, entry: AuditEntry, done: list[tuple[Node, bytes]]) -> None:
        """The nodes the entry completes, its object ids and pseudonyms, and its opening."""
        self._conn.execute(_NEW_NODES, [{"level": lv, "idx": i, "hash": h} for (lv, i), h in done])
        if entry.object_ids:
            self._conn.execute(
                _NEW_OBJECTS, [{"index": entry.index, "object_id": o} for o in entry.object_ids]
            )
        if entry.pseudonyms:
            self._conn.execute(
                _NEW_AUDIT_PSEUDONYMS,
                [{"index": entry.index, "pseudonym": p} for p in entry.pseudonyms],
            )
        opening = opening_row(entry)
        if opening is not None:
            self._conn.execute(_NEW_OPENING, opening)

    def latest_head_size(self) -> int | None:
        """The size of the newest signed tree head (None before the first)."""
        size = self._scalar(_LATEST_HEAD_SIZE)
        return None if size is None else int(size)

    def insert_head(self, head: TreeHead) -> None:
        self._conn.execute(
            sa.insert(_h).values(
                size=head.size, root=head.root, time=head.time, hub_cert=head.hub_cert, sig=head.sig
            )
        )


class Batch:
    """One open write transaction; each work item runs in its own SAVEPOINT.

    ``tree`` is the audit tree as the items run so far left it in this
    transaction (:data:`UNKNOWN` when it must be read again).
    """

    __slots__ = ("_conn", "notices", "tree")

    def __init__(self, conn: sa.Connection, tree: AuditTree = UNKNOWN) -> None:
        self._conn = conn
        self.tree = tree
        self.notices: list[tuple[OrgId, Notice]] = []  # of the items that did not roll back

    def run(self, work: Callable[[Tx], Any]) -> ItemOutcome:
        """Run ``work`` in a SAVEPOINT: its value, or the exception that rolled it back.

        A savepoint that did its work is not released: the items after it nest inside
        it, and the batch's commit ends them all. That saves a round trip per item and
        changes nothing else, since a savepoint is only ever rolled back right after
        its own item failed, which discards nothing of the items before it.
        """
        tx = Tx(self._conn, self.tree)
        savepoint = self._conn.begin_nested()
        try:
            value = work(tx)
        except Exception as exc:
            savepoint.rollback()
            # Its savepoint rolled back, so the tree before it would still be right;
            # read it again all the same rather than reason about partial failures.
            self.tree = UNKNOWN
            return False, exc
        self.tree = tx.tree
        self.notices += tx.notices
        return True, value
