"""The client's side of the access log, on the real hub: heads at every contact, and what a
privacy officer verifies.

The hub is ``hub.app`` (``conftest.hub``); it lies through ``Tap.answer`` (a head it
never signed, a head signed over another history with the hub's own key) or through its
database. tests/integration/test_audit.py tampers with the log itself on both kinds of
database; these tests hold the client's rules: what a head must be, what each kind of
verification proves, and that a file which is not an export is not an incident.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import pytest
from client_harness import USER, Hub

from clients.errors import AuditLogInconsistent, NotReady
from clients.exports import ENTRY_COLUMNS, ndjson_line
from clients.logproofs import (
    ExportChecker,
    ExportRecord,
    ExportUnreadable,
    locate_first_bad,
    parse_export_record,
)
from clients.organisation import Organisation
from clients.privacy_officer import (
    ALL,
    FULL,
    SAMPLE,
    PrivacyOfficer,
    find_anomalies,
    verify_export_file,
)
from clients.transport import Request, Response
from protocol import merkle
from protocol.auditlog import AuditEntry, Erasure, TreeHead, seal_entry, sign_tree_head
from protocol.encoding import b64e, loads_strict

MSG_A = "A" * 22


def entry(index: int, **fields: Any) -> AuditEntry:
    base: dict[str, Any] = {
        "index": index,
        "time": 1_750_000_000 + index,
        "action": "read",
        "outcome": "allowed",
        "reason": None,
        "org": "police",
        "user": "j.jansen",
        "role": "member",
        "purpose": "case-coordination",
        "purpose_text": None,
        "object_type": "message",
        "object_ids": (MSG_A,),
        "pseudonyms": (),
        "source": "127.0.0.1",
        "request_id": f"{index:08x}",
    }
    return AuditEntry(**(base | fields))


def serve_head(head: TreeHead | None) -> Any:
    """An answer hook: the hub's head route serves ``head`` (None: withholds it)."""

    def answer(request: Request, response: Response) -> Response:
        if request.method == "GET" and request.url.endswith("/v1/audit/head"):
            wire = None if head is None else head.to_wire()
            return Response(200, response.headers, json.dumps({"head": wire}).encode())
        return response

    return answer


def forged(hub: Hub, size: int, root: bytes) -> TreeHead:
    """A head signed with the hub's own certified key over whatever the hub chose."""
    cert = hub.hub_keys.certificate
    assert cert is not None
    return sign_tree_head(hub.hub_keys.signing_key, cert, size=size, root=root,
                          time=hub.clock.seconds())  # fmt: skip


async def officers(hub: Hub) -> tuple[Organisation, Organisation, Organisation]:
    """A network privacy officer, an organisation's officer, and an organisation without."""
    privacy = await hub.join("privacy", "network_privacy_officer")
    police = await hub.join("police", "privacy_officer")
    ggd = await hub.join("ggd")
    return privacy, police, ggd


async def traffic(hub: Hub, police: Organisation, to: str = "ggd") -> None:
    payload = {"schema": "schakel.signal/1", "person": {"bsn": "111222333"},
               "exploitation": "labour", "urgency": "high", "consent_to_share": True}  # fmt: skip
    await police.send_signal(payload, [to])
    await hub.orgs[to].receive()


# -- tree heads at every contact ------------------------------------------------------


async def test_no_head_is_accepted_until_one_was_seen_then_one_is_always_needed(hub: Hub) -> None:
    privacy, _, ggd = await officers(hub)
    assert await ggd.log.check() is None  # the hub has signed none yet
    signed = await privacy.hub.sign_audit_head()
    assert await ggd.log.check() == signed and ggd.state.tree_head == signed
    hub.taps["ggd"].answer = serve_head(None)
    with pytest.raises(AuditLogInconsistent, match="serves no signed tree head") as caught:
        await ggd.log.check()
    assert f"kept head: size {signed.size}, root {b64e(signed.root)}" in str(caught.value)


async def test_a_growing_log_is_checked_by_consistency_proof_and_kept(hub: Hub) -> None:
    privacy, police, ggd = await officers(hub)
    first = await ggd.log.check(await privacy.hub.sign_audit_head())
    assert first is not None
    await traffic(hub, police)
    second = await privacy.hub.sign_audit_head()
    assert second.size > first.size and await ggd.log.check() == second
    asked = [r.url for r in hub.taps["ggd"].requests if "/audit/consistency" in r.url]
    assert asked == [f"{hub.url}/v1/audit/consistency?from={first.size}&to={second.size}"]
    assert ggd.state.tree_head == second


async def test_a_shorter_forked_or_rewritten_log_is_caught_and_the_kept_head_stays(
    hub: Hub,
) -> None:
    privacy, police, ggd = await officers(hub)
    old = await privacy.hub.sign_audit_head()
    await traffic(hub, police)
    kept = await ggd.log.check(await privacy.hub.sign_audit_head())
    assert kept is not None
    lies = [
        (old, "truncated"),  # a head the hub signed before: the log is shorter now
        (forged(hub, kept.size, hashlib.sha256(b"fork").digest()), "same size differ"),
        (forged(hub, kept.size + 3, hashlib.sha256(b"other").digest()), "history rewritten"),
    ]
    for head, says in lies:
        hub.taps["ggd"].answer = serve_head(head)
        with pytest.raises(AuditLogInconsistent, match=says) as caught:
            await ggd.log.check()
        assert f"kept head: size {kept.size}" in str(caught.value)
        assert ggd.state.tree_head == kept  # the kept head does not move


async def test_a_head_with_a_bad_signature_is_refused(hub: Hub) -> None:
    privacy, _, ggd = await officers(hub)
    head = await privacy.hub.sign_audit_head()
    hub.taps["ggd"].answer = serve_head(
        TreeHead.from_wire(head.to_wire() | {"sig": b64e(bytes(64))})
    )
    with pytest.raises(AuditLogInconsistent, match="not signed by the certified hub key"):
        await ggd.log.check()
    assert ggd.state.tree_head is None


async def test_the_organisation_checks_at_most_once_per_interval(hub: Hub) -> None:
    privacy, _, ggd = await officers(hub)
    await privacy.hub.sign_audit_head()
    tap = hub.taps["ggd"]
    before = sum(r.url.endswith("/v1/audit/head") for r in tap.requests)
    await ggd.log.check()
    await ggd.log.check_if_due()
    hub.clock.advance(61)
    await ggd.log.check_if_due()
    assert sum(r.url.endswith("/v1/audit/head") for r in tap.requests) - before == 2


async def test_the_kept_head_survives_a_restart(hub: Hub) -> None:
    privacy, _, ggd = await officers(hub)
    await ggd.log.check(await privacy.hub.sign_audit_head())
    again = await hub.restart("ggd")
    hub.taps["ggd"].answer = serve_head(None)
    with pytest.raises(AuditLogInconsistent, match="serves no signed tree head"):
        await again.log.check()


# -- what a privacy officer verifies ----------------------------------------------------


async def test_the_default_is_the_strongest_cheap_check_and_says_what_it_proves(
    hub: Hub,
) -> None:
    privacy, police, _ = await officers(hub)
    await traffic(hub, police)
    whole = await PrivacyOfficer(privacy).verify()
    assert whole.mode == FULL and whole.checked == whole.head.size
    assert "no entry was changed, removed or reordered" in whole.text()
    own = await PrivacyOfficer(police).verify()
    assert own.mode == ALL and 0 < own.checked == own.visible < own.head.size
    assert "all" in own.text() and "network privacy officer (--full)" in own.text()
    sample = await PrivacyOfficer(police, rng=random.Random(1)).verify_sample(2)
    assert sample.mode == SAMPLE and sample.checked == 2 and sample.visible > own.visible
    assert "NOT that no other entry was changed or removed" in sample.text()


async def test_an_updated_visible_entry_is_found_by_the_default_check(hub: Hub) -> None:
    # The finding: a sample of 20 passed a tampered log; proving every visible entry does not.
    _, police, _ = await officers(hub)
    await traffic(hub, police)
    head = await PrivacyOfficer(police).fresh_head()
    [(index,)] = hub.rows(
        'SELECT max("index") FROM audit_log WHERE org = ? AND "index" < ?', "police", head.size
    )
    assert hub.sql('UPDATE audit_openings SET "user" = ? WHERE "index" = ?', "mallory", index)
    with pytest.raises(AuditLogInconsistent, match="do not match its commitment") as caught:
        await PrivacyOfficer(police).verify()
    assert caught.value.index == index
    assert hub.sql('UPDATE audit_openings SET "user" = NULL WHERE "index" = ?', index) == 1
    assert hub.sql('UPDATE audit_log SET "time" = "time" + 1 WHERE "index" = ?', index) == 1
    with pytest.raises(AuditLogInconsistent, match="does not match the signed head") as caught:
        await PrivacyOfficer(police).verify()
    assert caught.value.index == index


async def test_entries_are_proven_a_page_at_a_time_not_a_request_each(hub: Hub) -> None:
    privacy, police, _ = await officers(hub)
    for _ in range(3):
        await traffic(hub, police)
    officer = PrivacyOfficer(police)
    head = await officer.fresh_head()
    tap = hub.taps["police"]
    before = len(tap.requests)
    own = await officer.verify_visible()
    asked = [r.url for r in tap.requests[before:]]
    assert own.mode == ALL and own.checked == own.visible > 10
    assert not any("/proof" in url for url in asked), asked
    assert sum("/v1/audit/entries?" in url and "size=" in url for url in asked) == 1
    before = len(tap.requests)
    _, rows = await officer.user_report(USER, "police")
    assert rows and not any("/proof" in r.url for r in tap.requests[before:])

    def forge(request: Request, response: Response) -> Response:
        """A hub that serves a page whose first proof is for another place in the tree."""
        if "/v1/audit/entries?" not in request.url or response.status != 200:
            return response
        body = json.loads(response.body)
        body["proofs"][0] = body["proofs"][-1]
        return Response(200, response.headers, json.dumps(body).encode())

    tap.answer = forge
    with pytest.raises(AuditLogInconsistent, match="does not match the signed head") as caught:
        await officer.verify_visible()
    assert caught.value.index is not None and caught.value.index < head.size
    tap.answer = None
    assert (await PrivacyOfficer(privacy).verify()).mode == FULL  # nothing was wrong


async def test_full_verification_is_for_the_network_privacy_officer(hub: Hub) -> None:
    _, police, ggd = await officers(hub)
    with pytest.raises(NotReady, match="network privacy officer"):
        await PrivacyOfficer(police).verify_full()
    for method in ("verify", "verify_sample", "verify_visible"):
        with pytest.raises(NotReady, match="no privacy officer role"):
            await getattr(PrivacyOfficer(ggd), method)()


async def _export(officer: PrivacyOfficer, path: Path) -> list[bytes]:
    head = await officer.fresh_head()
    lines = [line async for line in officer.hub.audit_export(size=head.size)]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return lines


async def test_an_export_file_verifies_offline_and_tampering_is_named(
    hub: Hub, tmp_path: Path
) -> None:
    privacy, police, _ = await officers(hub)
    await traffic(hub, police)
    good = tmp_path / "good.ndjson"
    lines = await _export(PrivacyOfficer(privacy), good)
    hub.taps["privacy"].down = True  # offline: the hub is not asked
    assert verify_export_file(privacy, good, full=True).checked == len(lines) - 1
    docs = [loads_strict(line) for line in lines]
    docs[4]["entry"]["opening"]["user"] = "forged"  # docs[0] is the head
    bad = tmp_path / "bad.ndjson"
    bad.write_text("".join(ndjson_line(d) for d in docs))
    for full in (False, True):
        with pytest.raises(AuditLogInconsistent, match="do not match its commitment") as caught:
            verify_export_file(privacy, bad, full=full)
        assert caught.value.index == 3
    docs = [loads_strict(line) for line in lines]
    docs[5]["entry"]["object_type"] = (
        "audit" if docs[5]["entry"]["object_type"] != "audit" else "auth"
    )
    bad = tmp_path / "bad-public.ndjson"
    bad.write_text("".join(ndjson_line(d) for d in docs))
    with pytest.raises(AuditLogInconsistent, match="does not match the signed head") as caught:
        verify_export_file(privacy, bad, full=False)
    assert caught.value.index == 4
    dropped = tmp_path / "dropped.ndjson"
    dropped.write_bytes(b"".join(line + b"\n" for i, line in enumerate(lines) if i != 5))
    with pytest.raises(AuditLogInconsistent, match="entry 4 is missing"):
        verify_export_file(privacy, dropped, full=True)


# A version 2 entry without its opening, and one marked erased without saying when and why:
# not entries at all (a file problem), unlike a tampered opening (an inconsistency).
_V2_VECTOR = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "auditlog.json").read_text("utf-8")
)["entries"]
V2_NO_OPENING = json.dumps(
    {k: v for k, v in _V2_VECTOR[1]["wire"].items() if k != "opening"}
).encode()
V2_ERASED_WITHOUT_WHY = json.dumps(
    {k: v for k, v in _V2_VECTOR[3]["wire"].items() if k != "erasure"}
).encode()


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"", "it is empty"),
        (b"this is not json\n", "its first line is not strict JSON"),
        (b"[1, 2]\n", "its first line is not a JSON object"),
        (b'{"head": {"size": 1}}\n', "its first line is not a signed tree head"),
        (b"HEAD\n{not json\n", "line 2 is not strict JSON"),
        (b'HEAD\n{"entry": {"index": 0}}\n', "line 2 is not an access-log entry"),
        (b"HEAD\n" + b"x" * 300_000 + b"\n", "line 2 is longer than"),
        (b'HEAD\n{"entry": ' + V2_NO_OPENING + b"}\n", "line 2 is not an access-log entry"),
        (b'HEAD\n{"entry": ' + V2_ERASED_WITHOUT_WHY + b"}\n", "line 2 is not an access-log"),
    ],
)
async def test_a_file_that_is_not_an_export_is_a_file_error_not_an_incident(
    hub: Hub, tmp_path: Path, content: bytes, says: str
) -> None:
    privacy, _, _ = await officers(hub)
    head = await PrivacyOfficer(privacy).fresh_head()
    path = tmp_path / "export.ndjson"
    path.write_bytes(
        content.replace(b"HEAD", ndjson_line({"head": head.to_wire()}).strip().encode())
    )
    with pytest.raises(ExportUnreadable) as caught:
        verify_export_file(privacy, path, full=True)
    assert not isinstance(caught.value, AuditLogInconsistent)
    assert says in str(caught.value) and str(path) in str(caught.value)
    assert "nothing was verified" in str(caught.value)


# -- pure checks --------------------------------------------------------------------------


def _head(entries: list[AuditEntry]) -> TreeHead:
    return TreeHead("test-net", len(entries), merkle.root_hash([e.leaf() for e in entries]),
                    1_750_000_100, "A" * 43, bytes(64))  # fmt: skip


def test_export_checker_refuses_out_of_order_and_unproven_entries() -> None:
    head = _head([entry(i) for i in range(10)])
    checker = ExportChecker(head, full=False)
    line = ndjson_line({"entry": entry(2).to_wire(), "proof": None}).encode()
    with pytest.raises(AuditLogInconsistent, match="no inclusion proof"):
        checker.feed(parse_export_record(line, 2))
    with pytest.raises(ExportUnreadable, match="not strict JSON"):
        parse_export_record(b'{"entry": 1, "entry": 2}', 2)


def _hub_line(document: dict[str, object]) -> bytes:
    """An export line as the hub writes it (``hub.http.accesslog``)."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


_FIELDS = ENTRY_COLUMNS  # every field of an entry but its version, commitment and opening


def _sealed(index: int, **fields: Any) -> AuditEntry:
    plain = entry(index, **fields)
    return seal_entry(salt=bytes(range(32)), **{name: getattr(plain, name) for name in _FIELDS})


@pytest.mark.parametrize("version", [1, 2])
def test_export_lines_as_written_and_otherwise_parse_alike(version: int) -> None:
    """The cheap path (a line exactly as the hub or ``audit export`` writes it) and the
    strict parser give the same record, and what the strict parser refuses stays refused."""
    made = entry(3) if version == 1 else _sealed(3)
    wire = made.to_wire()
    written = [
        _hub_line({"entry": wire}),
        ndjson_line({"entry": wire, "proof": None}).encode(),
        json.dumps({"entry": wire}, indent=1).encode(),  # not as written: strict path
    ]
    records = [parse_export_record(line, 2) for line in written]
    assert all(record == ExportRecord(made, None) for record in records)
    entry_text = json.dumps(wire, separators=(",", ":"))
    refused = [
        (b'{"entry":' + entry_text.encode() + b',"entry":' + entry_text.encode() + b"}",
         "not strict JSON"),
        (_hub_line({"entry": wire, "extra": 2**60}), "not strict JSON"),
        (_hub_line({"entry": wire, "extra": 1.5}), "not strict JSON"),
        (_hub_line({"entry": {**wire, "time": 2**60}}), "not strict JSON"),
            (_hub_line({"entry": {**wire, "time": -1}}), "not an access-log entry"),
        (_hub_line({"entry": {**wire, "index": 1.0}}), "not strict JSON"),
        (_hub_line({"entry": wire, "proof": [2**60]}), "not strict JSON"),
        (_hub_line({"entry": wire, "proof": ["!"]}), "proof is malformed"),
    ]  # fmt: skip
    for line, says in refused:
        with pytest.raises(ExportUnreadable, match=says):
            parse_export_record(line, 2)


def test_a_tampered_opening_in_a_line_as_written_is_caught() -> None:
    """A version 2 line exactly as the hub writes it, its opening changed: it parses on
    the cheap path, and the opening does not match the commitment."""
    entries = [_sealed(i) for i in range(3)]
    checker = ExportChecker(_head(entries), full=True)
    for honest in entries[:2]:
        checker.feed(parse_export_record(_hub_line({"entry": honest.to_wire()}), 2))
    wire = entries[2].to_wire()
    wire["opening"] = {**wire["opening"], "user": "k.devries"}
    with pytest.raises(AuditLogInconsistent, match="entry 2 do not match its commitment"):
        checker.feed(parse_export_record(_hub_line({"entry": wire}), 4))


@pytest.mark.parametrize("bad", [0, 1, 5, 8, 9])
async def test_binary_search_finds_any_bad_index(bad: int) -> None:
    honest = [entry(i).leaf() for i in range(10)]
    head = _head([entry(i) for i in range(10)])
    served = list(honest)
    served[bad] = entry(bad, user="x").leaf()

    async def consistency(old: int, new: int) -> list[bytes]:
        return merkle.consistency_proof(old, honest[:new])

    assert await locate_first_bad(served, head, consistency) == bad


def test_anomalies_flag_volume_and_denied_reads() -> None:
    many = [entry(i, object_ids=(f"{i:022d}",)) for i in range(6)]
    denied = entry(6, org="ggd", outcome="denied", reason="not-found")
    found = find_anomalies([*many, denied], max_objects=5)
    assert [(a.kind, a.org, a.count) for a in found] == [
        ("outside-recipients", "ggd", 1),
        ("volume", "police", 6),
    ]
    assert find_anomalies(many, max_objects=6) == []


def _fed(entries: list[AuditEntry], line: bytes, *, by_line: bool) -> tuple[object, ...]:
    """Feed ``line`` after the first two entries: the error it raised (type, message,
    index) or none, and what the checker holds after it."""
    checker = ExportChecker(_head(entries), full=True)
    for position, entry in enumerate(entries[:2], start=2):
        checker.feed(parse_export_record(_hub_line({"entry": entry.to_wire()}), position))
    error: tuple[object, ...] = ()
    try:
        if by_line:
            checker.feed_line(line, 4)
        else:
            checker.feed(parse_export_record(line, 4))
    except (AuditLogInconsistent, ExportUnreadable) as exc:
        error = (type(exc), str(exc), getattr(exc, "index", None))
    return error, checker.leaves, checker.count, checker.erased


def test_feeding_a_line_checks_as_parsing_it_and_feeding_the_record() -> None:
    """``feed_line`` (which checks a line as written straight from its text) and
    ``feed(parse_export_record(...))`` agree on every line: good ones, tampered ones (a
    changed byte, an unknown or duplicate key, a wrong commitment), gaps and reorders."""
    entries = [_sealed(i) for i in range(6)]
    entries[5] = entries[5].without_opening(Erasure(time=1_800_000_000, reason="retention"))
    lines = [_hub_line({"entry": e.to_wire()}) for e in entries]
    forged = entries[2].to_wire()
    forged["opening"] = {**forged["opening"], "user": "k.devries"}
    variants = {
        "as written": lines[2],
        "as audit export writes it": ndjson_line(
            {"entry": entries[2].to_wire(), "proof": None}
        ).encode(),
        "a changed byte": lines[2].replace(b'"read"', b'"reaD"'),
        "a changed byte in the opening": lines[2].replace(b'"j.jansen"', b'"j.janseN"'),
        "an unknown key": lines[2].replace(b'"v":2', b'"v":2,"w":1'),
        "a duplicate key": lines[2].replace(b'"v":2', b'"v":2,"v":2'),
        "a wrong commitment": _hub_line({"entry": forged}),
        "a gap": lines[3],
        "a reorder": lines[1],
        "beyond the head": _hub_line({"entry": _sealed(9).to_wire()}),
    }
    for what, line in variants.items():
        by_line = _fed(entries, line, by_line=True)
        assert by_line == _fed(entries, line, by_line=False), what
        assert (by_line[0] == ()) == what.startswith("as "), what
    checker = ExportChecker(_head(entries), full=True)
    for position, line in enumerate(lines, start=2):
        checker.feed_line(line, position)
    assert checker.finish() and checker.count == 6 and checker.erased == 1
