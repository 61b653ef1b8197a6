"""The one parser of query strings, for every route of the hub.

Each route names the parameters it takes and the form of each (:data:`INTEGER`,
:data:`TEXT`, or :func:`one_of` a few words); :func:`parse_query` refuses, with a
400 ``malformed`` problem, a parameter the route does not take, a parameter given
twice, more than :data:`MAX_PARAMETERS` of them, and a value not of its form. What
passes is one text per name, which the route's use-case then reads for its meaning
(a range, a filter). A route that takes none refuses any.

A detail never quotes what the client sent (a parameter's name could be a token
pasted in the wrong place); it names the parameters the route does take.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from multidict import MultiMapping

from hub.errors import Malformed

MAX_PARAMETERS = 16
MAX_TEXT_CHARS = 200


@dataclass(frozen=True, slots=True)
class Param:
    """The form of one parameter's value: a full-match pattern and how to say it."""

    pattern: re.Pattern[str]
    says: str

    def check(self, name: str, value: str) -> str:
        if not self.pattern.fullmatch(value):
            raise Malformed(f"query parameter {name} must be {self.says}")
        return value


INTEGER = Param(re.compile(r"[0-9]{1,19}"), "a whole number in decimal digits")
TEXT = Param(
    re.compile(rf"[\x21-\x7e]{{1,{MAX_TEXT_CHARS}}}"),
    f"1-{MAX_TEXT_CHARS} printable ASCII characters",
)
Spec = Mapping[str, Param]
NONE: Spec = {}


def one_of(*words: str) -> Param:
    alternatives = "|".join(re.escape(word) for word in words)
    return Param(re.compile(alternatives), "one of " + ", ".join(words))


def parse_query(query: MultiMapping[str], spec: Spec) -> dict[str, str]:
    """The query's parameters by name, each once and of its form; else 400 ``malformed``."""
    pairs = list(query.items())  # every pair, a repeated name as often as it came
    if len(pairs) > MAX_PARAMETERS or not {name for name, _ in pairs} <= set(spec):
        takes = ", ".join(sorted(spec)) if spec else "no query parameters"
        raise Malformed(f"unknown query parameter; this route takes {takes}")
    found: dict[str, str] = {}
    for name, value in pairs:
        if name in found:
            raise Malformed(f"query parameter {name} is given twice")
        found[name] = spec[name].check(name, value)
    return found
