"""One evaluation round trip with a pseudonymisation service: request, response, unblinding.

An organisation blinds the identifiers of a signal (:func:`blind_batch`), sends the
same blinded elements to both services in an :class:`EvaluationRequest` signed with
its certified Ed25519 key, checks each :class:`EvaluationResponse`'s batched DLEQ
proof against that service's key statement, and adds, unblinds and finalizes
(:func:`pseudonyms_from`). Wire forms and checks in ``docs/protocol.md``.

The request is signed over every field but ``sig``; ``service`` and ``version`` name
the service and key it is meant for, so a request captured on its way to one service
is refused by the other, and ``time`` with ``nonce`` let the service refuse a replay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import oprf
from protocol import ristretto as group
from protocol.certificate import MAX_CERT_BYTES, MAX_TIME, Certificate
from protocol.encoding import b64d, b64e, canonical_json, frame
from protocol.errors import EncodingError, ValidationError, VerificationError
from protocol.oprfkeys import OprfKeySet, OprfKeyStatement
from protocol.pseudonym import MAX_KEY_VERSION, identifier_input, oprf_pseudonym
from protocol.ristretto import Element, Scalar
from protocol.types import (
    NetworkId,
    OrgId,
    Pseudonym,
    ServiceName,
    parse_network_id,
    parse_org_id,
    parse_service_name,
)

FORMAT_VERSION = 1
REQUEST_LABEL = "schakel/oprf-evaluate/v1"
NONCE_BYTES = 16
SIGNATURE_BYTES = 64
MAX_BATCH = 64  # elements in one request, whatever a service allows
_REQUEST_KEYS = frozenset(
    {"v", "network", "service", "version", "org", "time", "nonce", "elements", "cert", "sig"}
)
_RESPONSE_KEYS = frozenset({"v", "version", "elements", "proof"})


def _int(value: object, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(f"{what} must be an integer in {low}..{high}")
    return value


def _elements(items: object, max_batch: int) -> tuple[Element, ...]:
    if not isinstance(items, list) or not 1 <= len(items) <= max_batch:
        raise ValidationError(f"elements must be a list of 1 to {max_batch} group elements")
    return tuple(group.decode_element(b64d(item, max_len=group.ELEMENT_BYTES)) for item in items)


@dataclass(frozen=True, slots=True)
class EvaluationRequest:
    network: NetworkId
    service: ServiceName
    version: int
    org: OrgId
    time: int
    nonce: bytes
    elements: tuple[Element, ...]
    cert: bytes  # DER of the organisation's certificate
    sig: bytes

    def _unsigned(self) -> dict[str, Any]:
        return {
            "v": FORMAT_VERSION,
            "network": self.network,
            "service": self.service,
            "version": self.version,
            "org": self.org,
            "time": self.time,
            "nonce": b64e(self.nonce),
            "elements": [b64e(element) for element in self.elements],
            "cert": b64e(self.cert),
        }

    def signed_bytes(self) -> bytes:
        return frame(REQUEST_LABEL, canonical_json(self._unsigned()))

    def to_wire(self) -> dict[str, Any]:
        return {**self._unsigned(), "sig": b64e(self.sig)}

    @classmethod
    def from_wire(cls, data: object, *, max_batch: int = MAX_BATCH) -> EvaluationRequest:
        """Parse (shape, sizes, canonical elements); the signature is checked later."""
        if not isinstance(data, dict) or set(data) != _REQUEST_KEYS:
            raise EncodingError(
                f"an evaluation request has exactly the fields {sorted(_REQUEST_KEYS)}"
            )
        if data["v"] != FORMAT_VERSION or isinstance(data["v"], bool):
            raise ValidationError("unsupported evaluation request version")
        nonce = b64d(data["nonce"], max_len=NONCE_BYTES)
        if len(nonce) != NONCE_BYTES:
            raise ValidationError(f"nonce must be {NONCE_BYTES} bytes")
        sig = b64d(data["sig"], max_len=SIGNATURE_BYTES)
        if len(sig) != SIGNATURE_BYTES:
            raise ValidationError(f"sig must be {SIGNATURE_BYTES} bytes")
        return cls(
            network=parse_network_id(data["network"]),
            service=parse_service_name(data["service"]),
            version=_int(data["version"], 1, MAX_KEY_VERSION, "version"),
            org=parse_org_id(data["org"]),
            time=_int(data["time"], 0, MAX_TIME, "time"),
            nonce=nonce,
            elements=_elements(data["elements"], min(max_batch, MAX_BATCH)),
            cert=b64d(data["cert"], max_len=MAX_CERT_BYTES),
            sig=sig,
        )


def sign_request(
    key: Ed25519PrivateKey,
    cert: Certificate,
    *,
    service: ServiceName,
    version: int,
    elements: Sequence[Element],
    time: int,
    nonce: bytes,
) -> EvaluationRequest:
    """The request for ``service`` to evaluate ``elements`` under key ``version``."""
    if len(nonce) != NONCE_BYTES:
        raise ValueError(f"nonce must be {NONCE_BYTES} random bytes")
    if not 1 <= len(elements) <= MAX_BATCH:
        raise ValidationError(f"a request carries 1 to {MAX_BATCH} elements")
    unsigned = EvaluationRequest(
        cert.network, service, version, cert.org, time, nonce, tuple(elements), cert.der, b""
    )
    return replace(unsigned, sig=key.sign(unsigned.signed_bytes()))


def verify_request(request: EvaluationRequest, cert: Certificate) -> None:
    """VerificationError unless ``cert`` (already checked against root and CRL) signed it."""
    if cert.org != request.org or cert.network != request.network or cert.der != request.cert:
        raise VerificationError("the request is not from the certificate's organisation")
    try:
        cert.public_key.verify(request.sig, request.signed_bytes())
    except InvalidSignature:
        raise VerificationError("the request signature does not verify") from None


@dataclass(frozen=True, slots=True)
class EvaluationResponse:
    version: int
    elements: tuple[Element, ...]
    proof: oprf.Proof

    def to_wire(self) -> dict[str, Any]:
        return {
            "v": FORMAT_VERSION,
            "version": self.version,
            "elements": [b64e(element) for element in self.elements],
            "proof": b64e(self.proof.to_bytes()),
        }

    @classmethod
    def from_wire(cls, data: object) -> EvaluationResponse:
        if not isinstance(data, dict) or set(data) != _RESPONSE_KEYS:
            raise EncodingError(
                f"an evaluation response has exactly the fields {sorted(_RESPONSE_KEYS)}"
            )
        if data["v"] != FORMAT_VERSION or isinstance(data["v"], bool):
            raise ValidationError("unsupported evaluation response version")
        return cls(
            version=_int(data["version"], 1, MAX_KEY_VERSION, "version"),
            elements=_elements(data["elements"], MAX_BATCH),
            proof=oprf.Proof.from_bytes(b64d(data["proof"], max_len=oprf.PROOF_BYTES)),
        )


def evaluate_request(
    key: Scalar, request: EvaluationRequest, *, r: Scalar, public: Element | None = None
) -> EvaluationResponse:
    """The service's answer: every element times ``key``, with one batched proof.

    ``public`` is the key's public key, if the caller holds it (saves one multiplication).
    """
    evaluated, proof = oprf.blind_evaluate(key, request.elements, r=r, public=public)
    return EvaluationResponse(request.version, tuple(evaluated), proof)


# -- the client's side -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BlindedBatch:
    """What a client keeps between blinding and unblinding; ``blinds`` are secret."""

    kinds: tuple[str, ...]
    inputs: tuple[bytes, ...]
    blinds: tuple[Scalar, ...]
    elements: tuple[Element, ...]

    def __repr__(self) -> str:
        return f"BlindedBatch(<{len(self.inputs)} hidden identifiers>)"


def blind_batch(values: Sequence[tuple[str, str]], randomness: Sequence[bytes]) -> BlindedBatch:
    """Blind ``(kind, normalised value)`` pairs, one 64-byte random string each."""
    if not 1 <= len(values) <= MAX_BATCH or len(randomness) != len(values):
        raise ValidationError(f"blind 1 to {MAX_BATCH} values, with 64 random bytes each")
    inputs = tuple(identifier_input(kind, value) for kind, value in values)
    blinds = tuple(oprf.random_scalar(uniform) for uniform in randomness)
    elements = tuple(oprf.blind(data, b) for data, b in zip(inputs, blinds, strict=True))
    return BlindedBatch(tuple(kind for kind, _ in values), inputs, blinds, elements)


def check_response(
    batch: BlindedBatch, statement: OprfKeyStatement, response: EvaluationResponse
) -> None:
    """VerificationError unless ``response`` is the evaluation of ``batch`` under the key
    ``statement`` certifies (the statement itself was checked by ``key_set``)."""
    if response.version != statement.version or len(response.elements) != len(batch.elements):
        raise VerificationError("the response is not for this request")
    oprf.verify_proof(
        oprf.GENERATOR,
        statement.public_key,
        batch.elements,
        response.elements,
        response.proof,
        mode=oprf.MODE_VOPRF,
    )


def pseudonyms_from(
    batch: BlindedBatch,
    keys: OprfKeySet,
    first: EvaluationResponse,
    second: EvaluationResponse,
) -> tuple[Pseudonym, ...]:
    """Both proofs checked, the evaluations added, unblinded and finalized, in batch order."""
    check_response(batch, keys.first, first)
    check_response(batch, keys.second, second)
    outputs = oprf.finalize_shares(batch.inputs, batch.blinds, first.elements, second.elements)
    return tuple(
        oprf_pseudonym(kind, keys.version, output)
        for kind, output in zip(batch.kinds, outputs, strict=True)
    )
