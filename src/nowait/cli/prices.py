"""`nowait prices`."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from nowait.cli import PricesOption, app, stdout
from nowait.cli.options import prices_file


@app.command("prices")
def prices_command(
    prices: PricesOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Print the price table with its date."""
    from nowait.present import tables as render
    from nowait.sort import pricing

    table = pricing.load_table(prices_file(prices))
    if json_out:
        rows = {
            "as_of": table.as_of.isoformat(),
            "currency": table.currency,
            "batch_discount": str(table.batch_discount),
            "models": {
                p.model: {i: str(getattr(p.rates, i)) for i in pricing.ITEMS} for p in table
            },
        }
        typer.echo(json.dumps(rows, indent=2))
        return
    stdout().print(render.prices_table(table))
