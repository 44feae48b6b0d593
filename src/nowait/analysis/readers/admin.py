"""Anthropic Admin API exports: the usage report (tokens per bucket, the ground truth every
org has) and the cost report. Aggregates only: no per-request context, so they show spend
and what is already batched, and leave who waits to review."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from nowait.analysis.readers import BadRecords, json_objects, number
from nowait.analysis.readers.logs import timestamp
from nowait.analysis.records import Record
from nowait.models import Tier
from nowait.pricing import PriceTable, default_table

WIDTHS = {3600: "bucket_1h", 60: "bucket_1m", 86400: "bucket_1d"}


def read_usage_report(path: Path, bad: BadRecords) -> Iterator[Record]:
    for line, page in json_objects(path, bad):
        if not isinstance(page, dict) or not isinstance(page.get("data"), list):
            bad.add(path, line, "not a usage report page (expected data: [...])")
            continue
        for bucket in page["data"]:
            try:
                yield from _bucket(bucket, path, line)
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                bad.add(path, line, f"bucket {bucket.get('starting_at', '?')}: {exc}")


def _bucket(bucket: dict[str, Any], path: Path, line: int) -> Iterator[Record]:
    start, end = timestamp(bucket["starting_at"]), timestamp(bucket["ending_at"])
    granularity = WIDTHS.get(int((end - start).total_seconds()), "bucket_1d")
    for i, row in enumerate(bucket.get("results") or []):
        creation = row.get("cache_creation") or {}
        if not isinstance(creation, dict):
            raise ValueError("cache_creation must be an object keyed by TTL")
        requests = row.get("requests")
        yield Record(
            source="anthropic_usage_api",
            producer="anthropic-admin-api",
            record_id=f"{bucket['starting_at']}#{i}",
            start_time=start,
            end_time=end,
            model=str(row.get("model") or "unknown"),
            granularity=granularity,
            request_count=number(requests) if requests is not None else None,
            service_tier=row.get("service_tier"),
            input_uncached=number(row.get("uncached_input_tokens")),
            cache_read=number(row.get("cache_read_input_tokens")),
            cache_write_5m=number(creation.get("ephemeral_5m_input_tokens")),
            cache_write_1h=number(creation.get("ephemeral_1h_input_tokens")),
            output_tokens=number(row.get("output_tokens")),
            token_rule="exclusive (uncached_input_tokens)",
            api_key=row.get("api_key_id"),
            service=row.get("workspace_id"),
            file=str(path),
            line=line,
        )


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
        for bucket in page["data"]:
            for i, row in enumerate(bucket.get("results") or []):
                try:
                    record = _cost_row(bucket, i, row, table, path, line)
                except (ValueError, TypeError, KeyError, ArithmeticError) as exc:
                    bad.add(path, line, f"cost row {i} of {bucket.get('starting_at', '?')}: {exc}")
                    continue
                if record is not None:
                    yield record


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
    dollars = Decimal(str(row["amount"])) / 100
    record = Record(
        source="anthropic_cost_api",
        producer="anthropic-admin-api",
        record_id=f"{bucket['starting_at']}#{i}",
        start_time=timestamp(bucket["starting_at"]),
        end_time=timestamp(bucket["ending_at"]),
        model=model,
        granularity="bucket_1d",
        request_count=None,
        service_tier=row.get("service_tier"),
        token_rule="derived from cost at the price table's rate",
        service=row.get("workspace_id"),
        cost_usd_reported=float(dollars),
        file=str(path),
        line=line,
    )
    setattr(record, field, int((dollars * 1_000_000 / rate).to_integral_value()))
    return record
