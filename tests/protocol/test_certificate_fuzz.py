"""Mutated DER never escapes as anything but a ProtocolError.

cryptography parses DER lazily, so a malformed field can raise ValueError or
InvalidVersion long after loading succeeded; a hub that let one through answered
500, and a client crashed. Seeded byte mutations of every structure we parse.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.certificate import (
    create_crl,
    create_enrolment_request,
    create_root,
    issue_certificate,
    load_crl,
    load_enrolment_request,
    load_root,
    verify_certificate,
)
from protocol.errors import ProtocolError
from protocol.types import NetworkId, OrgId

NOW = 1_795_000_000
NETWORK = NetworkId("fuzz")
ROUNDS = 1500

ROOT_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
ROOT = create_root(ROOT_KEY, NETWORK, now=NOW, days=365, serial=1)
REQUEST = create_enrolment_request(
    Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33))), NETWORK, OrgId("police")
)
CERT = issue_certificate(ROOT_KEY, ROOT, REQUEST, ["member"], now=NOW, days=30, serial=7)
CRL = create_crl(ROOT_KEY, ROOT, {7: NOW}, number=1, now=NOW, days=7)

PARSERS: dict[str, tuple[bytes, Callable[[bytes], object]]] = {
    "root": (ROOT.der, lambda der: load_root(der, now=NOW)),
    "request": (REQUEST.der, load_enrolment_request),
    "certificate": (CERT.der, lambda der: verify_certificate(der, ROOT, now=NOW, crl=None)),
    "crl": (CRL.der, lambda der: load_crl(der, ROOT, now=NOW)),
}


def _mutations(der: bytes, rng: random.Random) -> bytes:
    data = bytearray(der)
    for _ in range(rng.randint(1, 3)):
        kind = rng.random()
        position = rng.randrange(len(data))
        if kind < 0.6:
            data[position] ^= 1 << rng.randrange(8)
        elif kind < 0.8:
            data[position] = rng.randrange(256)
        elif kind < 0.9:
            del data[position : position + rng.randint(1, 8)]
        else:
            data[position:position] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(data)


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_mutated_der_raises_only_protocol_errors(name: str) -> None:
    der, parse = PARSERS[name]
    parse(der)  # the unmutated structure is valid
    rng = random.Random(f"schakel-{name}")
    escaped: list[str] = []
    for _ in range(ROUNDS):
        try:
            parse(_mutations(der, rng))
        except ProtocolError:
            pass
        except Exception as exc:
            escaped.append(type(exc).__name__)
    assert escaped == [], f"{len(escaped)} mutations escaped as {sorted(set(escaped))}"
