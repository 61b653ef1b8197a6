"""The caches of the accept path: none may ever answer for something that changed.

``TrustCache`` keeps the parsed root, loaded CRLs and verified certificates;
the writer keeps the audit tree (size and right frontier) in memory. Each test here changes the
thing a cache holds (a revocation, the clock, a newer certificate, another
replica, another writer, a failed batch) and checks the very next decision.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer

from hub import directory
from hub.accesslog import recording
from hub.accesslog.recording import Event
from hub.app import make_app
from hub.directory import TrustCache
from hub.errors import Unavailable
from hub.http.common import SERVICES
from hub.store import AuditQuery, CrlRecord, Store, Tx
from hub.store.tree import Frontier
from hub.tokens import generate_signing_key
from hub.writer import CommitFailed
from protocol import merkle
from protocol.certificate import Certificate, RevocationList, create_crl
from protocol.errors import RevokedError, VerificationError

if TYPE_CHECKING:
    from conftest import HubHarness, Party

DAY = 86_400


class Recording:
    """Wraps a function of ``hub.directory`` and records each call's first argument."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
        self.calls: list[Any] = []
        real: Callable[..., Any] = getattr(directory, name)

        def record(first: Any, *args: Any, **kwargs: Any) -> Any:
            self.calls.append(first)
            return real(first, *args, **kwargs)

        monkeypatch.setattr(directory, name, record)


def _record(crl: RevocationList) -> CrlRecord:
    return CrlRecord(crl.number, crl.der, crl.this_update, crl.next_update)


def _cache(hub: HubHarness) -> TrustCache:
    return hub.client.server.app[SERVICES].trust_cache  # type: ignore[union-attr]


async def _pair(hub: HubHarness) -> tuple[Party, Party]:
    return await hub.enrol("police"), await hub.enrol("ggd")


# -- through the API --------------------------------------------------------------------


async def test_a_revocation_after_caching_takes_effect_on_the_very_next_request(
    hub: HubHarness,
) -> None:
    police, ggd = await _pair(hub)
    assert (await hub.send(police, hub.envelope(police, [ggd]))).status == 201
    assert _cache(hub).sizes[0] >= 2  # both certificates verified and held
    assert (await hub.put_crl(hub.authority.crl([ggd.cert]))).status == 200
    await hub.problem(await hub.send(police, hub.envelope(police, [ggd])), 422, "unknown-recipient")
    assert (await hub.put_crl(hub.authority.crl([ggd.cert, police.cert]))).status == 200
    await hub.problem(await hub.send(police, hub.envelope(police, [ggd])), 401, "unauthorized")
    assert (await hub.counts())["messages"] == 1


async def test_a_newer_certificate_replaces_the_cached_one(hub: HubHarness) -> None:
    police, ggd = await _pair(hub)
    assert (await hub.send(police, hub.envelope(police, [ggd]))).status == 201
    hub.clock.advance(10)
    newer = hub.authority.certify("police", police.key, now=hub.clock())
    assert (await hub.upload_certificate(newer)).status == 201
    # The token names the replaced certificate too: refused at once, cache or not.
    await hub.problem(await hub.send(police, hub.envelope(police, [ggd])), 401, "unauthorized")
    await hub.login(police)
    stale = hub.envelope(police, [ggd])  # still names the cached, replaced certificate
    await hub.problem(await hub.send(police, stale), 422, "invalid-envelope")
    renewed = replace(police, cert=newer)
    assert (await hub.send(renewed, hub.envelope(renewed, [ggd]))).status == 201


async def _until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Wait (real time: a notice crosses PostgreSQL) until ``condition`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition():
        assert loop.time() < deadline, "no directory notice arrived"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("database_kind", ["postgresql"])
async def test_a_revocation_through_another_replica_takes_effect_when_its_notice_arrives(
    hub: HubHarness,
) -> None:
    """Two hubs on one database, each holding the directory in memory: a revocation through
    one is in force on the other once PostgreSQL's NOTIFY reached it (replicas only exist
    on PostgreSQL; on SQLite there is one hub per database file)."""
    police, ggd = await _pair(hub)
    other_app = make_app(hub.config, token_key_pem=generate_signing_key(), clock=hub.clock)
    async with TestClient(TestServer(other_app)) as other_client:
        other = replace(hub, client=other_client)
        other_cache = _cache(other)
        await _until(lambda: other_app[SERVICES].notifier.listening)
        at_other = replace(police, token=None)
        await other.login(at_other)
        assert (await other.send(at_other, other.envelope(at_other, [ggd]))).status == 201
        loads = other_cache.loads
        assert (await other.send(at_other, other.envelope(at_other, [ggd]))).status == 201
        assert other_cache.loads == loads  # held: not read per request
        changes = other_cache.changes
        assert (await hub.put_crl(hub.authority.crl([ggd.cert]))).status == 200  # replica one
        await _until(lambda: other_cache.changes > changes)
        response = await other.send(at_other, other.envelope(at_other, [ggd]))
        await other.problem(response, 422, "unknown-recipient")
        changes = other_cache.changes
        assert (await hub.put_crl(hub.authority.crl([ggd.cert, police.cert]))).status == 200
        await _until(lambda: other_cache.changes > changes)
        response = await other.send(at_other, other.envelope(at_other, [ggd]))
        await other.problem(response, 401, "unauthorized")
    await hub.audit()  # both replicas appended to one gap-free tree with the right root


async def test_the_directory_is_read_once_not_per_request(hub: HubHarness) -> None:
    police, ggd = await _pair(hub)
    cache = _cache(hub)
    assert (await hub.send(police, hub.envelope(police, [ggd]))).status == 201
    loads = cache.loads
    for _ in range(5):
        assert (await hub.send(police, hub.envelope(police, [ggd]))).status == 201
    assert cache.loads == loads
    # A change through this replica is read again before its answer returns.
    assert (await hub.upload_bundle(ggd, ggd.bundle)).status == 200
    assert (await hub.send(police, hub.envelope(police, [ggd]))).status == 201
    assert cache.loads == loads + 1


async def test_a_deaf_replica_reads_the_directory_for_every_request(hub: HubHarness) -> None:
    """While the notifier does not listen, no notice would tell of a change elsewhere."""
    police, _ = await _pair(hub)
    listening = [True]
    cache = TrustCache(hub.authority.root.der, listening=lambda: listening[0])
    store = hub.client.server.app[SERVICES].store  # type: ignore[union-attr]
    now = hub.clock()
    await directory.trust_at(store, cache, now, orgs=[police.org])
    await directory.trust_at(store, cache, now, orgs=[police.org])
    assert cache.loads == 1
    listening[0] = False
    for _ in range(3):
        await directory.trust_at(store, cache, now, orgs=[police.org])
    assert cache.loads == 4
    listening[0] = True
    await directory.trust_at(store, cache, now, orgs=[police.org])
    await directory.trust_at(store, cache, now, orgs=[police.org])
    assert cache.loads == 5


async def test_the_held_directory_is_read_again_after_max_age_and_for_an_earlier_now(
    hub: HubHarness,
) -> None:
    police, _ = await _pair(hub)
    ticks = [0.0]
    cache = TrustCache(hub.authority.root.der, max_age=30, monotonic=lambda: ticks[0])
    store = hub.client.server.app[SERVICES].store  # type: ignore[union-attr]
    now = hub.clock()
    _, seen = await directory.trust_at(store, cache, now, orgs=[police.org])
    assert set(seen.organisations) == {police.org}
    ticks[0] = 29.9
    await directory.trust_at(store, cache, now, orgs=[police.org])
    assert cache.loads == 1
    ticks[0] = 30.0
    await directory.trust_at(store, cache, now, orgs=[police.org])
    assert cache.loads == 2
    await directory.trust_at(store, cache, now - 1, orgs=[police.org])  # a clock set back
    assert cache.loads == 3


async def test_concurrent_requests_share_one_read_of_the_directory(hub: HubHarness) -> None:
    police, _ = await _pair(hub)
    cache = TrustCache(hub.authority.root.der)
    store = hub.client.server.app[SERVICES].store  # type: ignore[union-attr]
    now = hub.clock()
    await asyncio.gather(
        *(directory.trust_at(store, cache, now, orgs=[police.org]) for _ in range(20))
    )
    assert cache.loads == 1
    cache.changed()
    await asyncio.gather(
        *(directory.trust_at(store, cache, now, orgs=[police.org]) for _ in range(20))
    )
    assert cache.loads == 2


# -- the trust cache itself -------------------------------------------------------------


def test_a_cached_certificate_is_checked_against_now_on_every_use(
    hub: HubHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    verified = Recording(monkeypatch, "verify_certificate")
    cache = TrustCache(hub.authority.root.der)
    cert = hub.authority.enrol("ggd").cert
    now = hub.clock()
    assert cache.trust(None, now).verify(cert.der) == cert
    assert cache.trust(None, cert.not_after).verify(cert.der) == cert  # inclusive, as X.509
    assert len(verified.calls) == 1  # the second answer came from the cache
    for late in (cert.not_after + 1, cert.not_after + 400 * DAY):
        with pytest.raises(VerificationError, match="not valid at this time"):
            cache.trust(None, late).verify(cert.der)
    with pytest.raises(VerificationError, match="not valid at this time"):
        cache.trust(None, cert.not_before - 1).verify(cert.der)  # a clock set back
    assert len(verified.calls) == 1
    assert cache.trust(None, now).certificate(None) is None


def test_a_cached_certificate_is_checked_against_the_crl_in_force(
    hub: HubHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    authority = hub.authority
    cache = TrustCache(authority.root.der)
    ggd, police = authority.enrol("ggd").cert, authority.enrol("police").cert
    now = hub.clock()
    first = authority.crl([police], now=now)
    assert cache.trust(_record(first), now).verify(ggd.der) == ggd
    second = authority.crl([police, ggd], now=now)
    with pytest.raises(RevokedError):
        cache.trust(_record(second), now).verify(ggd.der)
    # Even a cache hit (same certificate, same CRL number) is checked against the CRL in
    # force: here one that, against the rules, lists ggd under the first CRL's number.
    verified = Recording(monkeypatch, "verify_certificate")
    trust = cache.trust(_record(first), now)
    assert trust.verify(ggd.der) == ggd
    same_number = create_crl(
        authority.key, authority.root, {ggd.serial: now}, number=first.number, now=now, days=7
    )
    with pytest.raises(RevokedError):
        cache.verify(ggd.der, replace(trust, crl=same_number))
    assert verified.calls == []


def test_a_crl_is_loaded_once_per_number_and_never_for_other_bytes(
    hub: HubHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = Recording(monkeypatch, "load_crl")
    authority = hub.authority
    cache = TrustCache(authority.root.der)
    now = hub.clock()
    crl = authority.crl([], now=now)
    for _ in range(3):
        assert cache.trust(_record(crl), now).crl == crl
    assert loaded.calls == [crl.der]
    revoked = {authority.enrol("ggd").cert.serial: now}  # same number, other bytes
    other = create_crl(authority.key, authority.root, revoked, number=crl.number, now=now, days=7)
    assert other.number == crl.number and other.der != crl.der
    assert cache.trust(_record(other), now).crl == other
    assert loaded.calls == [crl.der, other.der]
    forged = replace(_record(other), der=other.der[:-1] + bytes([other.der[-1] ^ 1]))
    with pytest.raises(Unavailable, match="revocation list the hub holds does not verify"):
        cache.trust(forged, now)


def test_the_cached_root_is_checked_against_now(hub: HubHarness) -> None:
    root = hub.authority.root
    cache = TrustCache(root.der)
    assert cache.root(hub.clock()) == root
    for outside in (root.not_after + 1, root.not_before - 1):
        with pytest.raises(Unavailable):
            cache.root(outside)
    with pytest.raises(Unavailable):
        TrustCache(root.der).root(root.not_after + 1)  # and before anything was cached
    with pytest.raises(Unavailable):
        TrustCache(b"not a certificate").root(hub.clock())


def test_the_certificate_cache_is_bounded_and_forgets_the_least_recently_used(
    hub: HubHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    verified = Recording(monkeypatch, "verify_certificate")
    cache = TrustCache(hub.authority.root.der, certificates=2)
    a, b, c = (hub.authority.enrol(org).cert for org in ("a-org", "b-org", "c-org"))
    trust = cache.trust(None, hub.clock())
    for cert in (a, b, a, c):  # c pushes out b, the least recently used
        trust.verify(cert.der)
    assert cache.sizes == (2, 0)
    assert verified.calls == [a.der, b.der, c.der]
    trust.verify(a.der)
    trust.verify(b.der)
    assert verified.calls == [a.der, b.der, c.der, b.der]
    with pytest.raises(ValueError):
        TrustCache(hub.authority.root.der, certificates=0)


def test_failures_are_not_cached(hub: HubHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    verified = Recording(monkeypatch, "verify_certificate")
    foreign: Certificate = hub.foreign_authority().enrol("ggd").cert
    cache = TrustCache(hub.authority.root.der)
    trust = cache.trust(None, hub.clock())
    for _ in range(2):
        with pytest.raises(VerificationError):
            trust.verify(foreign.der)
    assert len(verified.calls) == 2 and cache.sizes == (0, 0)


# -- the audit tree in memory -----------------------------------------------------------


def _event(n: int) -> Event:
    return Event(action="read", object_type="directory", outcome="allowed", object_ids=(f"o{n}",))


def _append(n: int) -> Callable[[Tx], None]:
    def work(tx: Tx) -> None:
        recording.append(tx, _event(n), now=1000 + n)

    return work


async def _chain(store: Store) -> list[int]:
    """The indexes stored, after checking the stored nodes give the root of the leaves."""
    entries = await store.audit_entries(AuditQuery(viewer=None, limit=1000))
    assert await store.audit_root() == (len(entries), merkle.root_hash([e.leaf() for e in entries]))
    return [e.index for e in entries]


async def _objects(store: Store) -> list[str]:
    return [e.object_ids[0] for e in await store.audit_entries()]


class InsertResults:
    """Records what each ``Tx.insert_audit`` answered (False: the head it was given was stale)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.answers: list[bool] = []
        real = Tx.insert_audit

        def insert(tx: Tx, entry: Any, tree: Any) -> bool:
            self.answers.append(real(tx, entry, tree))
            return self.answers[-1]

        monkeypatch.setattr(Tx, "insert_audit", insert)


async def test_the_chain_stays_intact_after_a_failed_batch(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    inserts = InsertResults(monkeypatch)
    await store.write(_append(1))

    def deferred_check(conn: sa.Connection) -> None:  # a check made only at COMMIT
        conn.execute(sa.text("CREATE TABLE parent (id INTEGER PRIMARY KEY)"))
        conn.execute(
            sa.text(
                "CREATE TABLE child (parent INTEGER REFERENCES parent (id) "
                "DEFERRABLE INITIALLY DEFERRED)"
            )
        )

    await store._engines.write(deferred_check)

    def dangling(tx: Tx) -> None:
        tx._conn.exec_driver_sql("INSERT INTO child (parent) VALUES (42)")
        recording.append(tx, _event(99), now=1099)

    outcomes = await asyncio.gather(
        store.write(_append(2)), store.write(dangling), store.write(_append(3)),
        return_exceptions=True,
    )  # fmt: skip
    assert all(isinstance(o, CommitFailed) for o in outcomes)  # one batch, none of it stored
    assert await _chain(store) == [0]
    await store.write(_append(4))  # the tree in memory had reached 4: it must not be used
    await store.write(_append(5))
    assert await _chain(store) == [0, 1, 2]
    assert await _objects(store) == ["o1", "o4", "o5"]
    # The failed batch's tree was dropped, not merely corrected by the database's check.
    assert inserts.answers == [True] * len(inserts.answers)


async def test_the_chain_stays_intact_after_a_failed_item(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    inserts = InsertResults(monkeypatch)

    class Refused(Exception):
        pass

    def appends_then_fails(tx: Tx) -> None:
        recording.append(tx, _event(50), now=1050)
        raise Refused

    outcomes = await asyncio.gather(
        store.write(_append(1)), store.write(appends_then_fails), store.write(_append(2)),
        return_exceptions=True,
    )  # fmt: skip
    assert isinstance(outcomes[1], Refused)
    assert await _chain(store) == [0, 1]
    assert await _objects(store) == ["o1", "o2"]
    assert inserts.answers == [True, True, True]


async def test_an_entry_appended_by_another_writer_is_linked_to(
    store: Store, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    inserts = InsertResults(monkeypatch)
    await store.write(_append(1))  # this writer now holds a tree of size 1 in memory
    other = Store(database_url)
    await other.start()
    try:
        await other.write(_append(2))
    finally:
        await other.close()
    await store.write(_append(3))  # follows the other writer's entry, not its own tree
    assert await _chain(store) == [0, 1, 2]
    assert await _objects(store) == ["o1", "o2", "o3"]
    assert inserts.answers == [True, True, False, True]  # its stale tree refused, then re-read


async def test_the_insert_refuses_a_gap_or_a_taken_index(store: Store) -> None:
    await store.write(_append(1))
    await store.write(_append(2))

    def attempts(tx: Tx) -> list[bool]:
        tree = tx.audit_tree(fresh=True)
        nodes = dict(tree.nodes)

        def at(index: int) -> bool:
            entry = _event(9).entry(index, now=1009)
            return tx.insert_audit(entry, Frontier(index, nodes) if index != 2 else tree)

        return [at(3), at(0), at(1), at(2)]  # a gap, a new first entry, taken, follows

    assert await store.write(attempts) == [False, False, False, True]
    assert await _chain(store) == [0, 1, 2]
    assert await _objects(store) == ["o1", "o2", "o9"]


async def test_a_repeat_and_a_conflict_store_nothing(hub: HubHarness) -> None:
    police, ggd = await _pair(hub)
    envelope = hub.envelope(police, [ggd], pseudonyms=hub.pseudonyms("+31600000000"))
    first = await hub.send(police, envelope)
    assert first.status == 201
    assert (await hub.send(police, envelope)).status == 200
    clash = hub.envelope(police, [ggd], message_id=envelope.header.id)
    await hub.problem(await hub.send(police, clash), 409, "conflict")
    counts = await hub.counts()
    assert (counts["messages"], counts["deliveries"], counts["message_pseudonyms"]) == (1, 1, 1)
    sends = [
        (e.outcome, e.reason)
        for e in await hub.audit()
        if (e.action, e.object_type) == ("create", "message")
    ]
    assert sends == [("allowed", None), ("allowed", "repeat"), ("denied", "conflict")]
