"""The table and JSON of `nowait plan`: prefix groups and what cache planning saves."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from rich.table import Table

from nowait.present.tables import FitTable, money_json, usd
from nowait.route.cacheplan import GroupCost


def _name(cost: GroupCost, index: int) -> str:
    g = cost.group
    return f"{g.model} prefix {index}" if g.prefix else f"{g.model} (no shared prefix)"


def _total(costs: Sequence[GroupCost], attr: str) -> Decimal | None:
    values = [getattr(c, attr) for c in costs]
    return None if any(v is None for v in values) else sum(values, Decimal(0))


def cache_plan_table(costs: Sequence[GroupCost], mode: str) -> Table:
    out = FitTable(
        title=f"Prefix groups (cache = {mode}), input cost at batch price",
        caption="Planned: one request primes the prefix (1-hour write), the rest read it.",
        show_footer=True,
    )
    plain, planned = _total(costs, "plain"), _total(costs, "with_planning")
    footers = ["total", "", "", f"{sum(len(c.group.members) for c in costs):,}", "", usd(plain)]
    footers.append(usd(planned))
    headers = ("group", "prefix tokens", "prompt tokens", "requests", "planned", "plain")
    for header, footer in zip((*headers, "with planning"), footers, strict=True):
        out.add_column(header, footer=footer, justify="left" if header == "group" else "right")
    for index, cost in enumerate(costs, 1):
        out.add_row(
            _name(cost, index),
            f"{cost.group.tokens:,}",
            f"{cost.prompt_tokens:,}",
            f"{len(cost.group.members):,}",
            "yes" if cost.planned else "no",
            usd(cost.plain),
            usd(cost.with_planning),
        )
    return out


def cache_plan_json(costs: Sequence[GroupCost], mode: str) -> dict[str, object]:
    return {
        "cache": mode,
        "groups": [
            {
                "model": c.group.model,
                "prefix_tokens": c.group.tokens,
                "prompt_tokens": c.prompt_tokens,
                "requests": len(c.group.members),
                "planned": c.planned,
                "plain_usd": money_json(c.plain),
                "with_planning_usd": money_json(c.with_planning),
            }
            for c in costs
        ],
        "plain_usd": money_json(_total(costs, "plain")),
        "with_planning_usd": money_json(_total(costs, "with_planning")),
    }
