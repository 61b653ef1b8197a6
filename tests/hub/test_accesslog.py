"""The verifiable access log over HTTP: entries, headers, scoping, heads, proofs, export."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import pytest

from hub.store import AuditQuery
from protocol import merkle
from protocol.auditlog import AuditEntry, TreeHead, check_consistent, verify_tree_head
from protocol.encoding import b64d

if TYPE_CHECKING:
    from conftest import HubHarness, Party

AUDIT = {"Schakel-Purpose": "audit"}


async def _json(response: Any, status: int = 200) -> Any:
    body = await response.json(content_type=None)
    assert response.status == status, body
    return body


async def _head(hub: HubHarness, party: Party, **query: int) -> TreeHead:
    """Sign a head now (privacy officer) and check its signature with the hub certificate."""
    response = await hub.client.post("/v1/audit/head", headers=party.headers(**AUDIT))
    body = await _json(response, response.status)
    assert response.status in (200, 201)
    head = TreeHead.from_wire(body["head"])
    assert hub.hub_cert is not None
    verify_tree_head(head, hub.hub_cert)
    return head


async def _entries(hub: HubHarness, party: Party, **query: Any) -> list[AuditEntry]:
    params = {name: str(value) for name, value in query.items()}
    response = await hub.client.get(
        "/v1/audit/entries", params=params, headers=party.headers(**AUDIT)
    )
    body = await _json(response)
    return [AuditEntry.from_wire(item) for item in body["entries"]]


async def _network(hub: HubHarness) -> tuple[Party, Party, Party, Party]:
    """police (privacy officer), ggd, shelter (members), authority-po (network PO)."""
    police = await hub.enrol("police", ["member", "privacy_officer"])
    ggd = await hub.enrol("ggd")
    shelter = await hub.enrol("shelter")
    npo = await hub.enrol("network-po", ["network_privacy_officer"])
    return police, ggd, shelter, npo


# -- one entry per request, with who, why and what -----------------------------------------


async def test_each_request_leaves_one_entry_with_user_purpose_objects_and_pseudonyms(
    hub: HubHarness,
) -> None:
    police, ggd, _, _ = await _network(hub)
    pseudonyms = hub.pseudonyms("+31611111111", "+31622222222")
    envelope = hub.envelope(police, [ggd], pseudonyms=pseudonyms)
    before = len(await hub.audit())
    assert (await hub.send(police, envelope, **{"Schakel-User": "agent-7"})).status == 201
    text = "Controle na melding \u2013 caf\u00e9"
    headers = ggd.headers(
        **{
            "Schakel-User": "nurse-3",
            "Schakel-Purpose": "care-delivery",
            "Schakel-Purpose-Text": urllib.parse.quote(text),
        }
    )
    assert (await hub.client.get("/v1/inbox", headers=headers)).status == 200
    path = f"/v1/messages/{envelope.header.id}"
    assert (await hub.client.get(path, headers=ggd.headers())).status == 200
    entries = (await hub.audit())[before:]
    assert len(entries) == 3  # exactly one each
    send, inbox, read = entries
    assert (send.action, send.object_type, send.outcome) == ("create", "message", "allowed")
    assert (send.org, send.user, send.role) == ("police", "agent-7", "member,privacy_officer")
    assert send.object_ids == (envelope.header.id,) and send.pseudonyms == pseudonyms
    assert (inbox.action, inbox.object_type, inbox.user) == ("list", "inbox", "nurse-3")
    assert (inbox.purpose, inbox.purpose_text) == ("care-delivery", text)
    assert inbox.object_ids == (envelope.header.id,) and inbox.pseudonyms == ()
    assert (read.action, read.object_ids, read.purpose) == (
        "read",
        (envelope.header.id,),
        "signal-intake",
    )
    assert send.source == "127.0.0.1" and send.request_id


@pytest.mark.parametrize(
    ("headers", "user", "purpose"),
    [
        ({"Schakel-User": None}, None, None),  # checked first: the rest is not recorded
        ({"Schakel-Purpose": None}, "user-1", None),
        ({"Schakel-Purpose": "curiosity"}, "user-1", None),
        ({"Schakel-Purpose-Text": ""}, "user-1", "signal-intake"),
        ({"Schakel-Purpose-Text": "line%0Aaction%3Dexport"}, "user-1", "signal-intake"),
        ({"Schakel-Purpose-Text": "ok%E2%80%AEkc"}, "user-1", "signal-intake"),  # bidi override
        ({"Schakel-Purpose-Text": "a%E2%80%A8b"}, "user-1", "signal-intake"),  # line separator
        ({"Schakel-Purpose-Text": "%FF%FE"}, "user-1", "signal-intake"),  # not UTF-8
        ({"Schakel-Purpose-Text": "two words"}, "user-1", "signal-intake"),  # not encoded
        ({"Schakel-Purpose-Text": "x" * 201}, "user-1", "signal-intake"),
        ({"Schakel-Purpose-Text": "%78" * 201}, "user-1", "signal-intake"),
    ],
)
async def test_missing_or_bad_headers_are_400_with_one_denied_entry(
    hub: HubHarness, headers: dict[str, str | None], user: str | None, purpose: str | None
) -> None:
    ggd = await hub.enrol("ggd")
    before = len(await hub.audit())
    response = await hub.client.get("/v1/inbox", headers=ggd.headers(**headers))
    body = await hub.problem(response, 400, "malformed")
    assert "line" not in body["detail"] and "\u202e" not in body["detail"]
    entries = (await hub.audit())[before:]
    assert len(entries) == 1
    denied = entries[0]
    assert (denied.action, denied.outcome, denied.reason) == ("list", "denied", "malformed")
    assert (denied.org, denied.user, denied.purpose, denied.purpose_text) == (
        "ggd",
        user,
        purpose,
        None,
    )


async def test_routes_that_read_no_case_data_need_no_purpose_but_check_one(
    hub: HubHarness,
) -> None:
    ggd = await hub.enrol("ggd")
    plain = ggd.headers(**{"Schakel-Purpose": None})
    assert (await hub.client.get("/v1/directory/orgs", headers=plain)).status == 200
    assert (await hub.client.get("/v1/audit/head", headers=plain)).status == 200
    wrong = ggd.headers(**{"Schakel-Purpose": "curiosity"})
    await hub.problem(await hub.client.get("/v1/directory/orgs", headers=wrong), 400, "malformed")
    entry = (await hub.audit())[-1]
    assert (entry.action, entry.object_type, entry.outcome) == ("list", "directory", "denied")


# -- who may read what ---------------------------------------------------------------------


async def test_privacy_officers_see_their_scope_and_members_get_404(hub: HubHarness) -> None:
    police, ggd, shelter, npo = await _network(hub)
    to_ggd = hub.envelope(police, [ggd])
    between_others = hub.envelope(shelter, [ggd])
    assert (await hub.send(police, to_ggd)).status == 201
    assert (await hub.send(shelter, between_others)).status == 201
    for envelope in (to_ggd, between_others):
        path = f"/v1/messages/{envelope.header.id}"
        assert (await hub.client.get(path, headers=ggd.headers())).status == 200
    everything = await hub.audit()

    seen = await _entries(hub, police, limit=1000)
    expected = [
        e.index
        for e in everything
        if e.org == "police"
        or (e.object_type in ("message", "inbox") and to_ggd.header.id in e.object_ids)
    ]
    assert [e.index for e in seen] == expected
    assert any(e.org == "ggd" and e.object_ids == (to_ggd.header.id,) for e in seen)
    assert not any(between_others.header.id in e.object_ids for e in seen)
    assert not any(e.org == "shelter" for e in seen)

    all_seen = await _entries(hub, npo, limit=1000)
    assert [e.index for e in all_seen] == list(range(len(everything) + 1))  # + police's read

    await _head(hub, police)
    for path in (
        "/v1/audit/entries",
        "/v1/audit/entries/0/proof",
        "/v1/audit/export",
    ):
        await hub.problem(
            await hub.client.get(path, headers=ggd.headers(**AUDIT)), 404, "not-found"
        )
    await hub.problem(
        await hub.client.post("/v1/audit/head", headers=ggd.headers(**AUDIT)), 404, "not-found"
    )
    shelter_entry = next(e for e in everything if e.org == "shelter")
    response = await hub.client.get(
        f"/v1/audit/entries/{shelter_entry.index}/proof", headers=police.headers(**AUDIT)
    )
    await hub.problem(response, 404, "not-found")  # exists, but not in the caller's scope
    reads = [e for e in (await hub.audit())[len(everything) :] if e.object_type == "audit"]
    assert [(e.org, e.outcome) for e in reads] == [
        ("police", "allowed"),
        ("network-po", "allowed"),
        ("police", "allowed"),
        *[("ggd", "denied")] * 4,
        ("police", "denied"),
    ]


async def test_entry_filters_and_paging(hub: HubHarness) -> None:
    police, ggd, _, npo = await _network(hub)
    pseudonyms = hub.pseudonyms("+31633333333")
    envelope = hub.envelope(police, [ggd], pseudonyms=pseudonyms)
    assert (await hub.send(police, envelope, **{"Schakel-User": "agent-9"})).status == 201
    by_pseudonym = await _entries(hub, npo, pseudonym=pseudonyms[0])
    assert [(e.org, e.action) for e in by_pseudonym] == [("police", "create")]
    assert [e.user for e in await _entries(hub, npo, user="agent-9")] == ["agent-9"]
    touching = await _entries(hub, npo, object=envelope.header.id)
    assert [e.index for e in touching] == [by_pseudonym[0].index]
    logins = await _entries(hub, npo, action="login", org="ggd")
    assert [(e.action, e.org) for e in logins] == [("login", "ggd")]
    total = len(await hub.audit())
    response = await hub.client.get(
        "/v1/audit/entries", params={"limit": "3", "start": "2"}, headers=npo.headers(**AUDIT)
    )
    page = await _json(response)
    assert [e["index"] for e in page["entries"]] == [2, 3, 4] and page["next"] == 5
    last = await _json(
        await hub.client.get(
            "/v1/audit/entries",
            params={"start": str(total - 1)},
            headers=npo.headers(**AUDIT),
        )
    )
    assert page["next"] is not None and last["next"] is None
    for bad in (
        {"limit": "0"},
        {"limit": "1001"},
        {"start": "-1"},
        {"action": "peek"},
        {"pseudonym": "tel.1.short"},
        {"org": "Not An Org"},
        {"colour": "red"},
    ):
        response = await hub.client.get(
            "/v1/audit/entries", params=bad, headers=npo.headers(**AUDIT)
        )
        await hub.problem(response, 400, "malformed")


# -- signed tree heads and proofs ----------------------------------------------------------


async def test_inclusion_and_consistency_proofs_verify_against_signed_heads(
    hub: HubHarness,
) -> None:
    police, ggd, _, npo = await _network(hub)
    heads: list[TreeHead] = []
    for round_ in range(6):
        for _ in range(round_ + 1):
            assert (await hub.send(police, hub.envelope(police, [ggd]))).status == 201
        heads.append(await _head(hub, police))
    sizes = [head.size for head in heads]
    assert sizes == sorted(set(sizes))
    entries = await hub.audit()
    for head in heads:
        leaves = [e.leaf() for e in entries[: head.size]]
        assert head.root == merkle.root_hash(leaves)
        for index in sorted({0, head.size // 2, head.size - 1}):
            response = await hub.client.get(
                f"/v1/audit/entries/{index}/proof",
                params={"size": str(head.size)},
                headers=npo.headers(**AUDIT),
            )
            body = await _json(response)
            assert (body["index"], body["size"]) == (index, head.size)
            leaf = b64d(body["leaf"])
            assert leaf == entries[index].leaf()
            proof = [b64d(node) for node in body["proof"]]
            merkle.verify_inclusion(leaf, index, head.size, proof, head.root)
    for old in heads:
        for new in heads:
            if old.size > new.size:
                continue
            response = await hub.client.get(
                "/v1/audit/consistency",
                params={"from": str(old.size), "to": str(new.size)},
                headers=ggd.headers(**{"Schakel-Purpose": None}),
            )
            body = await _json(response)
            check_consistent(old, new, [b64d(node) for node in body["proof"]])
    newest = await _json(await hub.client.get("/v1/audit/head", headers=ggd.headers()))
    assert TreeHead.from_wire(newest["head"]) == heads[-1]
    again = await _json(
        await hub.client.get(f"/v1/audit/heads/{heads[2].size}", headers=ggd.headers())
    )
    assert TreeHead.from_wire(again["head"]) == heads[2]


async def test_bad_proof_requests(hub: HubHarness) -> None:
    police, _, _, npo = await _network(hub)
    head = await _head(hub, police)
    size = len(await hub.audit())
    for query in ({"from": "0", "to": "1"}, {"from": "3", "to": "2"}, {"from": "1"},
                  {"from": "1", "to": str(size + 1000)}, {"from": "x", "to": "2"}):  # fmt: skip
        response = await hub.client.get(
            "/v1/audit/consistency", params=query, headers=npo.headers()
        )
        await hub.problem(response, 400, "malformed")
    for path in (f"/v1/audit/heads/{head.size + 1}", "/v1/audit/heads/x", "/v1/audit/heads/0"):
        await hub.problem(await hub.client.get(path, headers=npo.headers()), 404, "not-found")
    response = await hub.client.get(
        f"/v1/audit/entries/{head.size}/proof", headers=npo.headers(**AUDIT)
    )
    await hub.problem(response, 400, "malformed")  # newer than the head: ask for a newer one
    response = await hub.client.get(
        "/v1/audit/entries/0/proof", params={"size": "999999"}, headers=npo.headers(**AUDIT)
    )
    await hub.problem(response, 404, "not-found")


async def test_a_page_of_entries_comes_with_its_proofs_against_a_signed_head(
    hub: HubHarness,
) -> None:
    police, ggd, shelter, npo = await _network(hub)
    for sender, recipient in ((police, ggd), (shelter, ggd), (police, ggd)):
        assert (await hub.send(sender, hub.envelope(sender, [recipient]))).status == 201
    head = await _head(hub, police)
    for _ in range(2):  # entries after the head: never in a page asked with its size
        assert (await hub.send(police, hub.envelope(police, [ggd]))).status == 201
    everything = await hub.audit()
    before = len(everything)

    async def page(party: Party, **query: str) -> dict[str, Any]:
        params = {"size": str(head.size), **query}
        return await _json(
            await hub.client.get("/v1/audit/entries", params=params, headers=party.headers(**AUDIT))
        )

    for party, visible in (
        (npo, list(range(head.size))),
        (police, [e.index for e in (await _entries(hub, police, end=head.size, limit=1000))]),
    ):
        body = await page(party, limit="4")
        seen: list[int] = []
        while True:
            assert len(body["proofs"]) == len(body["entries"])
            for wire, proof in zip(body["entries"], body["proofs"], strict=True):
                entry = AuditEntry.from_wire(wire)
                assert entry == everything[entry.index]
                nodes = [b64d(node) for node in proof]
                merkle.verify_inclusion(entry.leaf(), entry.index, head.size, nodes, head.root)
                seen.append(entry.index)
            if body["next"] is None:
                break
            body = await page(party, limit="4", start=str(body["next"]))
        assert seen == visible  # the caller's scope, below the head, each proven
    assert len(visible) < head.size  # the police officer's scope is not everything

    ranged = await page(npo, start="1", end="3")
    assert [e["index"] for e in ranged["entries"]] == [1, 2] and ranged["next"] is None
    plain = await _json(
        await hub.client.get(
            "/v1/audit/entries", params={"limit": "2"}, headers=npo.headers(**AUDIT)
        )
    )
    assert "proofs" not in plain  # without size: entries only, as before
    for bad, status, code in (
        ({"size": "0"}, 400, "malformed"),
        ({"size": "x"}, 400, "malformed"),
        ({"size": "-1"}, 400, "malformed"),
        ({"size": str(head.size + 1)}, 404, "not-found"),  # no head of that size was signed
    ):
        response = await hub.client.get(
            "/v1/audit/entries", params=bad, headers=npo.headers(**AUDIT)
        )
        await hub.problem(response, status, code)
    await hub.problem(
        await hub.client.get(
            "/v1/audit/entries", params={"size": str(head.size)}, headers=ggd.headers(**AUDIT)
        ),
        404,
        "not-found",
    )
    reads = [e for e in (await hub.audit())[before:] if e.object_type == "audit"]
    assert all(e.action == "read" for e in reads)  # one read entry per page, not per proof


async def test_post_head_answers_200_with_the_newest_when_nothing_changed(
    hub: HubHarness,
) -> None:
    police = await hub.enrol("police", ["privacy_officer"])
    first = await hub.client.post("/v1/audit/head", headers=police.headers(**AUDIT))
    assert first.status == 201
    size = len(await hub.audit())
    assert (await first.json())["head"]["size"] == size - 1  # signed before its own entry

    signed = await hub.heads.sign_now()  # the background task signs the POST's entry in
    assert signed is not None and signed.size == size
    again = await hub.client.post("/v1/audit/head", headers=police.headers(**AUDIT))
    assert again.status == 200  # nothing new before this request's own entry
    assert TreeHead.from_wire((await again.json())["head"]) == signed
    assert len(await hub.audit()) == size + 1


async def test_heads_are_signed_on_the_interval_of_the_injected_clock(hub: HubHarness) -> None:
    signer = hub.heads
    first = await signer.tick()  # the first tick signs what is there
    await hub.enrol("ggd")
    hub.clock.advance(59)
    assert await signer.tick() is None  # the interval (60 s) has not passed
    hub.clock.advance(1)
    second = await signer.tick()
    assert second is not None and second.time == hub.clock()
    assert first is None or first.size < second.size
    hub.clock.advance(60)
    assert await signer.tick() is None  # nothing new since: no head
    assert second.size == len(await hub.audit())
    stored = await hub.store.tree_head(hub.config.network, second.size)
    assert stored == second


async def test_the_background_task_is_started_and_cancelled(hub: HubHarness) -> None:
    signer = hub.heads
    calls: list[int] = []

    async def counting_tick() -> None:
        calls.append(hub.clock())

    signer.tick = counting_tick  # type: ignore[method-assign]
    signer.start()
    for _ in range(20):
        if calls:
            break
        await asyncio.sleep(0)
    assert calls == [hub.clock()]
    await signer.stop()
    await signer.stop()  # a second stop is harmless


async def test_without_a_log_signing_key_the_head_routes_are_503(
    hub_with: Callable[..., AsyncIterator[HubHarness]],
) -> None:
    async for hub in hub_with(signing=False):
        npo = await hub.enrol("network-po", ["network_privacy_officer"])
        for method, path in (
            ("GET", "/v1/audit/head"),
            ("POST", "/v1/audit/head"),
            ("GET", "/v1/audit/heads/1"),
            ("GET", "/v1/audit/entries/0/proof"),
            ("GET", "/v1/audit/entries?size=1"),  # proofs with the page need a head
            ("GET", "/v1/audit/export"),
        ):
            response = await hub.client.request(method, path, headers=npo.headers(**AUDIT))
            await hub.problem(response, 503, "unavailable")
        assert len(await _entries(hub, npo)) > 0  # entries and consistency need no head
        response = await hub.client.get(
            "/v1/audit/consistency", params={"from": "1", "to": "2"}, headers=npo.headers()
        )
        assert response.status == 200


# -- export --------------------------------------------------------------------------------


async def _export(hub: HubHarness, party: Party, **query: str) -> list[dict[str, Any]]:
    response = await hub.client.get(
        "/v1/audit/export", params=query, headers=party.headers(**AUDIT)
    )
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"].startswith("application/x-ndjson")
    text = await response.text()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


async def test_an_export_streams_a_head_and_verifiable_entries(
    hub: HubHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("hub.accesslog.reading.EXPORT_PAGE", 4)  # several pages
    police, ggd, shelter, npo = await _network(hub)
    for sender, to in ((police, ggd), (shelter, ggd), (police, shelter)):
        assert (await hub.send(sender, hub.envelope(sender, [to]))).status == 201
    head = await _head(hub, police)
    before = len(await hub.audit())
    lines = await _export(hub, npo)
    assert hub.hub_cert is not None
    exported = TreeHead.from_wire(lines[0]["head"])
    assert exported == head
    verify_tree_head(exported, hub.hub_cert)
    entries = [AuditEntry.from_wire(line["entry"]) for line in lines[1:]]
    assert [e.index for e in entries] == list(range(head.size))
    for line, entry in zip(lines[1:], entries, strict=True):
        proof = [b64d(node) for node in line["proof"]]
        merkle.verify_inclusion(entry.leaf(), entry.index, head.size, proof, head.root)
    after = await hub.audit()
    assert len(after) == before + 1  # the export's own entry, committed before streaming
    assert (after[-1].action, after[-1].object_type, after[-1].index >= head.size) == (
        "export",
        "audit",
        True,
    )

    full = await _export(hub, npo, proofs="false")
    leaves = [AuditEntry.from_wire(line["entry"]).leaf() for line in full[1:]]
    assert all(set(line) == {"entry"} for line in full[1:])
    assert merkle.root_hash(leaves) == head.root  # the whole tree, recomputed offline

    scoped = await _export(hub, police, size=str(head.size))
    police_entries = [AuditEntry.from_wire(line["entry"]) for line in scoped[1:]]
    visible = await hub.store.audit_entries(
        AuditQuery(viewer=police.org, end=head.size, limit=1000)
    )
    assert police_entries == visible and len(visible) < head.size
    response = await hub.client.get(
        "/v1/audit/export", params={"proofs": "false"}, headers=police.headers(**AUDIT)
    )
    await hub.problem(response, 400, "malformed")


# -- the sequencer under load ----------------------------------------------------------------


async def test_a_hundred_simultaneous_requests_get_gap_free_indexes(hub: HubHarness) -> None:
    police, ggd, _, _ = await _network(hub)
    before = len(await hub.audit())
    responses = await asyncio.gather(
        *(
            hub.send(police, hub.envelope(police, [ggd]))
            if n % 2
            else hub.client.get("/v1/inbox", headers=ggd.headers())
            for n in range(100)
        )
    )
    assert sorted({r.status for r in responses}) == [200, 201]
    entries = await hub.audit()  # checks indexes 0..n-1 and the stored root of all leaves
    assert len(entries) == before + 100
    assert len({e.request_id for e in entries[before:]}) == 100
