"""The network's retention policy as a client sees it, and erasure on request.

:func:`retention_policy` fetches the policy the hub serves, checks the root's signature
and keeps it in the local state when its number is above the kept one's; a policy that
does not verify, is of another network, or is older than the kept one is never kept (the
kept one still applies) and is reported. :func:`erase_subject` is the network privacy
officer's erasure: the person's pseudonyms are derived here as for a subject report
(:meth:`clients.privacy_officer.PrivacyOfficer.subject_pseudonyms`), and the hub erases
what the law lets go (``POST /v1/audit/erasures``) and says what it kept and why.
"""

from __future__ import annotations

from dataclasses import dataclass

from clients.errors import ClientError, NotReady
from clients.organisation import Organisation
from clients.privacy_officer import PrivacyOfficer
from protocol.certificate import ROLE_NETWORK_PRIVACY_OFFICER, load_root
from protocol.errors import ProtocolError
from protocol.pseudonym import Identity
from protocol.retention import (
    MAX_ERASURE_PSEUDONYMS,
    ErasureReport,
    RetentionPolicy,
    verify_retention_policy,
)

# What each reason to keep means, for the officer's report.
KEPT_TEXT = {
    "not-acknowledged": "a recipient has not fetched it yet; it goes at the policy's maximum age",
    "case-open": "the case is still being handled; it goes by the policy's case periods",
    "shared-case": "the case also holds other pseudonyms, perhaps of another person",
    "shared-message": "the message also carries other pseudonyms, perhaps of another person",
    "access-log-period": "access-log fields are kept for the access-log period (NEN 7513)",
}


@dataclass(frozen=True, slots=True)
class PolicyView:
    """The policy in force here, and why the one the hub served was not kept (if so)."""

    policy: RetentionPolicy | None
    refused: str | None = None


async def retention_policy(organisation: Organisation) -> PolicyView:
    """The kept policy, after keeping a newer one the hub serves if it verifies."""
    state = organisation.state
    served = await organisation.hub.retention_policy()
    refused = None
    if served is not None:
        try:
            root = load_root(organisation.keys.root.der, now=organisation.now())
            policy = verify_retention_policy(RetentionPolicy.from_wire(served), root)
        except ProtocolError as exc:
            refused = f"the hub serves a retention policy that does not verify: {exc}"
        else:
            if not state.keep_retention_policy(policy.to_wire(), policy.number):
                held = state.retention_policy() or {}
                if int(held.get("number", 0)) > policy.number:
                    refused = (
                        f"the hub serves retention policy {policy.number}, older than the "
                        f"kept {held['number']}"
                    )
    kept = state.retention_policy()
    return PolicyView(None if kept is None else RetentionPolicy.from_wire(kept), refused)


async def erase_subject(organisation: Organisation, identity: Identity) -> ErasureReport:
    """Have the hub erase what it holds about the person (network privacy officer)."""
    if ROLE_NETWORK_PRIVACY_OFFICER not in organisation.certificate().roles:
        raise NotReady("erasure needs the network privacy officer role")
    pseudonyms = await PrivacyOfficer(organisation).subject_pseudonyms(identity)
    if not pseudonyms:
        raise ClientError("the person's details give no pseudonym")
    if len(pseudonyms) > MAX_ERASURE_PSEUDONYMS:
        raise ClientError(
            f"the person's details give {len(pseudonyms)} pseudonyms; one erasure names at "
            f"most {MAX_ERASURE_PSEUDONYMS}: give fewer identifiers"
        )
    return await organisation.hub.erase(sorted(pseudonyms))


def report_lines(report: ErasureReport) -> list[str]:
    """The report for a person to read: what went, what stayed and why."""
    lines = [f"erased {n} {kind}" for kind, n in sorted(report.erased.items())] or [
        "nothing was erased"
    ]
    lines += [
        f"kept {n} {kind}: {KEPT_TEXT[reason]}" for (kind, reason), n in sorted(report.kept.items())
    ]
    lines.append(f"the erasure is access-log entry {report.entry}")
    return lines
