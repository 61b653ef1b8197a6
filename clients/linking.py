"""Where an organisation's pseudonyms come from: the two pseudonymisation services, or
(on a network not moved yet) the linking key.

A network is an **OPRF network** when its hub serves a valid key set: the root-signed
statements of both shares of one pseudonym version (``GET /v1/directory/oprf-keys``).
Then every pseudonym is made by :func:`clients.pseudonymise.pseudonymise`: one round trip
to both services per signal, carrying all of the person's identifiers, each answer's
proof checked against its statement. The organisation holds nothing that computes a
pseudonym by itself.

**The transition window.** An organisation that still holds a linking key adds its
pseudonyms to the services' ones (a signal carries both), so that the hub clusters old
signals with new ones, until the authority's retirement of that version
(``protocol.retirement``, served at ``GET /v1/directory/retired-linking-keys``) says the
window has ended; then the organisation destroys its copy (``schakel org
destroy-linking-key``).

Once this client has used a key set, local state remembers its version
(:attr:`~clients.state.LocalState.oprf_version`): a hub that later serves no key set, or
only an older one, is refused (:class:`~clients.errors.VerificationFailed`), never
answered by falling back to a linking key. While the hub is out of reach, what local
state remembers decides.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

import aiohttp

from clients.errors import HubProblem, HubUnreachable, PseudonymsUnavailable, VerificationFailed
from clients.pseudonymise import (
    DEFAULT_TIMEOUT,
    PseudonymisationError,
    ServiceRefused,
    ServiceUnavailable,
    Signer,
    pseudonymise,
)
from clients.state import LocalState
from protocol.certificate import load_root
from protocol.errors import ProtocolError
from protocol.oprfkeys import OprfKeySet, OprfKeyStatement, key_set
from protocol.retirement import Retirement, verify_retirement
from protocol.types import Pseudonym

CACHE_SECONDS = 300  # how long the hub's key statements are used without asking again
WAITING_STATUSES = frozenset({408, 409, 429})  # a service refusal that waiting may heal
WAITS = "a message waits in the outbox until both services answer"


class Linked(NamedTuple):
    """How a message's person is linked: ``pseudonyms`` made now (linking key), or
    ``later`` by the pseudonymisation services when the message is sealed. False when
    the person has no identifier that links."""

    pseudonyms: tuple[Pseudonym, ...] = ()
    later: bool = False

    def __bool__(self) -> bool:
        return bool(self.pseudonyms) or self.later


class OprfKeysHub(Protocol):
    """What :class:`Linking` needs of a :class:`~clients.hub_client.HubClient`."""

    async def get_oprf_keys(self) -> list[OprfKeyStatement]: ...

    async def get_retirements(self) -> list[Retirement]: ...


class Linking:
    """The network's pseudonymisation key set as this organisation may use it."""

    def __init__(
        self,
        root_der: Callable[[], bytes],
        state: LocalState,
        hub: OprfKeysHub,
        *,
        clock: Callable[[], float] = time.time,
        rng: Callable[[int], bytes] = os.urandom,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._root_der = root_der
        self._state = state
        self._hub = hub
        self._clock = clock
        self._rng = rng
        self._timeout = timeout
        self._cached: tuple[int, OprfKeySet | None] | None = None
        self._retired: tuple[int, dict[int, Retirement]] | None = None

    def forget(self) -> None:
        """Ask the hub again at the next use."""
        self._cached = None
        self._retired = None

    async def key_set(self) -> OprfKeySet | None:
        """The newest verified key set the hub serves (asked again after CACHE_SECONDS);
        None on a network that is not (yet) on the OPRF.

        VerificationFailed when the hub serves no key set, or an older one, after this
        client used a newer one; HubUnreachable when the hub can not be asked.
        """
        now = int(self._clock())
        if self._cached is not None and now - self._cached[0] < CACHE_SECONDS:
            return self._cached[1]
        try:
            statements = await self._hub.get_oprf_keys()
        except HubProblem as exc:
            if exc.status != 404:  # a hub from before the services serves no such route
                raise
            statements = []
        keys = self._newest(statements, now)
        used = self._state.oprf_version
        if used and (keys is None or keys.version < used):
            raise VerificationFailed(
                "pseudonymisation key statements",
                reason=f"the hub no longer serves a valid key set of pseudonym version {used}",
            )
        self._cached = (now, keys)
        return keys

    async def retirements(self) -> dict[int, Retirement]:
        """The linking-key retirements the hub serves, each verified against the root, by
        version (asked again after CACHE_SECONDS)."""
        now = int(self._clock())
        if self._retired is not None and now - self._retired[0] < CACHE_SECONDS:
            return self._retired[1]
        root = load_root(self._root_der(), now=now)
        try:
            served = await self._hub.get_retirements()
        except HubProblem as exc:
            if exc.status != 404:
                raise
            served = []
        found: dict[int, Retirement] = {}
        for retirement in served:
            try:
                verify_retirement(retirement, root)
            except ProtocolError as exc:
                raise VerificationFailed("linking-key retirement", reason=str(exc)) from None
            held = found.get(retirement.version)
            if held is None or retirement.until < held.until:
                found[retirement.version] = retirement
        self._retired = (now, found)
        return found

    async def in_window(self, version: int) -> bool:
        """True while pseudonyms of linking-key ``version`` are still to be carried."""
        retirement = (await self.retirements()).get(version)
        return retirement is None or not retirement.retired_at(int(self._clock()))

    async def on_oprf(self) -> bool:
        """True on an OPRF network; while the hub is out of reach, what this client saw."""
        try:
            return await self.key_set() is not None
        except HubUnreachable:
            return self._state.oprf_version > 0

    def _newest(self, statements: Sequence[OprfKeyStatement], now: int) -> OprfKeySet | None:
        root = load_root(self._root_der(), now=now)
        for version in sorted({s.version for s in statements}, reverse=True):
            try:
                return key_set(statements, root, now=now, version=version)
            except ProtocolError:
                continue  # a version whose statements do not verify (yet, or any more)
        return None

    async def pseudonyms(
        self, signer: Signer, values: Sequence[tuple[str, str]]
    ) -> tuple[Pseudonym, ...]:
        """The pseudonyms of ``(kind, normalised value)`` pairs from both services, sorted.

        PseudonymsUnavailable when they are not made (see :class:`PseudonymsUnavailable`);
        VerificationFailed when the hub serves no valid key set.
        """
        keys = await self.key_set()
        if keys is None:
            raise VerificationFailed(
                "pseudonymisation key statements", reason="the hub serves no valid key set"
            )
        try:
            async with aiohttp.ClientSession() as session:
                made = await pseudonymise(
                    session,
                    keys,
                    keys.urls,
                    signer,
                    values,
                    now=int(self._clock()),
                    rng=self._rng,
                    timeout=self._timeout,
                )
        except PseudonymisationError as exc:
            raise unavailable(exc) from None
        self._state.note_oprf_version(keys.version)
        return tuple(sorted(set(made)))


def unavailable(error: PseudonymisationError) -> PseudonymsUnavailable:
    """The client error for a service's failure: waiting, unless the service refused this
    organisation for a reason waiting does not heal (a revoked certificate, say)."""
    if isinstance(error, ServiceRefused) and error.status not in WAITING_STATUSES:
        return PseudonymsUnavailable(
            f"{error}; the message is not sent (ask the network authority)", transient=False
        )
    retry_after = error.retry_after if isinstance(error, ServiceRefused) else None
    why = "" if isinstance(error, (ServiceRefused, ServiceUnavailable)) else "; no pseudonym made"
    return PseudonymsUnavailable(f"{error}{why}; {WAITS}", transient=True, retry_after=retry_after)
