"""The demo network's witnesses: every organisation's client, and one always-on witness.

:func:`provision_witnesses` (offline, once) gives every demo organisation a certified
witness key (``orgs/<org>/keys/witness/``, as ``schakel org witness-key`` does), makes the
always-on witness of the network authority (``var/demo/witness/``, as ``schakel witness
init`` and ``import`` do), and has the authority sign a witness policy listing them all
with a quorum of 2: a head is relied on once two organisations cosigned it (the acting
organisation's client and the always-on witness, within a second of the head). The
policy is written to ``var/demo/witness-policy.json``; :func:`publish_policy` uploads it.
:func:`running_witness` serves the always-on witness (C2SP tlog-witness) in the demo's
process, on a port of its own, for the hub to submit each new checkpoint to.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from clients.hub_client import HubClient
from keys.authority import Authority
from keys.hub import HubKeys
from keys.keyfile import KdfParams
from keys.organisation import OrgKeys
from keys.witness import WitnessKeys
from protocol.encoding import canonical_json, loads_strict
from protocol.types import OrgId
from protocol.witnesspolicy import WitnessPolicy
from witness.app import make_app
from witness.config import WitnessConfig
from witness.core import Cosigner, Witness, trusted_log
from witness.store import WitnessStore

if TYPE_CHECKING:
    from schakel.demo import DemoNetwork

ALWAYS_ON_ORG = OrgId("network-authority")  # the authority runs the always-on witness
QUORUM = 2
POLICY_FILE = "witness-policy.json"


def witness_dir(demo: DemoNetwork) -> Path:
    return demo.directory / "witness"


def provision_witnesses(demo: DemoNetwork, *, now: int) -> WitnessPolicy:
    """Witness keys and certificates for every organisation and the always-on witness;
    the policy over all of them (see the module docstring)."""
    authority = Authority.open(demo.authority_dir, demo.passphrase)
    serials = []
    for org in demo.orgs:
        keys = OrgKeys.open(demo.home(org) / "keys", demo.passphrase)
        witness = WitnessKeys.open_beside(keys) or WitnessKeys.create_beside(keys, now=now)
        serials.append(_certify(authority, witness, now))
    always_on = WitnessKeys.create(
        witness_dir(demo), demo.network, ALWAYS_ON_ORG, demo.passphrase, KdfParams.for_tests(),
        allow_weak=True,
    )  # fmt: skip
    always_on.pin_root(authority.root.der, now=now)
    serials.append(_certify(authority, always_on, now))
    policy, _ = authority.witness_policy(serials, quorum=QUORUM, now=now)
    (demo.directory / POLICY_FILE).write_bytes(canonical_json(policy.to_wire()) + b"\n")
    return policy


def _certify(authority: Authority, witness: WitnessKeys, now: int) -> int:
    cert = authority.certify_witness(witness.request, now=now, days=365)
    witness.import_witness_certificate(canonical_json(cert.to_wire()), now=now)
    return cert.serial


async def publish_policy(demo: DemoNetwork, base_url: str) -> int:
    """Upload the demo's witness policy to the hub (as ``schakel authority publish``)."""
    wire = loads_strict((demo.directory / POLICY_FILE).read_bytes())
    async with HubClient(base_url, network=demo.network) as anonymous:
        return await anonymous.put_witness_policy(WitnessPolicy.from_wire(wire))


@contextlib.asynccontextmanager
async def running_witness(demo: DemoNetwork, *, host: str, port: int) -> AsyncIterator[str]:
    """Serve the always-on witness until the block ends; yields its base URL."""
    keys = WitnessKeys.open(witness_dir(demo), demo.passphrase)
    hub_cert = HubKeys.open(demo.hub_dir, demo.passphrase).certificate
    if hub_cert is None:
        raise RuntimeError("the demo hub has no certificate for the witness to follow")
    now = int(time.time())
    log = trusted_log(keys.root, [hub_cert.der], crl=None, now=now)
    url = f"sqlite+aiosqlite:///{demo.directory / 'witness.db'}"
    config = WitnessConfig(host=host, port=port, database_url=url,
                           evidence_dir=demo.directory / "witness-evidence")  # fmt: skip
    store = await WitnessStore.open(url)
    cosigner = Cosigner(keys.signing_key, keys.witness_certificate.name)
    witness = Witness(
        store, keys.root, [log], cosigner, clock=lambda: int(time.time()),
        evidence_dir=config.evidence_dir,
    )  # fmt: skip
    runner = web.AppRunner(make_app(config, witness, store), handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
        yield f"http://{host}:{bound}"
    finally:
        await runner.cleanup()
        await store.close()
