"""`nowait plan FILE`: the prefix groups of a requests file and what cache planning saves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from nowait.cli import PricesOption, app, stdout
from nowait.cli.options import CacheOption, load


@app.command("plan")
def plan_command(
    file: Annotated[Path, typer.Argument(help="Requests file (JSON Lines, as for submit).")],
    cache: CacheOption = None,
    prices: PricesOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Group the requests by shared prompt prefix and price their input in batches, without
    and with cache planning."""
    from nowait.clock import SystemClock
    from nowait.present.cacheplan import cache_plan_json, cache_plan_table
    from nowait.route.cacheplan import group_costs
    from nowait.route.requests_file import read_requests
    from nowait.sort import pricing

    settings = load(None, {"cache": cache, "prices": prices})
    table = pricing.load_table(settings.prices)
    requests = [r.params for r in read_requests(file, SystemClock().now())]
    costs = group_costs(requests, table, settings.cache)
    if json_out:
        typer.echo(json.dumps(cache_plan_json(costs, settings.cache), indent=2))
    else:
        stdout().print(cache_plan_table(costs, settings.cache))
