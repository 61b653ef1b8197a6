"""Case clusters, referrals, escalations and event feeds; organisation types.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

``organisations`` gains ``org_type`` (certificates issued before organisation types
carry none: ``other``). New tables: ``cases``, ``case_members``, ``case_pseudonyms``,
``case_separations``, ``case_changes``, ``referrals``, ``referral_updates``,
``escalations`` and ``events``
(``docs/protocol.md``, "Cases").

Existing signals and referrals are clustered here, in cursor order, exactly as the hub
clusters new ones (connected components of shared pseudonyms; no coordinator has split
anything yet), each cluster under a new random reference. Referral envelopes accepted
before this revision get no referral row: no client could send one before it.

Written out in full (not from ``hub.schema``), so that later changes need their own
migration. Works on SQLite (batch mode) and PostgreSQL.
"""

from __future__ import annotations

import base64
import os
from collections import defaultdict

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

PAGE = 1000
_CASE = sa.String(16)
_TIME = sa.BigInteger
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _create_tables() -> None:
    op.create_table(
        "cases",
        sa.Column("ref", _CASE, nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("merged_into", _CASE, nullable=True),
        sa.Column("merged_at", _TIME, nullable=True),
        sa.Column("signals", sa.Integer, nullable=False, server_default="0"),
        sa.Column("first_signal", _TIME, nullable=True),
        sa.Column("last_signal", _TIME, nullable=True),
        sa.Column("org_types", sa.String(200), nullable=False, server_default=""),
        sa.Column("state", sa.String(16), nullable=False, server_default="new"),
        sa.Column("open_referrals", sa.Integer, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("ref", name="pk_cases"),
    )
    op.create_index("ix_cases_merged_into", "cases", ["merged_into"])
    op.create_table(
        "case_members",
        sa.Column("cursor", sa.BigInteger, nullable=False),
        sa.Column("case", _CASE, nullable=False),
        sa.ForeignKeyConstraint(
            ["cursor"],
            ["messages.cursor"],
            name="fk_case_members_cursor_messages",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("cursor", name="pk_case_members"),
    )
    op.create_index("ix_case_members_case", "case_members", ["case"])
    op.create_table(
        "case_pseudonyms",
        sa.Column("pseudonym", sa.String(80), nullable=False),
        sa.Column("case", _CASE, nullable=False),
        sa.PrimaryKeyConstraint("pseudonym", "case", name="pk_case_pseudonyms"),
    )
    op.create_index("ix_case_pseudonyms_case", "case_pseudonyms", ["case"])
    op.create_table(
        "case_separations",
        sa.Column("a", _CASE, nullable=False),
        sa.Column("b", _CASE, nullable=False),
        sa.Column("at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("a", "b", name="pk_case_separations"),
    )
    op.create_index("ix_case_separations_b", "case_separations", ["b"])
    op.create_table(
        "case_changes",
        sa.Column("id", _ID, nullable=False, autoincrement=True),
        sa.Column("case", _CASE, nullable=False),
        sa.Column("other", _CASE, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("automatic", sa.Boolean, nullable=False),
        sa.Column("at", _TIME, nullable=False),
        sa.Column("org", sa.String(32), nullable=True),
        sa.Column("messages", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_case_changes"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_case_changes_case", "case_changes", ["case"])
    op.create_index("ix_case_changes_other", "case_changes", ["other"])
    _create_referral_tables()


def _create_referral_tables() -> None:
    op.create_table(
        "referrals",
        sa.Column("cursor", sa.BigInteger, nullable=False),
        sa.Column("id", sa.String(22), nullable=False),
        sa.Column("case", _CASE, nullable=False),
        sa.Column("referrer", sa.String(32), nullable=False),
        sa.Column("recipient", sa.String(32), nullable=False),
        sa.Column("step", sa.String(16), nullable=False),
        sa.Column("step_at", _TIME, nullable=False),
        sa.Column("sent_at", _TIME, nullable=False),
        sa.Column("delivered_at", _TIME, nullable=True),
        sa.Column("accepted_at", _TIME, nullable=True),
        sa.Column("declined_at", _TIME, nullable=True),
        sa.Column("care_started_at", _TIME, nullable=True),
        sa.Column("closed_at", _TIME, nullable=True),
        sa.Column("replaced_by", sa.String(22), nullable=True),
        sa.ForeignKeyConstraint(
            ["cursor"], ["messages.cursor"], name="fk_referrals_cursor_messages", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("cursor", name="pk_referrals"),
        sa.UniqueConstraint("id", name="uq_referrals_id"),
    )
    op.create_index("ix_referrals_case", "referrals", ["case"])
    op.create_index("ix_referrals_recipient", "referrals", ["recipient"])
    op.create_index("ix_referrals_step", "referrals", ["step"])
    op.create_table(
        "referral_updates",
        sa.Column("cursor", sa.BigInteger, nullable=False),
        sa.Column("referral", sa.BigInteger, nullable=False),
        sa.Column("code", sa.String(16), nullable=False),
        sa.Column("at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["cursor"],
            ["messages.cursor"],
            name="fk_referral_updates_cursor_messages",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("cursor", name="pk_referral_updates"),
    )
    op.create_index("ix_referral_updates_referral", "referral_updates", ["referral"])
    op.create_table(
        "escalations",
        sa.Column("referral", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("step", sa.String(16), nullable=False),
        sa.Column("due", _TIME, nullable=False),
        sa.Column("at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("referral", "step", name="pk_escalations"),
    )
    op.create_table(
        "events",
        sa.Column("id", _ID, nullable=False, autoincrement=True),
        sa.Column("org", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("at", _TIME, nullable=False),
        sa.Column("case", _CASE, nullable=True),
        sa.Column("message", sa.String(22), nullable=True),
        sa.Column("step", sa.String(16), nullable=True),
        sa.Column("detail", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_events_org", "events", ["org"])


def upgrade() -> None:
    with op.batch_alter_table("organisations") as batch:
        batch.add_column(
            sa.Column("org_type", sa.String(16), nullable=False, server_default="other")
        )
    _create_tables()
    _cluster_existing(op.get_bind())


def downgrade() -> None:
    for table in (
        "events",
        "escalations",
        "referral_updates",
        "referrals",
        "case_changes",
        "case_separations",
        "case_pseudonyms",
        "case_members",
        "cases",
    ):
        op.drop_table(table)
    with op.batch_alter_table("organisations") as batch:
        batch.drop_column("org_type")


# -- clustering what is there ---------------------------------------------------------------


class _Components:
    """Union-find over message cursors."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, item: int) -> int:
        self.parent.setdefault(item, item)
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)  # the oldest message names the cluster


def _cluster_existing(bind: sa.Connection) -> None:
    m = sa.table("messages", sa.column("cursor"), sa.column("kind"), sa.column("accepted_at"))
    mp = sa.table("message_pseudonyms", sa.column("cursor"), sa.column("pseudonym"))
    rows = bind.execute(
        sa.select(m.c.cursor, m.c.accepted_at, m.c.kind, mp.c.pseudonym)
        .select_from(m.outerjoin(mp, mp.c.cursor == m.c.cursor))
        .where(m.c.kind.in_(("signal", "referral")))
        .order_by(m.c.cursor)
    ).all()
    components = _Components()
    first_holder: dict[str, int] = {}
    accepted: dict[int, int] = {}
    signals: set[int] = set()
    pseudonyms: dict[int, set[str]] = defaultdict(set)
    for cursor, accepted_at, kind, pseudonym in rows:
        accepted[cursor] = accepted_at
        if kind == "signal":
            signals.add(cursor)
        components.find(cursor)
        if pseudonym is not None:
            pseudonyms[cursor].add(pseudonym)
            components.union(cursor, first_holder.setdefault(pseudonym, cursor))
    _store_clusters(bind, components, accepted, signals, pseudonyms)


def _store_clusters(
    bind: sa.Connection,
    components: _Components,
    accepted: dict[int, int],
    signals: set[int],
    pseudonyms: dict[int, set[str]],
) -> None:
    refs: dict[int, str] = {}
    members: list[dict[str, object]] = []
    cases: list[dict[str, object]] = []
    case_pseudonyms: set[tuple[str, str]] = set()
    summary: dict[int, dict[str, object]] = {}
    for cursor in sorted(accepted):
        root = components.find(cursor)
        if root not in refs:
            refs[root] = base64.b32encode(os.urandom(10)).decode("ascii").lower()
            summary[root] = {"ref": refs[root], "created_at": accepted[root], "signals": 0}
            cases.append(summary[root])
        if cursor in signals:  # in cursor order: the first seen is the first signal
            row = summary[root]
            row["signals"] = int(row["signals"]) + 1  # type: ignore[call-overload]
            row.setdefault("first_signal", accepted[cursor])
            row["last_signal"] = accepted[cursor]
            row["org_types"] = ",other,"  # no certificate named a type before this revision
        members.append({"cursor": cursor, "case": refs[root]})
        case_pseudonyms.update((p, refs[root]) for p in pseudonyms[cursor])
    columns = ("ref", "created_at", "signals", "first_signal", "last_signal", "org_types")
    for row in cases:
        row.setdefault("first_signal", None)
        row.setdefault("last_signal", None)
        row.setdefault("org_types", "")
    table = sa.table
    for rows, target in (
        (cases, table("cases", *(sa.column(name) for name in columns))),
        (members, table("case_members", sa.column("cursor"), sa.column("case"))),
        (
            [{"pseudonym": p, "case": c} for p, c in sorted(case_pseudonyms)],
            table("case_pseudonyms", sa.column("pseudonym"), sa.column("case")),
        ),
    ):
        for start in range(0, len(rows), PAGE):
            bind.execute(sa.insert(target), rows[start : start + PAGE])
