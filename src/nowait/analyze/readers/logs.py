"""Per-request logs other than traces: LiteLLM spend logs, Langfuse observation exports, and
nowait's own results. Each producer's token meaning is applied explicitly."""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nowait.analyze.readers import (
    RECORD_ERRORS,
    BadRecords,
    epoch_seconds,
    json_objects,
    money,
    number,
    open_input,
    plausible,
    seconds,
    text_lines,
)
from nowait.analyze.records import Record, split_input
from nowait.errors import InputError
from nowait.reading import parse_json


def timestamp(value: Any, field: str | None = None) -> datetime:
    """ISO 8601 (with `Z`, or Langfuse's `YYYY-MM-DD HH:MM:SS.ffffff` in UTC) or epoch seconds,
    between 2020 and 2100 (a boolean, `-1` or `1e308` is a misread, not a time)."""
    try:
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not a time")
        if isinstance(value, int | float):
            return epoch_seconds(value)
        if not isinstance(value, str) or not value:
            raise ValueError(f"not a time: {value!r}")
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return plausible(moment if moment.tzinfo else moment.replace(tzinfo=UTC), value)
    except ValueError as exc:
        raise ValueError(f"{field}: {exc}" if field else str(exc)) from None


def _json_field(value: Any) -> Any:
    """A JSON value a producer stored as a string (LiteLLM's metadata, say), within limits."""
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return parse_json(value, file="(embedded)")
        except InputError as exc:
            raise ValueError(f"embedded JSON: {exc.reason}") from None
    return value


# ---- LiteLLM -------------------------------------------------------------------------------
LITELLM_KEYS = ("request_id", "startTime", "model")


def litellm_record(row: Mapping[str, Any], path: Path, line: int) -> Record | None:
    """One `LiteLLM_SpendLogs` row. `prompt_tokens` includes Anthropic's cache tokens; the
    cache counts live only in `metadata.usage_object`."""
    provider = str(row.get("custom_llm_provider") or "anthropic")
    model = str(row.get("model") or "")
    if provider != "anthropic" and "claude" not in model:
        return None
    metadata = _json_field(row.get("metadata")) or {}
    usage = metadata.get("usage_object") or {} if isinstance(metadata, dict) else {}
    read = number(usage.get("cache_read_input_tokens"), "cache_read_input_tokens")
    write = number(usage.get("cache_creation_input_tokens"), "cache_creation_input_tokens")
    uncached, rule = split_input(
        number(row.get("prompt_tokens"), "prompt_tokens"), read, write, includes_cache=True
    )
    start = timestamp(row.get("startTime"), "startTime")
    end = timestamp(row["endTime"], "endTime") if row.get("endTime") else None
    first = (
        timestamp(row["completionStartTime"], "completionStartTime")
        if row.get("completionStartTime")
        else None
    )
    # LiteLLM sets completionStartTime = endTime for non-streaming calls.
    streamed = first is not None and end is not None and first < end
    tags = _json_field(row.get("request_tags")) or []
    spend_meta = metadata.get("spend_logs_metadata") or {} if isinstance(metadata, dict) else {}
    call_type = str(row.get("call_type") or "")
    return Record(
        source="litellm",
        producer="litellm",
        record_id=str(row.get("request_id") or f"{path}:{line}"),
        start_time=start,
        end_time=end,
        model=model,
        ttft_s=(first - start).total_seconds() if streamed and first else None,
        stream=streamed if first is not None else None,
        service_tier="batch" if "batch" in call_type else None,
        input_uncached=uncached,
        cache_read=read,
        cache_write_5m=write,
        output_tokens=number(row.get("completion_tokens"), "completion_tokens"),
        token_rule=rule + (", cache-write TTL unknown: priced as 5m" if write else ""),
        feature=spend_meta.get("feature") if isinstance(spend_meta, dict) else None,
        api_key=(metadata.get("user_api_key_alias") if isinstance(metadata, dict) else None)
        or row.get("api_key"),
        tags=(",".join(map(str, tags)) if isinstance(tags, list) else str(tags or "")) or None,
        user_id=row.get("end_user") or row.get("user") or None,
        session_id=row.get("session_id") or None,
        cost_usd_reported=money(row.get("spend"), "spend"),
        file=str(path),
        line=line,
    )


def read_litellm(path: Path, bad: BadRecords) -> Iterator[Record]:
    rows = csv_rows(path, bad) if is_csv(path) else json_objects(path, bad)
    for line, row in rows:
        yield from _guarded(litellm_record, row, path, line, bad)


def csv_rows(path: Path, bad: BadRecords) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, row) of a CSV file with a header; the line is the row's last."""
    at = 0

    def lines() -> Iterator[str]:
        nonlocal at
        for at, text in text_lines(path, bad):  # noqa: B007 (read by the loop below)
            yield text

    reader = csv.DictReader(lines())
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            bad.add(path, at, f"not CSV ({exc})")
            continue
        yield at, row


def is_csv(path: Path) -> bool:
    """A CSV export, by its name or, whatever the name, by its content: the first character
    that is not a space (or a byte-order mark) opens no JSON value."""
    if path.name.removesuffix(".gz").removesuffix(".zst").endswith(".csv"):
        return True
    with open_input(path) as stream:
        while chunk := stream.read(4096):
            head = chunk.lstrip(b"\xef\xbb\xbf \t\r\n")
            if head:
                return head[:1] not in b"{["
    return False


def reason(exc: Exception) -> str:
    """A reader's exception as words: a missing field named, a value error as it is."""
    if isinstance(exc, KeyError):
        return f"missing field {exc}"
    if isinstance(exc, ValueError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _guarded(make: Any, row: Any, path: Path, line: int, bad: BadRecords) -> Iterator[Record]:
    if not isinstance(row, Mapping):
        bad.add(path, line, "not a JSON object")
        return
    try:
        record = make(row, path, line)
    except RECORD_ERRORS as exc:
        bad.add(path, line, reason(exc))
        return
    if record is not None:
        yield record


# ---- Langfuse ------------------------------------------------------------------------------
def langfuse_record(row: Mapping[str, Any], path: Path, line: int) -> Record | None:
    """One observation. `usage_details.input` is the *uncached* input: each key is a bucket."""
    if str(row.get("type", "GENERATION")).upper() != "GENERATION":
        return None
    model = str(row.get("provided_model_name") or row.get("model") or "")
    if "claude" not in model:
        return None
    usage = _json_field(row.get("usage_details")) or _json_field(row.get("usageDetails")) or {}
    read = number(usage.get("cache_read_input_tokens", usage.get("input_cache_read")))
    write_5m = number(usage.get("input_cache_creation_5m"), "input_cache_creation_5m")
    write_1h = number(usage.get("input_cache_creation_1h"), "input_cache_creation_1h")
    if not (write_5m or write_1h):
        write_5m = number(
            usage.get("cache_creation_input_tokens", usage.get("input_cache_creation"))
        )
    start = timestamp(row.get("start_time") or row.get("startTime"))
    first = row.get("completion_start_time") or row.get("completionStartTime")
    params = _json_field(row.get("model_parameters") or row.get("modelParameters")) or {}
    stream = params.get("stream") if isinstance(params, dict) else None
    end = row.get("end_time") or row.get("endTime")
    ttft = _langfuse_ttft(
        start,
        timestamp(first) if first else None,
        timestamp(end) if end else None,
        row.get("time_to_first_token", row.get("timeToFirstToken")),
    )
    metadata = _json_field(row.get("metadata")) or {}
    tags = row.get("tags") or []
    return Record(
        source="langfuse",
        producer="langfuse",
        record_id=str(row.get("id") or f"{path}:{line}"),
        start_time=start,
        end_time=timestamp(end) if end else None,
        model=model,
        ttft_s=ttft,
        stream=bool(stream) if stream is not None else (True if first else None),
        input_uncached=number(usage.get("input", usage.get("input_tokens"))),
        cache_read=read,
        cache_write_5m=write_5m,
        cache_write_1h=write_1h,
        output_tokens=number(usage.get("output", usage.get("output_tokens"))),
        token_rule="exclusive (Langfuse prices each usage key separately)",
        feature=metadata.get("feature") if isinstance(metadata, dict) else None,
        workflow=row.get("trace_name") or row.get("name"),
        tags=(",".join(map(str, tags)) or None) if isinstance(tags, list) else None,
        user_id=row.get("user_id") or row.get("userId"),
        session_id=row.get("session_id") or row.get("sessionId"),
        trigger="http"
        if str(row.get("trace_name") or "").split(" ")[0] in ("GET", "POST", "PUT")
        else "unknown",
        trace_id=row.get("trace_id") or row.get("traceId"),
        cost_usd_reported=money(row.get("total_cost"), "total_cost"),
        file=str(path),
        line=line,
    )


def _langfuse_ttft(
    start: datetime, first: datetime | None, end: datetime | None, reported: Any
) -> float | None:
    """Seconds to the first token. From the timestamps when the first token's is there (no
    unit to guess); else the reported value, which exports of integrations created before
    2026-04-01 give in milliseconds: a value longer than the whole call is read as ms."""
    if first is not None:
        return max(0.0, (first - start).total_seconds())
    if reported in (None, ""):
        return None
    value = seconds(reported)
    if end is not None and value > (end - start).total_seconds() + 1:
        return value / 1000
    return value


def read_langfuse(path: Path, bad: BadRecords) -> Iterator[Record]:
    for line, row in json_objects(path, bad):
        yield from _guarded(langfuse_record, row, path, line, bad)


# ---- nowait's own results ------------------------------------------------------------------
def nowait_record(row: Mapping[str, Any], path: Path, line: int) -> Record | None:
    """A line of `nowait run --out`: the API's own usage object, so the meaning is exact."""
    message = row.get("message")
    if not isinstance(message, dict):
        return None
    usage = message.get("usage") or {}
    creation = usage.get("cache_creation") or {}
    at = row.get("finished_at") or row.get("submitted_at")
    awaited = row.get("awaited")
    if awaited is not None and not isinstance(awaited, bool):
        raise ValueError(f"awaited must be true or false, not {awaited!r}")
    return Record(
        source="nowait",
        producer="nowait",
        record_id=str(message.get("id") or row.get("key")),
        start_time=timestamp(at) if at else datetime.fromtimestamp(path.stat().st_mtime, tz=UTC),
        model=str(message.get("model") or ""),
        stream=False,
        service_tier=usage.get("service_tier") or row.get("tier"),
        input_uncached=number(usage.get("input_tokens"), "input_tokens"),
        cache_read=number(usage.get("cache_read_input_tokens"), "cache_read_input_tokens"),
        cache_write_5m=number(
            creation.get("ephemeral_5m_input_tokens", usage.get("cache_creation_input_tokens"))
        ),
        cache_write_1h=number(
            creation.get("ephemeral_1h_input_tokens"), "ephemeral_1h_input_tokens"
        ),
        output_tokens=number(usage.get("output_tokens"), "output_tokens"),
        token_rule="anthropic usage object",
        feature=row.get("workload"),
        trigger="script",
        awaited=awaited,
        needed_within_s=_needed_within(row.get("submitted_at"), row.get("deadline")),
        finish_reason=message.get("stop_reason"),
        file=str(path),
        line=line,
    )


def _needed_within(submitted: Any, deadline: Any) -> float | None:
    """Seconds the caller gave from submission to the deadline; None without a deadline."""
    if deadline in (None, ""):
        return None
    if submitted in (None, ""):
        raise ValueError("a deadline without submitted_at")
    return (timestamp(deadline) - timestamp(submitted)).total_seconds()


def read_nowait(path: Path, bad: BadRecords) -> Iterator[Record]:
    for line, row in json_objects(path, bad):
        yield from _guarded(nowait_record, row, path, line, bad)
