"""Initial schema: directory, challenges, messages and deliveries, audit log.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Written out in full (not from ``hub.schema``) so that later changes to the
tables need their own migration; a test checks the result equals the schema.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "organisations",
        sa.Column("org", sa.String(32), nullable=False),
        sa.Column("network", sa.String(32), nullable=False),
        sa.Column("certificate", sa.LargeBinary, nullable=False),
        sa.Column("fingerprint", sa.String(43), nullable=False),
        sa.Column("serial", sa.String(60), nullable=False),
        sa.Column("roles", sa.String(200), nullable=False),
        sa.Column("not_before", sa.BigInteger, nullable=False),
        sa.Column("not_after", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("org", name="pk_organisations"),
        sa.UniqueConstraint("fingerprint", name="uq_organisations_fingerprint"),
    )
    op.create_table(
        "bundles",
        sa.Column("fingerprint", sa.String(43), nullable=False),
        sa.Column("org", sa.String(32), nullable=False),
        sa.Column("wire", sa.Text, nullable=False),
        sa.Column("not_before", sa.BigInteger, nullable=False),
        sa.Column("not_after", sa.BigInteger, nullable=False),
        sa.Column("current", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("fingerprint", name="pk_bundles"),
        sa.ForeignKeyConstraint(
            ["org"], ["organisations.org"], name="fk_bundles_org_organisations"
        ),
    )
    op.create_index("ix_bundles_org", "bundles", ["org"])
    op.create_table(
        "crl",
        sa.Column("number", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("der", sa.LargeBinary, nullable=False),
        sa.Column("this_update", sa.BigInteger, nullable=False),
        sa.Column("next_update", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("number", name="pk_crl"),
    )
    op.create_table(
        "linking_keys",
        sa.Column("org", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("bundle", sa.String(43), nullable=False),
        sa.Column("wire", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("org", "version", name="pk_linking_keys"),
    )
    op.create_table(
        "challenges",
        sa.Column("challenge", sa.String(43), nullable=False),
        sa.Column("org", sa.String(32), nullable=False),
        sa.Column("expires", sa.BigInteger, nullable=False),
        sa.Column("used_at", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("challenge", name="pk_challenges"),
    )
    op.create_index("ix_challenges_expires", "challenges", ["expires"])
    op.create_table(
        "messages",
        sa.Column("cursor", BigId, nullable=False, autoincrement=True),
        sa.Column("id", sa.String(22), nullable=False),
        sa.Column("sender", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("created", sa.BigInteger, nullable=False),
        sa.Column("accepted_at", sa.BigInteger, nullable=False),
        sa.Column("envelope_fingerprint", sa.String(43), nullable=False),
        sa.Column("envelope", sa.Text, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("cursor", name="pk_messages"),
        sa.UniqueConstraint("id", name="uq_messages_id"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "deliveries",
        sa.Column("recipient", sa.String(32), nullable=False),
        sa.Column("cursor", sa.BigInteger, nullable=False),
        sa.Column("acked_at", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("recipient", "cursor", name="pk_deliveries"),
        sa.ForeignKeyConstraint(
            ["cursor"],
            ["messages.cursor"],
            name="fk_deliveries_cursor_messages",
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "message_pseudonyms",
        sa.Column("cursor", sa.BigInteger, nullable=False),
        sa.Column("pseudonym", sa.String(80), nullable=False),
        sa.PrimaryKeyConstraint("cursor", "pseudonym", name="pk_message_pseudonyms"),
        sa.ForeignKeyConstraint(
            ["cursor"],
            ["messages.cursor"],
            name="fk_message_pseudonyms_cursor_messages",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_message_pseudonyms_pseudonym", "message_pseudonyms", ["pseudonym"])
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("time", sa.BigInteger, nullable=False),
        sa.Column("org", sa.String(32), nullable=True),
        sa.Column("user", sa.String(64), nullable=True),
        sa.Column("role", sa.String(200), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("object_type", sa.String(16), nullable=False),
        sa.Column("object_id", sa.String(64), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("source", sa.String(64), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("prev_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("entry_hash", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_log"),
    )


def downgrade() -> None:
    for table in (
        "audit_log",
        "message_pseudonyms",
        "deliveries",
        "messages",
        "challenges",
        "linking_keys",
        "crl",
        "bundles",
        "organisations",
    ):
        op.drop_table(table)
