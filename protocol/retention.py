"""The retention policy: how long the hub keeps what it holds, signed by the authority.

The network authority signs one canonical object::

    {"v": 1, "network", "number": policy number (1, 2, ... each new policy higher),
     "issued": unix seconds,
     "ciphertext_grace_days":   days an envelope is kept after every recipient acknowledged it,
     "ciphertext_max_days":     days an envelope is kept at most, acknowledged or not,
     "case_closed_days":        days a closed case and its pseudonyms are kept after closing,
     "case_idle_days":          days a case that never closed is kept after its last activity,
     "access_log_days":         days the personal fields of an access-log entry are kept}

with the root key over ``frame("schakel/retention-policy/v1", canonical_json(all but
"sig"))``, plus ``"sig": b64url(64)``, in the style of :mod:`protocol.witnesspolicy`. A
client keeps the highest-numbered policy it verified; the hub holds the highest one
uploaded. Signed tree heads, leaf hashes and the public fields of access-log entries are
never erased (every proof depends on them): no field of the policy can shorten that.

Bounds (:data:`BOUNDS`): the grace period 0..365 days; the maximum age 7..3650 days and
never below the grace period; cases 30..7300 days after closing, 90..7300 days idle; the
access log 1827..7300 days (1827 days are five calendar years in every case, the least
NEN 7513 asks for access logs of care data). :data:`DEFAULTS` are argued in SECURITY.md.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.certificate import MAX_TIME, RootCertificate
from protocol.encoding import b64d
from protocol.errors import EncodingError, ValidationError, VerificationError
from protocol.note import ED25519_SIGNATURE_BYTES
from protocol.pseudonym import parse_pseudonym
from protocol.types import NetworkId, parse_network_id
from protocol.witness import WITNESS_VERSION, SignedObject, check_int, check_signature, exact_object

POLICY_LABEL = "schakel/retention-policy/v1"
MAX_POLICY_NUMBER = 2**53 - 1
DAY = 86_400

GRACE, MAX_AGE = "ciphertext_grace_days", "ciphertext_max_days"
CASE_CLOSED, CASE_IDLE = "case_closed_days", "case_idle_days"
ACCESS_LOG = "access_log_days"
PERIODS: tuple[str, ...] = (GRACE, MAX_AGE, CASE_CLOSED, CASE_IDLE, ACCESS_LOG)

# field -> (lowest, highest) in days
BOUNDS: dict[str, tuple[int, int]] = {
    GRACE: (0, 365),
    MAX_AGE: (7, 3650),
    CASE_CLOSED: (30, 7300),
    CASE_IDLE: (90, 7300),
    ACCESS_LOG: (1827, 7300),
}
# What a network starts with (SECURITY.md, "What the hub keeps, and for how long").
DEFAULTS: dict[str, int] = {
    GRACE: 30,
    MAX_AGE: 365,
    CASE_CLOSED: 730,
    CASE_IDLE: 1095,
    ACCESS_LOG: 1827,
}
# Why the hub deleted an envelope (a sent message's tombstone, ``GET /v1/sent``):
ACKNOWLEDGED = "acknowledged"  # every recipient acknowledged it, and the grace period passed
EXPIRED = "expired"  # it reached the maximum age
CASE_ENDED = "case-ended"  # its case's period ended
ERASED = "erased"  # the network's privacy officer erased it on a person's request
DELETION_REASONS: tuple[str, ...] = (ACKNOWLEDGED, EXPIRED, CASE_ENDED, ERASED)
_POLICY_KEYS = frozenset({"v", "network", "number", "issued", "sig", *PERIODS})


@dataclass(frozen=True, slots=True)
class RetentionPolicy(SignedObject):
    """The authority's retention policy (see the module docstring)."""

    LABEL: ClassVar[str] = POLICY_LABEL
    network: NetworkId
    number: int
    issued: int
    ciphertext_grace_days: int
    ciphertext_max_days: int
    case_closed_days: int
    case_idle_days: int
    access_log_days: int
    sig: bytes

    def __post_init__(self) -> None:
        parse_network_id(self.network)
        check_int(self.number, 1, MAX_POLICY_NUMBER, "policy number")
        check_int(self.issued, 0, MAX_TIME, "policy issued")
        for name, (low, high) in BOUNDS.items():
            check_int(getattr(self, name), low, high, name)
        if self.ciphertext_max_days < self.ciphertext_grace_days:
            raise ValidationError(f"{MAX_AGE} must not be below {GRACE}")
        if not isinstance(self.sig, bytes) or len(self.sig) != ED25519_SIGNATURE_BYTES:
            raise ValidationError(f"a signature is {ED25519_SIGNATURE_BYTES} bytes")

    def periods(self) -> dict[str, int]:
        """Every period of the policy, in days, by field name."""
        return {name: int(getattr(self, name)) for name in PERIODS}

    def seconds(self, name: str) -> int:
        """The period ``name`` in seconds."""
        return self.periods()[name] * DAY

    def _unsigned(self) -> dict[str, Any]:
        return {
            "v": WITNESS_VERSION,
            "network": self.network,
            "number": self.number,
            "issued": self.issued,
            **self.periods(),
        }

    @classmethod
    def from_wire(cls, data: object) -> RetentionPolicy:
        fields = exact_object(data, _POLICY_KEYS, "retention policy")
        return cls(
            network=parse_network_id(fields["network"]),
            number=fields["number"],
            issued=fields["issued"],
            sig=b64d(fields["sig"], max_len=ED25519_SIGNATURE_BYTES),
            **{name: fields[name] for name in PERIODS},
        )


def create_retention_policy(
    root_key: Ed25519PrivateKey,
    root: RootCertificate,
    *,
    number: int,
    issued: int,
    periods: dict[str, int] | None = None,
) -> RetentionPolicy:
    """Sign a policy with ``periods`` (days by field name; unnamed ones from DEFAULTS)."""
    if root_key.public_key() != root.public_key:
        raise ValidationError("signing key is not the key of this root certificate")
    chosen = {**DEFAULTS, **(periods or {})}
    unknown = set(chosen) - set(PERIODS)
    if unknown:
        raise ValidationError(f"a retention policy has no period {sorted(unknown)[0]}")
    unsigned = RetentionPolicy(
        network=root.network,
        number=number,
        issued=issued,
        sig=bytes(ED25519_SIGNATURE_BYTES),
        **chosen,
    )
    return replace(unsigned, sig=root_key.sign(unsigned.signed_bytes()))


def verify_retention_policy(policy: RetentionPolicy, root: RootCertificate) -> RetentionPolicy:
    """VerificationError unless ``root`` signed ``policy`` for its own network."""
    if policy.network != root.network:
        raise VerificationError("the retention policy is for another network than the root")
    check_signature(root.public_key, policy.sig, policy.signed_bytes(), "retention policy")
    return policy


# --- erasure on request ---------------------------------------------------------------------

# What an erasure report counts (``POST /v1/audit/erasures``, docs/protocol.md "Retention"):
ERASED_KINDS: tuple[str, ...] = ("ciphertext", "case", "pseudonym", "access-log")
# Why something about the person is kept:
KEPT_REASONS: tuple[str, ...] = (
    "not-acknowledged",  # an envelope a recipient has not fetched yet (goes at its maximum age)
    "case-open",  # the case is still handled (goes by the policy's case periods)
    "shared-case",  # the case also holds pseudonyms not named: it may be another person's too
    "shared-message",  # the envelope also carries pseudonyms not named
    "access-log-period",  # access-log fields within the legal access-log period (NEN 7513)
)
MAX_ERASURE_PSEUDONYMS = 32
MAX_COUNT = 2**53 - 1
_REQUEST_KEYS = frozenset({"pseudonyms"})
_REPORT_KEYS = frozenset({"erased", "kept", "entry"})


def parse_erasure_request(data: object) -> tuple[str, ...]:
    """The pseudonyms of ``{"pseudonyms": [...]}``: 1..32, each once (sorted)."""
    if not isinstance(data, dict) or set(data) != _REQUEST_KEYS:
        raise EncodingError('an erasure request is an object with exactly "pseudonyms"')
    items = data["pseudonyms"]
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_ERASURE_PSEUDONYMS:
        raise ValidationError(f"pseudonyms must be a list of 1..{MAX_ERASURE_PSEUDONYMS}")
    parsed = [parse_pseudonym(item) for item in items]
    if len(set(parsed)) != len(parsed):
        raise ValidationError("pseudonyms must be distinct")
    return tuple(sorted(parsed))


@dataclass(frozen=True, slots=True)
class ErasureReport:
    """What an erasure erased (kind -> count) and kept (kind, reason -> count), and the
    index of the access-log entry that records it. Wire form::

        {"erased": [{"kind", "count"}...], "kept": [{"kind", "reason", "count"}...],
         "entry": int}

    lists sorted, counts above zero only."""

    erased: dict[str, int]
    kept: dict[tuple[str, str], int]
    entry: int

    def __post_init__(self) -> None:
        for kind, count in self.erased.items():
            _choice(kind, ERASED_KINDS, "erased kind")
            check_int(count, 1, MAX_COUNT, "erased count")
        for (kind, reason), count in self.kept.items():
            _choice(kind, ERASED_KINDS, "kept kind")
            _choice(reason, KEPT_REASONS, "kept reason")
            check_int(count, 1, MAX_COUNT, "kept count")
        check_int(self.entry, 0, MAX_COUNT, "entry")

    def to_wire(self) -> dict[str, Any]:
        return {
            "erased": [{"kind": k, "count": n} for k, n in sorted(self.erased.items())],
            "kept": [
                {"kind": k, "reason": r, "count": n} for (k, r), n in sorted(self.kept.items())
            ],
            "entry": self.entry,
        }

    @classmethod
    def from_wire(cls, data: object) -> ErasureReport:
        if not isinstance(data, dict) or set(data) != _REPORT_KEYS:
            raise EncodingError("an erasure report is an object with exactly its fields")
        erased, kept = data["erased"], data["kept"]
        if not isinstance(erased, list) or not isinstance(kept, list):
            raise EncodingError("erased and kept are lists")
        if len(erased) > len(ERASED_KINDS) or len(kept) > len(ERASED_KINDS) * len(KEPT_REASONS):
            raise EncodingError("an erasure report lists each kind once")
        try:
            pairs = [item for item in erased if set(item) == {"kind", "count"}]
            done = {item["kind"]: item["count"] for item in pairs}
            held = {
                (item["kind"], item["reason"]): item["count"]
                for item in kept
                if set(item) == {"kind", "reason", "count"}
            }
        except TypeError as exc:
            raise EncodingError("every item of an erasure report is an object") from exc
        if len(done) != len(erased) or len(held) != len(kept):
            raise EncodingError("every item of an erasure report has exactly its fields, once")
        return cls(erased=done, kept=held, entry=data["entry"])


def _choice(value: object, allowed: tuple[str, ...], what: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValidationError(f"{what} must be one of {', '.join(allowed)}")
    return value


def deleted_to_wire(at: int | None, reason: str | None) -> dict[str, Any] | None:
    """A sent message's ``deleted`` field (``GET /v1/sent``): null, or when and why."""
    if at is None:
        return None
    return {"at": at, "reason": _choice(reason, DELETION_REASONS, "deletion reason")}


def parse_deleted(value: object) -> tuple[int, str] | None:
    """``deleted`` of a sent message as (time, reason), or None while the hub holds it."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"at", "reason"}:
        raise EncodingError('deleted is null or an object with exactly "at" and "reason"')
    at = check_int(value["at"], 0, MAX_TIME, "deleted at")
    return at, _choice(value["reason"], DELETION_REASONS, "deletion reason")
