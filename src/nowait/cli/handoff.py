"""`nowait submit` and `nowait collect`: hand a file over now, pick its results up later.

A cron job, an Airflow sensor or a CI step submits and goes away; a `nowait worker` on the same
store (or `collect --wait`) does the work; `collect` polls without holding a process: it writes
what has finished, each key once, and exits 0 when the run is complete, 75 when not yet.
"""

from __future__ import annotations

import json
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from nowait.cli import app
from nowait.cli.options import ConfigFile, Home, LogFormat, LogLevel, StoreUrl, load
from nowait.cli.router import (
    BaseUrl,
    _check_all,
    _router,
    _run_showing_progress,
    _write_delivered_before,
    counting_failures,
    parse_deadline,
)
from nowait.errors import InputError
from nowait.files import check_output_file

if TYPE_CHECKING:
    from nowait.route.router import Router

NOT_YET = 75
"""EX_TEMPFAIL (sysexits.h): the run is not complete yet; try again later."""


@app.command("submit")
def submit_command(
    ctx: typer.Context,
    requests: Annotated[
        Path, typer.Argument(help="JSONL: key, params, deadline, awaited, workload.")
    ],
    deadline: Annotated[
        str | None, typer.Option(help="Deadline for lines without one, e.g. 6h.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    base_url: BaseUrl = None,
    config: ConfigFile = None,
    home: Home = None,
    store: StoreUrl = None,
    log_level: LogLevel = None,
    log_format: LogFormat = None,
) -> None:
    """Queue every request of a file under a new run id, print the id, return at once.

    Every line is checked first: one bad line and nothing is queued (exit 2). The work happens
    in `nowait worker` on the same store, or in `nowait collect RUN --wait`.
    """
    default = parse_deadline(deadline)
    flags: dict[str, object] = {
        "home": home,
        "store": store,
        "log_level": log_level,
        "log_format": log_format,
    }
    settings = load(config, flags)
    checked, _ = _check_all(requests, default)  # before the store is opened
    router = _router(ctx, settings, base_url, default_level="WARNING", calls_api=False)
    with closing(router):
        jobs = list(router.route_many(checked))
        router.submit_many(jobs)
    if json_out:
        typer.echo(json.dumps({"run": router.run_id, "requests": len(jobs)}))
    else:
        typer.echo(router.run_id)
        typer.echo(f"{len(jobs):,} requests queued (run {router.run_id})", err=True)


@app.command("collect")
def collect_command(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="The run id `nowait submit` printed.")],
    out: Annotated[Path, typer.Option(help="Where results go, one JSON line each.")] = Path(
        "results.jsonl"
    ),
    wait: Annotated[
        bool, typer.Option("--wait", help="Do the work here and return when the run is done.")
    ] = False,
    base_url: BaseUrl = None,
    config: ConfigFile = None,
    home: Home = None,
    store: StoreUrl = None,
    log_level: LogLevel = None,
    log_format: LogFormat = None,
) -> None:
    """Write the run's finished results to --out, each key once, however often it is called.

    Exit codes: 0 the run is complete (every result in --out); 1 complete, but some requests
    failed (their lines have "ok": false); 75 not complete yet (call again later); 2 bad input,
    settings, or no such run.
    """
    flags: dict[str, object] = {
        "home": home,
        "store": store,
        "log_level": log_level,
        "log_format": log_format,
    }
    settings = load(config, flags)
    check_output_file(out, "--out")
    router = _router(ctx, settings, base_url, default_level="WARNING", calls_api=wait, out=out)
    router.run_id = run
    with closing(router):
        if not router.store.job_counts(run):
            raise InputError(f"no run with id {run!r} in this store", field="RUN")
        failures = _run_showing_progress(router, out) if wait else _write_finished(router, out)
        pending = _pending(router)
    _report(run, out, pending, failures)


def _write_finished(router: Router, out: Path) -> Counter[str]:
    """Write what has finished to `out`, each key once (earlier deliveries of the run too);
    returns the failures by kind."""
    from nowait.route.router import JsonlSink

    failures = Counter[str]()
    with JsonlSink(out) as file:
        sink = counting_failures(file, failures)
        _write_delivered_before(router, sink)
        router.deliver(sink, run_id=router.run_id)
    return failures


def _pending(router: Router) -> int:
    """Requests of the run without a result in the file yet: unfinished or undelivered."""
    return router.pending(router.run_id) + router.store.undelivered_count(router.run_id)


def _report(run: str, out: Path, pending: int, failures: Counter[str]) -> None:
    if pending:
        typer.echo(f"run {run}: {pending:,} requests not finished yet; results so far in {out}",
                   err=True)  # fmt: skip
        raise typer.Exit(NOT_YET)
    typer.echo(f"run {run} complete: results in {out}", err=True)
    if failures:
        kinds = ", ".join(f"{kind} {n:,}" for kind, n in failures.most_common())
        typer.echo(f"nowait: {failures.total():,} requests failed ({kinds})", err=True)
        raise typer.Exit(1)
