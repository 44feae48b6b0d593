"""The worker: one pass of `run_once()` moves every job as far as it can go.

Steps, each safe to interrupt at any instruction:
  realtime   run due real-time jobs, bounded concurrency
  pack       plan batches from due batch jobs (intent stored before any API call)
  submit     create planned batches at the API, store their ids
  poll       retrieve batches in flight, with backoff
  collect    stream the results of ended batches into the store
`recover()` runs once at start-up: real-time calls that never reported back are queued
again. A planned batch whose create call may have happened (a crash, or a timeout or 5xx
that may have created it anyway) is matched to the batch the API already has before it is
ever sent again (`_reconcile`).

Quarantine: an unexpected exception while working one job or one batch (a bug, a row no
longer valid) fails that job, or that batch's requests, with an `internal: ...` error and lets
every other job go on; a failed job is final, so a restart never meets the same crash again.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import re
import socket
import sys
import threading
from collections import Counter
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal, get_args

import orjson

from nowait.clock import Clock
from nowait.errors import (
    BackendError,
    PermanentBackendError,
    RetryableBackendError,
    StoreError,
)
from nowait.guard.capacity import (
    ANY_MODEL,
    CapacityInUse,
    capacity_in_use,
    model_class,
    observed_for,
    user_capacity,
)
from nowait.guard.forecast import PRIOR, BatchSample, Forecast, fit
from nowait.guard.latency import CallSample, Latencies, learn
from nowait.guard.plan import FallbackPlan, plan_fallback
from nowait.guard.policy import (
    RATE_LIMIT_STATUSES,
    WAIT_HORIZON,
    Capacity,
    GuardConfig,
    PollConfig,
    RetryConfig,
    WorkLeft,
    deadline_class,
    fallback_among,
    line_verdict,
    next_poll,
    retry_at,
    wait_retry_at,
    worth_batching,
)
from nowait.guard.turnaround import Turnaround
from nowait.limits import BATCH_MAX_BYTES, BATCH_MAX_REQUESTS
from nowait.ratelimits import RateLimits
from nowait.route import custom_ids
from nowait.route.backend import AuthError, Backend, BatchInfo, ResultLine
from nowait.route.pacing import Pacer, Reservation, SharedPacer
from nowait.route.packing import ENVELOPE_BYTES, Member, pack
from nowait.route.params import prompt_tokens_estimate
from nowait.route.priming import Priming, can_wait
from nowait.sort.pricing import PriceTable, default_table
from nowait.store import (
    OUTCOME_STATE,
    BatchRecord,
    BatchState,
    Finished,
    Job,
    ObservedLimits,
    Outcome,
    Store,
    StoreBusyError,
)
from nowait.types import JobState, Route, Tier

if TYPE_CHECKING:
    from nowait.settings import CacheMode, CacheSizing, Settings

log = logging.getLogger(__name__)

CheckpointName = Literal[
    "realtime_answered",  # a real-time answer arrived, not yet stored
    "batch_planned",  # a batch plan is committed; no create call yet
    "submit_started",  # the create call is about to start (it may or may not happen)
    "batch_created",  # the API holds the batch; its id is not stored yet
    "batch_ended",  # the batch's end is stored; no result collected yet
    "result_line",  # a result line was read, not yet applied
    "results_chunk_applied",  # a chunk of result lines is committed
    "result_written",  # the sink took a result that is not acknowledged yet
]
CHECKPOINTS: tuple[CheckpointName, ...] = get_args(CheckpointName)
"""The named moments between a side effect and the record of it, in the order a job meets them."""

Checkpoint = Callable[[CheckpointName], None]
"""Called with the name of each checkpoint the worker and router pass: tests install one to
stop the process there (`nowait.testing.crash_at`) or to watch the order of steps."""

FATAL = (AuthError, StoreError)
"""Failures of the setup, not of one job: they stop the worker and leave every job in place."""


PRIMER_QUANTILE = 0.95
"""The share of one-request batches a held job's wait for its primer is planned to cover."""

PRIMER_BATCH_MAX = 1_000
"""Open batches up to this size are read after a restart as possible primers."""

HELD_RECHECK = timedelta(minutes=5)
"""While jobs wait for a primer whose batch is still open, the queue is read again this often
(and at once when that batch ends), not every pass: held jobs are not read back for nothing.
Work queued meanwhile waits as long at most, short beside a batch's turnaround."""

TAKE_BATCHES = 8
"""Open batches nobody holds (a reaped worker's) one worker takes a pass, at most."""

FLEET_IDLE = 1.0
"""Seconds a worker on a fleet store waits at most between passes: other processes queue
work in the store (`nowait submit`, other runs), and its batches may change owner."""

JOIN_PATIENCE = 10.0
"""Seconds a worker started under its name waits for that name's last session to end (its
killed predecessor's, which the server ends a moment after the connection drops)."""

REALTIME_PER_SLOT = 10
"""Real-time jobs one call slot runs a pass, at most: the pass's other steps run between."""

PACED_WAIT = 0.5
"""Seconds a fleet worker's call slot waits out the worker's own pause after a 529 (its
`retry-after`), the wait counted as one of its turns; a longer one, or a wait on the
shared budget, ends its turns for the pass. Ending them at every 529 left the slots idle
for the rest of the pass: with 2% 529s, most passes of 40 calls meet one."""

CACHE_WINDOW = 10_000
"""Due jobs cache planning groups at once, at least (`Worker.plan_batches`)."""


class _NotTheBatch(Exception):
    """What failed while a batch was collected that is not the batch's fault (delivering its
    results): raised on as it is, never quarantining the batch."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def no_checkpoint(name: CheckpointName) -> None:
    """The default checkpoint: nothing happens."""


@dataclass(frozen=True)
class ChunkDelivery:
    """How the router delivers a batch's results as they are collected, when its sink can
    flush (one process owning the store): `deliver` writes a page of results and flushes
    them; each page is marked delivered in the transaction that applied its lines, so each
    job's row is written once for both. A crash before that commit leaves the lines to be
    collected again, and the sink skips the keys it holds."""

    deliver: Callable[[Sequence[Finished]], None]
    run_id: str | None = None
    """Deliver only this run's results (`Router.run(only_this_run=True)`)."""


@dataclass(frozen=True)
class WorkerConfig:
    max_batch_requests: int = BATCH_MAX_REQUESTS
    max_batch_bytes: int = BATCH_MAX_BYTES
    retry: RetryConfig = field(default_factory=RetryConfig)
    poll: PollConfig = field(default_factory=PollConfig)
    apply_chunk: int = 1000
    """Result lines applied per transaction while collecting: what is held in memory, here
    and in the store's staged rows (5,000: +28 MiB peak collecting 50,000 results on SQLite;
    1,000 costs a little CPU, the same index pages written to the log at more commits)."""
    clock_skew: float = 5.0
    """Seconds the API's clock may lag ours: an API batch created up to this long before a
    create call started can still be that call's."""
    capacity: Capacity = field(default_factory=Capacity)
    """The account's real-time capacity per model as set (defaults where unset). The limits
    the API states in its headers replace the rate fields the user did not set, and lower
    those they did (`guard.capacity`); fallback timing plans with the result and the pacer
    runs at it, `capacity.concurrency` calls at once, so plan and practice agree."""
    capacity_set: frozenset[str] = frozenset()
    """The fields of `capacity` the user set (the rest are defaults the headers replace)."""
    guard: GuardConfig = field(default_factory=GuardConfig)
    prior: Turnaround = PRIOR
    cache: CacheMode = "auto"
    """Cache planning of batches (`nowait.route.priming`)."""
    cache_sizing: CacheSizing = "estimate"
    """How cache planning sizes shared prefixes: the estimate, or the API's `count_tokens`."""
    prices: PriceTable | None = None
    """What cache planning weighs a write against reads with (None: the bundled table)."""
    worker_id: str | None = None
    """This worker's name among the workers sharing a store (None: host:pid). A worker
    started again under its own name takes back what it held (its undelivered results go
    to its own sink first)."""
    lease: float = 30.0
    """Seconds what a worker holds outlives its last heartbeat (renewed every third of
    it): then the other workers sharing the store take its jobs and batches over."""

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkerConfig:
        """The worker `nowait run` and `nowait worker` run with these settings."""
        return cls(
            retry=RetryConfig.from_settings(settings),
            poll=PollConfig.from_settings(settings),
            capacity=Capacity.from_settings(settings),
            capacity_set=user_capacity(settings),
            guard=GuardConfig.from_settings(settings),
            cache=settings.cache,
            cache_sizing=settings.cache_sizing,
        )


@dataclass
class PassReport:
    realtime: int = 0
    planned: int = 0
    submitted: int = 0
    polled: int = 0
    collected: int = 0
    fallbacks: int = 0

    @property
    def busy(self) -> bool:
        return any((self.realtime, self.planned, self.submitted, self.collected, self.fallbacks))


class Worker:
    def __init__(
        self,
        store: Store,
        backend: Backend,
        clock: Clock,
        config: WorkerConfig | None = None,
        *,
        checkpoint: Checkpoint = no_checkpoint,
    ) -> None:
        self.store = store
        self.backend = backend
        self.clock = clock
        self.config = config or WorkerConfig()
        self.checkpoint = checkpoint
        self.on_batch_planned: Callable[[BatchRecord], None] | None = None
        self.on_results_applied: Callable[[], None] | None = None
        """Called after each chunk of result lines is committed while a batch is collected:
        the router delivers them there, while the rest of the results file streams in."""
        self.chunk_delivery: ChunkDelivery | None = None
        """Set: each chunk's results are delivered in the transaction that applies them
        (`Store.apply_batch_outcomes`'s `deliver`)."""
        self._status: dict[int, str] = {}
        """The API status each batch had at its last poll, to log changes only."""
        self._latencies: Latencies | None = None
        self.owner = self.config.worker_id or f"{socket.gethostname()}:{os.getpid()}"
        """This worker's name in the store's fleet (`Store.fleet`): it owns claims by it."""
        self.fleet = store.fleet
        self.pacer: Pacer | SharedPacer = SharedPacer(store, clock) if self.fleet else Pacer()
        self._owned: set[int] = set()
        """The open batches this worker holds (a fleet store), taken again each pass."""
        self._lease_lost = threading.Event()
        self._reaped_at: datetime | None = None
        self._observed: dict[str, ObservedLimits] | None = None
        """The store's latest rate limits by model class, read once a pass."""
        self._lock = threading.Lock()
        self._wake: datetime | None = None
        """The earliest moment a paced or retried real-time job can start."""
        self.priming = Priming(
            self.config.cache,
            self.config.prices or default_table(),
            count=backend.count_tokens if self.config.cache_sizing == "count_tokens" else None,
            history=store.cached_prefixes,
            open_members=self._open_members,
        )
        self._forecast: Forecast | None = None
        self._held_until: datetime | None = None
        """Until when `plan_batches` skips the queue while held jobs wait for a primer."""

    @property
    def latencies(self) -> Latencies:
        """Cancel latency and call duration learned from this store's history (the settings
        until there is enough); learned again after each cancelled batch is collected."""
        if self._latencies is None:
            self._latencies = learned_latencies(self.store, self.config)
        return self._latencies

    @property
    def forecast(self) -> Forecast:
        """The batch turnaround forecast cache planning holds jobs with, learned from the
        store's finished batches (again after `relearn`)."""
        if self._forecast is None:
            history = (BatchSample(*row) for row in self.store.batch_history())
            self._forecast = fit(history, self.config.prior)
        return self._forecast

    def relearn(self) -> None:
        """Forget the learned latencies and forecast: the next plan learns them from the store
        again."""
        self._latencies = None
        self._forecast = None

    # ---- start-up ---------------------------------------------------------------------------
    def recover(self) -> None:
        """Real-time calls that never reported back go back to the queue (on a fleet store:
        this worker's and those of workers whose lease expired). Planned batches are
        reconciled by the first `submit_planned`, where an API error is just a retry."""
        if self.fleet:
            requeued, _ = self.store.reap(self.clock.now(), restarted=self.owner)
        else:
            requeued = self.store.requeue_running(self.clock.now())
        if requeued:
            log.info("recover: running→queued: %s (calls never reported back)", n_jobs(requeued))

    # ---- the fleet: many workers on one store -----------------------------------------------
    def _join(self) -> None:
        """Join under this worker's name. Started again at once after a kill, the server may
        not have ended the killed process's session yet (its lock still held): wait for it,
        up to the lease; a name still taken then is another live worker's."""
        patience = min(self.config.lease, JOIN_PATIENCE)
        started = self.clock.monotonic()
        while not self.store.join_fleet(self.owner, self.clock.now(), self.config.lease):
            if self.clock.monotonic() - started >= patience:
                raise StoreBusyError(
                    f"another live worker on this store is named {self.owner!r}: give each"
                    " worker its own --worker-id"
                )
            self.clock.sleep(0.2)

    @contextmanager
    def membership(self) -> Iterator[None]:
        """Join the store's fleet for the block: a lease a heartbeat thread renews; on a clean
        exit what this worker holds is free at once, after a crash once the lease expires."""
        self._join()
        self._lease_lost.clear()
        stop = threading.Event()
        beat = threading.Thread(
            target=self._beat, args=(stop,), name="nowait-heartbeat", daemon=True
        )
        beat.start()
        log.info("worker %s joined the store's fleet (lease %gs)", self.owner, self.config.lease)
        try:
            yield
        finally:
            stop.set()
            beat.join()
            with suppress(StoreError):  # the connection is gone: the lease expires instead
                self.store.leave_fleet(self.owner, self.clock.now())

    def _beat(self, stop: threading.Event) -> None:
        """Renew the lease every third of it until `stop`; a lost lease stops the worker at
        its next pass (`_fleet_pass`). Waits in real seconds: leases are real time to the
        other workers."""
        while not stop.wait(self.config.lease / 3):
            try:
                renewed = self.store.heartbeat(self.owner, self.clock.now(), self.config.lease)
            except StoreError:
                renewed = False
            if not renewed:
                self._lease_lost.set()
                return

    def _fleet_pass(self) -> None:
        """Before each pass on a fleet store: stop if this worker's lease was lost; free what
        expired workers held; take the open batches nobody holds."""
        if self._lease_lost.is_set():
            raise StoreError(
                f"worker {self.owner} lost its lease on the store (no heartbeat for"
                f" {self.config.lease:g}s): other workers took its jobs over; start it again"
            )
        now = self.clock.now()
        if self._reaped_at is None or now - self._reaped_at >= timedelta(seconds=FLEET_IDLE):
            self._reaped_at = now  # reaping reads pg_locks: once a second is soon enough
            requeued, freed = self.store.reap(now)
        else:
            requeued = freed = 0
        if requeued or freed:
            log.warning("reaped workers whose lease expired: running→queued: %s, %d batches"
                        " taken over", n_jobs(requeued), freed)  # fmt: skip
        self._owned = self.store.take_batches(self.owner, TAKE_BATCHES)

    def _batches(self, *states: BatchState) -> list[BatchRecord]:
        """The batches in `states` this worker works: all of them, or on a fleet store those
        it holds (one owner submits, polls and collects a batch)."""
        found = self.store.batches(*states)
        return [b for b in found if b.id in self._owned] if self.fleet else found

    # ---- reconciliation ---------------------------------------------------------------------
    def _reconcile(self, planned: list[BatchRecord]) -> set[int]:
        """Match each planned batch whose create call started (`submit_started_at`) to the
        API batch it became, if any. Returns the ids of plans that must wait: an API batch
        could be theirs but cannot be told apart yet (recorded in the store, for `status`).
        The rest with no candidate were never created and are sent (again), same custom_ids.

        The API keeps no client metadata, so a candidate is an unknown API batch with the
        plan's request count, created after the call started. Other stores and tools share
        the account, so a count is never proof: a candidate is adopted only once it ended and
        its first result line carries this store's namespace and one of the plan's custom_ids.
        """
        started = [b for b in planned if b.submit_started_at is not None]
        if not started:
            return set()
        candidates = self._candidates(started)
        owners = {
            cid: plan
            for plan in started
            for cid in self.store.batch_custom_ids(plan.id)
            if self._namespaced(cid)
        }
        for remote in {r.id: r for rs in candidates.values() for r in rs}.values():
            if remote.status == "ended":
                self._identify(remote, owners, candidates)
        waiting = set()
        for plan in started:
            fits = candidates.get(plan.id, [])
            mine = [r for r in fits if r.status == "ended"]  # identified: `_identify` kept it
            if mine:
                self._adopt(plan, mine[0])
            elif fits:  # in progress: its results, and so its custom_ids, come when it ends
                waiting.add(plan.id)
                self.store.wait_for(plan.id, [r.id for r in fits])
            elif plan.waiting_for:
                self.store.wait_for(plan.id, [])
        return waiting

    def _namespaced(self, custom_id: str) -> bool:
        return self._own_job(custom_id) is not None

    def _own_job(self, custom_id: str) -> int | None:
        """The job a custom_id of this store's namespace names (None: not one)."""
        return custom_ids.job_in(custom_id, self.store.namespace)

    def _candidates(self, started: list[BatchRecord]) -> dict[int, list[BatchInfo]]:
        skew = timedelta(seconds=self.config.clock_skew)
        oldest = min(b.submit_started_at or b.planned_at for b in started) - skew
        known = {b.api_id for b in self.store.batches(*BatchState) if b.api_id}
        remote: list[BatchInfo] = []
        for index, info in enumerate(self.backend.list_batches()):  # newest first: page back
            if index == 0:  # the limits of the list's first page
                self.observe(ANY_MODEL, info.limits)
            if info.created_at < oldest:
                break
            if info.id not in known:
                remote.append(info)
        return {
            plan.id: [
                r
                for r in remote
                if r.request_total == plan.request_count
                and r.created_at >= (plan.submit_started_at or plan.planned_at) - skew
            ]
            for plan in started
        }

    def _identify(
        self,
        remote: BatchInfo,
        owners: dict[str, BatchRecord],
        candidates: dict[int, list[BatchInfo]],
    ) -> None:
        """An ended batch's first result line names its plan: keep it there, or drop it
        from every plan when the line is not one of ours (another store's or tool's batch)."""
        lines = iter(self.backend.batch_results(remote.id))
        try:
            first = next(lines, None)
        except PermanentBackendError:
            first = None  # results gone (archived): months old, not a recent create of ours
        finally:
            if isinstance(lines, Generator):
                lines.close()  # one line is enough: end the streamed download now
        owner = owners.get(first.custom_id) if first else None
        if owner is None:
            log.info("API batch %s is not this store's (first custom_id %r)", remote.id,
                     first.custom_id if first else None)  # fmt: skip
        for plan_id, fits in candidates.items():
            if owner is not None and plan_id == owner.id:
                fits[:] = [remote]
            elif remote in fits:
                fits.remove(remote)

    def _adopt(self, plan: BatchRecord, remote: BatchInfo) -> None:
        poll_at = self.clock.now()  # poll at once: it may have ended long ago
        self.store.batch_created(plan.id, remote.id, remote.created_at, poll_at)
        self.store.schedule_poll(plan.id, poll_at, self.config.poll.first)
        log.info(
            "batch #%d found at the API as %s after an interrupted create; submitting→in_batch: %s",
            plan.id, remote.id, n_jobs(plan.request_count),
        )  # fmt: skip

    # ---- capacity: the limits the API states ------------------------------------------------
    def capacity_in_use(self, model: str) -> CapacityInUse:
        """The capacity the guard plans with and the pacer runs at for `model`, and its source."""
        known = self._observed  # one read: call threads may reset it meanwhile
        if known is None:
            known = self._observed = {o.model_class: o for o in self.store.observed_limits()}
        observed = observed_for(model, known)
        return capacity_in_use(
            self.config.capacity, self.config.capacity_set, observed, self.clock.now()
        )

    def observe(self, model: str, limits: RateLimits | None) -> None:
        """Keep the limits a response stated (`model`: what it was about; `ANY_MODEL`: none)."""
        if limits is None:
            return
        cls = model if model == ANY_MODEL else model_class(model)
        now = self.clock.now()
        self.store.record_rate_limits(cls, limits, now)
        with self._lock:  # merged here as the store merges it: no read back per answer
            known = self._observed
            if known is not None:
                self._observed = {**known, cls: _merged(known.get(cls), cls, limits, now)}

    # ---- one pass ---------------------------------------------------------------------------
    def run_once(self) -> PassReport:
        report = PassReport()
        self._observed = None  # other workers sharing the store may have seen newer limits
        self._wake = None
        if self.fleet:
            self._fleet_pass()
        report.fallbacks = self.guard_deadlines()
        report.realtime = self.run_realtime()
        report.planned = self.plan_batches()
        report.submitted = self.submit_planned()
        report.polled = self.poll_batches()
        report.collected = self.collect_ended()
        return report

    def run_realtime(self) -> int:
        concurrency = max(1, self.config.capacity.concurrency)
        if self.fleet:
            kinds = self._run_claimed_slots(concurrency)
        else:
            jobs = self.store.due_jobs(Route.REALTIME, self.clock.now(), 10 * concurrency)
            if not jobs:
                return 0
            with ThreadPoolExecutor(concurrency, thread_name_prefix="nowait-rt") as pool:
                kinds = Counter(kind for kind in pool.map(self._run_paced, jobs) if kind)
        if kinds:
            log.info("realtime: %s", _moves(JobState.RUNNING, kinds))
        return kinds.total()

    def _run_claimed_slots(self, concurrency: int) -> Counter[str]:
        """A fleet store's real-time step: each of `concurrency` slots claims one due job at a
        time (`Store.claim_realtime`: never one another worker holds) and runs it, until the
        queue is empty, the budget says wait, or it ran `REALTIME_PER_SLOT` jobs."""

        def slot(_: int) -> Counter[str]:
            kinds: Counter[str] = Counter()
            for _ in range(REALTIME_PER_SLOT):  # each turn a call, or a wait on a 529
                claimed = self.store.claim_realtime(self.owner, self.clock.now(), 1)
                if not claimed:
                    break
                room = self._reserve(claimed[0])
                if isinstance(room, float):  # paced: back to the queue, its attempt uncounted
                    now = self.clock.now()
                    self.store.release_realtime(claimed[0].id, now)
                    mine = self._paused_here(claimed[0].model, now)
                    if 0.0 < mine <= PACED_WAIT:
                        self.clock.sleep(mine)  # this worker's own pause: the slot goes on
                        continue
                    self._wake_at(now + timedelta(seconds=room))
                    break  # the shared budget: another worker's slot may take the room
                kind = self._run_one(claimed[0], room, claimed=True)
                if kind is not None:
                    kinds[kind] += 1
            return kinds

        with ThreadPoolExecutor(concurrency, thread_name_prefix="nowait-rt") as pool:
            return sum(pool.map(slot, range(concurrency)), Counter[str]())

    def run_now(self, key: str) -> str | None:
        """Run the real-time job `key` at once, in the caller's thread (the drop-in client's
        awaited calls, beside an external worker); the kind of its outcome, or None when it is
        not queued for real time or another worker took it first."""
        job = self.store.get_job(key)
        if job is None or job.route is not Route.REALTIME or job.state is not JobState.QUEUED:
            return None
        if self.fleet:
            claimed = self.store.claim_realtime(self.owner, self.clock.now(), 1, only=job.id)
            return self._run_paced(claimed[0], claimed=True) if claimed else None
        return self._run_paced(job)

    def _wake_at(self, moment: datetime) -> None:
        with self._lock:
            self._wake = moment if self._wake is None else min(self._wake, moment)

    def _run_paced(self, job: Job, *, claimed: bool = False) -> str | None:
        """Run one real-time job when the account's limits have room for its call now (the
        reservation is made just before the call, so it sees what earlier answers said);
        else leave it queued for the moment they will. `claimed`: the job is running already
        (`Store.claim_realtime`), its attempt counted."""
        now = self.clock.now()
        room = self._reserve(job, now)
        if isinstance(room, float):
            if claimed:  # back to the queue, the attempt uncounted: no model saw it
                self.store.release_realtime(job.id, now)
            self._wake_at(now + timedelta(seconds=room))
            return None
        return self._run_one(job, room, claimed=claimed)

    def _paused_here(self, model: str, now: datetime) -> float:
        """Seconds this fleet worker still waits on a 529 of `model`'s class (its own pause)."""
        if isinstance(self.pacer, SharedPacer):
            return self.pacer.paused_here(model_class(model), now)
        return 0.0

    def _reserve(self, job: Job, now: datetime | None = None) -> Reservation | float:
        """Room for `job`'s call in the account's limits now, or the seconds until there is."""
        now = now or self.clock.now()
        capacity = self.capacity_in_use(job.model).capacity
        return self.pacer.reserve(model_class(job.model), capacity, *_call_estimate(job), now)

    def _run_one(
        self, job: Job, reservation: Reservation | None = None, *, claimed: bool = False
    ) -> str | None:
        """Run one real-time job; returns the kind of its outcome, None if another took it."""
        if not claimed and not self.store.start_realtime(job.id, self.clock.now()):
            return None
        attempts = job.attempts if claimed else job.attempts + 1
        try:
            answer = self.backend.create_message(json.loads(job.params_json))
            self.checkpoint("realtime_answered")
            self._observed_answer(job.model, answer.limits)
            if reservation is not None:
                self.pacer.settle(reservation, answer.usage)
            outcome = Outcome(
                None, "succeeded", answer.message_json, answer.usage, Tier(answer.tier)
            )
        except AuthError:
            self.store.release_realtime(job.id, self.clock.now())  # not the request's fault
            raise
        except RetryableBackendError as exc:
            self._observed_answer(job.model, exc.limits)
            if exc.status in RATE_LIMIT_STATUSES:
                outcome = self._wait_or_fail(job, attempts, exc)
            else:
                outcome = self._retry_or_fail(attempts, str(exc), exc.retry_after)
            if outcome.not_before is not None:
                self._wake_at(outcome.not_before)
        except BackendError as exc:
            outcome = Outcome(None, "failed", error=str(exc))
        except FATAL:
            raise
        except Exception as exc:  # quarantine: this job fails, the others go on
            log.exception("job %s (%s): internal error in its real-time call", job.id, job.key)
            outcome = Outcome(None, "failed", error=internal_error(exc))
        self.store.finish_realtime(job.id, outcome, self.clock.now())
        return outcome.kind

    def _observed_answer(self, model: str, limits: RateLimits | None) -> None:
        """Keep the limits an answer stated, and lower the pacer to what it says remains."""
        if limits is None:
            return
        self.observe(model, limits)
        capacity = self.capacity_in_use(model).capacity
        self.pacer.sync(model_class(model), capacity, limits, self.clock.now())

    def _wait_or_fail(self, job: Job, attempts: int, exc: RetryableBackendError) -> Outcome:
        """A 429 or 529 is a wait: the class pauses for the API's `retry-after` and the job
        tries again, paced, while its deadline (else `WAIT_HORIZON` from its arrival) leaves
        a point to it; then it fails, saying why."""
        now = self.clock.now()
        capacity = self.capacity_in_use(job.model).capacity
        if exc.retry_after:  # a 529 is not the account's limit: on a fleet, this worker waits
            self.pacer.pause(
                model_class(job.model), capacity, exc.retry_after, now, account=exc.status == 429
            )
        give_up_at = job.deadline or job.created_at + WAIT_HORIZON
        when = wait_retry_at(attempts, now, exc.retry_after, give_up_at, self.config.retry)
        if when is not None:
            return Outcome(None, "retry", error=str(exc), not_before=when)
        what = "its deadline" if job.deadline else f"{WAIT_HORIZON} after it arrived"
        until = give_up_at.isoformat(timespec="seconds")
        error = (
            f"{exc} (still refused at {now.isoformat(timespec='seconds')}, after {attempts}"
            f" attempts: a retry would start after {what}, {until})"
        )
        return Outcome(None, "failed", error=error)

    def _retry_or_fail(self, attempts: int, error: str, retry_after: float | None) -> Outcome:
        when = retry_at(attempts, self.clock.now(), retry_after, self.config.retry)
        if when is None:
            return Outcome(None, "failed", error=f"{error} (gave up after {attempts} attempts)")
        return Outcome(None, "retry", error=error, not_before=when)

    def guard_deadlines(self) -> int:
        """Cancel each batch whose latest safe fallback moment has come: what it finished is
        collected as usual, the rest is sent again in real time (see `_collect`)."""
        now = self.clock.now()
        fallen = 0
        open_work = self.open_work()
        for batch in self._batches(BatchState.CREATED):
            if batch.cancel_requested:
                continue
            moment = self.fallback_moment(batch, open_work)
            if moment is None or now < moment:
                continue
            try:
                self.observe(batch.model, self.backend.cancel_batch(batch.api_id or "").limits)
            except RetryableBackendError as exc:
                log.warning("batch %s: cancel failed, tried again next pass: %s", batch.api_id, exc)
                continue
            except PermanentBackendError:
                pass  # it ended meanwhile: collect it as it is
            self.store.request_cancel(batch.id, now)
            log.info(
                "batch %s: in_progress→canceling: the deadline guard's latest safe moment"
                " (%s) has come",
                batch.api_id, moment.isoformat(timespec="seconds"),
            )  # fmt: skip
            self.store.schedule_poll(batch.id, now, self.config.poll.first)
            fallen += 1
        return fallen + self._guard_waiting_plans(now, open_work)

    def _guard_waiting_plans(self, now: datetime, open_work: OpenWork) -> int:
        """A plan waiting on an API batch it cannot yet tell from another store's is guarded
        like a batch: at its latest safe moment it is given up and its work runs in real
        time. (If that batch was this plan's after all, its results are never collected:
        paid twice, delivered once; a missed deadline is worse.)"""
        fallen = 0
        for plan in self._batches(BatchState.PLANNED):
            if not plan.waiting_for:
                continue
            moment = self.fallback_moment(plan, open_work)
            if moment is None or now < moment:
                continue
            members = [_job_id_of(c) for c in self.store.batch_custom_ids(plan.id)]
            self.store.wait_for(plan.id, [])
            self.store.abandon_batch(plan.id, now)
            reason = (
                "deadline guard: a batch that may be this plan's could not be told apart in"
                " time; finished in real time"
            )
            moved = self.store.reroute(members, Route.REALTIME, reason, now)
            log.warning(
                "batch plan #%d: waited on %s past its latest safe moment (%s);"
                " submitting→queued→realtime: %s",
                plan.id, ", ".join(plan.waiting_for), moment.isoformat(timespec="seconds"),
                n_jobs(moved),
            )  # fmt: skip
            fallen += 1
        return fallen

    def open_work(self) -> OpenWork:
        return open_work(self.store)

    def fallback_moment(
        self, batch: BatchRecord, open_work: OpenWork | None = None
    ) -> datetime | None:
        """The latest safe moment to cancel `batch` (`policy.fallback_among`): its own work and
        that of the model's other open batches due after that moment and no later, planned
        with the learned latencies. `open_work`: this pass's `open_work()`."""
        work = self.open_work() if open_work is None else open_work
        mine = work.get(batch.id)
        if mine is None:
            return None
        model, deadline, left = mine
        capacity, guard = self.latencies.plan(
            self.capacity_in_use(model).capacity,
            self.config.guard,
            model,
            left.output_tokens // left.requests,
        )
        return fallback_among(deadline, left, _others(work, batch.id), capacity, guard)

    def plan_batches(self) -> int:
        """Pack due batch jobs into planned batches, under the store's planning lock (a
        worker that finds it held plans at a later pass)."""
        with self.store.plan_lock() as locked, _gc_paused():
            return self._plan_batches() if locked else 0

    def _plan_batches(self) -> int:
        now = self.clock.now()
        # A primer's batch is over once collected: then the store knows what it wrote (and
        # after a restart, `Priming` reads it there).
        unfinished = (BatchState.PLANNED, BatchState.CREATED, BatchState.ENDED)
        open_ids = {b.id for b in self.store.batches(*unfinished)}
        waiting = self._held_until is not None and now < self._held_until
        if waiting and self.priming.awaited_batches() <= open_ids:  # no primer ended meanwhile
            return 0
        self._held_until = None
        self.priming.new_pass()
        planned = jobs = 0
        held: set[int] = set()  # waiting for their prefix's primer: planned in a later pass
        more = True
        while True:
            now = self.clock.now()
            limit = self._plan_window + len(held)
            due = self.store.due_jobs(Route.BATCH, now, limit) if more else []
            more = len(due) == limit  # fewer: the queue was read to its end
            due = [job for job in due if job.id not in held]
            if not due:
                if planned:
                    log.info("plan: queued→submitting: %s in %d batches", n_jobs(jobs), planned)
                if held:
                    self._held_until = now + HELD_RECHECK
                return planned
            by_model: dict[tuple[str, int], list[tuple[Job, Member]]] = {}
            for job in due:
                cid = custom_ids.custom_id(self.store.namespace, job.id, job.attempts + 1)
                member = Member(job.id, cid, job.params_json)
                if ENVELOPE_BYTES + member.size > self.config.max_batch_bytes:
                    self._fail_queued(job, "the request alone exceeds the batch size limit")
                    continue
                left = (job.deadline - now).total_seconds() if job.deadline else None
                by_model.setdefault((job.model, deadline_class(left)), []).append((job, member))

            def ended(batch_id: int) -> bool:
                return batch_id not in open_ids

            for (model, _), pairs in by_model.items():
                arranged = self.priming.arrange(pairs, now, ended, self._waits(now))
                held |= arranged.held
                for group, size in pack(
                    arranged.primers, self.config.max_batch_requests, self.config.max_batch_bytes
                ):
                    batch = self._plan(group, size, model)
                    open_ids.add(batch.id)
                    for member in group:
                        self.priming.primer_planned(member, batch.id)
                    planned, jobs = planned + 1, jobs + len(group)
                for group, size in pack(
                    arranged.ready, self.config.max_batch_requests, self.config.max_batch_bytes
                ):
                    open_ids.add(self._plan(group, size, model).id)
                    planned, jobs = planned + 1, jobs + len(group)

    @property
    def _plan_window(self) -> int:
        """Due jobs packed together: with cache planning at least `CACHE_WINDOW`, so that
        jobs of one prefix meet even when batches are small."""
        if self.config.cache == "off":
            return self.config.max_batch_requests
        return max(self.config.max_batch_requests, CACHE_WINDOW)

    def _plan(self, group: list[Member], size: int, model: str) -> BatchRecord:
        batch = self.store.plan_batch(
            [(m.job_id, m.custom_id) for m in group], size, model, self.clock.now()
        )
        self.checkpoint("batch_planned")
        if self.store.own_batch(batch.id, self.owner):
            self._owned.add(batch.id)
        log.info(
            "batch #%d planned: %d requests, %s, %d bytes",
            batch.id, batch.request_count, model, size,
        )  # fmt: skip
        if self.on_batch_planned:
            self.on_batch_planned(batch)
        return batch

    def _waits(self, now: datetime) -> Callable[[Job, int], bool]:
        """Whether a job can wait for `rounds` primer batches: the guard would still batch it
        after them, each taking the forecast's 95th percentile for a one-request batch."""

        def waits(job: Job, rounds: int) -> bool:
            if job.deadline is None:
                return True
            deadline, forecast = job.deadline, self.forecast
            tokens_in, tokens_out = _call_estimate(job)
            capacity, guard = self.latencies.plan(
                self.capacity_in_use(job.model).capacity, self.config.guard, job.model, tokens_out
            )
            work = WorkLeft(1, tokens_in, tokens_out)

            def batches_at(moment: datetime) -> bool:
                def chance(seconds: float) -> float:
                    return forecast.probability_within(seconds, job.model, 1, moment)

                return worth_batching(moment, deadline, work, capacity, guard, chance)

            wait = forecast.quantile(PRIMER_QUANTILE, job.model, 1, now)
            return can_wait(deadline, now, rounds, wait, batches_at)

        return waits

    def _open_members(self) -> Iterator[tuple[int, str]]:
        """(batch id, params_json) of the requests in batches not yet collected that may be
        primers (a primer batch holds one request a group; larger ones are left unread)."""
        for batch in self.store.batches(BatchState.PLANNED, BatchState.CREATED, BatchState.ENDED):
            if batch.request_count > PRIMER_BATCH_MAX:
                continue
            for _, params_json in self.store.batch_members(batch.id):
                yield batch.id, params_json

    def _fail_queued(self, job: Job, error: str) -> None:
        if self.store.start_realtime(job.id, self.clock.now()):  # claim it, then fail it
            self.store.finish_realtime(
                job.id, Outcome(None, "failed", error=error), self.clock.now()
            )

    def submit_planned(self) -> int:
        planned = self._batches(BatchState.PLANNED)
        try:
            waiting = self._reconcile(planned)
        except RetryableBackendError as exc:
            log.warning("submit: cannot list batches to reconcile, sending nothing: %s", exc)
            return 0  # cannot tell yet whether an earlier create went through: send nothing
        submitted = len(planned) - len(self._batches(BatchState.PLANNED))  # adopted
        for batch in self._batches(BatchState.PLANNED):
            if batch.id not in waiting:
                submitted += self._submit(batch)
        return submitted

    def _submit(self, batch: BatchRecord) -> int:
        # Intent before side effect: from this commit on, the API may hold the batch.
        self.store.submit_started(batch.id, self.clock.now())
        self.checkpoint("submit_started")
        try:
            info = self.backend.create_batch(
                self.priming.params(self.store.batch_members(batch.id))
            )
        except RetryableBackendError as exc:
            log.warning("batch #%d: create failed, reconciled and retried later: %s", batch.id, exc)
            return 0  # stays planned; the next pass reconciles it before creating again
        except PermanentBackendError as exc:
            self._reject_plan(batch, str(exc))
            return 0
        except FATAL:
            raise
        except Exception as exc:  # quarantine: packing or serializing the plan failed
            self._quarantine_plan(batch, exc)
            return 0
        self.checkpoint("batch_created")
        self.priming.sent(self.store.batch_custom_ids(batch.id))
        self.observe(batch.model, info.limits)
        poll_at = self.clock.now() + timedelta(seconds=self.config.poll.first)
        self.store.batch_created(batch.id, info.id, info.created_at, poll_at)
        self.store.schedule_poll(batch.id, poll_at, self.config.poll.first)
        log.info(
            "batch #%d created: %s, %d requests; submitting→in_batch: %s",
            batch.id, info.id, batch.request_count, n_jobs(batch.request_count),
        )  # fmt: skip
        return 1

    def _reject_plan(self, batch: BatchRecord, error: str) -> None:
        """The API refused the whole batch. A 400 naming `requests.N` fails request N alone
        and re-queues the rest; any other refusal fails every request with the API's reason."""
        ids = [_job_id_of(custom_id) for custom_id in self.store.batch_custom_ids(batch.id)]
        named = re.search(r"requests\.(\d+)\.", error)
        culprits = [ids[int(named.group(1))]] if named and int(named.group(1)) < len(ids) else ids
        log.warning(
            "batch #%d refused by the API (%s); submitting→failed: %s, submitting→queued: %s",
            batch.id, error, n_jobs(len(culprits)), n_jobs(len(ids) - len(culprits)),
        )  # fmt: skip
        self._fail_plan(batch, dict.fromkeys(culprits, f"the API refused it: {error}"))

    def _quarantine_plan(self, batch: BatchRecord, exc: Exception) -> None:
        """Creating a planned batch raised what no API answer explains: the requests that
        cannot be serialized fail (`internal`), the rest go back to the queue and are
        packed again; when none is to blame, every request of the plan fails. (A member
        whose custom_id is not one of ours is only re-queued: it gets a new one when packed.)"""
        members = [
            (parsed.job_id, p)
            for c, p in self.store.batch_members(batch.id)
            if (parsed := custom_ids.parse(c or ""))
        ]
        culprits = {job_id: f"internal: {why}" for job_id, p in members if (why := _unsendable(p))}
        log.error("batch plan %s: internal error while creating it: %r", batch.id, exc,
                  exc_info=exc)  # fmt: skip
        if not culprits:
            culprits = {job_id: internal_error(exc) for job_id, _ in members}
        self._fail_plan(batch, culprits)

    def _fail_plan(self, batch: BatchRecord, errors: dict[int, str]) -> None:
        """Give a plan up: its jobs go back to the queue, and those in `errors` fail."""
        now = self.clock.now()
        self.store.abandon_batch(batch.id, now)
        for job_id, error in errors.items():
            if self.store.start_realtime(job_id, now):  # claim it, then fail it
                self.store.finish_realtime(job_id, Outcome(None, "failed", error=error), now)

    def poll_batches(self) -> int:
        polled = 0
        now = self.clock.now()
        for batch in self._batches(BatchState.CREATED):
            if batch.next_poll_at is not None and batch.next_poll_at > now:
                continue
            try:
                info = self.backend.retrieve_batch(batch.api_id or "")
            except RetryableBackendError:
                continue
            except PermanentBackendError as exc:
                self._lose(batch, str(exc))
                continue
            except FATAL:
                raise
            except Exception as exc:
                self._quarantine_batch(batch, exc)
                continue
            polled += 1
            self.observe(batch.model, info.limits)
            self._log_status(batch, info)
            if info.status == "ended":
                self.store.batch_ended(batch.id, info.ended_at or now)
                self.checkpoint("batch_ended")
            else:
                interval = next_poll(batch.poll_interval, self.config.poll)
                self.store.schedule_poll(batch.id, now + timedelta(seconds=interval), interval)
        return polled

    def _log_status(self, batch: BatchRecord, info: BatchInfo) -> None:
        assumed = "canceling" if batch.cancel_requested else "in_progress"
        before = self._status.get(batch.id, assumed)
        self._status[batch.id] = info.status
        if info.status == before:
            return
        if info.status != "ended":
            log.info("batch %s: %s→%s", info.id, before, info.status)
            return
        self._status.pop(batch.id)
        counts = info.counts or {}
        took = (info.ended_at - info.created_at) if info.ended_at else None
        log.info(
            "batch %s: %s→ended after %s: %d succeeded, %d errored, %d canceled, %d expired",
            info.id, before, took, counts.get("succeeded", 0), counts.get("errored", 0),
            counts.get("canceled", 0), counts.get("expired", 0),
        )  # fmt: skip

    def collect_ended(self) -> int:
        collected = 0
        for batch in self._batches(BatchState.ENDED):
            try:
                self._collect(batch)
            except _NotTheBatch as failed:
                raise failed.error from failed.error.__cause__
            except RetryableBackendError:
                continue
            except PermanentBackendError as exc:
                self._lose(batch, str(exc))
            except FATAL:
                raise
            except Exception as exc:
                self._quarantine_batch(batch, exc)
            collected += 1
        return collected

    def _quarantine_batch(self, batch: BatchRecord, exc: Exception) -> None:
        """Working an API batch raised what no API answer explains: the requests it has
        not answered yet fail (`internal`); lines already applied stand."""
        error = internal_error(exc)
        log.error("batch %s (%s): %s; its unanswered requests fail", batch.id, batch.api_id,
                  error, exc_info=exc)  # fmt: skip
        now = self.clock.now()
        self.store.lose_batch(batch.id, error, now, now, max_attempts=0)

    def _collect(self, batch: BatchRecord) -> None:
        """Stream the batch's results into the store, `apply_chunk` lines a transaction: memory
        stays flat in the batch's size (no list of its lines, outcomes or members is built)."""
        # The guard's fallback reroutes what the batch left unanswered: its members, read
        # before `close_batch` releases them (a batch it did not cancel needs none).
        members = self._member_ids(batch) if batch.cancel_requested else []
        legacy: set[str] | None = None  # read once a line is not namespaced (rare)
        chunk: list[Outcome] = []
        lines: Counter[str] = Counter()  # by line kind: succeeded, errored, ...
        kinds: Counter[str] = Counter()  # by outcome: succeeded, retry, failed
        applied = 0
        checkpoint = self.checkpoint  # a local: this loop runs once per result line
        for line in self.backend.batch_results(batch.api_id or ""):
            job_id = self._own_job(line.custom_id)
            if job_id is None:
                if legacy is None:
                    legacy = self._legacy_ids(batch)
                if line.custom_id not in legacy:
                    log.warning("batch %s: ignored a result line with custom_id %r: not one"
                                " of this store's requests", batch.api_id,
                                line.custom_id)  # fmt: skip
                    continue
            outcome = self._safe_outcome(line, job_id)
            chunk.append(outcome)
            lines[line.kind] += 1
            kinds[outcome.kind] += 1
            checkpoint("result_line")
            if len(chunk) >= self.config.apply_chunk:
                applied += self._apply(batch, chunk)
                checkpoint("results_chunk_applied")
                chunk = []
                self._results_applied()
        applied += self._apply(batch, chunk)
        now = self.clock.now()
        kinds["retry"] += self.store.close_batch(
            batch.id, self._requeue_at(batch), now, self._cap(batch)
        )  # the jobs no line answered
        self._log_collected(batch, lines, +kinds, applied)
        self._fall_back(batch, members)

    def _apply(self, batch: BatchRecord, chunk: list[Outcome]) -> int:
        """Apply one chunk of lines, and deliver its results in the same transaction when the
        router asked for that (`chunk_delivery`)."""
        delivery = self.chunk_delivery
        if delivery is None:
            return self.store.apply_batch_outcomes(batch.id, chunk, self.clock.now())

        def deliver(finished: Sequence[Finished]) -> None:
            try:
                delivery.deliver(finished)
            except Exception as exc:  # the sink's failure, not the batch's: no quarantine
                raise _NotTheBatch(exc) from exc

        return self.store.apply_batch_outcomes(
            batch.id, chunk, self.clock.now(), deliver=deliver, run_id=delivery.run_id
        )

    def _results_applied(self) -> None:
        if self.on_results_applied is not None:
            try:
                self.on_results_applied()
            except Exception as exc:  # the sink's failure, not the batch's: no quarantine
                raise _NotTheBatch(exc) from exc

    def _member_ids(self, batch: BatchRecord) -> list[int]:
        return [_job_id_of(cid) for cid in self.store.batch_custom_ids(batch.id)]

    def _legacy_ids(self, batch: BatchRecord) -> set[str]:
        """The batch's custom_ids sent before this store had a namespace."""
        return {cid for cid in self.store.batch_custom_ids(batch.id) if not self._namespaced(cid)}

    @staticmethod
    def _log_collected(
        batch: BatchRecord, lines: Counter[str], kinds: Counter[str], applied: int
    ) -> None:
        earlier = lines.total() - applied
        log.info(
            "batch %s collected: %d lines (%s); %s%s",
            batch.api_id, lines.total(),
            ", ".join(f"{n} {kind}" for kind, n in sorted(lines.items())) or "none",
            _moves(JobState.IN_BATCH, kinds) or "no job moved",
            f" ({earlier} lines already applied before a restart)" if earlier else "",
        )  # fmt: skip

    def _requeue_at(self, batch: BatchRecord) -> datetime:
        now = self.clock.now()
        if batch.cancel_requested:  # the guard's fallback cannot wait
            return now
        return retry_at(1, now, None, self.config.retry) or now

    def _cap(self, batch: BatchRecord) -> int:
        """Attempts after which an unanswered job fails. A batch the deadline guard canceled
        failed no one: its jobs always get their real-time fallback."""
        return sys.maxsize if batch.cancel_requested else self.config.retry.max_attempts

    def _fall_back(self, batch: BatchRecord, members: list[int]) -> None:
        if batch.cancel_requested:  # the guard's fallback: what did not finish runs in real time
            self.relearn()  # one more cancel latency seen
            reason = "deadline guard: the batch ran late; finished in real time"
            moved = self.store.reroute(members, Route.REALTIME, reason, self.clock.now())
            log.info("batch %s fallback: %s rerouted batch→realtime", batch.api_id, n_jobs(moved))

    def _lose(self, batch: BatchRecord, error: str) -> None:
        """The API refuses to show this batch for good (404, ...): its unanswered jobs are
        sent again (the attempt counted) or failed at the cap, so the worker never stops on
        it at every restart."""
        members = self._member_ids(batch) if batch.cancel_requested else []
        reason = f"batch {batch.api_id} lost: {error}"
        now = self.clock.now()
        requeued = self.store.lose_batch(
            batch.id, reason, self._requeue_at(batch), now, self._cap(batch)
        )
        log.warning("%s; in_batch→queued: %s (others failed at the cap)", reason, n_jobs(requeued))
        self._fall_back(batch, members)

    def _safe_outcome(self, line: ResultLine, job_id: int | None = None) -> Outcome:
        """`job_id`: the line's job, named by its custom_id (None: a legacy custom_id)."""
        try:
            return self._line_outcome(line, job_id)
        except Exception as exc:  # quarantine: this line's job fails, the batch goes on
            log.exception("result line %s: internal error while applying it", line.custom_id)
            return Outcome(line.custom_id, "failed", error=internal_error(exc), job_id=job_id)

    def _line_outcome(self, line: ResultLine, job_id: int | None) -> Outcome:
        cid = line.custom_id
        if line.kind == "unreadable":
            error = f"internal: unreadable result line ({line.error_message})"
            return Outcome(cid, "failed", error=error, job_id=job_id)
        verdict = line_verdict(line.kind, line.error_type)
        if verdict == "succeeded" and line.message is not None:
            m = line.message
            return Outcome(cid, "succeeded", m.message_json, m.usage, m.tier, job_id=job_id)
        error = f"{line.kind}" + (
            f" {line.error_type}: {line.error_message}" if line.error_type else ""
        )
        if verdict == "failed":
            return Outcome(cid, "failed", error=error, job_id=job_id)
        attempts = _attempt_of(cid)
        when = retry_at(attempts, self.clock.now(), None, self.config.retry)
        if when is None:
            error = f"{error} (gave up after {attempts} attempts)"
            return Outcome(cid, "failed", error=error, job_id=job_id)
        return Outcome(cid, "retry", error=error, not_before=when, job_id=job_id)

    # ---- state for loops and the guard ------------------------------------------------------
    def next_wake(self, idle: float) -> datetime:
        """When the next pass has something to do: the earliest poll, or `idle` from now. A
        plan waiting on an API batch that may be its own looks again at the first poll's pace.
        On a fleet store, `idle` is at most `FLEET_IDLE`."""
        if self.fleet:
            idle = min(idle, FLEET_IDLE)
        now = self.clock.now()
        created = self._batches(BatchState.CREATED)
        times = [b.next_poll_at for b in created if b.next_poll_at]
        if any(b.waiting_for for b in self._batches(BatchState.PLANNED)):
            times.append(now + timedelta(seconds=self.config.poll.first))
        work = self.open_work()
        times += [
            m for b in created if not b.cancel_requested and (m := self.fallback_moment(b, work))
        ]
        if self._wake is not None:  # a paced or retried real-time job
            times.append(self._wake)
        soonest = min(times, default=now + timedelta(seconds=idle))
        return max(now, min(soonest, now + timedelta(seconds=idle)))


OpenWork = dict[int, tuple[str, datetime, WorkLeft]]
"""By batch id: (model, earliest deadline, work left) of each open batch with a deadline."""


def open_work(store: Store) -> OpenWork:
    """The work of every batch that may still fall back: sent (cancelled ones included, until
    collected) or planned."""
    work: OpenWork = {}
    for batch in store.batches(BatchState.CREATED) + store.batches(BatchState.PLANNED):
        deadline, requests, tokens_in, tokens_out = store.batch_work(batch.id)
        if deadline is not None and requests:
            work[batch.id] = (batch.model, deadline, WorkLeft(requests, tokens_in, tokens_out))
    return work


def _others(work: OpenWork, batch_id: int) -> Callable[[datetime], list[WorkLeft]]:
    """`fallback_among`'s view of the other open batches of `batch_id`'s model."""
    model, deadline, _ = work[batch_id]
    rivals = [(d, w) for i, (m, d, w) in work.items() if i != batch_id and m == model]

    def others(moment: datetime) -> list[WorkLeft]:
        return [w for d, w in rivals if moment < d <= deadline]

    return others


def learned_latencies(store: Store, config: WorkerConfig) -> Latencies:
    """What the guard plans fallbacks with: cancel latency and call duration learned from the
    store's history, with the settings (`config`) as the prior."""
    calls = (CallSample(*row) for row in store.call_history())
    return learn(store.cancel_history(), calls, config.capacity, config.guard)


def guard_plans(
    store: Store, config: WorkerConfig, now: datetime
) -> list[tuple[BatchRecord, FallbackPlan]]:
    """The deadline guard's plan for every open batch with a deadline (sent and not yet
    cancelled, or planned), earliest fallback first: what `nowait status` shows."""
    history = (BatchSample(*row) for row in store.batch_history())
    forecast = fit(history, config.prior)
    latencies = learned_latencies(store, config)
    work = open_work(store)
    observed = {o.model_class: o for o in store.observed_limits()}
    open_batches = [
        b for b in store.batches(BatchState.CREATED) if not b.cancel_requested
    ] + store.batches(BatchState.PLANNED)
    plans = []
    for batch in open_batches:
        if batch.id not in work:
            continue
        _, deadline, left = work[batch.id]
        stated = observed_for(batch.model, observed)  # the API's limits, as the worker plans
        capacity = capacity_in_use(config.capacity, config.capacity_set, stated, now).capacity
        plan = plan_fallback(
            deadline=deadline, work=left, model=batch.model, created_at=batch.created_at,
            capacity=capacity, guard=config.guard, latencies=latencies,
            forecast=forecast, now=now, others=_others(work, batch.id),
        )  # fmt: skip
        plans.append((batch, plan))
    return sorted(plans, key=lambda bp: bp[1].fallback_at)


def n_jobs(n: int) -> str:
    """'1 job', '1,200 jobs': job counts in log lines."""
    return f"{n:,} job" + ("" if n == 1 else "s")


def _moves(source: JobState, kinds: Counter[str]) -> str:
    """Job state changes by count from outcome kinds, e.g.
    'in_batch→succeeded: 95 jobs, in_batch→queued: 5 jobs'."""
    return ", ".join(
        f"{source}→{OUTCOME_STATE[kind]}: {n_jobs(n)}" for kind, n in sorted(kinds.items())
    )


def internal_error(exc: BaseException) -> str:
    """A job's error after an unexpected exception: the kind `internal`, then what was raised."""
    return f"internal: {type(exc).__name__}: {exc}"


def _unsendable(params_json: str) -> str | None:
    """Why a stored request cannot go into a batch body (None: it can): the body is JSON."""
    try:
        params = orjson.loads(params_json)
    except orjson.JSONDecodeError as exc:
        return f"the stored request is not valid JSON ({exc})"
    return None if isinstance(params, dict) else "the stored request is not a JSON object"


def _attempt_of(custom_id: str) -> int:
    parsed = custom_ids.parse(custom_id)
    return parsed.attempt if parsed else 1


def _job_id_of(custom_id: str) -> int:
    parsed = custom_ids.parse(custom_id)
    if parsed is None:
        raise ValueError(f"{custom_id!r} is not a custom_id nowait made")
    return parsed.job_id


def _merged(
    kept: ObservedLimits | None, cls: str, limits: RateLimits, now: datetime
) -> ObservedLimits:
    """`limits` over the ones kept for `cls`, as `Store.record_rate_limits` merges them: a
    limit the response did not state keeps the value kept before."""
    if kept is None:
        return ObservedLimits(cls, limits, now)
    old = kept.limits
    return ObservedLimits(
        cls,
        RateLimits(
            limits.requests or old.requests,
            limits.input_tokens or old.input_tokens,
            limits.output_tokens or old.output_tokens,
        ),
        now,
    )


def _call_estimate(job: Job) -> tuple[int, int]:
    """(input, output) tokens a real-time call reserves: the guard's prompt estimate and the
    request's `max_tokens` (0 when the stored request cannot be read: the call fails anyway)."""
    try:
        max_tokens = orjson.loads(job.params_json).get("max_tokens")
    except (orjson.JSONDecodeError, AttributeError):
        max_tokens = None
    output = max_tokens if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) else 0
    return prompt_tokens_estimate(job.params_json), max(0, output)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector held off: a planning pass holds up to 100,000 jobs and
    builds as many members, no cycle among them, and each full collection on the way walked
    them all again (~0.35 s a pass of 100,000). Left as it was if it was already off."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
