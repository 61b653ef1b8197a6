"""What the desk's tests share besides fixtures (a module name no other test directory uses:
``conftest`` itself can not be imported by name when several directories have one)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from aiohttp.test_utils import TestClient

from desk.factors import TotpSecret, hash_password
from desk.web import Services

ROOT = Path(__file__).resolve().parents[2]
ORIGIN = "http://localhost:8080"
PASSWORD = "correct horse battery staple"


async def no_sleep(seconds: float) -> None:
    """What the hub client waits with between attempts in tests: not at all."""


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class DeskUnderTest:
    client: TestClient
    services: Services
    clock: Clock
    totp: dict[str, TotpSecret] = field(default_factory=dict)

    def add_person(self, person: str, roles: tuple[str, ...] = ("caseworker",)) -> TotpSecret:
        s = self.services
        s.accounts.add(
            person,
            f"Name of {person}",
            roles,
            hash_password(PASSWORD, s.config.password_cost),
            now=s.now(),
        )
        secret = TotpSecret.new()
        s.accounts.set_totp(person, s.sealer.seal("totp", secret.value.encode()), 0)
        self.totp[person] = secret
        return secret
