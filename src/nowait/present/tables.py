"""Turn results into text for people: terminal tables and money. No computation here."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.padding import Padding
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from nowait.types import Tier

if TYPE_CHECKING:
    from nowait.guard.plan import FallbackPlan
    from nowait.route.receipts import Receipt, ReceiptLine
    from nowait.sort.pricing import PriceTable
    from nowait.sort.worksheet import WorksheetResult
    from nowait.store import BatchRecord

_FIGURE = 36  # longer cells (reasons) get a line of their own in the stacked layout


class FitTable(Table):
    """A table whose first column holds names (workloads, models, policies) that are never cut:
    drawn as a table when every name and figure fits the width, else stacked, each row's name
    on its own line with the other cells under it as `header: value`."""

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lines = console.render_lines(_AsTable(self), options, pad=False, new_lines=False)
        text = "\n".join("".join(segment.text for segment in line) for line in lines)
        cells = self.columns[0].cells if self.columns else ()
        names = [line for cell in cells for line in _plain(console, cell).splitlines()]
        if "…" in text or not all(name.strip() in text for name in names):
            yield from self._stacked(console)
            return
        for line in lines:  # drawn once: the lines measured are the lines shown
            yield from line
            yield Segment.line()

    def _stacked(self, console: Console) -> Iterator[RenderableType]:
        from rich.columns import Columns

        if self.title:
            yield _styled(console, self.title, "bold")
        headers = [_plain(console, c.header) for c in self.columns]
        rows = [list(r) for r in zip(*(c.cells for c in self.columns), strict=True)]
        if self.show_footer:
            rows.append([c.footer for c in self.columns])
        for cells in rows:
            name = _plain(console, cells[0])
            indent = 2 + len(name) - len(name.lstrip(" "))  # a nested row's figures go in too
            yield _styled(console, cells[0], "bold")
            pairs = [
                f"{h}: {_plain(console, v)}"
                for h, v in zip(headers[1:], cells[1:], strict=True)
                if _plain(console, v)
            ]
            figures = [Text(p) for p in pairs if len(p) <= _FIGURE]
            yield Padding(Columns(figures, padding=(0, 3)), (0, 0, 0, indent))
            for words in (p for p in pairs if len(p) > _FIGURE):  # reasons: a line each
                yield Padding(Text(words), (0, 0, 0, indent))
        if self.caption:
            yield _styled(console, self.caption, "")


class _AsTable:
    """A `FitTable` drawn the plain `Table` way (measured without recursing into itself)."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        return Table.__rich_console__(self.table, console, options)


def _plain(console: Console, cell: object) -> str:
    if isinstance(cell, Text):
        return cell.plain
    return (
        console.render_str(cell, highlight=False).plain
        if isinstance(cell, str)
        else str(cell or "")
    )


def _styled(console: Console, cell: object, style: str) -> Text:
    text = (
        cell.copy()
        if isinstance(cell, Text)
        else console.render_str(str(cell or ""), highlight=False)
    )
    text.stylize(style)
    return text


def usd(amount: Decimal | None, places: int = 2) -> str:
    """`$1,234.57`; `unknown` for a cost that cannot be known."""
    if amount is None:
        return "unknown"
    q = amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    sign = "-" if q < 0 else ""
    return f"{sign}${abs(q):,.{places}f}"


def rate(amount: Decimal) -> str:
    """A per-million-token price without trailing zeros beyond cents: 3 → 3.00, 0.125 → 0.125."""
    text = f"{amount.normalize():f}"
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(2, '0')}"


def prices_table(table: PriceTable) -> Table:
    out = FitTable(
        title=(
            f"Claude prices as of {table.as_of.isoformat()} ({table.currency} per million tokens)"
        ),
        caption=(
            f"Batch tier = {rate(table.batch_discount * 100).rstrip('0').rstrip('.')}% of every "
            "item, cache included."
            + (f" Overrides: {', '.join(table.overrides_from)}." if table.overrides_from else "")
        ),
    )
    for column in (
        "model",
        "input",
        "output",
        "5m write",
        "1h write",
        "cache read",
        "batch in/out",
    ):
        out.add_column(column, justify="left" if column == "model" else "right")
    for price in table:
        r = price.rates
        batch = r.scaled(table.batch_discount)
        name = price.model + ("" if price.confirmed else " ⚠ unconfirmed")
        if price.long_context_above is not None:
            name += f"\n  > {price.long_context_above:,} prompt tokens"
        cells = [r.input, r.output, r.cache_write_5m, r.cache_write_1h, r.cache_read]
        row = [rate(c) for c in cells]
        if price.long_context is not None:
            lc = price.long_context
            long_cells = [lc.input, lc.output, lc.cache_write_5m, lc.cache_write_1h, lc.cache_read]
            row = [f"{a}\n{rate(b)}" for a, b in zip(row, long_cells, strict=True)]
        out.add_row(name, *row, f"{rate(batch.input)} / {rate(batch.output)}")
    return out


_VERDICT_STYLE = {"realtime": "cyan", "batch": "green", "split": "yellow", "review": "magenta"}


def to_review(savings: Iterable[tuple[str, Decimal | None]]) -> str:
    """What each review workload would save a month if nobody waits: whether asking is
    worth it. Empty when there is nothing to review."""
    worth = [f"{name} would save {usd(saved)}/month if nobody waits" for name, saved in savings]
    return "To review: " + "; ".join(worth) + "." if worth else ""


def worksheet_table(result: WorksheetResult) -> Table:
    """Each workload's verdict, reasons and monthly money; totals at the bottom."""
    out = FitTable(title="Where each workload belongs (monthly, list prices)", show_lines=True)
    out.add_column("workload")
    out.add_column("verdict")
    for column in ("now", "after move", "with caching", "saved"):
        out.add_column(column, justify="right")
    out.add_column("why", ratio=1)
    for row in result.rows:
        money = row.money
        verdict = row.classification.verdict.value
        out.add_row(
            row.workload.name,
            f"[{_VERDICT_STYLE[verdict]}]{verdict}[/]",
            usd(money.current),
            usd(money.after_batch),
            usd(money.after_cache),
            usd(money.saved),
            "; ".join(row.classification.reasons),
        )
    out.add_row(
        "[bold]total[/]",
        "",
        usd(result.total("current")),
        usd(result.total("after_batch")),
        usd(result.total("after_cache")),
        f"[bold]{usd(result.total('saved'))}[/]",
        "",
    )
    share = result.batchable_share
    review = to_review(
        (row.workload.name, row.if_batch.saved) for row in result.rows if row.if_batch is not None
    )
    out.caption = (
        f"Batchable share of spend: {percent(share)}. Savings stack: batch halves every item, "
        "caching then discounts the cached prompt of what remains (discounts multiply)."
        + (f"\n{review}" if review else "")
    )
    return out


def percent(share: Decimal | None) -> str:
    if share is None:
        return "unknown"
    return f"{(share * 100).quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)}%"


MICRO = Decimal("0.000001")


def money_json(amount: Decimal | None) -> str | None:
    """A decimal string for JSON, in micro-dollars (six places) whatever the value, so every
    figure of a field has one scale (`96.000000`, `48.000000`) and none is a float; null when
    unknown. Shares (0 to 1) get the same six places."""
    return None if amount is None else str(amount.quantize(MICRO, rounding=ROUND_HALF_UP))


def worksheet_json(result: WorksheetResult) -> dict[str, object]:
    attributes = ("current", "after_batch", "after_cache", "saved", "batchable_current")
    return {
        "workloads": [
            {
                "name": row.workload.name,
                "verdict": row.classification.verdict.value,
                "reasons": list(row.classification.reasons),
                "monthly_usd": {a: money_json(getattr(row.money, a)) for a in attributes},
                "saved_if_batch_usd": money_json(row.if_batch.saved) if row.if_batch else None,
            }
            for row in result.rows
        ],
        "totals_usd": {a: money_json(result.total(a)) for a in attributes},
        "batchable_share": money_json(result.batchable_share),
    }


def receipt_table(receipt: Receipt) -> RenderableType:
    """The receipt, and under it the cache table when any call read or wrote the cache."""
    from rich.console import Group

    money = receipt_money_table(receipt)
    if not receipt.total.usage.cache_read_tokens and not _cache_writes(receipt.total):
        return money
    return Group(money, receipt_cache_table(receipt))


def _cache_writes(line: ReceiptLine) -> int:
    return line.usage.cache_write_5m_tokens + line.usage.cache_write_1h_tokens


def receipt_cache_table(receipt: Receipt) -> Table:
    """Per workload: cache reads, 5 m and 1 h writes, the hit rate, and the saving split into
    the cache discount and the batch discount."""
    table = FitTable(
        title="Cache",
        show_footer=True,
        caption=(
            "Hit rate: cache-read tokens / all prompt tokens. Real-time without the cache"
            " → with it (cache discount) → paid (batch discount); the two add up to the saving."
        ),
    )
    total = receipt.total
    table.add_column("workload", footer="total")
    for label, footer in _cache_cells(total).items():
        table.add_column(label, footer=footer, justify="right")
    for line in receipt.lines:
        table.add_row(line.workload, *_cache_cells(line).values())
    return table


def _cache_cells(line: ReceiptLine) -> dict[str, str]:
    usage = line.usage
    return {
        "reads": f"{usage.cache_read_tokens:,}",
        "5m writes": f"{usage.cache_write_5m_tokens:,}",
        "1h writes": f"{usage.cache_write_1h_tokens:,}",
        "hit rate": "-" if line.hit_rate is None else percent(line.hit_rate),
        "cache discount": usd(line.cache_discount, 4),
        "batch discount": usd(line.batch_discount, 4),
    }


def receipt_money_table(receipt: Receipt) -> Table:
    """Per workload: requests by tier, tokens, list price (all real-time), paid, saved."""
    caption = "\n".join([*receipt.deadlines.lines(), *receipt.notes]) or None
    table = FitTable(title="Receipt", show_footer=True, caption=caption)
    total = receipt.total
    table.add_column("workload", footer="total")
    for label, footer in (
        ("real-time", f"{total.realtime_requests:,}"),
        ("batch", f"{total.requests.get(Tier.BATCH, 0):,}"),
        ("input + cache tokens", f"{total.usage.prompt_tokens:,}"),
        ("output tokens", f"{total.usage.output_tokens:,}"),
        ("list price", usd(total.list_price, 4)),
        ("paid", usd(total.paid, 4)),
        ("saved", usd(total.saved, 4)),
    ):
        table.add_column(label, footer=footer, justify="right")
    for line in receipt.lines:
        table.add_row(
            line.workload,
            f"{line.realtime_requests:,}",
            f"{line.requests.get(Tier.BATCH, 0):,}",
            f"{line.usage.prompt_tokens:,}",
            f"{line.usage.output_tokens:,}",
            usd(line.list_price, 4),
            usd(line.paid, 4),
            usd(line.saved, 4),
        )
    return table


def receipt_json(receipt: Receipt) -> dict[str, object]:
    def line(x: ReceiptLine) -> dict[str, object]:
        return {
            "workload": x.workload,
            "requests": {tier.value: n for tier, n in x.requests.items()},
            "usage": {
                "input_tokens": x.usage.input_tokens,
                "output_tokens": x.usage.output_tokens,
                "cache_write_5m_tokens": x.usage.cache_write_5m_tokens,
                "cache_write_1h_tokens": x.usage.cache_write_1h_tokens,
                "cache_read_tokens": x.usage.cache_read_tokens,
            },
            "list_price": money_json(x.list_price),
            "paid": money_json(x.paid),
            "saved": money_json(x.saved),
            "cache": {
                "hit_rate": money_json(x.hit_rate),
                "uncached_list_price": money_json(x.uncached),
                "cache_discount": money_json(x.cache_discount),
                "batch_discount": money_json(x.batch_discount),
            },
        }

    return {
        "workloads": [line(x) for x in receipt.lines],
        "total": line(receipt.total),
        "notes": receipt.notes,
        "deadlines": {
            "with_deadline": receipt.deadlines.with_deadline,
            "fell_back": receipt.deadlines.fell_back,
            "missed": receipt.deadlines.missed,
            "late_seconds_max": max(receipt.deadlines.late, default=0.0),
        },
    }


def _span(delta: timedelta) -> str:
    seconds = round(delta.total_seconds())
    if abs(seconds) < 120:
        return f"{seconds} s"
    if abs(seconds) < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _at(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _batch_name(batch: BatchRecord) -> str:
    return f"batch {batch.api_id}" if batch.api_id else f"planned batch {batch.id}"


def _shared(plan: FallbackPlan) -> str:
    if not plan.shared_requests:
        return ""
    return f"with {plan.shared_requests:,} requests of other batches due first; "


def plan_text(batch: BatchRecord, plan: FallbackPlan, now: datetime) -> str:
    """The guard's plan for one batch: why nowait waits, or does not."""
    c = plan.capacity
    return "\n".join(
        (
            f"guard:   {_batch_name(batch)} ({plan.requests:,} requests of {batch.model}),"
            f" deadline {_at(plan.deadline)}",
            f"         forecast end p50 {_at(plan.finish_p50)}, p95 {_at(plan.finish_p95)}"
            f" ({plan.turnaround_source})",
            f"         fallback at {_at(plan.fallback_at)} = the deadline"
            f" - margin {_span(plan.margin)}"
            f" - cancel {_span(plan.cancel_latency)} ({plan.cancel_source})"
            f" - real time {_span(plan.realtime)} ({_shared(plan)}{c.requests_per_minute:,.0f}"
            f" requests a"
            f" minute, {c.concurrency} at once, {plan.call_seconds:.0f} s a call:"
            f" {plan.call_source})",
            f"         {plan.verdict(now)}",
        )
    )


def plan_json(batch: BatchRecord, plan: FallbackPlan, now: datetime) -> dict[str, object]:
    c = plan.capacity
    return {
        "batch": batch.id,
        "api_id": batch.api_id,
        "model": batch.model,
        "requests": plan.requests,
        "deadline": _at(plan.deadline),
        "deadline_class": plan.deadline_class,
        "forecast_end": {"p50": _at(plan.finish_p50), "p95": _at(plan.finish_p95)},
        "turnaround_source": plan.turnaround_source,
        "chance_before_fallback": round(plan.chance, 4),
        "fallback_at": _at(plan.fallback_at),
        "assumes": {
            "margin_seconds": plan.margin.total_seconds(),
            "cancel_latency_seconds": plan.cancel_latency.total_seconds(),
            "cancel_latency_source": plan.cancel_source,
            "realtime_seconds": plan.realtime.total_seconds(),
            "shared_requests": plan.shared_requests,
            "call_seconds": plan.call_seconds,
            "call_source": plan.call_source,
            "capacity": {
                "requests_per_minute": c.requests_per_minute,
                "input_tokens_per_minute": c.input_tokens_per_minute,
                "output_tokens_per_minute": c.output_tokens_per_minute,
                "concurrency": c.concurrency,
            },
        },
        "verdict": plan.verdict(now),
    }
