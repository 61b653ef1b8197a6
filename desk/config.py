"""The desk's configuration: one frozen record, built once at the edge (the command line)."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from desk.errors import DeskError

IDLE_TIMEOUT = 15 * 60
OUTBOX_RETRY_SECONDS = 30  # how often the desk tries again what waits in the outbox
RETENTION_EVERY_SECONDS = 6 * 3600  # how often the desk erases cases past their period
ABSOLUTE_TIMEOUT = 8 * 3600
SERVICE_USER = "desk"  # the Schakel-User of the desk's own requests (receiving the inbox)


@dataclass(frozen=True, slots=True)
class PasswordCost:
    """Argon2id cost (libsodium's opslimit and memlimit); production refuses cheap ones."""

    ops: int
    mem: int

    @classmethod
    def production(cls) -> PasswordCost:
        return cls(ops=3, mem=64 * 1024 * 1024)

    @classmethod
    def for_tests(cls) -> PasswordCost:
        return cls(ops=1, mem=8192)

    @property
    def weak(self) -> bool:
        return self.ops < 2 or self.mem < 19 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class LoginLimits:
    """When failed logins slow down and lock: per account and per client address."""

    free_failures: int = 3  # failures before each further attempt must wait
    account_lock_after: int = 10  # failures in a row that lock an account
    account_lock_seconds: int = 30 * 60
    address_lock_after: int = 30  # failures from one address that lock it
    address_lock_seconds: int = 30 * 60
    max_wait: int = 60  # the longest wait between attempts before a lock


@dataclass(frozen=True, slots=True)
class DeskConfig:
    """Everything ``schakel desk serve`` needs, checked once."""

    home: Path  # the organisation's SCHAKEL_HOME: keys/ and state.sqlite
    hub_url: str
    origin: str  # the desk's public origin, e.g. https://desk.police.example
    host: str = "127.0.0.1"
    port: int = 8080
    database: Path | None = None  # default: home / "desk.sqlite"
    idle_timeout: int = IDLE_TIMEOUT
    absolute_timeout: int = ABSOLUTE_TIMEOUT
    demo: bool = False  # shows demo codes on the second-factor page: never for real data
    service_user: str = SERVICE_USER
    password_cost: PasswordCost = field(default_factory=PasswordCost.production)
    limits: LoginLimits = field(default_factory=LoginLimits)
    trusted_proxies: tuple[str, ...] = ()  # addresses whose X-Forwarded-For is believed
    allow_weak: bool = False  # tests and the demo only
    outbox_retry: int = OUTBOX_RETRY_SECONDS
    # how long a closed case is kept here: the kind of organisation (clients.retention),
    # either period set by hand (SCHAKEL_RETENTION_KIND, _CASE_DAYS, _GRACE_DAYS)
    retention_kind: str = "general"
    retention_case_days: int | None = None
    retention_grace_days: int | None = None
    retention_every: int = RETENTION_EVERY_SECONDS

    def __post_init__(self) -> None:
        url = urllib.parse.urlsplit(self.origin)
        if url.scheme not in ("https", "http") or not url.hostname or url.path not in ("", "/"):
            raise DeskError(f"desk origin {self.origin!r}: give scheme and host, e.g. https://desk")
        if url.scheme == "http" and url.hostname != "localhost":
            raise DeskError(
                "the desk needs https (WebAuthn and its cookies need a secure context); "
                "plain http only as http://localhost"
            )
        if self.password_cost.weak and not self.allow_weak:
            raise DeskError("refusing weak password hashing outside tests and the demo")
        if not 1 <= self.outbox_retry <= 3600:
            raise DeskError("the outbox is tried again every 1 s to 1 h")
        if not 60 <= self.retention_every <= 24 * 3600:
            raise DeskError("retention runs every 1 min to 24 h")
        if not 60 <= self.idle_timeout <= self.absolute_timeout <= 24 * 3600:
            raise DeskError("timeouts: 60 s <= idle <= absolute <= 24 h")

    @property
    def database_path(self) -> Path:
        return self.database or self.home / "desk.sqlite"

    @property
    def rp_id(self) -> str:
        """The WebAuthn relying party id: the origin's host name."""
        return urllib.parse.urlsplit(self.origin).hostname or ""

    @property
    def secure_origin(self) -> str:
        return self.origin.rstrip("/")
