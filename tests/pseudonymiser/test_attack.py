"""The attack of issue 15, demonstrated on a linking-key network and closed on an OPRF one.

The attacker has one organisation's key directory and its passphrase (a stolen laptop,
a backup), and wants the pseudonym of a given BSN, to find that person in a copy of the
hub's database. On a linking-key network the directory holds the key: one HMAC does it,
and ~10^8 of them walk every BSN. On an OPRF network the directory holds a signing key
and KEM seeds, nothing that computes a pseudonym; add the key share of one service and it
still does not: only both shares do, and anything else needs the other service, which
counts, limits and audits every evaluation.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest
from oprf_harness import T0, VERSION, Services

from keys.authority import Authority
from keys.keyfile import KIND_ED25519, KIND_KEM_SEED, KIND_LINKING_KEY, KdfParams, read_key_file
from keys.organisation import OrgKeys
from protocol import oprf
from protocol import ristretto as group
from protocol.pseudonym import encode_pseudonym, identifier_input, oprf_pseudonym, pseudonym
from protocol.types import NetworkId, OrgId

WEAK = KdfParams.for_tests()
BSN = "111222333"
PASS = b"org passphrase"


def _stolen_secrets(directory: Path) -> list[bytes]:
    """Every secret in an organisation's key directory, decrypted with its passphrase."""
    kinds = {"signing.key": KIND_ED25519, "kem-": KIND_KEM_SEED, "linking-key-": KIND_LINKING_KEY}
    found = []
    for path in sorted(directory.glob("*.key")):
        kind = next(k for prefix, k in kinds.items() if path.name.startswith(prefix))
        found.append(read_key_file(path, PASS, kind=kind))
    return found


def _candidates(secret: bytes, version: int) -> set[str]:
    """What an attacker computes from one secret: the HMAC pseudonym with it as the linking
    key, and the OPRF output with it (as a scalar, or hashed to one) as the whole key."""
    data = identifier_input("bsn", BSN)
    scalars = [oprf.random_scalar(hashlib.sha512(secret).digest())]
    if len(secret) >= 32 and 0 < int.from_bytes(secret[:32], "little") < group.ORDER:
        scalars.append(group.decode_scalar(secret[:32]))
    found = {oprf_pseudonym("bsn", version, oprf.evaluate(k, data)) for k in scalars}
    mac = hmac.new(secret, data, hashlib.sha256).digest()
    return found | {encode_pseudonym("bsn", version, mac)}


def _organisation(tmp_path: Path) -> tuple[Authority, OrgKeys]:
    net = NetworkId("testnet")
    authority = Authority.create(
        tmp_path / "authority", net, b"root", WEAK, now=T0, allow_weak=True
    )
    keys = OrgKeys.create(tmp_path / "politie", net, OrgId("politie"), PASS, WEAK, allow_weak=True)
    keys.pin_root(authority.root.der, now=T0)
    keys.import_certificate(authority.enrol(keys.request_der, ["member"], now=T0).der, now=T0)
    return authority, keys


def test_on_a_linking_key_network_one_organisations_files_give_every_pseudonym(
    tmp_path: Path,
) -> None:
    authority, keys = _organisation(tmp_path)
    authority.new_linking_key()
    bundle = keys.current_bundle(now=T0)
    keys.store_linking_key(
        authority.seal_linking_key(bundle, keys.certificate, now=T0),
        now=T0,  # type: ignore[arg-type]
    )
    target = pseudonym("bsn", BSN, authority.current_linking_key())  # as the hub stores it
    stolen = _stolen_secrets(keys.directory)
    assert any(target in _candidates(secret, 1) for secret in stolen)


@pytest.mark.parametrize("database_kind", ["sqlite"])  # storage: test_service.py
async def test_on_an_oprf_network_the_files_and_one_share_do_not_and_both_shares_do(
    tmp_path: Path, services: Services
) -> None:
    _authority, keys = _organisation(tmp_path)
    k1, k2 = services.network.shares
    whole = group.scalar_add(k1, k2)
    target = oprf_pseudonym("bsn", VERSION, oprf.evaluate(whole, identifier_input("bsn", BSN)))
    # What the attacker holds: the organisation's directory, service 1's share.
    stolen = [*_stolen_secrets(keys.directory), k1]
    assert len(stolen) == 3  # signing seed, KEM seed, share 1
    tried = set().union(*(_candidates(secret, VERSION) for secret in stolen))
    assert target not in tried
    # Both shares: the pseudonym, and so (at one evaluation each) every BSN's.
    assert (
        oprf_pseudonym(
            "bsn", VERSION, oprf.evaluate(group.scalar_add(k1, k2), identifier_input("bsn", BSN))
        )
        == target
    )
    # Otherwise the attacker must ask service 2 as the organisation: counted and limited.
    signer = services.network.org("politie")
    _batch, request = services.request(signer, service="oprf-2", values=[("bsn", BSN)])
    assert (await services.second.post(request.to_wire())).status == 200
    metrics = await (await services.second.client.get("/metrics")).text()
    assert "schakel_pseudonymiser_evaluations_total 1.0" in metrics
