"""Deterministic hostile requests for every operation of ``hub/openapi.json``.

No hub here, only bytes: :func:`operations` reads the OpenAPI document, and
:func:`cases` turns one valid request of an operation (a :class:`Valid`, built
by the test against a live hub) into a bounded list of :class:`Case` values,
each a raw HTTP request target, header list and body. Every mutation is
hand-written; the only randomness is a ``random.Random`` the caller seeds, so
the same seed gives the same requests.

Inputs that aiohttp's HTTP parser itself refuses before any application code
runs (a request line or header field over 8190 bytes, raw non-ASCII bytes in
the path, control characters in a header value) are not in :func:`cases`: they
are the cases of :data:`PARSER_CASES`, each tested once on its own.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

Headers = tuple[tuple[bytes, bytes], ...]
Query = tuple[tuple[bytes, bytes | None], ...]  # None: a name without '='


@dataclass(frozen=True, slots=True)
class Operation:
    """One (method, path) of the OpenAPI document."""

    method: str
    template: str
    path_params: tuple[str, ...]
    query_params: tuple[str, ...]
    has_body: bool
    needs_auth: bool
    purpose_required: bool
    statuses: frozenset[int]

    @property
    def key(self) -> str:
        return f"{self.method} {self.template}"


def operations(document: dict[str, Any]) -> list[Operation]:
    """Every operation of ``document``, in document order."""
    found = []
    for template, item in document["paths"].items():
        for method, op in item.items():
            params = [_resolve(document, p) for p in op.get("parameters", [])]
            found.append(
                Operation(
                    method=method.upper(),
                    template=template,
                    path_params=tuple(p["name"] for p in params if p["in"] == "path"),
                    query_params=tuple(p["name"] for p in params if p["in"] == "query"),
                    has_body="requestBody" in op,
                    needs_auth=bool(op.get("security")),
                    purpose_required=any(
                        p["name"] == "Schakel-Purpose" and p.get("required") for p in params
                    ),
                    statuses=frozenset(int(code) for code in op["responses"]),
                )
            )
    return found


def _resolve(document: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    ref = item.get("$ref")
    if ref is None:
        return item
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class Valid:
    """A valid request of one operation: what every case mutates one part of."""

    path: dict[str, bytes]
    query: Query
    headers: Headers  # Authorization, Schakel-User, Schakel-Purpose, ...
    body: Any = None  # a JSON value, or None for no body
    body_limit: int = 64 * 1024  # bytes the route reads at most, if it reads a body
    other_token: bytes = b""  # a valid Authorization value of another organisation


@dataclass(frozen=True, slots=True)
class Case:
    """One raw request: target (path and query), headers and body."""

    label: str
    target: bytes
    headers: Headers
    body: bytes | None = None
    chunked: bool = False
    declared_length: int | None = None  # a Content-Length that is not the body's length
    reject: bool = False  # the hub must refuse it (a 2xx answer is a violation)


def target_of(op: Operation, path: dict[str, bytes], query: Query) -> bytes:
    target = op.template.encode()
    for name, value in path.items():
        target = target.replace(b"{" + name.encode() + b"}", value)
    if query:
        target += b"?" + b"&".join(k + b"=" + v if v is not None else k for k, v in query)
    return target


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


KEEP: Any = object()  # make(): leave this part of the valid request as it is


def make(
    op: Operation,
    valid: Valid,
    label: str,
    *,
    path: dict[str, bytes] | None = None,
    query: Query | None = None,
    headers: Headers | None = None,
    body: Any = KEEP,
    content_type: Any = KEEP,
    **kw: Any,
) -> Case:
    """``valid`` as a Case, with the given parts replaced (``body`` in bytes, or None)."""
    keep = None if valid.body is None else json_bytes(valid.body)
    raw: bytes | None = keep if body is KEEP else body
    hdrs = list(valid.headers if headers is None else headers)
    if content_type is KEEP:
        content_type = b"application/json" if raw is not None else None
    if content_type is not None:
        hdrs.append((b"Content-Type", content_type))
    return Case(
        label=label,
        target=target_of(
            op, {**valid.path, **(path or {})}, valid.query if query is None else query
        ),
        headers=tuple(hdrs),
        body=raw,
        **kw,
    )


def baseline(op: Operation, valid: Valid) -> Case:
    return make(op, valid, "valid baseline")


# -- path parameters ------------------------------------------------------------------

PATH_VALUES: tuple[tuple[str, bytes], ...] = (
    ("invalid form", b"!!not-an-id!!"),
    ("overlong 300", b"a" * 300),
    ("overlong 4000", b"b" * 4000),
    ("unicode percent-encoded", b"%C3%A9%E2%80%AE%F0%9F%98%80"),
    ("bad percent-encoding", b"%zz%"),
    ("percent-encoded invalid UTF-8", b"%ff%fe"),
    ("percent-encoded NUL", b"org%00a"),
    ("traversal ../", b"../"),
    ("traversal ../../", b"../../v1/hub"),
    ("traversal percent-encoded", b"..%2F..%2Fv1%2Fhub"),
    ("dot-dot encoded", b"%2e%2e"),
    ("single dot", b"."),
    ("empty", b""),
    ("space", b"%20"),
    ("percent-encoded slash", b"a%2Fb"),
    ("negative", b"-1"),
    ("huge 2**63", str(2**63).encode()),
    ("huge 10**30", str(10**30).encode()),
    ("leading zeros", b"0000000000000000001"),
    ("plus sign", b"+1"),
)


def path_cases(op: Operation, valid: Valid) -> Iterator[Case]:
    for name in op.path_params:
        good = valid.path[name]
        values = (
            *PATH_VALUES,
            ("valid, upper-cased", good.upper()),
            ("valid, trailing slash", good + b"/"),
            ("valid, one char more", good + b"A"),
            ("valid, one char less", good[:-1]),
            ("valid, percent-encoded", b"".join(b"%%%02X" % c for c in good)),
        )
        for label, value in values:
            reject = value != good and not label.endswith("percent-encoded")
            yield make(op, valid, f"path {name}: {label}", path={name: value}, reject=reject)


# -- query strings ----------------------------------------------------------------------

QUERY_VALUES: tuple[tuple[str, bytes], ...] = (
    ("negative", b"-1"),
    ("zero", b"0"),
    ("2**53", str(2**53).encode()),
    ("2**63", str(2**63).encode()),
    ("10**30", str(10**30).encode()),
    ("non-numeric", b"abc"),
    ("empty", b""),
    ("float", b"1.5"),
    ("plus sign", b"%2B1"),
    ("space padded", b"%201"),
    ("arabic-indic digits", b"%D9%A3"),
    ("percent-encoded NUL", b"%00"),
    ("bad percent-encoding", b"%zz"),
    ("invalid UTF-8", b"%ff"),
    ("long", b"9" * 2000),
)


NUMERIC_PARAMS = frozenset(
    ("after", "limit", "start", "end", "since", "until", "size", "from", "to")
)
NEVER_A_NUMBER = frozenset(label for label, _ in QUERY_VALUES if label not in ("zero", "2**53"))
NEVER_A_TEXT = frozenset(("percent-encoded NUL", "invalid UTF-8", "long"))


def query_cases(op: Operation, valid: Valid) -> Iterator[Case]:
    others = [(k, v) for k, v in valid.query]
    for name in op.query_params:
        key = name.encode()
        rest = tuple((k, v) for k, v in others if k != key)
        never = NEVER_A_NUMBER if name in NUMERIC_PARAMS else NEVER_A_TEXT
        for label, value in QUERY_VALUES:
            query = ((key, value), *rest)
            yield make(op, valid, f"query {name}={label}", query=query, reject=label in never)
        repeated = ((key, b"1"), (key, b"2"), *rest)
        yield make(op, valid, f"query {name} repeated", query=repeated, reject=True)
        yield make(op, valid, f"query {name} without =", query=((key, None), *rest))
    base = tuple(others)
    yield make(op, valid, "query unknown parameter", query=((b"zzz", b"1"), *base), reject=True)
    empty_name = ((b"", b"1"), *base)
    yield make(op, valid, "query unknown parameter, empty name", query=empty_name, reject=True)
    many = tuple((b"p%d" % i, b"1") for i in range(300))
    yield make(op, valid, "query many parameters", query=many, reject=True)
    yield make(op, valid, "query bare ?", query=((b"", None),))


# -- headers ----------------------------------------------------------------------------


def _without(headers: Headers, *names: bytes) -> list[tuple[bytes, bytes]]:
    lower = {n.lower() for n in names}
    return [(k, v) for k, v in headers if k.lower() not in lower]


def _with(headers: Headers, name: bytes, value: bytes) -> Headers:
    return (*_without(headers, name), (name, value))


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _unsigned_jwt(org: str) -> bytes:
    head = _b64(b'{"alg":"none","typ":"JWT"}')
    claims = _b64(json_bytes({"sub": org, "org": org, "roles": ["network_privacy_officer"]}))
    return head + b"." + claims + b"."


TOKEN_VALUES: tuple[tuple[str, bytes | None], ...] = (
    ("no token", None),
    ("garbage token", b"Bearer garbage"),
    ("empty bearer", b"Bearer "),
    ("scheme only", b"Bearer"),
    ("basic scheme", b"Basic dXNlcjpwYXNz"),
    ("unsigned alg=none token", b"Bearer " + _unsigned_jwt("org-b")),
    ("token of 5000 characters", b"Bearer " + b"A" * 5000),
    ("three-part garbage", b"Bearer a.b.c"),
)


def header_cases(op: Operation, valid: Valid) -> Iterator[Case]:
    h = valid.headers
    auth = dict((k.lower(), v) for k, v in h).get(b"authorization", b"")
    need = op.needs_auth
    for label, value in TOKEN_VALUES:
        rest = _without(h, b"Authorization")
        if value is not None:
            rest.append((b"Authorization", value))
        yield make(op, valid, f"auth: {label}", headers=tuple(rest), reject=need)
    if auth:
        token = auth.partition(b" ")[2]
        for label, value, reject in (
            ("token of another org", valid.other_token, False),  # 404 only where org-scoped
            ("lower-case scheme", b"bearer " + token, False),  # schemes are case-insensitive
            ("flipped signature", b"Bearer " + _flip_last(token), True),
            ("truncated token", b"Bearer " + token[:-5], True),
            ("tab instead of space", b"Bearer\t" + token, True),
        ):
            headers = _with(h, b"Authorization", value)
            yield make(op, valid, f"auth: {label}", headers=headers, reject=reject)
        yield make(op, valid, "auth: token twice", headers=(*h, (b"Authorization", auth)))
    yield from _user_cases(op, valid)
    yield from _purpose_cases(op, valid)
    yield from _purpose_text_cases(op, valid)


def _flip_last(token: bytes) -> bytes:
    last = token[-2:-1]
    return token[:-2] + (b"B" if last != b"B" else b"C") + token[-1:]


USER_VALUES: tuple[tuple[str, bytes | None], ...] = (
    ("missing", None),
    ("empty", b""),
    ("with spaces", b"user one"),
    ("65 characters", b"u" * 65),
    ("64 characters", b"u" * 64),
    ("tab inside", b"a\tb"),
    ("invalid UTF-8", b"a\xff\xfeb"),
    ("non-ASCII UTF-8", "gebruiker-é".encode()),
    ("bidi mark", "a\u202eb".encode()),
)


def _user_cases(op: Operation, valid: Valid) -> Iterator[Case]:
    for label, value in USER_VALUES:
        headers = _without(valid.headers, b"Schakel-User")
        if value is not None:
            headers.append((b"Schakel-User", value))
        reject = op.needs_auth and label != "64 characters"
        yield make(op, valid, f"Schakel-User {label}", headers=tuple(headers), reject=reject)
    yield make(
        op, valid, "Schakel-User twice", headers=(*valid.headers, (b"Schakel-User", b"other"))
    )


PURPOSE_VALUES: tuple[tuple[str, bytes | None], ...] = (
    ("missing", None),
    ("unknown", b"fishing-expedition"),
    ("empty", b""),
    ("upper-case", b"AUDIT"),
    ("two codes", b"audit,referral"),
    ("invalid UTF-8", b"audit\xff"),
)


def _purpose_cases(op: Operation, valid: Valid) -> Iterator[Case]:
    for label, value in PURPOSE_VALUES:
        headers = _without(valid.headers, b"Schakel-Purpose")
        if value is not None:
            headers.append((b"Schakel-Purpose", value))
        reject = op.needs_auth and (value is not None or op.purpose_required)
        yield make(op, valid, f"Schakel-Purpose {label}", headers=tuple(headers), reject=reject)


PURPOSE_TEXT_VALUES: tuple[tuple[str, bytes], ...] = (
    ("valid", b"melding%20over%20de%20haven"),
    ("truncated UTF-8 %C3", b"abc%C3"),
    ("invalid UTF-8 %FF%FE", b"%FF%FE"),
    ("overlong UTF-8 %C0%AF", b"%C0%AF"),
    ("encoded surrogate", b"%ED%A0%80"),
    ("encoded NUL", b"a%00b"),
    ("encoded newline", b"a%0Ab"),
    ("encoded bidi override", b"a%E2%80%AEb"),
    ("encoded right-to-left mark", b"a%E2%80%8Fb"),
    ("encoded zero-width space", b"a%E2%80%8Bb"),
    ("raw bidi mark", "a\u202eb".encode()),
    ("raw invalid UTF-8", b"a\xff\xfeb"),
    ("raw space", b"a b"),
    ("empty", b""),
    ("200 characters", b"%41" * 200),
    ("201 characters", b"%41" * 201),
    ("2400 header characters", b"%41" * 800),
    ("2401 header characters", b"A" * 2401),
    ("7 KB", b"A" * 7000),
)


def _purpose_text_cases(op: Operation, valid: Valid) -> Iterator[Case]:
    for label, value in PURPOSE_TEXT_VALUES:
        headers = _with(valid.headers, b"Schakel-Purpose-Text", value)
        reject = op.needs_auth and label not in ("valid", "200 characters")
        yield make(op, valid, f"Schakel-Purpose-Text {label}", headers=headers, reject=reject)


# -- bodies -----------------------------------------------------------------------------

CONTENT_TYPES: tuple[tuple[str, bytes | None], ...] = (
    ("no content type", None),
    ("text/plain", b"text/plain"),
    ("form", b"application/x-www-form-urlencoded"),
    ("multipart", b"multipart/form-data; boundary=x"),
    ("json latin-1", b"application/json; charset=latin-1"),
    ("json utf-16", b"application/json; charset=utf-16"),
    ("jsonx", b"application/jsonx"),
    ("problem+json", b"application/problem+json"),
    ("json, upper-case", b"APPLICATION/JSON"),
    ("json; charset=UTF-8", b"application/json; charset=UTF-8"),
    ("garbage media type", b";;;==="),
)


def _nested(depth: int, open_: str, close: str) -> bytes:
    return (open_ * depth + close * depth).encode()


def _nested_objects(depth: int) -> bytes:
    return ('{"a":' * depth + "1" + "}" * depth).encode()


def generic_bodies(limit: int) -> Iterator[tuple[str, bytes | None, bytes | None]]:
    """(label, body, content type) for bodies of the wrong shape."""
    js = b"application/json"
    yield "body absent, json content type", None, js
    yield "body empty", b"", js
    yield "body not JSON", b"hello, hub", js
    yield "body invalid UTF-8", b'{"a":"\xff\xfe"}', js
    yield "body UTF-8 BOM", b"\xef\xbb\xbf{}", js
    yield "body UTF-16", '{"a":1}'.encode("utf-16"), js
    values: tuple[Any, ...] = (None, True, False, 0, -1, 1, "text", [], {}, [1, 2], [{}])
    for value in values:
        yield f"body JSON {json.dumps(value)}", json_bytes(value), js
    yield "body depth 17 arrays", _nested(17, "[", "]"), js
    yield "body depth 17 objects", _nested_objects(17), js
    yield "body depth 10000 arrays", _nested(10_000, "[", "]"), js
    yield "body depth 10000 objects", _nested_objects(10_000), js
    yield "body duplicate keys", b'{"a":1,"a":2}', js
    yield "body float", b"1.5", js
    yield "body exponent", b"1e400", js
    yield "body huge integer", b"1" + b"0" * 5000, js
    yield "body 2**64", str(2**64).encode(), js
    yield "body NaN", b"NaN", js
    yield "body Infinity", b'{"a":-Infinity}', js
    yield "body lone surrogate", b'{"a":"\\ud800"}', js
    yield "body NUL in string", b'{"a":"\\u0000"}', js
    yield "body trailing garbage", b"{} {}", js
    yield "body long string under the limit", json_bytes({"a": "x" * (limit - 100)}), js
    yield "body oversized (limit + 1)", json_bytes({"a": "x" * (limit - 7)}), js


def body_cases(op: Operation, valid: Valid, rng: random.Random) -> Iterator[Case]:
    limit = valid.body_limit
    for label, body, ctype in generic_bodies(limit):
        yield make(op, valid, label, body=body, content_type=ctype, reject=True)
    good = json_bytes(valid.body if valid.body is not None else {})
    for label, ctype in CONTENT_TYPES:
        reject = label not in ("json, upper-case", "json; charset=UTF-8")  # RFC 9110: any case
        yield make(op, valid, f"valid body, {label}", body=good, content_type=ctype, reject=reject)
    for cut in sorted({1, len(good) // 2, len(good) - 1}):
        yield make(op, valid, f"valid body truncated to {cut} bytes", body=good[:cut], reject=True)
    too_long: tuple[tuple[str, dict[str, Any]], ...] = (
        ("oversized chunked body", {"body": b" " * (limit + 1), "chunked": True}),
        ("declared Content-Length over the limit", {"body": b"{}", "declared_length": limit + 1}),
        ("declared Content-Length 2**63", {"body": b"{}", "declared_length": 2**63}),
    )
    for label, parts in too_long:
        yield make(op, valid, label, reject=True, **parts)
    if isinstance(valid.body, dict):
        for label, mutated in field_mutations(valid.body, rng):
            yield make(op, valid, f"mutated: {label}", body=mutated, reject=True)


# -- one field of a valid body ------------------------------------------------------------

WRONG_TYPES: tuple[tuple[str, Any], ...] = (
    ("null", None),
    ("true", True),
    ("0", 0),
    ("-1", -1),
    ("2**53", 2**53),
    ("2**64", 2**64),
    ("10**30", 10**30),
    ("empty string", ""),
    ("string", "x"),
    ("unicode string", "é\u202e😀"),
    ("empty list", []),
    ("list", ["a"]),
    ("empty object", {}),
    ("object", {"a": 1}),
)


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list) and value:
        for i, item in enumerate(value):
            yield from _leaves(item, (*path, i))
    else:
        yield path, value


def _set(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = json.loads(json.dumps(value))
    node = copy
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = new
    return copy


def _delete(value: Any, path: tuple[Any, ...]) -> Any:
    copy = json.loads(json.dumps(value))
    node = copy
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]
    return copy


def _string_mutations(text: str, rng: random.Random) -> Iterator[tuple[str, str]]:
    if text:
        i = rng.randrange(len(text))
        yield "a character replaced", text[:i] + ("A" if text[i] != "A" else "B") + text[i + 1 :]
        yield "one character less", text[:-1]
        yield "last character changed", text[:-1] + ("A" if text[-1] != "A" else "B")
    yield "one character more", text + "A"
    yield "doubled", text + text
    yield "padded base64", text + "=="
    yield "standard base64 alphabet", text.replace("-", "+").replace("_", "/") + "+/"
    yield "surrounding space", f" {text} "
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        return
    if raw:
        bit = rng.randrange(len(raw) * 8)
        flipped = bytearray(raw)
        flipped[bit // 8] ^= 1 << (bit % 8)
        yield f"bit {bit} flipped", _b64(bytes(flipped)).decode()
        yield "one byte shorter", _b64(raw[:-1]).decode()
        yield "one byte longer", _b64(raw + b"\x00").decode()


def _field_values(leaf: Any, rng: random.Random) -> Iterator[tuple[str, Any]]:
    for label, wrong in WRONG_TYPES:
        if type(wrong) is not type(leaf) or wrong != leaf:
            yield label, wrong
    yield "float", 1.5
    if isinstance(leaf, str):
        yield from _string_mutations(leaf, rng)
    if isinstance(leaf, int) and not isinstance(leaf, bool):
        yield "plus one", leaf + 1
        yield "minus one", leaf - 1
        yield "negated", -leaf


def field_mutations(body: dict[str, Any], rng: random.Random) -> Iterator[tuple[str, bytes]]:
    """The valid ``body`` with one field changed, removed, added or duplicated."""
    leaves = list(_leaves(body))
    for path, leaf in rng.sample(leaves, min(len(leaves), 8)):
        name = "/".join(str(p) for p in path)
        values = list(_field_values(leaf, rng))
        for label, value in rng.sample(values, min(len(values), 10)):
            yield f"{name} -> {label}", json_bytes(_set(body, path, value))
        yield f"{name} removed", json_bytes(_delete(body, path))
    for key in body:
        yield f"top-level {key} removed", json_bytes(_delete(body, (key,)))
    yield "extra top-level key", json_bytes({**body, "extra": 1})
    yield "extra key, __proto__", json_bytes({**body, "__proto__": {"admin": True}})
    first = next(iter(body))
    dup = json_bytes({first: body[first]})[1:-1]
    yield f"duplicate key {first}", b"{" + dup + b"," + json_bytes(body)[1:]
    for path, leaf in leaves:
        if isinstance(leaf, int) and not isinstance(leaf, bool):
            name = "/".join(str(p) for p in path)
            yield f"{name} as float text", _replace_number(body, path, f"{leaf}.0")
            yield f"{name} as exponent", _replace_number(body, path, "1e3")
            yield f"{name} as NaN", _replace_number(body, path, "NaN")
            break
    yield "wrapped in a list", json_bytes([body])
    yield "body nested under a key", json_bytes({"body": body})


def _replace_number(body: dict[str, Any], path: tuple[Any, ...], literal: str) -> bytes:
    marker = "\u0000MARK\u0000"
    return json_bytes(_set(body, path, marker)).replace(json_bytes(marker), literal.encode())


def bodyless_cases(op: Operation, valid: Valid) -> Iterator[Case]:
    """A route that reads no body must ignore one, whatever it holds."""
    js = b"application/json"
    yield make(op, valid, "unexpected JSON body", body=b'{"a":1}', content_type=js)
    yield make(
        op, valid, "unexpected garbage body", body=b"\xff\x00garbage", content_type=b"text/plain"
    )
    yield make(op, valid, "unexpected deep body", body=_nested(10_000, "[", "]"), content_type=js)
    yield make(
        op, valid, "unexpected chunked body", body=b"x" * 1000, chunked=True, content_type=js
    )


def cases(op: Operation, valid: Valid, rng: random.Random) -> list[Case]:
    """Every hostile case of ``op``, in a fixed order for a given ``rng`` seed."""
    found = [*path_cases(op, valid), *query_cases(op, valid), *header_cases(op, valid)]
    found += body_cases(op, valid, rng) if op.has_body else bodyless_cases(op, valid)
    return found


# -- inputs aiohttp's parser refuses before the application runs ---------------------------

Mutation = Callable[[Operation, Valid], Case]

PARSER_CASES: dict[str, Mutation] = {
    "path parameter of 9000 characters": lambda op, v: make(
        op, v, "path: 9000 characters", path={op.path_params[0]: b"a" * 9000}
    ),
    "raw UTF-8 bytes in the path": lambda op, v: make(
        op, v, "path: raw UTF-8", path={op.path_params[0]: "é".encode()}
    ),
    "query string of 9000 characters": lambda op, v: make(
        op, v, "query: 9000 characters", query=((b"zzz", b"9" * 9000),)
    ),
    "control character in Schakel-User": lambda op, v: make(
        op, v, "Schakel-User \\x01", headers=_with(v.headers, b"Schakel-User", b"a\x01b")
    ),
    "Schakel-Purpose-Text of 10 KB": lambda op, v: make(
        op,
        v,
        "Schakel-Purpose-Text 10 KB",
        headers=_with(v.headers, b"Schakel-Purpose-Text", b"%41" * 3414),
    ),
}


# Malformed percent-encoding the hub takes literally instead of refusing (known bug).
def _purpose_text(label: str, value: bytes) -> Mutation:
    def mutate(op: Operation, valid: Valid) -> Case:
        headers = _with(valid.headers, b"Schakel-Purpose-Text", value)
        return make(op, valid, label, headers=headers, reject=True)

    return mutate


PURPOSE_TEXT_ESCAPES: dict[str, Mutation] = {
    f"Schakel-Purpose-Text {label}": _purpose_text(f"Schakel-Purpose-Text {label}", value)
    for label, value in (("bad escape %zz", b"abc%zz"), ("lone %", b"abc%"), ("%4", b"%4"))
}
