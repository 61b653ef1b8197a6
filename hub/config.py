"""The hub's configuration: one frozen value, built once at the edge and passed down.

``HubConfig.from_env`` reads ``SCHAKEL_HUB_*`` variables (the command line
overrides them with ``dataclasses.replace``); tests use ``HubConfig.for_tests``.
Nothing else in the hub reads the environment.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any

from hub.deadlines import Deadline
from protocol.auditlog import MAX_OBJECT_IDS
from protocol.certificate import MAX_CERT_BYTES
from protocol.errors import ValidationError
from protocol.referral import OPEN_STEPS
from protocol.types import NetworkId, parse_network_id

Clock = Callable[[], int]
"""Returns the current time as integer Unix seconds."""

Rng = Callable[[int], bytes]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

EscalationLimits = Mapping[str, Deadline]
# How long a referral may wait at each open step before it is escalated.
DEFAULT_ESCALATION: EscalationLimits = MappingProxyType(
    {
        "sent": Deadline(1, "wd"),  # not yet received by the recipient's client
        "delivered": Deadline(2, "wd"),  # neither accepted nor declined
        "accepted": Deadline(5, "wd"),  # care has not started
        "declined": Deadline(2, "wd"),  # the referrer has not referred again or closed
    }
)

KIB = 1024
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///var/hub.db"
_DATABASE_SCHEMES = ("sqlite+aiosqlite://", "postgresql+asyncpg://")
ENV_PREFIX = "SCHAKEL_HUB_"
MAX_NETWORKS = 32  # in one list of networks (trusted proxies, metrics scrapers)
LOOPBACK = ("127.0.0.0/8", "::1/128")


MAX_WITNESS_URLS = 8
MAX_URL_CHARS = 512


def check_witness_urls(urls: Iterable[str]) -> tuple[str, ...]:
    """At most ``MAX_WITNESS_URLS`` distinct http(s) base URLs, without a trailing slash."""
    checked = tuple(urls)
    if len(checked) > MAX_WITNESS_URLS or len(set(checked)) != len(checked):
        raise ConfigError(f"witness_urls: at most {MAX_WITNESS_URLS} distinct URLs")
    for url in checked:
        if (
            not isinstance(url, str)
            or not url.startswith(("http://", "https://"))
            or len(url) > MAX_URL_CHARS
            or url.endswith("/")
            or any(char.isspace() or ord(char) < 0x21 for char in url)
        ):
            raise ConfigError("witness_urls: each is an http(s) base URL without a trailing '/'")
    return checked


def system_clock() -> int:
    """The wall clock in integer Unix seconds."""
    return int(time.time())


class ConfigError(ValueError):
    """A configuration value is missing or out of range; the message names it."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Every bound the hub enforces. Sizes in bytes, times in seconds."""

    max_body_bytes: int = 512 * KIB  # POST /v1/messages
    max_json_bytes: int = 64 * KIB  # every other JSON body
    max_inbox_limit: int = 200
    default_inbox_limit: int = 50
    challenge_ttl: int = 60
    token_lifetime: int = 900
    keepalive_timeout: int = 30
    client_max_size: int = 512 * KIB
    max_line_size: int = 8190
    max_field_size: int = 8190
    rate_per_sec: int = 20  # per organisation, after authentication
    burst: int = 100
    address_rate_per_sec: int = 5  # per client address, before authentication
    address_burst: int = 50
    ws_heartbeat: int = 30
    write_queue: int = 4096  # work items waiting for the writer; more -> 503
    write_batch: int = 256  # work items per commit at most
    shutdown_timeout: int = 10
    tree_head_interval: int = 60  # seconds between signed tree heads, when the log grew
    escalation_interval: int = 60  # seconds between looks for overdue referrals
    retention_interval: int = 3600  # seconds between runs of the retention job
    max_case_page: int = 200  # cases, referrals or events in one answer
    max_timeline: int = 1000  # entries in one case's timeline
    body_timeout_ms: int = 10_000  # to receive a whole request body, else 408
    connections_per_address: int = 100  # open at once per TCP peer (trusted proxies: no cap)

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"limit {item.name} must be a positive integer")
        if self.client_max_size < self.max_body_bytes:
            raise ConfigError("limit client_max_size must be at least max_body_bytes")
        if self.max_json_bytes > self.max_body_bytes:
            raise ConfigError("limit max_json_bytes must not exceed max_body_bytes")
        if self.max_inbox_limit > MAX_OBJECT_IDS:  # an inbox page's ids go into its entry
            raise ConfigError(f"limit max_inbox_limit must not exceed {MAX_OBJECT_IDS}")
        if not 1 <= self.default_inbox_limit <= self.max_inbox_limit:
            raise ConfigError("limit default_inbox_limit must lie in 1..max_inbox_limit")


@dataclass(frozen=True, slots=True)
class HubConfig:
    """What one hub process needs to know. Validated on construction."""

    network: NetworkId
    root_der: bytes = field(repr=False)
    issuer: str = ""
    audience: str = ""
    database_url: str = DEFAULT_DATABASE_URL
    host: str = "127.0.0.1"
    port: int = 8443
    limits: Limits = field(default_factory=Limits)
    escalation: EscalationLimits = field(default_factory=lambda: DEFAULT_ESCALATION)
    # Reverse proxies whose X-Forwarded-For the hub believes (hub.http.common.client_address).
    trusted_proxies: Networks = field(default_factory=lambda: Networks(()))
    # Peers that may read GET /metrics; everyone else gets 404.
    metrics_from: Networks = field(default_factory=lambda: parse_networks("metrics_from", LOOPBACK))
    # Always-on witnesses (C2SP tlog-witness) the hub submits each new checkpoint to.
    witness_urls: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        try:
            parse_network_id(self.network)
        except ValidationError as exc:
            raise ConfigError(f"network: {exc}") from exc
        if not isinstance(self.root_der, bytes) or not 0 < len(self.root_der) <= MAX_CERT_BYTES:
            raise ConfigError("root_der must be the DER of the network root certificate")
        default = f"urn:schakel:{self.network}:hub"
        object.__setattr__(self, "issuer", self.issuer or default)
        object.__setattr__(self, "audience", self.audience or default)
        for name in ("issuer", "audience"):
            _check_printable(name, getattr(self, name))
        check_database_url(self.database_url)
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ConfigError("port must be an integer in 0..65535")
        if not self.host:
            raise ConfigError("host must not be empty")
        if not set(self.escalation) <= set(OPEN_STEPS) or not all(
            isinstance(d, Deadline) for d in self.escalation.values()
        ):
            raise ConfigError("escalation limits are per open step: " + ", ".join(OPEN_STEPS))
        object.__setattr__(self, "escalation", MappingProxyType(dict(self.escalation)))
        for name in ("trusted_proxies", "metrics_from"):
            value = getattr(self, name)
            if not isinstance(value, Networks):
                object.__setattr__(self, name, parse_networks(name, value))
        _refuse_everyone("trusted_proxies", self.trusted_proxies)
        object.__setattr__(self, "witness_urls", check_witness_urls(self.witness_urls))

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str], *, network: NetworkId, root_der: bytes
    ) -> HubConfig:
        """Build from ``SCHAKEL_HUB_*`` variables (``DATABASE_URL``, ``HOST``, ``PORT``,
        ``ISSUER``, ``AUDIENCE``, ``LIMIT_<NAME>`` for each limit,
        ``ESCALATE_<STEP>`` for each open referral step: ``2wd``, ``36h`` or ``off``, and
        ``TRUSTED_PROXIES`` and ``METRICS_FROM``: comma-separated networks;
        ``WITNESS_URLS``: comma-separated base URLs of always-on witnesses)."""
        values: dict[str, Any] = {}
        for name in ("database_url", "host", "issuer", "audience"):
            if (text := environ.get(ENV_PREFIX + name.upper())) is not None:
                values[name] = text
        if (port := environ.get(ENV_PREFIX + "PORT")) is not None:
            values["port"] = _env_int("PORT", port)
        limits: dict[str, int] = {}
        for item in fields(Limits):
            key = "LIMIT_" + item.name.upper()
            if (text := environ.get(ENV_PREFIX + key)) is not None:
                limits[item.name] = _env_int(key, text)
        values["escalation"] = _escalation_from_env(environ)
        for name in ("trusted_proxies", "metrics_from"):
            key = ENV_PREFIX + name.upper()
            if (text := environ.get(key)) is not None:
                values[name] = parse_networks(key, text.split(","))
        _refuse_everyone(ENV_PREFIX + "TRUSTED_PROXIES", values.get("trusted_proxies"))
        if (text := environ.get(ENV_PREFIX + "WITNESS_URLS")) is not None:
            values["witness_urls"] = tuple(url.strip() for url in text.split(",") if url.strip())
        return cls(network=network, root_der=root_der, limits=Limits(**limits), **values)

    @classmethod
    def for_tests(cls, *, network: str, root_der: bytes, **changes: Any) -> HubConfig:
        """A config for tests: a throwaway database URL must be given in ``changes``."""
        limit_changes = changes.pop("limits", {})
        base = cls(network=NetworkId(network), root_der=root_der, port=0)
        return replace(base, limits=replace(base.limits, **limit_changes), **changes)


@dataclass(frozen=True, slots=True)
class Networks:
    """A short list of IP networks, and whether an address lies in one of them.

    An IPv4 address mapped into IPv6 (``::ffff:192.0.2.1``, as a dual-stack socket
    reports IPv4 peers) counts as the IPv4 address.
    """

    networks: tuple[IPNetwork, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "networks", tuple(self.networks))
        if not all(
            isinstance(n, ipaddress.IPv4Network | ipaddress.IPv6Network) for n in self.networks
        ):
            raise TypeError("Networks holds ipaddress networks; parse texts with parse_networks")

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return False
        plain = unmapped(address)
        return any(plain in network for network in self.networks)

    def __bool__(self) -> bool:
        return bool(self.networks)


def unmapped(address: IPAddress) -> IPAddress:
    """``address``, or the IPv4 address it maps if it is ``::ffff:a.b.c.d``."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_networks(name: str, items: str | Iterable[object]) -> Networks:
    """Networks from CIDR texts (``10.0.0.0/8``, ``::1/128``; a bare address is a /32 or
    /128), blank texts skipped. ConfigError naming ``name`` on a bad one or too many."""
    if isinstance(items, str):
        items = items.split(",")
    found = [
        _network(name, item) for item in items if not (isinstance(item, str) and not item.strip())
    ]
    if len(found) > MAX_NETWORKS:
        raise ConfigError(f"{name}: at most {MAX_NETWORKS} networks")
    return Networks(tuple(found))


def _refuse_everyone(name: str, networks: Networks | None) -> None:
    """A trusted /0 would let every peer choose its client address."""
    if networks is not None and any(net.prefixlen == 0 for net in networks.networks):
        raise ConfigError(f"{name}: a /0 network would trust every address")


def _network(name: str, item: object) -> IPNetwork:
    if isinstance(item, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return item
    if not isinstance(item, str):
        raise ConfigError(f"{name}: networks are given as CIDR texts")
    text = item.strip()
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        shown = repr(text[:60]) if text.isprintable() else "a non-printable value"
        raise ConfigError(
            f"{name}: {shown} is not a network in CIDR notation (such as 10.0.0.0/8 or "
            "::1/128, with no host bits set)"
        ) from None


def check_database_url(url: str) -> None:
    """Raise ConfigError unless ``url`` names a database driver the hub supports."""
    if not isinstance(url, str) or not url.startswith(_DATABASE_SCHEMES):
        raise ConfigError("database_url must start with " + " or ".join(_DATABASE_SCHEMES))


def _escalation_from_env(environ: Mapping[str, str]) -> EscalationLimits:
    limits = dict(DEFAULT_ESCALATION)
    for step in OPEN_STEPS:
        key = f"{ENV_PREFIX}ESCALATE_{step.upper()}"
        if (text := environ.get(key)) is None:
            continue
        try:
            deadline = Deadline.parse(text)
        except ValueError as exc:
            raise ConfigError(f"{key}: {exc}") from None
        if deadline is None:
            limits.pop(step, None)
        else:
            limits[step] = deadline
    return limits


def _env_int(name: str, text: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise ConfigError(f"{ENV_PREFIX}{name} must be an integer") from None


def _check_printable(name: str, value: object) -> None:
    if not isinstance(value, str) or not 0 < len(value) <= 200 or not value.isprintable():
        raise ConfigError(f"{name} must be 1-200 printable characters")
