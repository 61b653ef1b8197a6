"""A client that sees the hub's key sign two heads that can not both be true keeps the
evidence, raises an alert for the privacy officer, and stops (clients.logwatch,
clients.witnessing); a proof that merely fails is an inconsistency without evidence."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from client_harness import Hub

from clients.errors import AuditLogInconsistent, SplitView
from clients.transport import Request, Response
from protocol import merkle
from protocol.auditlog import TreeHead, sign_tree_head
from protocol.encoding import b64e
from protocol.evidence import parse_evidence, verify_evidence


def lie(head: TreeHead, proof: list[bytes] | None = None) -> Any:
    """An answer hook: the head route serves ``head``; with ``proof``, the consistency
    route serves that proof."""

    def answer(request: Request, response: Response) -> Response:
        if request.method == "GET" and request.url.endswith("/v1/audit/head"):
            return Response(200, response.headers, json.dumps({"head": head.to_wire()}).encode())
        if proof is not None and "/v1/audit/consistency" in request.url:
            to = int(request.url.rsplit("to=", 1)[1])
            body = {"from": int(request.url.split("from=")[1].split("&")[0]), "to": to,
                    "proof": [b64e(node) for node in proof]}  # fmt: skip
            return Response(200, response.headers, json.dumps(body).encode())
        return response

    return answer


def signed(hub: Hub, size: int, root: bytes) -> TreeHead:
    cert = hub.hub_keys.certificate
    assert cert is not None
    return sign_tree_head(hub.hub_keys.signing_key, cert, size=size, root=root,
                          time=hub.clock.seconds())  # fmt: skip


async def kept_head(hub: Hub) -> tuple[Any, TreeHead]:
    privacy = await hub.join("privacy", "network_privacy_officer")
    ggd = await hub.join("ggd")
    kept = await ggd.log.check(await privacy.hub.sign_audit_head())
    # Evidence of an inconsistency needs a smaller size that is no power of two (a proof
    # from such a size holds no node that is its root: protocol/evidence.py).
    while kept is not None and kept.size & (kept.size - 1) == 0:
        kept = await ggd.log.check(await privacy.hub.sign_audit_head())
    assert kept is not None
    return ggd, kept


def proven(hub: Hub, caught: SplitView) -> Any:
    evidence = Path(caught.evidence)
    assert evidence.stat().st_mode & 0o777 == 0o600
    return verify_evidence(parse_evidence(evidence.read_bytes()), hub.authority.root)


async def test_a_second_root_for_the_kept_size_is_kept_as_fork_evidence(hub: Hub) -> None:
    ggd, kept = await kept_head(hub)
    fork = signed(hub, kept.size, hashlib.sha256(b"fork").digest())
    hub.taps["ggd"].answer = lie(fork)
    with pytest.raises(SplitView, match="same size differ") as caught:
        await ggd.log.check()
    found = proven(hub, caught.value)
    assert found.kind == "fork" and {found.first.root, found.second.root} == {kept.root, fork.root}
    assert ggd.state.tree_head == kept
    [alert] = ggd.alerts
    assert alert["kind"] == "split-view" and alert["evidence"] == caught.value.evidence


async def test_a_proof_binding_the_kept_size_to_another_root_is_kept_as_evidence(
    hub: Hub,
) -> None:
    ggd, kept = await kept_head(hub)
    other = [merkle.leaf_hash(b"another history %d" % i) for i in range(kept.size + 5)]
    head = signed(hub, len(other), merkle.root_hash(other))
    proof = merkle.consistency_proof(kept.size, other)
    hub.taps["ggd"].answer = lie(head, proof)
    with pytest.raises(SplitView, match="history rewritten") as caught:
        await ggd.log.check()
    found = proven(hub, caught.value)
    assert found.kind == "inconsistent" and found.prefix_root == merkle.root_hash(
        other[: kept.size]
    )
    assert ggd.state.tree_head == kept and len(ggd.alerts) == 1


async def test_a_proof_that_merely_fails_is_no_evidence(hub: Hub) -> None:
    ggd, kept = await kept_head(hub)
    head = signed(hub, kept.size + 3, hashlib.sha256(b"other").digest())
    hub.taps["ggd"].answer = lie(head, [bytes(32)])
    with pytest.raises(AuditLogInconsistent, match="history rewritten") as caught:
        await ggd.log.check()
    assert not isinstance(caught.value, SplitView)
    assert ggd.alerts == () and not (ggd.state.path.parent / "evidence").exists()
