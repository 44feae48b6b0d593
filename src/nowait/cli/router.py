"""`nowait run`, `nowait worker`, `nowait status`, `nowait results`: the route side."""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import replace
from datetime import UTC, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from nowait.cli import Injected, PricesOption, app, stdout
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
from nowait.durations import parse_duration
from nowait.errors import ConfigError, InputError
from nowait.files import check_existing_dir, check_output_dir, check_output_file
from nowait.reading import check_input_file

# The route side (the SDK, the store) loads inside the commands: `nowait --help` lists these
# commands without importing it.
if TYPE_CHECKING:
    from nowait.guard.capacity import CapacityInUse
    from nowait.route.router import CheckedRequest, Delivery, JsonlSink, Router
    from nowait.settings import Settings
    from nowait.sort.pricing import PriceTable
    from nowait.store import DeadlineRow, Store, UsageRow

BaseUrl = Annotated[
    str | None, typer.Option("--base-url", help="API base URL (default: $ANTHROPIC_BASE_URL).")
]
log = logging.getLogger(__name__)
DB_NAME = "nowait.db"


def _store(settings: Settings, *, read_only: bool = False) -> Store:
    """Where state lives: PostgreSQL for a postgresql:// URL, else `nowait.db` in the home.
    `read_only` (status, results): a missing home or store is an error, never created."""
    from nowait.route.router import default_home
    from nowait.store import POSTGRES_SCHEMES, open_store

    url = settings.store
    if not url:
        home = settings.home or default_home()
        field = settings.source("home").where or "--home"
        if not read_only:
            check_output_dir(home, field)
        else:
            check_existing_dir(home, field, "nowait home")
            if not (home / DB_NAME).is_file():
                raise InputError(f"no nowait store in {home}", field=field, expected=DB_NAME)
        return open_store(home / DB_NAME)
    if not url.startswith(POSTGRES_SCHEMES):
        from nowait.store.postgres import mask

        source = settings.source("store")  # --store, NOWAIT_STORE or the file
        raise ConfigError(
            f"{source.where or 'store'}: {mask(url)!r} is not a postgresql://… URL"
            " (leave it out to use SQLite in the home)"
        )
    return open_store(url)


def _credentials(required: bool = True) -> tuple[str | None, str | None]:
    """The API key, else a bearer token, from the environment the SDK also reads."""
    key = os.environ.get("ANTHROPIC_API_KEY")
    token = None if key else os.environ.get("ANTHROPIC_AUTH_TOKEN")
    if required and not key and not token:
        raise ConfigError("set ANTHROPIC_API_KEY (any value works against `nowait emulator`)")
    return key, token


def _router(
    ctx: typer.Context,
    settings: Settings,
    base_url: str | None,
    default_level: str,
    calls_api: bool = True,
    worker_id: str | None = None,
    lease: float | None = None,
    out: Path | None = None,
) -> Router:
    """The router for these settings, with logging set up first (the key kept out of it), and
    the checkpoint hook a test injected through `main` (none in production). `calls_api`
    False: a command that only reads and writes the store needs no API key. `out`: the
    results file; with no `worker_id`, the worker is named after it (`sink_worker_name`)."""
    from nowait.clock import SystemClock
    from nowait.logs import configure_logging
    from nowait.route.backend import AnthropicBackend
    from nowait.route.router import Router
    from nowait.route.worker import WorkerConfig, no_checkpoint

    key, token = _credentials(required=calls_api)
    level = settings.log_level or default_level
    configure_logging(level, settings.log_format, secrets=[s for s in (key, token) if s])
    backend = AnthropicBackend(
        api_key=key, auth_token=token, base_url=base_url or os.environ.get("ANTHROPIC_BASE_URL")
    )
    config = WorkerConfig.from_settings(settings)
    if worker_id is None and out is not None:
        worker_id = sink_worker_name(out)
    if worker_id is not None:
        config = replace(config, worker_id=worker_id)
    if lease is not None:
        config = replace(config, lease=lease)
    hooks = ctx.obj if isinstance(ctx.obj, Injected) else Injected()
    return Router(
        store=_store(settings),
        backend=backend,
        clock=SystemClock(),
        worker=config,
        checkpoint=hooks.checkpoint or no_checkpoint,
    )


def _route_flags(
    home: Path | None,
    store: str | None,
    poll: str | None,
    capacity: dict[str, object],
    guard: dict[str, object],
    log_level: str | None,
    log_format: str | None,
    cache: str | None,
) -> dict[str, object]:
    return {
        "home": home, "store": store, "poll.first": poll, **capacity, **guard,
        "log_level": log_level, "log_format": log_format, "cache": cache,
    }  # fmt: skip


@app.command("run")
def run_command(
    ctx: typer.Context,
    requests: Annotated[
        Path,
        typer.Argument(metavar="REQUESTS", help="JSONL: key, params, deadline, awaited, workload."),
    ],
    deadline: Annotated[
        str | None, typer.Option(help="Deadline for lines without one, e.g. 6h.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Where results go, one JSON line each.")] = Path(
        "results.jsonl"
    ),
    base_url: BaseUrl = None,
    config: ConfigFile = None,
    home: Home = None,
    store: StoreUrl = None,
    poll: Poll = None,
    cache: CacheOption = None,
    prices: PricesOption = None,
    rpm: Rpm = None,
    itpm: Itpm = None,
    otpm: Otpm = None,
    concurrency: Concurrency = None,
    margin: Margin = None,
    cancel_latency: CancelLatency = None,
    min_batch_chance: MinBatchChance = None,
    log_level: LogLevel = None,
    log_format: LogFormat = None,
    skip_bad: Annotated[
        bool,
        typer.Option(
            "--skip-bad",
            help="Run the good lines of a file with bad ones, listing the refused (default:"
            " refuse the whole file).",
        ),
    ] = False,
) -> None:
    """Route every request of a file, wait for all results, write them, print the receipt.

    What to expect: against the real API most batches end within an hour (at most 24 h), so a
    run with batched work usually waits minutes to an hour; against `nowait emulator
    --time-scale 60` seconds. Awaited work and tight deadlines go real time at once. While it
    waits it shows each batch (state, age, forecast end, fallback moment). --out receives
    exactly the keys of REQUESTS, each once.

    Exit codes: 0 every request succeeded; 1 some ended failed, invalid or expired (the last
    line says how many; their lines in --out have "ok": false); 2 bad input, settings or usage
    (nothing queued); 130 interrupted (safe: run again to carry on).
    """
    default = parse_deadline(deadline)
    capacity = capacity_flags(rpm, itpm, otpm, concurrency)
    guard = guard_flags(margin, cancel_latency, min_batch_chance)
    flags = _route_flags(home, store, poll, capacity, guard, log_level, log_format, cache)
    settings = load(config, {**flags, "prices": prices})
    check_input_file(requests)  # before the store is opened
    check_output_file(out, "--out")  # before anything is queued: results need somewhere to go
    from nowait.sort.pricing import load_table

    table = load_table(settings.prices)  # a bad price file stops the run before it starts
    # every line checked before the store is opened: a bad file touches no store
    checked, refused = _check_all(requests, default, skip_bad)
    router = _router(ctx, settings, base_url, default_level="WARNING", out=out)  # a clean display
    run_id = router.run_id
    with closing(router), router.claim():  # a refused second run leaves no trace
        jobs = list(router.route_many(checked))
        log.info(
            "run %s: routing %d requests from %s", run_id, len(jobs), requests.name,
            extra={"requests": len(jobs), "home": str(settings.home)},
        )  # fmt: skip
        router.submit_many(jobs)
        failures = _run_showing_progress(router, out)
        usage = router.store.usage_rows(run_id)
        deadlines = router.store.deadline_rows(run_id)
    _print_receipt(usage, deadlines, table)
    typer.echo(f"{len(jobs):,} results in {out} (run {run_id})", err=True)
    if refused:
        typer.echo(f"{len(refused):,} bad lines refused (not run):", err=True)
        for error in refused:
            typer.echo(f"  {error}", err=True)
    if failures:
        kinds = ", ".join(f"{kind} {n:,}" for kind, n in failures.most_common())
        typer.echo(
            f"nowait: {failures.total():,} of {len(jobs):,} requests failed ({kinds}):"
            f' their lines in {out} have "ok": false and the error',
            err=True,
        )
    if failures or refused:
        raise typer.Exit(1)


def parse_deadline(deadline: str | None) -> timedelta | None:
    """The --deadline flag: a duration for lines without their own deadline."""
    try:
        return parse_duration(deadline) if deadline else None
    except ValueError:
        raise InputError(
            f"not a duration: {deadline!r}", field="--deadline", expected="e.g. 6h"
        ) from None


def _run_showing_progress(router: Router, out: Path) -> Counter[str]:
    """Run until this run's jobs are done, writing results to `out` and showing the batches
    waited on; returns the failures by kind (every key passes the sink once: no store scan)."""
    from nowait.present.run_progress import run_display
    from nowait.route.router import JsonlSink
    from nowait.route.watch import watch

    run_id = router.run_id
    total = router.pending(run_id) + router.store.undelivered_count(run_id)
    failures, delivered = Counter[str](), 0
    with JsonlSink(out) as file, run_display() as display:
        sink = counting_failures(file, failures)

        def delivered_more(n: int) -> None:
            nonlocal delivered
            delivered += n

        shown = 0.0

        def show(busy: bool = False) -> None:
            """Read the store for the display: after the last pass before a wait always (the
            state the run waits in), during a burst of passes at most twice a second (the
            live display redraws between them on its own)."""
            nonlocal shown
            if not busy or time.monotonic() - shown >= 0.5:
                display.update(watch(router, delivered, total, run_id))
                shown = time.monotonic()

        _write_delivered_before(router, sink)  # before the run: only earlier deliveries
        file.flush()
        show()
        router.run(sink, on_progress=delivered_more, on_pass=show, only_this_run=True)
        show()
    return failures


def counting_failures(
    sink: Callable[[Delivery], None], failures: Counter[str]
) -> Callable[[Delivery], None]:
    """`sink`, counting each failed delivery in `failures` by kind as it passes."""

    def counted(delivery: Delivery) -> None:
        if not delivery.ok:
            failures[_failure_kind(delivery.error or "")] += 1
        sink(delivery)

    return counted


def _write_delivered_before(router: Router, sink: Callable[[Delivery], None]) -> None:
    """Keys of this file that an earlier, interrupted run already delivered elsewhere: this
    run's file gets them too (the sink skips keys it holds), so it has every key of its input.
    Called before the run, when the run's delivered jobs are exactly those."""
    from nowait.route.router import delivery_of
    from nowait.types import JobState

    for job in router.store.jobs(run_id=router.run_id, state=JobState.DELIVERED):
        sink(delivery_of(job))


def _print_receipt(usage: list[UsageRow], deadlines: list[DeadlineRow], table: PriceTable) -> None:
    from nowait.present import tables as render
    from nowait.route.receipts import build_receipt

    receipt = build_receipt(usage, table, deadlines)
    stdout().print(render.receipt_table(receipt))


def _failure_kind(error: str) -> str:
    """A word for why a request failed, read off its error text."""
    if error.startswith("internal:"):
        return "internal"
    for word, kind in (("invalid_request", "invalid"), ("expired", "expired"),
                       ("canceled", "canceled"), ("refused", "invalid")):  # fmt: skip
        if word in error:
            return kind
    return "errored"


def _check_all(
    requests: Path, default: timedelta | None, skip_bad: bool = False
) -> tuple[list[CheckedRequest], list[InputError]]:
    """Check every line, without a store. A line the door refuses, or a key used twice, is
    an error naming the file, line and field: with `skip_bad` it is returned with the others,
    else the first is raised (naming how many more) and nothing is queued."""
    from nowait.clock import SystemClock
    from nowait.route.requests_file import scan_requests
    from nowait.route.router import check_request

    checked: list[CheckedRequest] = []
    refused, lines = list[InputError](), dict[str, int]()
    for r in scan_requests(requests, SystemClock().now(), default):
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
            request = check_request(
                r.params, key=key, workload=r.workload, deadline=r.deadline, awaited=r.awaited
            )
        except InputError as exc:
            refused.append(InputError(
                exc.reason, file=requests, line=r.line, field=exc.field, expected=exc.expected
            ))  # fmt: skip
            continue
        checked.append(request)
    if refused and not skip_bad:
        raise _refusal(refused)
    if not checked and not refused:  # not an all-zero receipt for a file of nothing
        raise InputError("0 requests in the file", file=requests, expected="one request a line")
    return checked, refused


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
    ctx: typer.Context,
    base_url: BaseUrl = None,
    config: ConfigFile = None,
    home: Home = None,
    store: StoreUrl = None,
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
    worker_id: Annotated[
        str | None,
        typer.Option(
            "--worker-id",
            envvar="NOWAIT_WORKER_ID",
            help="This worker's name among the workers of one PostgreSQL store (default: its"
            " host and --out file, else host:pid); started again under its name, it takes"
            " back what it held.",
            show_default=False,
        ),
    ] = None,
    lease: Annotated[
        float | None,
        typer.Option(
            "--lease",
            min=1.0,
            help="Seconds a hung worker's jobs and batches wait before other workers of a"
            " PostgreSQL store take them over (default 30; a killed worker's: at once).",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Append every result of the store to this JSONL file, each key once (with"
            " several workers: each result goes to one worker's file).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Work the store's queue forever (Ctrl-C to stop; safe to kill at any moment). With a
    postgresql://… store, run as many workers as you like, on any hosts."""
    capacity = capacity_flags(rpm, itpm, otpm, concurrency)
    guard = guard_flags(margin, cancel_latency, min_batch_chance)
    flags = _route_flags(home, store, poll, capacity, guard, log_level, log_format, cache)
    settings = load(config, flags)
    if out is not None:
        check_output_file(out, "--out")
    router = _router(
        ctx, settings, base_url, default_level="INFO", worker_id=worker_id, lease=lease, out=out
    )
    with closing(router), _sink(out) as sink:
        log.info(
            "worker started: store %s; settings from %s", _store_name(settings),
            settings.config_file or "flags, environment and defaults (no nowait.toml)",
            extra={"home": str(settings.home)},
        )  # fmt: skip
        try:
            router.run(sink, forever=True, on_pass=_heartbeat(router.store))
        except KeyboardInterrupt:
            log.info("worker stopped (interrupted): every job is safe in the store")
            raise


@app.command("forget-worker")
def forget_worker_command(
    worker_id: Annotated[str, typer.Argument(help="The --worker-id of the worker gone for good.")],
    config: ConfigFile = None,
    home: Home = None,
    store_url: StoreUrl = None,
) -> None:
    """Hand what a worker of a PostgreSQL store held to the other workers, the results it
    left in doubt too (it died writing them to its --out file): for a worker that will not
    start again. Prints those results' keys: its file may hold them already."""
    from nowait.clock import SystemClock

    settings = load(config, {"home": home, "store": store_url})
    with closing(_store(settings)) as store:
        if not store.fleet:
            raise InputError(
                "forget-worker works on a postgresql://… store (a SQLite store has one worker)",
                field="--store",
            )
        keys = store.forget_worker(worker_id, SystemClock().now())
    if keys is None:
        raise InputError(
            f"worker {worker_id!r} is running (its session holds its lock): stop it first",
            field="WORKER_ID",
        )
    typer.echo(
        f"forgot worker {worker_id}: {len(keys):,} results it left in doubt go to the other"
        " workers" + (" (its --out file may already hold these keys):" if keys else ".")
    )
    for key in keys:
        typer.echo(key)


def sink_worker_name(out: Path) -> str:
    """A worker's name when it has none: its host and results file. Started again with the
    same file it is the same worker, so it finishes what it was writing there when it died
    (only that file can tell which results it holds); and no two live workers share a file
    (`JsonlSink` locks it), so none share a name."""
    import socket

    return f"{socket.gethostname()}:{out.resolve()}"


@contextmanager
def _sink(out: Path | None) -> Iterator[JsonlSink | None]:
    """The worker's `--out` file, if any."""
    if out is None:
        yield None
        return
    from nowait.route.router import JsonlSink

    with JsonlSink(out) as sink:
        yield sink


def _store_name(settings: Settings) -> str:
    """The store in words, its password masked."""
    from nowait.route.router import default_home
    from nowait.store.postgres import mask

    if settings.store:
        return mask(settings.store)
    return str((settings.home or default_home()) / DB_NAME)


def _heartbeat(store: Store, every: float = 60.0) -> Callable[[bool], None]:
    """A pass hook logging, at most once a minute, what the worker holds: an idle worker
    still says it is alive."""
    import time

    last = time.monotonic()

    def beat(busy: bool) -> None:
        nonlocal last
        if time.monotonic() - last < every:
            return
        last = time.monotonic()
        counts = store.job_counts()
        jobs = ", ".join(f"{s.value} {n:,}" for s, n in sorted(counts.items()) if n)
        log.info("alive: jobs %s", jobs or "none")

    return beat


@app.command("status")
def status_command(
    config: ConfigFile = None,
    home: Home = None,
    store_url: StoreUrl = None,
    prices: PricesOption = None,
    rpm: Rpm = None,
    itpm: Itpm = None,
    otpm: Otpm = None,
    concurrency: Concurrency = None,
    margin: Margin = None,
    cancel_latency: CancelLatency = None,
    min_batch_chance: MinBatchChance = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Jobs and batches by state, the real-time capacity in use, the deadline guard's plan for
    each open batch, and the money so far."""
    from nowait.clock import SystemClock
    from nowait.guard.capacity import capacity_status
    from nowait.present import tables as render
    from nowait.route.receipts import build_receipt
    from nowait.route.worker import WorkerConfig, guard_plans
    from nowait.sort.pricing import load_table
    from nowait.store import BatchState

    settings = load(
        config,
        {
            "home": home, "store": store_url, "prices": prices,
            **capacity_flags(rpm, itpm, otpm, concurrency),
            **guard_flags(margin, cancel_latency, min_batch_chance),
        },
    )  # fmt: skip
    now = SystemClock().now()
    with closing(_store(settings, read_only=True)) as store:
        jobs = {state.value: n for state, n in store.job_counts().items()}
        batches = {s.value: len(store.batches(s)) for s in BatchState}
        waiting = [b for b in store.batches(BatchState.PLANNED) if b.waiting_for]
        plans = guard_plans(store, WorkerConfig.from_settings(settings), now)
        usage = store.usage_rows()
        deadlines = store.deadline_rows()
        capacity = capacity_status(store.observed_limits(), settings, now)
        doubt = store.in_doubt()
    receipt = build_receipt(usage, load_table(settings.prices), deadlines)
    if json_out:
        waits = [
            {"batch": b.id, "requests": b.request_count, "waiting_for": list(b.waiting_for)}
            for b in waiting
        ]
        status = {
            "jobs": jobs, "batches": batches, "waiting": waits,
            "capacity": [_capacity_json(c) for c in capacity],
            "in_doubt": [
                {"worker": w, "results": n, "since": since.astimezone(UTC).isoformat()}
                for w, n, since in doubt
            ],
        }  # fmt: skip
        guard = [render.plan_json(batch, plan, now) for batch, plan in plans]
        receipt_json = render.receipt_json(receipt)
        typer.echo(json.dumps({**status, "guard": guard, "receipt": receipt_json}, indent=2))
        return
    typer.echo("jobs:    " + (", ".join(f"{k} {v:,}" for k, v in sorted(jobs.items())) or "none"))
    typer.echo("batches: " + (", ".join(f"{k} {v:,}" for k, v in batches.items() if v) or "none"))
    typer.echo("capacity: " + "; ".join(_capacity_text(c) for c in capacity))
    for b in waiting:
        typer.echo(
            f"waiting: planned batch {b.id} ({b.request_count:,} requests) may already be"
            f" {', '.join(b.waiting_for)}: not sent again until that ends and its results"
            " show whose it is"
        )
    for worker, n, since in doubt:
        typer.echo(
            f"in doubt: {n:,} results worker {worker} was writing to its sink when it stopped"
            f" ({since.astimezone(UTC):%Y-%m-%d %H:%M} UTC): start it again with the same"
            f" --worker-id and --out, or `nowait forget-worker {worker}` if it is gone for good"
        )
    for batch, plan in plans:
        typer.echo(render.plan_text(batch, plan, now))
    stdout().print(render.receipt_table(receipt))


def _capacity_text(entry: CapacityInUse) -> str:
    """'sonnet: 50 requests, 40,000 input and 8,000 output tokens a minute, 8 at once
    (headers at 12:03)'."""
    c = entry.capacity
    cls = f"{entry.model_class}: " if entry.model_class else ""
    return (
        f"{cls}{c.requests_per_minute:,.0f} requests, {c.input_tokens_per_minute:,.0f} input and"
        f" {c.output_tokens_per_minute:,.0f} output tokens a minute, {c.concurrency:,} at once"
        f" ({entry.source})"
    )


def _capacity_json(entry: CapacityInUse) -> dict[str, object]:
    c = entry.capacity
    return {
        "model_class": entry.model_class,
        "requests_per_minute": c.requests_per_minute,
        "input_tokens_per_minute": c.input_tokens_per_minute,
        "output_tokens_per_minute": c.output_tokens_per_minute,
        "concurrency": c.concurrency,
        "source": entry.source,
    }


@app.command("results")
def results_command(
    config: ConfigFile = None,
    home: Home = None,
    store_url: StoreUrl = None,
    key: Annotated[str | None, typer.Option(help="Only this request.")] = None,
    run: Annotated[
        str | None,
        typer.Option(
            "--run", help="Only the requests of this run (its id is printed by nowait run)."
        ),
    ] = None,
) -> None:
    """Print finished results as JSON lines (delivered or not; delivery state unchanged)."""
    settings = load(config, {"home": home, "store": store_url})
    with closing(_store(settings, read_only=True)) as store:
        _print_results(store, key, run)


def _print_results(store: Store, key: str | None, run_id: str | None = None) -> None:
    from nowait.route.router import delivery_of
    from nowait.types import JobState

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
    found = 0
    for state in ("succeeded", "failed", "delivered"):
        for job in store.jobs(state=JobState(state), run_id=run_id):
            typer.echo(delivery_of(job).to_json_line())
            found += 1
    if run_id is not None and not found and not store.job_counts(run_id):
        raise InputError(f"no run with id {run_id!r} in this store", field="--run")
