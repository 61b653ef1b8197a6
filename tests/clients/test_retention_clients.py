"""Retention as organisations see it: the authority signs the policy, clients check and keep
it, the sender learns of envelopes deleted before everyone had them, and the network privacy
officer erases a person (``schakel authority retention-policy``, ``schakel org
retention-policy``, ``schakel org sent``, ``schakel audit erase``)."""

from __future__ import annotations

import asyncio
import functools
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from client_harness import Hub, no_sleep
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clients.cli import common
from clients.cli.audit import audit as audit_group
from clients.cli.authority import authority as authority_group
from clients.cli.org import org
from clients.hub_client import HubClient
from hub.retention import RetentionJob
from hub.store import Store
from protocol.certificate import create_root
from protocol.encoding import canonical_json, loads_strict
from protocol.retention import DEFAULTS, RetentionPolicy, create_retention_policy
from protocol.types import NetworkId

DAY = 86_400
ANNA = {"bsn": "111222333"}
SIGNAL = {"schema": "schakel.signal/1", "person": ANNA, "exploitation": "labour",
          "urgency": "high", "consent_to_share": True}  # fmt: skip
ENV = {"SCHAKEL_WEAK_KDF": "1", "SCHAKEL_PASSPHRASE": "authority passphrase"}


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "HubClient", functools.partial(HubClient, sleep=no_sleep))


async def run(group: Any, hub: Hub, name: str, *args: str, input: str | None = None) -> Result:
    env = hub.env(name, SCHAKEL_PURPOSE="data-subject-request")
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, group, list(args), env=env, input=input)


async def publish(hub: Hub, policy: RetentionPolicy) -> None:
    async with HubClient(hub.url, network=hub.authority.network) as anonymous:
        assert await anonymous.put_retention_policy(policy) == policy.number


def test_the_authority_signs_numbered_retention_policies(tmp_path: Path) -> None:
    adir = tmp_path / "authority"

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(authority_group, ["--dir", str(adir), *args], env=ENV)

    assert invoke("init", "--network", "region-west").exit_code == 0
    first = invoke("--json", "retention-policy")
    assert first.exit_code == 0, first.output
    shown = json.loads(first.stdout)
    assert (shown["number"], shown["periods"]) == (1, DEFAULTS)
    second = json.loads(invoke("--json", "retention-policy", "--grace-days", "7").stdout)
    assert second["number"] == 2 and second["periods"]["ciphertext_grace_days"] == 7
    stored = RetentionPolicy.from_wire(
        loads_strict((adir / "retention-policy-2.json").read_bytes())
    )
    assert stored.number == 2 and stored.ciphertext_grace_days == 7
    too_short = invoke("retention-policy", "--access-log-days", "365")
    assert too_short.exit_code == 2 and "1827" in too_short.output
    upside_down = invoke("retention-policy", "--grace-days", "60", "--max-days", "30")
    assert upside_down.exit_code == 1 and upside_down.stderr.startswith("Error: retention policy")
    assert "Traceback" not in upside_down.output
    assert json.loads(invoke("--json", "retention-policy").stdout)["number"] == 3


async def test_a_client_keeps_the_newest_policy_that_verifies(hub: Hub) -> None:
    await hub.join("politie")
    result = await run(org, hub, "politie", "retention-policy", "--json")
    assert json.loads(result.stdout) == {"policy": None}
    now = hub.clock.seconds()
    first, _ = hub.authority.retention_policy({"ciphertext_grace_days": 3}, now=now)
    await publish(hub, first)
    result = await run(org, hub, "politie", "retention-policy")
    assert result.exit_code == 0, result.output
    assert "retention policy 1" in result.stdout and "ciphertext_grace_days    3" in result.stdout
    # A hub that serves a forged, newer policy (written behind its back) is not believed.
    forger = Ed25519PrivateKey.generate()
    fake_root = create_root(forger, NetworkId(hub.authority.network), now=now, days=9, serial=1)
    forged = create_retention_policy(forger, fake_root, number=9, issued=now)
    hub.sql("INSERT INTO retention_policies (number, issued, wire) VALUES (?, ?, ?)", 9, now,
            canonical_json(forged.to_wire()).decode())  # fmt: skip
    result = await run(org, hub, "politie", "retention-policy", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["policy"]["number"] == 1
    assert "does not verify" in result.stderr
    kept = hub.orgs["politie"].state.retention_policy()
    assert kept is not None and kept["number"] == 1


async def test_the_sender_is_told_of_an_envelope_deleted_unread(hub: Hub) -> None:
    police = await hub.join("politie")
    await hub.join("ggd")
    sent = await police.send_signal(SIGNAL, ["ggd"])
    periods = {"ciphertext_max_days": 7, "ciphertext_grace_days": 1}
    policy, _ = hub.authority.retention_policy(periods, now=hub.clock.seconds())
    await publish(hub, policy)
    await hub.advance(7 * DAY)
    store = Store(f"sqlite+aiosqlite:///{hub.database}")
    await store.start()
    try:
        done = await RetentionJob(store, hub.clock.seconds, interval=1).run_once()
    finally:
        await store.close()
    assert done.deleted["expired"] == 1
    result = await run(org, hub, "politie", "sent")
    assert result.exit_code == 0, result.output
    line = result.stdout.strip()
    assert line.startswith(f"DELETED  {sent.id}") and "maximum age" in line, line


async def test_the_network_privacy_officer_erases_a_person(hub: Hub) -> None:
    police = await hub.join("politie")
    ggd = await hub.join("ggd")
    await hub.join("privacy", "network_privacy_officer")
    await police.send_signal(SIGNAL, ["ggd"])
    await police.send_signal({**SIGNAL, "person": {"bsn": "123456782"}}, ["ggd"])
    await ggd.receive()  # fetched and acknowledged: the envelopes may go
    result = await run(audit_group, hub, "privacy", "erase", "--person", "-",
                       input=json.dumps(ANNA))  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "erased 1 ciphertext"
    assert (
        "kept 1 case: the case is still being handled; it goes by the policy's case "
        "periods" in lines
    )
    assert any(line.startswith("kept 1 access-log: access-log fields are kept") for line in lines)
    assert lines[-1].startswith("the erasure is access-log entry ")
    held = hub.rows("SELECT id, deleted_reason FROM messages ORDER BY cursor")
    assert [reason for _, reason in held] == ["erased", None]  # the other person's stays
    denied = await run(audit_group, hub, "politie", "erase", "--person", "-",
                       input=json.dumps(ANNA))  # fmt: skip
    assert denied.exit_code != 0 and "network privacy officer" in denied.output
    nobody = await run(audit_group, hub, "privacy", "erase")
    assert nobody.exit_code == 2 and "name the person" in nobody.output
