"""The hub under test: a provisioned network and the real hub in a child process.

* ``provision_network``: ``schakel.demo.provision`` in a scratch directory
  (cheap key derivation; the demo organisations plus one care organisation,
  so that one sender has five recipients for the client-side figures).
* ``running_hub``: ``python -m schakel hub serve``, the operator's own
  command, on a loopback port and the network's scratch SQLite database, with
  the per-organisation and per-address rate limits raised through
  ``SCHAKEL_HUB_LIMIT_*`` so that the benchmark measures the hub, not its
  throttle. Every other limit keeps its default.
* ``access_token``: challenge-response as in docs/protocol.md.
* ``seal_bodies``: signed, encrypted envelopes with a 4 KB payload, sealed
  before the load starts, each with its own message id, ready to POST.

Nothing here is fit for real data: the demo passphrase is published.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path

import aiohttp

from bench.loadgen import LOOPBACK, server_process
from bench.seal import Parties
from hub.config import Limits
from keys.organisation import OrgKeys
from protocol.certificate import ROLE_MEMBER
from protocol.challenge import auth_message
from protocol.encoding import b64d, b64e, canonical_json
from protocol.envelope import new_message_id, seal
from protocol.keybundle import KeyBundle, verify_bundle
from protocol.pseudonym import Identity, derive_pseudonyms
from protocol.types import OrgId
from schakel.demo import ORGS, DemoNetwork, provision

# The demo's organisations that send and receive (not its network privacy officer, nor
# the school or legal aid), and one more, so that the first sender seals to five recipients.
BENCH_ORGS: Mapping[str, tuple[str, ...]] = {
    **{org: roles for org, roles in ORGS.items() if org not in ("privacy", "school", "legal-aid")},
    "care-a": (ROLE_MEMBER,),
}
SENDERS: tuple[OrgId, ...] = tuple(OrgId(o) for o in ("police", "ggd", "municipality", "shelter"))
RECIPIENT = OrgId("coordinator")
PAYLOAD_BYTES = 4096
UNTHROTTLED = 1_000_000
RAISED_LIMITS = replace(
    Limits(),
    rate_per_sec=UNTHROTTLED,
    burst=UNTHROTTLED,
    address_rate_per_sec=UNTHROTTLED,
    address_burst=UNTHROTTLED,
    connections_per_address=UNTHROTTLED,  # every load task connects from one address
)
MESSAGES_PATH = "/v1/messages"

BENCH_USER = "bench"  # the user id the hub records in its access log for these requests
Body = tuple[Mapping[str, str], bytes]  # request headers, request body


def provision_network(directory: Path, *, now: int) -> DemoNetwork:
    """A fresh network (authority, hub keys, every bench organisation) in ``directory``."""
    return provision(directory, now=now, orgs=BENCH_ORGS)


def limits_note(limits: Limits = RAISED_LIMITS) -> str:
    """What the benchmark changed in the hub's limits, for the report."""
    default = Limits()
    changed = [
        f"{name} {value:,}"
        for name, value in asdict(limits).items()
        if value != getattr(default, name)
    ]
    return "hub rate limits raised for the benchmark: " + ", ".join(changed)


def _hub_env(demo: DemoNetwork, limits: Limits) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHAKEL_")}
    env["SCHAKEL_PASSPHRASE"] = demo.passphrase.decode("utf-8")
    for name, value in asdict(limits).items():
        env[f"SCHAKEL_HUB_LIMIT_{name.upper()}"] = str(value)
    return env


@contextmanager
def running_hub(
    demo: DemoNetwork,
    *,
    port: int,
    log: Path,
    cwd: Path,
    limits: Limits = RAISED_LIMITS,
    ready_timeout: float = 60.0,
    database_url: str | None = None,
    name: str = "hub",
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run ``schakel hub serve`` for the ``with`` block; yields its base URL and process.

    On the network's SQLite database unless ``database_url`` names another (several
    replicas share one PostgreSQL database: migrate it first, see ``migrate``).
    """
    argv = [
        sys.executable,
        "-m",
        "schakel",
        "hub",
        "serve",
        "--dir",
        str(demo.hub_dir),
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--database-url",
        database_url or demo.database_url,
        "--log-level",
        "WARNING",
    ]
    env = _hub_env(demo, limits)
    with server_process(
        name, argv, port=port, log=log, env=env, cwd=cwd, ready_timeout=ready_timeout
    ) as process:
        yield f"http://{LOOPBACK}:{port}", process


def migrate(demo: DemoNetwork, database_url: str, *, cwd: Path, timeout: float = 120.0) -> str:
    """``schakel hub migrate`` on ``database_url``, once, before any replica starts.

    Returns what it printed; raises ``RuntimeError`` with its output when it failed.
    """
    argv = [sys.executable, "-m", "schakel", "hub", "migrate", "--database-url", database_url]
    done = subprocess.run(
        argv,
        env=_hub_env(demo, RAISED_LIMITS),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"schakel hub migrate failed: {(done.stdout + done.stderr)[-1500:]}")
    return done.stdout.strip()


def open_keys(demo: DemoNetwork, org: str) -> OrgKeys:
    return OrgKeys.open(demo.home(org) / "keys", demo.passphrase)


def seal_parties(demo: DemoNetwork, *, now: int) -> Parties:
    """The first sender, sealing to the five other bench organisations; the coordinator reads."""
    sender = open_keys(demo, SENDERS[0])
    certificate = sender.certificate
    if certificate is None:
        raise RuntimeError(f"{sender.org} has no certificate")
    others = [OrgId(org) for org in BENCH_ORGS if org != sender.org]
    return Parties(
        network=demo.network,
        sender=certificate,
        sender_key=sender.signing_key,
        bundles={org: open_keys(demo, org).current_bundle(now=now) for org in others},
        reader=RECIPIENT,
        reader_keys=open_keys(demo, RECIPIENT).kem_keys,
    )


async def _post_json(
    session: aiohttp.ClientSession, url: str, body: object
) -> Mapping[str, object]:
    async with session.post(url, json=body) as response:
        if response.status != 200:
            raise RuntimeError(f"POST {url} answered {response.status}")
        document: Mapping[str, object] = await response.json()
        return document


async def access_token(session: aiohttp.ClientSession, base_url: str, keys: OrgKeys) -> str:
    """An access token for ``keys.org`` by challenge-response (docs/protocol.md)."""
    async with session.get(base_url + "/v1/hub") as response:
        audience = str((await response.json())["audience"])
    answer = await _post_json(session, base_url + "/v1/auth/challenge", {"org": keys.org})
    challenge = b64d(answer["challenge"], max_len=64)
    signed = auth_message(keys.network, keys.org, challenge, audience)
    request = {
        "org": keys.org,
        "challenge": b64e(challenge),
        "signature": b64e(keys.signing_key.sign(signed)),
    }
    token = await _post_json(session, base_url + "/v1/auth/token", request)
    return str(token["access_token"])


def _identity(number: int) -> Identity:
    """A different made-up person per message: a phone number and a name with a birth date."""
    born = datetime.date(1970, 1, 1) + datetime.timedelta(days=number % 15_000)
    return Identity(
        given_names="Anna",
        family_name="de Vries",
        date_of_birth=born.isoformat(),
        phone=f"+316{number % 100_000_000:08d}",
    )


async def directory_bundle(
    session: aiohttp.ClientSession, base_url: str, token: str, demo: DemoNetwork, org: OrgId
) -> KeyBundle:
    """``org``'s current key bundle as the hub serves it, verified against its certificate.

    Fetched rather than read from ``org``'s key store, as a real sender does, so
    that the envelopes name exactly the bundle the hub holds.
    """
    url = f"{base_url}/v1/directory/orgs/{org}"
    headers = {"Authorization": f"Bearer {token}", "Schakel-User": BENCH_USER}
    async with session.get(url, headers=headers) as response:
        if response.status != 200:
            raise RuntimeError(f"GET {url} answered {response.status}")
        entry = await response.json()
    certificate = open_keys(demo, org).certificate
    if certificate is None or entry.get("bundle") is None:
        raise RuntimeError(f"{org} has no certificate or published no key bundle")
    bundle = KeyBundle.from_wire(entry["bundle"])
    verify_bundle(bundle, certificate, now=int(time.time()))
    return bundle


def seal_bodies(
    demo: DemoNetwork,
    tokens: Mapping[OrgId, str],
    bundle: KeyBundle,
    count: int,
    *,
    now: int,
    payload_bytes: int = PAYLOAD_BYTES,
) -> list[Body]:
    """``count`` POST /v1/messages requests, round robin over the senders in ``tokens``.

    Each is a signal to ``bundle.org`` with a random ``payload_bytes`` payload and
    two pseudonyms, sealed with the sender's real keys under a fresh message id.
    """
    senders: Sequence[OrgId] = sorted(tokens)
    keys = {org: open_keys(demo, org) for org in senders}
    recipient = bundle.org
    bodies: list[Body] = []
    for number in range(count):
        sender = keys[senders[number % len(senders)]]
        certificate = sender.certificate
        if certificate is None:
            raise RuntimeError(f"{sender.org} has no certificate")
        envelope = seal(
            message_id=new_message_id(os.urandom),
            network=demo.network,
            sender=certificate,
            sender_key=sender.signing_key,
            recipients={recipient: bundle},
            kind="signal",
            payload=os.urandom(payload_bytes),
            pseudonyms=derive_pseudonyms(_identity(number), sender.current_linking_key),
            created=now,
            rng=os.urandom,
        )
        headers = {
            "Authorization": f"Bearer {tokens[sender.org]}",
            "Schakel-User": BENCH_USER,
            "Content-Type": "application/json",
        }
        bodies.append((headers, canonical_json(envelope.to_wire())))
    return bodies
