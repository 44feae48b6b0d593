"""What a run cost and saved: list price (everything real-time) against what was paid."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from nowait.sort.pricing import PriceTable, cost_of_totals
from nowait.store import UsageRow
from nowait.types import Tier, Usage


@dataclass
class ReceiptLine:
    workload: str
    requests: dict[Tier, int] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    list_price: Decimal | None = Decimal(0)
    paid: Decimal | None = Decimal(0)

    @property
    def saved(self) -> Decimal | None:
        if self.list_price is None or self.paid is None:
            return None
        return self.list_price - self.paid


@dataclass
class Receipt:
    lines: list[ReceiptLine]
    total: ReceiptLine


def _add(a: Decimal | None, b: Decimal | None) -> Decimal | None:
    return None if a is None or b is None else a + b


def build_receipt(rows: Iterable[UsageRow], table: PriceTable | None = None) -> Receipt:
    """Per workload and in total. Each row's usage is priced per request on average, so
    long-context rates apply as they would have per call; an unknown model makes the money
    of its workload (and the total) unknown, never a guess."""
    lines: dict[str, ReceiptLine] = {}
    total = ReceiptLine("total")
    for row in rows:
        name = row.workload or "(none)"
        line = lines.setdefault(name, ReceiptLine(name))
        listed, paid = _priced(row, table)
        for target in (line, total):
            target.requests[row.tier] = target.requests.get(row.tier, 0) + row.requests
            target.usage = target.usage + row.usage
            target.list_price = _add(target.list_price, listed)
            target.paid = _add(target.paid, paid)
    return Receipt(sorted(lines.values(), key=lambda x: x.workload), total)


def _priced(row: UsageRow, table: PriceTable | None) -> tuple[Decimal | None, Decimal | None]:
    listed = cost_of_totals(row.usage, row.requests, row.model, Tier.STANDARD, table)
    paid = cost_of_totals(row.usage, row.requests, row.model, row.tier, table)
    return (
        listed.total if listed is not None else None,
        paid.total if paid is not None else None,
    )
