"""`nowait plan FILE`: the prefix groups of a requests file and what cache planning saves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from nowait.cli import PricesOption, app, stdout
from nowait.cli.options import CacheOption, Home, StoreUrl, load

if TYPE_CHECKING:
    from nowait.route.cacheforecast import History
    from nowait.settings import Settings


@app.command("plan")
def plan_command(
    file: Annotated[Path, typer.Argument(help="Requests file (JSON Lines, as for submit).")],
    cache: CacheOption = None,
    prices: PricesOption = None,
    home: Home = None,
    store_url: StoreUrl = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Group the requests by shared prompt prefix and price their input in batches, without
    and with cache planning, and as expected from the cache hits the store has seen."""
    from nowait.clock import SystemClock
    from nowait.present.cacheplan import cache_plan_json, cache_plan_table
    from nowait.route.cacheforecast import forecast_groups
    from nowait.route.cacheplan import group_costs
    from nowait.route.requests_file import read_requests
    from nowait.sort import pricing

    settings = load(None, {"cache": cache, "prices": prices, "home": home, "store": store_url})
    table = pricing.load_table(settings.prices)
    lines = list(read_requests(file, SystemClock().now()))
    costs = group_costs([r.params for r in lines], table, settings.cache)
    forecasts = forecast_groups(costs, [r.workload for r in lines], table, history_of(settings))
    if json_out:
        typer.echo(json.dumps(cache_plan_json(forecasts, settings.cache), indent=2))
    else:
        stdout().print(cache_plan_table(forecasts, settings.cache))


def history_of(settings: Settings) -> History:
    """The cache hits of the store's finished batch jobs; none when no store exists yet (the
    planning model then stands in)."""
    import os
    from contextlib import closing

    from nowait.cli.router import DB_NAME, _store
    from nowait.route.cacheforecast import NO_HISTORY, learn
    from nowait.settings import default_home

    home = settings.home or default_home(os.environ)
    if not settings.store and not (home / DB_NAME).is_file():
        return NO_HISTORY
    with closing(_store(settings, read_only=True)) as store:
        return learn(store.usage_rows())
