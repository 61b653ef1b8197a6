"""The pseudonymisation services' key statements, held and served with the directory.

Revision ID: 0004d
Revises: 0003
Create Date: 2026-12-04

New table ``oprf_keys``: one root-signed key statement per pseudonym version and share
(``docs/protocol.md``, "Directory"). The hub stores and serves them; it never uses them.

Written out in full (not from ``hub.schema``), so that later changes need their own
migration. Works on SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004d"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oprf_keys",
        sa.Column("version", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("share", sa.SmallInteger, nullable=False, autoincrement=False),
        sa.Column("public_key", sa.String(43), nullable=False),
        sa.Column("not_before", sa.BigInteger, nullable=False),
        sa.Column("wire", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("version", "share", name="pk_oprf_keys"),
    )


def downgrade() -> None:
    op.drop_table("oprf_keys")
