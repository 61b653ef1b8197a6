"""What the desk's tests share besides fixtures (a module name no other test directory uses:
``conftest`` itself can not be imported by name when several directories have one)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from multidict import CIMultiDictProxy

from desk.factors import TotpSecret, hash_password
from desk.web import Services

ROOT = Path(__file__).resolve().parents[2]
ORIGIN = "http://localhost:8080"
PASSWORD = "correct horse battery staple"
SAME = {"Origin": ORIGIN, "Sec-Fetch-Site": "same-origin"}


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


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def session_cookie(headers: CIMultiDictProxy[str], cookie: str) -> str | None:
    for value in headers.getall("Set-Cookie", []):
        if value.startswith(cookie + "="):
            return value.split(";")[0].split("=", 1)[1]
    return None


class Browser:
    """A client that keeps the desk's session cookie by hand (it is Secure, on http)."""

    def __init__(self, desk: DeskUnderTest) -> None:
        self.desk = desk
        self.cookie: str | None = None

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        if self.cookie:
            headers["Cookie"] = f"{self.desk.services.cookie}={self.cookie}"
        return headers

    def _keep(self, response: Any) -> None:
        found = session_cookie(response.headers, self.desk.services.cookie)
        if found is not None:
            self.cookie = found

    async def get(self, path: str) -> tuple[int, str, Any]:
        response = await self.desk.client.get(path, headers=self._headers(), allow_redirects=False)
        self._keep(response)
        return response.status, await response.text(), response

    async def post(
        self,
        path: str,
        data: dict[str, str],
        headers: dict[str, str] | None = None,
        *,
        token: bool = True,
        from_path: str | None = None,
    ) -> tuple[int, str, Any]:
        if token:
            _, page, _ = await self.get(from_path or path)
            data = {"csrf": csrf_of(page), **data}
        response = await self.desk.client.post(
            path,
            data=data,
            headers=self._headers(SAME if headers is None else headers),
            allow_redirects=False,
        )
        self._keep(response)
        return response.status, await response.text(), response

    async def log_in(self, person: str, *, code: str | None = None) -> None:
        status, _, response = await self.post(
            "/inloggen", {"gebruiker": person, "wachtwoord": PASSWORD}
        )
        assert status == 303, status
        assert response.headers["Location"] == "/inloggen/tweede-stap"
        secret = self.desk.totp[person]
        code = code or secret.code(self.desk.clock())
        status, _, response = await self.post(
            "/inloggen/code", {"code": code}, from_path="/inloggen/tweede-stap"
        )
        assert status == 303, status
        status, _, _ = await self.post(
            "/doelbinding", {"doel": "signal-intake", "terug": "/postvak"}
        )
        assert status == 303
