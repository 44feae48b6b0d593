"""Read a requests JSONL file: one request a line, `key`, `params`, optional `deadline`
(ISO time or a duration from now such as `6h`), `awaited`, `workload`. Every line is checked
before anything is queued, and a bad one is reported with its line number: not UTF-8, not
strict JSON (duplicate keys, nesting beyond any request's), or values strict JSON cannot carry
(`NaN`, `Infinity`, `1e999`, lone surrogates; `params.check_json_values`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from nowait.durations import parse_duration
from nowait.errors import InputError
from nowait.reading import parse_json, scan_text_lines
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
    for line in scan_text_lines(path):
        if isinstance(line, InputError):
            yield line
        elif line.text.strip():
            try:
                yield _parse(path, line.number, line.text, now, default_deadline)
            except InputError as exc:
                yield exc


def _parse(
    path: Path, number: int, text: str, now: datetime, default: timedelta | None
) -> RequestLine:
    def bad(field: str | None, message: str, expected: str | None = None) -> InputError:
        return InputError(message, file=path, line=number, field=field, expected=expected)

    entry = _load(path, number, text, bad)
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


def _load(path: Path, number: int, text: str, bad: Any) -> dict[str, Any]:
    """The line as a JSON object of values strict JSON can carry."""
    entry = parse_json(text, file=path, line=number)
    if not isinstance(entry, dict):
        raise bad(None, "not a JSON object", "one JSON object per line")
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
        if moment is not None and moment.tzinfo is not None and _plausible(moment):
            return moment
    raise bad(
        "deadline", f"got {value!r}",
        "a duration such as 6h (at most 400 days), or an ISO time with a timezone,"
        f" {EARLIEST_YEAR} to {LATEST_YEAR - 1}",
    )  # fmt: skip


EARLIEST_YEAR, LATEST_YEAR = 2020, 2100
"""A deadline outside these years is a typo (and near year 1 or 9999, a date overflow)."""


def _plausible(moment: datetime) -> bool:
    return EARLIEST_YEAR <= moment.year < LATEST_YEAR
