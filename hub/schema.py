"""The hub's tables (SQLAlchemy Core). Only :mod:`hub.store` queries them.

Times are integer Unix seconds. Wire objects are kept as their canonical JSON
text, certificates and CRLs as DER. The migrations (``0001_initial``,
``0002_merkle_log``, ``0003_cases``, ``0004d_oprf_keys``, ``0004b_sent_index``, then
``0004c_witnesses``, ``0005a_audit_openings``, then ``0005b_retention``) create exactly
these tables; a test compares the two.
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
    sa.Column("org_type", sa.String(16), nullable=False, server_default="other"),
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

# The pseudonymisation services' root-signed key statements (``protocol.oprfkeys``),
# one per pseudonym version and share: held and served, never used by the hub.
oprf_keys = sa.Table(
    "oprf_keys",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("share", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("public_key", sa.String(43), nullable=False),
    sa.Column("not_before", Time, nullable=False),
    sa.Column("wire", sa.Text, nullable=False),
)

# Root-signed retirements of linking-key versions (``protocol.retirement``): after
# ``until`` the hub refuses envelopes carrying pseudonyms of that version.
retired_linking_keys = sa.Table(
    "retired_linking_keys",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("until", Time, nullable=False),
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
    # A tombstone (from 0005b): the envelope was emptied at ``deleted_at`` for a reason of
    # hub.retention.REASONS; the row stays so that the sender is told (GET /v1/sent).
    sa.Column("deleted_at", Time, nullable=True),
    sa.Column("deleted_reason", sa.String(16), nullable=True),
    sqlite_autoincrement=True,  # cursors are never reused, even after deletion
)
# One organisation's sent messages after a cursor (GET /v1/sent), from 0004b.
sa.Index("ix_messages_sender_cursor", messages.c.sender, messages.c.cursor)
# The live envelopes of a given age, for the retention job (0005b).
sa.Index("ix_messages_deleted_at_accepted_at", messages.c.deleted_at, messages.c.accepted_at)

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
# A message's deliveries, whoever the recipient (the retention job, 0005b).
sa.Index("ix_deliveries_cursor", deliveries.c.cursor)

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

# The access log: one row per entry (the leaves of the Merkle tree, 0-based and gap-free),
# with its object ids and pseudonyms also in their own tables for the filters and scoping.
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("index", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("time", Time, nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(64), nullable=True),
    sa.Column("org", Org, nullable=True),
    sa.Column("user", sa.String(64), nullable=True),
    sa.Column("role", sa.String(200), nullable=True),
    sa.Column("purpose", sa.String(32), nullable=True),
    sa.Column("purpose_text", sa.String(200), nullable=True),
    sa.Column("object_type", sa.String(16), nullable=False),
    sa.Column("object_ids", sa.Text, nullable=False),  # canonical JSON list
    sa.Column("pseudonyms", sa.Text, nullable=False),  # canonical JSON list
    sa.Column("source", sa.String(64), nullable=True),
    sa.Column("request_id", sa.String(64), nullable=True),
    sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
    # Version 2 (migration 0005a): the personal fields above stay null and empty, and
    # ``personal`` is the commitment to them; their opening is in ``audit_openings``.
    sa.Column("v", sa.SmallInteger, nullable=False, server_default="1"),
    sa.Column("personal", sa.LargeBinary(32), nullable=True),
)

# The opening of each version 2 entry (salt and personal fields), written with the entry
# and deleted, with the entry's ``audit_pseudonyms`` rows, when it is erased.
audit_openings = sa.Table(
    "audit_openings",
    metadata,
    sa.Column("index", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("salt", sa.LargeBinary(32), nullable=False),
    sa.Column("user", sa.String(64), nullable=True),
    sa.Column("purpose_text", sa.String(200), nullable=True),
    sa.Column("pseudonyms", sa.Text, nullable=False),  # canonical JSON list
    sa.Column("source", sa.String(64), nullable=True),
)

# One row per erased opening: when, why, and the entry that records the erasure.
audit_erasures = sa.Table(
    "audit_erasures",
    metadata,
    sa.Column("index", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("time", Time, nullable=False),
    sa.Column("reason", sa.String(64), nullable=False),
    sa.Column("entry", sa.BigInteger, nullable=True),
)

# Every perfect subtree of the tree: level L, index i covers leaves [i * 2**L, (i+1) * 2**L).
audit_nodes = sa.Table(
    "audit_nodes",
    metadata,
    sa.Column("level", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("hash", sa.LargeBinary(32), nullable=False),
)

audit_objects = sa.Table(
    "audit_objects",
    metadata,
    sa.Column("index", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("object_id", sa.String(64), primary_key=True, index=True),
)

audit_pseudonyms = sa.Table(
    "audit_pseudonyms",
    metadata,
    sa.Column("index", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("pseudonym", sa.String(80), primary_key=True, index=True),
)

# Every tree head the hub signed, by tree size.
tree_heads = sa.Table(
    "tree_heads",
    metadata,
    sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("root", sa.LargeBinary(32), nullable=False),
    sa.Column("time", Time, nullable=False),
    sa.Column("hub_cert", Fp, nullable=False),
    sa.Column("sig", sa.LargeBinary(64), nullable=False),
)


# --- cases and referrals (docs/protocol.md, "Cases") --------------------------------------
Case = sa.String(16)
MessageIdText = sa.String(22)

# A case cluster, known by an opaque random reference. A merged case redirects to the
# case that absorbed it (``merged_into``, always a live case: redirects are flattened).
cases = sa.Table(
    "cases",
    metadata,
    sa.Column("ref", Case, primary_key=True),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("merged_into", Case, nullable=True, index=True),
    sa.Column("merged_at", Time, nullable=True),
    # A summary kept up to date by every change to the case, for the cases view:
    sa.Column("signals", sa.Integer, nullable=False, server_default="0"),
    sa.Column("first_signal", Time, nullable=True),
    sa.Column("last_signal", Time, nullable=True),
    sa.Column("org_types", sa.String(200), nullable=False, server_default=""),  # ",a,b,"
    sa.Column("state", sa.String(16), nullable=False, server_default="new"),
    sa.Column("open_referrals", sa.Integer, nullable=False, server_default="0"),
)

# The signals and referrals of each live case (status envelopes follow their referral).
case_members = sa.Table(
    "case_members",
    metadata,
    sa.Column(
        "cursor",
        sa.BigInteger,
        sa.ForeignKey("messages.cursor", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("case", Case, nullable=False, index=True),
)

# The union of the pseudonyms of each live case's members: what a new signal is matched on.
# A pseudonym can belong to two cases only when the coordinator kept them apart (a split).
case_pseudonyms = sa.Table(
    "case_pseudonyms",
    metadata,
    sa.Column("pseudonym", sa.String(80), primary_key=True),
    sa.Column("case", Case, primary_key=True, index=True),
)

# Pairs of live cases the coordinator keeps apart (a < b); no signal joins them.
case_separations = sa.Table(
    "case_separations",
    metadata,
    sa.Column("a", Case, primary_key=True),
    sa.Column("b", Case, primary_key=True, index=True),
    sa.Column("at", Time, nullable=False),
)

# Every merge and split, automatic or by a coordinator, with the messages it moved.
case_changes = sa.Table(
    "case_changes",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("case", Case, nullable=False, index=True),  # the case that stayed
    sa.Column("other", Case, nullable=False, index=True),  # absorbed, or split off
    sa.Column("action", sa.String(16), nullable=False),  # merge, split
    sa.Column("automatic", sa.Boolean, nullable=False),
    sa.Column("at", Time, nullable=False),
    sa.Column("org", Org, nullable=True),
    sa.Column("messages", sa.Text, nullable=False),  # canonical JSON list of message ids
    sqlite_autoincrement=True,
)

# One row per referral envelope: its case, its parties and when it entered each step.
referrals = sa.Table(
    "referrals",
    metadata,
    sa.Column(
        "cursor",
        sa.BigInteger,
        sa.ForeignKey("messages.cursor", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("id", MessageIdText, nullable=False, unique=True),
    sa.Column("case", Case, nullable=False, index=True),
    sa.Column("referrer", Org, nullable=False),
    sa.Column("recipient", Org, nullable=False, index=True),
    sa.Column("step", sa.String(16), nullable=False, index=True),
    sa.Column("step_at", Time, nullable=False),
    sa.Column("sent_at", Time, nullable=False),
    sa.Column("delivered_at", Time, nullable=True),
    sa.Column("accepted_at", Time, nullable=True),
    sa.Column("declined_at", Time, nullable=True),
    sa.Column("care_started_at", Time, nullable=True),
    sa.Column("closed_at", Time, nullable=True),
    sa.Column("replaced_by", MessageIdText, nullable=True),  # the re-referral after a decline
)

# Every status envelope about a referral, and the code it carried.
referral_updates = sa.Table(
    "referral_updates",
    metadata,
    sa.Column(
        "cursor",
        sa.BigInteger,
        sa.ForeignKey("messages.cursor", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("referral", sa.BigInteger, nullable=False, index=True),
    sa.Column("code", sa.String(16), nullable=False),
    sa.Column("at", Time, nullable=False),
)

# An escalation fired for a referral that waited too long at a step: at most one per step.
escalations = sa.Table(
    "escalations",
    metadata,
    sa.Column("referral", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("step", sa.String(16), primary_key=True),
    sa.Column("due", Time, nullable=False),
    sa.Column("at", Time, nullable=False),
)

# Notices kept for one organisation: match and escalation events for coordinators,
# reminders for the holder of a referral's next step. Read through GET /v1/events.
events = sa.Table(
    "events",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("org", Org, nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("at", Time, nullable=False),
    sa.Column("case", Case, nullable=True),  # only in events for a coordinator
    sa.Column("message", MessageIdText, nullable=True),
    sa.Column("step", sa.String(16), nullable=True),
    sa.Column("detail", sa.Text, nullable=False),  # canonical JSON object, no content
    sqlite_autoincrement=True,
)


# --- witnesses (docs/protocol.md, "Witnesses") --------------------------------------------

# Every witness policy the authority uploaded, by number; the highest is in force.
witness_policies = sa.Table(
    "witness_policies",
    metadata,
    sa.Column("number", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("issued", Time, nullable=False),
    sa.Column("wire", sa.Text, nullable=False),  # canonical JSON of the signed policy
)

# The verified cosignatures of each signed tree head, one per witness certificate.
cosignatures = sa.Table(
    "cosignatures",
    metadata,
    sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("serial", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("org", Org, nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("key_id", sa.BigInteger, nullable=False),
    sa.Column("signature", sa.LargeBinary(72), nullable=False),  # u64 time || Ed25519
    sa.Column("received", Time, nullable=False),
)


# --- retention (docs/protocol.md, "Retention") --------------------------------------------

# Every retention policy the authority uploaded, by number; the highest is in force.
retention_policies = sa.Table(
    "retention_policies",
    metadata,
    sa.Column("number", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("issued", Time, nullable=False),
    sa.Column("wire", sa.Text, nullable=False),  # canonical JSON of the signed policy
)
