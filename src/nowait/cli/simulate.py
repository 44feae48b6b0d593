"""`nowait simulate`: replay a trace under five routing policies, with an oracle."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from nowait.cli import PricesOption, app, stdout
from nowait.cli.options import (
    CancelLatency,
    Concurrency,
    ConfigFile,
    Itpm,
    Margin,
    MinBatchChance,
    Otpm,
    Rpm,
    capacity_flags,
    guard_flags,
    load,
)
from nowait.durations import MAX_DURATION, parse_duration
from nowait.errors import InputError
from nowait.files import check_output_file
from nowait.reading import check_input_file

if TYPE_CHECKING:
    from nowait.guard.turnaround import Turnaround


def _seconds(text: str, flag: str) -> float:
    try:
        return parse_duration(text).total_seconds()
    except ValueError:
        raise InputError(f"not a duration: {text!r}", field=flag, expected="e.g. 20m, 3h") from None


MAX_GENERATE = 10_000_000
"""Most requests `--generate` writes (about 1 GB of trace)."""


def _check_paths(trace: Path, generate: int | None, days: int, html: Path | None) -> None:
    """Every path and count checked before any work starts."""
    if generate is None:
        check_input_file(trace)
    else:
        if not 1 <= generate <= MAX_GENERATE:
            expected = f"1 to {MAX_GENERATE:,} requests"
            raise InputError(f"got {generate:,}", field="--generate", expected=expected)
        if not 1 <= days <= MAX_DURATION.days:
            expected = f"1 to {MAX_DURATION.days} days"
            raise InputError(f"got {days:,}", field="--days", expected=expected)
        check_output_file(trace, "TRACE")
    if html is not None:
        check_output_file(html, "--html")


def _turnaround(median: str, p95: str) -> Turnaround:
    from nowait.guard.turnaround import Turnaround

    median_s, p95_s = _seconds(median, "--turnaround"), _seconds(p95, "--turnaround-p95")
    if p95_s < median_s:
        expected = f"at least --turnaround ({median})"
        raise InputError(f"got {p95!r}", field="--turnaround-p95", expected=expected)
    return Turnaround(median_s, p95_s)


def _share(value: float) -> float:
    if not 0 <= value <= 1:
        raise InputError(f"got {value}", field="--noise", expected="a share from 0 to 1")
    return value


@app.command("simulate")
def simulate_command(
    trace: Annotated[
        Path,
        typer.Argument(
            help="Trace JSONL: t, model, input_tokens, output_tokens, awaited, deadline."
        ),
    ],
    generate: Annotated[
        int | None,
        typer.Option(
            "--generate", help="First write a seeded trace of this many requests to TRACE."
        ),
    ] = None,
    mix: Annotated[
        str,
        typer.Option(
            help="The generated trace's mix: default; deadlines (overnight reports due at"
            " 08:00, two-hour exports, a 50-minute SLA, a backlog, awaited chat); or cache"
            " (a ticket tagger and a nightly digest sharing long prompt prefixes, awaited chat)."
        ),
    ] = "default",
    days: Annotated[int, typer.Option(help="Days the generated trace spans.")] = 7,
    seed: Annotated[int, typer.Option(help="Seed of the trace and of the turnaround draws.")] = 1,
    turnaround: Annotated[str, typer.Option(help="Median batch turnaround.")] = "20m",
    turnaround_p95: Annotated[str, typer.Option(help="95th percentile batch turnaround.")] = "3h",
    buffer: Annotated[str, typer.Option(help="The fixed-buffer policy's risk buffer.")] = "10m",
    call_time: Annotated[
        str, typer.Option(help="How long one real-time call takes in the simulated world.")
    ] = "15s",
    cancel_time: Annotated[
        str, typer.Option(help="How long a cancel takes to end a batch in the world.")
    ] = "3m",
    noise: Annotated[
        float, typer.Option(help="Each call and cancel time varies by ± this share (0 to 1).")
    ] = 0.5,
    prior: Annotated[
        bool,
        typer.Option(
            "--prior",
            help="nowait plans with its prior and the settings' cancel latency and call time"
            " (no history) instead of learning them from the world's history.",
        ),
    ] = False,
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write the chart as HTML.")
    ] = None,
    prices: PricesOption = None,
    config: ConfigFile = None,
    rpm: Rpm = None,
    itpm: Itpm = None,
    otpm: Otpm = None,
    concurrency: Concurrency = None,
    margin: Margin = None,
    cancel_latency: CancelLatency = None,
    min_batch_chance: MinBatchChance = None,
) -> None:
    """Compare all-realtime, all-batch, fixed-buffer, nowait and the oracle on a trace.

    nowait plans with the capacity, guard and polling `nowait run` would use (the same flags,
    NOWAIT_* variables and nowait.toml; see `nowait config`)."""
    from nowait.guard.forecast import PRIOR
    from nowait.guard.latency import prior as latency_prior
    from nowait.guard.policy import Capacity, GuardConfig
    from nowait.present.progress import progress
    from nowait.present.simulation import cache_table, results_html, results_table
    from nowait.simulate.cache import simulate_cache
    from nowait.simulate.engine import SimConfig, simulate
    from nowait.simulate.trace import MIXES, read_trace, write_trace
    from nowait.sort.pricing import load_table

    settings = load(
        config,
        {
            "prices": prices,
            **capacity_flags(rpm, itpm, otpm, concurrency),
            **guard_flags(margin, cancel_latency, min_batch_chance),
        },
    )
    _check_paths(trace, generate, days, html)
    if generate is not None:
        if mix not in MIXES:
            raise InputError(f"got {mix!r}", field="--mix", expected=" or ".join(MIXES))
        write_trace(trace, generate, days=days, seed=seed, mix=mix)
        typer.echo(f"wrote {generate:,} requests to {trace}", err=True)
    with progress("trace read (bytes)", total=trace.stat().st_size,
                  enabled=sys.stderr.isatty()) as bar:  # fmt: skip
        requests = read_trace(trace, on_bytes=bar.advance)
    capacity, guard = Capacity.from_settings(settings), GuardConfig.from_settings(settings)
    sim = SimConfig.from_settings(
        settings,
        turnaround=_turnaround(turnaround, turnaround_p95),
        fixed_buffer=_seconds(buffer, "--buffer"),
        seed=seed,
        forecast=PRIOR if prior else None,
        call_seconds=_seconds(call_time, "--call-time"),
        cancel_seconds=_seconds(cancel_time, "--cancel-time"),
        noise=_share(noise),
        latencies=latency_prior(capacity, guard) if prior else None,
    )
    table = load_table(settings.prices)
    results = simulate(requests, sim, table)
    stdout().print(results_table(results, len(requests), sim.capacity))
    cached = simulate_cache(requests, sim, table)
    if cached:
        stdout().print(cache_table(cached))
    if html is not None:
        html.write_text(results_html(results, len(requests), sim, cached), encoding="utf-8")
        typer.echo(f"chart written to {html}", err=True)
