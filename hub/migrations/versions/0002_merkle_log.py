"""The access log becomes the leaves of a Merkle tree (RFC 9162), with signed tree heads.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

``audit_log`` is rebuilt: ``seq`` (1-based) becomes ``index`` (0-based, gap-free, in the
old order), the NEN 7513 fields ``purpose``, ``purpose_text``, ``object_ids`` and
``pseudonyms`` (canonical JSON lists) are added, and ``leaf_hash`` replaces the hash chain
(``prev_hash``/``entry_hash``). New tables: ``audit_nodes`` (every perfect subtree hash),
``audit_objects`` and ``audit_pseudonyms`` (for the filters and privacy-officer scoping)
and ``tree_heads`` (every signed head).

Existing entries are carried over, page by page, and translated to the vocabulary of
``protocol.auditlog``: the old dotted action names become NEN 7513 codes and object types
(``_ACTIONS``), ``auth.token`` denied becomes ``login-failed``, an address that is not an
IP address (``-``) becomes null, an empty role set null, ``object_id`` becomes
``object_ids`` (a message or org id; a CRL number and the inbox's own org are dropped),
and an allowed ``message.send`` gets the pseudonyms of its stored message. Their leaf
hashes and tree nodes are computed here. An entry that can not be translated stops the
migration (nothing is changed: the migration runs in one transaction).

Written out in full (not from ``hub.schema``), so that later changes need their own
migration. Works on SQLite (batch mode) and PostgreSQL.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from alembic import op

from protocol import merkle
from protocol.auditlog import AuditEntry, nodes_to_store
from protocol.encoding import canonical_json

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

PAGE = 1000
OLD = "audit_log_0001"

# old action -> (action, object type, whether object_id names the entry's object)
_ACTIONS: dict[str, tuple[str, str, bool]] = {
    "auth.token": ("login", "auth", False),
    "directory.certificate.put": ("create", "directory", True),
    "directory.orgs.list": ("list", "directory", False),
    "directory.org.get": ("read", "directory", True),
    "directory.bundle.put": ("create", "directory", True),
    "directory.bundle.get": ("read", "directory", True),
    "directory.crl.get": ("read", "directory", False),
    "directory.crl.put": ("create", "directory", False),
    "directory.linking-key.put": ("create", "directory", True),
    "directory.linking-keys.list": ("list", "directory", True),
    "message.send": ("create", "message", True),
    "message.get": ("read", "message", True),
    "message.ack": ("acknowledge", "message", True),
    "inbox.read": ("list", "inbox", False),
    "ws.connect": ("read", "inbox", False),
}


def _create_tables() -> None:
    op.create_table(
        "audit_log",
        sa.Column("index", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("time", sa.BigInteger, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("org", sa.String(32), nullable=True),
        sa.Column("user", sa.String(64), nullable=True),
        sa.Column("role", sa.String(200), nullable=True),
        sa.Column("purpose", sa.String(32), nullable=True),
        sa.Column("purpose_text", sa.String(200), nullable=True),
        sa.Column("object_type", sa.String(16), nullable=False),
        sa.Column("object_ids", sa.Text, nullable=False),
        sa.Column("pseudonyms", sa.Text, nullable=False),
        sa.Column("source", sa.String(64), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("index", name="pk_audit_log"),
    )
    op.create_table(
        "audit_nodes",
        sa.Column("level", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("idx", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name="pk_audit_nodes"),
    )
    op.create_table(
        "audit_objects",
        sa.Column("index", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("object_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("index", "object_id", name="pk_audit_objects"),
    )
    op.create_index("ix_audit_objects_object_id", "audit_objects", ["object_id"])
    op.create_table(
        "audit_pseudonyms",
        sa.Column("index", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("pseudonym", sa.String(80), nullable=False),
        sa.PrimaryKeyConstraint("index", "pseudonym", name="pk_audit_pseudonyms"),
    )
    op.create_index("ix_audit_pseudonyms_pseudonym", "audit_pseudonyms", ["pseudonym"])
    op.create_table(
        "tree_heads",
        sa.Column("size", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("root", sa.LargeBinary(32), nullable=False),
        sa.Column("time", sa.BigInteger, nullable=False),
        sa.Column("hub_cert", sa.String(43), nullable=False),
        sa.Column("sig", sa.LargeBinary(64), nullable=False),
        sa.PrimaryKeyConstraint("size", name="pk_tree_heads"),
    )


def upgrade() -> None:
    bind = op.get_bind()
    op.rename_table("audit_log", OLD)
    if bind.dialect.name == "postgresql":  # index names are per schema there
        op.execute("ALTER INDEX pk_audit_log RENAME TO pk_audit_log_0001")
    _create_tables()
    _carry_over(bind)
    op.drop_table(OLD)


def downgrade() -> None:
    raise NotImplementedError("the Merkle access log can not be turned back into a hash chain")


# -- carrying the old entries over ------------------------------------------------------


def _old_rows(bind: sa.Connection) -> Iterator[Any]:
    old = sa.table(OLD, *(sa.column(name) for name in _OLD_COLUMNS))
    last = 0
    while True:
        page = bind.execute(
            sa.select(old).where(old.c.seq > last).order_by(old.c.seq).limit(PAGE)
        ).all()
        if not page:
            return
        yield from page
        last = page[-1].seq


_OLD_COLUMNS = (
    "seq", "time", "org", "user", "role", "action", "object_type", "object_id", "outcome",
    "reason", "source", "request_id",
)  # fmt: skip


def _source(text: str | None) -> str | None:
    try:
        address = ipaddress.ip_address(text or "")
    except ValueError:
        return None
    return str(address) if str(address) == text else None


def _message_pseudonyms(bind: sa.Connection, message_id: str) -> tuple[str, ...]:
    rows = bind.execute(
        sa.text(
            "SELECT p.pseudonym FROM message_pseudonyms p JOIN messages m "
            "ON m.cursor = p.cursor WHERE m.id = :id ORDER BY p.pseudonym"
        ),
        {"id": message_id},
    ).all()
    return tuple(row.pseudonym for row in rows)


def _entry(bind: sa.Connection, index: int, row: Any) -> AuditEntry:
    if row.action not in _ACTIONS:
        raise RuntimeError(f"audit entry {row.seq}: unknown action {row.action!r}")
    action, object_type, names_object = _ACTIONS[row.action]
    if action == "login" and row.outcome == "denied":
        action = "login-failed"
    object_ids = (row.object_id,) if names_object and row.object_id else ()
    pseudonyms: tuple[str, ...] = ()
    if row.action == "message.send" and row.outcome == "allowed" and row.object_id:
        pseudonyms = _message_pseudonyms(bind, row.object_id)
    return AuditEntry(
        index=index,
        time=row.time,
        action=action,
        outcome=row.outcome,
        reason=row.reason,
        org=row.org,
        user=row.user,
        role=row.role or None,
        purpose=None,
        purpose_text=None,
        object_type=object_type,
        object_ids=object_ids,
        pseudonyms=pseudonyms,
        source=_source(row.source),
        request_id=row.request_id,
    )


def _carry_over(bind: sa.Connection) -> None:
    log = sa.table("audit_log", *(sa.column(name) for name in _NEW_COLUMNS))
    nodes = sa.table("audit_nodes", sa.column("level"), sa.column("idx"), sa.column("hash"))
    objects = sa.table("audit_objects", sa.column("index"), sa.column("object_id"))
    pseuds = sa.table("audit_pseudonyms", sa.column("index"), sa.column("pseudonym"))
    frontier: dict[int, bytes] = {}
    for index, row in enumerate(_old_rows(bind)):
        entry = _entry(bind, index, row)
        leaf = entry.leaf()
        bind.execute(sa.insert(log).values(**_row(entry, leaf)))
        for object_id in entry.object_ids:
            bind.execute(sa.insert(objects).values(index=index, object_id=object_id))
        for pseudonym in entry.pseudonyms:
            bind.execute(sa.insert(pseuds).values(index=index, pseudonym=pseudonym))
        for (level, idx), value in _complete(frontier, index, leaf):
            bind.execute(sa.insert(nodes).values(level=level, idx=idx, hash=value))


_NEW_COLUMNS = (
    "index", "time", "action", "outcome", "reason", "org", "user", "role", "purpose",
    "purpose_text", "object_type", "object_ids", "pseudonyms", "source", "request_id",
    "leaf_hash",
)  # fmt: skip


def _row(entry: AuditEntry, leaf: bytes) -> dict[str, Any]:
    wire = entry.to_wire()
    values = {name: wire[name] for name in _NEW_COLUMNS if name != "leaf_hash"}
    values["object_ids"] = canonical_json(wire["object_ids"]).decode("utf-8")
    values["pseudonyms"] = canonical_json(wire["pseudonyms"]).decode("utf-8")
    values["leaf_hash"] = leaf
    return values


def _complete(frontier: dict[int, bytes], size_before: int, leaf: bytes) -> list[Any]:
    """The perfect subtrees appending ``leaf`` completes, with their hashes."""
    done: list[Any] = []
    value = leaf
    for level, idx in nodes_to_store(size_before):
        if level:
            value = merkle.node_hash(frontier[level - 1], value)
        done.append(((level, idx), value))
    for (level, _idx), node in done:
        frontier[level] = node
    return done
