"""The retention policy at the hub, and the retention job (on SQLite and PostgreSQL).

The job deletes exactly what is due (at the end of each period, not a second before), a
dry run deletes nothing, a run cut off after its first batch leaves whole batches and the
next run finishes, and two replicas running it at once neither delete nor record a row
twice.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from hub.retention import RetentionJob, dry_run
from hub.store import Store
from protocol import merkle
from protocol.auditlog import AuditEntry
from protocol.certificate import create_root
from protocol.envelope import Envelope
from protocol.retention import RetentionPolicy, create_retention_policy
from protocol.types import NetworkId

if TYPE_CHECKING:
    from conftest import HubHarness, Party

DAY = 86_400
GRACE, MAX_AGE, CLOSED, IDLE = 2, 10, 30, 90
POLICY = "/v1/directory/retention-policy"


def signed_policy(hub: HubHarness, number: int = 1, **periods: int) -> RetentionPolicy:
    chosen = {
        "ciphertext_grace_days": GRACE,
        "ciphertext_max_days": MAX_AGE,
        "case_closed_days": CLOSED,
        "case_idle_days": IDLE,
        **periods,
    }
    return create_retention_policy(
        hub.authority.key, hub.authority.root, number=number, issued=hub.clock(), periods=chosen
    )


async def put_policy(hub: HubHarness, policy: RetentionPolicy | dict[str, Any]) -> Any:
    wire = policy.to_wire() if isinstance(policy, RetentionPolicy) else policy
    return await hub.client.put(POLICY, json={"policy": wire})


def job_of(hub: HubHarness, store: Store | None = None, **kw: Any) -> RetentionJob:
    return RetentionJob(store or hub.store, hub.clock, interval=3600, **kw)


async def retention_entries(hub: HubHarness) -> list[AuditEntry]:
    return [e for e in await hub.audit() if (e.reason or "").startswith("retention-")]


class Parties:
    """A police force signalling to a coordinator, and a shelter."""

    async def start(self, hub: HubHarness) -> Parties:
        self.hub = hub
        self.police = await hub.enrol("police", org_type="police")
        self.coordinator = await hub.enrol(
            "coordinator", ("member", "coordinator"), org_type="coordination"
        )
        self.coordinator.purpose = "case-coordination"
        self.shelter = await hub.enrol("shelter", org_type="shelter")
        return self

    async def relogin(self) -> None:
        for party in (self.police, self.coordinator, self.shelter):
            await self.hub.login(party)

    async def signal(self, *numbers: str, to: Party | None = None) -> Envelope:
        envelope = self.hub.envelope(
            self.police, [to or self.coordinator], pseudonyms=self.hub.pseudonyms(*numbers)
        )
        response = await self.hub.send(self.police, envelope)
        assert response.status == 201, await response.text()
        return envelope

    async def ack(self, party: Party, envelope: Envelope) -> None:
        response = await self.hub.client.post(
            f"/v1/messages/{envelope.header.id}/ack", headers=party.headers()
        )
        assert response.status == 204, await response.text()

    async def sent(self) -> dict[str, Any]:
        response = await self.hub.client.get("/v1/sent", headers=self.police.headers())
        assert response.status == 200, await response.text()
        return {item["id"]: item for item in (await response.json())["messages"]}

    async def inbox(self) -> set[str]:
        response = await self.hub.client.get("/v1/inbox", headers=self.coordinator.headers())
        assert response.status == 200, await response.text()
        return {item["envelope"]["header"]["id"] for item in (await response.json())["messages"]}


@pytest.fixture
async def parties(hub: HubHarness) -> Parties:
    return await Parties().start(hub)


# -- the policy at the hub -------------------------------------------------------------------


async def test_the_hub_holds_and_serves_the_newest_signed_policy(hub: HubHarness) -> None:
    response = await hub.client.get(POLICY)
    assert response.status == 200 and await response.json() == {"policy": None}
    first = signed_policy(hub)
    response = await put_policy(hub, first)
    assert response.status == 200, await response.text()
    assert await response.json() == {"number": 1}
    assert (await (await hub.client.get(POLICY)).json())["policy"] == first.to_wire()
    await hub.problem(await put_policy(hub, first), 409, "conflict")  # not higher
    second = signed_policy(hub, number=2, ciphertext_grace_days=5)
    assert (await put_policy(hub, second)).status == 200
    await hub.problem(await put_policy(hub, first), 409, "conflict")  # older
    assert (await (await hub.client.get(POLICY)).json())["policy"] == second.to_wire()
    entries = await hub.audit()
    created = [e for e in entries if e.action == "create" and e.object_type == "directory"]
    assert [e.outcome for e in created[-4:]] == ["allowed", "denied", "allowed", "denied"]


async def test_a_forged_or_foreign_policy_is_refused(hub: HubHarness) -> None:
    foreign = hub.foreign_authority()
    theirs = create_retention_policy(foreign.key, foreign.root, number=5, issued=hub.clock())
    body = await hub.problem(await put_policy(hub, theirs), 422, "invalid-credential")
    assert "not signed by the network root" in body["detail"]
    other = create_root(hub.authority.key, NetworkId("othernet"), now=hub.clock(), days=9, serial=1)
    elsewhere = create_retention_policy(hub.authority.key, other, number=5, issued=hub.clock())
    await hub.problem(await put_policy(hub, elsewhere), 422, "invalid-credential")
    wire = signed_policy(hub).to_wire()
    await hub.problem(await put_policy(hub, {**wire, "access_log_days": 30}), 400, "malformed")
    await hub.problem(await put_policy(hub, {**wire, "forever": True}), 400, "malformed")
    response = await hub.client.put(POLICY, json={"policy": wire, "more": 1})
    await hub.problem(response, 400, "malformed")
    assert (await (await hub.client.get(POLICY)).json()) == {"policy": None}


# -- the job ---------------------------------------------------------------------------------


async def test_without_a_policy_nothing_is_deleted(hub: HubHarness, parties: Parties) -> None:
    signal = await parties.signal("0611111111")
    await parties.ack(parties.coordinator, signal)
    hub.clock.advance(20 * 365 * DAY)
    before = await hub.counts()
    done = await job_of(hub).run_once()
    assert done.policy is None and done.batches == 0
    assert await hub.counts() == before
    assert await dry_run(hub.store, hub.clock()) is None


async def test_envelopes_go_at_the_end_of_their_period_and_the_sender_is_told(
    hub: HubHarness, parties: Parties
) -> None:
    acked = await parties.signal("0611111111")
    waiting = await parties.signal("0622222222")
    t0 = hub.clock()
    hub.clock.advance(100)
    await parties.ack(parties.coordinator, acked)
    assert (await put_policy(hub, signed_policy(hub))).status == 200
    job = job_of(hub)

    hub.clock.now = t0 + 100 + GRACE * DAY - 1  # a second before the grace period ends
    before = await hub.counts()
    policy, due = await dry_run(hub.store, hub.clock()) or (None, {})
    assert policy is not None and due["acknowledged"].count == 0 and due["expired"].count == 0
    assert (await job.run_once()).deleted == {
        "acknowledged": 0, "expired": 0, "cases": 0, "access-log": 0,
    }  # fmt: skip
    assert await hub.counts() == before

    hub.clock.advance(1)
    policy, due = await dry_run(hub.store, hub.clock()) or (None, {})
    assert (due["acknowledged"].count, due["acknowledged"].oldest) == (1, t0)
    assert await hub.counts() == before  # a dry run deletes nothing
    assert (await job.run_once()).deleted["acknowledged"] == 1
    await parties.relogin()
    sent = await parties.sent()
    assert sent[acked.header.id]["deleted"] == {"at": hub.clock(), "reason": "acknowledged"}
    assert sent[waiting.header.id]["deleted"] is None
    assert await parties.inbox() == {waiting.header.id}
    response = await hub.client.get(
        f"/v1/messages/{acked.header.id}", headers=parties.coordinator.headers()
    )
    await hub.problem(response, 404, "not-found")
    (entry,) = await retention_entries(hub)
    assert (entry.action, entry.object_type, entry.object_ids) == (
        "delete", "message", (acked.header.id,),
    )  # fmt: skip
    assert (entry.org, entry.user, entry.pseudonyms, entry.reason) == (
        None, None, (), "retention-acknowledged",
    )  # fmt: skip

    hub.clock.now = t0 + MAX_AGE * DAY - 1
    assert (await job.run_once()).deleted["expired"] == 0
    hub.clock.now = t0 + MAX_AGE * DAY
    _, due = await dry_run(hub.store, hub.clock()) or (None, {})
    assert due["expired"].count == 1 and due["acknowledged"].count == 0
    assert (await job.run_once()).deleted["expired"] == 1
    await parties.relogin()
    sent = await parties.sent()
    assert sent[waiting.header.id]["deleted"] == {"at": hub.clock(), "reason": "expired"}
    assert await parties.inbox() == set()
    envelopes = await hub.store.run_read(
        lambda conn: conn.execute(sa.text("SELECT envelope FROM messages")).scalars().all()
    )
    assert envelopes == ["", ""]
    assert job.stats.deleted == {"ciphertext": 2, "case": 0, "access-log": 0}
    assert job.stats.runs == 4


async def _close_case(hub: HubHarness, parties: Parties, case: str) -> None:
    referral = hub.envelope(parties.coordinator, [parties.shelter], kind="referral", case=case)
    assert (await hub.send(parties.coordinator, referral)).status == 201
    status = hub.envelope(
        parties.coordinator, [parties.shelter], kind="status", status="closed",
        ref=referral.header.id,
    )  # fmt: skip
    assert (await hub.send(parties.coordinator, status)).status == 201


async def _cases(hub: HubHarness) -> dict[str, str]:
    def read(conn: sa.Connection) -> dict[str, str]:
        rows = conn.execute(sa.text("SELECT ref, state FROM cases WHERE merged_into IS NULL"))
        return {row.ref: row.state for row in rows}

    return await hub.store.run_read(read)


async def _case_of(hub: HubHarness, message_id: str) -> str:
    def read(conn: sa.Connection) -> str:
        return str(
            conn.execute(
                sa.text(
                    'SELECT cm."case" FROM case_members cm JOIN messages m'
                    " ON m.cursor = cm.cursor WHERE m.id = :id"
                ),
                {"id": message_id},
            ).scalar_one()
        )

    return await hub.store.run_read(read)


async def test_closed_and_idle_cases_go_with_their_pseudonyms(
    hub: HubHarness, parties: Parties
) -> None:
    closed = await _case_of(hub, (await parties.signal("0611111111")).header.id)
    idle = await _case_of(hub, (await parties.signal("0622222222")).header.id)
    await _close_case(hub, parties, closed)
    closed_at = hub.clock()
    hub.clock.advance(DAY)
    await parties.relogin()
    late = await parties.signal("0633333333")
    later = await _case_of(hub, late.header.id)
    assert await _cases(hub) == {closed: "closed", idle: "new", later: "new"}
    assert (await put_policy(hub, signed_policy(hub, ciphertext_max_days=3650))).status == 200
    job = job_of(hub)

    hub.clock.now = closed_at + CLOSED * DAY - 1
    assert (await job.run_once()).deleted["cases"] == 0
    hub.clock.now = closed_at + CLOSED * DAY
    _, due = await dry_run(hub.store, hub.clock()) or (None, {})
    assert due["cases"].count == 1
    assert (await job.run_once()).deleted["cases"] == 1
    assert set(await _cases(hub)) == {idle, later}
    hub.clock.now = closed_at + IDLE * DAY  # the idle case's signal came with the closed one's
    assert (await job.run_once()).deleted["cases"] == 1
    assert set(await _cases(hub)) == {later}
    counts = await hub.counts()
    assert counts["case_pseudonyms"] == counts["message_pseudonyms"] == 1  # the later case's
    assert counts["referrals"] == counts["referral_updates"] == 0
    entries = [e for e in await retention_entries(hub) if e.object_type == "case"]
    assert [e.object_ids for e in entries] == [(closed,), (idle,)]
    await parties.relogin()
    reasons = {i["id"]: (i["deleted"] or {}).get("reason") for i in (await parties.sent()).values()}
    assert reasons.pop(late.header.id) is None
    assert list(reasons.values()) == ["case-ended", "case-ended"]


class Cut(Exception):
    pass


class CutAfterFirstBatch(RetentionJob):
    def after_batch(self, phase: str, count: int) -> None:
        raise Cut


async def test_a_run_cut_off_half_way_leaves_whole_batches_and_the_next_finishes(
    hub: HubHarness, parties: Parties
) -> None:
    signals = [await parties.signal(f"06{n:08d}") for n in range(5)]
    for signal in signals:
        await parties.ack(parties.coordinator, signal)
    assert (await put_policy(hub, signed_policy(hub))).status == 200
    hub.clock.advance(GRACE * DAY)
    with pytest.raises(Cut):
        await CutAfterFirstBatch(hub.store, hub.clock, interval=3600, batch=2).run_once()
    first = await retention_entries(hub)  # hub.audit() also checks the tree is whole
    assert len(first) == 1 and len(first[0].object_ids) == 2
    await parties.relogin()
    sent = await parties.sent()
    assert sum(item["deleted"] is not None for item in sent.values()) == 2
    done = await job_of(hub, batch=2).run_once()
    assert done.deleted["acknowledged"] == 3 and done.batches == 2
    entries = await retention_entries(hub)
    ids = [i for e in entries for i in e.object_ids]
    assert sorted(ids) == sorted(s.header.id for s in signals) and len(entries) == 3


@pytest.mark.parametrize("batch", [1, 3])
async def test_two_replicas_at_once_delete_and_record_each_row_once(
    hub: HubHarness, parties: Parties, batch: int
) -> None:
    signals = [await parties.signal(f"06{n:08d}") for n in range(12)]
    for signal in signals:
        await parties.ack(parties.coordinator, signal)
    assert (await put_policy(hub, signed_policy(hub))).status == 200
    hub.clock.advance(GRACE * DAY)
    other = Store(hub.config.database_url)
    await other.start()
    try:
        one, two = job_of(hub, batch=batch), job_of(hub, other, batch=batch)
        first, second = await asyncio.gather(one.run_once(), two.run_once())
    finally:
        await other.close()
    assert first.deleted["acknowledged"] + second.deleted["acknowledged"] == 12
    assert first.batches + second.batches == len(await retention_entries(hub))
    ids = [i for e in await retention_entries(hub) for i in e.object_ids]
    assert sorted(ids) == sorted(s.header.id for s in signals)  # each once
    assert await job_of(hub).run_once() == type(first)(policy=1)  # nothing left


# -- erasure on request ------------------------------------------------------------------------

ERASURES = "/v1/audit/erasures"


async def _rows_about(hub: HubHarness, case: str) -> dict[str, Any]:
    """Everything the hub holds of one case: its rows, pseudonyms and envelopes."""

    def read(conn: sa.Connection) -> dict[str, Any]:
        q = {"case": case}
        cursors = 'SELECT cursor FROM case_members WHERE "case" = :case'
        return {
            "case": conn.execute(sa.text("SELECT * FROM cases WHERE ref = :case"), q).all(),
            "pseudonyms": sorted(
                conn.execute(
                    sa.text('SELECT pseudonym FROM case_pseudonyms WHERE "case" = :case'), q
                ).scalars()
            ),
            "message_pseudonyms": sorted(
                conn.execute(
                    sa.text(
                        f"SELECT pseudonym FROM message_pseudonyms WHERE cursor IN ({cursors})"
                    ),
                    q,
                ).scalars()
            ),
            "envelopes": sorted(
                conn.execute(
                    sa.text(
                        f"SELECT id, envelope, deleted_at FROM messages WHERE cursor IN ({cursors})"
                    ),
                    q,
                ).all()
            ),
        }

    return await hub.store.run_read(read)


async def test_an_erasure_touches_the_person_only(hub: HubHarness, parties: Parties) -> None:
    officer = await hub.enrol("toezicht", ("member", "network_privacy_officer"))
    officer.purpose = "data-subject-request"
    # Anna: an open case (one signal acknowledged, one not), a closed case, and a case she
    # shares with a pseudonym nobody named. Bob: a case of his own, signalled by the same
    # police force to the same coordinator.
    open_signal = await parties.signal("0611111111")
    await parties.ack(parties.coordinator, open_signal)
    unread = await parties.signal("0611111111", "0622222222")
    anna_open = await _case_of(hub, open_signal.header.id)
    anna_closed = await _case_of(hub, (await parties.signal("0633333333")).header.id)
    await _close_case(hub, parties, anna_closed)
    shared = await _case_of(hub, (await parties.signal("0644444444", "0699999999")).header.id)
    bob_signal = await parties.signal("0655555555")
    await parties.ack(parties.coordinator, bob_signal)
    bob = await _case_of(hub, bob_signal.header.id)
    assert len({anna_open, anna_closed, shared, bob}) == 4
    bob_before, shared_before = await _rows_about(hub, bob), await _rows_about(hub, shared)

    anna = hub.pseudonyms("0611111111", "0622222222", "0633333333", "0644444444")
    body = {"pseudonyms": list(anna)}
    response = await hub.client.post(ERASURES, json=body, headers=officer.headers())
    assert response.status == 200, await response.text()
    report = await response.json()
    erased = {i["kind"]: i["count"] for i in report["erased"]}
    kept = {(i["kind"], i["reason"]): i["count"] for i in report["kept"]}
    assert erased["case"] == 1 and erased["pseudonym"] == 2  # case and message pseudonym rows
    # the acknowledged signal; the closed case's signal, referral and status update
    assert erased["ciphertext"] == 1 + 3
    about_anna = [e for e in await hub.audit() if set(e.pseudonyms) & set(anna)]
    assert about_anna  # the creates of her signals, within the access-log period: kept
    assert kept == {
        ("case", "case-open"): 1,
        ("case", "shared-case"): 1,
        ("ciphertext", "not-acknowledged"): 1,
        ("access-log", "access-log-period"): len(about_anna),
    }
    assert "access-log" not in erased
    assert await _rows_about(hub, bob) == bob_before
    assert await _rows_about(hub, shared) == shared_before
    assert set(await _cases(hub)) == {anna_open, shared, bob}
    still = await _rows_about(hub, anna_open)
    assert [(row.id, row.deleted_at is None) for row in still["envelopes"]] == sorted(
        [(open_signal.header.id, False), (unread.header.id, True)]
    )
    (entry,) = [e for e in await hub.audit() if e.reason == "erasure-request"]
    assert entry.index == report["entry"]
    assert (entry.action, entry.object_type, entry.org, entry.pseudonyms) == (
        "delete", "case", "toezicht", (),
    )  # fmt: skip
    assert set(entry.object_ids) == {anna_open, anna_closed, shared}


async def test_only_the_network_privacy_officer_erases(hub: HubHarness, parties: Parties) -> None:
    body = {"pseudonyms": list(hub.pseudonyms("0611111111"))}
    parties.coordinator.purpose = "data-subject-request"
    response = await hub.client.post(ERASURES, json=body, headers=parties.coordinator.headers())
    await hub.problem(response, 404, "not-found")
    officer = await hub.enrol("toezicht", ("member", "network_privacy_officer"))
    officer.purpose = "data-subject-request"
    for bad in ({"pseudonyms": []}, {"pseudonyms": ["nope"]}, {"people": []}, [1]):
        response = await hub.client.post(ERASURES, json=bad, headers=officer.headers())
        await hub.problem(response, 400, "malformed")
    response = await hub.client.post(
        ERASURES, json=body, headers=officer.headers(**{"Schakel-Purpose": None})
    )
    await hub.problem(response, 400, "malformed")
    denied = [e for e in await hub.audit() if e.action == "delete"]
    assert [e.outcome for e in denied] == ["denied"] * 6


# -- schakel hub retention -------------------------------------------------------------------


async def _hub_cli(*args: str) -> Any:
    from click.testing import CliRunner

    from hub.cli import hub as hub_cli

    return await asyncio.to_thread(CliRunner().invoke, hub_cli, ["retention", *args])


async def test_the_retention_command_says_what_would_go_then_deletes_it(
    hub: HubHarness, parties: Parties, tmp_path: Path
) -> None:
    url = ["--database-url", hub.config.database_url]
    refused = await _hub_cli(*url, "--dry-run")
    assert refused.exit_code == 1 and "holds no retention policy" in refused.output
    signal = await parties.signal("0611111111")
    await parties.ack(parties.coordinator, signal)
    # The command runs on the wall clock, past the test clock: only the envelope is due.
    policy = signed_policy(
        hub, ciphertext_grace_days=0, ciphertext_max_days=3650,
        case_closed_days=7300, case_idle_days=7300,
    )  # fmt: skip
    assert (await put_policy(hub, policy)).status == 200
    before = await hub.counts()
    planned = await _hub_cli(*url, "--dry-run", "--json")
    assert planned.exit_code == 0, planned.output
    due = json.loads(planned.stdout)["due"]
    assert due["acknowledged"]["count"] == 1 and due["cases"]["count"] == 0
    assert await hub.counts() == before
    text = await _hub_cli(*url, "--dry-run")
    assert text.stdout.startswith("retention policy 1; would delete now (nothing deleted):")
    done = await _hub_cli(*url, "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["deleted"]["acknowledged"] == 1
    assert len(await retention_entries(hub)) == 1
    again = await _hub_cli(*url)
    assert again.exit_code == 0 and "in 0 batches" in again.stdout
    bad = await _hub_cli("--database-url", "mysql://nowhere/x")
    assert bad.exit_code == 1 and bad.output.startswith("Error: database_url must start")
    missing = tmp_path / "mistyped" / "hub.db"
    nowhere = await _hub_cli("--dry-run", "--database-url", f"sqlite+aiosqlite:///{missing}")
    assert nowhere.exit_code == 1 and f"no database at {missing}" in nowhere.output
    assert not missing.parent.exists()  # nothing created where the mistyped path points


# -- access-log fields -------------------------------------------------------------------------

ACCESS_LOG_DAYS = 1827


async def test_access_log_fields_go_after_the_access_log_period_and_every_proof_stays(
    hub: HubHarness, parties: Parties
) -> None:
    await parties.signal("0611111111")
    hub.clock.advance(10)
    await parties.signal("0622222222")
    assert (await put_policy(hub, signed_policy(hub))).status == 200
    entries = await hub.audit()
    newest = max(e.time for e in entries)
    head = await hub.heads.sign_now()
    assert head is not None
    before = await hub.store.inclusion(hub.config.network, 1, size=head.size, viewer=None)
    job = job_of(hub)
    hub.clock.now = newest + ACCESS_LOG_DAYS * DAY - 1
    _, due = await dry_run(hub.store, hub.clock()) or (None, {})
    held_then = due["access-log"].count
    assert 0 < held_then < len(entries)  # the newest entries are a second short of due
    done = await job.run_once()
    assert done.deleted["access-log"] == held_then
    hub.clock.advance(1)
    done = await job.run_once()
    after = await hub.audit()  # the leaves still rebuild the stored root
    erased = [e for e in after if e.erased]
    assert len(erased) == len(entries)  # every entry before the job's own
    assert all(e.user is None and e.pseudonyms == () for e in erased)
    assert {e.erasure.reason for e in erased if e.erasure} == {"retention"}
    recorded = [e for e in after if e.reason == "retention-access-log"]
    assert len(recorded) == 2 and all(e.object_type == "audit" for e in recorded)
    assert {e.erasure.entry for e in erased if e.erasure} == {r.index for r in recorded}
    # a proof issued before the erasure still verifies against the head signed before it
    now = await hub.store.inclusion(hub.config.network, 1, size=head.size, viewer=None)
    assert now.proof == before.proof and now.entry is not None and now.entry.erased
    assert before.entry is not None and now.entry.leaf() == before.entry.leaf()
    merkle.verify_inclusion(now.entry.leaf(), 1, head.size, before.proof, head.root)
    assert job.stats.deleted["access-log"] == len(entries)


async def test_an_erasure_takes_access_log_fields_past_the_period_only(
    hub: HubHarness, parties: Parties
) -> None:
    await parties.signal("0611111111")
    old = [e.index for e in await hub.audit() if e.pseudonyms]
    hub.clock.advance(ACCESS_LOG_DAYS * DAY)  # five years on: new certificates all round
    police = await hub.enrol("police-now", org_type="police")
    shelter = await hub.enrol("shelter-now", org_type="shelter")
    officer = await hub.enrol("toezicht", ("member", "network_privacy_officer"))
    officer.purpose = "data-subject-request"
    signal = hub.envelope(police, [shelter], pseudonyms=hub.pseudonyms("0611111111"))
    assert (await hub.send(police, signal)).status == 201
    recent = [e.index for e in await hub.audit() if e.pseudonyms and e.index not in old]
    assert old and recent
    body = {"pseudonyms": list(hub.pseudonyms("0611111111"))}
    response = await hub.client.post(ERASURES, json=body, headers=officer.headers())
    assert response.status == 200, await response.text()
    report = await response.json()
    assert {"kind": "access-log", "count": len(old)} in report["erased"]
    kept = {"kind": "access-log", "reason": "access-log-period", "count": len(recent)}
    assert kept in report["kept"]
    by_index = {e.index: e for e in await hub.audit()}
    assert all(by_index[i].erased for i in old) and not any(by_index[i].erased for i in recent)
    assert {by_index[i].erasure.entry for i in old if by_index[i].erasure} == {report["entry"]}


async def test_the_metrics_count_what_the_hubs_own_job_deleted(
    hub: HubHarness, parties: Parties
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from hub.http.common import SERVICES

    async def scrape() -> dict[tuple[str, str], float]:
        response = await hub.client.get("/metrics")
        assert response.status == 200
        found = {}
        for family in text_string_to_metric_families(await response.text()):
            for sample in family.samples:
                found[sample.name, sample.labels.get("kind", "")] = sample.value
        return found

    before = await scrape()
    assert before["schakel_retention_runs_total", ""] == 0
    assert ("schakel_retention_last_run_timestamp_seconds", "") not in before
    signal = await parties.signal("0611111111")
    await parties.ack(parties.coordinator, signal)
    assert (await put_policy(hub, signed_policy(hub))).status == 200
    hub.clock.advance(GRACE * DAY)
    job = hub.client.server.app[SERVICES].retention  # type: ignore[union-attr]
    assert job is not None
    assert (await job.tick()) is not None  # the first tick runs at once
    assert (await job.tick()) is None  # the next waits for the interval
    after = await scrape()
    assert after["schakel_retention_deleted_rows_total", "ciphertext"] == 1
    assert after["schakel_retention_deleted_rows_total", "case"] == 0
    assert after["schakel_retention_runs_total", ""] == 1
    assert after["schakel_retention_last_run_timestamp_seconds", ""] == hub.clock()
    assert after["schakel_retention_last_run_duration_seconds", ""] >= 0
