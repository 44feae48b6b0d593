"""The table and JSON of `nowait plan`: prefix groups and what cache planning saves."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from decimal import Decimal

from rich.table import Table

from nowait.present.tables import FitTable, money_json, percent, usd
from nowait.route.cacheforecast import GroupForecast, WorkloadPlan

INDENT = "  "
"""How far a group priced under a shared outer level is drawn in, under that level."""


def _names(forecasts: Sequence[GroupForecast]) -> list[str]:
    """`MODEL prefix 2`, and `prefix 2.1` for a group under shared level 2 (indented when
    drawn); `MODEL (no shared prefix)`."""
    out: list[str] = []
    top = inner = 0
    for f in forecasts:
        g = f.cost.group
        if f.cost.parent is not None:
            inner += 1
            out.append(f"prefix {top}.{inner}")
        elif g.prefix:
            top, inner = top + 1, 0
            out.append(f"{g.model} prefix {top}")
        else:
            out.append(f"{g.model} (no shared prefix)")
    return out


def _parents(forecasts: Sequence[GroupForecast], names: Sequence[str]) -> list[str | None]:
    """Each row's parent's name (None: at the top)."""
    by_prefix = {f.cost.group.prefix: n for f, n in zip(forecasts, names, strict=True)
                 if f.cost.shared}  # fmt: skip
    return [by_prefix.get(f.cost.parent or "") for f in forecasts]


def _prefix_tokens(forecast: GroupForecast) -> str:
    """The row's own prefix part: `+N` past its parent level."""
    cost = forecast.cost
    return f"+{cost.own_tokens:,}" if cost.parent is not None else f"{cost.group.tokens:,}"


def _total(values: Sequence[Decimal | None]) -> Decimal | None:
    known = [v for v in values if v is not None]
    return sum(known, Decimal(0)) if len(known) == len(values) else None


def _share(forecast: GroupForecast) -> str:
    """The read share the expected cost assumes, and whether it was learned."""
    if not forecast.cost.planned:
        return "-"
    share = forecast.prefix.read_share
    return f"{percent(share.share)} {'learned' if share.learned else 'model'}"


def _sources(forecasts: Sequence[GroupForecast]) -> list[str]:
    shares = [f.prefix.read_share for f in forecasts if f.cost.planned]
    return sorted({s.source.removeprefix("learned: ") for s in shares if s.learned})


def _requests(forecasts: Sequence[GroupForecast]) -> int:
    """Requests of the file: a shared level's are those of its groups."""
    return sum(len(f.cost.group.members) for f in forecasts if not f.cost.shared)


def cache_plan_table(forecasts: Sequence[GroupForecast], mode: str) -> Table:
    costs = [f.cost for f in forecasts]
    learned = _sources(forecasts)
    nested = any(c.shared for c in costs)
    caption = (
        "Planned: one request primes the prefix (1-hour write), the rest read it."
        + (
            " An outer prefix several groups share is written once and read by all their"
            " requests; each group under it (+ tokens past it) pays its own part."
            if nested
            else ""
        )
        + " Expected: at the read share of the cache traffic "
        + (f"the store has seen ({'; '.join(learned)})." if learned else "the model expects.")
    )
    out = FitTable(
        title=f"Prefix groups (cache = {mode}), input cost at batch price",
        caption=caption,
        show_footer=True,
    )
    plain = _total([c.plain for c in costs])
    planned = _total([c.with_planning for c in costs])
    expected = _total([f.expected for f in forecasts])
    footers = ["total", "", "", f"{_requests(forecasts):,}", "", usd(plain)]
    footers += [usd(planned), "", usd(expected)]
    headers = ("group", "prefix tokens", "prompt tokens", "requests", "planned", "plain",
               "with planning", "read share", "expected")  # fmt: skip
    for header, footer in zip(headers, footers, strict=True):
        out.add_column(header, footer=footer, justify="left" if header == "group" else "right")
    for name, f in zip(_names(forecasts), forecasts, strict=True):
        cost = f.cost
        out.add_row(
            INDENT + name if cost.parent is not None else name,
            _prefix_tokens(f),
            f"{cost.prompt_tokens:,}",
            f"{len(cost.group.members):,}",
            "yes" if cost.planned else "no",
            usd(cost.plain),
            usd(cost.with_planning),
            _share(f),
            usd(f.expected),
        )
    return out


def cache_plan_json(forecasts: Sequence[GroupForecast], mode: str) -> dict[str, object]:
    costs = [f.cost for f in forecasts]
    names = _names(forecasts)
    return {
        "cache": mode,
        "groups": [
            {
                "name": name,
                "level": 1 if parent is None else 2,
                "parent": parent,
                "shared_level": f.cost.shared,
                "model": f.cost.group.model,
                "prefix_tokens": f.cost.group.tokens,
                "own_prefix_tokens": f.cost.own_tokens,
                "prompt_tokens": f.cost.prompt_tokens,
                "requests": len(f.cost.group.members),
                "planned": f.cost.planned,
                "cache_write_tokens": f.cost.traffic.written,
                "cache_read_tokens": f.cost.traffic.read,
                "plain_usd": money_json(f.cost.plain),
                "with_planning_usd": money_json(f.cost.with_planning),
                "read_share": money_json(f.prefix.read_share.share),
                "read_share_source": f.prefix.read_share.source,
                "expected_usd": money_json(f.expected),
            }
            for name, parent, f in zip(names, _parents(forecasts, names), forecasts, strict=True)
        ],
        "requests": _requests(forecasts),
        "plain_usd": money_json(_total([c.plain for c in costs])),
        "with_planning_usd": money_json(_total([c.with_planning for c in costs])),
        "expected_usd": money_json(_total([f.expected for f in forecasts])),
    }


WORKLOAD_CAPTION = (
    "Prefix: the share of each prompt a stable prefix serves ({basis}). With planning: one"
    " 1-hour write an hour at most, every other request a read, all at batch price ({share})."
)


def _share_words(plans: Sequence[WorkloadPlan]) -> str:
    learned = sorted({p.forecast.read_share.source for p in plans if p.forecast.read_share.learned})
    if not learned:
        return "the planning model's read share"
    return "read shares the store has seen where it has: " + "; ".join(learned)


def adds_text(plan: WorkloadPlan) -> str:
    f = plan.forecast
    if not f.prefix_tokens:
        return "no prefix known"
    if not f.cacheable:
        return "prefix too short"
    return usd(f.adds) if f.pays or f.adds is None else "does not pay"


def workload_plans_table(plans: Sequence[WorkloadPlan], basis: str) -> Table:
    """What cache planning would add to each batch workload, a month (`basis`: where prefix
    sizes come from, for the caption)."""
    out = FitTable(
        title="What cache planning would add (batch workloads, per month)",
        caption=WORKLOAD_CAPTION.format(basis=basis, share=_share_words(plans)),
        show_footer=True,
    )
    adds = _total([p.forecast.adds for p in plans])
    for header in ("workload", "prefix tokens", "requests", "read share", "plain", "planned"):
        out.add_column(header, justify="left" if header == "workload" else "right", footer="")
    out.columns[0].footer = "total"
    out.add_column("planning adds", justify="right", footer=usd(adds))
    names = Counter(p.workload for p in plans)
    for plan in plans:
        f = plan.forecast
        out.add_row(
            plan.workload if names[plan.workload] == 1 else f"{plan.workload} ({f.model})",
            f"{f.prefix_tokens:,}",
            f"{f.requests:,}",
            percent(f.read_share.share) if f.cacheable else "-",
            usd(f.plain),
            usd(f.planned),
            adds_text(plan),
        )
    return out


def workload_plans_json(plans: Sequence[WorkloadPlan]) -> list[dict[str, object]]:
    return [
        {
            "workload": p.workload,
            "model": p.forecast.model,
            "prefix_from": p.basis,
            "prefix_tokens": p.forecast.prefix_tokens,
            "requests_per_month": p.forecast.requests,
            "read_share": money_json(p.forecast.read_share.share),
            "read_share_source": p.forecast.read_share.source,
            "pays": p.forecast.pays,
            "plain_usd": money_json(p.forecast.plain),
            "planned_usd": money_json(p.forecast.planned),
            "adds_usd": money_json(p.forecast.adds),
        }
        for p in plans
    ]
