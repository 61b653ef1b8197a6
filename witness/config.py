"""The witness's configuration: one frozen value, built once at the edge and passed down.

``WitnessConfig.from_env`` reads ``SCHAKEL_WITNESS_*`` variables; the command line's
options override them. Nothing else in the witness reads the environment.

* ``SCHAKEL_WITNESS_HOST`` (``127.0.0.1``), ``SCHAKEL_WITNESS_PORT`` (``8480``);
* ``SCHAKEL_WITNESS_DATABASE_URL`` (``sqlite+aiosqlite:///var/witness.db``; or
  ``postgresql+asyncpg://...``);
* ``SCHAKEL_WITNESS_EVIDENCE_DIR`` (``var/witness-evidence``): evidence files, 0700;
* ``SCHAKEL_WITNESS_METRICS_FROM`` (``127.0.0.0/8,::1/128``): who may read ``/metrics``.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

Clock = Callable[[], int]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ENV_PREFIX = "SCHAKEL_WITNESS_"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8480
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///var/witness.db"
DEFAULT_EVIDENCE_DIR = "var/witness-evidence"
LOOPBACK = "127.0.0.0/8,::1/128"
DATABASE_SCHEMES = ("sqlite+aiosqlite:///", "postgresql+asyncpg://")
MAX_NETWORKS = 32


def system_clock() -> int:
    """The wall clock in integer Unix seconds."""
    return int(time.time())


class ConfigError(ValueError):
    """A configuration value is missing or out of range; the message names it."""


def check_database_url(url: str) -> str:
    if not url.startswith(DATABASE_SCHEMES):
        raise ConfigError(
            f"{ENV_PREFIX}DATABASE_URL must start with sqlite+aiosqlite:/// or postgresql+asyncpg://"
        )
    return url


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if len(parts) > MAX_NETWORKS:
        raise ConfigError(f"{ENV_PREFIX}METRICS_FROM lists at most {MAX_NETWORKS} networks")
    try:
        return tuple(ipaddress.ip_network(part, strict=True) for part in parts)
    except ValueError as exc:
        raise ConfigError(f"{ENV_PREFIX}METRICS_FROM: {exc}") from exc


@dataclass(frozen=True, slots=True)
class WitnessConfig:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    database_url: str = DEFAULT_DATABASE_URL
    evidence_dir: Path = Path(DEFAULT_EVIDENCE_DIR)
    metrics_from: tuple[IPNetwork, ...] = field(default_factory=lambda: parse_networks(LOOPBACK))
    shutdown_timeout: float = 10.0

    def __post_init__(self) -> None:
        check_database_url(self.database_url)
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"{ENV_PREFIX}PORT must be in 0..65535")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> WitnessConfig:
        def get(name: str, default: str) -> str:
            try:
                return environ[ENV_PREFIX + name]
            except KeyError:
                return default

        port = get("PORT", str(DEFAULT_PORT))
        if not port.isdigit():
            raise ConfigError(f"{ENV_PREFIX}PORT must be a number")
        return cls(
            host=get("HOST", DEFAULT_HOST),
            port=int(port),
            database_url=check_database_url(get("DATABASE_URL", DEFAULT_DATABASE_URL)),
            evidence_dir=Path(get("EVIDENCE_DIR", DEFAULT_EVIDENCE_DIR)),
            metrics_from=parse_networks(get("METRICS_FROM", LOOPBACK)),
        )
