"""The report for people: a terminal table, JSON, and one self-contained HTML file."""

from __future__ import annotations

import json
from decimal import Decimal
from html import escape

from rich.console import Group
from rich.table import Table
from rich.text import Text

from nowait.analyze.report import Report, WorkloadReport
from nowait.present import charts
from nowait.present.cacheplan import adds_text, workload_plans_json, workload_plans_table
from nowait.present.tables import FitTable, money_json, percent, to_review, usd


def _f(value: Decimal | None) -> float | None:
    """A chart value; None stays None (unknown money is never drawn as $0)."""
    return float(value) if value is not None else None


def _neg(value: Decimal | None) -> float | None:
    return -float(value) if value is not None else None


def _unpriced(report: Report) -> str:
    if not report.unknown_models:
        return ""
    return (
        f"Money leaves out {report.unpriced_requests:,} "
        f"{'request' if report.unpriced_requests == 1 else 'requests'} on models with no price: "
        f"{', '.join(report.unknown_models)} (add them with --prices)."
    )


def _notes(w: WorkloadReport) -> str:
    notes = (*w.inference.evidence, *w.inference.classification.reasons)
    if w.unpriced:
        notes = (*notes, f"not priced: {w.unpriced_requests:,} requests on {', '.join(w.unpriced)}")
    return "; ".join(notes)


PREFIX_BASIS = "--cache-share, else the share cached in the logs today"


def report_terminal(report: Report) -> Group:
    """The table of workloads, then each one's evidence in full (too long for a table cell),
    then what cache planning would add to the batch workloads."""
    plans = [p for w in report.workloads for p in w.cache_plans]
    if not plans:
        return Group(report_table(report), _evidence(report))
    return Group(report_table(report), _evidence(report), workload_plans_table(plans, PREFIX_BASIS))


def _evidence(report: Report) -> Table:
    grid = Table.grid(padding=(0, 1))
    grid.title, grid.title_justify = "Why", "left"
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(ratio=1)
    for w in report.workloads:
        grid.add_row(w.name, Text(f"{w.verdict.value}, {w.inference.confidence}: {_notes(w)}"))
    return grid


def _to_review(report: Report) -> str:
    return to_review(
        (w.name, w.review_if_batch.saved) for w in report.workloads if w.review_if_batch is not None
    )


def report_table(report: Report) -> Table:
    table = FitTable(
        title=f"Where the money goes: {report.records:,} records over {report.days:.1f} days "
        "(monthly figures projected to 30 days)",
        show_footer=True,
    )
    total = report.monthly_total
    table.add_column("workload", footer="total")
    table.add_column("verdict")
    table.add_column("confidence")
    table.add_column(
        "requests", justify="right", footer=f"{sum(w.requests for w in report.workloads):,}"
    )
    table.add_column("monthly now", justify="right", footer=usd(total.current))
    table.add_column("after move", justify="right", footer=usd(total.after_cache))
    table.add_column("saved / month", justify="right", footer=usd(total.saved))
    for w in report.workloads:
        table.add_row(
            w.name, w.verdict.value, w.inference.confidence, f"{w.requests:,}",
            usd(w.monthly.current), usd(w.monthly.after_cache), usd(w.monthly.saved),
        )  # fmt: skip
    table.caption = " ".join(
        part
        for part in (
            f"Batchable share of spend: {percent(report.batchable_share)}.",
            _unpriced(report),
            _to_review(report),
            f"{report.bad.count:,} malformed records skipped." if report.bad.count else "",
        )
        if part
    )
    return table


def _workload_json(w: WorkloadReport) -> dict[str, object]:
    return {
        "workload": w.name,
        "verdict": w.verdict.value,
        "confidence": w.inference.confidence,
        "already_batched": w.inference.already_batched,
        "evidence": list(w.inference.evidence),
        "reasons": list(w.inference.classification.reasons),
        "requests": w.requests,
        "models": list(w.models),
        "unpriced_models": list(w.unpriced),
        "unpriced_requests": w.unpriced_requests,
        "period": _money(w.cost),
        "monthly": _money(w.monthly),
        "monthly_if_batch": _money(w.review_if_batch) if w.review_if_batch else None,
        "cache_planning": workload_plans_json(w.cache_plans),
    }


def _money(cost: object) -> dict[str, str | None]:
    names = ("current", "after_batch", "after_cache", "saved", "batchable_current")
    return {n: money_json(getattr(cost, n)) for n in names}


def report_json(report: Report) -> dict[str, object]:
    return {
        "records": report.records,
        "days": round(report.days, 3),
        "group_by": report.group_by,
        "workloads": [_workload_json(w) for w in report.workloads],
        "total": _money(report.total),
        "monthly_total": _money(report.monthly_total),
        "batchable_share": str(report.batchable_share)
        if report.batchable_share is not None
        else None,
        "unknown_models": list(report.unknown_models),
        "unpriced_requests": report.unpriced_requests,
        "arrivals_by_hour": report.arrivals_by_hour,
        "token_rules": report.token_rules,
        "malformed": {"count": report.bad.count, "examples": report.bad.examples},
    }


_CHECK = """
<script>
// Marks the page once every chart has laid out with visible bars (read by the test suite).
window.addEventListener("load", function () {
  var drawn = 0;
  document.querySelectorAll("svg.chart").forEach(function (svg) {
    var box = svg.getBBox();
    var bars = Array.prototype.filter.call(svg.querySelectorAll("rect.bar"), function (r) {
      return r.getBBox().width > 0 && r.getBBox().height > 0;
    });
    if (box.width > 0 && box.height > 0 && bars.length > 0) { drawn += 1; }
  });
  document.body.setAttribute("data-charts-drawn", String(drawn));
});
</script>
"""


def _cache_note(report: Report) -> str:
    """What the waterfall's cache step stands for; when no share was given, why it is zero."""
    if report.cache_share is None:
        return (
            "Cache step: $0 because no --cache-share was given. Caching already in your logs is"
            " priced in every step; pass --cache-share (e.g. 0.6, the share of prompt tokens"
            " read from cache after the move) to count what more caching would save."
        )
    return (
        f"Cache step: {percent(report.cache_share)} of every prompt served from the cache after"
        " the move (--cache-share); on work moved to batch the two discounts multiply."
    )


def report_html(report: Report) -> str:
    total = report.monthly_total
    spend = charts.stacked_bars(
        "Monthly spend by workload, coloured by verdict",
        [(w.name, w.verdict.value, _f(w.monthly.current)) for w in report.workloads],
    )
    steps = [
        ("real-time today", _f(total.current)),
        ("batch", _neg(total.saved_by_batch)),
        ("cache", _neg(total.saved_by_cache)),
        ("after", _f(total.after_cache)),
    ]
    waterfall = charts.waterfall("Savings waterfall: real-time → batch → cache (per month)", steps)
    waterfall += f'<p class="caption">{escape(_cache_note(report))}</p>'
    hours = charts.hour_histogram("Arrivals by hour of day (UTC)", report.arrivals_by_hour)
    rows = "".join(
        "<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in (
            w.name, w.verdict.value, w.inference.confidence, f"{w.requests:,}",
            usd(w.monthly.current), usd(w.monthly.after_cache), usd(w.monthly.saved),
            _notes(w),
        )) + "</tr>"
        for w in report.workloads
    )  # fmt: skip
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "workload",
            "verdict",
            "confidence",
            "requests",
            "monthly now",
            "after move",
            "saved / month",
            "why",
        )
    )
    planning = _planning_html(report)
    # Raw JSON inside the script element (its text is not HTML-decoded): only `<` is escaped.
    data = json.dumps(report_json(report)).replace("<", "\\u003c")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>nowait analysis</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 1100px; }}
table {{ border-collapse: collapse; font-size: 13px; }} td, th {{ border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }}
.kpi {{ display: inline-block; margin-right: 2rem; }} .kpi b {{ font-size: 1.6rem; display: block; }}
</style></head>
<body>
<h1>Where your Claude spend could wait</h1>
<p>{report.records:,} records over {report.days:.1f} days, grouped by {escape(report.group_by)}; monthly figures are projected to 30 days.</p>
<div class="kpi"><b>{usd(total.current)}</b>monthly spend now</div>
<div class="kpi"><b>{usd(total.saved)}</b>saved per month by moving what nobody waits for</div>
<div class="kpi"><b>{percent(report.batchable_share)}</b>of spend is batchable</div>
{f'<p class="unpriced">{escape(_unpriced(report))}</p>' if report.unknown_models else ""}
{spend}
{waterfall}
{hours}
<h2>Workloads</h2>
<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>
{planning}
<script type="application/json" id="report-data">{data}</script>
{_CHECK}
</body></html>
"""


def _planning_html(report: Report) -> str:
    """The cache planning table of the batch workloads ("" when there is none)."""
    plans = [p for w in report.workloads for p in w.cache_plans]
    if not plans:
        return ""
    head = "".join(
        f"<th>{h}</th>"
        for h in ("workload", "model", "prefix tokens", "requests / month", "read share",
                  "plain", "planned", "planning adds")
    )  # fmt: skip
    rows = "".join(
        "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in (
            p.workload, p.forecast.model, f"{p.forecast.prefix_tokens:,}",
            f"{p.forecast.requests:,}",
            percent(p.forecast.read_share.share) if p.forecast.cacheable else "-",
            usd(p.forecast.plain), usd(p.forecast.planned), adds_text(p),
        )) + "</tr>"
        for p in plans
    )  # fmt: skip
    caption = (
        "The shared prefix: the share of each prompt given by --cache-share, else the share"
        " cached in the logs today. With planning: one 1-hour write an hour at most, every"
        " other request a read, all at batch price (the planning model's read share)."
    )
    return (
        "<h2>What cache planning would add (batch workloads, per month)</h2>"
        f'<table class="cache-planning"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>'
        f'</table><p class="caption">{escape(caption)}</p>'
    )
