"""Which format a log file is in, from its first record (gzip, zstd, JSON or CSV alike)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nowait.analyze.readers import (
    BadRecords,
    Reader,
    compression_of,
    json_objects,
    text_lines,
)
from nowait.analyze.readers.admin import read_cost_report, read_usage_report
from nowait.analyze.readers.logs import read_langfuse, read_litellm, read_nowait
from nowait.analyze.readers.otlp import is_proto, read_otlp
from nowait.analyze.readers.store import read_store
from nowait.errors import InputError

READERS: dict[str, Reader] = {
    "otlp": read_otlp,
    "litellm": read_litellm,
    "langfuse": read_langfuse,
    "anthropic-usage": read_usage_report,
    "anthropic-cost": read_cost_report,
    "nowait": read_nowait,
    "nowait-store": read_store,
}
FORMATS = (*READERS, "litellm-csv")


def detect(path: Path) -> str:  # noqa: PLR0911 (one return per format)
    """The format of the file, from its first record (gzip or zstd opened first)."""
    if compression_of(path) == "none":
        with path.open("rb") as raw:
            if raw.read(16).startswith(b"SQLite format 3"):
                return "nowait-store"
        if is_proto(path):
            return "otlp"  # the Collector's file exporter, `format: proto`
    first, record = first_record(path)
    if first is None or record is None:
        raise InputError("empty: 0 records", file=path, expected="a log file with records")
    if (
        "request_id" in first
        and "startTime" in first
        and not first.lstrip("\ufeff \t\r\n").startswith(("{", "["))
    ):
        return "litellm-csv"
    keys = set(record) if isinstance(record, dict) else set()
    if "resourceSpans" in keys:
        return "otlp"
    if "data" in keys and "has_more" in keys:
        # cost reports (legacy and analytics) carry an amount; usage reports never do
        return "anthropic-cost" if _has_key(record, "amount") else "anthropic-usage"
    if {"request_id", "startTime"} <= keys or "call_type" in keys:
        return "litellm"
    if "usage_details" in keys or "provided_model_name" in keys or "usageDetails" in keys:
        return "langfuse"
    if {"key", "message"} <= keys:
        return "nowait"
    raise InputError(
        "cannot tell the log format",
        file=path,
        line=None,
        expected=f"one of {', '.join(FORMATS)} (or pass --format)",
    )


def first_record(path: Path) -> tuple[str | None, Any]:
    """The first non-blank line's text, and the first record: of JSON Lines, the first line's
    value; of a JSON array, its first element; of any other document, the document. However
    long the record (no fixed window). Bad records before it are passed over (the reader
    reports them); when no record can be read, the first one's `InputError` is raised."""
    first, record = _first(path, BadRecords(skip=True))
    if first is None or record is None:  # nothing readable: the first bad record's error
        _first(path, BadRecords(advise=False))
    return first, record


def _first(path: Path, bad: BadRecords) -> tuple[str | None, Any]:
    first = next((text for _, text in text_lines(path, bad) if text.strip()), None)
    if first is None or first.lstrip("\ufeff \t\r\n")[:1] not in ("{", "["):
        return first, first
    return first, next((value for _, value in json_objects(path, bad)), None)


def _has_key(value: Any, key: str, depth: int = 4) -> bool:
    """`key` in an object of `value`, looking `depth` levels down (the first of each list)."""
    if isinstance(value, dict):
        return key in value or (
            depth > 0 and any(_has_key(v, key, depth - 1) for v in value.values())
        )
    if isinstance(value, list) and value:
        return depth > 0 and _has_key(value[0], key, depth - 1)
    return False
