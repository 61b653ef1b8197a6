"""Envelopes stored out of line without a compression attempt (PostgreSQL).

Revision ID: 0005c
Revises: 0005b
Create Date: 2026-12-04

An envelope is ciphertext in base64url (about 7.6 KB of JSON for a 4 KB payload), above
PostgreSQL's 2 KB TOAST threshold, so every insert tried to compress it with pglz first:
it never shrinks enough to be kept compressed (encrypted bytes do not compress), so the
attempt was pure work in the writer's backend, about 100 µs per envelope on this
hardware (docs/performance.md). ``messages.envelope`` now has storage ``EXTERNAL``: out
of line, never compressed. Applies to rows written from now on; the rows held keep the
form they have (both read the same). SQLite stores rows its own way: nothing to do.
"""

from __future__ import annotations

from alembic import op

revision = "0005c"
down_revision = "0005b"
branch_labels = None
depends_on = None


def _storage(kind: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE messages ALTER COLUMN envelope SET STORAGE {kind}")


def upgrade() -> None:
    _storage("EXTERNAL")


def downgrade() -> None:
    _storage("EXTENDED")
