"""The one normalized record every reader produces (the minimal common record of
`log-sources.md` §7): one Messages API call, or one pre-aggregated bucket."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime


@dataclass(slots=True)
class Record:
    source: str  # otlp | litellm | langfuse | anthropic_usage_api | anthropic_cost_api | nowait
    producer: str  # scope@version or exporter: decides the token rule
    record_id: str
    start_time: datetime
    model: str
    granularity: str = "request"  # request | bucket_1m | bucket_1h | bucket_1d
    request_count: int | None = 1
    end_time: datetime | None = None
    ttft_s: float | None = None
    stream: bool | None = None  # None = unknown, never "false by default"
    service_tier: str | None = None
    input_uncached: int = 0
    cache_read: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    output_tokens: int = 0
    token_rule: str = ""  # how the input buckets were derived from what the producer reported
    feature: str | None = None
    workflow: str | None = None
    http_route: str | None = None
    service: str | None = None
    workspace: str | None = None  # Anthropic workspace (Admin API reports)
    api_key: str | None = None
    tags: str | None = None
    user_id: str | None = None
    session_id: str | None = None
    trigger: str = "unknown"  # http | queue | cron | script | unknown
    # What nowait's own records say the caller told it (None: the producer cannot know).
    awaited: bool | None = None  # someone waits on the result
    needed_within_s: float | None = None  # seconds from submission to the deadline
    finish_reason: str | None = None
    trace_id: str | None = None
    cost_usd_reported: float | None = None
    file: str = ""
    line: int = 0
    extras: dict[str, str] = field(default_factory=dict)


COLUMNS = tuple(f.name for f in fields(Record) if f.name != "extras")

GROUP_KEYS = ("feature", "workflow", "http_route", "service", "workspace", "api_key", "model")
"""Workload keys, best first: the first one present names a record's workload."""
GROUP_BY = (*GROUP_KEYS, "tags")
"""What `--group-by` accepts: any workload key, or the request's tags (all of them, joined)."""


def split_input(
    reported: int, cache_read: int, cache_write: int, *, includes_cache: bool | None
) -> tuple[int, str]:
    """The uncached input from a producer's input count, and the rule applied.

    `includes_cache` is the producer's documented meaning; None means unknown, decided from
    the numbers: an input smaller than the cache tokens cannot include them.
    """
    cached = cache_read + cache_write
    if includes_cache is None:
        includes_cache = cached > 0 and reported >= cached
        rule = "inferred-inclusive" if includes_cache else "inferred-exclusive"
    else:
        rule = "inclusive" if includes_cache else "exclusive"
    if includes_cache and reported < cached:
        return reported, "exclusive (input smaller than cache tokens)"
    return (reported - cached if includes_cache else reported), rule
