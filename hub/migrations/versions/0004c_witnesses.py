"""Witnesses: the authority's witness policies and the cosignatures of signed tree heads.

Revision ID: 0004c
Revises: 0004b
Create Date: 2026-12-04

New tables: ``witness_policies`` (every policy the authority uploaded, by number) and
``cosignatures`` (the verified cosignatures of each signed tree head, one per witness
certificate; ``docs/protocol.md``, "Witnesses"). Nothing existing changes.

Written out in full (not from ``hub.schema``), so that later changes need their own
migration. Works on SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004c"
down_revision = "0004b"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "witness_policies",
        sa.Column("number", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("issued", sa.BigInteger, nullable=False),
        sa.Column("wire", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("number", name="pk_witness_policies"),
    )
    op.create_table(
        "cosignatures",
        sa.Column("size", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("serial", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("org", sa.String(32), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("key_id", sa.BigInteger, nullable=False),
        sa.Column("signature", sa.LargeBinary(72), nullable=False),
        sa.Column("received", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("size", "serial", name="pk_cosignatures"),
    )


def downgrade() -> None:
    op.drop_table("cosignatures")
    op.drop_table("witness_policies")
