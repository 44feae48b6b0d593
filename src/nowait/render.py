"""Turn results into text for people: terminal tables and money. No computation here."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from rich.table import Table

from nowait.pricing import PriceTable


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
    out = Table(
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
