"""The pseudonymisation services' key shares: the key request and the root-signed statement.

Each of the two services generates its own key share ``k_i`` (no dealer). It sends the
network authority a **key request**: its public key ``pk_i = k_i * G`` with a DLEQ proof
that it knows ``k_i``, bound to the network, its name and its share index. The
authority answers with a **key statement** signed by the root key: network, service,
share (1 or 2), the pseudonym version the two shares make together, the public key, the
URL where the service answers, and a validity period. A client takes the two statements
of one version (:func:`key_set`), checks both against the pinned root and uses their
public keys to verify each service's evaluation proofs. Wire forms in ``docs/protocol.md``.

Errors: ``EncodingError`` for a wrong shape, ``ValidationError`` for a field that breaks
a rule, ``VerificationError`` for a signature, proof or period that does not hold.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import oprf
from protocol import ristretto as group
from protocol.certificate import MAX_TIME, RootCertificate
from protocol.encoding import b64d, b64e, canonical_json, frame
from protocol.errors import EncodingError, ValidationError, VerificationError
from protocol.pseudonym import MAX_KEY_VERSION
from protocol.ristretto import Element, Scalar
from protocol.types import NetworkId, ServiceName, parse_network_id, parse_service_name

FORMAT_VERSION = 1
REQUEST_LABEL = "schakel/oprf-key-request/v1"
STATEMENT_LABEL = "schakel/oprf-key/v1"
SHARES = (1, 2)
SIGNATURE_BYTES = 64
_REQUEST_KEYS = frozenset(
    {"v", "network", "service", "share", "suite", "public_key", "element", "proof"}
)
_STATEMENT_KEYS = frozenset(
    {"v", "network", "service", "share", "suite", "version", "public_key", "url",
     "not_before", "not_after", "sig"}
)  # fmt: skip
MAX_URL_CHARS = 200
# http(s)://host[:port][/path], no user info, query or fragment; lower-case scheme.
_URL = re.compile(r"https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~\-/]*)?")


def _int(value: object, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(f"{what} must be an integer in {low}..{high}")
    return value


def _check_share(value: object) -> int:
    if isinstance(value, bool) or value not in SHARES:
        raise ValidationError("share must be 1 or 2")
    assert isinstance(value, int)
    return value


def parse_service_url(value: object) -> str:
    """A service's base URL: ``http(s)://host[:port][/path]``, without trailing ``/``."""
    if not isinstance(value, str) or len(value) > MAX_URL_CHARS or not _URL.fullmatch(value):
        raise ValidationError(
            f"service url must be http(s)://host[:port][/path], at most {MAX_URL_CHARS} "
            "characters, without user, query or fragment"
        )
    return value.rstrip("/")


def _exact(data: object, keys: frozenset[str], what: str) -> dict[str, Any]:
    if not isinstance(data, dict) or set(data) != keys:
        raise EncodingError(f"{what} must be an object with exactly the fields {sorted(keys)}")
    if data["v"] != FORMAT_VERSION or isinstance(data["v"], bool):
        raise ValidationError(f"unsupported {what} version")
    if data["suite"] != oprf.SUITE:
        raise ValidationError(f"{what} suite must be {oprf.SUITE}")
    return data


def _element(text: object) -> Element:
    return group.decode_element(b64d(text, max_len=group.ELEMENT_BYTES))


# -- the key request -------------------------------------------------------------------


def _possession_input(network: str, service: str, share: int, public_key: bytes) -> bytes:
    return frame(REQUEST_LABEL, network.encode(), service.encode(), bytes([share]), public_key)


@dataclass(frozen=True, slots=True)
class OprfKeyRequest:
    """A service's public key share with a proof that it holds the private share."""

    network: NetworkId
    service: ServiceName
    share: int
    public_key: Element
    element: Element  # k * HashToGroup(possession input)
    proof: oprf.Proof

    def to_wire(self) -> dict[str, Any]:
        return {
            "v": FORMAT_VERSION,
            "network": self.network,
            "service": self.service,
            "share": self.share,
            "suite": oprf.SUITE,
            "public_key": b64e(self.public_key),
            "element": b64e(self.element),
            "proof": b64e(self.proof.to_bytes()),
        }

    @classmethod
    def from_wire(cls, data: object) -> OprfKeyRequest:
        fields = _exact(data, _REQUEST_KEYS, "OPRF key request")
        return cls(
            network=parse_network_id(fields["network"]),
            service=parse_service_name(fields["service"]),
            share=_check_share(fields["share"]),
            public_key=_element(fields["public_key"]),
            element=_element(fields["element"]),
            proof=oprf.Proof.from_bytes(b64d(fields["proof"], max_len=oprf.PROOF_BYTES)),
        )


def make_key_request(
    key: Scalar, network: NetworkId, service: ServiceName, share: int, *, r: Scalar
) -> OprfKeyRequest:
    """The request for ``key``'s statement; ``r`` is a fresh random scalar for the proof."""
    network, service = parse_network_id(network), parse_service_name(service)
    share = _check_share(share)
    public = oprf.public_key(key)
    point = oprf.hash_to_group(_possession_input(network, service, share, public), oprf.MODE_VOPRF)
    element = group.times(key, point)
    proof = oprf.generate_proof(
        key, oprf.GENERATOR, public, [point], [element], r=r, mode=oprf.MODE_VOPRF
    )
    return OprfKeyRequest(network, service, share, public, element, proof)


def verify_key_request(request: OprfKeyRequest) -> None:
    """VerificationError unless the requester holds the private key of ``public_key``."""
    data = _possession_input(request.network, request.service, request.share, request.public_key)
    point = oprf.hash_to_group(data, oprf.MODE_VOPRF)
    oprf.verify_proof(
        oprf.GENERATOR,
        request.public_key,
        [point],
        [request.element],
        request.proof,
        mode=oprf.MODE_VOPRF,
    )


# -- the statement -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OprfKeyStatement:
    """The root's word that ``public_key`` is share ``share`` of pseudonym version ``version``."""

    network: NetworkId
    service: ServiceName
    share: int
    version: int
    public_key: Element
    url: str  # where the service answers (its base URL)
    not_before: int
    not_after: int
    sig: bytes

    def __post_init__(self) -> None:
        parse_network_id(self.network)
        parse_service_name(self.service)
        if parse_service_url(self.url) != self.url:
            raise ValidationError("service url must not end in '/'")
        _check_share(self.share)
        _int(self.version, 1, MAX_KEY_VERSION, "version")
        _int(self.not_before, 0, MAX_TIME, "not_before")
        _int(self.not_after, self.not_before + 1, MAX_TIME, "not_after")
        if not isinstance(self.sig, bytes) or len(self.sig) != SIGNATURE_BYTES:
            raise ValidationError("an OPRF key statement's signature is 64 bytes")

    def _unsigned(self) -> dict[str, Any]:
        return {
            "v": FORMAT_VERSION,
            "network": self.network,
            "service": self.service,
            "share": self.share,
            "suite": oprf.SUITE,
            "version": self.version,
            "public_key": b64e(self.public_key),
            "url": self.url,
            "not_before": self.not_before,
            "not_after": self.not_after,
        }

    def signed_bytes(self) -> bytes:
        return frame(STATEMENT_LABEL, canonical_json(self._unsigned()))

    def to_wire(self) -> dict[str, Any]:
        return {**self._unsigned(), "sig": b64e(self.sig)}

    @classmethod
    def from_wire(cls, data: object) -> OprfKeyStatement:
        fields = _exact(data, _STATEMENT_KEYS, "OPRF key statement")
        for name in ("version", "not_before", "not_after"):
            if isinstance(fields[name], bool) or not isinstance(fields[name], int):
                raise EncodingError(f"OPRF key statement {name} must be an integer")
        return cls(
            network=parse_network_id(fields["network"]),
            service=parse_service_name(fields["service"]),
            share=_check_share(fields["share"]),
            version=fields["version"],
            public_key=_element(fields["public_key"]),
            url=fields["url"],
            not_before=fields["not_before"],
            not_after=fields["not_after"],
            sig=b64d(fields["sig"], max_len=SIGNATURE_BYTES),
        )


def sign_key_statement(
    root_key: Ed25519PrivateKey,
    root: RootCertificate,
    request: OprfKeyRequest,
    *,
    version: int,
    url: str,
    not_before: int,
    not_after: int,
) -> OprfKeyStatement:
    """Certify ``request`` (its proof checked here) as share of ``version``, answering at
    ``url``; the validity is cut at the root's."""
    if root_key.public_key() != root.public_key:
        raise ValidationError("signing key is not the key of this root certificate")
    if request.network != root.network:
        raise ValidationError("the key request is for another network than this root")
    verify_key_request(request)
    unsigned = OprfKeyStatement(
        network=request.network,
        service=request.service,
        share=request.share,
        version=version,
        public_key=request.public_key,
        url=parse_service_url(url),
        not_before=not_before,
        not_after=min(not_after, root.not_after),
        sig=bytes(SIGNATURE_BYTES),
    )
    return replace(unsigned, sig=root_key.sign(unsigned.signed_bytes()))


def verify_key_statement(statement: OprfKeyStatement, root: RootCertificate, *, now: int) -> None:
    """VerificationError unless ``root`` signed ``statement`` for its network, valid at ``now``."""
    if statement.network != root.network:
        raise VerificationError("OPRF key statement is for another network than the root")
    try:
        root.public_key.verify(statement.sig, statement.signed_bytes())
    except InvalidSignature:
        raise VerificationError("OPRF key statement signature does not verify") from None
    if not statement.not_before <= now <= statement.not_after:
        raise VerificationError("OPRF key statement is not valid at this time")


# -- the two shares of one version ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OprfKeySet:
    """The two verified statements of one pseudonym version, share 1 first."""

    version: int
    first: OprfKeyStatement
    second: OprfKeyStatement
    combined: Element  # pk1 + pk2, the public key of k1 + k2

    @property
    def statements(self) -> tuple[OprfKeyStatement, OprfKeyStatement]:
        return (self.first, self.second)

    @property
    def urls(self) -> tuple[str, str]:
        return (self.first.url, self.second.url)


def key_set(
    statements: Iterable[OprfKeyStatement], root: RootCertificate, *, now: int, version: int
) -> OprfKeySet:
    """The key set of ``version`` among ``statements``, each verified against ``root`` at ``now``.

    VerificationError unless exactly one valid statement per share is found, from two
    differently named services, with different keys whose sum is not the identity.
    """
    found: dict[int, OprfKeyStatement] = {}
    for statement in statements:
        if statement.version != version:
            continue
        verify_key_statement(statement, root, now=now)
        held = found.setdefault(statement.share, statement)
        if held != statement and held.public_key != statement.public_key:
            raise VerificationError(f"two different keys for share {statement.share}")
    if set(found) != set(SHARES):
        raise VerificationError(f"pseudonym version {version} lacks a valid statement per share")
    first, second = found[1], found[2]
    if first.service == second.service or first.public_key == second.public_key:
        raise VerificationError("the two shares must come from two services with two keys")
    return OprfKeySet(
        version, first, second, oprf.combine_public_keys(first.public_key, second.public_key)
    )
