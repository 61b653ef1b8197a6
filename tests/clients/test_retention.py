"""Retention at an organisation: cases erased by destroying their message keys.

On the real hub (``conftest.hub``): what a case held can not be read after it was
erased, from the state file, its WAL, or a backup of them taken before, with every key
the organisation still holds; other cases stay; a run killed half-way is finished by
the next one. The shared clock moves instead of waiting years.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from client_harness import MARKER, Hub
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clients import caseview, retention
from clients.cli.org import org as org_cli
from clients.errors import Erased, VerificationFailed
from clients.localbox import PayloadBox, keys_path
from clients.organisation import Organisation
from clients.retention import (
    DAY,
    DEFAULTS,
    CaseState,
    LocalRetention,
    RetentionInvalid,
    cases,
    plan,
    run,
    with_network_policy,
)
from clients.state import CaseMember, LocalState, OutboxRow
from protocol.certificate import create_root
from protocol.retention import create_retention_policy
from protocol.types import NetworkId

POLICY = LocalRetention(case_days=10, grace_days=5)  # erased 15 days after closing


def signal(text: str) -> dict[str, Any]:
    return {"schema": "schakel.signal/1", "person": {"bsn": "111222333"},
            "exploitation": "labour", "urgency": "high", "consent_to_share": True,
            "text": text}  # fmt: skip


def files(path: Path) -> bytes:
    """Every byte of a SQLite file and its WAL and shared memory."""
    return b"".join(p.read_bytes() for p in path.parent.glob(f"{path.name}*"))


def secret_of(state: LocalState, message_id: str) -> bytes:
    secret = state.message_keys.secret(message_id)
    assert secret is not None
    return secret


async def two_signals(hub: Hub) -> tuple[Organisation, str, str]:
    """GGD receives one signal now and one 10 days later: two cases of their own."""
    police, ggd = await hub.join("politie"), await hub.join("ggd")
    old = (await police.send_signal(signal(f"{MARKER} old"), ["ggd"])).id
    await ggd.receive()
    await hub.advance(10 * DAY)
    new = (await police.send_signal(signal(f"{MARKER} new"), ["ggd"])).id
    await ggd.receive()
    return ggd, old, new


async def test_an_erased_case_opens_from_no_file_and_no_backup(hub: Hub) -> None:
    ggd, old, new = await two_signals(hub)
    state = ggd.state
    home = hub.home("ggd")
    secret = secret_of(state, old)
    [(sealed,)] = state._db.execute("SELECT sealed FROM messages WHERE id = ?", (old,))
    backup = home / "backup"
    backup.mkdir()
    for part in home.glob("state.sqlite*"):  # the state file, its WAL, its shared memory
        shutil.copy(part, backup / part.name)
    assert MARKER.encode() not in files(home / "state.sqlite")  # never in clear at all

    assert [c.scope for c in plan(state, POLICY, now=ggd.now()).due] == []
    await hub.advance(6 * DAY)  # 16 days after the first signal, 6 after the second
    report = run(state, POLICY, now=ggd.now())
    assert [(c.scope, c.messages) for c in report.due] == [(f"msg:{old}", 1)]
    assert (report.open, report.waiting, report.unchecked) == (0, 1, False)
    assert report.next_due == state.message(new).received_at + 15 * DAY  # type: ignore[union-attr]

    with pytest.raises(Erased, match="erased when its case's retention period ended"):
        ggd.show(old)
    assert ggd.show(new).payload["text"] == f"{MARKER} new"  # the other case intact
    assert state.message(old) is None and state.erased(old) and state.seen(old)
    live = files(home / "state.sqlite") + files(keys_path(home / "state.sqlite"))
    assert secret not in live and bytes(sealed) not in live
    assert Path(f"{keys_path(home / 'state.sqlite')}-wal").stat().st_size == 0

    # The backup still holds the sealed message; nothing left here opens it.
    copy = sqlite3.connect(backup / "state.sqlite")
    [(kept, envelope)] = copy.execute(
        "SELECT sealed, envelope FROM messages WHERE id = ?", (old,)
    ).fetchall()
    assert bytes(kept) == bytes(sealed) and envelope is None  # no envelope for the KEM key
    with pytest.raises(Erased):
        ggd.payload_box.open_object(old, "message/signal", bytes(kept))
    with pytest.raises(VerificationFailed):  # nor the organisation's PayloadBox key alone
        ggd.payload_box.legacy().open_object(old, "message/signal", bytes(kept))
    assert MARKER.encode() not in files(backup / "state.sqlite")

    # Read again from the hub's start, an erased message is not taken again.
    again = await ggd.resync()
    assert old not in {m.id for m in again.messages}
    with pytest.raises(Erased):
        ggd.show(old)
    assert state.shredded()[0].scope == f"msg:{old}"


async def test_a_referral_case_is_kept_until_closed_then_goes_with_its_statuses(
    hub: Hub,
) -> None:
    police, shelter = await hub.join("politie"), await hub.join("opvang", org_type="shelter")
    referral = {"schema": "schakel.referral/1", "service": "shelter", "urgency": "urgent",
                "reason": f"{MARKER} reason", "shared_with_person": "told",
                "consent": {"share_with_recipient": True, "comensha_registration": False},
                "person": {"bsn": "111222333"}}  # fmt: skip
    sent = await police.send_referral(referral, "opvang")
    await shelter.receive()
    for code in ("accepted", "care_started"):
        await shelter.send_status(sent.id, code, {"schema": "schakel.status/1", "status": code,
                                                  "explanation": "why"})  # fmt: skip
    await police.receive()
    await hub.advance(30 * DAY)
    assert run(police.state, POLICY, now=police.now()).due == ()  # care goes on: open
    closing = {"schema": "schakel.status/1", "status": "closed", "explanation": "done"}
    await shelter.send_status(sent.id, "closed", closing)
    await police.receive()
    scope = police.state.message(police.state.received_about(sent.id)[0].id).scope  # type: ignore[union-attr]
    assert scope == f"msg:{sent.id}"  # the statuses are in the referral's case
    await hub.advance(14 * DAY)
    assert run(police.state, POLICY, now=police.now()).due == ()
    await hub.advance(2 * DAY)
    report = run(police.state, POLICY, now=police.now())
    assert [(c.scope, c.messages) for c in report.due] == [(scope, 4)]  # 1 sent, 3 received
    with pytest.raises(Erased):
        police.written(sent.id)
    assert police.state.received_about(sent.id) == [] and police.state.sent() == []
    # the shelter's own copy follows the shelter's own period (not run here)
    assert shelter.show(sent.id).payload["reason"] == f"{MARKER} reason"


async def test_a_run_killed_half_way_is_finished_by_the_next(hub: Hub) -> None:
    ggd, old, new = await two_signals(hub)
    await hub.advance(6 * DAY)
    state = ggd.state
    # killed after the erasure was noted and the keys destroyed, before the rows went
    ids = state.begin_shred(f"msg:{old}", closed_at=0, now=ggd.now())
    assert ids == (old,)
    state.message_keys.destroy(ids)
    ggd = await hub.restart("ggd")
    with pytest.raises(Erased):  # consistent meanwhile: gone, not damaged
        ggd.show(old)
    assert plan(ggd.state, POLICY, now=ggd.now()).due[0].scope == f"msg:{old}"
    report = run(ggd.state, POLICY, now=ggd.now())
    assert report.finished == (f"msg:{old}",) and report.due == ()
    assert ggd.state.message(old) is None and ggd.state.pending_shreds() == []
    assert ggd.show(new).payload["text"] == f"{MARKER} new"
    # killed even earlier (noted only): the next run destroys the keys too
    ggd.state.begin_shred(f"msg:{new}", closed_at=0, now=ggd.now())
    run(ggd.state, POLICY, now=ggd.now())
    assert ggd.state.message_keys.held([new]) == set() and ggd.state.message(new) is None


async def test_the_command_says_what_it_would_erase_then_erases_it(hub: Hub) -> None:
    ggd, old, _ = await two_signals(hub)
    await hub.advance(6 * DAY)
    received = ggd.state.message(old).received_at  # type: ignore[union-attr]
    await hub.orgs.pop("ggd").hub.close()
    ggd.state.close()
    env = hub.env("ggd")
    env.pop("SCHAKEL_PASSPHRASE")  # needs no keys: only local state
    args = ["retention", "--case-days", "700", "--grace-days", "30"]
    # (the real clock: the cases closed at the test clock's time, days from now)
    dry = CliRunner().invoke(org_cli, [*args, "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert "would erase: nothing" in dry.output and "2 closed and kept" in dry.output
    assert "custom (no statutory duty): a closed case is kept 700 days" in dry.output
    env["SCHAKEL_RETENTION_CASE_DAYS"] = "1"
    shutil.copy(hub.home("ggd") / "state.sqlite", hub.home("ggd") / "untouched.sqlite")
    dry = CliRunner().invoke(org_cli, ["retention", "--dry-run", "--json", "--grace-days", "0"],
                             env={**env, "SCHAKEL_RETENTION_KIND": "care"})  # fmt: skip
    assert dry.exit_code == 0, dry.output
    assert '"would_erase": []' in dry.output  # closed in the test clock's future
    bad = CliRunner().invoke(org_cli, ["retention", "--case-days", "0"], env=env)
    assert bad.exit_code == 2 and "--case-days" in bad.output
    bad = CliRunner().invoke(org_cli, ["retention", "--kind", "bakery"], env=env)
    assert bad.exit_code == 2 and "--kind" in bad.output
    plain = {k: v for k, v in env.items() if not k.startswith("SCHAKEL_RETENTION_")}
    unsaid = CliRunner().invoke(org_cli, ["retention"], env=plain)  # no period: nothing erased
    assert unsaid.exit_code == 2 and "say which period applies before erasing" in unsaid.output
    assumed = CliRunner().invoke(org_cli, ["retention", "--dry-run"], env=plain)
    assert assumed.exit_code == 0 and "general (no statutory duty)" in assumed.output
    with LocalState(hub.home("ggd") / "state.sqlite") as state:
        assert state.message(old) is not None  # dry runs changed nothing
        report = run(state, LocalRetention(1, 0), now=received + 2 * DAY)
        assert [c.scope for c in report.due] == [f"msg:{old}"]


def member(scope: str, id: str, kind: str, at: int, ref: str | None = None,
           status: str | None = None) -> CaseMember:  # fmt: skip
    return CaseMember(scope, id, kind, ref, status, at)


def test_when_a_case_is_closed() -> None:
    policy = LocalRetention(10, 5)
    signal_only = [member("msg:s", "s", "signal", 100)]
    open_referral = [member("case:c", "r1", "referral", 100),
                     member("case:c", "t1", "status", 200, "r1", "accepted")]  # fmt: skip
    closed = [*open_referral, member("case:c", "t2", "status", 300, "r1", "closed")]
    declined_and_replaced = [
        member("case:d", "r1", "referral", 100),
        member("case:d", "t1", "status", 150, "r1", "declined"),
        member("case:d", "r2", "referral", 160, "r1"),
    ]
    replaced_closed = [*declined_and_replaced,
                       member("case:d", "t2", "status", 400, "r2", "closed")]  # fmt: skip
    found = {c.scope: c for c in cases(signal_only + open_referral, policy)}
    assert found["msg:s"] == CaseState("msg:s", 1, 100, 100 + 15 * DAY)
    assert found["case:c"].closed_at is None and found["case:c"].due_at is None
    assert cases(closed, policy)[0].closed_at == 300
    assert cases(declined_and_replaced, policy)[0].closed_at is None  # the new one is open
    assert cases(replaced_closed, policy)[0].closed_at == 400
    declined = [member("case:e", "r1", "referral", 1),
                member("case:e", "t1", "status", 2, "r1", "declined")]  # fmt: skip
    assert cases(declined, policy)[0].closed_at == 2
    assert cases(closed, policy)[0].label == "c"


def test_periods_are_checked_and_the_network_hook_bounds_them() -> None:
    for bad in (0, -1, 100 * 366 + 1, True, 1.5):
        with pytest.raises(RetentionInvalid, match="case_days"):
            LocalRetention(case_days=bad)  # type: ignore[arg-type]
    with pytest.raises(RetentionInvalid, match="grace_days"):
        LocalRetention(10, -1)
    with pytest.raises(RetentionInvalid, match="unknown kind of organisation 'bakery'"):
        LocalRetention.for_kind("bakery")
    care = LocalRetention.for_kind("care")
    assert care.statutory and care.case_days >= 20 * 365
    assert LocalRetention.for_kind("police", case_days=30).kind == "custom"
    assert LocalRetention.for_kind("municipal", grace_days=7) == LocalRetention(730, 7, "municipal")
    # the network's period caps a period no law sets, never a statutory one
    assert with_network_policy(care, 365) == care
    assert with_network_policy(DEFAULTS["general"], 365).case_days == 365
    assert with_network_policy(DEFAULTS["general"], 5000) == DEFAULTS["general"]
    assert with_network_policy(DEFAULTS["general"], None) == DEFAULTS["general"]


def test_a_run_applies_the_kept_network_policy(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    root = create_root(key, NetworkId("testnet"), now=1, days=3650, serial=1)
    with LocalState(tmp_path / "state.sqlite") as state:
        state.store_message(message_id="m1", cursor=1, sender="ggd", kind="signal",
                            created=1, header={}, sealed=b"x", now=1)  # fmt: skip
        general = DEFAULTS["general"]
        assert retention.network_case_days(state) is None
        assert plan(state, general, now=400 * DAY).due == ()  # no network policy kept
        signed = create_retention_policy(
            key, root, number=1, issued=1, periods={"case_closed_days": 300}
        )
        assert state.keep_retention_policy(signed.to_wire(), signed.number)
        assert retention.network_case_days(state) == 300
        report = plan(state, general, now=400 * DAY)
        assert report.retention.case_days == 300 and len(report.due) == 1
        assert plan(state, DEFAULTS["care"], now=400 * DAY).due == ()  # statutory stands
        state.keep_retention_policy({"v": 1, "number": 2}, 2)  # a kept file edited by hand
        with pytest.raises(RetentionInvalid, match="network retention policy is unreadable"):
            plan(state, general, now=400 * DAY)


def test_a_message_key_file_is_its_own_private_file(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    with LocalState(path) as state:
        box = PayloadBox(b"k" * 32, state.message_keys)
        sealed = box.seal("m1", "sent", {"a": 1})
        assert box.open("m1", "sent", sealed) == {"a": 1}
        assert keys_path(path) == tmp_path / "state.keys.sqlite"
        assert (keys_path(path).stat().st_mode & 0o777) == 0o600
        assert state.message_keys.destroy(["m1"]) is True
        with pytest.raises(Erased):
            box.open("m1", "sent", sealed)
        with pytest.raises(VerificationFailed):
            PayloadBox(b"k" * 32).open("m1", "sent", sealed)
        # an outbox entry dropped (it never reached the hub) takes its key with it
        entry = box.seal("m2", "outbox/signal", {"b": 2})
        state.queue(OutboxRow("m2", "signal", ("ggd",), 1, 1, "refused", 1, 1, "no", entry))
        assert state.message_keys.held(["m2"]) == {"m2"}
        assert state.drop_from_outbox("m2") and not state.drop_from_outbox("m2")
        assert state.message_keys.held(["m2"]) == set()


async def test_a_coordinators_signal_joins_its_case_and_stays_while_the_case_is_open(
    hub: Hub,
) -> None:
    police = await hub.join("politie")
    regie = await hub.join("regie", "coordinator")
    await hub.join("opvang", org_type="shelter")
    sent = await police.send_signal(signal(f"{MARKER} case"), ["regie"])
    await regie.receive()
    assert regie.state.message(sent.id).scope == f"msg:{sent.id}"  # type: ignore[union-attr]
    [summary] = (await regie.hub.cases()).cases
    view = await regie.case_view(summary.case)
    assert regie.state.message(sent.id).scope == f"case:{summary.case}"  # type: ignore[union-attr]
    consent = {"share_with_recipient": True, "comensha_registration": False}
    referral = {"schema": "schakel.referral/1", "service": "shelter", "urgency": "urgent",
                "reason": "reason", "shared_with_person": "told", "consent": consent}  # fmt: skip
    await regie.send_referral(referral, "opvang", case=view.case.summary.case)
    await hub.advance(20 * DAY)
    report = run(regie.state, POLICY, now=regie.now())
    assert report.due == () and report.open == 1
    assert regie.show(sent.id).payload["text"] == f"{MARKER} case"


async def test_a_case_view_shows_an_erased_signal_as_erased(hub: Hub) -> None:
    police = await hub.join("politie")
    regie = await hub.join("regie", "coordinator")
    sent = await police.send_signal(signal(f"{MARKER} gone"), ["regie"])
    await regie.receive()
    [summary] = (await regie.hub.cases()).cases
    assert (await regie.case_view(summary.case)).contents[sent.id].state == caseview.OPENED
    await hub.advance(16 * DAY)
    assert [c.scope for c in run(regie.state, POLICY, now=regie.now()).due] == [
        f"case:{summary.case}"
    ]
    view = await regie.case_view(summary.case)  # the hub still serves it: not read again
    assert view.contents[sent.id].state == caseview.ERASED
    assert view.contents[sent.id].payload is None
    with pytest.raises(Erased):
        await regie.read_message(sent.id, from_hub=True)
