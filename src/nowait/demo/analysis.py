"""The analyze part of `nowait demo`: a generated month of mixed logs, sorted and priced."""

from __future__ import annotations

from pathlib import Path

from nowait.analyze.engine import connect, load
from nowait.analyze.generate import generate
from nowait.analyze.readers import BadRecords
from nowait.analyze.report import Report, build_report
from nowait.present.analysis import report_html
from nowait.sort.pricing import PriceTable


def write_demo_report(
    out_dir: Path, table: PriceTable | None = None, *, seed: int = 7
) -> tuple[Report, Path, Path]:
    """Generate the month (OTLP JSON lines), analyse it, write the HTML; returns both paths."""
    logs = out_dir / "traces-month.jsonl"
    generate(logs, seed=seed)
    con = connect()
    bad = BadRecords()
    load(con, [logs], fmt=None, bad=bad)
    report = build_report(con, bad=bad, table=table)
    html = out_dir / "analysis.html"
    html.write_text(report_html(report), encoding="utf-8")
    return report, logs, html
