"""The database: migrations, reads, and the writer that does every write.

Each read is one function run inside one read transaction, and each writer
batch one function run inside one write transaction, by the
:mod:`hub.store.engines` of the database (SQLite in threads of the hub's own,
or PostgreSQL through asyncpg). A request that needs several rows reads them
together in one transaction (:meth:`Store.snapshot`), so they are consistent
with each other and cost one trip to the database.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, overload

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.dialects import postgresql

from hub import notify
from hub import schema as t
from hub.errors import AccessLogUnavailable
from hub.notify import LocalNotifier, Notice, Notifier
from hub.store import bulk, casereads, retaining, witnessing
from hub.store.bulk import Bulk, NewEntry, NewMessage, Stored
from hub.store.engines import Engines, engines_for
from hub.store.records import (
    AuditQuery,
    BundleValidity,
    CrlRecord,
    Directory,
    InboxItem,
    Inclusion,
    MessageView,
    OrgRecord,
    OrgSummary,
    SentDelivery,
    SentItem,
    Snapshot,
)
from hub.store.tree import Frontier
from hub.store.tx import UNKNOWN, AuditTree, Batch, Tx, read_nodes, read_tree
from hub.store.witnessing import StoredCosignature
from hub.writer import ItemOutcome, Writer
from protocol.auditlog import (
    AuditEntry,
    Erasure,
    TreeHead,
    consistency_from_nodes,
    inclusion_from_nodes,
    needed_for_consistency,
    needed_for_inclusion,
)
from protocol.cases import CaseSummary, Event
from protocol.keybundle import KeyBundle
from protocol.linkingkey import SealedLinkingKey
from protocol.oprfkeys import OprfKeyStatement
from protocol.retention import RetentionPolicy
from protocol.retirement import Retirement
from protocol.types import CaseRef, Fingerprint, MessageId, NetworkId, OrgId
from protocol.witnesspolicy import WitnessPolicy

T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database_url: str) -> Config:
    """An Alembic configuration built in code, so it works from an installed package."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """The newest migration this code knows."""
    head = ScriptDirectory.from_config(alembic_config("sqlite+aiosqlite://")).get_current_head()
    if head is None:
        raise RuntimeError("no migrations found in " + str(MIGRATIONS_DIR))
    return head


def _loads(text: str) -> Any:
    """Parse JSON the hub wrote itself (canonical and bounded when it was stored)."""
    return json.loads(text)


# On PostgreSQL every write transaction first takes this transaction-scoped advisory
# lock, so that exactly one replica sequences the audit tree at a time (the others wait;
# their in-memory tree is then stale, which the checked insert notices).
SEQUENCER_LOCK = 0x5348_414B_454C_0001  # "SHAKEL" + 1: a constant of this application
_TAKE_SEQUENCER_LOCK = sa.text("SELECT pg_advisory_xact_lock(:key)").bindparams(key=SEQUENCER_LOCK)
MIGRATION_LOCK = SEQUENCER_LOCK + 1
_TAKE_MIGRATION_LOCK = sa.text("SELECT pg_advisory_xact_lock(:key)").bindparams(key=MIGRATION_LOCK)


def _audit_entry(row: Any) -> AuditEntry:
    """An entry as stored (the hub wrote and validated it; it is validated again here).

    ``row`` comes from :data:`_ENTRY_SELECT`, with a version 2 entry's opening or erasure
    (:func:`_personal_of`).
    """
    return AuditEntry(
        index=int(row.index),
        time=int(row.time),
        action=row.action,
        outcome=row.outcome,
        reason=row.reason,
        org=row.org,
        role=row.role,
        purpose=row.purpose,
        object_type=row.object_type,
        object_ids=tuple(_loads(row.object_ids)),
        request_id=row.request_id,
        **_personal_of(row),
    )


def _personal_of(row: Any) -> dict[str, Any]:
    """The personal fields of a stored entry: version 1 its own; version 2 its opening
    from ``audit_openings`` or, once erased, its erasure. A version 2 row with neither
    means rows were cut (503, as for a broken tree). An opening that does not match its
    commitment is given as stored, for the privacy officer's verification to name."""
    if int(row.v) == 1:
        return {
            "user": row.user, "purpose_text": row.purpose_text,
            "pseudonyms": tuple(_loads(row.pseudonyms)), "source": row.source,
        }  # fmt: skip
    if row.o_salt is not None:
        return {
            "user": row.o_user, "purpose_text": row.o_purpose_text,
            "pseudonyms": tuple(_loads(row.o_pseudonyms)), "source": row.o_source,
            "salt": bytes(row.o_salt), "personal": bytes(row.personal), "v": 2,
        }  # fmt: skip
    if row.e_time is not None:
        erasure = Erasure(time=int(row.e_time), reason=row.e_reason, entry=row.e_entry)
        return {
            "user": None, "purpose_text": None, "pseudonyms": (), "source": None,
            "erasure": erasure, "personal": bytes(row.personal), "v": 2,
        }  # fmt: skip
    raise AccessLogUnavailable(cause=f"entry {row.index} lost its opening without an erasure")


def _tree_head(network: NetworkId, row: Any) -> TreeHead:
    return TreeHead(
        network=network,
        size=int(row.size),
        root=bytes(row.root),
        time=int(row.time),
        hub_cert=Fingerprint(row.hub_cert),
        sig=bytes(row.sig),
    )


def _roles(text: str) -> frozenset[str]:
    return frozenset(text.split(",")) if text else frozenset()


def _org_record(row: Any) -> OrgRecord:
    return OrgRecord(
        org=OrgId(row.org),
        network=NetworkId(row.network),
        certificate=bytes(row.certificate),
        fingerprint=Fingerprint(row.fingerprint),
        serial=int(row.serial),
        roles=_roles(row.roles),
        not_before=row.not_before,
        not_after=row.not_after,
    )


def _crl_record(row: Any) -> CrlRecord:
    return CrlRecord(row.number, bytes(row.der), row.this_update, row.next_update)


# Statements built once: SQLAlchemy caches their compiled form, and an expanding
# parameter takes a list of any length without a new statement per length.
_LATEST_CRL = sa.select(t.crl).order_by(t.crl.c.number.desc()).limit(1)
_ORGANISATIONS = sa.select(t.organisations).where(
    t.organisations.c.org.in_(sa.bindparam("orgs", expanding=True))
)
_BUNDLE_VALIDITY = sa.select(
    t.bundles.c.org, t.bundles.c.fingerprint, t.bundles.c.not_before, t.bundles.c.not_after
).where(t.bundles.c.fingerprint.in_(sa.bindparam("fps", expanding=True)))


_ORGANISATION_LIST = (
    sa.select(
        t.organisations.c.org,
        t.organisations.c.roles,
        t.organisations.c.fingerprint,
        t.organisations.c.serial,
        t.organisations.c.org_type,
        t.bundles.c.fingerprint.label("bundle"),
    )
    .select_from(
        t.organisations.outerjoin(
            t.bundles, sa.and_(t.bundles.c.org == t.organisations.c.org, t.bundles.c.current)
        )
    )
    .order_by(t.organisations.c.org)
)


def _scalar(statement: Any, params: Mapping[str, Any] | None, conn: sa.Connection) -> Any:
    return conn.execute(statement, params).scalar()


def _rows(statement: Any, params: Mapping[str, Any] | None, conn: sa.Connection) -> list[Any]:
    return list(conn.execute(statement, params).all())


def _sent(sender: OrgId, after: int, limit: int, conn: sa.Connection) -> list[SentItem]:
    m, d = t.messages.c, t.deliveries.c
    rows = conn.execute(
        sa.select(m.cursor, m.id, m.kind, m.accepted_at, m.deleted_at, m.deleted_reason)
        .where(m.sender == sender, m.cursor > after)
        .order_by(m.cursor)
        .limit(limit)
    ).all()
    held: dict[int, list[SentDelivery]] = {row.cursor: [] for row in rows}
    if held:
        for row in conn.execute(
            sa.select(d.cursor, d.recipient, d.acked_at)
            .where(d.cursor.in_(list(held)))
            .order_by(d.cursor, d.recipient)
        ).all():
            held[row.cursor].append(SentDelivery(OrgId(row.recipient), row.acked_at is not None))
    return [
        SentItem(
            cursor=int(row.cursor),
            id=MessageId(row.id),
            kind=str(row.kind),
            accepted=int(row.accepted_at),
            deliveries=tuple(held[row.cursor]),
            deleted=None if row.deleted_at is None else int(row.deleted_at),
            deleted_reason=row.deleted_reason,
        )
        for row in rows
    ]


def _snapshot(orgs: list[OrgId], named: dict[OrgId, Fingerprint], conn: sa.Connection) -> Snapshot:
    crl = conn.execute(_LATEST_CRL).one_or_none()
    org_rows = conn.execute(_ORGANISATIONS, {"orgs": orgs}).all() if orgs else []
    bundle_rows = (
        conn.execute(_BUNDLE_VALIDITY, {"fps": list(named.values())}).all() if named else []
    )
    return Snapshot(
        crl=None if crl is None else _crl_record(crl),
        organisations={OrgId(row.org): _org_record(row) for row in org_rows},
        bundles={
            OrgId(row.org): BundleValidity(
                OrgId(row.org), Fingerprint(row.fingerprint), row.not_before, row.not_after
            )
            for row in bundle_rows
            if named.get(OrgId(row.org)) == row.fingerprint
        },
    )


_ALL_ORGANISATIONS = sa.select(t.organisations)
_LIVE_BUNDLES = sa.select(
    t.bundles.c.org, t.bundles.c.fingerprint, t.bundles.c.not_before, t.bundles.c.not_after
).where(t.bundles.c.not_after > sa.bindparam("now"))
_RETIREMENTS = sa.select(t.retired_linking_keys.c.wire).order_by(t.retired_linking_keys.c.version)


def _directory(now: int, conn: sa.Connection) -> Directory:
    crl = conn.execute(_LATEST_CRL).one_or_none()
    return Directory(
        crl=None if crl is None else _crl_record(crl),
        organisations={
            OrgId(row.org): _org_record(row) for row in conn.execute(_ALL_ORGANISATIONS)
        },
        bundles={
            Fingerprint(row.fingerprint): BundleValidity(
                OrgId(row.org), Fingerprint(row.fingerprint), row.not_before, row.not_after
            )
            for row in conn.execute(_LIVE_BUNDLES, {"now": now})
        },
        retirements=tuple(
            Retirement.from_wire(_loads(row.wire)) for row in conn.execute(_RETIREMENTS)
        ),
    )


# The notices of a batch, sent to every listening replica when (and if) it commits.
_NOTIFY = sa.text(
    "SELECT count(pg_notify(:channel, payload)) FROM unnest(:payloads) AS payload"
).bindparams(
    sa.bindparam("channel", notify.CHANNEL),
    sa.bindparam("payloads", type_=postgresql.ARRAY(sa.Text)),
)


def _run_items(
    works: Sequence[Callable[[Tx], Any] | Bulk],
    tree: AuditTree,
    origin: str,
    alone: bool,
    conn: sa.Connection,
) -> tuple[list[ItemOutcome], AuditTree, list[tuple[OrgId, Notice]]]:
    """Run a batch in the writer's transaction: its new messages and entries first,
    together (or, when ``alone``, each in a savepoint of its own: see :func:`_run_bulk`),
    then each other work item in its savepoint; on PostgreSQL under the sequencer's lock,
    with the notices sent to the other replicas at the commit."""
    postgres = conn.dialect.name == "postgresql"
    if postgres:
        conn.execute(_TAKE_SEQUENCER_LOCK)
    batch = Batch(conn, tree)
    outcomes: list[ItemOutcome | None] = [None] * len(works)
    together = [(n, work) for n, work in enumerate(works) if isinstance(work, Bulk)]
    if together:
        items = [work for _, work in together]
        if alone:
            written = [_run_alone(batch, conn, item) for item in items]
        else:
            written = _run_bulk(batch, conn, items)
        for (n, _), outcome in zip(together, written, strict=True):
            outcomes[n] = outcome
    for n, work in enumerate(works):
        if not isinstance(work, Bulk):
            outcomes[n] = batch.run(work)
    if postgres and batch.notices:
        payloads = [notify.encode(origin, org, notice) for org, notice in batch.notices]
        conn.execute(_NOTIFY, {"payloads": payloads})
    return [o for o in outcomes if o is not None], batch.tree, batch.notices


class _TogetherFailed(Exception):
    """The batch's new messages and entries could not be written together."""


def _run_bulk(batch: Batch, conn: sa.Connection, items: Sequence[Bulk]) -> list[ItemOutcome]:
    """Write the batch's new messages and entries together (:mod:`hub.store.bulk`).

    Without a savepoint of their own, which would cost a round trip under the
    sequencer's lock in every batch: should the write fail for a reason the batch did not
    decide before writing (or hold an item it can not decide in memory,
    :class:`bulk.Undecided`), nothing else of the batch has run yet (they come first), so
    :class:`_TogetherFailed` rolls the whole transaction back, and :meth:`Store._commit`
    runs the batch again with each of these items alone, so that only the item at fault
    fails.
    """
    try:
        outcomes, tree, notices = bulk.write(conn, batch.tree, items)
    except Exception as exc:
        raise _TogetherFailed from exc
    batch.tree = tree
    batch.notices += notices
    return outcomes


def _run_alone(batch: Batch, conn: sa.Connection, item: Bulk) -> ItemOutcome:
    """Write one new message or entry in a savepoint of its own: its outcome, or the
    exception that rolled it back."""
    savepoint = conn.begin_nested()
    try:
        outcomes = _run_bulk(batch, conn, [item])
    except _TogetherFailed as failed:
        savepoint.rollback()
        batch.tree = UNKNOWN
        return False, failed.__cause__
    return outcomes[0]


# -- the access log: reads -------------------------------------------------------------

_a, _o, _p = t.audit_log, t.audit_objects, t.audit_pseudonyms
_op, _er = t.audit_openings, t.audit_erasures
_th = t.tree_heads
# Every entry with its opening or erasure (see _audit_entry).
_ENTRY_SELECT = sa.select(
    _a,
    _op.c.salt.label("o_salt"),
    _op.c.user.label("o_user"),
    _op.c.purpose_text.label("o_purpose_text"),
    _op.c.pseudonyms.label("o_pseudonyms"),
    _op.c.source.label("o_source"),
    _er.c.time.label("e_time"),
    _er.c.reason.label("e_reason"),
    _er.c.entry.label("e_entry"),
).select_from(
    _a.outerjoin(_op, _op.c.index == _a.c.index).outerjoin(_er, _er.c.index == _a.c.index)
)


def _visible(viewer: OrgId | None) -> Any:
    """Entries ``viewer`` may see: its own requests', and those that touched its messages."""
    if viewer is None:
        return sa.true()
    m, d = t.messages.c, t.deliveries.c
    received = sa.exists().where(d.cursor == m.cursor, d.recipient == viewer)
    touched = sa.exists().where(
        _o.c.index == _a.c.index,
        _a.c.object_type.in_(("message", "inbox")),  # an org id never matches a message id
        m.id == _o.c.object_id,
        sa.or_(m.sender == viewer, received),
    )
    return sa.or_(_a.c.org == viewer, touched)


def _filters(query: AuditQuery) -> list[Any]:
    a = _a.c
    where = [a.index >= query.start, _visible(query.viewer)]
    for value, condition in (
        (query.end, lambda v: a.index < v),
        (query.org, lambda v: a.org == v),
        (query.user, lambda v: sa.or_(a.user == v, _op.c.user == v)),
        (query.action, lambda v: a.action == v),
        (query.since, lambda v: a.time >= v),
        (query.until, lambda v: a.time < v),
        (query.object_id, lambda v: sa.exists().where(_o.c.index == a.index, _o.c.object_id == v)),
        (query.pseudonym, lambda v: sa.exists().where(_p.c.index == a.index, _p.c.pseudonym == v)),
    ):
        if value is not None:
            where.append(condition(value))
    return where


def _entries(query: AuditQuery, conn: sa.Connection) -> list[AuditEntry]:
    statement = _ENTRY_SELECT.where(*_filters(query)).order_by(_a.c.index).limit(query.limit)
    return [_audit_entry(row) for row in conn.execute(statement).all()]


def _head_row(size: int | None, conn: sa.Connection) -> Any:
    if size is None:
        return conn.execute(sa.select(_th).order_by(_th.c.size.desc()).limit(1)).one_or_none()
    return conn.execute(sa.select(_th).where(_th.c.size == size)).one_or_none()


def _inclusion(
    network: NetworkId, index: int, size: int | None, viewer: OrgId | None, conn: sa.Connection
) -> Inclusion:
    row = _head_row(size, conn)
    if row is None:
        return Inclusion(None, None, [])
    head = _tree_head(network, row)
    if index >= head.size:
        return Inclusion(head, None, [])
    found = conn.execute(_ENTRY_SELECT.where(_a.c.index == index, _visible(viewer))).one_or_none()
    if found is None:
        return Inclusion(head, None, [])
    nodes = read_nodes(conn, needed_for_inclusion(index, head.size))
    return Inclusion(head, _audit_entry(found), inclusion_from_nodes(index, head.size, nodes))


def _consistency(old: int, new: int, conn: sa.Connection) -> list[bytes] | None:
    if read_tree(conn).size < new:
        return None
    return consistency_from_nodes(old, new, read_nodes(conn, needed_for_consistency(old, new)))


def _export_page(
    query: AuditQuery, size: int, proofs: bool, conn: sa.Connection
) -> list[tuple[AuditEntry, list[bytes] | None]]:
    entries = _entries(query, conn)
    if not proofs:
        return [(entry, None) for entry in entries]
    wanted = sorted({n for e in entries for n in needed_for_inclusion(e.index, size)})
    nodes = read_nodes(conn, wanted)
    return [(entry, inclusion_from_nodes(entry.index, size, nodes)) for entry in entries]


class AccessLogHealth:
    """Says once, in one log line, that the access log can not be appended to.

    Every audited request then answers 503 ``access-log-unavailable``; the line is
    written again only after an append succeeded in between (the log was repaired).
    """

    def __init__(self, logger: logging.Logger) -> None:
        self._log = logger
        self._broken = False

    def broken(self, cause: str) -> None:
        if not self._broken:
            self._broken = True
            self._log.error(
                "access log unavailable: " + cause + "; every audited request is refused "
                "(503) until an operator restores the log from its backup and the hub's "
                "signed heads"
            )

    def healthy(self) -> None:
        self._broken = False


class Store:
    """Every read and write of the hub's database. See the module docstring."""

    def __init__(
        self,
        database_url: str,
        *,
        max_queue: int = 4096,
        max_batch: int = 256,
        logger: logging.Logger | None = None,
        notices: Notifier | None = None,
    ) -> None:
        self._url = database_url
        self._notices = notices or LocalNotifier()
        self._engines: Engines = engines_for(database_url)
        self._audit_tree: AuditTree = UNKNOWN  # only the writer's batches use it
        self._log_health = AccessLogHealth(logging.getLogger("hub.accesslog"))
        self._writer: Writer[Tx] = Writer(
            self._commit, max_queue=max_queue, max_batch=max_batch, logger=logger
        )

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the writer. Call :meth:`migrate` first on a new database."""
        self._writer.start()

    async def close(self) -> None:
        """Finish queued writes, then close every connection."""
        await self._writer.stop()
        await self._engines.dispose()

    async def migrate(self) -> None:
        """Bring the schema to the newest migration (Alembic, in one transaction)."""
        config = alembic_config(self._url)

        def upgrade(connection: sa.Connection) -> None:
            if connection.dialect.name == "postgresql":
                # Replicas that start together, or two operators: one migrates, the
                # others wait here and then find the schema at its newest revision.
                connection.execute(_TAKE_MIGRATION_LOCK)
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

        await self._engines.write(upgrade)

    async def revision(self) -> str | None:
        """The schema revision the database is at (None before the first migration)."""
        version = sa.table("alembic_version", sa.column("version_num"))

        def read(connection: sa.Connection) -> str | None:
            if not sa.inspect(connection).has_table("alembic_version"):
                return None
            return connection.execute(sa.select(version.c.version_num)).scalar()

        return await self._engines.read(read)

    async def ready(self) -> bool:
        """True when the database answers and its schema is the newest this code knows."""
        try:
            return await self.revision() == head_revision()
        except (sa.exc.SQLAlchemyError, OSError):
            return False

    async def scrub(self, tables: Sequence[str]) -> None:
        """Wipe what deleted rows of ``tables`` left in the database's files, outside any
        transaction (:meth:`hub.store.engines.Engines.scrub`); after an erasure committed."""
        await self._engines.scrub(tables)

    async def run_read(self, fn: Callable[[sa.Connection], T]) -> T:
        """Run ``fn`` in a read transaction: for tests, benchmarks and tools that inspect
        the schema; the hub itself reads through the typed methods."""
        return await self._engines.read(fn)

    # -- writes -------------------------------------------------------------------------

    async def _commit(self, works: Sequence[Callable[[Tx], Any] | Bulk]) -> list[ItemOutcome]:
        """Run a batch of work items in one transaction; their outcomes once it committed.

        The audit tree is handed from batch to batch only through a commit: it
        is UNKNOWN (read again by the next append) until this batch committed,
        so a failed batch, or a new process, starts from the database. A batch whose
        new messages and entries could not be written together is run once more, in a
        new transaction, with each of them alone (:func:`_run_bulk`).
        """
        tree, self._audit_tree = self._audit_tree, UNKNOWN
        origin = self._notices.origin
        try:
            outcomes, tree, notices = await self._engines.write(
                partial(_run_items, works, tree, origin, False)
            )
        except _TogetherFailed:  # rolled back: again, each new message and entry alone
            outcomes, tree, notices = await self._engines.write(
                partial(_run_items, works, UNKNOWN, origin, True)
            )
        self._audit_tree = tree
        if isinstance(tree, Frontier):  # the log was read or appended to without fault
            self._log_health.healthy()
        self._notices.deliver(notices)  # committed: tell this replica's subscribers
        return outcomes

    @overload
    async def write(self, work: NewMessage) -> Stored: ...

    @overload
    async def write(self, work: NewEntry) -> None: ...

    @overload
    async def write(self, work: Callable[[Tx], T]) -> T: ...

    async def write(self, work: Callable[[Tx], T] | Bulk) -> Any:
        """Run ``work`` in the writer's next batch; returns after that batch committed.

        ``work`` is a function of a :class:`Tx`, run alone in a savepoint, or a new
        message or entry (:mod:`hub.store.bulk`), written together with the batch's others.
        """
        try:
            return await self._writer.submit(work)  # type: ignore[arg-type]
        except AccessLogUnavailable as exc:
            self._log_health.broken(exc.cause)
            raise

    @property
    def batches_committed(self) -> int:
        return self._writer.batches

    @property
    def queue_depth(self) -> int:
        """Work items waiting for the writer (for metrics)."""
        return self._writer.depth

    # -- reads --------------------------------------------------------------------------

    async def _rows(self, statement: Any, params: Mapping[str, Any] | None = None) -> list[Any]:
        return await self._engines.read(partial(_rows, statement, params))

    async def organisation(self, org: OrgId) -> OrgRecord | None:
        rows = await self._rows(_ORGANISATIONS, {"orgs": [org]})
        return _org_record(rows[0]) if rows else None

    async def snapshot(
        self, orgs: Collection[OrgId] = (), bundles: Mapping[OrgId, Fingerprint] | None = None
    ) -> Snapshot:
        """The held CRL, the records of ``orgs`` and the named ``bundles``, in ONE transaction.

        One consistent view for a request's checks (a CRL and the certificates it
        is applied to are read together), for the price of one trip to the
        database. ``bundles`` maps an organisation to the fingerprint named for
        it; a bundle held for another organisation is left out.
        """
        return await self._engines.read(partial(_snapshot, list(orgs), dict(bundles or {})))

    async def directory(self, *, now: int) -> Directory:
        """The CRL, every organisation, every bundle not expired at ``now`` and every
        retirement, in ONE transaction (what :class:`hub.directory.TrustCache` holds)."""
        return await self._engines.read(partial(_directory, now))

    async def organisations(self) -> list[OrgSummary]:
        return [
            OrgSummary(
                org=OrgId(row.org),
                roles=_roles(row.roles),
                fingerprint=Fingerprint(row.fingerprint),
                serial=int(row.serial),
                bundle=None if row.bundle is None else Fingerprint(row.bundle),
                org_type=row.org_type,
            )
            for row in await self._rows(_ORGANISATION_LIST)
        ]

    async def bundle(self, fp: Fingerprint) -> KeyBundle | None:
        return await self._one_bundle(t.bundles.c.fingerprint == fp)

    async def current_bundle(self, org: OrgId) -> KeyBundle | None:
        b = t.bundles.c
        return await self._one_bundle(sa.and_(b.org == org, b.current))

    async def _one_bundle(self, where: Any) -> KeyBundle | None:
        query = sa.select(t.bundles.c.wire).where(where)
        wire = await self._engines.read(partial(_scalar, query, None))
        return None if wire is None else KeyBundle.from_wire(_loads(wire))

    async def latest_crl(self) -> CrlRecord | None:
        rows = await self._rows(_LATEST_CRL)
        return _crl_record(rows[0]) if rows else None

    async def linking_keys(self, org: OrgId) -> list[SealedLinkingKey]:
        c = t.linking_keys.c
        query = sa.select(c.wire).where(c.org == org).order_by(c.version)
        rows = await self._rows(query)
        return [SealedLinkingKey.from_wire(_loads(row.wire)) for row in rows]

    async def oprf_keys(self) -> list[OprfKeyStatement]:
        """Every key statement held, by version and share."""
        c = t.oprf_keys.c
        rows = await self._rows(sa.select(c.wire).order_by(c.version, c.share))
        return [OprfKeyStatement.from_wire(_loads(row.wire)) for row in rows]

    async def retirements(self) -> list[Retirement]:
        """Every linking-key retirement held, by version."""
        c = t.retired_linking_keys.c
        rows = await self._rows(sa.select(c.wire).order_by(c.version))
        return [Retirement.from_wire(_loads(row.wire)) for row in rows]

    async def inbox(self, recipient: OrgId, *, after: int, limit: int) -> list[InboxItem]:
        d, m = t.deliveries.c, t.messages.c
        query = (
            sa.select(d.cursor, d.acked_at, m.envelope)
            .join(t.messages, m.cursor == d.cursor)
            .where(d.recipient == recipient, d.cursor > after, m.deleted_at.is_(None))
            .order_by(d.cursor)
            .limit(limit)
        )
        return [
            InboxItem(
                cursor=row.cursor,
                envelope=_loads(row.envelope),
                acknowledged=row.acked_at is not None,
            )
            for row in await self._rows(query)
        ]

    async def inbox_at(self, recipient: OrgId, cursor: int) -> MessageId | None:
        """The id (in its envelope's header, as the inbox serves it) of the message
        delivered to ``recipient`` at ``cursor``, or None."""
        d, m = t.deliveries.c, t.messages.c
        query = (
            sa.select(m.envelope)
            .join(t.deliveries, d.cursor == m.cursor)
            .where(d.recipient == recipient, d.cursor == cursor, m.deleted_at.is_(None))
        )
        found = await self._engines.read(partial(_scalar, query, None))
        return None if found is None else MessageId(_loads(found)["header"]["id"])

    async def sent(self, sender: OrgId, *, after: int, limit: int) -> list[SentItem]:
        """Messages ``sender`` sent with cursor > ``after``, ascending, with the deliveries
        held for each (read in one transaction)."""
        return await self._engines.read(partial(_sent, sender, after, limit))

    async def message_for(self, message_id: MessageId, org: OrgId) -> MessageView | None:
        """The message if ``org`` is its sender or a recipient, else None."""
        d, m = t.deliveries.c, t.messages.c
        query = (
            sa.select(m.sender, m.envelope, d.cursor)
            .select_from(
                t.messages.outerjoin(
                    t.deliveries, sa.and_(d.cursor == m.cursor, d.recipient == org)
                )
            )
            .where(m.id == message_id, m.deleted_at.is_(None))  # a tombstone holds nothing
        )
        rows = await self._rows(query)
        if not rows or (rows[0].cursor is None and rows[0].sender != org):
            return None
        return MessageView(cursor=rows[0].cursor, envelope=_loads(rows[0].envelope))

    # -- the access log -------------------------------------------------------------------

    async def audit_entries(self, query: AuditQuery | None = None) -> list[AuditEntry]:
        """Entries matching ``query`` (default: the first 100 of all), ascending by index."""
        return await self._engines.read(partial(_entries, query or AuditQuery(viewer=None)))

    async def audit_size(self) -> int:
        """The number of entries (the size of the tree)."""
        return (await self._engines.read(read_tree)).size

    async def audit_root(self) -> tuple[int, bytes]:
        """The size and root hash of the whole tree, from its stored nodes."""
        tree = await self._engines.read(read_tree)
        return tree.size, tree.root()

    async def tree_head(self, network: NetworkId, size: int | None = None) -> TreeHead | None:
        """The signed head of ``size`` (default: the newest), or None."""
        row = await self._engines.read(partial(_head_row, size))
        return None if row is None else _tree_head(network, row)

    async def inclusion(
        self, network: NetworkId, index: int, *, size: int | None, viewer: OrgId | None
    ) -> Inclusion:
        """Head, entry and inclusion proof of entry ``index``, read in ONE transaction."""
        return await self._engines.read(partial(_inclusion, network, index, size, viewer))

    async def consistency(self, old: int, new: int) -> list[bytes] | None:
        """The consistency proof from ``old`` to ``new`` entries (None if ``new`` > size)."""
        return await self._engines.read(partial(_consistency, old, new))

    async def export_page(
        self, query: AuditQuery, *, size: int, proofs: bool
    ) -> list[tuple[AuditEntry, list[bytes] | None]]:
        """One page of an export: entries and their proofs against ``size``, one transaction."""
        return await self._engines.read(partial(_export_page, query, size, proofs))

    # -- reads: the coordinator's views (hub/store/casereads.py) ------------------------

    async def live_case(self, ref: CaseRef) -> CaseRef | None:
        """The live case ``ref`` names (itself, or the case it was merged into), if any."""
        return await self._engines.read(partial(casereads.live_ref, ref=ref))

    async def case_page(
        self,
        *,
        state: str | None,
        org_type: str | None,
        since: int,
        sort: str,
        descending: bool,
        offset: int,
        limit: int,
    ) -> tuple[list[CaseSummary], int]:
        """One page of live cases, filtered and sorted on the kept summary, and the total."""
        read = partial(
            casereads.page,
            state=state,
            org_type=org_type,
            since=since,
            sort=sort,
            descending=descending,
            offset=offset,
            limit=limit,
        )
        return await self._engines.read(read)

    async def case_detail(self, ref: CaseRef, *, limit: int) -> casereads.CaseDetail | None:
        """One live case: summary, referrals and the newest ``limit`` timeline entries."""
        return await self._engines.read(partial(casereads.detail, ref=ref, limit=limit))

    async def referrals(self, *, open_only: bool = False) -> list[casereads.ReferralRecord]:
        """Every referral (or the open ones), in the order they were accepted."""
        return await self._engines.read(partial(casereads.referral_records, open_only=open_only))

    async def events(self, org: OrgId, *, after: int, limit: int) -> list[Event]:
        """``org``'s events with an id above ``after``, ascending, at most ``limit``."""
        return await self._engines.read(
            partial(casereads.events, org=org, after=after, limit=limit)
        )

    # -- reads: witnessing (hub/store/witnessing.py) ----------------------------------------

    async def witness_policy(self) -> WitnessPolicy | None:
        """The held witness policy with the highest number, or None."""
        return await self._engines.read(witnessing.newest_policy)

    async def retention_policy(self) -> RetentionPolicy | None:
        """The held retention policy with the highest number, or None."""
        return await self._engines.read(retaining.newest_policy)

    async def retention_due(
        self, *, acknowledged: int, expired: int, closed: int, idle: int, access_log: int
    ) -> dict[str, retaining.Due]:
        """What the retention job's phases would delete at these cutoffs (one read)."""

        def read(conn: sa.Connection) -> dict[str, retaining.Due]:
            return {
                "acknowledged": retaining.count_messages(conn, acknowledged),
                "expired": retaining.count_messages(conn, acknowledged, expired),
                "cases": retaining.count_cases(conn, closed, idle),
                "access-log": retaining.count_openings(conn, access_log),
            }

        return await self._engines.read(read)

    async def cosignatures(self, size: int) -> list[StoredCosignature]:
        """The cosignatures kept for the tree head of ``size``, by witness serial."""
        return await self._engines.read(partial(witnessing.cosignatures_of, size))

    async def step_counts(self) -> tuple[Mapping[str, int], Mapping[str, int]]:
        """(escalations so far, open referrals now), each counted by step."""
        return await self._engines.read(casereads.step_counts)

    async def counts(self) -> dict[str, int]:
        """Rows per table (for tests; no content)."""

        def count(conn: sa.Connection) -> dict[str, int]:
            return {
                table.name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
                for table in t.metadata.sorted_tables
            }

        return await self._engines.read(count)
