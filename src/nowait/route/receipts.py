"""What a run cost and saved: list price (everything real-time) against what was paid."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from nowait.sort.pricing import PriceTable, cost_of_totals, default_table
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
    def realtime_requests(self) -> int:
        """Requests answered by the real-time API, on whatever tier it billed them."""
        return sum(n for tier, n in self.requests.items() if tier is not Tier.BATCH)

    @property
    def saved(self) -> Decimal | None:
        if self.list_price is None or self.paid is None:
            return None
        return self.list_price - self.paid


@dataclass
class Receipt:
    lines: list[ReceiptLine]
    total: ReceiptLine
    notes: list[str] = field(default_factory=list)
    """What a reader must know to trust the money: tiers priced by assumption or not at all."""


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
    return Receipt(
        sorted(lines.values(), key=lambda x: x.workload), total, _tier_notes(total, table)
    )


def _tier_notes(total: ReceiptLine, table: PriceTable | None) -> list[str]:
    notes = []
    unknown = total.requests.get(Tier.UNKNOWN, 0)
    if unknown:
        notes.append(
            f"{unknown:,} {_requests(unknown)} came back on a service tier nowait does not know:"
            " priced at standard rates"
        )
    priority = total.requests.get(Tier.PRIORITY, 0)
    if priority and (table or default_table()).priority_factor is None:
        notes.append(
            f"{priority:,} {_requests(priority)} billed on Priority Tier: no priority price in"
            " the table, so their cost is unknown (set priority_factor in a --prices file)"
        )
    return notes


def _requests(n: int) -> str:
    return "request" if n == 1 else "requests"


def _priced(row: UsageRow, table: PriceTable | None) -> tuple[Decimal | None, Decimal | None]:
    listed = cost_of_totals(row.usage, row.requests, row.model, Tier.STANDARD, table)
    paid = cost_of_totals(row.usage, row.requests, row.model, row.tier, table)
    return (
        listed.total if listed is not None else None,
        paid.total if paid is not None else None,
    )
