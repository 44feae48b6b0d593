"""`nowait run`, `nowait worker`, `nowait status`, `nowait results`: the route side."""

from __future__ import annotations

import json
import os
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from nowait.cli import PricesOption, app, stdout
from nowait.clock import SystemClock
from nowait.durations import parse_duration
from nowait.errors import ConfigError, InputError
from nowait.guard.policy import PollConfig
from nowait.present import tables as render
from nowait.present.progress import progress
from nowait.route.backend import AnthropicBackend
from nowait.route.receipts import build_receipt
from nowait.route.requests_file import scan_requests
from nowait.route.router import JsonlSink, Router, default_home, delivery_of
from nowait.route.worker import WorkerConfig
from nowait.sort.pricing import load_table
from nowait.store import BatchState, NewJob, Store
from nowait.store.sqlite import SQLiteStore
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
        return SQLiteStore((home or default_home()) / "nowait.db")
    from nowait.store.postgres import PostgresStore, mask

    if not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(
            f"--store: {mask(url)!r} is not a postgresql://… URL"
            " (leave --store out to use SQLite in --home)"
        )
    return PostgresStore(url)


def _backend(base_url: str | None) -> AnthropicBackend:
    key = os.environ.get("ANTHROPIC_API_KEY")
    token = None if key else os.environ.get("ANTHROPIC_AUTH_TOKEN")  # a bearer token
    if not key and not token:
        raise ConfigError("set ANTHROPIC_API_KEY (any value works against `nowait emulator`)")
    return AnthropicBackend(
        api_key=key, auth_token=token, base_url=base_url or os.environ.get("ANTHROPIC_BASE_URL")
    )


def _router(home: Path | None, url: str | None, base_url: str | None, poll: float) -> Router:
    config = WorkerConfig(poll=PollConfig(first=poll, longest=max(poll, 120.0)))
    backend = _backend(base_url)
    return Router(store=_store(home, url), backend=backend, clock=SystemClock(), worker=config)


@app.command("run")
def run_command(
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
    skip_bad: Annotated[
        bool,
        typer.Option(
            "--skip-bad",
            help="Run the good lines of a file with bad ones, listing the refused (default:"
            " refuse the whole file).",
        ),
    ] = False,
) -> None:
    """Route every request of a file, wait for all results, write them, print the receipt."""
    try:
        default = parse_duration(deadline) if deadline else None
    except ValueError:
        raise InputError(
            f"not a duration: {deadline!r}", field="--deadline", expected="e.g. 6h"
        ) from None
    router = _router(home, store, base_url, poll)
    with closing(router.store):
        # every line checked before any is queued
        jobs, refused = _prepare_all(router, requests, default, skip_bad)
        router.submit_many(jobs)
        total = router.pending() + router.store.undelivered_count()
        with JsonlSink(out) as sink, progress("results", total=total) as bar:
            router.run(sink, on_progress=bar.advance)
        usage = router.store.usage_rows(router.run_id)
    stdout().print(render.receipt_table(build_receipt(usage, load_table(prices))))
    typer.echo(f"{len(jobs):,} results in {out}", err=True)
    if refused:
        typer.echo(f"{len(refused):,} bad lines refused (not run):", err=True)
        for error in refused:
            typer.echo(f"  {error}", err=True)


def _prepare_all(
    router: Router, requests: Path, default: timedelta | None, skip_bad: bool = False
) -> tuple[list[NewJob], list[InputError]]:
    """Route every line. A line the router refuses, or a key used twice, is an error naming
    the file, line and field: with `skip_bad` it is returned with the others, else the
    first is raised (naming how many more) and nothing is queued."""
    jobs, refused, lines = list[NewJob](), list[InputError](), dict[str, int]()
    for r in scan_requests(requests, router.clock.now(), default):
        if isinstance(r, InputError):
            refused.append(r)
            continue
        key = r.key or f"{requests.name}:{r.line}"
        if key in lines:
            refused.append(InputError(
                f"{key!r} is also the key of line {lines[key]}",
                file=requests, line=r.line, field="key", expected="one line per key",
            ))  # fmt: skip
            continue
        lines[key] = r.line
        try:
            job = router.prepare(
                r.params, key=key, workload=r.workload, deadline=r.deadline, awaited=r.awaited
            )
        except InputError as exc:
            refused.append(InputError(
                exc.reason, file=requests, line=r.line, field=exc.field, expected=exc.expected
            ))  # fmt: skip
            continue
        jobs.append(job)
    if refused and not skip_bad:
        raise _refusal(refused)
    return jobs, refused


def _refusal(refused: list[InputError]) -> InputError:
    """The first bad line's error, naming the others' lines: the whole file is refused."""
    first = refused[0]
    others = [str(e.line) for e in refused[1:]]
    more = f"; {len(others)} more bad lines: {', '.join(others[:20])}" if others else ""
    more += ", ..." if len(others) > 20 else ""
    expected = f" (expected {first.expected})" if first.expected else ""
    return InputError(
        f"{first.reason}{expected}{more}. Nothing was queued: fix the file, or pass --skip-bad"
        " to run the good lines",
        file=first.file, line=first.line, field=first.field,
    )  # fmt: skip


@app.command("worker")
def worker_command(
    base_url: BaseUrl = None, home: Home = None, store: StoreUrl = None, poll: Poll = 10.0
) -> None:
    """Work the store's queue forever (Ctrl-C to stop; safe to kill at any moment)."""
    router = _router(home, store, base_url, poll)
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
        waiting = [b for b in store.batches(BatchState.PLANNED) if b.waiting_for]
        usage = store.usage_rows()
    receipt = build_receipt(usage, load_table(prices))
    if json_out:
        waits = [
            {"batch": b.id, "requests": b.request_count, "waiting_for": list(b.waiting_for)}
            for b in waiting
        ]
        status = {"jobs": jobs, "batches": batches, "waiting": waits}
        typer.echo(json.dumps({**status, "receipt": render.receipt_json(receipt)}, indent=2))
        return
    typer.echo("jobs:    " + (", ".join(f"{k} {v:,}" for k, v in sorted(jobs.items())) or "none"))
    typer.echo("batches: " + (", ".join(f"{k} {v:,}" for k, v in batches.items() if v) or "none"))
    for b in waiting:
        typer.echo(
            f"waiting: planned batch {b.id} ({b.request_count:,} requests) may already be"
            f" {', '.join(b.waiting_for)}: not sent again until that ends and its results"
            " show whose it is"
        )
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
