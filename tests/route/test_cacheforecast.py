"""The saving forecast of cache planning: read shares learned from usage rows, the planning
model's where history is short, and the prefix's cost at either (pure code, table tests)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from nowait.route.cacheforecast import (
    HOURS_PER_MONTH,
    MIN_HISTORY,
    forecast_monthly,
    forecast_prefix,
    learn,
    monthly_share,
)
from nowait.sort.pricing import default_table
from nowait.store import UsageRow
from nowait.types import Tier, Usage

HAIKU = "claude-haiku-4-5"


def row(workload: str | None, tier: Tier, reads: int, writes: int, requests: int) -> UsageRow:
    usage = Usage(input_tokens=100, cache_write_1h_tokens=writes, cache_read_tokens=reads)
    return UsageRow(workload, HAIKU, tier, usage, requests)


HISTORY = learn(
    [
        row("digest", Tier.BATCH, 900, 100, MIN_HISTORY),  # 90% on its own
        row("tagging", Tier.BATCH, 100, 100, MIN_HISTORY - 1),  # too little alone
        row("chat", Tier.STANDARD, 0, 5_000, 10_000),  # real time: not batch history
        row(None, Tier.BATCH, 0, 0, 10_000),  # no cache traffic: nothing to learn
    ]
)

MODEL_ROWS = 2 * MIN_HISTORY - 1


@pytest.mark.parametrize(
    ("workload", "model", "share", "source"),
    [
        ("digest", HAIKU, Decimal("0.9"), f"learned: digest on {HAIKU} ({MIN_HISTORY} requests)"),
        # tagging alone is too short: the model's batch traffic, digest's and tagging's
        ("tagging", HAIKU, Decimal(1000) / 1200, f"learned: {HAIKU} ({MODEL_ROWS} requests)"),
        (None, HAIKU, Decimal(1000) / 1200, f"learned: {HAIKU} ({MODEL_ROWS} requests)"),
        ("digest", "claude-sonnet-4-6", Decimal("0.5"), "planning model"),
    ],
)
def test_the_read_share_falls_back_from_workload_to_model_to_the_planning_model(
    workload: str | None, model: str, share: Decimal, source: str
) -> None:
    found = HISTORY.read_share(model, workload, Decimal("0.5"))
    assert (found.share, found.source) == (share, source)
    assert found.learned == (source != "planning model")


def test_a_month_has_at_most_one_write_an_hour() -> None:
    assert monthly_share(HOURS_PER_MONTH) == 0
    assert monthly_share(10 * HOURS_PER_MONTH) == Decimal("0.9")
    assert monthly_share(0) == 0


def test_the_prefix_costs_a_write_for_each_miss_and_a_read_for_each_hit() -> None:
    table = default_table()
    rates = table.models[HAIKU].rates.scaled(table.batch_discount)
    share = HISTORY.read_share(HAIKU, "digest", Decimal(0))
    f = forecast_prefix(HAIKU, 1_000, 4_000, 4_300, table, share)
    tokens = Decimal(1_000 * 4_000) / 1_000_000
    assert f.plain == tokens * rates.input
    per_token = Decimal("0.9") * rates.cache_read + Decimal("0.1") * rates.cache_write_1h
    assert f.planned == tokens * per_token
    assert f.pays and f.adds == f.plain - f.planned


def test_short_prefixes_and_unknown_models() -> None:
    table = default_table()
    short = forecast_monthly("w", HAIKU, 100_000, 1_500, 800, table)
    assert not short.cacheable and short.plain == short.planned and not short.pays
    assert short.adds == 0
    unknown = forecast_monthly("w", "claude-mystery", 100_000, 5_000, 4_000, table)
    assert unknown.plain is None and unknown.planned is None and unknown.adds is None


def test_a_rare_workload_does_not_pay() -> None:
    # fewer requests than hours: every one writes, nothing is read
    rare = forecast_monthly("w", HAIKU, 200, 5_000, 4_000, default_table())
    assert rare.read_share.share == 0 and not rare.pays and rare.adds == 0
