"""Retention: the authority's retention policies, and tombstones of deleted envelopes.

Revision ID: 0005b
Revises: 0005a
Create Date: 2026-12-04

New table ``retention_policies`` (every policy the authority uploaded, by number;
``docs/protocol.md``, "Retention"). ``messages`` gains ``deleted_at`` and
``deleted_reason``: the retention job and an erasure empty a message's envelope and
keep its row as a tombstone (id, sender, times, reason; no content), so that the sender
is told through ``GET /v1/sent``. The index on ``(deleted_at, accepted_at)`` lets the job
find the live envelopes of a given age without reading the others, and the one on
``deliveries.cursor`` their acknowledgements (the primary key leads with the recipient).

Written out in full (not from ``hub.schema``). Works on SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005b"
down_revision = "0005a"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "retention_policies",
        sa.Column("number", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("issued", sa.BigInteger, nullable=False),
        sa.Column("wire", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("number", name="pk_retention_policies"),
    )
    op.add_column("messages", sa.Column("deleted_at", sa.BigInteger, nullable=True))
    op.add_column("messages", sa.Column("deleted_reason", sa.String(16), nullable=True))
    op.create_index("ix_messages_deleted_at_accepted_at", "messages", ["deleted_at", "accepted_at"])
    op.create_index("ix_deliveries_cursor", "deliveries", ["cursor"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_cursor", table_name="deliveries")
    op.drop_index("ix_messages_deleted_at_accepted_at", table_name="messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("deleted_reason")
        batch.drop_column("deleted_at")
    op.drop_table("retention_policies")
