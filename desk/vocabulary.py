"""The field's words: every code of the schemas with the label a person reads.

Labels are message ids (English) marked for the catalogue; pages translate them. The
codes are the schemas' own (``clients/schemas/*.json``): a test checks that every code
in a schema has a label here and no label is left without its code.
"""

from __future__ import annotations

from types import MappingProxyType

from desk.i18n import N_
from protocol.pseudonym import ISO3166_ALPHA2_TO_ALPHA3

KINDS = MappingProxyType(
    {"signal": N_("Signal"), "referral": N_("Referral"), "status": N_("Status update")}
)

EXPLOITATION = MappingProxyType(
    {
        "sexual": N_("Sexual exploitation"),
        "labour": N_("Labour exploitation"),
        "criminal": N_("Criminal exploitation"),
        "organ_removal": N_("Organ removal"),
        "unknown": N_("Not known yet"),
    }
)

URGENCY = MappingProxyType(
    {
        "low": N_("Low"),
        "normal": N_("Normal"),
        "high": N_("High"),
        "immediate_danger": N_("Immediate danger"),
    }
)

SEX = MappingProxyType(
    {
        "female": N_("Female"),
        "male": N_("Male"),
        "x": N_("X (non-binary)"),
        "unknown": N_("Unknown"),
    }
)

INDICATOR_THEMES = MappingProxyType(
    {
        "control": N_("Control and coercion"),
        "work": N_("Work"),
        "housing": N_("Housing"),
        "debt": N_("Debts"),
        "health": N_("Health"),
        "behaviour": N_("Behaviour"),
        "sexual": N_("Sexual exploitation"),
        "criminal": N_("Criminal exploitation"),
    }
)

INDICATORS = MappingProxyType(
    {
        "control.documents_withheld": N_("Identity documents are held by someone else"),
        "control.restricted_movement": N_("Cannot come and go freely"),
        "control.always_accompanied": N_("Is always accompanied"),
        "control.threatened": N_("Is threatened, or their family is"),
        "control.isolated": N_("Is isolated from others"),
        "control.no_own_money": N_("Has no money of their own"),
        "work.excessive_hours": N_("Works excessively long hours"),
        "work.no_payment": N_("Is not paid"),
        "work.wage_deductions": N_("Large deductions from wages"),
        "work.unsafe_conditions": N_("Unsafe working conditions"),
        "work.no_contract": N_("No employment contract"),
        "housing.at_workplace": N_("Lives at the workplace"),
        "housing.overcrowded": N_("Lives in overcrowded housing"),
        "housing.arranged_by_employer": N_("Housing arranged by the employer"),
        "housing.frequent_moves": N_("Moves house often"),
        "debt.debt_bondage": N_("Has to work off a debt"),
        "debt.recruitment_fees": N_("Paid recruitment fees"),
        "debt.travel_debt": N_("Owes money for the journey"),
        "health.untreated_injuries": N_("Untreated injuries"),
        "health.signs_of_violence": N_("Signs of violence"),
        "health.malnourished": N_("Malnourished"),
        "health.fearful": N_("Fearful or anxious"),
        "behaviour.scripted_story": N_("Tells a rehearsed story"),
        "behaviour.does_not_know_address": N_("Does not know their own address"),
        "behaviour.others_speak_for": N_("Others speak for them"),
        "behaviour.unclear_identity": N_("Identity is unclear"),
        "sexual.many_clients": N_("Many clients"),
        "sexual.advertised_online": N_("Advertised online"),
        "sexual.minor": N_("Minor in sex work"),
        "sexual.branding_tattoo": N_("Branding tattoo"),
        "criminal.forced_to_deal": N_("Forced to deal drugs"),
        "criminal.forced_to_steal": N_("Forced to steal"),
        "criminal.cannabis_cultivation": N_("Works in cannabis cultivation"),
        "criminal.forced_begging": N_("Forced to beg"),
        "criminal.money_mule": N_("Used as a money mule"),
    }
)

SERVICES = MappingProxyType(
    {
        "shelter": N_("Shelter"),
        "medical_care": N_("Medical care"),
        "mental_health_care": N_("Mental health care"),
        "legal_aid": N_("Legal aid"),
        "victim_support": N_("Victim support"),
        "reflection_period": N_("Reflection period (B8 scheme)"),
        "return_support": N_("Support for returning home"),
        "other": N_("Other"),
    }
)

REFERRAL_URGENCY = MappingProxyType(
    {
        "routine": N_("Routine"),
        "soon": N_("Soon"),
        "urgent": N_("Urgent"),
        "immediate": N_("Immediately"),
    }
)

# A referral's steps, and the status codes an organisation sends.
STEPS = MappingProxyType(
    {
        "sent": N_("Sent"),
        "delivered": N_("Received"),
        "accepted": N_("Accepted"),
        "declined": N_("Declined"),
        "care_started": N_("Care started"),
        "closed": N_("Closed"),
    }
)

STATUS_ACTIONS = MappingProxyType(
    {
        "accepted": N_("Accept the referral"),
        "declined": N_("Decline the referral"),
        "care_started": N_("Care has started"),
        "closed": N_("Close the referral"),
    }
)

DECLINE_REASONS = MappingProxyType(
    {
        "no_capacity": N_("No room or capacity"),
        "not_eligible": N_("The person does not qualify"),
        "person_unreachable": N_("The person cannot be reached"),
        "person_declined": N_("The person does not want this"),
        "safety": N_("Safety"),
        "other": N_("Other reason"),
    }
)

PURPOSES = MappingProxyType(
    {
        "signal-intake": N_("Receiving and assessing signals"),
        "case-coordination": N_("Coordinating a case"),
        "referral": N_("Referring a person to care"),
        "care-delivery": N_("Providing care or shelter"),
        "legal-support": N_("Legal support"),
        "audit": N_("Checking the access log"),
        "data-subject-request": N_("Answering a person's request about their data"),
        "incident-investigation": N_("Investigating an incident"),
        "system-administration": N_("Operating the network"),
    }
)

# The access log's action and outcome codes (protocol.auditlog.ACTIONS, OUTCOMES).
LOG_ACTIONS = MappingProxyType(
    {
        "create": N_("Created"),
        "read": N_("Read"),
        "list": N_("Listed"),
        "acknowledge": N_("Acknowledged receipt"),
        "update": N_("Changed"),
        "delete": N_("Deleted"),
        "merge": N_("Merged"),
        "split": N_("Split"),
        "export": N_("Exported"),
        "login": N_("Logged in"),
        "login-failed": N_("Failed to log in"),
    }
)
LOG_OUTCOMES = MappingProxyType({"allowed": N_("Allowed"), "denied": N_("Refused")})

ROLES = MappingProxyType(
    {
        "caseworker": N_("Caseworker"),
        "coordinator": N_("Care coordinator"),
        "privacy_officer": N_("Privacy officer"),
        "admin": N_("Desk administrator"),
    }
)

# The organisation's roles in the network (its certificate, issued by the authority).
ORG_ROLES = MappingProxyType(
    {
        "member": N_("Member of the network"),
        "coordinator": N_("Care coordinator"),
        "privacy_officer": N_("Privacy officer"),
        "network_privacy_officer": N_("The network's privacy officer"),
    }
)

HOLDERS = MappingProxyType(
    {
        "you": N_("Your organisation"),
        "other": N_("The other organisation"),
        "nobody": N_("Nobody: finished"),
        "unknown": N_("Not known here"),
    }
)

# Organisation types (protocol.certificate.ORG_TYPES), as the coordinator's pages name them.
ORG_TYPES = MappingProxyType(
    {
        "police": N_("Police"),
        "municipality": N_("Municipality"),
        "ggd": N_("Public health service (GGD)"),
        "school": N_("School"),
        "shelter": N_("Shelter"),
        "care": N_("Care"),
        "legal_aid": N_("Legal aid"),
        "coordination": N_("Care coordination"),
        "other": N_("Other"),
    }
)

# A case's state (protocol.cases.CASE_STATES).
CASE_STATES = MappingProxyType(
    {
        "new": N_("New"),
        "referred": N_("Referred"),
        "in_care": N_("In care"),
        "declined": N_("Declined"),
        "closed": N_("Closed"),
    }
)

# How the cases page sorts (protocol.cases.CASE_SORTS).
CASE_SORTS = MappingProxyType(
    {
        "last": N_("Last activity"),
        "first": N_("First signal"),
        "signals": N_("Number of signals"),
        "open": N_("Open referrals"),
    }
)

# The kinds of identifier a pseudonym is made of (protocol.pseudonym.TYPES): why two
# signals were linked, never the values.
IDENTIFIER_KINDS = MappingProxyType(
    {
        "bsn": N_("BSN"),
        "ndob": N_("name and date of birth"),
        "doc": N_("travel document"),
        "tel": N_("phone number"),
    }
)

# What the coordinator's case page says about a message of the timeline it can not read.
READABLE = MappingProxyType(
    {
        "not addressed to you": N_("Not addressed to your organisation: not shown."),
        "did not verify": N_("Did not pass the security checks: not shown."),
        "no longer available": N_("No longer available at the hub."),
        "erased": N_("Erased here: the retention period of its case has ended."),
    }
)

TIMELINE = MappingProxyType(
    {
        "signal": N_("Signal"),
        "referral": N_("Referral"),
        "status": N_("Status update"),
        "reply": N_("Reply"),
        "delivered": N_("Referral received"),
        "merge": N_("Cases merged"),
        "split": N_("Case split"),
    }
)

# The account log's events (desk.accounts), as the administrator's page shows them.
EVENTS = MappingProxyType(
    {
        "account-added": N_("Account added"),
        "account-disabled": N_("Account disabled"),
        "account-enabled": N_("Account enabled"),
        "account-locked": N_("Account locked after failed logins"),
        "code-failed": N_("Wrong or reused code"),
        "key-failed": N_("Security key not accepted"),
        "login-blocked-account": N_("Login refused: account locked"),
        "login-blocked-address": N_("Login refused: address locked"),
        "login-code": N_("Logged in with a code"),
        "login-failed": N_("Wrong user name or password"),
        "login-key": N_("Logged in with a security key"),
        "login-too-soon": N_("Login refused: too soon after failures"),
        "logout": N_("Logged out"),
        "outbox-entry-dropped": N_("Refused message removed from the queue"),
        "password-accepted": N_("Password accepted"),
        "password-changed": N_("Password changed"),
        "password-reset": N_("Password reset: new first password"),
        "second-factor-reset": N_("Second factor reset"),
        "second-factor-set-up": N_("Authenticator app set up"),
        "security-key-added": N_("Security key added"),
        "setup-code-failed": N_("Wrong code while setting up"),
        "setup-key-failed": N_("Security key not set up"),
    }
)

_ALPHA3_TO_ALPHA2 = {three: two for two, three in ISO3166_ALPHA2_TO_ALPHA3.items()}


def alpha2(code: str) -> str | None:
    """The ISO 3166-1 alpha-2 code of an alpha-2 or alpha-3 code, or None."""
    code = code.strip().upper()
    if code in ISO3166_ALPHA2_TO_ALPHA3:
        return code
    return _ALPHA3_TO_ALPHA2.get(code)


def countries(locale_territories: dict[str, str]) -> list[tuple[str, str]]:
    """(alpha-3 code, name) of every country, sorted by name in the person's language."""
    named = [
        (three, locale_territories.get(two, three))
        for two, three in ISO3166_ALPHA2_TO_ALPHA3.items()
    ]
    return sorted(named, key=lambda item: item[1].casefold())


# The hub's events a coordinator follows (desk.casework's events page).
CASE_EVENTS = MappingProxyType(
    {
        "match": N_("Signal linked to the case"),
        "referral": N_("Referral step"),
        "escalation": N_("Escalation: a referral waits too long"),
    }
)

# The columns of the CoMensha files (clients.comensha REGISTRATION_COLUMNS and
# STATISTICS_COLUMNS), as the CoMensha page heads them.
COMENSHA_COLUMNS = MappingProxyType(
    {
        "case_ref": N_("Case"),
        "first_signal_date": N_("First signal"),
        "family_name": N_("Family name"),
        "given_names": N_("Given names"),
        "date_of_birth": N_("Date of birth"),
        "sex": N_("Sex"),
        "nationality": N_("Nationality"),
        "exploitation_forms": N_("Forms of exploitation"),
        "reporting_org_types": N_("Reported by"),
        "signal_count": N_("Signals"),
        "disagreements": N_("Disagreements"),
        "year": N_("Year"),
        "age_band": N_("Age band"),
        "country_of_origin": N_("Country of origin"),
    }
)
