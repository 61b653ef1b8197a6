"""Challenge-response login, tokens, and what every authentication failure looks like."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from protocol.challenge import auth_message
from protocol.encoding import b64d, b64e

if TYPE_CHECKING:
    from conftest import HubHarness, Party

NETWORK = "testnet"


async def _challenge(hub: HubHarness, org: str) -> bytes:
    response = await hub.post("/v1/auth/challenge", {"org": org})
    assert response.status == 200
    body = await response.json()
    assert set(body) == {"challenge", "expires"}
    assert body["expires"] == hub.clock() + 60
    raw = b64d(body["challenge"])
    assert len(raw) == 32
    return raw


def _answer(hub: HubHarness, party: Party, raw: bytes, *, org: str | None = None) -> dict[str, Any]:
    who = org or party.org
    signature = party.key.sign(auth_message(NETWORK, who, raw, hub.config.audience))
    return {"org": who, "challenge": b64e(raw), "signature": b64e(signature)}


async def _denied_token(hub: HubHarness, answer: dict[str, Any]) -> None:
    before = len(await hub.audit())
    await hub.problem(await hub.post("/v1/auth/token", answer), 401, "unauthorized")
    entries = await hub.audit()
    assert len(entries) == before + 1
    assert (entries[-1].action, entries[-1].outcome) == ("login-failed", "denied")


async def test_login_issues_a_token_that_opens_the_api(hub: HubHarness) -> None:
    party = hub.authority.enrol("police-west")
    assert (await hub.upload_certificate(party.cert)).status == 201
    raw = await _challenge(hub, party.org)
    response = await hub.post("/v1/auth/token", _answer(hub, party, raw))
    assert response.status == 200
    body = await response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    party.token = body["access_token"]
    listing = await hub.client.get("/v1/directory/orgs", headers=party.headers())
    assert listing.status == 200
    entry = [e for e in await hub.audit() if e.action == "login"][-1]
    assert (entry.org, entry.outcome, entry.role) == ("police-west", "allowed", "member")


async def test_a_challenge_answers_once(hub: HubHarness) -> None:
    party = hub.authority.enrol("ggd")
    await hub.upload_certificate(party.cert)
    answer = _answer(hub, party, await _challenge(hub, party.org))
    assert (await hub.post("/v1/auth/token", answer)).status == 200
    await _denied_token(hub, answer)


async def test_an_expired_challenge_is_refused(hub: HubHarness) -> None:
    party = hub.authority.enrol("ggd")
    await hub.upload_certificate(party.cert)
    answer = _answer(hub, party, await _challenge(hub, party.org))
    hub.clock.advance(60)
    await _denied_token(hub, answer)


async def test_a_signature_by_another_org_is_refused_and_burns_the_challenge(
    hub: HubHarness,
) -> None:
    victim, intruder = hub.authority.enrol("shelter"), hub.authority.enrol("intruder")
    await hub.upload_certificate(victim.cert)
    await hub.upload_certificate(intruder.cert)
    raw = await _challenge(hub, victim.org)
    await _denied_token(hub, _answer(hub, intruder, raw, org=victim.org))
    # The failed attempt consumed the challenge: the right answer now fails too.
    await _denied_token(hub, _answer(hub, victim, raw))


async def test_a_challenge_is_bound_to_its_org_and_audience(hub: HubHarness) -> None:
    a, b = hub.authority.enrol("org-a"), hub.authority.enrol("org-b")
    await hub.upload_certificate(a.cert)
    await hub.upload_certificate(b.cert)
    raw = await _challenge(hub, a.org)
    await _denied_token(hub, _answer(hub, b, raw))  # b answers a's challenge as itself
    raw = await _challenge(hub, a.org)
    signature = a.key.sign(auth_message(NETWORK, a.org, raw, "urn:schakel:other:hub"))
    answer = {"org": a.org, "challenge": b64e(raw), "signature": b64e(signature)}
    await _denied_token(hub, answer)


async def test_unknown_orgs_get_a_challenge_but_no_token(hub: HubHarness) -> None:
    stranger = hub.authority.enrol("stranger")  # certified but never uploaded
    raw = await _challenge(hub, stranger.org)
    await _denied_token(hub, _answer(hub, stranger, raw))


async def test_malformed_auth_bodies_are_400(hub: HubHarness) -> None:
    await hub.problem(await hub.post("/v1/auth/challenge", {"org": "Not An Org"}), 400, "malformed")
    await hub.problem(await hub.post("/v1/auth/challenge", {"org": "a", "x": 1}), 400, "malformed")
    short = {"org": "ggd", "challenge": b64e(b"x" * 31), "signature": b64e(b"s" * 64)}
    await hub.problem(await hub.post("/v1/auth/token", short), 400, "malformed")
    padded = {"org": "ggd", "challenge": "AAAA=", "signature": b64e(b"s" * 64)}
    await hub.problem(await hub.post("/v1/auth/token", padded), 400, "malformed")


async def test_a_revoked_org_gets_no_token_and_its_token_stops_working(hub: HubHarness) -> None:
    party = await hub.enrol("school")
    assert party.token is not None
    assert (await hub.put_crl(hub.authority.crl([party.cert]))).status == 200
    await hub.problem(
        await hub.client.get("/v1/directory/orgs", headers=party.headers()), 401, "unauthorized"
    )
    await _denied_token(hub, _answer(hub, party, await _challenge(hub, party.org)))


async def test_every_token_failure_is_the_same_401_and_audited(hub: HubHarness) -> None:
    party = await hub.enrol("police")
    assert party.token is not None
    bad = [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer " + party.token[:-2] + "AA"},
        {"Authorization": "Bearer " + party.token + " extra"},
    ]
    for headers in bad:
        before = len(await hub.audit())
        body = await hub.problem(
            await hub.client.get("/v1/inbox", headers=headers), 401, "unauthorized"
        )
        assert body["detail"] == "authentication failed"
        entries = await hub.audit()
        assert len(entries) == before + 1
        last = entries[-1]
        assert (last.action, last.outcome, last.reason, last.org) == (
            "list",
            "denied",
            "unauthorized",
            None,
        )
    hub.clock.advance(900)  # the token's lifetime
    await hub.problem(
        await hub.client.get("/v1/inbox", headers=party.headers()), 401, "unauthorized"
    )


async def test_a_replaced_certificate_ends_the_tokens_of_the_old_one(hub: HubHarness) -> None:
    # Tokens are bound to the certificate they were issued for: after a re-enrolment
    # (after a revocation, the old key may be in a thief's hands) an old token is refused,
    # even though the new certificate is valid; logging in again gives a working token.
    party = await hub.enrol("care")
    hub.clock.advance(10)
    newer = hub.authority.certify("care", party.key, now=hub.clock())
    assert (await hub.upload_certificate(newer)).status == 201
    stale = await hub.client.get("/v1/inbox", headers=party.headers())
    await hub.problem(stale, 401, "unauthorized")
    party.token = await hub.login(party)
    assert (await hub.client.get("/v1/inbox", headers=party.headers())).status == 200
