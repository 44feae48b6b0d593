"""Durable state of the route side: jobs (one per request) and batches.

`Store` is the one protocol, implemented once by `nowait.store.core.CoreStore` over a thin
dialect per database: `SQLiteStore` the embedded default, `PostgresStore`
(`nowait.store.postgres`, needs `nowait[postgres]`) the server one. Every method is one
transaction, so a crash between two calls leaves a state the worker can reconcile. Moves of
a job's state are checked by `nowait.types.transition` and guarded in SQL by the states they
leave, generated from `nowait.types.TRANSITIONS`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from nowait.errors import ConfigError, StoreError
from nowait.ratelimits import Limit, RateLimits
from nowait.types import JobState, OutcomeKind, Route, Tier, Usage


class StoreBusyError(StoreError):
    """Another nowait process is working on this store."""

    exit_code = 2  # a setup problem the user fixes, like a bad option


class NoSuchJob(StoreError):
    """An operation named a job id the store does not hold."""


class BatchState(StrEnum):
    PLANNED = "planned"  # intent recorded; the create call may or may not have happened
    CREATED = "created"  # the API acknowledged it; its id is stored
    ENDED = "ended"  # the API says it ended; results not yet collected
    COLLECTED = "collected"  # every line applied to its job: final
    ABANDONED = "abandoned"  # never reached the API; its jobs went back to the queue: final
    LOST = "lost"  # the API no longer knows it; unanswered jobs re-queued or failed: final


@dataclass(frozen=True)
class NewJob:
    key: str
    params_json: str
    model: str
    route: Route
    reasons: str
    workload: str | None = None
    deadline: datetime | None = None
    awaited: bool = False
    run_id: str | None = None


@dataclass(frozen=True, slots=True)  # slots: a planning pass may hold 100,000 at once
class Job:
    id: int
    key: str
    workload: str | None
    params_json: str
    model: str
    route: Route
    reasons: str
    deadline: datetime | None
    awaited: bool
    state: JobState
    attempts: int
    not_before: datetime
    batch_ref: int | None
    custom_id: str | None
    tier: Tier | None
    usage: Usage | None
    result_json: str | None
    error: str | None
    run_id: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Finished:
    """What delivering a finished job needs (`Store.undelivered_results`): a `Job` without
    its request, attempts and usage."""

    id: int
    key: str
    workload: str | None
    route: Route
    awaited: bool
    deadline: datetime | None
    tier: Tier | None
    result_json: str | None
    error: str | None
    created_at: datetime


@dataclass(frozen=True)
class BatchRecord:
    id: int
    api_id: str | None
    state: BatchState
    request_count: int
    body_bytes: int
    model: str
    planned_at: datetime
    submit_started_at: datetime | None
    """When the latest create call was about to start; None: never sent."""
    created_at: datetime | None
    ended_at: datetime | None
    next_poll_at: datetime | None
    poll_interval: float
    cancel_requested: bool
    waiting_for: tuple[str, ...] = ()
    """API batches that may be this plan's create but cannot be told apart yet (in progress):
    reconciliation waits for them to end before it adopts one or sends the plan again."""


@dataclass(frozen=True)
class Outcome:
    """What one attempt of a job came to."""

    custom_id: str | None  # batch lines: the line's custom_id; real-time: None
    kind: OutcomeKind
    result_json: str | None = None
    usage: Usage | None = None
    tier: Tier | None = None
    error: str | None = None
    not_before: datetime | None = None
    job_id: int | None = None
    """Batch lines: the job the custom_id names, when the worker read it there; the line
    then finds its job by id (and still only if the job's custom_id is the line's)."""


OUTCOME_STATE = {
    "succeeded": JobState.SUCCEEDED,
    "failed": JobState.FAILED,
    "retry": JobState.QUEUED,
}
"""Where an `Outcome` of each kind leaves a job."""


def new_namespace() -> str:
    """A fresh store namespace: 16 hex digits (64 random bits), safe inside a custom_id."""
    return secrets.token_hex(8)


def gave_up(reason: str, max_attempts: int) -> str:
    """A job's error once it failed for good; no count when none was allowed (quarantine)."""
    return f"{reason} (gave up after {max_attempts} attempts)" if max_attempts else reason


@dataclass(frozen=True)
class UsageRow:
    workload: str | None
    model: str
    tier: Tier
    usage: Usage
    requests: int


@dataclass(frozen=True)
class DeadlineRow:
    """How one finished job with a deadline did: when its result came (a real-time call's
    end, or its batch's `ended`; None: unknown), and whether the deadline guard moved it
    to real time."""

    deadline: datetime
    finished_at: datetime | None
    fell_back: bool


@dataclass(frozen=True)
class ObservedLimits:
    """The latest rate limits the API stated for a model class, and when."""

    model_class: str
    """`claude-sonnet-…` → "sonnet" (the API pools limits per family); "*": a response
    about no model (a batch list)."""
    limits: RateLimits
    seen_at: datetime


LIMIT_KINDS = ("requests", "input_tokens", "output_tokens")
LIMIT_COLUMNS = tuple(
    f"{k}_{part}" for k in LIMIT_KINDS for part in ("limit", "remaining", "reset")
)
"""The columns of the `rate_limits` table after `model_class`, in order."""
KEEP_UNSTATED = ", ".join(
    f"{c} = CASE WHEN excluded.{k}_limit IS NULL THEN rate_limits.{c} ELSE excluded.{c} END"
    for k in LIMIT_KINDS
    for c in (f"{k}_limit", f"{k}_remaining", f"{k}_reset")
)
"""The SET of the `rate_limits` upsert (SQL both stores speak): a limit the response did not
state keeps the value kept before."""


def limit_values(limits: RateLimits) -> tuple[int | datetime | None, ...]:
    """`limits` as values of `LIMIT_COLUMNS`."""
    out: list[int | datetime | None] = []
    for kind in LIMIT_KINDS:
        one = getattr(limits, kind)
        out += (one.limit, one.remaining, one.reset) if one else (None, None, None)
    return tuple(out)


def limits_of(values: Sequence[Any]) -> RateLimits:
    """The inverse of `limit_values` (resets as datetimes)."""
    found = [
        Limit(int(values[i]), values[i + 1], values[i + 2]) if values[i] is not None else None
        for i in range(0, len(LIMIT_COLUMNS), 3)
    ]
    return RateLimits(*found)


class Store(Protocol):
    """Everything the router and worker persist. Implementations pass `tests/store`."""

    def close(self) -> None: ...

    @property
    def namespace(self) -> str:
        """This store's random id, made once when it is created: every custom_id it sends
        carries it, so stores sharing an API account never take each other's batches."""
        ...

    # jobs
    def claim(self) -> AbstractContextManager[None]:
        """Hold the store for one worker while the block runs; `StoreBusyError` when another
        process holds it (two workers would race each other's crash recovery)."""
        ...

    def add_job(self, job: NewJob, now: datetime) -> tuple[Job, bool]:
        """Insert a job, or return the existing one with this key; the flag says if it is new.
        An existing job joins `job.run_id`, so the run's receipt covers every key it submitted."""
        ...

    def add_jobs(self, jobs: Sequence[NewJob], now: datetime) -> int:
        """Insert many jobs in one transaction; existing keys only join `run_id`. Returns new."""
        ...

    def get_job(self, key: str) -> Job | None: ...

    def due_jobs(self, route: Route, now: datetime, limit: int) -> list[Job]:
        """Queued jobs of `route` due by `now`: awaited first (someone is waiting), then by
        deadline, earliest first, then those without one, in arrival order."""
        ...

    def start_realtime(self, job_id: int, now: datetime) -> bool:
        """queued → running; False when another worker took it."""
        ...

    def finish_realtime(self, job_id: int, outcome: Outcome, now: datetime) -> None: ...

    def release_realtime(self, job_id: int, now: datetime) -> None:
        """running → queued, the attempt uncounted: the call never reached a model."""
        ...

    def requeue_running(self, now: datetime) -> int:
        """After a crash: real-time calls that never reported back go back to the queue."""
        ...

    def reroute(self, job_ids: Sequence[int], route: Route, reason: str, now: datetime) -> int:
        """Queued jobs change route (the deadline guard's fallback)."""
        ...

    def undelivered(self, limit: int, run_id: str | None = None) -> list[Job]:
        """Finished jobs not yet delivered (of one run, when given), oldest first."""
        ...

    def undelivered_results(self, limit: int, run_id: str | None = None) -> list[Finished]:
        """`undelivered`, only what a delivery needs (the delivery loop's read)."""
        ...

    def undelivered_count(self, run_id: str | None = None) -> int: ...

    def mark_delivered(self, job_id: int, now: datetime) -> None: ...

    def mark_delivered_many(self, job_ids: Sequence[int], now: datetime) -> None:
        """Several acknowledgements in one transaction."""
        ...

    def jobs(
        self, *, run_id: str | None = None, state: JobState | None = None
    ) -> Iterator[Job]: ...

    def job_counts(self, run_id: str | None = None) -> dict[JobState, int]: ...

    def usage_rows(self, run_id: str | None = None) -> list[UsageRow]: ...

    # batches
    def plan_batch(
        self, members: Sequence[tuple[int, str]], body_bytes: int, model: str, now: datetime
    ) -> BatchRecord:
        """Record the intent: a planned batch and its jobs (id, custom_id) → submitting."""
        ...

    def submit_started(self, batch_id: int, now: datetime) -> None:
        """Committed just before each create call: from then on the API may hold the batch."""
        ...

    def batch_created(
        self, batch_id: int, api_id: str, created_at: datetime, next_poll_at: datetime
    ) -> None:
        """planned → created; `StoreError` if the batch was not planned."""
        ...

    def abandon_batch(self, batch_id: int, now: datetime) -> int: ...

    def wait_for(self, batch_id: int, api_ids: Sequence[str]) -> None:
        """Record the API batches a planned batch waits on (none: it waits no more)."""
        ...

    def batches(self, *states: BatchState) -> list[BatchRecord]: ...

    def batch_members(self, batch_id: int) -> Iterator[tuple[str, str]]:
        """(custom_id, params_json) of the jobs planned into a batch."""
        ...

    def batch_custom_ids(self, batch_id: int) -> Iterator[str]:
        """The custom_ids of the jobs planned into a batch, in pages, without their params."""
        ...

    def schedule_poll(self, batch_id: int, next_poll_at: datetime, interval: float) -> None: ...

    def request_cancel(self, batch_id: int, now: datetime | None = None) -> None:
        """The deadline guard sent the batch's cancel at `now` (kept from the first call):
        `cancel_history` learns cancel latency from it."""
        ...

    def batch_ended(self, batch_id: int, ended_at: datetime) -> None: ...

    def apply_batch_outcomes(
        self,
        batch_id: int,
        outcomes: Sequence[Outcome],
        now: datetime,
        *,
        deliver: Callable[[Sequence[Finished]], None] | None = None,
        run_id: str | None = None,
    ) -> int:
        """Apply result lines, by custom_id, to jobs still waiting in a batch; returns how many.
        A custom_id names one attempt of one job, so a line lands on its job whichever batch
        row is being collected (a stray batch included), and never twice.

        `deliver`: in the same transaction, every finished result (of `run_id`, if given; the
        lines just applied and any earlier) is handed to it, a page at a time, and marked
        delivered once it returns; if it raises, nothing is applied. A crash before the commit
        leaves the lines unapplied, to be collected again: `deliver` must then skip the keys
        it already holds, as a sink must after a crash between its flush and its mark."""
        ...

    def batch_history(self, limit: int = 5000) -> list[tuple[str, int, datetime, datetime]]:
        """(model, requests, created_at, ended_at) of the newest batches that ran to the end
        uncancelled: what the turnaround forecast learns from."""
        ...

    def cached_prefixes(self, since: datetime) -> list[tuple[str, int, datetime]]:
        """(params_json, prompt tokens read from or written to a 1-hour cache entry, the
        batch's ended_at) of the batch jobs that read or wrote one, in batches that ended at or
        after `since`: the prefixes cache planning knows warm after a restart."""
        ...

    def cancel_history(self, limit: int = 1000) -> list[float]:
        """Seconds from each cancel sent to its batch's `ended`, newest batches first: what
        the guard learns cancel latency from (`nowait.guard.latency`)."""
        ...

    def call_history(self, limit: int = 5000) -> list[tuple[str, int, float]]:
        """(model, output tokens, seconds) of the newest real-time calls that succeeded: what
        the guard learns call duration from."""
        ...

    def deadline_rows(self, run_id: str | None = None) -> list[DeadlineRow]:
        """Every finished job with a deadline (of one run, when given): the receipt's
        fallbacks and missed deadlines."""
        ...

    def batch_work(self, batch_id: int) -> tuple[datetime | None, int, int, int]:
        """(earliest deadline, requests, input tokens, output tokens at most) still in a batch,
        or planned for one (a plan the guard may have to give up)."""
        ...

    # rate limits
    def record_rate_limits(self, model_class: str, limits: RateLimits, now: datetime) -> None:
        """Keep the limits a response stated for `model_class`, seen at `now`: each limit
        the response stated replaces the one kept; one it did not state keeps its value."""
        ...

    def observed_limits(self) -> list[ObservedLimits]:
        """The latest limits kept per model class, by class name."""
        ...

    def close_batch(
        self, batch_id: int, retry_at: datetime, now: datetime, max_attempts: int
    ) -> int:
        """Batch → collected; jobs it never answered go back to the queue, or fail once they
        used `max_attempts` (returns how many went back)."""
        ...

    def lose_batch(
        self, batch_id: int, reason: str, retry_at: datetime, now: datetime, max_attempts: int
    ) -> int:
        """Batch → lost (the API refuses to show it); its unanswered jobs as in `close_batch`
        (`max_attempts=0`: all of them fail, with `reason` as their error)."""
        ...

    # fleet: many workers on one store (PostgreSQL, `nowait.store.fleet`). One process owns a
    # SQLite store (`claim`), so there these hold trivially: it holds every lease and claim.
    @property
    def fleet(self) -> bool:
        """Whether several worker processes may work this store at once."""
        ...

    def join_fleet(self, worker: str, now: datetime, lease: float) -> bool:
        """Register `worker` with a lease of `lease` seconds (again after a restart: what it
        held before is its own again); False when a live process works under that name."""
        ...

    def heartbeat(self, worker: str, now: datetime, lease: float) -> bool:
        """Renew the lease; False when it expired and another worker reaped it."""
        ...

    def leave_fleet(self, worker: str, now: datetime) -> None:
        """A clean stop: what `worker` held is free at once."""
        ...

    def reap(self, now: datetime, restarted: str | None = None) -> tuple[int, int]:
        """Free what workers whose lease expired held: their running jobs go back to the
        queue, their batches and deliveries to whoever takes them. `restarted`: a worker
        starting (again), whose own running calls never reported back, and calls no live
        worker owns (on SQLite: every running call, as `requeue_running`). Returns (jobs
        re-queued, batches freed)."""
        ...

    def claim_realtime(
        self, worker: str, now: datetime, limit: int, only: int | None = None
    ) -> list[Job]:
        """Due real-time jobs (the order of `due_jobs`), queued → running for `worker`, the
        attempt counted; a job another worker is claiming is skipped, never taken twice.
        `only`: that one queued job, due or not (an awaited call run at once)."""
        ...

    def plan_lock(self) -> AbstractContextManager[bool]:
        """Try to hold the planning lock while the block runs (True: held): two workers never
        pack one job into two batches. Never waits: a worker that gets False plans later."""
        ...

    def own_batch(self, batch_id: int, worker: str) -> bool:
        """Take a batch (one just planned) unless another worker holds it."""
        ...

    def take_batches(self, worker: str, limit: int) -> set[int]:
        """Take up to `limit` open batches nobody holds; returns every open batch `worker`
        holds (submit, poll and collect work those only)."""
        ...

    def claim_deliveries(self, worker: str, limit: int, run_id: str | None = None) -> list[Job]:
        """Finished results for `worker` to deliver (as `undelivered`): those it claimed
        before first, then free ones; a result is claimed by one worker at a time."""
        ...

    def start_delivery(
        self,
        job_ids: Sequence[int],
        worker: str,
        margin: float,
        now: datetime,
        *,
        in_doubt: bool = True,
    ) -> bool:
        """The fence before `worker`'s sink sees `job_ids`: True when it still holds them all
        with at least `margin` seconds of its lease left (by `now`). `in_doubt` (a sink that
        keeps what it is given and skips keys it holds, as `JsonlSink`): they are in doubt
        until marked delivered; should it die while writing, they wait for it to start again
        (its sink tells what it holds) or for `forget_worker`, never for another worker's
        reap. False: it writes none of them (it is being reaped)."""
        ...

    def forget_worker(self, worker: str, now: datetime) -> list[str] | None:
        """`worker` is gone for good, its sink with it: what it held goes to the others,
        the results it left in doubt too (their keys returned: its sink may hold them).
        None when it is alive."""
        ...

    def in_doubt(self) -> list[tuple[str, int, datetime]]:
        """(worker, results it left in doubt, since when), for workers that have any."""
        ...

    def deliver_claimed(self, job_ids: Sequence[int], worker: str, now: datetime) -> int:
        """Mark delivered the results `worker` still holds; returns how many (none: it was
        reaped, another worker delivers them)."""
        ...

    def take_budget(
        self,
        model_class: str,
        sizes: tuple[float, float, float],
        wants: tuple[float, float, float],
        now: datetime,
    ) -> float:
        """Take one call's share (requests, input and output tokens) of the account's
        real-time budget shared by the fleet; 0.0 when taken, else the seconds to wait."""
        ...

    def adjust_budget(
        self,
        model_class: str,
        sizes: tuple[float, float, float],
        charges: tuple[float, float, float],
        now: datetime,
    ) -> None:
        """Charge the shared budget after the fact (negative: give back)."""
        ...

    def lower_budget(
        self,
        model_class: str,
        sizes: tuple[float, float, float],
        levels: tuple[float | None, float | None, float | None],
        now: datetime,
    ) -> None:
        """Lower the shared budget to what the API says remains."""
        ...

    def pause_budget(self, model_class: str, until: datetime) -> None:
        """No call of the class starts, in any worker, before `until`."""
        ...


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def open_store(target: str | Path) -> Store:
    """The store at `target`: a `postgresql://…` URL (needs `nowait[postgres]`), or the path of
    a SQLite database file (a folder means `nowait.db` inside it). Created if missing."""
    text = str(target)
    if text.startswith(POSTGRES_SCHEMES):
        from nowait.store.postgres import PostgresStore

        return PostgresStore(text)
    if "://" in text:
        from nowait.store.postgres import mask

        raise ConfigError(
            f"store {mask(text)!r}: expected a postgresql://… URL or the path of a SQLite file"
        )
    from nowait.store.sqlite import SQLiteStore

    path = Path(text).expanduser()
    return SQLiteStore(path / "nowait.db" if path.is_dir() else path)
