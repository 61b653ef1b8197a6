"""The one part of the hub that talks to the database.

``Store`` (reads, migrations, lifecycle) and ``Tx`` (writes inside a work item
of the single writer) map rows to protocol objects or the small records of
:mod:`hub.store.records`; rows are never the wire format.
"""

from hub.store.database import Store, alembic_config, head_revision
from hub.store.records import (
    AuditQuery,
    BundleValidity,
    CrlRecord,
    Directory,
    InboxItem,
    Inclusion,
    MessageView,
    OrgRecord,
    OrgSummary,
    SentDelivery,
    SentItem,
    Snapshot,
    StoredMessage,
)
from hub.store.tx import Placed, Tx

__all__ = [
    "AuditQuery",
    "BundleValidity",
    "CrlRecord",
    "Directory",
    "InboxItem",
    "Inclusion",
    "MessageView",
    "OrgRecord",
    "OrgSummary",
    "Placed",
    "SentDelivery",
    "SentItem",
    "Snapshot",
    "Store",
    "StoredMessage",
    "Tx",
    "alembic_config",
    "head_revision",
]
