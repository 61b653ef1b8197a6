"""Crash durability: the hub is killed (SIGKILL) in bursts of sends, again and again.

One ``schakel hub serve`` on SQLite, then on PostgreSQL. Each round sends a burst of
envelopes from concurrent senders and kills the hub at a random moment of it (after a
random number of 201 answers, plus a random few milliseconds); the hub is started again
on the same database and the next round follows. After every restart:

* every message the hub answered 201 is stored ("accepted" means committed);
* every stored message has its ``create`` audit entry (no action without its entry),
  and the audit log has no gap;
* a tree head the restarted hub signs has the Merkle root of the stored leaves, and is
  consistent with the head the privacy officer's client kept from the round before.

The kill points come from a seeded random source; the seed is printed, and
``SCHAKEL_CRASH_SEED`` replays a run. ``SCHAKEL_CRASH_ROUNDS`` sets the number of kills
per database (5: each restart costs a Python start of the hub, about 2 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import time
from pathlib import Path

import aiohttp
from fresh_databases import Databases
from harness import (
    Replica,
    acting,
    audit_indexes,
    fetch,
    messages_without_create_entry,
    migrate,
    running_replicas,
    stored_message_ids,
)

from bench.hub_server import MESSAGES_PATH, access_token, directory_bundle, open_keys, seal_bodies
from protocol import merkle
from protocol.types import OrgId
from schakel import demo as demo_network

ROUNDS = int(os.environ.get("SCHAKEL_CRASH_ROUNDS") or 5)  # kills per database
BURST = 40
CONCURRENCY = 8
MAX_EXTRA_DELAY = 0.03  # seconds after the chosen answer before the kill
SENDERS = ("police", "ggd")
RECIPIENT = OrgId("coordinator")
CRASH_ORGS = {
    "police": ("member",),
    "ggd": ("member",),
    "coordinator": ("member", "coordinator"),
    "privacy": ("member", "network_privacy_officer"),
}


async def test_hub_killed_mid_burst_keeps_every_accepted_message_and_its_entry(
    databases: Databases, tmp_path: Path
) -> None:
    seed = int(os.environ.get("SCHAKEL_CRASH_SEED") or secrets.randbits(32))
    print(f"crash seed {seed} ({databases.kind}); SCHAKEL_CRASH_SEED={seed} replays it")
    rng = random.Random(seed)
    now = int(time.time())
    demo = demo_network.provision(tmp_path / "demo", now=now, orgs=CRASH_ORGS)
    url = await databases.new()
    migrate(url, demo)
    accepted: set[str] = set()
    cut_off = 0  # requests that got no answer because the hub died under them
    for number in range(ROUNDS + 1):
        with running_replicas(demo, url, [tmp_path / f"hub-{number}.log"]) as [hub]:
            if number == 0:
                await demo_network.bootstrap(demo, hub.url, now=now)
            else:
                await _assert_nothing_lost(demo, hub, url, accepted)
            if number < ROUNDS:
                got, lost = await _burst_and_kill(demo, hub, rng)
                assert got, "the hub answered no send before it was killed"
                accepted |= got
                cut_off += lost
    assert cut_off > 0, "no kill ever fell in the middle of a request"
    print(f"{len(accepted)} messages accepted, {cut_off} requests cut off by kills")


async def _burst_and_kill(
    demo: demo_network.DemoNetwork, hub: Replica, rng: random.Random
) -> tuple[set[str], int]:
    """Send a burst, SIGKILL the hub part-way; (ids answered 201, requests cut off)."""
    async with aiohttp.ClientSession() as session:
        tokens = {
            OrgId(org): await access_token(session, hub.url, open_keys(demo, org))
            for org in SENDERS
        }
        bundle = await directory_bundle(
            session, hub.url, tokens[OrgId(SENDERS[0])], demo, RECIPIENT
        )
    bodies = iter(seal_bodies(demo, tokens, bundle, BURST, now=int(time.time()), payload_bytes=512))
    kill_after = rng.randrange(1, BURST - CONCURRENCY)
    delay = rng.uniform(0, MAX_EXTRA_DELAY)
    answered: set[str] = set()
    cut_off = 0
    loop = asyncio.get_running_loop()

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal cut_off
        for headers, body in bodies:
            message_id = str(json.loads(body)["header"]["id"])
            try:
                async with session.post(hub.url + MESSAGES_PATH, data=body, headers=headers) as r:
                    # the status line alone counts: the hub sends 201 only after the commit
                    if r.status == 201:
                        answered.add(message_id)
                        if len(answered) == kill_after:
                            loop.call_later(delay, hub.kill)
                    answer = await r.read()
            except (aiohttp.ClientError, ConnectionError):
                cut_off += 1
                return  # the hub is gone
            assert r.status == 201, f"hub answered {r.status}: {answer[:300]!r}"

    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(CONCURRENCY)))
    with contextlib.suppress(ProcessLookupError):
        hub.kill()  # if the burst ended before the timer fired
    return answered, cut_off


async def _assert_nothing_lost(
    demo: demo_network.DemoNetwork, hub: Replica, url: str, accepted: set[str]
) -> None:
    stored = set(await stored_message_ids(url))
    missing = accepted - stored
    assert not missing, f"{len(missing)} messages answered 201 are not stored"
    assert await messages_without_create_entry(url) == []
    indexes = await audit_indexes(url)
    assert indexes == list(range(len(indexes))), "the audit log has a gap"

    async with acting(demo, "privacy", hub.url) as privacy:
        head = await privacy.hub.sign_audit_head()
        await privacy.log.check(head)  # signed, and consistent with last round's head
    rows = await fetch(
        url,
        'SELECT leaf_hash FROM audit_log WHERE "index" < :size ORDER BY "index"',
        {"size": head.size},
    )
    assert head.size > 0 and len(rows) == head.size
    assert head.root == merkle.root_hash([bytes(row[0]) for row in rows])
