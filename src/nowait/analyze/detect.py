"""Which format a log file is in, from its first record (gzip and JSON or CSV alike)."""

from __future__ import annotations

import json
from pathlib import Path

from nowait.analyze.readers import Reader, open_text
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
    try:
        with path.open("rb") as raw:
            magic = raw.read(16)
    except OSError as exc:
        raise InputError(f"cannot read it: {exc.strerror}", file=path) from None
    if magic.startswith(b"SQLite format 3"):
        return "nowait-store"
    if is_proto(path):
        return "otlp"  # the Collector's file exporter, `format: proto`
    with open_text(path) as text:
        head = text.read(65536)
    first_line = head.split("\n", 1)[0]
    if (
        "request_id" in first_line
        and "startTime" in first_line
        and not first_line.lstrip().startswith(("{", "["))
    ):
        return "litellm-csv"
    keys = _first_keys(head)
    # A line of a batched export can be longer than the head: its first key still tells.
    if "resourceSpans" in keys or head.lstrip().startswith('{"resourceSpans"'):
        return "otlp"
    if "data" in keys and "has_more" in keys:
        # cost reports (legacy and analytics) carry an amount; usage reports never do
        return "anthropic-cost" if '"amount"' in head else "anthropic-usage"
    if {"request_id", "startTime"} <= keys or "call_type" in keys:
        return "litellm"
    if "usage_details" in keys or "provided_model_name" in keys or "usageDetails" in keys:
        return "langfuse"
    if {"key", "message"} <= keys:
        return "nowait"
    raise InputError(
        "cannot tell the log format",
        file=path,
        expected=f"one of {', '.join(FORMATS)} (or pass --format)",
    )


def _first_keys(head: str) -> set[str]:
    stripped = head.lstrip()
    candidates = [stripped.split("\n", 1)[0]]
    if stripped.startswith("["):
        candidates.append(stripped[1:].lstrip().split("\n", 1)[0].rstrip(","))
    for text in candidates:
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            continue
        if isinstance(value, list) and value:
            value = value[0]
        if isinstance(value, dict):
            return set(value)
    try:  # a whole pretty-printed document
        value = json.loads(head)
    except json.JSONDecodeError:
        return set()
    if isinstance(value, list) and value:
        value = value[0]
    return set(value) if isinstance(value, dict) else set()
