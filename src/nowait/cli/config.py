"""`nowait config`: every effective setting and where it came from."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Annotated

import typer

from nowait.cli import PricesOption, app, stdout
from nowait.cli.options import (
    CacheOption,
    CancelLatency,
    Concurrency,
    ConfigFile,
    Home,
    Itpm,
    LogFormat,
    LogLevel,
    Margin,
    MinBatchChance,
    Otpm,
    Poll,
    Rpm,
    StoreUrl,
    capacity_flags,
    guard_flags,
    load,
)


@app.command("config")
def config_command(
    config: ConfigFile = None,
    home: Home = None,
    store: StoreUrl = None,
    prices: PricesOption = None,
    poll: Poll = None,
    cache: CacheOption = None,
    rpm: Rpm = None,
    itpm: Itpm = None,
    otpm: Otpm = None,
    concurrency: Concurrency = None,
    margin: Margin = None,
    cancel_latency: CancelLatency = None,
    min_batch_chance: MinBatchChance = None,
    log_level: LogLevel = None,
    log_format: LogFormat = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Print every effective setting and where it came from (flag, environment, file, default).

    Takes the same flags as `nowait run`: `nowait config --rpm 1000` shows what it would use."""
    flags = {
        "home": home, "store": store, "prices": prices, "poll.first": poll,
        **capacity_flags(rpm, itpm, otpm, concurrency),
        **guard_flags(margin, cancel_latency, min_batch_chance),
        "log_level": log_level, "log_format": log_format, "cache": cache,
    }  # fmt: skip
    settings = load(config, flags)
    from nowait.present.settings import settings_json, settings_table
    from nowait.settings import rows

    found = rows(settings)
    if settings.store:  # a password in the URL is never printed
        from nowait.store.postgres import mask

        found = [replace(r, value=mask(settings.store), text=mask(settings.store))
                 if r.key == "store" else r for r in found]  # fmt: skip
    if json_out:
        file = settings.config_file
        body = {"file": str(file) if file else None, "settings": settings_json(found)}
        typer.echo(json.dumps(body, indent=2))
        return
    stdout().print(settings_table(found, settings.config_file))
