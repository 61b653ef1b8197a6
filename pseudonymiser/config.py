"""A pseudonymisation service's configuration: one frozen value, built once at the edge.

``ServiceConfig.from_env`` reads ``SCHAKEL_PSEUDONYMISER_*`` variables (the command line
overrides them); tests use ``ServiceConfig.for_tests``. Nothing else reads the environment.

The default limits are sized for casework, not for enumeration: a signal carries at most
a handful of identifiers (one per pseudonym type), and a busy organisation sends some
tens of signals, subject reports and lookups a day; 400 evaluations an hour and 2,000 a
day leave room for that several times over, while an organisation (or a thief of its
key) that tried to walk the ~10^8 valid BSNs through the service would need well over a
century. Operators raise them per deployment with ``LIMIT_HOURLY`` / ``LIMIT_DAILY``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from protocol.certificate import MAX_CERT_BYTES
from protocol.errors import ValidationError
from protocol.evaluation import MAX_BATCH
from protocol.types import NetworkId, ServiceName, parse_network_id, parse_service_name

ENV_PREFIX = "SCHAKEL_PSEUDONYMISER_"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///var/pseudonymiser.db"
DEFAULT_PORT = 8444
_DATABASE_SCHEMES = ("sqlite+aiosqlite://", "postgresql+asyncpg://")
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(ValueError):
    """A configuration value is missing or out of range; the message names it."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Every bound the service enforces. Sizes in bytes, times in seconds."""

    max_batch: int = 16  # blinded elements in one request
    max_body_bytes: int = 16 * 1024
    body_timeout: int = 10  # to read the whole body
    freshness: int = 300  # |request time - our clock|, and how long a nonce is kept
    hourly: int = 400  # evaluations per organisation per clock hour (UTC)
    daily: int = 2000  # evaluations per organisation per day (UTC)
    crl_poll_interval: int = 300
    keepalive_timeout: int = 30
    max_line_size: int = 8190
    max_field_size: int = 8190
    shutdown_timeout: int = 10
    evaluation_threads: int = 4

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"limit {item.name} must be a positive integer")
        if self.max_batch > MAX_BATCH:
            raise ConfigError(f"limit max_batch must not exceed {MAX_BATCH}")
        if self.max_body_bytes < 2 * MAX_CERT_BYTES:
            raise ConfigError("limit max_body_bytes must leave room for a certificate")
        if self.hourly > self.daily:
            raise ConfigError("limit hourly must not exceed daily")


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """What one service process needs to know. Validated on construction."""

    network: NetworkId
    service: ServiceName
    root_der: bytes = field(repr=False)
    database_url: str = DEFAULT_DATABASE_URL
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    crl_url: str | None = None  # e.g. the hub's https://hub.example/v1/directory/crl
    limits: Limits = field(default_factory=Limits)
    metrics_from: tuple[IPNetwork, ...] = LOOPBACK

    def __post_init__(self) -> None:
        try:
            parse_network_id(self.network)
            parse_service_name(self.service)
        except ValidationError as exc:
            raise ConfigError(str(exc)) from exc
        if not isinstance(self.root_der, bytes) or not 0 < len(self.root_der) <= MAX_CERT_BYTES:
            raise ConfigError("root_der must be the DER of the network root certificate")
        if not isinstance(self.database_url, str) or not self.database_url.startswith(
            _DATABASE_SCHEMES
        ):
            raise ConfigError("database_url must start with " + " or ".join(_DATABASE_SCHEMES))
        if (
            isinstance(self.port, bool)
            or not isinstance(self.port, int)
            or not 0 <= self.port <= 65535
        ):
            raise ConfigError("port must be an integer in 0..65535")
        if self.crl_url is not None and not self.crl_url.startswith(("https://", "http://")):
            raise ConfigError("crl_url must be an http(s) URL")

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str],
        *,
        network: NetworkId,
        service: ServiceName,
        root_der: bytes,
    ) -> ServiceConfig:
        """From ``SCHAKEL_PSEUDONYMISER_*``: ``DATABASE_URL``, ``HOST``, ``PORT``, ``CRL_URL``,
        ``METRICS_FROM`` (comma-separated networks) and ``LIMIT_<NAME>`` for each limit."""
        values: dict[str, Any] = {}
        for name in ("database_url", "host", "crl_url"):
            if (text := environ.get(ENV_PREFIX + name.upper())) is not None:
                values[name] = text
        if (port := environ.get(ENV_PREFIX + "PORT")) is not None:
            values["port"] = _int("PORT", port)
        if (text := environ.get(ENV_PREFIX + "METRICS_FROM")) is not None:
            values["metrics_from"] = parse_networks(text)
        limits = {
            item.name: _int("LIMIT_" + item.name.upper(), text)
            for item in fields(Limits)
            if (text := environ.get(f"{ENV_PREFIX}LIMIT_{item.name.upper()}")) is not None
        }
        return cls(network, service, root_der, limits=Limits(**limits), **values)

    @classmethod
    def for_tests(
        cls, *, network: str, service: str, root_der: bytes, database_url: str, **changes: Any
    ) -> ServiceConfig:
        limit_changes = changes.pop("limits", {})
        base = cls(NetworkId(network), ServiceName(service), root_der, database_url, port=0)
        return replace(base, limits=replace(base.limits, **limit_changes), **changes)


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """``10.0.0.0/8,::1/128`` as networks; ConfigError naming the bad one."""
    found = []
    for item in text.split(","):
        if item.strip():
            try:
                found.append(ipaddress.ip_network(item.strip(), strict=True))
            except ValueError:
                raise ConfigError(
                    f"{ENV_PREFIX}METRICS_FROM: not a network: {item[:60]!r}"
                ) from None
    return tuple(found)


def _int(name: str, text: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise ConfigError(f"{ENV_PREFIX}{name} must be an integer") from None
