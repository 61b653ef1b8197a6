"""Access-log entries of version 2: personal fields behind a salted commitment.

Revision ID: 0005a
Revises: 0004c
Create Date: 2026-12-04

``audit_log`` gains ``v`` (1 for every existing entry) and ``personal`` (the 32-byte
commitment of a version 2 entry, null for version 1). New tables: ``audit_openings``
(salt and personal fields of each version 2 entry, until erased) and ``audit_erasures``
(when and why an opening was erased). Existing entries keep their version, their fields
and their leaves, so every proof stays as it was.

Written out in full (not from ``hub.schema``), so that later changes need their own
migration. Works on SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005a"
down_revision = "0004c"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("v", sa.SmallInteger, nullable=False, server_default="1"))
        batch.add_column(sa.Column("personal", sa.LargeBinary(32), nullable=True))
    op.create_table(
        "audit_openings",
        sa.Column("index", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("salt", sa.LargeBinary(32), nullable=False),
        sa.Column("user", sa.String(64), nullable=True),
        sa.Column("purpose_text", sa.String(200), nullable=True),
        sa.Column("pseudonyms", sa.Text, nullable=False),
        sa.Column("source", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("index", name="pk_audit_openings"),
    )
    op.create_table(
        "audit_erasures",
        sa.Column("index", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("time", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("entry", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("index", name="pk_audit_erasures"),
    )


def downgrade() -> None:
    """Only while no version 2 entry was written: their leaves need ``personal``."""
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT 1 FROM audit_log WHERE v <> 1 LIMIT 1")).first():
        raise RuntimeError("the access log holds version 2 entries; 0005a can not be undone")
    op.drop_table("audit_erasures")
    op.drop_table("audit_openings")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("personal")
        batch.drop_column("v")
