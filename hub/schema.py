"""The hub's tables (SQLAlchemy Core). Only :mod:`hub.store` queries them.

Times are integer Unix seconds. Wire objects are kept as their canonical JSON
text, certificates and CRLs as DER. The migration ``0001_initial`` creates
exactly these tables; a test compares the two.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# An auto-incrementing 64-bit key on PostgreSQL; INTEGER PRIMARY KEY (the rowid) on SQLite.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Time = sa.BigInteger
Org = sa.String(32)
Fp = sa.String(43)

organisations = sa.Table(
    "organisations",
    metadata,
    sa.Column("org", Org, primary_key=True),
    sa.Column("network", sa.String(32), nullable=False),
    sa.Column("certificate", sa.LargeBinary, nullable=False),
    sa.Column("fingerprint", Fp, nullable=False, unique=True),
    sa.Column("serial", sa.String(60), nullable=False),  # decimal: X.509 serials exceed 64 bits
    sa.Column("roles", sa.String(200), nullable=False),  # sorted, comma separated
    sa.Column("not_before", Time, nullable=False),
    sa.Column("not_after", Time, nullable=False),
)

bundles = sa.Table(
    "bundles",
    metadata,
    sa.Column("fingerprint", Fp, primary_key=True),
    sa.Column("org", Org, sa.ForeignKey("organisations.org"), nullable=False, index=True),
    sa.Column("wire", sa.Text, nullable=False),
    sa.Column("not_before", Time, nullable=False),
    sa.Column("not_after", Time, nullable=False),
    sa.Column("current", sa.Boolean, nullable=False),
)

crl = sa.Table(
    "crl",
    metadata,
    sa.Column("number", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("der", sa.LargeBinary, nullable=False),
    sa.Column("this_update", Time, nullable=False),
    sa.Column("next_update", Time, nullable=False),
)

linking_keys = sa.Table(
    "linking_keys",
    metadata,
    sa.Column("org", Org, primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("bundle", Fp, nullable=False),
    sa.Column("wire", sa.Text, nullable=False),
)

challenges = sa.Table(
    "challenges",
    metadata,
    sa.Column("challenge", sa.String(43), primary_key=True),
    sa.Column("org", Org, nullable=False),
    sa.Column("expires", Time, nullable=False, index=True),
    sa.Column("used_at", Time, nullable=True),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("cursor", BigId, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(22), nullable=False, unique=True),
    sa.Column("sender", Org, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("created", Time, nullable=False),
    sa.Column("accepted_at", Time, nullable=False),
    sa.Column("envelope_fingerprint", Fp, nullable=False),
    sa.Column("envelope", sa.Text, nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sqlite_autoincrement=True,  # cursors are never reused, even after deletion
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("recipient", Org, primary_key=True),
    sa.Column(
        "cursor",
        sa.BigInteger,
        sa.ForeignKey("messages.cursor", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("acked_at", Time, nullable=True),
)

message_pseudonyms = sa.Table(
    "message_pseudonyms",
    metadata,
    sa.Column(
        "cursor",
        sa.BigInteger,
        sa.ForeignKey("messages.cursor", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("pseudonym", sa.String(80), primary_key=True, index=True),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("time", Time, nullable=False),
    sa.Column("org", Org, nullable=True),
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
)
