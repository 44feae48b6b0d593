"""The flags that feed `Settings`, shared by the commands, and `load`: the one place the CLI
turns flags, the environment and `nowait.toml` into the settings object it passes down.

The flags have no `envvar`: the environment is read by `nowait.settings`, which also records
where each value came from (`nowait config`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from nowait.reading import check_input_file

if TYPE_CHECKING:  # pydantic-settings loads when a command reads settings, not for --help
    from nowait.settings import Settings

ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="A nowait.toml to read instead of $NOWAIT_HOME/nowait.toml.",
        show_default=False,
    ),
]
Home = Annotated[
    Path | None,
    typer.Option("--home", help="Data directory (env NOWAIT_HOME).", show_default=False),
]
StoreUrl = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="A postgresql://… URL to keep state in PostgreSQL (default: SQLite in --home; env NOWAIT_STORE).",
        show_default=False,
    ),
]
Poll = Annotated[
    str | None,
    typer.Option(
        "--poll",
        help="Time between batch polls at first: seconds or 10s, 1m (default 10s).",
        show_default=False,
    ),
]
CacheOption = Annotated[
    str | None,
    typer.Option(
        "--cache",
        help="Cache planning in batches: auto (group, prime, add 1-hour markers), keep (group"
        " only) or off (env NOWAIT_CACHE; default auto).",
        show_default=False,
    ),
]
Rpm = Annotated[
    float | None,
    typer.Option(
        "--rpm",
        help="Real-time requests a minute the account allows (default 50).",
        show_default=False,
    ),
]
Itpm = Annotated[
    float | None,
    typer.Option(
        "--itpm",
        help="Input tokens a minute the account allows (default 50,000).",
        show_default=False,
    ),
]
Otpm = Annotated[
    float | None,
    typer.Option(
        "--otpm",
        help="Output tokens a minute the account allows (default 10,000).",
        show_default=False,
    ),
]
Concurrency = Annotated[
    int | None,
    typer.Option("--concurrency", help="Real-time calls at once (default 8).", show_default=False),
]
Margin = Annotated[
    str | None,
    typer.Option(
        "--margin",
        help="Slack the guard keeps before a deadline (default 10m).",
        show_default=False,
    ),
]
CancelLatency = Annotated[
    str | None,
    typer.Option(
        "--cancel-latency",
        help="Time the guard plans for a cancel to end a batch (default 2m).",
        show_default=False,
    ),
]
MinBatchChance = Annotated[
    float | None,
    typer.Option(
        "--min-batch-chance",
        help="Least forecast chance to try a batch, 0 to 1 (default 0.2).",
        show_default=False,
    ),
]
LogLevel = Annotated[
    str | None,
    typer.Option(
        "--log-level",
        help="DEBUG, INFO, WARNING or ERROR (default: INFO for worker, WARNING for run).",
        show_default=False,
    ),
]
LogFormat = Annotated[
    str | None,
    typer.Option(
        "--log-format",
        help="Log lines on stderr as text or json (default text).",
        show_default=False,
    ),
]


def capacity_flags(
    rpm: float | None, itpm: float | None, otpm: float | None, concurrency: int | None
) -> dict[str, object]:
    return {
        "capacity.requests_per_minute": rpm,
        "capacity.input_tokens_per_minute": itpm,
        "capacity.output_tokens_per_minute": otpm,
        "capacity.concurrency": concurrency,
    }


def guard_flags(
    margin: str | None, cancel_latency: str | None, min_batch_chance: float | None
) -> dict[str, object]:
    return {
        "guard.margin": margin,
        "guard.cancel_latency": cancel_latency,
        "guard.min_batch_chance": min_batch_chance,
    }


def load(config: Path | None, flags: dict[str, object]) -> Settings:
    """The effective settings: `flags` (by setting key; None: not given) over the `NOWAIT_*`
    environment, over the TOML file, over the defaults."""
    from nowait.settings import load_settings

    settings = load_settings(os.environ, flags, config)
    if settings.prices is not None:  # read later, checked now: before any work starts
        source = settings.source("prices")
        field = f"prices in {source.where}" if source.kind == "file" else source.where
        check_input_file(settings.prices, field, "a TOML price file")
    return settings


def prices_file(prices: Path | None, config: Path | None = None) -> Path | None:
    """The price file from `--prices`, `NOWAIT_PRICES` or nowait.toml (None: the bundled one)."""
    return load(config, {"prices": prices}).prices
