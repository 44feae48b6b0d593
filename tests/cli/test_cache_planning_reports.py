"""The worksheet and the analyzer say what cache planning would add to each batch workload,
with the same planning model as `nowait plan` (`route.cacheforecast`)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console

from nowait.analyze.engine import connect, load_records
from nowait.analyze.readers import BadRecords
from nowait.analyze.records import Record
from nowait.analyze.report import build_report
from nowait.present.analysis import report_html, report_json, report_terminal
from nowait.route.cacheforecast import HOURS_PER_MONTH
from nowait.sort.pricing import default_table

EXAMPLE = Path(__file__).resolve().parents[2] / "src/nowait/data/example-worksheet.toml"
MICRO = Decimal("0.000001")
DAY0 = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)


def batch_rates(model: str) -> Any:
    table = default_table()
    price = table.lookup(model)
    assert price is not None
    return price.rates.scaled(table.batch_discount)


def test_the_worksheet_prices_planning_for_each_batch_workload(cli: Any) -> None:
    result = cli("worksheet", str(EXAMPLE), "--format", "json")
    assert result.code == 0, result.err
    plans = {p["workload"]: p for p in json.loads(result.out)["cache_planning"]}
    assert "support-chat" not in plans and "meeting-notes" not in plans  # not batch work
    digest = plans["nightly-digest"]  # 30,000 a month, 12,000-token prompts, 60% cacheable
    assert (digest["prefix_from"], digest["prefix_tokens"]) == ("cacheable_share", 7_200)
    share = Decimal(30_000 - HOURS_PER_MONTH) / 30_000  # at most one write an hour
    rates = batch_rates("claude-sonnet-5-5")
    tokens = Decimal(30_000 * 7_200) / 1_000_000
    plain = tokens * rates.input
    planned = tokens * (share * rates.cache_read + (1 - share) * rates.cache_write_1h)
    assert Decimal(digest["plain_usd"]) == plain.quantize(MICRO)
    assert abs(Decimal(digest["planned_usd"]) - planned) <= MICRO
    assert digest["pays"] and digest["read_share_source"] == "planning model"
    tagging = plans["ticket-backlog-tagging"]  # no cache share given: nothing to plan
    assert (tagging["prefix_tokens"], tagging["pays"], tagging["adds_usd"]) == (
        0,
        False,
        "0.000000",
    )


def test_the_worksheet_table_fits_80_columns(cli: Any) -> None:
    result = cli("worksheet", str(EXAMPLE))
    assert result.code == 0, result.err
    assert "What cache planning would add" in result.out
    assert "nightly-digest" in result.out.split("What cache planning would add")[1]


def records() -> list[Record]:
    """A nightly batch job whose prompts are 80% cache reads, and chat someone waits on."""
    out = []
    for day in range(3):
        for n in range(400):
            out.append(
                Record(
                    source="test",
                    producer="test",
                    record_id=f"digest-{day}-{n}",
                    start_time=DAY0 + timedelta(days=day, seconds=n),
                    end_time=DAY0 + timedelta(days=day, seconds=n + 30),
                    model="claude-sonnet-4-6",
                    input_uncached=1_000,
                    cache_read=4_000,
                    output_tokens=300,
                    feature="nightly-digest",
                    trigger="cron",
                    stream=False,
                )
            )
        out.append(
            Record(
                source="test",
                producer="test",
                record_id=f"chat-{day}",
                start_time=DAY0 + timedelta(days=day, hours=8),
                end_time=DAY0 + timedelta(days=day, hours=8, seconds=2),
                ttft_s=0.4,
                model="claude-sonnet-4-6",
                input_uncached=900,
                output_tokens=200,
                feature="chat",
                trigger="http",
                stream=True,
                user_id="u1",
            )
        )
    return out


def report(cache_share: Decimal | None = None) -> Any:
    con = connect()
    load_records(con, records())
    return build_report(con, bad=BadRecords(), cache_share=cache_share)


def test_the_analyzer_plans_from_what_the_logs_cache_today() -> None:
    built = report()
    digest = next(w for w in built.workloads if w.name == "nightly-digest")
    chat = next(w for w in built.workloads if w.name == "chat")
    assert chat.cache_plans == ()  # someone waits: not batch work
    (plan,) = digest.cache_plans
    assert plan.basis == "cached in the logs" and plan.forecast.prefix_tokens == 4_000
    monthly = plan.forecast.requests
    assert monthly == int(1_200 * Decimal(30) / Decimal(str(round(built.days, 6))))
    share = Decimal(monthly - HOURS_PER_MONTH) / monthly
    rates = batch_rates("claude-sonnet-4-6")
    tokens = Decimal(monthly * 4_000) / 1_000_000
    assert plan.forecast.planned == tokens * (
        share * rates.cache_read + (1 - share) * rates.cache_write_1h
    )
    assert plan.forecast.pays

    given = report(Decimal("0.5"))
    (half,) = next(w for w in given.workloads if w.name == "nightly-digest").cache_plans
    assert (half.basis, half.forecast.prefix_tokens) == ("--cache-share", 2_500)


def test_the_analyzer_shows_planning_in_text_json_and_html() -> None:
    built = report()
    shown = {w["workload"]: w for w in report_json(built)["workloads"]}  # type: ignore[index, union-attr]
    (plan,) = shown["nightly-digest"]["cache_planning"]
    assert plan["prefix_tokens"] == 4_000 and plan["pays"] is True
    console = Console(width=80, file=io.StringIO(), record=True)
    console.print(report_terminal(built))
    text = console.export_text()
    assert "What cache planning would add" in text
    assert all(len(line) <= 80 for line in text.splitlines())
    page = report_html(built)
    assert 'class="cache-planning"' in page and "nightly-digest" in page.split("cache-planning")[1]
