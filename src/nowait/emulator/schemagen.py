"""A small deterministic JSON Schema instance generator: what the fake model puts in a
`tool_use` block's `input` and in a structured (`json_schema`) answer.

Same schema and seed, same value. It honours what tool and output schemas use: `type` (one
or a list), `enum`, `const`, `properties` + `required`, `items` / `prefixItems` with
`minItems`/`maxItems`/`uniqueItems`, string `minLength`/`maxLength`/`format`/`pattern` (a few
candidates are tried against a pattern), numeric bounds and `multipleOf`, `anyOf`/`oneOf`
(the first branch), `allOf` (merged), local `$ref`s (`#/$defs/…`, `#/definitions/…`). A
value it cannot derive (a malformed schema, a pattern none of its candidates match) is still
JSON, never an error: the SDK's own tests send schemas like `{"foo": "bar"}`.
"""

from __future__ import annotations

import math
import random
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any

Maker = Callable[[Mapping[str, Any], "_Draws", Mapping[str, Any], int], Any]
MAX_DEPTH = 24
"""Deeper than this (a recursive `$ref` that requires itself, say) the generator stops."""
MAX_NODES = 5_000
"""Values one answer may hold: `minItems: 1000` nested three deep must not build 10⁹ items."""
LEAN_DEPTH = 4
"""From this depth on, only what is required: `minItems` items, `required` properties, so
recursive schemas (a tree of nodes with `children`) end."""
WORDS = ("alpha", "bravo", "delta", "order", "ticket", "summary", "report", "label", "batch")
FORMATS = {
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "time": "00:00:00Z",
    "duration": "PT1H",
    "email": "user@example.com",
    "idn-email": "user@example.com",
    "hostname": "example.com",
    "idn-hostname": "example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "uri": "https://example.com/",
    "iri": "https://example.com/",
    "uri-reference": "https://example.com/",
    "iri-reference": "https://example.com/",
}
_PATTERN_CANDIDATES = ("sample", "a", "A", "0", "12345", "ab-12", "abc_123", "2026-01-01", "")


class _Draws(random.Random):
    """The seeded generator, carrying what is left of the node budget."""

    def __init__(self, seed: bytes | int | str) -> None:
        super().__init__(seed)
        self.left = MAX_NODES


def instance(schema: Any, seed: bytes | int | str = 0) -> Any:
    """A value valid against `schema` (as far as the keywords above go), derived from `seed`."""
    root = schema if isinstance(schema, Mapping) else {}
    return _value(schema, _Draws(seed), root, 0)


def _value(schema: Any, rng: _Draws, root: Mapping[str, Any], depth: int) -> Any:
    rng.left -= 1
    if not isinstance(schema, Mapping):  # `true`, `false` or not a schema at all
        return None if schema is False or rng.left < 0 else _word(rng)
    schema = _resolved(schema, rng, root, depth)
    enum = schema.get("enum")
    fixed = [schema["const"]] if "const" in schema else enum if isinstance(enum, list) else []
    if fixed:
        return fixed[rng.randrange(len(fixed))]
    branch = _first_branch(schema, rng, root, depth) if depth < MAX_DEPTH else None
    if branch is not None:
        return _value(branch, rng, root, depth + 1)
    kind = _type_of(schema)
    if depth >= MAX_DEPTH or rng.left < 0:
        return _shallow(kind)
    make: Maker = _MAKERS.get(kind, _string)
    return make(schema, rng, root, depth)


def _first_branch(
    schema: Mapping[str, Any], rng: _Draws, root: Mapping[str, Any], depth: int
) -> dict[str, Any] | None:
    """`anyOf`/`oneOf`: the schema with its first branch merged in, or None without them."""
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            rest = {k: v for k, v in schema.items() if k != key}
            first = branches[0]
            return {
                **rest,
                **(_resolved(first, rng, root, depth) if isinstance(first, Mapping) else {}),
            }
    return None


def _resolved(
    schema: Mapping[str, Any], rng: _Draws, root: Mapping[str, Any], depth: int
) -> dict[str, Any]:
    """The schema with its `$ref` followed and its `allOf` merged in."""
    out = dict(schema)
    ref = out.pop("$ref", None)
    if isinstance(ref, str) and depth < MAX_DEPTH and rng.left > 0:
        rng.left -= 1  # the budget bounds `allOf`s of self-references too
        target = _pointer(root, ref)
        if isinstance(target, Mapping):
            out = {**_resolved(target, rng, root, depth + 1), **out}
    parts = out.pop("allOf", None)
    if isinstance(parts, list) and rng.left >= 0:
        for part in parts:
            if isinstance(part, Mapping):
                out = _merge(out, _resolved(part, rng, root, depth + 1))
    return out


def _merge(left: dict[str, Any], right: Mapping[str, Any]) -> dict[str, Any]:
    merged = {**right, **left}
    for key in ("properties",):
        if isinstance(left.get(key), Mapping) and isinstance(right.get(key), Mapping):
            merged[key] = {**right[key], **left[key]}
    if isinstance(left.get("required"), list) and isinstance(right.get("required"), list):
        merged["required"] = [*left["required"], *right["required"]]
    return merged


def _pointer(root: Mapping[str, Any], ref: str) -> Any:
    if not ref.startswith("#"):
        return None
    node: Any = root
    for raw in ref[1:].split("/")[1:] if ref != "#" else []:
        key = raw.replace("~1", "/").replace("~0", "~")
        node = node.get(key) if isinstance(node, Mapping) else None
    return node


def _type_of(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        named = [k for k in kind if isinstance(k, str)]
        kind = next((k for k in named if k != "null"), named[0] if named else None)
    if isinstance(kind, str):
        return kind
    if "properties" in schema or "required" in schema or "additionalProperties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")):
        return "number"
    return "string"


def _shallow(kind: str) -> Any:
    return {
        "object": {},
        "array": [],
        "integer": 0,
        "number": 0,
        "boolean": False,
        "string": "",
    }.get(kind)


def _object(
    schema: Mapping[str, Any], rng: _Draws, root: Mapping[str, Any], depth: int
) -> dict[str, Any]:
    properties = schema.get("properties")
    properties = properties if isinstance(properties, Mapping) else {}
    required = schema.get("required")
    names = [str(n) for n in required if isinstance(n, str)] if isinstance(required, list) else []
    if depth < LEAN_DEPTH:
        names += [n for n in properties if n not in names and properties[n] is not False]
    return {n: _value(properties.get(n, True), rng, root, depth + 1) for n in names}


def _array(
    schema: Mapping[str, Any], rng: _Draws, root: Mapping[str, Any], depth: int
) -> list[Any]:
    prefix = schema.get("prefixItems")
    prefix = prefix if isinstance(prefix, list) else []
    items = schema.get("items", True)
    low = _int_keyword(schema, "minItems", 0)
    high = _int_keyword(schema, "maxItems", max(low, len(prefix), 1))
    wanted = max(low, len(prefix), 1) if depth < LEAN_DEPTH else low
    count = min(wanted, high)
    out: list[Any] = []
    for i in range(count):
        if rng.left <= 0:
            break
        item_schema = prefix[i] if i < len(prefix) else items
        value = _value(item_schema, rng, root, depth + 1)
        for _ in range(8):  # uniqueItems: draw again rather than repeat a value
            if not schema.get("uniqueItems") or value not in out:
                break
            value = _value(item_schema, rng, root, depth + 1)
        out.append(value)
    return out


def _string(
    schema: Mapping[str, Any], rng: _Draws, root: Mapping[str, Any] = {}, depth: int = 0
) -> str:
    fmt = schema.get("format")
    if fmt == "uuid":
        text = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    elif isinstance(fmt, str) and fmt in FORMATS:
        text = FORMATS[fmt]
    else:
        text = _word(rng)
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        text = _matching(pattern, text)
    low = _int_keyword(schema, "minLength", 0)
    high = _int_keyword(schema, "maxLength", max(low, len(text)))
    if len(text) < low:
        text = (text + "x" * low)[:low] if text else "x" * low
    return text[: max(low, high)]


def _matching(pattern: str, preferred: str) -> str:
    try:
        compiled = re.compile(pattern)
    except (re.error, RecursionError, OverflowError):
        return preferred
    for candidate in (preferred, *_PATTERN_CANDIDATES):
        if compiled.search(candidate):
            return candidate
    return preferred


def _integer(
    schema: Mapping[str, Any], rng: _Draws, root: Mapping[str, Any] = {}, depth: int = 0
) -> int:
    low, high = _bounds(schema)
    lo = math.ceil(low) if low is not None else 0
    hi = math.floor(high) if high is not None else lo + 100
    if low is None and hi < lo:
        lo = hi - 100
    step = schema.get("multipleOf")
    if isinstance(step, int) and not isinstance(step, bool) and step > 0:
        first = -(-lo // step) * step
        return first if first <= hi or high is None else lo
    return rng.randint(lo, max(lo, hi))


def _number(
    schema: Mapping[str, Any], rng: _Draws, root: Mapping[str, Any] = {}, depth: int = 0
) -> float | int:
    step = schema.get("multipleOf")
    low, high = _bounds(schema)
    if isinstance(step, (int, float)) and not isinstance(step, bool) and step > 0:
        try:
            multiple = math.ceil((low or 0) / step) * step
        except (OverflowError, ValueError):  # a step past float range, or an infinite one
            return 0
        return multiple if math.isfinite(multiple) else 0
    lo = low if low is not None else 0.0
    hi = high if high is not None else lo + 100.0
    if low is None and hi < lo:
        lo = hi - 100.0
    if schema.get("exclusiveMinimum") is not None or schema.get("exclusiveMaximum") is not None:
        return (lo + hi) / 2 if hi > lo else lo
    return round(rng.uniform(lo, hi), 2) if hi > lo + 0.02 else lo


def _bounds(schema: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """Inclusive bounds; exclusive ones are nudged inside (by 1 for integers' sake, or less)."""

    def number(key: str) -> float | None:
        value = schema.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return None
        try:
            number = float(value)
        except OverflowError:  # an integer past float range
            return None
        return number if math.isfinite(number) else None

    low, high = number("minimum"), number("maximum")
    ex_low, ex_high = number("exclusiveMinimum"), number("exclusiveMaximum")
    integer = _type_of(schema) == "integer"
    if ex_low is not None:
        nudged = math.floor(ex_low) + 1 if integer else ex_low + _gap(ex_low, ex_high)
        low = nudged if low is None else max(low, nudged)
    if ex_high is not None:
        nudged = math.ceil(ex_high) - 1 if integer else ex_high - _gap(ex_low, ex_high)
        high = nudged if high is None else min(high, nudged)
    return low, high


def _gap(low: float | None, high: float | None) -> float:
    if low is not None and high is not None and high > low:
        return min(1.0, (high - low) / 4)
    return 1.0


def _int_keyword(schema: Mapping[str, Any], key: str, default: int) -> int:
    value = schema.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 1000:
        return value
    return default


def _word(rng: _Draws) -> str:
    return WORDS[rng.randrange(len(WORDS))]


def _boolean(
    schema: Mapping[str, Any], rng: _Draws, root: Mapping[str, Any] = {}, depth: int = 0
) -> bool:
    return rng.random() < 0.5


def _null(
    schema: Mapping[str, Any], rng: _Draws, root: Mapping[str, Any] = {}, depth: int = 0
) -> None:
    return None


_MAKERS: dict[str, Maker] = {
    "object": _object,
    "array": _array,
    "integer": _integer,
    "number": _number,
    "boolean": _boolean,
    "null": _null,
    "string": _string,
}
