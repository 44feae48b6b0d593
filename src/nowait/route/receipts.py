"""What a run cost and saved: list price (everything real-time) against what was paid, and
what prompt caching did.

The saving is split in the order the receipt reads: the same calls real-time *without* the
cache (`uncached`) → real-time as they ran, cache included (`list_price`) → what was paid.
The first step is the cache discount, the second the batch discount; they add up to the whole
saving. The hit rate is token-weighted, as the analyzer's cache share: cache-read tokens over
every prompt token (uncached input + cache writes + cache reads)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from nowait.sort.pricing import PriceTable, cost_of_totals, default_table
from nowait.store import DeadlineRow, UsageRow
from nowait.types import Tier, Usage


@dataclass
class ReceiptLine:
    workload: str
    requests: dict[Tier, int] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    list_price: Decimal | None = Decimal(0)
    paid: Decimal | None = Decimal(0)
    uncached: Decimal | None = Decimal(0)
    """The same calls real-time with every prompt token billed as fresh input."""

    @property
    def realtime_requests(self) -> int:
        """Requests answered by the real-time API, on whatever tier it billed them."""
        return sum(n for tier, n in self.requests.items() if tier is not Tier.BATCH)

    @property
    def saved(self) -> Decimal | None:
        if self.list_price is None or self.paid is None:
            return None
        return self.list_price - self.paid

    @property
    def batch_discount(self) -> Decimal | None:
        """What the batch tier saved on these calls as they ran (the `saved` column)."""
        return self.saved

    @property
    def cache_discount(self) -> Decimal | None:
        """What the cache saved against the same calls uncached, at real-time price (negative
        when writes cost more than reads paid back)."""
        if self.uncached is None or self.list_price is None:
            return None
        return self.uncached - self.list_price

    @property
    def hit_rate(self) -> Decimal | None:
        """Cache-read tokens over all prompt tokens; None without any prompt token."""
        return hit_rate(self.usage)


def hit_rate(usage: Usage) -> Decimal | None:
    """Cache-read tokens / (uncached input + cache writes + cache reads): the share of the
    prompt served from the cache (the analyzer's cache share). None for no prompt at all."""
    if usage.prompt_tokens == 0:
        return None
    return Decimal(usage.cache_read_tokens) / Decimal(usage.prompt_tokens)


def uncached_usage(usage: Usage) -> Usage:
    """The same prompt with nothing from or into the cache: every token fresh input."""
    return Usage(input_tokens=usage.prompt_tokens, output_tokens=usage.output_tokens)


@dataclass(frozen=True)
class Deadlines:
    """How the deadline guard did: requests with a deadline, how many it moved from a batch to
    real time, and how late the ones that missed were (seconds, sorted)."""

    with_deadline: int = 0
    fell_back: int = 0
    late: tuple[float, ...] = ()

    @property
    def missed(self) -> int:
        return len(self.late)

    def lines(self) -> list[str]:
        """The receipt's words for it; none when no request had a deadline."""
        if not self.with_deadline:
            return []
        moved = (
            f"{self.fell_back:,} of {self.with_deadline:,} {_requests(self.with_deadline)} with"
            f" a deadline fell back from a batch to real time"
        )
        if not self.late:
            return [moved, "no deadline missed"]
        worst, median = self.late[-1], self.late[len(self.late) // 2]
        return [
            moved,
            f"{self.missed:,} {_requests(self.missed)} missed {_their(self.missed)} deadline:"
            f" late by up to {_duration(worst)} (median {_duration(median)})",
        ]


def deadlines_of(rows: Iterable[DeadlineRow]) -> Deadlines:
    """A result with no known time counts as on time: nowait cannot tell it was late."""
    total = fell_back = 0
    late: list[float] = []
    for row in rows:
        total += 1
        fell_back += row.fell_back
        if row.finished_at is not None and row.finished_at > row.deadline:
            late.append((row.finished_at - row.deadline).total_seconds())
    return Deadlines(total, fell_back, tuple(sorted(late)))


@dataclass
class Receipt:
    lines: list[ReceiptLine]
    total: ReceiptLine
    notes: list[str] = field(default_factory=list)
    """What a reader must know to trust the money: tiers priced by assumption or not at all."""
    deadlines: Deadlines = field(default_factory=Deadlines)


def _add(a: Decimal | None, b: Decimal | None) -> Decimal | None:
    return None if a is None or b is None else a + b


def build_receipt(
    rows: Iterable[UsageRow],
    table: PriceTable | None = None,
    deadlines: Iterable[DeadlineRow] = (),
) -> Receipt:
    """Per workload and in total. Each row's usage is priced per request on average, so
    long-context rates apply as they would have per call; an unknown model makes the money
    of its workload (and the total) unknown, never a guess."""
    lines: dict[str, ReceiptLine] = {}
    total = ReceiptLine("total")
    for row in rows:
        name = row.workload or "(none)"
        line = lines.setdefault(name, ReceiptLine(name))
        listed, paid, uncached = _priced(row, table)
        for target in (line, total):
            target.requests[row.tier] = target.requests.get(row.tier, 0) + row.requests
            target.usage = target.usage + row.usage
            target.list_price = _add(target.list_price, listed)
            target.paid = _add(target.paid, paid)
            target.uncached = _add(target.uncached, uncached)
    return Receipt(
        sorted(lines.values(), key=lambda x: x.workload),
        total,
        _tier_notes(total, table),
        deadlines_of(deadlines),
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


def _their(n: int) -> str:
    return "its" if n == 1 else "their"


def _duration(seconds: float) -> str:
    """Lateness in words: whole seconds, minutes past two, hours past two hours."""
    whole = timedelta(seconds=round(seconds))
    if whole < timedelta(minutes=2):
        return f"{whole.seconds} s"
    if whole < timedelta(hours=2):
        return f"{whole.total_seconds() / 60:.0f} min"
    return f"{whole.total_seconds() / 3600:.1f} h"


def _priced(
    row: UsageRow, table: PriceTable | None
) -> tuple[Decimal | None, Decimal | None, Decimal | None]:
    """List price, paid and uncached list price of one row (None: unknown)."""
    priced = (
        (row.usage, Tier.STANDARD),
        (row.usage, row.tier),
        (uncached_usage(row.usage), Tier.STANDARD),
    )
    costs = [cost_of_totals(u, row.requests, row.model, tier, table) for u, tier in priced]
    listed, paid, uncached = (c.total if c is not None else None for c in costs)
    return listed, paid, uncached  # one call site: an unknown model is warned about once
