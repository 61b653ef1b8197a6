"""The access log end to end: a real hub on loopback, real clients, and a hub database
(SQLite or PostgreSQL: each test runs on both) tampered with by hand. Every kind of
tampering must be caught and named by the client."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestServer

from clients.errors import AuditLogInconsistent
from clients.exports import report_csv
from clients.hub_client import Purpose
from clients.organisation import Organisation
from clients.privacy_officer import PrivacyOfficer, verify_export_file
from hub.accesslog import erasure
from hub.app import make_app
from hub.http.common import SERVICES
from hub.store import AuditQuery, Tx
from keys.hub import HubKeys
from protocol import merkle
from protocol.auditlog import seal_entry, sign_tree_head
from protocol.pseudonym import Identity
from schakel import demo as demo_network

if TYPE_CHECKING:
    from conftest import HubDatabase

ORGS = {
    "police": ("member", "privacy_officer"),
    "ggd": ("member", "privacy_officer"),
    "coordinator": ("coordinator", "member", "privacy_officer"),
    "privacy": ("member", "network_privacy_officer"),
}
ANNA = {"bsn": "111222333", "given_names": "Anna", "family_name": "de Vries"}
BRAM = {"bsn": "123456782", "given_names": "Bram", "family_name": "Bakker"}


@dataclass
class Hub:
    demo: demo_network.DemoNetwork
    database: HubDatabase
    base_url: str = ""
    server: TestServer | None = None

    async def start(self, port: int = 0) -> None:
        hub_keys = HubKeys.open(self.demo.hub_dir, self.demo.passphrase)
        assert hub_keys.certificate is not None
        config = dataclasses.replace(
            demo_network.hub_config(self.demo, host="127.0.0.1", port=port),
            database_url=self.database.url,
        )
        app = make_app(
            config,
            token_key_pem=hub_keys.token_key_pem,
            hub_certificate_der=hub_keys.certificate.der,
            log_signing_key=hub_keys.signing_key,
        )
        self.server = TestServer(app, host="127.0.0.1", port=port)
        await self.server.start_server()
        self.base_url = str(self.server.make_url("")).rstrip("/")

    async def restart(self) -> None:
        assert self.server is not None
        port = self.server.port
        await self.server.close()
        await self.start(port or 0)

    def open(self, org: str) -> Organisation:
        return demo_network.open_organisation(self.demo, org, self.base_url)

    async def sql(self, statement: str, **params: object) -> int:
        """Run one statement on the hub's database behind its back; the rows it changed."""
        return await self.database.sql(statement, **params)


@pytest.fixture
async def hub(tmp_path: Path, hub_database: HubDatabase) -> AsyncIterator[Hub]:
    now = int(time.time())
    demo = demo_network.provision(tmp_path / "demo", now=now, orgs=ORGS)
    running = Hub(demo, hub_database)
    await running.start()
    try:
        await demo_network.bootstrap(demo, running.base_url, now=now)
        yield running
    finally:
        assert running.server is not None
        await running.server.close()


async def send(hub: Hub, sender: str, person: dict[str, str], to: str = "coordinator") -> str:
    org = hub.open(sender)
    try:
        async with org.hub:
            payload = {
                "schema": "schakel.signal/1",
                "person": person,
                "exploitation": "sexual",
                "urgency": "high",
                "consent_to_share": True,
            }
            return (await org.send_signal(payload, [to])).id
    finally:
        org.state.close()


async def receive(hub: Hub, org_id: str) -> None:
    org = hub.open(org_id)
    try:
        async with org.hub:
            await org.receive()
    finally:
        org.state.close()


async def officer_run(hub: Hub, org_id: str, what: str, *args: object) -> object:
    org = hub.open(org_id)
    try:
        async with org.hub:
            org.hub.purpose = Purpose("audit")
            return await getattr(PrivacyOfficer(org), what)(*args)
    finally:
        org.state.close()


async def traffic(hub: Hub) -> tuple[str, str]:
    anna = await send(hub, "police", ANNA)
    bram = await send(hub, "ggd", BRAM)
    await receive(hub, "coordinator")
    return anna, bram


# Tests that do not touch the hub's database themselves run on SQLite only (tests/hub
# runs the hub's store on both kinds), which keeps tests/integration fast.
ON_SQLITE_ONLY = pytest.mark.parametrize("database_kind", ["sqlite"])


@ON_SQLITE_ONLY
async def test_an_honest_log_verifies_sampled_and_whole(hub: Hub) -> None:
    await traffic(hub)
    sampled = await officer_run(hub, "privacy", "verify_sample", 1000)
    full = await officer_run(hub, "privacy", "verify_full")
    assert full.checked == full.head.size > 10  # type: ignore[attr-defined]
    assert sampled.checked > 10  # type: ignore[attr-defined]
    own = await officer_run(hub, "police", "verify_sample", 1000)
    assert 0 < own.checked < full.checked  # type: ignore[attr-defined]


async def test_an_updated_entry_is_named(hub: Hub) -> None:
    await traffic(hub)
    await officer_run(hub, "privacy", "verify_full")
    # an entry's personal field (in its opening), then a public field of another entry
    [(user,)] = await hub.database.rows('SELECT "user" FROM audit_openings WHERE "index" = 3')
    assert await hub.sql('UPDATE audit_openings SET "user" = :u WHERE "index" = 3', u="mallory")
    for what, args in (("verify_sample", (1000,)), ("verify_full", ())):
        with pytest.raises(AuditLogInconsistent, match="do not match its commitment") as caught:
            await officer_run(hub, "privacy", what, *args)
        assert caught.value.index == 3, what
    assert await hub.sql('UPDATE audit_openings SET "user" = :u WHERE "index" = 3', u=user)
    await officer_run(hub, "privacy", "verify_full")
    assert await hub.sql('UPDATE audit_log SET "time" = "time" + 1 WHERE "index" = 4')
    for what, args in (("verify_sample", (1000,)), ("verify_full", ())):
        with pytest.raises(AuditLogInconsistent) as caught:
            await officer_run(hub, "privacy", what, *args)
        assert caught.value.index == 4, what


async def test_a_deleted_entry_is_named(hub: Hub) -> None:
    await traffic(hub)
    assert await hub.sql('DELETE FROM audit_log WHERE "index" = 5') == 1
    for what, args in (("verify_sample", (1000,)), ("verify_full", ())):
        with pytest.raises(AuditLogInconsistent) as caught:
            await officer_run(hub, "privacy", what, *args)
        assert caught.value.index == 5, what


async def test_truncated_entries_are_named(hub: Hub) -> None:
    await traffic(hub)
    head = (await officer_run(hub, "privacy", "verify_full")).head  # type: ignore[attr-defined]
    cut = head.size - 3
    await hub.restart()
    assert await hub.sql('DELETE FROM audit_log WHERE "index" >= :cut', cut=cut) >= 3
    for table in ("audit_objects", "audit_pseudonyms", "audit_openings", "audit_erasures"):
        await hub.sql(f'DELETE FROM {table} WHERE "index" >= :cut', cut=cut)
    await hub.sql("DELETE FROM audit_nodes WHERE (idx + 1) * (1 << level) > :cut", cut=cut)
    await hub.sql("DELETE FROM tree_heads WHERE size > :cut", cut=cut)
    await hub.restart()
    with pytest.raises(AuditLogInconsistent) as caught:
        await officer_run(hub, "privacy", "verify_full")
    message = str(caught.value)
    assert f"kept head: size {head.size}" in message
    # the hub logged new requests after the cut, so its log regrew a little: the index
    # named is the first one the kept head covers that the hub no longer serves
    assert caught.value.index is not None and cut <= caught.value.index < head.size, message


async def _rewrite(hub: Hub) -> None:
    """Rewrite every entry's user (in its opening, with a new commitment), recompute every
    leaf and node, sign a new head with the hub's own key: a log that is perfectly
    consistent in itself."""
    hub_keys = HubKeys.open(hub.demo.hub_dir, hub.demo.passphrase)
    cert = hub_keys.certificate
    assert cert is not None
    async with hub.database.transaction() as db:
        result = await db.execute(sa.text('SELECT * FROM audit_log ORDER BY "index"'))
        names = list(result.keys())
        rows = [dict(row) for row in result.mappings()]
        assert rows and "leaf_hash" in names
        openings = {
            row["index"]: dict(row)
            for row in (await db.execute(sa.text("SELECT * FROM audit_openings"))).mappings()
        }
        leaves = []
        for row in rows:
            # version 2: the opening gets the new user, and the entry a new commitment
            opened = openings[row["index"]]
            opened["user"] = "rewritten"
            entry = seal_entry(
                **{k: row[k] for k in names if k not in ("leaf_hash", "v", "personal")}
                | {k: opened[k] for k in ("user", "purpose_text", "source", "salt")}
                | {
                    "object_ids": tuple(json.loads(row["object_ids"])),
                    "pseudonyms": tuple(json.loads(opened["pseudonyms"])),
                }
            )
            leaves.append(entry.leaf())
            await db.execute(
                sa.text(
                    "UPDATE audit_log SET personal = :personal, leaf_hash = :leaf "
                    'WHERE "index" = :i'
                ),
                {"personal": entry.personal, "leaf": entry.leaf(), "i": row["index"]},
            )
            await db.execute(
                sa.text('UPDATE audit_openings SET "user" = :user WHERE "index" = :i'),
                {"user": "rewritten", "i": row["index"]},
            )
        await db.execute(sa.text("DELETE FROM audit_nodes"))
        level, nodes = 0, leaves
        while nodes:
            for i, h in enumerate(nodes):
                await db.execute(
                    sa.text("INSERT INTO audit_nodes (level, idx, hash) VALUES (:l, :i, :h)"),
                    {"l": level, "i": i, "h": h},
                )
            nodes = [merkle.node_hash(nodes[i], nodes[i + 1]) for i in range(0, len(nodes) - 1, 2)]
            level += 1
        await db.execute(sa.text("DELETE FROM tree_heads"))
        head = sign_tree_head(
            hub_keys.signing_key,
            cert,
            size=len(leaves),
            root=merkle.root_hash(leaves),
            time=int(time.time()),
        )
        await db.execute(
            sa.text(
                "INSERT INTO tree_heads (size, root, time, hub_cert, sig) "
                "VALUES (:size, :root, :time, :hub_cert, :sig)"
            ),
            {
                "size": head.size,
                "root": head.root,
                "time": head.time,
                "hub_cert": head.hub_cert,
                "sig": head.sig,
            },
        )


async def test_a_rewritten_log_is_caught_by_the_kept_head(hub: Hub) -> None:
    await traffic(hub)
    await officer_run(hub, "privacy", "verify_full")
    await send(hub, "police", ANNA)  # the police client keeps a head too
    await hub.restart()
    await _rewrite(hub)
    await hub.restart()
    with pytest.raises(AuditLogInconsistent, match="does not match what this client saw") as caught:
        await officer_run(hub, "privacy", "verify_sample", 10)
    assert "kept head: size" in str(caught.value)
    with pytest.raises(AuditLogInconsistent):
        await send(hub, "police", ANNA)


async def test_a_forked_head_is_caught(hub: Hub) -> None:
    await traffic(hub)
    head = (await officer_run(hub, "privacy", "verify_full")).head  # type: ignore[attr-defined]
    hub_keys = HubKeys.open(hub.demo.hub_dir, hub.demo.passphrase)
    assert hub_keys.certificate is not None
    other = sign_tree_head(
        hub_keys.signing_key,
        hub_keys.certificate,
        size=head.size,
        root=hashlib.sha256(b"fork").digest(),
        time=head.time + 1,
    )
    await hub.restart()
    assert await hub.sql("DELETE FROM tree_heads WHERE size >= :size", size=head.size) >= 1
    await hub.sql(
        "INSERT INTO tree_heads (size, root, time, hub_cert, sig) "
        "VALUES (:size, :root, :time, :hub_cert, :sig)",
        size=other.size,
        root=other.root,
        time=other.time,
        hub_cert=other.hub_cert,
        sig=other.sig,
    )
    org = hub.open("privacy")
    try:
        async with org.hub:
            with pytest.raises(AuditLogInconsistent, match="same size differ"):
                await org.log.check(await org.hub.audit_head_at(head.size))
    finally:
        org.state.close()


@ON_SQLITE_ONLY
async def test_a_subject_report_lists_exactly_the_accesses_to_their_messages(hub: Hub) -> None:
    anna, bram = await traffic(hub)
    _, rows = await officer_run(hub, "privacy", "subject_report", Identity(**ANNA))  # type: ignore[misc]
    assert rows, "no accesses found"
    assert all(r.objects == (anna,) for r in rows)
    assert bram not in str(rows)
    actions = {(r.org, r.action) for r in rows}
    assert ("police", "create") in actions and ("coordinator", "acknowledge") in actions


async def _erase_about(hub: Hub, message_id: str) -> list[int]:
    """Erase, on the hub, the openings of every entry about ``message_id`` but its create,
    and of entry 0; the indexes erased."""
    assert hub.server is not None
    store = hub.server.app[SERVICES].store
    about = await store.audit_entries(AuditQuery(viewer=None, object_id=message_id))
    seqs = [0] + [e.index for e in about if e.action != "create"]

    def item(tx: Tx) -> int:
        return erasure.erase_openings(tx, seqs, reason="erasure-request", now=int(time.time()))

    assert await store.write(item) == len(seqs)
    await erasure.scrub(store)
    return seqs


async def test_an_erased_log_verifies_and_proofs_from_before_still_hold(
    hub: Hub, tmp_path: Path
) -> None:
    anna, _ = await traffic(hub)
    before = await officer_run(hub, "privacy", "verify_full")
    head = before.head  # type: ignore[attr-defined]
    org = hub.open("privacy")
    try:
        async with org.hub:
            org.hub.purpose = Purpose("audit")
            proofs = {i: await org.hub.audit_inclusion(i, head.size) for i in range(head.size)}
            consistency = await org.hub.audit_consistency(1, head.size)
    finally:
        org.state.close()
    erased = await _erase_about(hub, anna)
    assert len(erased) >= 3

    full = await officer_run(hub, "privacy", "verify_full")
    assert full.erased == len(erased)  # type: ignore[attr-defined]
    assert f"the personal fields of {len(erased)} of them were erased" in full.text()  # type: ignore[attr-defined]
    await officer_run(hub, "police", "verify_visible")
    org = hub.open("privacy")
    try:
        async with org.hub:
            org.hub.purpose = Purpose("audit")
            entries = (await org.hub.audit_entries(start=0, end=head.size)).entries
            lines = [line async for line in org.hub.audit_export(size=head.size)]
    finally:
        org.state.close()
    assert [e.index for e in entries if e.erased] == erased
    for entry in entries:  # the proofs issued before the erasure, against the head before it
        proof = proofs[entry.index]
        assert proof.leaf == entry.leaf()
        merkle.verify_inclusion(entry.leaf(), entry.index, head.size, list(proof.proof), head.root)
    first = merkle.root_hash([entries[0].leaf()])
    merkle.verify_consistency(1, head.size, first, head.root, consistency)
    assert sum(b'"opening":"erased"' in line for line in lines) == len(erased)
    export = tmp_path / "export.ndjson"
    export.write_bytes(b"".join(line + b"\n" for line in lines))
    org = hub.open("privacy")
    try:
        offline = verify_export_file(org, export, full=True)
    finally:
        org.state.close()
    assert (offline.checked, offline.erased) == (head.size, len(erased))


async def test_a_subject_report_after_erasure_lists_the_erased_accesses_as_erased(
    hub: Hub,
) -> None:
    anna, _ = await traffic(hub)
    erased = await _erase_about(hub, anna)
    _, rows = await officer_run(hub, "privacy", "subject_report", Identity(**ANNA))  # type: ignore[misc]
    shown = {r.index: r for r in rows}
    assert set(erased[1:]) <= set(shown)  # every access to her message, erased ones included
    for index in erased[1:]:
        row = shown[index]
        assert row.erased and row.user is None and row.purpose_text is None
        assert row.cells()[2] == row.cells()[6] == "erased"
    assert ("police", "create") in {(r.org, r.action) for r in rows if not r.erased}
    csv = report_csv(rows)
    assert csv.count(",erased,") >= len(erased) - 1
