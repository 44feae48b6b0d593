"""Read a requests JSONL file: one request a line, `key`, `params`, optional `deadline`
(ISO time or a duration from now such as `6h`), `awaited`, `workload`. Every line is checked
before anything is queued, and a bad one is reported with its line number."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from nowait.durations import parse_duration
from nowait.errors import InputError

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
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read it: {exc.strerror}", file=path) from None
    with handle:
        for number, text in enumerate(handle, start=1):
            if text.strip():
                yield _parse(path, number, text, now, default_deadline)


def _parse(
    path: Path, number: int, text: str, now: datetime, default: timedelta | None
) -> RequestLine:
    def bad(field: str | None, message: str, expected: str | None = None) -> InputError:
        return InputError(message, file=path, line=number, field=field, expected=expected)

    try:
        entry = json.loads(text)
    except json.JSONDecodeError as exc:
        raise bad(None, f"not JSON ({exc.msg})", "one JSON object per line") from None
    if not isinstance(entry, dict):
        raise bad(None, "not a JSON object", "one JSON object per line")
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
