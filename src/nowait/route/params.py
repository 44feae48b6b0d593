"""Pure checks of a request's values, the same for both routes (no SDK here: the SDK-type check
is `backend.check_params`). What passes serializes to strict JSON, which every API body and
batch file is: finite numbers, integers a JSON parser keeps exact, valid Unicode, bounded
nesting, text keys."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from nowait.errors import InputError
from nowait.limits import MESSAGES_MAX_BYTES, NESTING_MAX_DEPTH, max_output_tokens

INT_LIMIT = 2**63
"""Integers beyond 64 bits are not exact in most JSON parsers (orjson, the API's)."""


def check_json_values(value: Any, field: str, depth: int = 0) -> None:
    """Raise `InputError` at the first value that would not survive strict JSON."""
    if not _plainly_json(value, depth):  # rare: walk again, naming the field
        _check_json_values(value, field, depth)


def _plainly_json(value: Any, depth: int) -> bool:
    """Whether `value` surely passes `_check_json_values`, without building field names (the
    door's hot path). Exact built-in types only: any other (a subclass, a bad value) answers
    False, and the naming walk decides."""
    plain = _PLAIN.get(type(value))
    return plain is not None and depth <= NESTING_MAX_DEPTH and plain(value, depth)


def _plain_text(text: str, _depth: int = 0) -> bool:
    return valid_utf8(text)


def valid_utf8(text: str) -> bool:
    """Valid Unicode (no lone surrogate), so the API can take it."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _plain_object(value: dict[Any, Any], depth: int) -> bool:
    return all(
        type(key) is str and _plain_text(key) and _plainly_json(item, depth + 1)
        for key, item in value.items()
    )


def _plain_array(value: list[Any] | tuple[Any, ...], depth: int) -> bool:
    return all(_plainly_json(item, depth + 1) for item in value)


def _plain_int(value: int, _depth: int) -> bool:
    return -INT_LIMIT <= value < INT_LIMIT


def _plain_float(value: float, _depth: int) -> bool:
    return math.isfinite(value)


def _plain_constant(_value: object, _depth: int) -> bool:
    return True


_PLAIN: dict[type, Callable[[Any, int], bool]] = {
    str: _plain_text,
    dict: _plain_object,
    list: _plain_array,
    tuple: _plain_array,
    int: _plain_int,
    float: _plain_float,
    bool: _plain_constant,
    type(None): _plain_constant,
}


def _check_json_values(value: Any, field: str, depth: int = 0) -> None:
    if depth > NESTING_MAX_DEPTH:
        raise InputError(
            f"nested deeper than {NESTING_MAX_DEPTH} levels", field=field, expected="less nesting"
        )
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InputError(f"key {key!r} is not text", field=field, expected="text keys")
            _check_text(key, f"{field}.{key!r}")
            _check_json_values(item, f"{field}.{key}", depth + 1)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_json_values(item, f"{field}.{index}", depth + 1)
    else:
        _check_scalar(value, field)


def _check_scalar(value: Any, field: str) -> None:
    if isinstance(value, str):
        _check_text(value, field)
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int):
        if not -INT_LIMIT <= value < INT_LIMIT:  # bit_length: str() of a huge int raises
            raise InputError(
                f"an integer of {value.bit_length()} bits", field=field, expected="a 64-bit integer"
            )
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InputError(f"got {value!r}", field=field, expected="a finite number")
    else:
        raise InputError(
            f"a {type(value).__name__} is not a JSON value", field=field, expected="JSON values"
        )


def _check_text(text: str, field: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(
            f"invalid Unicode: lone surrogate {text[exc.start]!r} at character {exc.start}",
            field=field,
            expected="valid Unicode text",
        ) from None


def check_limits(model: str, max_tokens: int, params_json: str) -> None:
    """`max_tokens` within the model's ceiling where known; the request within the API's
    request size (`params_json` is ASCII-escaped JSON: its length is its size in bytes)."""
    ceiling = max_output_tokens(model)
    if ceiling is not None and max_tokens > ceiling:
        raise InputError(
            f"{max_tokens:,} is above {model}'s limit",
            field="params.max_tokens",
            expected=f"at most {ceiling:,}",
        )
    if len(params_json) > MESSAGES_MAX_BYTES:
        raise InputError(
            f"the request is {len(params_json):,} bytes",
            field="params",
            expected=f"at most {MESSAGES_MAX_BYTES:,} bytes, the API's request size limit",
        )


def prompt_tokens_estimate(params_json: str) -> int:
    """About how many prompt tokens a request has: four characters a token, counted over the
    whole serialized request (a slight over-estimate, which errs on the deadline's side). The
    guard plans with it (as `Store.batch_work` does in SQL) and the pacer reserves it."""
    return len(params_json) // 4
