"""`nowait demo`: the whole story on the embedded defaults, no API key needed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nowait.cli import PricesOption, app, stdout
from nowait.cli.options import prices_file
from nowait.files import check_output_dir


@app.command("demo")
def demo_command(
    out: Annotated[Path, typer.Option("--out", help="Directory for the demo's files.")] = Path(
        "nowait-demo"
    ),
    prices: PricesOption = None,
) -> None:
    """The whole story on the embedded defaults: sort, route, analyze, guard deadlines."""
    # Imported here: the SDK, DuckDB and the emulator load only for the command that needs them.
    from nowait.demo.analysis import write_demo_report
    from nowait.demo.route import route_example
    from nowait.present import tables as render
    from nowait.present.analysis import report_terminal
    from nowait.present.cacheplan import workload_plans_table
    from nowait.present.simulation import results_html, results_table
    from nowait.route.cacheforecast import worksheet_plans
    from nowait.simulate.engine import SimConfig, simulate
    from nowait.simulate.trace import read_trace, write_trace
    from nowait.sort import worksheet
    from nowait.sort.classify import human_duration
    from nowait.sort.pricing import load_table

    check_output_dir(out, "--out")  # before any work starts
    table = load_table(prices_file(prices))
    console = stdout()
    out.mkdir(parents=True, exist_ok=True)
    sheet = out / "worksheet.toml"
    sheet.write_text(worksheet.template_text(), "utf-8")
    console.rule("1. Sort: the bundled worksheet")
    console.print(f"Workloads described by hand in {sheet} (`nowait worksheet {sheet}`):\n")
    sorted_sheet = worksheet.evaluate(worksheet.read_worksheet(sheet), table)
    console.print(render.worksheet_table(sorted_sheet))
    plans = worksheet_plans(sorted_sheet, table)
    console.print(workload_plans_table(plans, "cacheable_share, else cache_share"))

    console.rule("2. Route: the bundled requests through the embedded emulator")
    routed = route_example(out, table)
    took = human_duration(routed.emulated_end - routed.emulated_start)
    console.print(
        f"{routed.realtime} requests went real-time (awaited, or deadlines too tight for a batch), "
        f"{routed.batched} went to {routed.batches} batches; {routed.retried} errored or expired "
        f"lines were retried. Every result delivered once to {routed.results}; "
        f"{took} of emulated time.\n"
    )
    console.print(render.receipt_table(routed.receipt))

    console.rule("3. Analyze: a month of a team's traces, sorted by who waits")
    report, logs, html = write_demo_report(out, table)
    console.print(f"`nowait analyze {logs} --html {html}`:\n")
    console.print(report_terminal(report))
    console.print(f"Charts (spend by verdict, savings waterfall, arrivals by hour): {html}")

    console.rule("4. Guard deadlines: five routing policies on a week of traffic")
    trace = out / "trace-week.jsonl"
    write_trace(trace, 50_000, days=7)
    requests = read_trace(trace)
    console.print(f"`nowait simulate {trace}` (batch turnaround: median 20 min, p95 3 h):\n")
    sim = SimConfig()
    results = simulate(requests, sim, table)
    console.print(results_table(results, len(requests)))
    chart = out / "policies.html"
    chart.write_text(results_html(results, len(requests), sim), encoding="utf-8")
    console.print(f"Chart (cost and deadlines missed by policy): {chart}")
