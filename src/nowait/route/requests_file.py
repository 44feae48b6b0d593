"""Read a requests JSONL file: one request a line, `key`, `params`, optional `deadline`
(ISO time or a duration from now such as `6h`), `awaited`, `workload`. Every line is checked
before anything is queued, and a bad one is reported with its line number: not UTF-8, not
strict JSON (duplicate keys, nesting beyond any request's), or values strict JSON cannot carry
(`NaN`, `Infinity`, `1e999`, lone surrogates; `params.check_json_values`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from nowait.durations import parse_duration
from nowait.errors import InputError
from nowait.route.params import check_json_values

FIELDS = {"key", "params", "deadline", "awaited", "workload"}


@dataclass(frozen=True)
class RequestLine:
    line: int
    key: str | None
    params: dict[str, Any]
    deadline: datetime | None
    awaited: bool
    workload: str | None


def read_requests(
    path: Path, now: datetime, default_deadline: timedelta | None = None
) -> Iterator[RequestLine]:
    """Every request of the file; the first bad line raises its `InputError`."""
    for entry in scan_requests(path, now, default_deadline):
        if isinstance(entry, InputError):
            raise entry
        yield entry


def scan_requests(
    path: Path, now: datetime, default_deadline: timedelta | None = None
) -> Iterator[RequestLine | InputError]:
    """Every line of the file, read or refused: a bad line is an `InputError` (file, line,
    field) in its place, and reading goes on. A file that cannot be opened raises."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise InputError(f"cannot read it: {exc.strerror}", file=path) from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
                if text.strip():
                    yield _parse(path, number, text, now, default_deadline)
            except UnicodeDecodeError as exc:
                yield InputError(
                    f"not UTF-8 (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1})",
                    file=path, line=number, expected="UTF-8 text",
                )  # fmt: skip
            except InputError as exc:
                yield exc


def _strict_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are all different: which of two values was meant is unknown."""
    made: dict[str, Any] = {}
    for key, value in pairs:
        if key in made:
            raise ValueError(f"duplicate key {key!r}")
        made[key] = value
    return made


def _parse(
    path: Path, number: int, text: str, now: datetime, default: timedelta | None
) -> RequestLine:
    def bad(field: str | None, message: str, expected: str | None = None) -> InputError:
        return InputError(message, file=path, line=number, field=field, expected=expected)

    entry = _load(text, bad)
    unknown = set(entry) - FIELDS
    if unknown:
        raise bad(sorted(unknown)[0], "unknown field", f"one of {', '.join(sorted(FIELDS))}")
    params = entry.get("params")
    if not isinstance(params, dict):
        raise bad("params", "missing or not an object", "the Messages API parameters")
    model, max_tokens = params.get("model"), params.get("max_tokens")
    if not isinstance(model, str) or not model:
        raise bad("params.model", f"got {model!r}", "a model id")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise bad("params.max_tokens", f"got {max_tokens!r}", "a whole number ≥ 1")
    if not isinstance(params.get("messages"), list) or not params["messages"]:
        raise bad("params.messages", "missing or empty", "a list of messages")
    key = entry.get("key")
    if key is not None and (not isinstance(key, str) or not key):
        raise bad("key", f"got {key!r}", "a non-empty string")
    awaited = entry.get("awaited", False)
    if not isinstance(awaited, bool):
        raise bad("awaited", f"got {awaited!r}", "true or false")
    workload = entry.get("workload")
    if workload is not None and not isinstance(workload, str):
        raise bad("workload", f"got {workload!r}", "a name")
    deadline = _deadline(entry.get("deadline"), now, default, bad)
    return RequestLine(number, key, params, deadline, awaited, workload)


def _load(text: str, bad: Any) -> dict[str, Any]:
    """The line as a JSON object of values strict JSON can carry."""
    one = "one JSON object per line"
    try:
        entry = json.loads(text, object_pairs_hook=_strict_object)
    except json.JSONDecodeError as exc:
        raise bad(None, f"not JSON ({exc.msg} at column {exc.colno})", one) from None
    except ValueError as exc:  # a duplicate key, an integer of thousands of digits
        raise bad(None, f"not strict JSON ({exc})", one) from None
    except RecursionError:
        raise bad(None, "nested too deeply to read", one) from None
    if not isinstance(entry, dict):
        raise bad(None, "not a JSON object", one)
    try:
        check_json_values(entry, "")
    except InputError as exc:
        raise bad((exc.field or "").lstrip("."), exc.reason, exc.expected) from None
    return entry


def _deadline(value: Any, now: datetime, default: timedelta | None, bad: Any) -> datetime | None:
    if value is None:
        return now + default if default is not None else None
    if isinstance(value, str):
        try:
            return now + parse_duration(value)
        except ValueError:
            pass
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is not None:
            return moment
    raise bad("deadline", f"got {value!r}", "a duration such as 6h, or an ISO time with a timezone")
