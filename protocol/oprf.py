"""RFC 9497 oblivious pseudorandom functions, ristretto255-SHA512, OPRF and VOPRF modes.

The protocol-level parts of RFC 9497 and RFC 9380 written on the group of
:mod:`protocol.ristretto` (libsodium): ``expand_message_xmd`` with SHA-512,
``HashToGroup`` (hash_to_ristretto255) and ``HashToScalar``, the context string,
``DeriveKeyPair``, batched DLEQ proofs (``GenerateProof``, ``VerifyProof``) and
``Blind`` / ``BlindEvaluate`` / ``Finalize`` / ``Evaluate``. Pure: every random
scalar (a blind, a proof's ``r``, a key) is made from bytes the caller draws
(:func:`random_scalar`), so the RFC's test vectors replay exactly.

Schakel splits the key between two services, ``k = k1 + k2``. A client blinds once,
has each service evaluate the same blinded elements under its share and prove it
(:func:`blind_evaluate`), checks both proofs against the two public keys
(:func:`verify_proof`), adds the evaluations and unblinds once (:func:`finalize_shares`):
``(1/r) * (k1*r*P + k2*r*P) = (k1 + k2) * P``, so the output equals
``Evaluate(k1 + k2, input)`` and neither service, nor the client, ever holds ``k``.

Errors: ``ValidationError`` for an input the RFC refuses (too long, or hashing to the
identity); ``EncodingError`` for bytes that are not a canonical element or scalar;
``VerificationError`` for a proof that does not verify or a product that is the
identity.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from protocol import ristretto as group
from protocol.errors import EncodingError, ValidationError, VerificationError
from protocol.ristretto import Element, Scalar

SUITE = "ristretto255-SHA512"
MODE_OPRF = 0x00
MODE_VOPRF = 0x01
HASH_BYTES = 64  # Nh: SHA-512
PROOF_BYTES = 2 * group.SCALAR_BYTES
MAX_INPUT_BYTES = 2**16 - 2  # RFC 9497 §7.1: inputs are smaller than 2^16 - 1 bytes
MAX_BATCH = 2**16 - 1  # the composite index is two bytes
_XMD_BLOCK = 128  # s_in_bytes of SHA-512
_XMD_OUT = 64  # b_in_bytes of SHA-512
# The group generator G: the ``A`` of every evaluation proof.
GENERATOR = group.generator_times(Scalar((1).to_bytes(group.SCALAR_BYTES, "little")))


def context_string(mode: int) -> bytes:
    """``"OPRFV1-" || I2OSP(mode, 1) || "-" || identifier`` (RFC 9497 §3.1)."""
    if mode not in (MODE_OPRF, MODE_VOPRF):
        raise ValueError("mode must be MODE_OPRF or MODE_VOPRF")
    return b"OPRFV1-" + bytes([mode]) + b"-" + SUITE.encode("ascii")


def _i2osp(value: int, length: int) -> bytes:
    return value.to_bytes(length, "big")


def _prefixed(*parts: bytes) -> bytes:
    """``I2OSP(len(p), 2) || p`` for each part, concatenated."""
    return b"".join(_i2osp(len(part), 2) + part for part in parts)


# -- RFC 9380 ----------------------------------------------------------------------------


def expand_message_xmd(message: bytes, dst: bytes, length: int) -> bytes:
    """RFC 9380 §5.3.1 with SHA-512: ``length`` uniform bytes from ``message`` and ``dst``."""
    blocks = -(-length // _XMD_OUT)
    if not 0 < length <= 65535 or blocks > 255:
        raise ValueError("expand_message_xmd: length out of range")
    if not 0 < len(dst) <= 255:
        raise ValueError("expand_message_xmd: the DST must be 1 to 255 bytes")
    dst_prime = dst + _i2osp(len(dst), 1)
    b_0 = hashlib.sha512(
        bytes(_XMD_BLOCK) + message + _i2osp(length, 2) + b"\x00" + dst_prime
    ).digest()
    out = b_i = hashlib.sha512(b_0 + b"\x01" + dst_prime).digest()
    for index in range(2, blocks + 1):
        mixed = bytes(x ^ y for x, y in zip(b_0, b_i, strict=True))
        b_i = hashlib.sha512(mixed + _i2osp(index, 1) + dst_prime).digest()
        out += b_i
    return out[:length]


def hash_to_group(message: bytes, mode: int) -> Element:
    """hash_to_ristretto255 with DST ``"HashToGroup-" || contextString``.

    ValidationError in the (negligible) case that the input maps to the identity.
    """
    uniform = expand_message_xmd(message, b"HashToGroup-" + context_string(mode), 64)
    point = group.element_from_uniform(uniform)
    if point == group.IDENTITY_BYTES:
        raise ValidationError("the input maps to the identity element")
    return point


def hash_to_scalar(message: bytes, mode: int, *, dst: bytes | None = None) -> Scalar:
    """64 bytes of ``expand_message_xmd``, little-endian, reduced modulo the order."""
    tag = dst if dst is not None else b"HashToScalar-" + context_string(mode)
    return group.scalar_from_uniform(expand_message_xmd(message, tag, 64))


# -- keys and random scalars -------------------------------------------------------------


def random_scalar(uniform: bytes) -> Scalar:
    """A non-zero scalar from 64 bytes the caller drew from a secure random source.

    RFC 9497 §4.7 "random number generation using extra random bits". ValueError on
    the wrong length or a zero result (draw again).
    """
    if not isinstance(uniform, bytes) or len(uniform) != group.UNIFORM_BYTES:
        raise ValueError(f"a random scalar takes {group.UNIFORM_BYTES} random bytes")
    scalar = group.scalar_from_uniform(uniform)
    if group.is_zero(scalar):
        raise ValueError("the random bytes gave the zero scalar: draw again")
    return scalar


def public_key(key: Scalar) -> Element:
    """``pkS = ScalarMultGen(skS)``."""
    return group.generator_times(key)


def derive_key_pair(seed: bytes, info: bytes, mode: int) -> tuple[Scalar, Element]:
    """RFC 9497 §3.2.1 ``DeriveKeyPair`` (used for the RFC's test vectors)."""
    if len(seed) != group.SCALAR_BYTES or len(info) > MAX_INPUT_BYTES:
        raise ValueError("DeriveKeyPair takes a 32-byte seed and a short info string")
    derive_input = seed + _prefixed(info)
    dst = b"DeriveKeyPair" + context_string(mode)
    for counter in range(256):
        key = hash_to_scalar(derive_input + _i2osp(counter, 1), mode, dst=dst)
        if not group.is_zero(key):
            return key, public_key(key)
    raise ValueError("DeriveKeyPair failed")  # pragma: no cover (probability 2^-2000)


# -- DLEQ proofs ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Proof:
    """A batched DLEQ proof ``(c, s)``; on the wire the 64 bytes ``c || s``."""

    c: Scalar
    s: Scalar

    def to_bytes(self) -> bytes:
        return self.c + self.s

    @classmethod
    def from_bytes(cls, data: object) -> Proof:
        if not isinstance(data, bytes) or len(data) != PROOF_BYTES:
            raise EncodingError(f"a proof is {PROOF_BYTES} bytes")
        return cls(group.decode_scalar(data[:32]), group.decode_scalar(data[32:]))


def _composite_scalars(
    b: Element, c: Sequence[Element], d: Sequence[Element], mode: int
) -> list[Scalar]:
    """The ``d_i`` of ``ComputeComposites`` (RFC 9497 §2.2.1)."""
    if not c or len(c) != len(d) or len(c) > MAX_BATCH:
        raise ValueError("a proof covers 1 to 65535 pairs of elements")
    seed = hashlib.sha512(_prefixed(b, b"Seed-" + context_string(mode))).digest()
    return [
        hash_to_scalar(_prefixed(seed) + _i2osp(i, 2) + _prefixed(ci, di) + b"Composite", mode)
        for i, (ci, di) in enumerate(zip(c, d, strict=True))
    ]


def _challenge(b: Element, m: bytes, z: bytes, t2: bytes, t3: bytes, mode: int) -> Scalar:
    return hash_to_scalar(_prefixed(b, m, z, t2, t3) + b"Challenge", mode)


def generate_proof(
    key: Scalar,
    a: Element,
    b: Element,
    c: Sequence[Element],
    d: Sequence[Element],
    *,
    r: Scalar,
    mode: int,
) -> Proof:
    """``GenerateProof`` with ``ComputeCompositesFast``: ``key*A == B`` and ``key*C[i] == D[i]``."""
    m = _element(group.linear_combination(_composite_scalars(b, c, d, mode), c))
    z = group.times(key, m)
    t2 = _times(r, a)
    t3 = group.times(r, m)
    challenge = _challenge(b, m, z, t2, t3, mode)
    return Proof(challenge, group.scalar_sub(r, group.scalar_mul(challenge, key)))


def verify_proof(
    a: Element,
    b: Element,
    c: Sequence[Element],
    d: Sequence[Element],
    proof: Proof,
    *,
    mode: int,
) -> None:
    """``VerifyProof``; raises VerificationError unless the proof holds for every pair."""
    scalars = _composite_scalars(b, c, d, mode)
    m = _element(group.linear_combination(scalars, c))
    z = _element(group.linear_combination(scalars, d))
    t2 = group.add(_times(proof.s, a), group.times(proof.c, b))
    t3 = group.add(group.times(proof.s, m), group.times(proof.c, z))
    if _challenge(b, m, z, t2, t3, mode) != proof.c:
        raise VerificationError("the evaluation proof does not verify")


def _times(scalar: Scalar, element: Element) -> Element:
    """``scalar * element``, through libsodium's table for the generator when it is ``G``."""
    return group.generator_times(scalar) if element == GENERATOR else group.times(scalar, element)


def _element(data: bytes) -> Element:
    """A sum that must not be the identity (VerificationError otherwise)."""
    if data == group.IDENTITY_BYTES:
        raise VerificationError("a composite element is the identity")
    return Element(data)


# -- the online protocol -------------------------------------------------------------------


def _check_input(data: bytes) -> None:
    if not isinstance(data, bytes) or len(data) > MAX_INPUT_BYTES:
        raise ValidationError(f"an OPRF input is at most {MAX_INPUT_BYTES} bytes")


def blind(data: bytes, blind_scalar: Scalar, *, mode: int = MODE_VOPRF) -> Element:
    """``Blind``: ``blind * HashToGroup(input)``; the caller keeps ``blind_scalar`` secret."""
    _check_input(data)
    return group.times(blind_scalar, hash_to_group(data, mode))


def blind_evaluate(
    key: Scalar,
    blinded: Sequence[Element],
    *,
    r: Scalar,
    mode: int = MODE_VOPRF,
    public: Element | None = None,
) -> tuple[list[Element], Proof]:
    """``BlindEvaluate`` of a batch, with one batched DLEQ proof made with random ``r``.

    ``public`` is ``public_key(key)``, if the caller holds it already.
    """
    evaluated = [group.times(key, element) for element in blinded]
    pk = public if public is not None else public_key(key)
    proof = generate_proof(key, GENERATOR, pk, blinded, evaluated, r=r, mode=mode)
    return evaluated, proof


def blind_evaluate_oprf(key: Scalar, blinded: Element) -> Element:
    """``BlindEvaluate`` of the OPRF mode: no proof."""
    return group.times(key, blinded)


def _finalize_hash(data: bytes, unblinded: bytes) -> bytes:
    return hashlib.sha512(_prefixed(data, unblinded) + b"Finalize").digest()


def finalize(data: bytes, blind_scalar: Scalar, evaluated: Element) -> bytes:
    """``Finalize`` after any proof was checked: ``Hash(input || (1/blind) * evaluated)``."""
    _check_input(data)
    unblinded = group.times(group.invert(blind_scalar), evaluated)
    return _finalize_hash(data, unblinded)


def evaluate(key: Scalar, data: bytes, *, mode: int = MODE_VOPRF) -> bytes:
    """``Evaluate``: the PRF output computed by whoever holds the whole key and the input."""
    _check_input(data)
    return _finalize_hash(data, group.times(key, hash_to_group(data, mode)))


def finalize_shares(
    inputs: Sequence[bytes],
    blinds: Sequence[Scalar],
    first: Sequence[Element],
    second: Sequence[Element],
) -> list[bytes]:
    """The outputs under ``k1 + k2`` from the two services' verified evaluations.

    ``first[i] = k1 * blinded[i]`` and ``second[i] = k2 * blinded[i]``, both already
    checked with :func:`verify_proof`. VerificationError when a sum is the identity
    (only two colluding services with ``k2 = -k1`` could make one).
    """
    if not len(inputs) == len(blinds) == len(first) == len(second):
        raise ValueError("one blind and two evaluations per input")
    outputs = []
    for data, inverse, one, two in zip(inputs, _inverses(blinds), first, second, strict=True):
        _check_input(data)
        unblinded = group.times(inverse, _element(group.add(one, two)))
        outputs.append(_finalize_hash(data, unblinded))
    return outputs


def _inverses(scalars: Sequence[Scalar]) -> list[Scalar]:
    """Every scalar's inverse with one inversion (Montgomery's trick): the running
    products, one inverse of the last, then back through the products."""
    prefix = []
    running: Scalar | None = None
    for scalar in scalars:
        running = scalar if running is None else group.scalar_mul(running, scalar)
        prefix.append(running)
    if running is None:
        return []
    inverse = group.invert(running)
    result: list[Scalar] = [inverse] * len(scalars)
    for index in range(len(scalars) - 1, 0, -1):
        result[index] = group.scalar_mul(inverse, prefix[index - 1])
        inverse = group.scalar_mul(inverse, scalars[index])
    result[0] = inverse
    return result


def combine_public_keys(first: Element, second: Element) -> Element:
    """``pk1 + pk2``, the public key of ``k1 + k2``; VerificationError if it is the identity."""
    return _element(group.add(first, second))
