"""Client-side cost: ``seal`` and ``open_envelope`` against the bare primitives they use.

``seal`` to n recipients does, at its core, n HPKE encryptions of the 32-byte
content key (ML-KEM-768+X25519 / HKDF-SHA256 / ChaCha20-Poly1305), one
XChaCha20-Poly1305 encryption of the payload and one Ed25519 signature;
``open_envelope`` one HPKE decryption, one XChaCha20-Poly1305 decryption and
one Ed25519 verification. Everything else (validating the header, canonical
JSON, framing and hashing, base64url) is the protocol's own overhead, which
the ratio ``operation / sum of its bare primitives`` shows.

Each operation is timed with ``time.perf_counter`` over ``iterations`` calls
with the garbage collector off (as ``timeit`` does), ``repeats`` times,
interleaved so that every operation sees the same noise; the figure is the
median of the repeats. The bare primitives get fixed keys, nonces and a
32-byte message to sign (``seal`` signs a SHA-256 digest), no associated data.
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import nacl.bindings
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.certificate import Certificate
from protocol.envelope import Envelope, new_message_id, open_envelope, seal
from protocol.keybundle import SUITE, KeyBundle
from protocol.types import Fingerprint, NetworkId, OrgId

PAYLOAD_BYTES = 4096
CONTENT_KEY_BYTES = 32
NONCE_BYTES = 24

SEAL_1 = "seal, 1 recipient"
SEAL_5 = "seal, 5 recipients"
OPEN = "open_envelope"
HPKE_ENCRYPT = "HPKE encrypt (ML-KEM-768+X25519)"
HPKE_DECRYPT = "HPKE decrypt (ML-KEM-768+X25519)"
AEAD_ENCRYPT = "XChaCha20-Poly1305 encrypt 4 KB"
AEAD_DECRYPT = "XChaCha20-Poly1305 decrypt 4 KB"
SIGN = "Ed25519 sign"
VERIFY = "Ed25519 verify"

# The bare primitives each protocol operation is made of: (primitive, how many).
RECIPE: Mapping[str, tuple[tuple[str, int], ...]] = {
    SEAL_1: ((HPKE_ENCRYPT, 1), (AEAD_ENCRYPT, 1), (SIGN, 1)),
    SEAL_5: ((HPKE_ENCRYPT, 5), (AEAD_ENCRYPT, 1), (SIGN, 1)),
    OPEN: ((HPKE_DECRYPT, 1), (AEAD_DECRYPT, 1), (VERIFY, 1)),
}
PRIMITIVES = (HPKE_ENCRYPT, HPKE_DECRYPT, AEAD_ENCRYPT, AEAD_DECRYPT, SIGN, VERIFY)


@dataclass(frozen=True, slots=True)
class Parties:
    """A sender with its keys, five recipients' bundles, and the first recipient's keys."""

    network: NetworkId
    sender: Certificate
    sender_key: Ed25519PrivateKey
    bundles: Mapping[OrgId, KeyBundle]  # exactly five recipients
    reader: OrgId  # one of them, whose private keys follow
    reader_keys: Mapping[Fingerprint, hpke.MLKEM768X25519PrivateKey]

    def __repr__(self) -> str:
        return f"Parties(sender={self.sender.org!r}, recipients={sorted(self.bundles)!r})"


@dataclass(frozen=True, slots=True)
class SealFigures:
    """Median microseconds per operation, and the settings that produced them."""

    micros: Mapping[str, float]
    iterations: int
    repeats: int

    def bare_sum(self, operation: str) -> float:
        """Microseconds of the bare primitives ``operation`` is made of."""
        return sum(self.micros[name] * count for name, count in RECIPE[operation])

    def ratio(self, operation: str) -> float:
        return self.micros[operation] / self.bare_sum(operation)


def per_call(function: Callable[[], object], iterations: int) -> float:
    """Seconds per call of ``function`` over ``iterations`` calls, garbage collector off."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(iterations):
            function()
        return (time.perf_counter() - start) / iterations
    finally:
        if enabled:
            gc.enable()


def measure(
    operations: Mapping[str, Callable[[], object]], *, iterations: int, repeats: int
) -> dict[str, float]:
    """Median microseconds per call of each operation over ``repeats`` interleaved repeats."""
    if iterations < 1 or repeats < 1:
        raise ValueError("iterations and repeats must be at least 1")
    for function in operations.values():
        function()  # warm up: imports, caches, first-call costs
    samples: dict[str, list[float]] = {name: [] for name in operations}
    for _ in range(repeats):
        for name, function in operations.items():
            samples[name].append(per_call(function, iterations) * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


def _sealer(parties: Parties, recipients: Mapping[OrgId, KeyBundle]) -> Callable[[], Envelope]:
    message_id = new_message_id(os.urandom)
    payload = os.urandom(PAYLOAD_BYTES)

    def run() -> Envelope:
        return seal(
            message_id=message_id,
            network=parties.network,
            sender=parties.sender,
            sender_key=parties.sender_key,
            recipients=recipients,
            kind="signal",
            payload=payload,
            created=1_700_000_000,
            rng=os.urandom,
        )

    return run


def protocol_operations(parties: Parties) -> dict[str, Callable[[], object]]:
    """``seal`` to one and to five recipients, and ``open_envelope`` of the one-recipient one."""
    only = {parties.reader: parties.bundles[parties.reader]}
    seal_1 = _sealer(parties, only)
    envelope = seal_1()
    open_envelope(  # fails loudly here rather than timing a failure
        envelope, recipient=parties.reader, kem_keys=parties.reader_keys, sender=parties.sender
    )

    def open_1() -> bytes:
        return open_envelope(
            envelope,
            recipient=parties.reader,
            kem_keys=parties.reader_keys,
            sender=parties.sender,
        )

    return {SEAL_1: seal_1, SEAL_5: _sealer(parties, parties.bundles), OPEN: open_1}


def primitive_operations(parties: Parties) -> dict[str, Callable[[], object]]:
    """Each bare primitive once, on the same keys and sizes as the envelope uses."""
    public = parties.bundles[parties.reader].hpke_public_key()
    private = parties.reader_keys[parties.bundles[parties.reader].fingerprint]
    content_key, nonce = os.urandom(CONTENT_KEY_BYTES), os.urandom(NONCE_BYTES)
    info = os.urandom(120)  # about the size of the envelope's HPKE info
    payload, digest = os.urandom(PAYLOAD_BYTES), os.urandom(32)
    wrapped = SUITE.encrypt(content_key, public, info=info)
    aead = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt
    unaead = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt
    body = aead(payload, None, nonce, content_key)
    signature = parties.sender_key.sign(digest)
    verify_key = parties.sender.public_key
    return {
        HPKE_ENCRYPT: lambda: SUITE.encrypt(content_key, public, info=info),
        HPKE_DECRYPT: lambda: SUITE.decrypt(wrapped, private, info=info),
        AEAD_ENCRYPT: lambda: aead(payload, None, nonce, content_key),
        AEAD_DECRYPT: lambda: unaead(body, None, nonce, content_key),
        SIGN: lambda: parties.sender_key.sign(digest),
        VERIFY: lambda: verify_key.verify(signature, digest),
    }


def measure_seal(parties: Parties, *, iterations: int, repeats: int) -> SealFigures:
    """Time the protocol operations and their bare primitives in the same interleaved run."""
    if len(parties.bundles) != 5 or parties.reader not in parties.bundles:
        raise ValueError("parties must name five recipients, the reader among them")
    operations = {**protocol_operations(parties), **primitive_operations(parties)}
    micros = measure(operations, iterations=iterations, repeats=repeats)
    return SealFigures(micros=micros, iterations=iterations, repeats=repeats)
