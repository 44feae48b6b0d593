"""Simulation results for people: a table, a terminal bar chart, an HTML chart."""

from __future__ import annotations

from decimal import Decimal

from rich.table import Table

from nowait.guard.policy import Capacity
from nowait.present import charts
from nowait.present.tables import usd
from nowait.simulate.engine import PolicyResult


def _saved(results: list[PolicyResult], r: PolicyResult) -> Decimal:
    return results[0].cost - r.cost if results[0].policy == "all-realtime" else Decimal(0)


def oracle_share(results: list[PolicyResult], policy: str = "nowait") -> Decimal | None:
    by = {r.policy: r for r in results}
    if "all-realtime" not in by or "oracle" not in by or policy not in by:
        return None
    best = by["all-realtime"].cost - by["oracle"].cost
    return (by["all-realtime"].cost - by[policy].cost) / best if best else None


def capacity_line(capacity: Capacity) -> str:
    """The real-time capacity a simulation assumed, in one line."""

    def number(value: float) -> str:
        return f"{value:,.0f}" if float(value).is_integer() else f"{value:,}"

    return (
        f"Real time: {number(capacity.requests_per_minute)} requests, "
        f"{number(capacity.input_tokens_per_minute)} input and "
        f"{number(capacity.output_tokens_per_minute)} output tokens a minute, "
        f"{capacity.concurrency:,} at once."
    )


def results_table(
    results: list[PolicyResult], requests: int, capacity: Capacity | None = None
) -> Table:
    table = Table(title=f"Five routing policies on {requests:,} requests")
    for name, justify in (
        ("policy", "left"), ("cost", "right"), ("saved vs all-realtime", "right"),
        ("batched", "right"), ("paid twice", "right"), ("deadlines missed", "right"),
        ("p50 late", "right"), ("p99 late", "right"), ("savings bar", "left"),
    ):  # fmt: skip
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    peak = max((_saved(results, r) for r in results), default=Decimal(0)) or Decimal(1)
    for r in results:
        saved = _saved(results, r)
        bar = "█" * max(0, int(30 * saved / peak))
        table.add_row(
            r.policy, usd(r.cost), usd(saved), f"{r.batched:,}", f"{r.paid_twice:,}",
            f"{r.missed:,} of {r.with_deadline:,}", f"{r.p50_late:,.0f} s",
            f"{r.p99_late:,.0f} s", bar,
        )  # fmt: skip
    share = oracle_share(results)
    ours = next((r for r in results if r.policy == "nowait"), None)
    caption = []
    if share is not None and ours is not None:
        misses = f", missing {ours.missed:,} deadlines" if ours.missed else ", missing none"
        caption.append(f"nowait captures {share:.2%} of the oracle's savings{misses}.")
    if capacity is not None:
        caption.append(capacity_line(capacity))
    table.caption = " ".join(caption) or None
    return table


def results_html(results: list[PolicyResult], requests: int) -> str:
    def verdict(r: PolicyResult) -> str:
        return "misses deadlines" if r.missed else "meets every deadline"

    saved = charts.stacked_bars(
        f"Saved against all-realtime, {requests:,} requests",
        [(r.policy, verdict(r), float(_saved(results, r))) for r in results],
        axis="saved against all-realtime (USD) →",
    )
    missed = charts.stacked_bars(
        "Deadlines missed",
        [(r.policy, verdict(r), float(r.missed)) for r in results],
        axis=f"requests that missed their deadline, of {requests:,} →",
        label=charts.count,
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>nowait simulate</title>"
        "</head><body style='font-family: system-ui, sans-serif'>"
        f"<h1>Routing policies compared</h1>{saved}{missed}</body></html>"
    )
