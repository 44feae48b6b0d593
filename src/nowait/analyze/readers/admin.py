"""Anthropic Admin API exports: the usage report (tokens per bucket, the ground truth every
org has) and the cost report, in both the legacy shape (`usage_report/messages`,
`cost_report`: buckets holding `results`) and the Usage & Cost Analytics API's
(`analytics/usage`, `analytics/cost`: one item per bucket and group, `{group, usage}` or
`{group, cost}`). Aggregates only: no per-request context, so they show spend and what is
already batched, and leave who waits to review."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from nowait.analyze.readers import RECORD_ERRORS, BadRecords, json_objects, number
from nowait.analyze.readers.logs import timestamp
from nowait.analyze.records import Record
from nowait.sort.pricing import PriceTable, default_table
from nowait.types import Tier

WIDTHS = {3600: "bucket_1h", 60: "bucket_1m", 86400: "bucket_1d"}


def _granularity(bucket: dict[str, Any], default: str) -> tuple[datetime, datetime, str]:
    start, end = (
        timestamp(bucket["starting_at"], "starting_at"),
        timestamp(bucket["ending_at"], "ending_at"),
    )
    return start, end, WIDTHS.get(int((end - start).total_seconds()), default)


def read_usage_report(path: Path, bad: BadRecords) -> Iterator[Record]:
    for line, page in json_objects(path, bad):
        if not isinstance(page, dict) or not isinstance(page.get("data"), list):
            bad.add(path, line, "not a usage report page (expected data: [...])")
            continue
        for n, item in enumerate(page["data"]):
            where = f"data[{n}]"
            try:
                if not isinstance(item, dict):
                    raise TypeError("not an object")
                where = f"bucket {item.get('starting_at', where)}"
                if "results" in item:  # legacy usage_report/messages
                    yield from _bucket(item, path, line)
                elif "usage" in item:  # analytics/usage
                    yield _analytics_usage(item, n, path, line)
                elif "cost" in item:
                    raise ValueError("a cost item (analytics/cost): read it as anthropic-cost")
                else:
                    raise ValueError(
                        "neither results (usage_report/messages) nor usage (analytics/usage)"
                    )
            except RECORD_ERRORS as exc:
                bad.add(path, line, f"{where}: {exc}")


def _usage_record(
    row: dict[str, Any], dims: dict[str, Any], record_id: str, bucket: dict[str, Any],
    path: Path, line: int, default_width: str,
) -> Record:  # fmt: skip
    """One row of usage (legacy `results[i]`, or analytics `usage` with its `group`)."""
    start, end, granularity = _granularity(bucket, default_width)
    creation = row.get("cache_creation") or {}
    if not isinstance(creation, dict):
        raise ValueError("cache_creation must be an object keyed by TTL")
    requests = row.get("requests")
    tier = dims.get("service_tier")
    if dims.get("product") == "message_batches_api":
        tier = "batch"
    return Record(
        source="anthropic_usage_api",
        producer="anthropic-admin-api",
        record_id=record_id,
        start_time=start,
        end_time=end,
        model=str(dims.get("model") or "unknown"),
        granularity=granularity,
        request_count=number(requests) if requests is not None else None,
        service_tier=tier,
        input_uncached=number(row.get("uncached_input_tokens"), "uncached_input_tokens"),
        cache_read=number(row.get("cache_read_input_tokens"), "cache_read_input_tokens"),
        cache_write_5m=number(
            creation.get("ephemeral_5m_input_tokens"), "ephemeral_5m_input_tokens"
        ),
        cache_write_1h=number(
            creation.get("ephemeral_1h_input_tokens"), "ephemeral_1h_input_tokens"
        ),
        output_tokens=number(row.get("output_tokens"), "output_tokens"),
        token_rule="exclusive (uncached_input_tokens)",
        api_key=dims.get("api_key_id"),
        workspace=dims.get("workspace_id"),
        session_id=dims.get("session_id"),
        file=str(path),
        line=line,
    )


def _bucket(bucket: dict[str, Any], path: Path, line: int) -> Iterator[Record]:
    for i, row in enumerate(bucket.get("results") or []):
        record_id = f"{bucket['starting_at']}#{i}"
        yield _usage_record(row, row, record_id, bucket, path, line, "bucket_1d")


def _analytics_usage(item: dict[str, Any], n: int, path: Path, line: int) -> Record:
    """An analytics/usage item: `{starting_at, ending_at, group: {...}, usage: {...}}`. Without
    `time_bucket_width` the one item spans the whole range (granularity `bucket_range`)."""
    usage, group = item["usage"], item.get("group") or {}
    if not isinstance(usage, dict) or not isinstance(group, dict):
        raise TypeError("usage and group must be objects")
    record_id = f"{item['starting_at']}#{n}"
    return _usage_record(usage, group, record_id, item, path, line, "bucket_range")


TOKEN_TYPES = {
    "uncached_input_tokens": ("input_uncached", "input"),
    "output_tokens": ("output_tokens", "output"),
    "cache_read_input_tokens": ("cache_read", "cache_read"),
    "cache_creation.ephemeral_5m_input_tokens": ("cache_write_5m", "cache_write_5m"),
    "cache_creation.ephemeral_1h_input_tokens": ("cache_write_1h", "cache_write_1h"),
}


def read_cost_report(path: Path, bad: BadRecords) -> Iterator[Record]:
    """Cost rows (`amount` in cents) turned back into tokens at the price table's rate for
    their model, token type and tier, so they price and sort like usage. Rows that are not
    token costs, or whose model the table does not know, are counted as bad records."""
    table = default_table()
    for line, page in json_objects(path, bad):
        if not isinstance(page, dict) or not isinstance(page.get("data"), list):
            bad.add(path, line, "not a cost report page (expected data: [...])")
            continue
        for n, bucket in enumerate(page["data"]):
            if isinstance(bucket, dict) and "cost" in bucket:  # analytics/cost
                try:
                    item = _analytics_cost(bucket, n, table, path, line)
                except RECORD_ERRORS as exc:
                    bad.add(path, line, f"cost item {n} of {bucket.get('starting_at', '?')}: {exc}")
                    continue
                if item is not None:
                    yield item
                continue
            if not isinstance(bucket, dict) or not isinstance(bucket.get("results"), list):
                bad.add(
                    path, line, f"data[{n}]: neither results (cost_report) nor cost (analytics)"
                )
                continue
            for i, row in enumerate(bucket["results"]):
                try:
                    record = _cost_row(bucket, i, row, table, path, line)
                except RECORD_ERRORS as exc:
                    bad.add(path, line, f"cost row {i} of {bucket.get('starting_at', '?')}: {exc}")
                    continue
                if record is not None:
                    yield record


def _analytics_cost(
    item: dict[str, Any], n: int, table: PriceTable, path: Path, line: int
) -> Record | None:
    """An analytics/cost item, `{group, cost: {amount (cents), ...}}`. Only an item grouped by
    model and token type can be turned back into tokens; any other is a bad record."""
    cost, group = item["cost"], item.get("group") or {}
    if not isinstance(cost, dict) or not isinstance(group, dict):
        raise TypeError("cost and group must be objects")
    if not group.get("model") or not group.get("token_type"):
        raise ValueError(
            "cannot turn cost into tokens without group_by[]=model and group_by[]=token_type"
        )
    if group.get("cost_type", "tokens") != "tokens":
        return None  # web search, code execution: not tokens (as in the legacy report)
    record = _cost_row(item, n, {**group, "amount": cost["amount"], "cost_type": "tokens"},
                       table, path, line)  # fmt: skip
    if record is None:
        return None
    record.request_count = (
        number(cost["requests"], "requests") if cost.get("requests") is not None else None
    )
    _, _, record.granularity = _granularity(item, "bucket_range")
    return record


def _cost_row(
    bucket: dict[str, Any], i: int, row: dict[str, Any], table: PriceTable, path: Path, line: int
) -> Record | None:
    if row.get("cost_type") != "tokens":
        return None
    model, token_type = str(row.get("model") or ""), str(row.get("token_type") or "")
    if token_type not in TOKEN_TYPES:
        raise ValueError(f"unknown token_type {token_type!r} (group the report by description)")
    price = table.lookup(model)
    if price is None:
        raise ValueError(f"no price for model {model!r}")
    field, item = TOKEN_TYPES[token_type]
    tier = Tier.BATCH if row.get("service_tier") == "batch" else Tier.STANDARD
    rate = getattr(price.rates, item) * table.tier_factor(tier)
    amount = row["amount"]
    if isinstance(amount, bool) or not isinstance(amount, int | float | str):
        raise ValueError(f"amount {amount!r} is not a number of cents")
    dollars = Decimal(str(amount)) / 100
    if not dollars.is_finite() or dollars < 0:
        raise ValueError(f"amount {amount!r} is not a number of cents (finite, not negative)")
    record = Record(
        source="anthropic_cost_api",
        producer="anthropic-admin-api",
        record_id=f"{bucket['starting_at']}#{i}",
        start_time=timestamp(bucket["starting_at"], "starting_at"),
        end_time=timestamp(bucket["ending_at"], "ending_at"),
        model=model,
        granularity="bucket_1d",
        request_count=None,
        service_tier=row.get("service_tier"),
        token_rule="derived from cost at the price table's rate",
        workspace=row.get("workspace_id"),
        cost_usd_reported=float(dollars),
        file=str(path),
        line=line,
    )
    setattr(record, field, number(int((dollars * 1_000_000 / rate).to_integral_value())))
    return record
