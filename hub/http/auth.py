"""Routes of logging in: ``POST /v1/auth/challenge`` and ``POST /v1/auth/token``
(use-cases in :mod:`hub.auth`)."""

from __future__ import annotations

from aiohttp import web

from hub import auth
from hub.http.common import audited, body_of, limit_address, render, services


async def post_challenge(request: web.Request) -> web.Response:
    s = services(request)
    limit_address(request)
    body = await body_of(request)
    challenge = await auth.issue_challenge(s.store, s.clock, s.config, body=body, rng=s.rng)
    return render({"challenge": challenge.challenge, "expires": challenge.expires})


async def post_token(request: web.Request) -> web.Response:
    s = services(request)
    limit_address(request)
    async with audited(request, "login", "auth") as scope:
        body = await body_of(request)
        token = await auth.issue_token(
            s.store,
            s.clock,
            s.config,
            scope,
            tokens=s.tokens,
            cache=s.trust_cache,
            body=body,
            rng=s.rng,
        )
    return render(
        {"access_token": token.access_token, "token_type": "Bearer", "expires_in": token.expires_in}
    )


def add_routes(app: web.Application) -> None:
    app.add_routes(
        [
            web.post("/v1/auth/challenge", post_challenge),
            web.post("/v1/auth/token", post_token),
        ]
    )
