"""Simulation results for people: a table, a terminal bar chart, an HTML chart."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from html import escape

from rich.table import Table

from nowait.guard.policy import Capacity
from nowait.present import charts
from nowait.present.tables import FitTable, percent, usd
from nowait.simulate.cache import CacheResult
from nowait.simulate.engine import PolicyResult, SimConfig
from nowait.sort.classify import human_duration


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
    table = FitTable(title=f"Five routing policies on {requests:,} requests")
    for name, justify in (
        ("policy", "left"), ("cost", "right"), ("saved vs all-realtime", "right"),
        ("of the oracle's saving", "right"), ("batched", "right"), ("paid twice", "right"),
        ("deadlines missed", "right"), ("p50 late", "right"), ("p99 late", "right"),
    ):  # fmt: skip
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    table.columns[0].no_wrap = True  # a policy's name is never cut
    for r in results:
        share = oracle_share(results, r.policy)
        table.add_row(
            r.policy, usd(r.cost), usd(_saved(results, r)),
            "-" if share is None else f"{share:.1%}", f"{r.batched:,}", f"{r.paid_twice:,}",
            f"{r.missed:,} of {r.with_deadline:,}", f"{r.p50_late:,.0f} s",
            f"{r.p99_late:,.0f} s",
        )  # fmt: skip
    caption = [oracle_line(results) or ""]
    if capacity is not None:
        caption.append(capacity_line(capacity))
    table.caption = " ".join(c for c in caption if c) or None
    return table


def oracle_line(results: list[PolicyResult]) -> str | None:
    """`nowait captures 99.12% of the oracle's savings, missing none.` (None: no oracle)."""
    share = oracle_share(results)
    ours = next((r for r in results if r.policy == "nowait"), None)
    if share is None or ours is None:
        return None
    misses = f", missing {ours.missed:,} deadlines" if ours.missed else ", missing none"
    return f"nowait captures {share:.2%} of the oracle's savings{misses}."


def world_line(sim: SimConfig) -> str:
    """The simulated world's assumptions, in one line."""

    def span(seconds: float) -> str:
        return human_duration(timedelta(seconds=seconds))

    t = sim.turnaround
    turnaround = f"median {span(t.median)}" + (f", p95 {span(t.p95)}" if t.p95 else "")
    plan = "the prior (no history)" if sim.forecast is not None else "the true turnaround model"
    return (
        f"Assumed world: batch turnaround {turnaround}; a real-time call takes"
        f" {sim.call_seconds:g} s and a cancel {span(sim.cancel_seconds)} (each ± {sim.noise:.0%});"
        f" fixed-buffer keeps {span(sim.fixed_buffer)}; nowait plans with {plan}."
    )


CACHE_CAPTION = (
    "The shared prefixes of the requests nobody awaits, in the simulated batches at batch"
    " price. No planning: no marker. Grouping only: the user's 5-minute markers; no request"
    " reads what its own batch writes. Grouping + 1h + priming: one request writes the prefix"
    " (1 hour) before its batch, the rest read it. Oracle: one write per run of uses."
)


def cache_table(cached: list[CacheResult]) -> Table:
    """Prefix tokens by how they were billed, the hit rate and the cost, per cache policy."""
    requests = cached[0].requests if cached else 0
    table = FitTable(
        title=f"Cache policies on the prefixes of {requests:,} batched requests",
        caption=CACHE_CAPTION,
    )
    for name in ("cache policy", "fresh", "5m writes", "1h writes", "reads", "hit rate", "cost"):
        table.add_column(name, justify="left" if name == "cache policy" else "right")
    for c in cached:
        table.add_row(
            c.policy, f"{c.fresh:,}", f"{c.writes_5m:,}", f"{c.writes_1h:,}", f"{c.reads:,}",
            "-" if c.hit_rate is None else percent(c.hit_rate), usd(c.cost, 4),
        )  # fmt: skip
    return table


def cache_html(cached: list[CacheResult]) -> str:
    """The prefix cost of each cache policy as bars ("" when no request had a prefix)."""
    if not cached:
        return ""
    bars = charts.stacked_bars(
        "Prefix cost by cache policy (batch price)",
        [(c.policy, "prefix cost", float(c.cost)) for c in cached],
        axis="cost of the shared prefixes (USD) →",
    )
    return bars + f"<p class=caption>{escape(CACHE_CAPTION)}</p>"


def results_html(
    results: list[PolicyResult],
    requests: int,
    sim: SimConfig | None = None,
    cached: list[CacheResult] | None = None,
) -> str:
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
    notes = [oracle_line(results)]
    if sim is not None:
        notes += [world_line(sim), capacity_line(sim.capacity)]
    caption = "".join(f"<p class=caption>{escape(n)}</p>" for n in notes if n)
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>nowait simulate</title>"
        "</head><body style='font-family: system-ui, sans-serif'>"
        f"<h1>Routing policies compared</h1>{caption}{saved}{missed}"
        f"{cache_html(cached or [])}</body></html>"
    )
