"""`nowait emulator`: serve the local Anthropic API for tests and demos."""

from __future__ import annotations

import errno
import socket
from typing import TYPE_CHECKING, Annotated

import typer

from nowait.cli import app
from nowait.durations import parse_duration
from nowait.errors import ConfigError, InputError

if TYPE_CHECKING:  # the emulator (starlette, uvicorn) loads only when it serves
    from nowait.emulator import RateLimit


def _seconds(text: str | None, flag: str) -> float | None:
    if text is None:
        return None
    try:
        return parse_duration(text).total_seconds()
    except ValueError:
        raise InputError(
            f"not a duration: {text!r}", field=flag, expected="e.g. 90s, 15m, 6h"
        ) from None


def rate_limits(rpm: list[str], itpm: list[str], otpm: list[str]) -> dict[str, RateLimit]:
    """`--rpm 50 --rpm claude-haiku-4-5=500` → limits by model, "*" for every other model."""
    from nowait.emulator import RateLimit

    per_model: dict[str, dict[str, int]] = {}
    for flag, values in (("--rpm", rpm), ("--itpm", itpm), ("--otpm", otpm)):
        for text in values:
            model, _, number = text.rpartition("=")
            if not number.isdigit() or int(number) < 1 or text.startswith("="):
                raise InputError(
                    f"not a rate: {text!r}",
                    field=flag,
                    expected="N or MODEL=N, N a whole number ≥ 1",
                )
            per_model.setdefault(model or "*", {})[flag] = int(number)
    # A model with its own entry takes nothing from "*", so copy the defaults into it.
    default = per_model.get("*", {})
    return {
        model: RateLimit(
            limits.get("--rpm", default.get("--rpm")),
            limits.get("--itpm", default.get("--itpm")),
            limits.get("--otpm", default.get("--otpm")),
        )
        for model, limits in per_model.items()
    }


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
    cancel_latency: Annotated[
        str, typer.Option(help="From a batch's cancel to its end (emulated).")
    ] = "30s",
    rpm: Annotated[
        list[str] | None,
        typer.Option(help="Requests per minute: N for every model, or MODEL=N (repeatable)."),
    ] = None,
    itpm: Annotated[
        list[str] | None, typer.Option(help="Input tokens per minute: N or MODEL=N (repeatable).")
    ] = None,
    otpm: Annotated[
        list[str] | None, typer.Option(help="Output tokens per minute: N or MODEL=N (repeatable).")
    ] = None,
    overloaded_rate: Annotated[float, typer.Option(help="Share of calls answered 529.")] = 0.0,
    error_rate: Annotated[float, typer.Option(help="Share of calls answered 500.")] = 0.0,
    errored_lines: Annotated[float, typer.Option(help="Share of batch lines errored.")] = 0.0,
    expired_lines: Annotated[float, typer.Option(help="Share of batch lines expired.")] = 0.0,
    api_key: Annotated[
        list[str] | None, typer.Option(help="Accept only these keys (repeatable).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the fake model and fault draws.")] = 0,
    contract: Annotated[
        bool, typer.Option(help="Answer any batch id, model and list cursor (SDK suites).")
    ] = False,
    public_url: Annotated[str | None, typer.Option(help="Origin used in results_url.")] = None,
    service_tier: Annotated[
        str,
        typer.Option(
            help="usage.service_tier of real-time answers (priority: a Priority Tier org)."
        ),
    ] = "standard",
) -> None:
    """Serve a local Messages, Message Batches and Models API (point the SDK's base_url at it)."""
    from nowait.clock import Clock, ScaledClock, SystemClock
    from nowait.emulator import EmulatorConfig, Faults, Turnaround
    from nowait.emulator.server import serve_forever

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
            cancel_latency=_seconds(cancel_latency, "--cancel-latency") or 0.0,
            rate_limits=rate_limits(rpm or [], itpm or [], otpm or []),
            faults=faults,
            contract_mode=contract,
            public_base_url=public_url,
            realtime_service_tier=service_tier,
        )
    except ValueError as exc:
        raise InputError(str(exc)) from None
    clock: Clock = SystemClock() if time_scale == 1.0 else ScaledClock(time_scale)
    check_port_free(host, port)
    typer.echo(
        f"nowait emulator on http://{host}:{port} (ANTHROPIC_BASE_URL=http://{host}:{port})",
        err=True,
    )
    serve_forever(config, clock, host, port)


def check_port_free(host: str, port: int) -> None:
    """Refuse a port another process listens on before announcing it (uvicorn would print
    its own `[Errno 98]` after our URL, and exit 3)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"port {port} is in use; pass --port") from None
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
