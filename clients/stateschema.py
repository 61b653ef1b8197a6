"""The form of the local state file (:mod:`clients.state`), shared with its migration
(:mod:`clients.statemigration`): the tables of version 2, and what of a verified header is
kept in clear beside a received message."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

SCHEMA_VERSION = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY, cursor INTEGER NOT NULL, sender TEXT NOT NULL, kind TEXT NOT NULL,
    created INTEGER NOT NULL, received_at INTEGER NOT NULL, acked_at INTEGER,
    scope TEXT NOT NULL, ref TEXT, case_ref TEXT, status TEXT, prev TEXT,
    recipient_keys TEXT NOT NULL, sender_cert TEXT NOT NULL, fingerprint TEXT NOT NULL,
    sealed BLOB, envelope TEXT);
CREATE TABLE IF NOT EXISTS rejected (
    id TEXT PRIMARY KEY, cursor INTEGER NOT NULL, reason TEXT NOT NULL, at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS directory (
    org TEXT PRIMARY KEY, root TEXT NOT NULL, certificate BLOB NOT NULL, bundle TEXT,
    verified_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS certificates (
    fingerprint TEXT PRIMARY KEY, org TEXT NOT NULL, root TEXT NOT NULL, der BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS sent (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, recipients TEXT NOT NULL,
    created INTEGER NOT NULL, sent_at INTEGER NOT NULL, accepted INTEGER);
CREATE TABLE IF NOT EXISTS hub_certificates (
    fingerprint TEXT PRIMARY KEY, root TEXT NOT NULL, der BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS sent_payloads (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, ref TEXT, case_ref TEXT, status TEXT,
    created INTEGER NOT NULL, sealed BLOB NOT NULL, scope TEXT);
CREATE TABLE IF NOT EXISTS bundle_floors (
    org TEXT NOT NULL, root TEXT NOT NULL, not_before INTEGER NOT NULL,
    fingerprint TEXT NOT NULL, PRIMARY KEY (org, root));
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, recipients TEXT NOT NULL,
    created INTEGER NOT NULL, queued_at INTEGER NOT NULL, state TEXT NOT NULL,
    attempts INTEGER NOT NULL, tried_at INTEGER, problem TEXT, sealed BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS kept_payloads (id TEXT PRIMARY KEY, sealed BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS sent_envelopes (id TEXT PRIMARY KEY, sealed BLOB, envelope TEXT);
CREATE TABLE IF NOT EXISTS chains (recipient TEXT PRIMARY KEY, last_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS missing (
    id TEXT PRIMARY KEY, sender TEXT NOT NULL, named_by TEXT NOT NULL, at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS erased (
    id TEXT PRIMARY KEY, scope TEXT NOT NULL, at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS shredding (
    scope TEXT PRIMARY KEY, ids TEXT NOT NULL, closed_at INTEGER NOT NULL,
    at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS shredded (
    scope TEXT PRIMARY KEY, messages INTEGER NOT NULL, closed_at INTEGER NOT NULL,
    at INTEGER NOT NULL);
"""
INDEXES = """
CREATE INDEX IF NOT EXISTS ix_messages_scope ON messages (scope);
CREATE INDEX IF NOT EXISTS ix_messages_ref ON messages (ref);
CREATE INDEX IF NOT EXISTS ix_sent_payloads_scope ON sent_payloads (scope);
"""


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def header_facts(header: Mapping[str, Any]) -> dict[str, str | None]:
    """What is kept in clear of a (verified) wire header: ids, codes and fingerprints the
    hub saw too, never pseudonyms."""
    prev = header.get("prev")
    keys = header.get("recipient_keys")
    return {
        "ref": _text(header.get("ref")),
        "case_ref": _text(header.get("case")),
        "status": _text(header.get("status")),
        "prev": json.dumps(prev, sort_keys=True) if isinstance(prev, dict) else None,
        "recipient_keys": json.dumps(keys if isinstance(keys, dict) else {}, sort_keys=True),
        "sender_cert": _text(header.get("sender_cert")) or "",
    }
