"""An index for the sender's view of what it sent (``GET /v1/sent``).

Revision ID: 0004b
Revises: 0004d
Create Date: 2026-12-04

``messages`` gains ``ix_messages_sender_cursor`` on (``sender``, ``cursor``), so that
one organisation's sent messages after a cursor are read from the index instead of by
scanning every message after it (``docs/protocol.md``, "Relay"). No data changes.
"""

from __future__ import annotations

from alembic import op

revision = "0004b"
down_revision = "0004d"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_messages_sender_cursor", "messages", ["sender", "cursor"])


def downgrade() -> None:
    op.drop_index("ix_messages_sender_cursor", table_name="messages")
