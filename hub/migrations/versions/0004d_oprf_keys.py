"""The pseudonymisation services' key statements, held and served with the directory.

Revision ID: 0004d
Revises: 0003
Create Date: 2026-12-04

New tables ``oprf_keys``: one root-signed key statement per pseudonym version and share
(``docs/protocol.md``, "Directory"), which the hub stores and serves and never uses; and
``retired_linking_keys``: the root-signed end of each linking-key version's transition
window, after which the hub refuses pseudonyms of that version.

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
    op.create_table(
        "retired_linking_keys",
        sa.Column("version", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("until", sa.BigInteger, nullable=False),
        sa.Column("wire", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("version", name="pk_retired_linking_keys"),
    )


def downgrade() -> None:
    op.drop_table("retired_linking_keys")
    op.drop_table("oprf_keys")
