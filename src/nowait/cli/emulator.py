"""`nowait emulator`: serve the local Anthropic API for tests and demos."""

from __future__ import annotations

from typing import Annotated

import typer

from nowait.cli import app
from nowait.clock import Clock, ScaledClock, SystemClock
from nowait.durations import parse_duration
from nowait.emulator import EmulatorConfig, Faults, RateLimit, Turnaround
from nowait.emulator.server import serve_forever
from nowait.errors import InputError


def _seconds(text: str | None, flag: str) -> float | None:
    if text is None:
        return None
    try:
        return parse_duration(text).total_seconds()
    except ValueError:
        raise InputError(
            f"not a duration: {text!r}", field=flag, expected="e.g. 90s, 15m, 6h"
        ) from None


@app.command("emulator")
def emulator_command(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    turnaround: Annotated[str, typer.Option(help="Median batch turnaround (emulated).")] = "10m",
    turnaround_p95: Annotated[
        str | None, typer.Option(help="95th percentile turnaround; log-normal between.")
    ] = None,
    time_scale: Annotated[float, typer.Option(help="Emulated seconds per real second.")] = 1.0,
    latency: Annotated[str, typer.Option(help="Real-time call latency (emulated).")] = "0s",
    rpm: Annotated[int | None, typer.Option(help="Requests per minute per model.")] = None,
    itpm: Annotated[int | None, typer.Option(help="Input tokens per minute per model.")] = None,
    otpm: Annotated[int | None, typer.Option(help="Output tokens per minute per model.")] = None,
    overloaded_rate: Annotated[float, typer.Option(help="Share of calls answered 529.")] = 0.0,
    error_rate: Annotated[float, typer.Option(help="Share of calls answered 500.")] = 0.0,
    errored_lines: Annotated[float, typer.Option(help="Share of batch lines errored.")] = 0.0,
    expired_lines: Annotated[float, typer.Option(help="Share of batch lines expired.")] = 0.0,
    api_key: Annotated[
        list[str] | None, typer.Option(help="Accept only these keys (repeatable).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the fake model and fault draws.")] = 0,
    contract: Annotated[
        bool, typer.Option(help="Answer any batch id and model (SDK suites).")
    ] = False,
    public_url: Annotated[str | None, typer.Option(help="Origin used in results_url.")] = None,
) -> None:
    """Serve a local Messages + Message Batches API (point the SDK's base_url at it)."""
    try:
        faults = Faults(overloaded_rate, error_rate, errored_lines, expired_lines)
        config = EmulatorConfig(
            seed=seed,
            api_keys=frozenset(api_key) if api_key else None,
            turnaround=Turnaround(
                _seconds(turnaround, "--turnaround") or 0.0,
                _seconds(turnaround_p95, "--turnaround-p95"),
            ),
            realtime_latency=_seconds(latency, "--latency") or 0.0,
            rate_limits={"*": RateLimit(rpm, itpm, otpm)} if (rpm or itpm or otpm) else {},
            faults=faults,
            contract_mode=contract,
            public_base_url=public_url,
        )
    except ValueError as exc:
        raise InputError(str(exc)) from None
    clock: Clock = SystemClock() if time_scale == 1.0 else ScaledClock(time_scale)
    typer.echo(
        f"nowait emulator on http://{host}:{port} (ANTHROPIC_BASE_URL=http://{host}:{port})",
        err=True,
    )
    serve_forever(config, clock, host, port)
