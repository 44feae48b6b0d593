"""`nowait run`, `nowait worker`, `nowait status`, `nowait results`: the route side."""

from __future__ import annotations

import json
import os
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from nowait.cli import Injected, PricesOption, app, stdout
from nowait.clock import SystemClock
from nowait.durations import parse_duration
from nowait.errors import ConfigError, InputError
from nowait.guard.policy import PollConfig
from nowait.present import tables as render
from nowait.present.progress import progress
from nowait.route.backend import AnthropicBackend
from nowait.route.receipts import build_receipt
from nowait.route.requests_file import read_requests
from nowait.route.router import JsonlSink, Router, default_home, delivery_of
from nowait.route.worker import WorkerConfig, no_checkpoint
from nowait.sort.pricing import load_table
from nowait.store import POSTGRES_SCHEMES, BatchState, NewJob, Store, open_store
from nowait.types import JobState

BaseUrl = Annotated[
    str | None, typer.Option("--base-url", help="API base URL (default: $ANTHROPIC_BASE_URL).")
]
Home = Annotated[
    Path | None, typer.Option("--home", help="Data directory (default: $NOWAIT_HOME).")
]
Poll = Annotated[float, typer.Option("--poll", help="Seconds between batch polls at first.")]
StoreUrl = Annotated[
    str | None,
    typer.Option(
        "--store",
        envvar="NOWAIT_STORE",
        help="A postgresql://… URL to keep state in PostgreSQL (default: SQLite in --home; env NOWAIT_STORE).",
        show_default=False,
    ),
]


def _store(home: Path | None, url: str | None = None) -> Store:
    """Where state lives: PostgreSQL for a postgresql:// URL, else `nowait.db` in the home."""
    if not url:
        return open_store((home or default_home()) / "nowait.db")
    if not url.startswith(POSTGRES_SCHEMES):
        from nowait.store.postgres import mask

        raise ConfigError(
            f"--store: {mask(url)!r} is not a postgresql://… URL"
            " (leave --store out to use SQLite in --home)"
        )
    return open_store(url)


def _backend(base_url: str | None) -> AnthropicBackend:
    key = os.environ.get("ANTHROPIC_API_KEY")
    token = None if key else os.environ.get("ANTHROPIC_AUTH_TOKEN")  # a bearer token
    if not key and not token:
        raise ConfigError("set ANTHROPIC_API_KEY (any value works against `nowait emulator`)")
    return AnthropicBackend(
        api_key=key, auth_token=token, base_url=base_url or os.environ.get("ANTHROPIC_BASE_URL")
    )


def _router(
    ctx: typer.Context, home: Path | None, url: str | None, base_url: str | None, poll: float
) -> Router:
    config = WorkerConfig(poll=PollConfig(first=poll, longest=max(poll, 120.0)))
    backend = _backend(base_url)
    hooks = ctx.obj if isinstance(ctx.obj, Injected) else Injected()
    return Router(
        store=_store(home, url),
        backend=backend,
        clock=SystemClock(),
        worker=config,
        checkpoint=hooks.checkpoint or no_checkpoint,
    )


@app.command("run")
def run_command(
    ctx: typer.Context,
    requests: Annotated[
        Path, typer.Argument(help="JSONL: key, params, deadline, awaited, workload.")
    ],
    deadline: Annotated[
        str | None, typer.Option(help="Deadline for lines without one, e.g. 6h.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Where results go, one JSON line each.")] = Path(
        "results.jsonl"
    ),
    base_url: BaseUrl = None,
    home: Home = None,
    store: StoreUrl = None,
    poll: Poll = 10.0,
    prices: PricesOption = None,
) -> None:
    """Route every request of a file, wait for all results, write them, print the receipt."""
    try:
        default = parse_duration(deadline) if deadline else None
    except ValueError:
        raise InputError(
            f"not a duration: {deadline!r}", field="--deadline", expected="e.g. 6h"
        ) from None
    router = _router(ctx, home, store, base_url, poll)
    with closing(router.store):
        jobs = _prepare_all(router, requests, default)  # every line checked before any is queued
        router.submit_many(jobs)
        total = router.pending() + router.store.undelivered_count()
        with JsonlSink(out) as sink, progress("results", total=total) as bar:
            router.run(sink, on_progress=bar.advance)
        usage = router.store.usage_rows(router.run_id)
    stdout().print(render.receipt_table(build_receipt(usage, load_table(prices))))
    typer.echo(f"{len(jobs):,} results in {out}", err=True)


def _prepare_all(router: Router, requests: Path, default: timedelta | None) -> list[NewJob]:
    """Route every line; a line the router refuses, or a key used twice, is an error naming
    the file and line(s)."""
    jobs, lines = list[NewJob](), dict[str, int]()
    for r in read_requests(requests, router.clock.now(), default):
        key = r.key or f"{requests.name}:{r.line}"
        if key in lines:
            raise InputError(
                f"{key!r} is also the key of line {lines[key]}",
                file=requests, line=r.line, field="key", expected="one line per key",
            )  # fmt: skip
        lines[key] = r.line
        try:
            job = router.prepare(
                r.params, key=key, workload=r.workload, deadline=r.deadline, awaited=r.awaited
            )
        except InputError as exc:
            raise InputError(
                exc.reason, file=requests, line=r.line, field=exc.field, expected=exc.expected
            ) from None
        jobs.append(job)
    return jobs


@app.command("worker")
def worker_command(
    ctx: typer.Context,
    base_url: BaseUrl = None,
    home: Home = None,
    store: StoreUrl = None,
    poll: Poll = 10.0,
) -> None:
    """Work the store's queue forever (Ctrl-C to stop; safe to kill at any moment)."""
    router = _router(ctx, home, store, base_url, poll)
    with closing(router.store):
        router.run(forever=True)


@app.command("status")
def status_command(
    home: Home = None,
    store_url: StoreUrl = None,
    prices: PricesOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Jobs and batches by state, and the money so far."""
    with closing(_store(home, store_url)) as store:
        jobs = {state.value: n for state, n in store.job_counts().items()}
        batches = {s.value: len(store.batches(s)) for s in BatchState}
        usage = store.usage_rows()
    receipt = build_receipt(usage, load_table(prices))
    if json_out:
        typer.echo(
            json.dumps(
                {"jobs": jobs, "batches": batches, "receipt": render.receipt_json(receipt)},
                indent=2,
            )
        )
        return
    typer.echo("jobs:    " + (", ".join(f"{k} {v:,}" for k, v in sorted(jobs.items())) or "none"))
    typer.echo("batches: " + (", ".join(f"{k} {v:,}" for k, v in batches.items() if v) or "none"))
    stdout().print(render.receipt_table(receipt))


@app.command("results")
def results_command(
    home: Home = None,
    store_url: StoreUrl = None,
    key: Annotated[str | None, typer.Option(help="Only this request.")] = None,
) -> None:
    """Print finished results as JSON lines (delivered or not; delivery state unchanged)."""
    with closing(_store(home, store_url)) as store:
        _print_results(store, key)


def _print_results(store: Store, key: str | None) -> None:
    if key is not None:
        job = store.get_job(key)
        if job is None:
            raise InputError(f"no request with key {key!r}", field="--key")
        typer.echo(
            delivery_of(job).to_json_line()
            if job.state.value in ("succeeded", "failed", "delivered")
            else json.dumps({"key": key, "state": job.state.value})
        )
        return
    for state in ("succeeded", "failed", "delivered"):
        for job in store.jobs(state=JobState(state)):
            typer.echo(delivery_of(job).to_json_line())
