"""Demo people for the demo network's desks (``schakel demo run``): never for real data.

Each demo desk gets one person, with a published password and a TOTP secret made
here; in demo mode (and only there) the second-factor page shows the current code in a
box marked "alleen demo", so a newcomer can log in within a minute.
"""

from __future__ import annotations

from dataclasses import dataclass

from desk.accounts import ROLE_ADMIN, ROLE_CASEWORKER, ROLE_COORDINATOR, ROLE_PRIVACY_OFFICER
from desk.factors import TotpSecret, hash_password
from desk.web import Services

DEMO_PASSWORD = "demo-wachtwoord"  # noqa: S105 - published on purpose, demo only


@dataclass(frozen=True, slots=True)
class DemoPerson:
    id: str
    name: str
    roles: tuple[str, ...]


def demo_person(org: str, org_roles: frozenset[str]) -> DemoPerson:
    """The demo person of ``org``'s desk: caseworker and administrator (and coordinator
    and privacy officer where the organisation has those roles)."""
    roles = [ROLE_CASEWORKER, ROLE_ADMIN]
    if "coordinator" in org_roles:
        roles.append(ROLE_COORDINATOR)
    if org_roles & {"privacy_officer", "network_privacy_officer"}:
        roles.append(ROLE_PRIVACY_OFFICER)
    return DemoPerson(f"demo.{org}", f"Demo {org}", tuple(roles))


def ensure_demo_person(services: Services) -> DemoPerson:
    """Add the desk's demo person with a TOTP second factor, unless it is there."""
    library = services.library
    person = demo_person(library.org, library.roles)
    accounts = services.accounts
    if accounts.person(person.id) is None:
        hashed = hash_password(DEMO_PASSWORD, services.config.password_cost)
        accounts.add(person.id, person.name, person.roles, hashed, now=services.now())
        secret = TotpSecret.new()
        accounts.set_totp(person.id, services.sealer.seal("totp", secret.value.encode()), 0)
        accounts.log("account-added", now=services.now(), person=person.id, actor="demo")
    return person
