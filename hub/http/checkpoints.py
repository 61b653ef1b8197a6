"""Routes of witnessing: ``/v1/audit/checkpoint(s)``, ``/v1/audit/cosignatures`` and
``/v1/audit/witness-policy`` (use-cases in :mod:`hub.checkpoints`)."""

from __future__ import annotations

from aiohttp import web

from hub.accesslog import recording
from hub.checkpoints import add_cosignature, checkpoint_of, head_signer, held_policy, upload_policy
from hub.errors import NotFound
from hub.http.common import audited, authenticate, body_of, policy_routes, render, services
from protocol.encoding import MAX_SAFE_INT


def _size(text: str) -> int:
    if not text.isdigit() or len(text) > 16 or int(text) > MAX_SAFE_INT:
        raise NotFound()
    return int(text)


async def _checkpoint(request: web.Request, size: int | None) -> web.Response:
    s = services(request)
    async with audited(request, "read", "audit") as scope:
        await authenticate(request, scope)
        note = await checkpoint_of(
            s.store, s.config, s.trust_cache, head_signer(s.heads), s.clock(), size
        )
        if note is None and size is not None:
            raise NotFound("no tree head of that size was signed")
        await recording.access(s.store, scope, now=s.clock())
    return render({"checkpoint": None if note is None else note.decode("utf-8")})


async def get_checkpoint(request: web.Request) -> web.Response:
    return await _checkpoint(request, None)


async def get_checkpoint_of_size(request: web.Request) -> web.Response:
    return await _checkpoint(request, _size(request.match_info["size"]))


async def post_cosignature(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "create", "audit") as scope:
        caller = await authenticate(request, scope)
        body = await body_of(request)
        posted = await add_cosignature(
            s.store, s.clock, s.config, scope, caller=caller.org, body=body,
            cache=s.trust_cache, signer=s.heads,
        )  # fmt: skip
    return render({"size": posted.size}, status=201 if posted.created else 200)


def add_routes(app: web.Application) -> None:
    app.add_routes(
        [
            web.get("/v1/audit/checkpoint", get_checkpoint, allow_head=False),
            web.get("/v1/audit/checkpoints/{size}", get_checkpoint_of_size, allow_head=False),
            web.post("/v1/audit/cosignatures", post_cosignature),
            *policy_routes("/v1/audit/witness-policy", "audit", held_policy, upload_policy),
        ]
    )
