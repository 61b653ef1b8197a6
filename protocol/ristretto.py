"""The ristretto255 group (RFC 9496) and its scalars, from libsodium through rbcl.

Nothing here does group arithmetic itself: every point and scalar operation is one
libsodium call (``crypto_core_ristretto255_*``, ``crypto_scalarmult_ristretto255*``)
that rbcl wraps. This module only gives those bytes types and checks what comes
from outside:

* an :data:`Element` is the 32-byte canonical encoding of a group element that is
  **not the identity**; :func:`decode_element` is the only way to make one from
  untrusted bytes. libsodium refuses most non-canonical encodings; two gaps are closed
  here: the identity, which libsodium accepts as valid and RFC 9497 §3.2 refuses, and
  an encoding with the top bit set, which libsodium 1.0.18 (the version rbcl 1.1.2
  bundles) takes as a second spelling of the same element;
* a :data:`Scalar` is the 32-byte little-endian encoding of an integer in
  ``0 .. L-1``; :func:`decode_scalar` refuses anything at or above ``L``.

rbcl ignores libsodium's return codes for point addition, so every element handed
to :func:`add` must already be an :data:`Element`; the type checker keeps raw bytes
out. Multiplication raises :class:`~protocol.errors.VerificationError` when the
product would be the identity (a zero scalar): with the prime-order group and
non-zero scalars that never happens for honest inputs.

rbcl writes its bundled libsodium (some 2.7 MB) to a new temporary file each time
it is imported, loads it from there and never removes it. That is the one piece of
I/O in :mod:`protocol`, and it is rbcl's: this module undoes it right after the
import (the loaded library stays mapped), so that every command that pseudonymises
does not leave a copy of libsodium in ``/tmp``. This is the only module that
imports rbcl (``tests/test_architecture.py``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NewType

import rbcl

from protocol.errors import EncodingError, VerificationError

ELEMENT_BYTES = 32
SCALAR_BYTES = 32
UNIFORM_BYTES = 64  # input of the one-way map and of scalar reduction
# The order of the group: 2^252 + 27742317777372353535851937790883648493.
ORDER = 2**252 + 27742317777372353535851937790883648493

Element = NewType("Element", bytes)
Scalar = NewType("Scalar", bytes)

IDENTITY_BYTES = bytes(ELEMENT_BYTES)

# rbcl has no type information; these names give its functions their real types.
_is_valid_point: Callable[[bytes], bool] = rbcl.crypto_core_ristretto255_is_valid_point
_from_hash: Callable[[bytes], bytes] = rbcl.crypto_core_ristretto255_from_hash
_add: Callable[[bytes, bytes], bytes] = rbcl.crypto_core_ristretto255_add
_mult: Callable[[bytes, bytes], bytes] = rbcl.crypto_scalarmult_ristretto255
_mult_base: Callable[[bytes], bytes] = rbcl.crypto_scalarmult_ristretto255_base
_reduce: Callable[[bytes], bytes] = rbcl.crypto_core_ristretto255_scalar_reduce
_invert: Callable[[bytes], bytes] = rbcl.crypto_core_ristretto255_scalar_invert
_scalar_mul: Callable[[bytes, bytes], bytes] = rbcl.crypto_core_ristretto255_scalar_mul
_scalar_add: Callable[[bytes, bytes], bytes] = rbcl.crypto_core_ristretto255_scalar_add
_scalar_sub: Callable[[bytes, bytes], bytes] = rbcl.crypto_core_ristretto255_scalar_sub


def _forget_library_file() -> None:
    """Remove the copy of libsodium rbcl wrote to the temporary directory and loaded."""
    path = getattr(sys.modules.get("rbcl._sodium"), "lib_path", None)
    if isinstance(path, str) and Path(path).name.startswith("tmp"):
        Path(path).unlink(missing_ok=True)


_forget_library_file()


# -- elements --------------------------------------------------------------------------


def decode_element(data: object) -> Element:
    """A group element from its encoding: canonical, on the group, not the identity."""
    if not isinstance(data, bytes) or len(data) != ELEMENT_BYTES:
        raise EncodingError(f"a group element is {ELEMENT_BYTES} bytes")
    # libsodium 1.0.18, which rbcl bundles, accepts an encoding with the top bit set as a
    # second spelling of the element without it; RFC 9496 refuses it (s >= p), so do we.
    if data == IDENTITY_BYTES or data[31] & 0x80 or not _is_valid_point(data):
        raise EncodingError("not the canonical encoding of a non-identity ristretto255 element")
    return Element(data)


def element_from_uniform(uniform: bytes) -> Element:
    """RFC 9496 §4.3.4 one-way map of 64 uniform bytes (identity checked by the caller)."""
    if len(uniform) != UNIFORM_BYTES:
        raise ValueError(f"the one-way map takes {UNIFORM_BYTES} bytes")
    return Element(_from_hash(uniform))


def generator_times(scalar: Scalar) -> Element:
    """``scalar * G``; VerificationError for the zero scalar."""
    try:
        return Element(_mult_base(scalar))
    except RuntimeError:
        raise VerificationError("scalar multiplication gave the identity") from None


def times(scalar: Scalar, element: Element) -> Element:
    """``scalar * element``; VerificationError when the product is the identity."""
    try:
        return Element(_mult(scalar, element))
    except RuntimeError:
        raise VerificationError("scalar multiplication gave the identity") from None


def add(first: Element | bytes, second: Element) -> bytes:
    """``first + second`` as bytes: the identity (32 zero bytes) is a possible sum.

    ``first`` may be the identity (the start of a sum); anything else must be an
    :data:`Element`. Use :func:`decode_element` on the result where the identity
    is not allowed.
    """
    return _add(first, second)


def linear_combination(scalars: Sequence[Scalar], elements: Sequence[Element]) -> bytes:
    """``sum(scalars[i] * elements[i])`` as bytes (possibly the identity)."""
    total = IDENTITY_BYTES
    for scalar, element in zip(scalars, elements, strict=True):
        total = add(total, times(scalar, element))
    return total


# -- scalars ---------------------------------------------------------------------------


def decode_scalar(data: object) -> Scalar:
    """A scalar from its 32-byte little-endian encoding, which must be below the order."""
    if not isinstance(data, bytes) or len(data) != SCALAR_BYTES:
        raise EncodingError(f"a scalar is {SCALAR_BYTES} bytes")
    if int.from_bytes(data, "little") >= ORDER:
        raise EncodingError("a scalar must be below the group order")
    return Scalar(data)


def scalar_from_uniform(uniform: bytes) -> Scalar:
    """64 bytes read as a little-endian integer, reduced modulo the order."""
    if len(uniform) != UNIFORM_BYTES:
        raise ValueError(f"scalar reduction takes {UNIFORM_BYTES} bytes")
    return Scalar(_reduce(uniform))


def is_zero(scalar: Scalar) -> bool:
    return scalar == bytes(SCALAR_BYTES)


def invert(scalar: Scalar) -> Scalar:
    """The multiplicative inverse modulo the order; ValueError for zero."""
    if is_zero(scalar):
        raise ValueError("zero has no inverse")
    return Scalar(_invert(scalar))


def scalar_mul(first: Scalar, second: Scalar) -> Scalar:
    return Scalar(_scalar_mul(first, second))


def scalar_add(first: Scalar, second: Scalar) -> Scalar:
    return Scalar(_scalar_add(first, second))


def scalar_sub(first: Scalar, second: Scalar) -> Scalar:
    return Scalar(_scalar_sub(first, second))
