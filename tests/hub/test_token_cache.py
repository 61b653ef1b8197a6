"""A token verified once: python-jose runs once per token, and a cached answer never
outlives the token, comes before it, or grows without bound."""

from __future__ import annotations

import hashlib
import importlib
from typing import Any

import pytest

from hub.tokens import CLOCK_SKEW, InvalidToken, TokenService, generate_signing_key

ISSUER = "https://hub.test.example"
AUDIENCE = "schakel-test-network"
NOW = 1_700_000_000
CERT = "C" * 42 + "A"


class CountingDecode:
    """python-jose's ``jwt.decode``, counted (reached by name: only hub/tokens.py imports
    jose, tests/hub/test_tokens.py checks)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = importlib.import_module("jose.jwt").decode

        def decode(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr("jose.jwt.decode", decode)


def _service(cached: int = 10) -> TokenService:
    return TokenService(generate_signing_key(), issuer=ISSUER, audience=AUDIENCE, cached=cached)


def _token(service: TokenService, number: int = 0, *, now: int = NOW) -> str:
    return service.issue("police", ["member"], cert=CERT, now=now, jti=f"jti-{number:012d}-abcdef")


def test_a_token_is_verified_by_jose_once_then_answered_from_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = _service()
    decode = CountingDecode(monkeypatch)
    token = _token(service)
    first = service.verify(token, now=NOW)
    assert service.verify(token, now=NOW + 10) == first
    assert service.verify(token, now=NOW + 899) == first
    assert decode.calls == 1 and service.cached == 1


def test_a_cached_token_is_refused_once_it_expires_or_before_it_was_issued(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = _service()
    token = _token(service)
    service.verify(token, now=NOW)
    decode = CountingDecode(monkeypatch)
    for now in (NOW + 900, NOW + 10_000, NOW - CLOCK_SKEW - 1):
        with pytest.raises(InvalidToken):
            service.verify(token, now=now)
    assert decode.calls == 0  # refused from memory, by the times alone
    assert service.verify(token, now=NOW - CLOCK_SKEW) is not None


def test_a_failed_verification_is_not_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    service = _service()
    token = _token(service)
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    decode = CountingDecode(monkeypatch)
    for _ in range(3):
        with pytest.raises(InvalidToken):
            service.verify(tampered, now=NOW)
    assert decode.calls == 3 and service.cached == 0
    other = _service()  # another hub's key: its token is no token of ours
    with pytest.raises(InvalidToken):
        service.verify(_token(other), now=NOW)
    assert service.cached == 0


def test_the_cache_is_bounded_and_forgets_the_least_recently_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = _service(cached=3)
    made = [_token(service, n) for n in range(4)]
    for token in made[:3]:
        service.verify(token, now=NOW)
    service.verify(made[0], now=NOW)  # used again: the most recent now
    service.verify(made[3], now=NOW)  # pushes out made[1], the least recently used
    assert service.cached == 3
    decode = CountingDecode(monkeypatch)
    for token in (made[0], made[2], made[3]):
        service.verify(token, now=NOW)
    assert decode.calls == 0
    service.verify(made[1], now=NOW)
    assert decode.calls == 1 and service.cached == 3


def test_the_cache_holds_hashes_of_tokens_never_the_tokens() -> None:
    service = _service()
    token = _token(service)
    service.verify(token, now=NOW)
    held = list(service._verified)  # what the process keeps in memory
    assert held == [hashlib.sha256(token.encode()).digest()]
    assert token not in repr(service._verified)


@pytest.mark.parametrize("cached", [0, -1, 1.5, True])
def test_a_cache_size_that_is_not_a_positive_integer_is_refused(cached: Any) -> None:
    with pytest.raises(ValueError, match="cached"):
        TokenService(generate_signing_key(), issuer=ISSUER, audience=AUDIENCE, cached=cached)
