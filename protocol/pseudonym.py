"""Pseudonyms: keyed hashes of normalised identifiers, the only link the hub sees.

``pseudonym = type "." version "." base32(HMAC-SHA256(linking_key, type || 0x00 || value))``,
base32 lower-case without padding (52 characters); or, on a network whose pseudonyms
come from the two pseudonymisation services, the first 32 bytes of the RFC 9497 output
under the split key for the same ``type || 0x00 || value`` (:func:`oprf_pseudonym`, see
``protocol.oprf``), in the same text form with that key set's version. Types: ``bsn``, ``ndob``
(name + date of birth), ``doc`` (travel document + issuing country),
``tel`` (E.164 phone number).

Two organisations that write the same person differently must derive the
same pseudonym, so every identifier is first brought to one normal form by
the ``normalise_*`` functions below; ``docs/protocol.md`` gives
the rules step by step and ``tests/vectors/pseudonyms.json`` the vectors.
Every input is a ``str`` of at most 200 characters without control, format,
private-use, surrogate or unassigned code points. Errors name the field and
never repeat its value.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import re
import unicodedata
from dataclasses import dataclass, field

from protocol.errors import ValidationError
from protocol.types import Pseudonym

TYPES: tuple[str, ...] = ("bsn", "ndob", "doc", "tel")
LINKING_KEY_BYTES = 32
PSEUDONYM_DIGEST_BYTES = 32
MAX_INPUT_CHARS = 200
MAX_KEY_VERSION = 2**31 - 1
MIN_YEAR, MAX_YEAR = 1900, 2100

# Letters that NFKD does not decompose, written as their case-folded form.
LETTER_MAP: dict[str, str] = {
    "ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "ł": "l", "đ": "d", "ð": "d", "þ": "th",
    "\u0131": "i",  # dotless i (Turkish)
}  # fmt: skip
# Apostrophe-like code points that Unicode files as letters (category Lm / Ll).
APOSTROPHE_LETTERS = frozenset("\u02b9\u02bb\u02bc\u02bd\u02be\u02bf\u02c8\ua78c")
# Family-name particles, in normalised form ("'t" -> "t", "d'" -> "d", "v/d" -> "v d",
# "bij" -> "by", "uijt" -> "uyt"), so compared after every other step. Dropped wherever they
# occur in a family name, unless the family name has no other word.
PARTICLES: frozenset[str] = frozenset(
    {
        # Dutch (tussenvoegsels) and their abbreviations
        "aan", "by", "de", "den", "der", "des", "het", "in", "onder", "op", "over", "s", "t",
        "te", "ten", "ter", "tot", "uit", "uyt", "van", "vande", "vanden", "vander", "vd", "v",
        "ver", "voor",
        # French, German, Italian, Spanish, Portuguese
        "d", "du", "l", "la", "le", "les", "am", "auf", "aus", "dem", "vom", "von", "zu", "zum",
        "zur", "da", "dal", "dalla", "das", "dei", "degli", "del", "della", "di", "do", "dos",
        "las", "lo", "los",
    }
)  # fmt: skip

# ISO 3166-1: every officially assigned alpha-2 code and its alpha-3 code (249 entries).
ISO3166_ALPHA2_TO_ALPHA3: dict[str, str] = {
    "AD": "AND", "AE": "ARE", "AF": "AFG", "AG": "ATG", "AI": "AIA", "AL": "ALB", "AM": "ARM",
    "AO": "AGO", "AQ": "ATA", "AR": "ARG", "AS": "ASM", "AT": "AUT", "AU": "AUS", "AW": "ABW",
    "AX": "ALA", "AZ": "AZE", "BA": "BIH", "BB": "BRB", "BD": "BGD", "BE": "BEL", "BF": "BFA",
    "BG": "BGR", "BH": "BHR", "BI": "BDI", "BJ": "BEN", "BL": "BLM", "BM": "BMU", "BN": "BRN",
    "BO": "BOL", "BQ": "BES", "BR": "BRA", "BS": "BHS", "BT": "BTN", "BV": "BVT", "BW": "BWA",
    "BY": "BLR", "BZ": "BLZ", "CA": "CAN", "CC": "CCK", "CD": "COD", "CF": "CAF", "CG": "COG",
    "CH": "CHE", "CI": "CIV", "CK": "COK", "CL": "CHL", "CM": "CMR", "CN": "CHN", "CO": "COL",
    "CR": "CRI", "CU": "CUB", "CV": "CPV", "CW": "CUW", "CX": "CXR", "CY": "CYP", "CZ": "CZE",
    "DE": "DEU", "DJ": "DJI", "DK": "DNK", "DM": "DMA", "DO": "DOM", "DZ": "DZA", "EC": "ECU",
    "EE": "EST", "EG": "EGY", "EH": "ESH", "ER": "ERI", "ES": "ESP", "ET": "ETH", "FI": "FIN",
    "FJ": "FJI", "FK": "FLK", "FM": "FSM", "FO": "FRO", "FR": "FRA", "GA": "GAB", "GB": "GBR",
    "GD": "GRD", "GE": "GEO", "GF": "GUF", "GG": "GGY", "GH": "GHA", "GI": "GIB", "GL": "GRL",
    "GM": "GMB", "GN": "GIN", "GP": "GLP", "GQ": "GNQ", "GR": "GRC", "GS": "SGS", "GT": "GTM",
    "GU": "GUM", "GW": "GNB", "GY": "GUY", "HK": "HKG", "HM": "HMD", "HN": "HND", "HR": "HRV",
    "HT": "HTI", "HU": "HUN", "ID": "IDN", "IE": "IRL", "IL": "ISR", "IM": "IMN", "IN": "IND",
    "IO": "IOT", "IQ": "IRQ", "IR": "IRN", "IS": "ISL", "IT": "ITA", "JE": "JEY", "JM": "JAM",
    "JO": "JOR", "JP": "JPN", "KE": "KEN", "KG": "KGZ", "KH": "KHM", "KI": "KIR", "KM": "COM",
    "KN": "KNA", "KP": "PRK", "KR": "KOR", "KW": "KWT", "KY": "CYM", "KZ": "KAZ", "LA": "LAO",
    "LB": "LBN", "LC": "LCA", "LI": "LIE", "LK": "LKA", "LR": "LBR", "LS": "LSO", "LT": "LTU",
    "LU": "LUX", "LV": "LVA", "LY": "LBY", "MA": "MAR", "MC": "MCO", "MD": "MDA", "ME": "MNE",
    "MF": "MAF", "MG": "MDG", "MH": "MHL", "MK": "MKD", "ML": "MLI", "MM": "MMR", "MN": "MNG",
    "MO": "MAC", "MP": "MNP", "MQ": "MTQ", "MR": "MRT", "MS": "MSR", "MT": "MLT", "MU": "MUS",
    "MV": "MDV", "MW": "MWI", "MX": "MEX", "MY": "MYS", "MZ": "MOZ", "NA": "NAM", "NC": "NCL",
    "NE": "NER", "NF": "NFK", "NG": "NGA", "NI": "NIC", "NL": "NLD", "NO": "NOR", "NP": "NPL",
    "NR": "NRU", "NU": "NIU", "NZ": "NZL", "OM": "OMN", "PA": "PAN", "PE": "PER", "PF": "PYF",
    "PG": "PNG", "PH": "PHL", "PK": "PAK", "PL": "POL", "PM": "SPM", "PN": "PCN", "PR": "PRI",
    "PS": "PSE", "PT": "PRT", "PW": "PLW", "PY": "PRY", "QA": "QAT", "RE": "REU", "RO": "ROU",
    "RS": "SRB", "RU": "RUS", "RW": "RWA", "SA": "SAU", "SB": "SLB", "SC": "SYC", "SD": "SDN",
    "SE": "SWE", "SG": "SGP", "SH": "SHN", "SI": "SVN", "SJ": "SJM", "SK": "SVK", "SL": "SLE",
    "SM": "SMR", "SN": "SEN", "SO": "SOM", "SR": "SUR", "SS": "SSD", "ST": "STP", "SV": "SLV",
    "SX": "SXM", "SY": "SYR", "SZ": "SWZ", "TC": "TCA", "TD": "TCD", "TF": "ATF", "TG": "TGO",
    "TH": "THA", "TJ": "TJK", "TK": "TKL", "TL": "TLS", "TM": "TKM", "TN": "TUN", "TO": "TON",
    "TR": "TUR", "TT": "TTO", "TV": "TUV", "TW": "TWN", "TZ": "TZA", "UA": "UKR", "UG": "UGA",
    "UM": "UMI", "US": "USA", "UY": "URY", "UZ": "UZB", "VA": "VAT", "VC": "VCT", "VE": "VEN",
    "VG": "VGB", "VI": "VIR", "VN": "VNM", "VU": "VUT", "WF": "WLF", "WS": "WSM", "YE": "YEM",
    "YT": "MYT", "ZA": "ZAF", "ZM": "ZMB", "ZW": "ZWE",
}  # fmt: skip
ISO3166_ALPHA3: frozenset[str] = frozenset(ISO3166_ALPHA2_TO_ALPHA3.values())

_BSN_STRIP = str.maketrans("", "", " .-")
_BSN_WEIGHTS = (9, 8, 7, 6, 5, 4, 3, 2, -1)
_ISO_DATE = re.compile(r"([0-9]{4})([-/.])([0-9]{2})\2([0-9]{2})")
_DMY_DATE = re.compile(r"([0-9]{1,2})([-/.])([0-9]{1,2})\2([0-9]{4})")
_PHONE_STRIP = str.maketrans("", "", " -.()")
_E164 = re.compile(r"\+[1-9][0-9]{7,14}")
_COUNTRY_CODE = re.compile(r"[1-9][0-9]{0,2}")
_DOCUMENT_NUMBER = re.compile(r"[A-Za-z0-9]{5,20}")
_PSEUDONYM = re.compile(r"([a-z]+)\.([1-9][0-9]{0,9})\.([a-z2-7]{52})")


@dataclass(frozen=True, slots=True)
class LinkingKey:
    version: int
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not _is_int(self.version) or not 1 <= self.version <= MAX_KEY_VERSION:
            raise ValidationError(f"linking key version must be 1..{MAX_KEY_VERSION}")
        if not isinstance(self.key, bytes) or len(self.key) != LINKING_KEY_BYTES:
            raise ValidationError(f"linking key must be exactly {LINKING_KEY_BYTES} bytes")

    def __repr__(self) -> str:
        return f"LinkingKey(version={self.version}, key=<hidden>)"


@dataclass(frozen=True, slots=True)
class Identity:
    """What a caseworker knows of a person; every field optional."""

    bsn: str | None = None
    given_names: str | None = None
    family_name: str | None = None
    date_of_birth: str | None = None  # YYYY-MM-DD, or DD-MM-YYYY as Dutch forms write it
    document_number: str | None = None
    document_country: str | None = None  # ISO 3166-1 alpha-2 or alpha-3
    phone: str | None = None

    def __repr__(self) -> str:
        return "Identity(<hidden>)"


# --- input checks -------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(value: object, name: str) -> str:
    """``value`` as a bounded, printable ``str``; the error names ``name``, never the value."""
    if not isinstance(value, str):
        raise ValidationError(f"{name} must be a string")
    if len(value) > MAX_INPUT_CHARS:
        raise ValidationError(f"{name} is longer than {MAX_INPUT_CHARS} characters")
    if any(unicodedata.category(char).startswith("C") for char in value):
        raise ValidationError(f"{name} contains control or invisible characters")
    return value


# --- BSN ----------------------------------------------------------------------------------


def normalise_bsn(value: str) -> str:
    """A Dutch citizen service number as 9 digits; it must pass the 11-test."""
    digits = _text(value, "bsn").translate(_BSN_STRIP)
    if re.fullmatch(r"[0-9]{8}", digits):
        digits = "0" + digits
    if not re.fullmatch(r"[0-9]{9}", digits):
        raise ValidationError("bsn must be 8 or 9 digits (spaces, dots and hyphens allowed)")
    if digits == "000000000":
        raise ValidationError("bsn must not be all zeros")
    if sum(w * int(d) for w, d in zip(_BSN_WEIGHTS, digits, strict=True)) % 11:
        raise ValidationError("bsn fails the 11-test")
    return digits


# --- names --------------------------------------------------------------------------------


def normalise_name(given_names: str, family_name: str) -> str:
    """``"family|given"``: folded, particles dropped from the family name, first given name."""
    return f"{_family_name(family_name)}|{_first_given_name(given_names)}"


def _first_given_name(value: str) -> str:
    words = _name_words(_text(value, "given_names"))
    if not words:
        raise ValidationError("given_names has no letters")
    return words[0]


def _family_name(value: str) -> str:
    words = _name_words(_text(value, "family_name"))
    if not words:
        raise ValidationError("family_name has no letters")
    kept = [word for word in words if word not in PARTICLES]
    return " ".join(kept or words)


def _name_words(value: str) -> list[str]:
    """Fold ``value`` to lower-case base letters and digits; split it into words."""
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", value).casefold())
    chars = []
    for char in text:
        category = unicodedata.category(char)
        if category.startswith("M"):
            continue
        if char in APOSTROPHE_LETTERS or category[0] not in "LN":
            chars.append(" ")
        else:
            chars.append(LETTER_MAP.get(char, char))
    return [word.replace("ij", "y") for word in "".join(chars).split()]


# --- dates --------------------------------------------------------------------------------


def normalise_date(value: str) -> str:
    """A date of birth as ``YYYY-MM-DD``.

    Accepts ``YYYY-MM-DD`` and ``D-M-YYYY`` / ``DD-MM-YYYY``, with ``-``, ``/``
    or ``.`` (the same one twice) and surrounding spaces.
    """
    text = _text(value, "date_of_birth").strip(" ")
    if match := _ISO_DATE.fullmatch(text):
        year, month, day = match.group(1), match.group(3), match.group(4)
    elif match := _DMY_DATE.fullmatch(text):
        day, month, year = match.group(1), match.group(3), match.group(4)
    else:
        raise ValidationError("date_of_birth must be YYYY-MM-DD or DD-MM-YYYY")
    try:
        date = datetime.date(int(year), int(month), int(day))
    except ValueError:
        raise ValidationError("date_of_birth is not a real date") from None
    if not MIN_YEAR <= date.year <= MAX_YEAR:
        raise ValidationError(f"date_of_birth must lie in the years {MIN_YEAR}..{MAX_YEAR}")
    return date.isoformat()


# --- phone numbers ------------------------------------------------------------------------


def normalise_phone(value: str, *, default_country_code: str = "31") -> str:
    """A phone number in E.164 form, ``+`` and 8 to 15 digits."""
    if not isinstance(default_country_code, str) or not _COUNTRY_CODE.fullmatch(
        default_country_code
    ):
        raise ValidationError("default_country_code must be 1 to 3 digits, not starting with 0")
    text = _text(value, "phone")
    if text.lstrip().startswith(("+", "00")):
        text = text.replace("(0)", "")
    number = text.translate(_PHONE_STRIP)
    if number.startswith("00"):
        number = "+" + number[2:]
    elif number.startswith("0"):
        number = "+" + default_country_code + number[1:]
    if not _E164.fullmatch(number):
        raise ValidationError("phone must be an international or national number of 8-15 digits")
    return number


# --- travel documents ---------------------------------------------------------------------


def normalise_document(number: str, country: str) -> str:
    """``"NLD:NW12345A"``: ISO 3166-1 alpha-3 country, upper-case number without separators."""
    return f"{_document_country(country)}:{_document_number(number)}"


def _document_number(value: str) -> str:
    number = _text(value, "document_number").replace(" ", "").replace("-", "")
    if not _DOCUMENT_NUMBER.fullmatch(number):
        raise ValidationError("document_number must be 5-20 letters A-Z and digits")
    return number.upper()


def _document_country(value: str) -> str:
    code = _text(value, "document_country").strip()
    if re.fullmatch(r"[A-Za-z]{2}", code) and code.upper() in ISO3166_ALPHA2_TO_ALPHA3:
        return ISO3166_ALPHA2_TO_ALPHA3[code.upper()]
    if re.fullmatch(r"[A-Za-z]{3}", code) and code.upper() in ISO3166_ALPHA3:
        return code.upper()
    raise ValidationError("document_country must be an ISO 3166-1 alpha-2 or alpha-3 code")


# --- pseudonyms ---------------------------------------------------------------------------


def identifier_input(kind: str, normalised: str) -> bytes:
    """``ASCII(kind) || 0x00 || UTF-8(normalised)``: what is keyed, by HMAC or by the OPRF."""
    if kind not in TYPES:
        raise ValidationError(f"pseudonym type must be one of {', '.join(TYPES)}")
    if not isinstance(normalised, str) or not normalised:
        raise ValidationError("normalised value must be a non-empty string")
    try:
        return kind.encode("ascii") + b"\x00" + normalised.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("normalised value is not valid Unicode") from None


def encode_pseudonym(kind: str, version: int, digest: bytes) -> Pseudonym:
    """``kind.version.base32(digest)`` for a 32-byte keyed digest."""
    if kind not in TYPES:
        raise ValidationError(f"pseudonym type must be one of {', '.join(TYPES)}")
    if not _is_int(version) or not 1 <= version <= MAX_KEY_VERSION:
        raise ValidationError(f"pseudonym version must be 1..{MAX_KEY_VERSION}")
    if not isinstance(digest, bytes) or len(digest) != PSEUDONYM_DIGEST_BYTES:
        raise ValidationError(f"a pseudonym carries {PSEUDONYM_DIGEST_BYTES} bytes")
    encoded = base64.b32encode(digest).decode("ascii").rstrip("=").lower()
    return Pseudonym(f"{kind}.{version}.{encoded}")


def pseudonym(kind: str, normalised: str, key: LinkingKey) -> Pseudonym:
    """``kind.version.base32(HMAC-SHA256(key, kind || 0x00 || normalised))``."""
    message = identifier_input(kind, normalised)
    if not isinstance(key, LinkingKey):
        raise ValidationError("key must be a LinkingKey")
    mac = hmac.new(key.key, message, hashlib.sha256).digest()
    return encode_pseudonym(kind, key.version, mac)


def oprf_pseudonym(kind: str, version: int, output: bytes) -> Pseudonym:
    """``kind.version.base32(first 32 bytes of the OPRF output)`` (``protocol.oprf``)."""
    if not isinstance(output, bytes) or len(output) != 64:
        raise ValidationError("an OPRF output is 64 bytes")
    return encode_pseudonym(kind, version, output[:PSEUDONYM_DIGEST_BYTES])


def derive_pseudonyms(identity: Identity, key: LinkingKey) -> tuple[Pseudonym, ...]:
    """Every pseudonym the identity allows, sorted; ValidationError on a malformed field."""
    if not isinstance(identity, Identity):
        raise ValidationError("identity must be an Identity")
    values = normalised_values(identity)
    return tuple(sorted({pseudonym(kind, value, key) for kind, value in values.items()}))


def normalised_values(identity: Identity) -> dict[str, str]:
    """The normalised value per pseudonym type that ``identity`` allows.

    Every field that is present is checked, even when its partner is missing,
    so a malformed field is never silently dropped.
    """
    fields = _normalise_fields(identity)
    values: dict[str, str] = {}
    if "bsn" in fields:
        values["bsn"] = fields["bsn"]
    if {"family", "given", "date"} <= fields.keys():
        values["ndob"] = f"{fields['family']}|{fields['given']}|{fields['date']}"
    if {"doc_number", "doc_country"} <= fields.keys():
        values["doc"] = f"{fields['doc_country']}:{fields['doc_number']}"
    if "tel" in fields:
        values["tel"] = fields["tel"]
    return values


def _normalise_fields(identity: Identity) -> dict[str, str]:
    steps = {
        "bsn": (identity.bsn, normalise_bsn),
        "given": (identity.given_names, _first_given_name),
        "family": (identity.family_name, _family_name),
        "date": (identity.date_of_birth, normalise_date),
        "doc_number": (identity.document_number, _document_number),
        "doc_country": (identity.document_country, _document_country),
        "tel": (identity.phone, normalise_phone),
    }
    return {name: step(value) for name, (value, step) in steps.items() if value is not None}


def parse_pseudonym(value: object) -> Pseudonym:
    """Check that ``value`` is ``type.version.base32`` exactly as :func:`pseudonym` makes it."""
    error = "pseudonym must be <type>.<version>.<52 lower-case base32 characters>"
    if not isinstance(value, str) or len(value) > 80:
        raise ValidationError(error)
    match = _PSEUDONYM.fullmatch(value)
    if not match or match.group(1) not in TYPES or int(match.group(2)) > MAX_KEY_VERSION:
        raise ValidationError(error)
    # 52 characters carry 260 bits for a 256-bit MAC; the last 4 must be zero, so the last
    # character is "a" (0) or "q" (16). Anything else is a second spelling of the same MAC.
    if match.group(3)[-1] not in "aq":
        raise ValidationError("pseudonym is not canonical base32")
    return Pseudonym(value)
