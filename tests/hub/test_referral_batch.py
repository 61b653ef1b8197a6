"""Referrals and status updates in one writer batch (hub/placement.py ``Referrals``, through
hub/store/bulk.py): decided in memory in batch order, written a table at a time, with
exactly the outcomes, rows, events and access-log entries of the same items sent one at a
time."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest
import sqlalchemy as sa

from bench.cases import T0, YEAR, Template, bench_message_id, bench_pseudonym, make_template
from hub import relay
from hub import schema as t
from hub.accesslog import recording
from hub.accesslog.recording import Scope
from hub.errors import HubError
from hub.relay import Accepted
from hub.store import AuditQuery, Store, bulk
from protocol.certificate import Certificate
from protocol.envelope import Envelope, encode
from protocol.types import CaseRef, MessageId, OrgId, case_ref_from

POLICE, COORDINATOR, OVERSEER = OrgId("police"), OrgId("coordinator"), OrgId("overseer")
SHELTER, CARE = OrgId("shelter"), OrgId("care")
# org -> (type, roles): two coordinators, so that events go to every one of them.
ORGS = {
    POLICE: ("police", ("member",)),
    COORDINATOR: ("coordination", ("coordinator", "member")),
    OVERSEER: ("coordination", ("member", "coordinator")),
    SHELTER: ("shelter", ("member",)),
    CARE: ("care", ("member",)),
}
P1, P2, P3, P4 = (bench_pseudonym(n) for n in (1, 2, 3, 4))


def _ref(number: int) -> CaseRef:
    return case_ref_from(bytes([7]) + number.to_bytes(9, "big"))


def _id(number: int) -> MessageId:
    return bench_message_id(5, number)


@dataclasses.dataclass(frozen=True)
class Item:
    """An envelope to send at ``T0 + number``, with a fresh case reference of its number."""

    number: int
    sender: OrgId
    to: OrgId
    kind: str
    pseudonyms: tuple[str, ...] = ()
    ref: int | None = None  # the number of the message it refers to
    status: str | None = None
    case: int | str | None = None  # the number of a case's first message, or a reference
    id_of: int | None = None  # take the id of another item (a repeat or a conflict)


# Sent one at a time into both stores before the batch: cases 1 (P1) and 2 (P2); the
# police referral 3 declined (4); referral 5 sent; the coordinator's referral 6 of case 2
# declined (7).
BEFORE = (
    Item(1, POLICE, COORDINATOR, "signal", (P1,)),
    Item(2, POLICE, COORDINATOR, "signal", (P2,)),
    Item(3, POLICE, SHELTER, "referral", (P1,)),
    Item(4, SHELTER, POLICE, "status", ref=3, status="declined"),
    Item(5, POLICE, SHELTER, "referral", (P2,)),
    Item(6, COORDINATOR, SHELTER, "referral", case=2),
    Item(7, SHELTER, COORDINATOR, "status", ref=6, status="declined"),
)
# (item, its outcome): a 201 "created", a 200 "repeat", or the problem's slug.
BATCH = (
    (Item(10, SHELTER, POLICE, "status", ref=5, status="accepted"), "created"),
    (Item(11, SHELTER, POLICE, "status", ref=5, status="declined"), "illegal-transition"),
    (Item(12, POLICE, SHELTER, "referral", (P3,)), "created"),  # a new case
    (Item(13, SHELTER, POLICE, "status", ref=12, status="accepted"), "created"),
    (Item(14, POLICE, SHELTER, "status", ref=12, status="closed"), "created"),
    (Item(15, SHELTER, POLICE, "status", ref=12, status="care_started"), "illegal-transition"),
    (Item(16, POLICE, CARE, "referral", (P1,), ref=3), "created"),  # replaces declined 3
    (Item(17, POLICE, CARE, "referral", (P1,), ref=3), "illegal-transition"),  # 3 is closed
    (Item(18, CARE, POLICE, "status", ref=5, status="accepted"), "unknown-referral"),
    (Item(19, SHELTER, POLICE, "status", ref=99, status="accepted"), "unknown-referral"),
    (Item(20, POLICE, SHELTER, "referral", case=1), "unknown-case"),  # not a coordinator
    (Item(21, COORDINATOR, SHELTER, "referral", case=1), "created"),
    (Item(22, COORDINATOR, SHELTER, "referral", case="a" * 16), "unknown-case"),
    (Item(23, POLICE, SHELTER, "referral", (P3,), id_of=12), "repeat"),
    (Item(24, SHELTER, CARE, "status", ref=12, status="closed"), "invalid-referral"),
    (Item(25, POLICE, COORDINATOR, "signal", (P2,)), "created"),
    (Item(26, POLICE, SHELTER, "referral", (P4,)), "created"),
    (Item(27, SHELTER, POLICE, "status", ref=26, status="declined"), "created"),
    (Item(28, POLICE, CARE, "referral", (P4,), ref=26), "created"),  # declined in this batch
    (Item(29, SHELTER, POLICE, "status", ref=5, status="closed", id_of=10), "conflict"),
    (Item(30, POLICE, SHELTER, "referral", (P1, P4)), "created"),  # merges cases 1 and 26
    (Item(31, CARE, POLICE, "status", ref=28, status="accepted"), "created"),
)
# A coordinator's referral naming both a case and the referral it replaces: decided alone,
# so a batch holding one is written item by item.
UNDECIDED = (Item(32, COORDINATOR, CARE, "referral", case=2, ref=6), "created")


@pytest.fixture(scope="module")
def template() -> Template:
    return make_template()


async def _organisations(store: Store) -> None:
    def insert(conn: sa.Connection) -> None:
        conn.execute(
            sa.insert(t.organisations),
            [
                {"org": org, "network": "bench", "certificate": b"\0", "fingerprint": f"{n:043d}",
                 "serial": str(n), "org_type": kind, "not_before": T0 - YEAR,
                 "not_after": T0 + YEAR, "roles": ",".join(roles)}
                for n, (org, (kind, roles)) in enumerate(ORGS.items())
            ],
        )  # fmt: skip

    await store._engines.write(insert)


def _certificate(template: Template, org: OrgId) -> Certificate:
    kind, roles = ORGS[org]
    return dataclasses.replace(template.sender, org=org, org_type=kind, roles=frozenset(roles))


def _envelope(template: Template, item: Item) -> Envelope:
    case = item.case if not isinstance(item.case, int) else _ref(item.case)
    header = dataclasses.replace(
        template.envelope.header,
        id=_id(item.id_of or item.number),
        sender=item.sender,
        recipients=(item.to,),
        recipient_keys={item.to: template.envelope.header.sender_cert},
        kind=item.kind,
        pseudonyms=tuple(sorted(item.pseudonyms)),
        ref=None if item.ref is None else _id(item.ref),
        status=item.status,
        case=case,
        created=T0,
    )
    (wrapped,) = template.envelope.keys.values()
    return dataclasses.replace(template.envelope, header=header, keys={item.to: wrapped})


async def _send(store: Store, template: Template, item: Item) -> tuple[Scope, Any]:
    """Store the item's envelope as the relay does: its outcome, or the exception."""
    envelope = _envelope(template, item)
    scope = Scope(action="create", object_type="message", org=item.sender, user="u")
    scope.touch([envelope.header.id])
    scope.pseudonyms = envelope.header.pseudonyms
    try:
        return scope, await relay.store_envelope(
            store, scope, encode(envelope), now=T0 + item.number,
            sender=_certificate(template, item.sender), fresh=_ref(item.number),
        )  # fmt: skip
    except HubError as exc:
        return scope, exc


async def _deny(store: Store, scope: Scope, outcome: Any, at: int) -> str:
    """Record a refusal as the HTTP layer does (:func:`recording.audited`); the outcome."""
    if isinstance(outcome, Accepted):
        return "created" if outcome.created else "repeat"
    assert isinstance(outcome, HubError)
    with contextlib.suppress(HubError):
        async with recording.audited(store, lambda: at, scope):
            raise outcome
    return outcome.slug


async def _one_at_a_time(store: Store, template: Template, items: Sequence[Item]) -> list[str]:
    outcomes = []
    for item in items:
        scope, outcome = await _send(store, template, item)
        outcomes.append(await _deny(store, scope, outcome, T0 + item.number))
    return outcomes


async def _in_one_batch(store: Store, template: Template, items: Sequence[Item]) -> list[str]:
    before = store.batches_committed
    sent = await asyncio.gather(*(_send(store, template, item) for item in items))
    assert store.batches_committed - before == 1
    return [
        await _deny(store, scope, outcome, T0 + item.number)
        for item, (scope, outcome) in zip(items, sent, strict=True)
    ]


def _state(conn: sa.Connection) -> dict[str, Any]:
    """What the items left, with message ids for cursors (a sequence may skip numbers)."""
    m, r, ru, e = t.messages.c, t.referrals.c, t.referral_updates.c, t.events.c
    ids = {row.cursor: row.id for row in conn.execute(sa.select(m.cursor, m.id))}
    referrals = sorted((ids[row.cursor], *row[1:]) for row in conn.execute(sa.select(t.referrals)))
    updates = sorted(
        (ids[row.cursor], ids[row.referral], row.code, row.at)
        for row in conn.execute(sa.select(ru.cursor, ru.referral, ru.code, ru.at))
    )
    events = sorted(
        tuple(row) for row in conn.execute(
            sa.select(e.org, e.kind, e.at, e.case, e.message, e.step, e.detail)
        )
    )  # fmt: skip
    # A case merged away keeps no summary anyone reads (every read is of live cases):
    # one the batch merged away is not brought up to date as it was one item at a time.
    cases = sorted(
        tuple(row) if row.merged_into is None else (*row[:4], *[None] * (len(row) - 4))
        for row in conn.execute(sa.select(t.cases))
    )
    members = sorted((row.case, ids[row.cursor]) for row in conn.execute(sa.select(t.case_members)))
    pseudonyms = sorted(tuple(row) for row in conn.execute(sa.select(t.case_pseudonyms)))
    return {
        "messages": sorted(ids.values()), "referrals": referrals, "updates": updates,
        "events": events, "cases": cases, "members": members, "pseudonyms": pseudonyms,
        "referral_columns": [column.name for column in r],
        "case_columns": [column.name for column in t.cases.c],
    }  # fmt: skip


async def _entries(store: Store) -> Counter[tuple[Any, ...]]:
    entries = await store.audit_entries(AuditQuery(viewer=None, limit=1000))
    assert [e.index for e in entries] == list(range(len(entries)))
    return Counter(
        (e.action, e.outcome, e.reason, e.object_ids, e.pseudonyms, e.time) for e in entries
    )


async def _run(
    store: Store, template: Template, items: Sequence[Item], *, batch: bool
) -> tuple[list[str], dict[str, Any], Counter[tuple[Any, ...]]]:
    await _organisations(store)
    assert await _one_at_a_time(store, template, BEFORE) == ["created"] * len(BEFORE)
    run = _in_one_batch if batch else _one_at_a_time
    outcomes = await run(store, template, items)
    return outcomes, await store._engines.read(_state), await _entries(store)


@pytest.mark.parametrize("undecided", [False, True], ids=["decided", "undecided"])
async def test_a_batch_of_referrals_and_statuses_is_as_the_items_one_at_a_time(
    store: Store,
    databases: Any,
    template: Template,
    monkeypatch: pytest.MonkeyPatch,
    undecided: bool,
) -> None:
    cases = (*BATCH, UNDECIDED) if undecided else BATCH
    items = [item for item, _ in cases]
    written: list[tuple[int, str]] = []  # each bulk write: its size, and how it ended
    write = bulk.write

    def counted(*args: Any) -> Any:
        try:
            done = write(*args)
        except Exception as exc:
            written.append((len(args[2]), type(exc).__name__))
            raise
        written.append((len(args[2]), "written"))
        return done

    monkeypatch.setattr(bulk, "write", counted)
    outcomes, state, entries = await _run(store, template, items, batch=True)
    monkeypatch.undo()
    assert outcomes == [expected for _, expected in cases]
    if undecided:  # then item by item, in order
        assert written[len(BEFORE)] == (len(items), "Undecided")
        assert written[len(BEFORE) + 1 :][: len(items)] == [(1, "written")] * len(items)
    else:
        assert written[len(BEFORE)] == (len(items), "written")
    alone = Store(await databases.new())
    await alone.migrate()
    await alone.start()
    try:
        one_by_one = await _run(alone, template, items, batch=False)
    finally:
        await alone.close()
    assert one_by_one[0] == outcomes
    for name, rows in state.items():
        assert one_by_one[1][name] == rows, name
    assert one_by_one[2] == entries
    _check_effects(state, entries)


def _check_effects(state: dict[str, Any], entries: Counter[tuple[Any, ...]]) -> None:
    """What the batch did, beyond being the same as one at a time."""
    columns = state["referral_columns"]
    referrals = {row[1]: dict(zip(columns, row, strict=True)) for row in state["referrals"]}
    assert referrals[_id(3)]["step"] == "closed" and referrals[_id(3)]["replaced_by"] == _id(16)
    assert referrals[_id(3)]["closed_at"] == T0 + 16
    assert referrals[_id(5)]["step"] == "accepted"  # the declined status after it refused
    assert referrals[_id(5)]["delivered_at"] == referrals[_id(5)]["accepted_at"] == T0 + 10
    assert referrals[_id(12)]["step"] == "closed" and referrals[_id(12)]["sent_at"] == T0 + 12
    assert (referrals[_id(26)]["step"], referrals[_id(26)]["replaced_by"]) == ("closed", _id(28))
    assert referrals[_id(28)]["step"] == "accepted"
    assert referrals[_id(21)]["case"] == _ref(1)  # the case the coordinator named
    for refused in (11, 15, 17, 18, 19, 20, 22, 24):
        assert _id(refused) not in state["messages"]
        assert _id(refused) not in referrals
    # Case 26 (P4: referrals 26 and 28) merged into case 1 by referral 30.
    cases = {row[0]: dict(zip(state["case_columns"], row, strict=True)) for row in state["cases"]}
    assert cases[_ref(26)]["merged_into"] == _ref(1) and cases[_ref(1)]["merged_into"] is None
    assert referrals[_id(28)]["case"] == referrals[_id(30)]["case"] == _ref(1)
    assert (_ref(1), _id(28)) in state["members"]
    assert cases[_ref(1)]["open_referrals"] == 4  # 16, 21, 28 (accepted) and 30; 3 closed
    # Every coordinator hears of the status (with the case), the referrer too (without).
    heard = [(e[0], e[3]) for e in state["events"] if e[4] == _id(5) and e[2] == T0 + 10]
    assert sorted(heard) == [(COORDINATOR, _ref(2)), (OVERSEER, _ref(2)), (POLICE, None)]
    new_case = [(e[0], e[1]) for e in state["events"] if e[4] == _id(12) and e[2] == T0 + 12]
    assert sorted(new_case) == [(COORDINATOR, "referral"), (OVERSEER, "referral")]
    joined = [e[0] for e in state["events"] if e[4] == _id(25)]
    assert sorted(joined) == [COORDINATOR, OVERSEER]  # a match for each
    # Entries: a status carries its case's pseudonyms; a refusal its reason, a repeat its.
    created = {e[3]: e for e in entries if e[1] == "allowed" and e[2] is None}
    assert created[(_id(10),)][4] == (P2,)
    assert created[(_id(31),)][4] == tuple(sorted((P1, P4)))  # the merged case's
    assert created[(_id(21),)][4] == (P1,)
    denied = sorted((e[3][0], e[2]) for e in entries if e[1] == "denied")
    assert ((_id(11), "illegal-transition") in denied) and (
        (_id(10), "conflict") in denied
    )  # 29 took the id of 10
    assert ("create", "allowed", "repeat", (_id(12),), (P3,), T0 + 23) in entries
