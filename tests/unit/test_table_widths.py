"""Every terminal table at 80, 100 and 120 columns: no workload, model, policy, setting or
batch name is ever cut (a narrow terminal gets the stacked layout), and no figure either."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console, RenderableType

from nowait.analyze.engine import connect, load_records
from nowait.analyze.readers import BadRecords
from nowait.analyze.records import Record
from nowait.analyze.report import build_report
from nowait.present import tables
from nowait.present.analysis import report_terminal
from nowait.present.cacheplan import cache_plan_table, workload_plans_table
from nowait.present.settings import settings_table
from nowait.present.simulation import cache_table, results_table
from nowait.route.cacheforecast import forecast_groups, worksheet_plans
from nowait.route.cacheplan import group_costs
from nowait.route.receipts import build_receipt
from nowait.settings import Settings, rows
from nowait.simulate.cache import simulate_cache
from nowait.simulate.engine import SimConfig, simulate
from nowait.simulate.trace import TraceRequest, read_trace, write_trace
from nowait.sort import pricing, worksheet
from nowait.store import UsageRow
from nowait.types import Tier, Usage

WIDTHS = (80, 100, 120)
EXAMPLE = Path(__file__).resolve().parents[2] / "src/nowait/data/example-worksheet.toml"
LONG = (
    "catalog-enrichment-spring-collection",
    "/api/documents/summarize-for-review",
    "/api/reports/quarterly-revenue",
    "/api/chat/completions-support",
)
DAY0 = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)


def drawn(renderable: RenderableType, width: int) -> str:
    console = Console(width=width, file=io.StringIO(), record=True)
    console.print(renderable)
    return console.export_text()


def assert_whole(text: str, names: list[str]) -> None:
    for name in names:
        assert name in text, f"{name!r} is cut:\n{text}"
    assert "…" not in text, text


def worksheet_case(tmp: Path) -> tuple[RenderableType, list[str]]:
    sheet = tmp / "work.toml"
    sheet.write_text(EXAMPLE.read_text("utf-8").replace('"catalog-enrichment"', f'"{LONG[0]}"'))
    result = worksheet.evaluate(worksheet.read_worksheet(sheet))
    return tables.worksheet_table(result), [row.workload.name for row in result.rows]


def worksheet_planning_case(tmp: Path) -> tuple[RenderableType, list[str]]:
    sheet = tmp / "work.toml"
    sheet.write_text(EXAMPLE.read_text("utf-8").replace('"catalog-enrichment"', f'"{LONG[0]}"'))
    table = pricing.default_table()
    plans = worksheet_plans(worksheet.evaluate(worksheet.read_worksheet(sheet), table), table)
    return workload_plans_table(plans, "cacheable_share"), [p.workload for p in plans]


def plan_case() -> tuple[RenderableType, list[str]]:
    system = "You label support tickets by product area and urgency. " * 300
    requests = [
        {"model": "claude-haiku-4-5", "max_tokens": 9, "system": system,
         "messages": [{"role": "user", "content": f"ticket {i}"}]}
        for i in range(30)
    ]  # fmt: skip
    table = pricing.default_table()
    forecasts = forecast_groups(group_costs(requests, table, "auto"), [None] * 30, table)
    return cache_plan_table(forecasts, "auto"), ["claude-haiku-4-5 prefix 1"]


def receipt_case() -> tuple[RenderableType, list[str]]:
    usage = Usage(input_tokens=1_234_567, output_tokens=345_678, cache_read_tokens=99_999)
    lines = [
        UsageRow(name, "claude-sonnet-4-6", tier, usage, 12_345)
        for name in LONG
        for tier in (Tier.BATCH, Tier.STANDARD)
    ]
    return tables.receipt_table(build_receipt(lines, pricing.default_table())), list(LONG)


def prices_case() -> tuple[RenderableType, list[str]]:
    table = pricing.default_table()
    return tables.prices_table(table), [p.model for p in table]


def analysis_case() -> tuple[RenderableType, list[str]]:
    records = [
        Record(
            source="test",
            producer="test",
            record_id=f"{name}-{day}-{hour}",
            start_time=DAY0 + timedelta(days=day, hours=hour),
            end_time=DAY0 + timedelta(days=day, hours=hour, seconds=3),
            model="claude-sonnet-4-6",
            input_uncached=12_000,
            output_tokens=900,
            feature=name,
            trigger="cron" if i % 2 else "http",
        )
        for i, name in enumerate(LONG)
        for day in range(3)
        for hour in (2, 9)
    ]
    con = connect()
    load_records(con, records)
    report = build_report(con, bad=BadRecords())
    return report_terminal(report), [w.name for w in report.workloads]


def settings_case() -> tuple[RenderableType, list[str]]:
    found = rows(Settings())
    return settings_table(found, None), [r.key for r in found]


def simulate_case(tmp: Path) -> tuple[RenderableType, list[str]]:
    write_trace(tmp / "trace.jsonl", 400, days=1)
    requests = read_trace(tmp / "trace.jsonl")
    sim = SimConfig()
    results = simulate(requests, sim, pricing.default_table())
    return results_table(results, len(requests), sim.capacity), [r.policy for r in results]


def simulate_cache_case() -> tuple[RenderableType, list[str]]:
    trace = [
        TraceRequest(t * 60.0, "claude-sonnet-4-6", 1_234_567, 10, False, None, "p", 1_234_567)
        for t in range(2_000)
    ]
    cached = simulate_cache(trace, SimConfig(), pricing.default_table())
    return cache_table(cached), [c.policy for c in cached]


CASES: dict[str, Callable[[Path], tuple[RenderableType, list[str]]]] = {
    "worksheet": worksheet_case,
    "worksheet planning": worksheet_planning_case,
    "receipt": lambda _: receipt_case(),
    "plan": lambda _: plan_case(),
    "prices": lambda _: prices_case(),
    "analysis": lambda _: analysis_case(),
    "settings": lambda _: settings_case(),
    "simulate": simulate_case,
    "simulate cache": lambda _: simulate_cache_case(),
}


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("case", CASES)
def test_every_name_appears_whole(case: str, width: int, tmp_path: Path) -> None:
    renderable, names = CASES[case](tmp_path)
    assert names
    assert_whole(drawn(renderable, width), names)


def test_a_wide_terminal_gets_the_table_and_a_narrow_one_the_stacked_layout() -> None:
    renderable, names = receipt_case()
    wide, narrow = drawn(renderable, 200), drawn(renderable, 80)
    assert "┃ workload" in wide
    assert "┃" not in narrow
    for name in names:  # stacked: the name on its own line, its figures under it
        line = narrow.splitlines().index(name)
        assert narrow.splitlines()[line + 1].lstrip().startswith("real-time: ")
