"""The client's side of the access log against an in-memory hub that can lie.

The fake hub keeps its Merkle leaves apart from the entries it serves, so a test
can tamper with what is served (an updated, deleted or truncated entry) while the
stored tree stays, or rewrite the whole log and sign a new head with the hub's own
key, as a compromised hub could.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from clients.audit import ExportChecker, parse_export_record
from clients.audit_format import ndjson_line
from clients.errors import AuditLogInconsistent, NotReady
from clients.hub_client import EntryPage, HubInfo, InclusionProof
from clients.organisation import Organisation
from clients.privacy import PrivacyOfficer, find_anomalies, verify_export_file
from clients.state import LocalState
from keys.authority import Authority
from keys.hub import HubKeys
from keys.organisation import OrgKeys
from protocol import merkle
from protocol.auditlog import AuditEntry, TreeHead, sign_tree_head
from protocol.encoding import b64e
from protocol.pseudonym import Identity, derive_pseudonyms
from schakel import demo as demo_network

NOW = 1_750_000_000
ORGS = {
    "police": ("member", "privacy_officer"),
    "privacy": ("member", "network_privacy_officer"),
    "ggd": ("member",),
}
MSG_A = "A" * 22
MSG_B = "B" * 21 + "A"


class Clock:
    def __init__(self) -> None:
        self.now = float(NOW)

    def __call__(self) -> float:
        return self.now


def entry(index: int, **fields: Any) -> AuditEntry:
    base: dict[str, Any] = {
        "index": index,
        "time": NOW + index,
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
    base.update(fields)
    return AuditEntry(**base)


@dataclass
class LogHub:
    """The /v1/audit routes in memory; ``served`` may differ from the tree's leaves."""

    hub_keys: HubKeys
    crl: bytes
    entries: list[AuditEntry] = field(default_factory=list)
    served: list[AuditEntry] | None = None
    head: TreeHead | None = None
    calls: list[str] = field(default_factory=list)

    def append(self, *new: AuditEntry) -> None:
        self.entries.extend(new)

    def sign(self, size: int | None = None, entries: list[AuditEntry] | None = None) -> TreeHead:
        leaves = [e.leaf() for e in (entries or self.entries)][: size or None]
        cert = self.hub_keys.certificate
        assert cert is not None
        self.head = sign_tree_head(
            self.hub_keys.signing_key,
            cert,
            size=len(leaves),
            root=merkle.root_hash(leaves),
            time=NOW + len(leaves),
        )
        return self.head

    def visible(self) -> list[AuditEntry]:
        return self.entries if self.served is None else self.served

    # HubClient's methods ------------------------------------------------------------

    async def get_crl(self) -> bytes:
        return self.crl

    async def hub_info(self) -> HubInfo:
        cert = self.hub_keys.certificate
        assert cert is not None
        return HubInfo("test-net", "aud", "iss", cert.der, {})

    async def audit_head(self) -> TreeHead | None:
        self.calls.append("head")
        return self.head

    async def sign_audit_head(self, **_: Any) -> TreeHead:
        return self.sign()

    async def audit_consistency(self, old_size: int, new_size: int) -> list[bytes]:
        self.calls.append(f"consistency {old_size} {new_size}")
        leaves = [e.leaf() for e in self.entries[:new_size]]
        return merkle.consistency_proof(old_size, leaves)

    async def audit_entries(
        self, *, start: int | None = None, end: int | None = None, limit: int = 1000, **f: Any
    ) -> EntryPage:
        chosen = [
            e
            for e in self.visible()
            if (start or 0) <= e.index < (end if end is not None else 1 << 40)
            and (f.get("user") is None or e.user == f["user"])
            and (f.get("object") is None or f["object"] in e.object_ids)
            and (f.get("pseudonym") is None or f["pseudonym"] in e.pseudonyms)
            and (f.get("action") is None or e.action == f["action"])
        ]
        page = chosen[:limit]
        more = len(chosen) > limit
        return EntryPage(tuple(page), page[-1].index + 1 if more else None)

    async def audit_inclusion(
        self, index: int, size: int | None = None, **_: Any
    ) -> InclusionProof:
        size = size or len(self.entries)
        leaves = [e.leaf() for e in self.entries[:size]]
        return InclusionProof(
            index, size, leaves[index], tuple(merkle.inclusion_proof(index, leaves))
        )

    async def audit_export(
        self, *, size: int | None = None, proofs: bool = True, **_: Any
    ) -> AsyncIterator[bytes]:
        assert self.head is not None
        size = size or self.head.size
        leaves = [e.leaf() for e in self.entries[:size]]
        yield ndjson_line({"head": self.head.to_wire()}).encode()
        for e in self.visible():
            if e.index < size:
                proof = (
                    [b64e(h) for h in merkle.inclusion_proof(e.index, leaves)] if proofs else None
                )
                yield ndjson_line({"entry": e.to_wire(), "proof": proof}).encode()


@dataclass
class Net:
    demo: demo_network.DemoNetwork
    hub: LogHub
    clock: Clock

    def open(self, org: str, **kwargs: Any) -> Organisation:
        keys = OrgKeys.open(self.demo.home(org) / "keys", self.demo.passphrase)
        state = LocalState(self.demo.home(org) / "state.sqlite")
        return Organisation(keys, state, self.hub, clock=self.clock, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def net(tmp_path: Path) -> Net:
    demo = demo_network.provision(tmp_path / "demo", now=NOW, orgs=ORGS, network="test-net")  # type: ignore[arg-type]
    authority = Authority.open(demo.authority_dir, demo.passphrase)
    hub_keys = HubKeys.open(demo.hub_dir, demo.passphrase)
    hub = LogHub(hub_keys, authority.crl(now=NOW).der)
    hub.append(*(entry(i) for i in range(10)))
    return Net(demo, hub, Clock())


# -- tree heads at every contact ------------------------------------------------------


async def test_no_head_is_accepted_until_one_was_seen(net: Net) -> None:
    org = net.open("ggd")
    assert await org.log.check() is None
    head = net.hub.sign()
    assert await org.log.check() == head
    assert org.state.tree_head == head
    net.hub.head = None
    with pytest.raises(AuditLogInconsistent, match="serves no signed tree head") as caught:
        await org.log.check()
    assert f"kept head: size 10, root {b64e(head.root)}" in str(caught.value)


async def test_a_growing_log_is_checked_by_consistency_proof_and_kept(net: Net) -> None:
    org = net.open("ggd")
    net.hub.sign()
    await org.log.check()
    net.hub.append(*(entry(i) for i in range(10, 17)))
    new = net.hub.sign()
    assert await org.log.check() == new
    assert "consistency 10 17" in net.hub.calls
    assert org.state.tree_head == new


async def test_a_truncated_log_is_caught(net: Net) -> None:
    org = net.open("ggd")
    old = net.hub.sign()
    await org.log.check()
    del net.hub.entries[7:]
    new = net.hub.sign()
    with pytest.raises(AuditLogInconsistent) as caught:
        await org.log.check()
    message = str(caught.value)
    assert "truncated" in message
    assert (
        f"size 10, root {b64e(old.root)}" in message and f"size 7, root {b64e(new.root)}" in message
    )
    assert org.state.tree_head == old  # the kept head does not move


async def test_a_fork_of_the_same_size_is_caught(net: Net) -> None:
    org = net.open("ggd")
    net.hub.sign()
    await org.log.check()
    forked = list(net.hub.entries)
    forked[3] = entry(3, user="someone.else")
    net.hub.sign(entries=forked)
    with pytest.raises(AuditLogInconsistent, match="same size differ"):
        await org.log.check()


async def test_a_rewritten_history_signed_by_the_hub_itself_is_caught(net: Net) -> None:
    org = net.open("ggd")
    net.hub.sign()
    await org.log.check()
    net.hub.entries = [entry(i, user="rewritten") for i in range(10)] + [
        entry(i) for i in range(10, 12)
    ]
    net.hub.sign()  # valid signature by the certified key, over another history
    with pytest.raises(AuditLogInconsistent, match="history rewritten"):
        await org.log.check()


async def test_a_head_with_a_bad_signature_is_refused(net: Net) -> None:
    org = net.open("ggd")
    head = net.hub.sign()
    net.hub.head = replace(head, sig=bytes(64))
    with pytest.raises(AuditLogInconsistent, match="not signed by the certified hub key"):
        await org.log.check()
    assert org.state.tree_head is None


async def test_the_organisation_checks_at_most_once_per_interval(net: Net) -> None:
    org = net.open("ggd", log_interval=60)
    net.hub.sign()
    await org.log.check_if_due()
    await org.log.check_if_due()
    net.clock.now += 61
    await org.log.check_if_due()
    assert net.hub.calls.count("head") == 2


async def test_the_kept_head_survives_a_restart(net: Net) -> None:
    org = net.open("ggd")
    net.hub.sign()
    await org.log.check()
    org.state.close()
    net.hub.head = None
    again = net.open("ggd")
    with pytest.raises(AuditLogInconsistent):
        await again.log.check()


# -- a privacy officer verifies --------------------------------------------------------


async def test_sample_verification_holds_for_an_honest_log(net: Net) -> None:
    officer = PrivacyOfficer(net.open("privacy"), rng=random.Random(1))
    result = await officer.verify_sample(5)
    assert result.checked == 5 and result.head.size == 10
    assert result.text() == "verified 5 entries against head of size 10"


async def test_sample_verification_names_an_updated_entry(net: Net) -> None:
    net.hub.served = list(net.hub.entries)
    net.hub.served[6] = entry(6, purpose="audit")
    officer = PrivacyOfficer(net.open("privacy"), rng=random.Random(1))
    with pytest.raises(AuditLogInconsistent) as caught:
        await officer.verify_sample(10)
    assert caught.value.index == 6 and "index 6" in str(caught.value)


async def test_sample_verification_names_a_deleted_entry(net: Net) -> None:
    net.hub.served = [e for e in net.hub.entries if e.index != 4]
    officer = PrivacyOfficer(net.open("privacy"))
    with pytest.raises(AuditLogInconsistent, match="entry 4 is missing") as caught:
        await officer.verify_sample(3)
    assert caught.value.index == 4


async def test_full_verification_locates_an_updated_entry(net: Net) -> None:
    net.hub.served = list(net.hub.entries)
    net.hub.served[7] = entry(7, outcome="denied", reason="not-found")
    officer = PrivacyOfficer(net.open("privacy"))
    with pytest.raises(AuditLogInconsistent, match="do not rebuild the root") as caught:
        await officer.verify_full()
    assert caught.value.index == 7


@pytest.mark.parametrize("bad", [0, 1, 5, 8, 9])
async def test_binary_search_finds_any_bad_index(net: Net, bad: int) -> None:
    net.hub.served = list(net.hub.entries)
    net.hub.served[bad] = entry(bad, user="x")
    with pytest.raises(AuditLogInconsistent) as caught:
        await PrivacyOfficer(net.open("privacy")).verify_full()
    assert caught.value.index == bad


async def test_full_verification_names_truncated_entries(net: Net) -> None:
    net.hub.served = net.hub.entries[:8]
    with pytest.raises(AuditLogInconsistent, match="truncated") as caught:
        await PrivacyOfficer(net.open("privacy")).verify_full()
    assert caught.value.index == 8


async def test_full_verification_is_for_the_network_privacy_officer(net: Net) -> None:
    with pytest.raises(NotReady, match="network privacy officer"):
        await PrivacyOfficer(net.open("police")).verify_full()
    with pytest.raises(NotReady, match="no privacy officer role"):
        await PrivacyOfficer(net.open("ggd")).verify_sample()


async def test_an_export_file_verifies_offline_and_tampering_is_named(
    net: Net, tmp_path: Path
) -> None:
    org = net.open("privacy")
    officer = PrivacyOfficer(org)
    head = await officer.fresh_head()
    lines = [line async for line in net.hub.audit_export(size=head.size)]
    good = tmp_path / "good.ndjson"
    good.write_bytes(b"\n".join(lines) + b"\n")
    net.hub.head = None  # offline: the hub is not asked
    assert verify_export_file(org, good, full=True).checked == 10
    # an entry changed in the file
    docs = [json.loads(line) for line in lines]
    docs[4]["entry"]["user"] = "forged"  # docs[0] is the head
    bad = tmp_path / "bad.ndjson"
    bad.write_text("".join(ndjson_line(d) for d in docs))
    with pytest.raises(AuditLogInconsistent) as caught:
        verify_export_file(org, bad, full=False)
    assert caught.value.index == 3
    # an entry dropped from the file
    dropped = tmp_path / "dropped.ndjson"
    dropped.write_bytes(b"".join(line + b"\n" for i, line in enumerate(lines) if i != 5))
    with pytest.raises(AuditLogInconsistent, match="entry 4 is missing") as caught:
        verify_export_file(org, dropped, full=True)


def test_export_checker_refuses_out_of_order_and_unproven_entries(net: Net) -> None:
    head = net.hub.sign()
    checker = ExportChecker(head, full=False)
    line = ndjson_line({"entry": entry(2).to_wire(), "proof": None}).encode()
    with pytest.raises(AuditLogInconsistent, match="no inclusion proof"):
        checker.feed(parse_export_record(line, 2))
    with pytest.raises(AuditLogInconsistent, match="not strict JSON"):
        parse_export_record(b'{"entry": 1, "entry": 2}', 2)


# -- reports ------------------------------------------------------------------------------


async def test_a_subject_report_lists_exactly_the_accesses_to_their_messages(net: Net) -> None:
    org = net.open("privacy")
    authority = Authority.open(net.demo.authority_dir, net.demo.passphrase)
    cert = org.certificate()
    sealed = authority.seal_linking_key(org.keys.current_bundle(now=NOW), cert, now=NOW)
    key = org.keys.store_linking_key(sealed, now=NOW)
    anna = derive_pseudonyms(Identity(bsn="111222333"), key)
    bram = derive_pseudonyms(Identity(bsn="123456782"), key)
    base = len(net.hub.entries)
    net.hub.append(
        entry(base, action="create", object_ids=(MSG_A,), pseudonyms=anna, org="police"),
        entry(base + 1, action="create", object_ids=(MSG_B,), pseudonyms=bram, org="ggd"),
        entry(
            base + 2,
            action="list",
            object_type="inbox",
            object_ids=(MSG_A, MSG_B),
            org="coordinator",
        ),
        entry(base + 3, action="read", object_ids=(MSG_B,), org="coordinator"),
        entry(base + 4, action="acknowledge", object_ids=(MSG_A,), org="coordinator"),
    )
    net.hub.entries[:base] = [entry(i, object_ids=("C" * 21 + "A",)) for i in range(base)]
    head, rows = await PrivacyOfficer(org).subject_report(Identity(bsn="111 222 333"))
    assert head.size == base + 5
    assert [r.index for r in rows] == [base, base + 2, base + 4]
    assert all(r.objects == (MSG_A,) for r in rows)  # MSG_B never shows


def test_anomalies_flag_volume_and_denied_reads() -> None:
    many = [entry(i, object_ids=(f"{i:022d}",)) for i in range(6)]
    denied = entry(6, org="ggd", outcome="denied", reason="not-found")
    found = find_anomalies([*many, denied], max_objects=5)
    assert [(a.kind, a.org, a.count) for a in found] == [
        ("outside-recipients", "ggd", 1),
        ("volume", "police", 6),
    ]
    assert find_anomalies(many, max_objects=6) == []
