"""The route side's front door: submit requests, get each result exactly once.

    router = Router(store=SQLiteStore(home / "nowait.db"), backend=AnthropicBackend())
    router.submit(params, key="ticket-42", workload="triage", deadline=tomorrow)
    router.run(sink=JsonlSink("results.jsonl"))      # until every job is delivered

Awaited work and deadlines too tight for a batch go real-time (`policy.decide_route`); the
rest is packed into batches. Delivery is exactly once per key: a result is handed to the
sink, and only the sink's return marks it delivered; the JSONL sink skips keys it already
holds, so a crash between the two never duplicates a line.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, BinaryIO, Protocol, Self

import orjson

from nowait.clock import Clock, SystemClock
from nowait.errors import InputError, StoreError
from nowait.files import open_sole_writer
from nowait.guard.forecast import BatchSample, Forecast, fit
from nowait.guard.policy import Capacity, GuardConfig, RouteRequest, decide_route
from nowait.route.backend import Backend, check_params, plain_request
from nowait.route.params import check_json_values, check_limits, prompt_tokens_estimate
from nowait.route.worker import (
    Checkpoint,
    ChunkDelivery,
    Worker,
    WorkerConfig,
    n_jobs,
    no_checkpoint,
)
from nowait.store import Finished, Job, NewJob, Store
from nowait.types import PENDING_STATES, JobState, Route

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    """One finished request as the sink receives it."""

    key: str
    workload: str | None
    ok: bool
    route: str
    tier: str | None
    message_json: str | None
    """The Messages API response as stored, JSON text (parsed on demand: `message`)."""
    error: str | None
    awaited: bool = False
    """What the caller said at submit time, so an analysis of the results knows it too."""
    deadline: datetime | None = None
    submitted_at: datetime | None = None

    @cached_property
    def message(self) -> dict[str, Any] | None:
        return json.loads(self.message_json) if self.message_json is not None else None

    def to_json(self) -> dict[str, Any]:
        return self._fields(self.message)

    def to_json_line(self) -> str:
        """`to_json()` as one line, with the stored message spliced in, not parsed again."""
        message = orjson.Fragment(self.message_json) if self.message_json is not None else None
        return orjson.dumps(self._fields(message)).decode()

    def _fields(self, message: object) -> dict[str, Any]:
        return {
            "key": self.key,
            "workload": self.workload,
            "awaited": self.awaited,
            "deadline": _iso(self.deadline) if self.deadline else None,
            "submitted_at": _iso(self.submitted_at) if self.submitted_at else None,
            "ok": self.ok,
            "route": self.route,
            "tier": self.tier,
            "message": message,
            "error": self.error,
        }


_iso = lru_cache(maxsize=1024)(datetime.isoformat)
"""A delivery's times as text: the jobs added in one call share their `submitted_at`."""


def delivery_of(job: Job | Finished) -> Delivery:
    ok = job.result_json is not None
    return Delivery(  # by position: once per delivered result, keywords cost a dict each
        job.key, job.workload, ok, job.route.value, job.tier.value if job.tier else None,
        job.result_json, job.error if not ok else None, job.awaited, job.deadline,
        job.created_at,
    )  # fmt: skip


class Sink(Protocol):
    """Where results go. A plain callable is acknowledged result by result. A sink with a
    `flush()` (as `JsonlSink`) is flushed before its chunk is acknowledged, and must skip
    the keys it already holds: after a crash it is given again what it may hold."""

    def __call__(self, delivery: Delivery) -> None: ...


class JsonlSink:
    """Appends one JSON line per delivery, fsynced before it is acknowledged; skips keys
    already in the file, so redelivery after a crash never writes a line twice."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._file = open_sole_writer(self.path)  # before reading it: no other writer
        try:
            _cut_torn_tail(self.path)
            self._seen = set(self._keys())
        except BaseException:
            self._file.close()
            raise

    def _keys(self) -> Iterator[str]:
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as existing:
            for line in existing:
                try:
                    yield str(json.loads(line)["key"])
                except (ValueError, KeyError, TypeError):
                    continue  # a torn last line from a crash: its job is redelivered

    def __call__(self, delivery: Delivery) -> None:
        if delivery.key in self._seen:
            return
        self._file.write(delivery.to_json_line() + "\n")
        self._seen.add(delivery.key)

    def flush(self) -> None:
        """On disk before the router acknowledges what was written."""
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _cut_torn_tail(path: Path) -> None:
    """A crash mid-write leaves a last line without its newline; its job was never
    acknowledged, so it is redelivered. Cut the fragment off (durably), or the next line
    would be glued onto it."""
    if not path.exists():
        return
    with path.open("r+b") as file:
        size = file.seek(0, os.SEEK_END)
        keep = _after_last_newline(file, size)
        if keep != size:
            file.truncate(keep)
            os.fsync(file.fileno())


def _after_last_newline(file: BinaryIO, size: int) -> int:
    """Offset just past the last newline (0 when there is none), reading from the end."""
    end = size
    while end > 0:
        start = max(0, end - 65536)
        file.seek(start)
        newline = file.read(end - start).rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0


@dataclass(frozen=True)
class CheckedRequest:
    """A request that passed the door: what routing it needs, its params as strict JSON."""

    params_json: str
    model: str
    max_tokens: int
    key: str | None = None
    workload: str | None = None
    deadline: datetime | None = None
    awaited: bool = False


def check_request(
    params: Mapping[str, Any],
    *,
    key: str | None = None,
    workload: str | None = None,
    deadline: datetime | None = None,
    awaited: bool = False,
) -> CheckedRequest:
    """The door, the same for both routes and without a store (a bad file touches none):
    strict-JSON values (finite numbers, valid Unicode), the SDK's request type with no unknown
    parameter (provider extras go under `extra_body`), `max_tokens` within the model's limit.
    Raises `InputError` naming the field."""
    if not isinstance(params, Mapping):
        raise InputError(f"got {type(params).__name__}", field="params", expected="an object")
    params = params if type(params) is dict else dict(params)  # one copy of a mapping, if any
    plain = plain_request(params)  # the common shape: the walks below would find nothing
    if not plain:
        check_json_values(params, "params")
    for name, text in (("key", key), ("workload", workload)):
        if text is not None:
            check_json_values(text, name)
    model = params.get("model")
    if not isinstance(model, str) or not model:
        raise InputError("every request needs a model", field="params.model")
    max_tokens = params.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
        raise InputError("every request needs max_tokens", field="params.max_tokens")
    if not isinstance(params.get("messages"), list):
        raise InputError("every request needs a list of messages", field="params.messages")
    if params.get("stream"):
        raise InputError("nowait collects whole results; drop stream", field="params.stream")
    if deadline is not None and deadline.tzinfo is None:
        raise InputError("deadline needs a timezone", field="deadline")
    if not plain:
        check_params(params)
    params_json = json.dumps(params, allow_nan=False)
    check_limits(model, max_tokens, params_json)
    return CheckedRequest(params_json, model, max_tokens, key, workload, deadline, awaited)


class Router:
    def __init__(
        self,
        *,
        store: Store,
        backend: Backend,
        clock: Clock | None = None,
        worker: WorkerConfig | None = None,
        run_id: str | None = None,
        checkpoint: Checkpoint = no_checkpoint,
    ) -> None:
        """`checkpoint` is called at each named step (`worker.CHECKPOINTS`): a test hook, e.g.
        `nowait.testing.crash_at`; the default does nothing."""
        self.store = store
        self.backend = backend
        self.clock: Clock = clock or SystemClock()
        self.worker = Worker(store, backend, self.clock, worker, checkpoint=checkpoint)
        self.checkpoint = checkpoint
        self.config = self.worker.config
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self._forecast: Forecast | None = None
        self._doubt_told = False
        self._claimed = False

    @property
    def forecast(self) -> Forecast:
        """The turnaround forecast, learned from this store's finished batches."""
        if self._forecast is None:
            history = (BatchSample(*row) for row in self.store.batch_history())
            self._forecast = fit(history, self.config.prior)
        return self._forecast

    def submit(
        self,
        params: Mapping[str, Any],
        *,
        key: str | None = None,
        workload: str | None = None,
        deadline: datetime | None = None,
        awaited: bool = False,
    ) -> str:
        """Queue one request; returns its key. Submitting a key again changes nothing."""
        job = self.prepare(params, key=key, workload=workload, deadline=deadline, awaited=awaited)
        self.store.add_job(job, self.clock.now())
        return job.key

    def submit_many(self, jobs: Iterable[NewJob], chunk: int = 5000) -> int:
        """Store prepared jobs (`prepare`) in large transactions; returns how many are new."""
        added, pending = 0, list[NewJob]()
        for job in jobs:
            pending.append(job)
            if len(pending) >= chunk:
                added += self.store.add_jobs(pending, self.clock.now())
                pending = []
        return added + (self.store.add_jobs(pending, self.clock.now()) if pending else 0)

    def prepare(
        self,
        params: Mapping[str, Any],
        *,
        key: str | None = None,
        workload: str | None = None,
        deadline: datetime | None = None,
        awaited: bool = False,
    ) -> NewJob:
        """Validate and route one request without storing it: `InputError` names the field
        (`check_request`, then `route`)."""
        checked = check_request(
            params, key=key, workload=workload, deadline=deadline, awaited=awaited
        )
        return self.route(checked)

    def route(self, request: CheckedRequest) -> NewJob:
        """Route a checked request (real time or batch, with the reasons) without storing it."""
        return next(self.route_many([request]))

    def route_many(self, requests: Iterable[CheckedRequest]) -> Iterator[NewJob]:
        """`route` for many requests in one pass: one moment, one forecast, and the capacity
        and latencies planned once per (model, max_tokens), as `route` plans them for one."""
        now = self.clock.now()
        forecast = self.forecast
        plans: dict[tuple[str, int], _Plan] = {}
        # Without a deadline the decision depends on `awaited` alone: decided once a pass.
        undated: dict[tuple[str, int, bool], tuple[Route, str]] = {}
        for request in requests:
            model, max_tokens = request.model, request.max_tokens
            same = (model, max_tokens, request.awaited)
            decided = undated.get(same) if request.deadline is None else None
            if decided is None:
                plan = plans.get((model, max_tokens))
                if plan is None:
                    chance = _chance(forecast, model, now)
                    plan = plans[model, max_tokens] = (*self._plan(model, max_tokens), chance)
                route_request = RouteRequest(
                    request.awaited,
                    request.deadline,
                    model,
                    prompt_tokens_estimate(request.params_json),
                    max_tokens,
                )
                decision = decide_route(route_request, now, *plan)
                decided = decision.route, "; ".join(decision.reasons)
                if request.deadline is None:
                    undated[same] = decided
            yield NewJob(
                key=request.key or uuid.uuid4().hex,
                params_json=request.params_json,
                model=model,
                route=decided[0],
                reasons=decided[1],
                workload=request.workload,
                deadline=request.deadline,
                awaited=request.awaited,
                run_id=self.run_id,
            )

    def _plan(self, model: str, max_tokens: int) -> tuple[Capacity, GuardConfig]:
        """The capacity and guard a deadline is planned with: the API's limits, if stated,
        and the learned latencies."""
        capacity = self.worker.capacity_in_use(model).capacity
        return self.worker.latencies.plan(capacity, self.config.guard, model, max_tokens)

    def result(self, key: str) -> Delivery | None:
        """The outcome of `key` once it has one (delivered or not); None while pending."""
        job = self.store.get_job(key)
        if job is None or job.state in PENDING_STATES:
            return None
        return delivery_of(job)

    def results(self) -> Iterator[Delivery]:
        for state in (JobState.SUCCEEDED, JobState.FAILED, JobState.DELIVERED):
            for job in self.store.jobs(state=state):
                yield delivery_of(job)

    def deliver(
        self,
        sink: Sink | Callable[[Delivery], None],
        limit: int = 1000,
        *,
        run_id: str | None = None,
    ) -> int:
        """Hand finished results to `sink`, each exactly once; returns how many.

        A sink with a `flush()` (the JSONL sink) is flushed to disk before the chunk is
        acknowledged in one transaction; a plain callable is acknowledged result by result.
        """
        if self.store.fleet:
            return self._deliver_claimed(sink, limit, run_id)
        delivered = 0
        flush = getattr(sink, "flush", None)
        checkpoint = self.checkpoint
        while chunk := self.store.undelivered_results(limit, run_id):
            if flush is None:
                for job in chunk:
                    sink(delivery_of(job))
                    checkpoint("result_written")
                    self.store.mark_delivered(job.id, self.clock.now())
            else:
                for job in chunk:
                    sink(delivery_of(job))
                    checkpoint("result_written")
                flush()
                self.store.mark_delivered_many([j.id for j in chunk], self.clock.now())
            delivered += len(chunk)
        if delivered:
            log.info("deliver: succeeded|failed→delivered: %s", n_jobs(delivered))
        return delivered

    def _deliver_claimed(
        self, sink: Sink | Callable[[Delivery], None], limit: int, run_id: str | None
    ) -> int:
        """`deliver` on a store many workers share: each chunk of results is claimed by this
        worker first (`Store.claim_deliveries`), so one result goes to one worker's sink; the
        mark is guarded by the claim. A chunk is fenced before its sink sees it
        (`Store.start_delivery`): from then until its mark it is in doubt, this worker's alone
        even should it die. Started again under its name, it redelivers what it left to its
        own sink (which skips the keys it holds); what it claimed but never began to write
        goes to another worker after its lease."""
        delivered = 0
        owner = self.worker.owner
        flush = getattr(sink, "flush", None)
        while chunk := self.store.claim_deliveries(owner, limit, run_id):
            ids = [j.id for j in chunk]
            self._fence(ids, keyed=flush is not None)
            for job in chunk:
                sink(delivery_of(job))
                self.checkpoint("result_written")
                if flush is None:
                    self._marked(self.store.deliver_claimed([job.id], owner, self.clock.now()), 1)
            if flush is not None:
                flush()
                self._marked(self.store.deliver_claimed(ids, owner, self.clock.now()), len(ids))
            delivered += len(ids)
        if delivered:
            log.info("deliver: succeeded|failed→delivered: %s", n_jobs(delivered))
        return delivered

    def _fence(self, job_ids: list[int], keyed: bool) -> None:
        """Write a claimed chunk only while this worker holds it with half its lease left
        (else it may be reaped mid-chunk and another worker deliver the chunk too). `keyed`:
        a sink that skips the keys it holds (one with `flush()`, as `JsonlSink`); the chunk
        is then in doubt until marked, so no reap hands it to another worker: started again,
        this worker's sink tells what it holds. A plain callable can tell nothing: a result
        it was given when the worker died may be given again, here or elsewhere."""
        lease = self.worker.config.lease
        now = self.clock.now()
        if not self.store.start_delivery(
            job_ids, self.worker.owner, lease / 2, now, in_doubt=keyed
        ):
            raise StoreError(
                f"worker {self.worker.owner} lost its lease on the store (less than"
                f" {lease / 2:g}s of its {lease:g}s lease left, or reaped): it wrote none of"
                f" the {len(job_ids)} results it had claimed; other workers deliver them"
            )

    def _marked(self, marked: int, written: int) -> None:
        """Stop when a mark found results no longer this worker's (`forget_worker` ran while
        it was writing them)."""
        if marked < written:
            raise StoreError(
                f"worker {self.worker.owner} was forgotten while delivering:"
                f" {written - marked} results written to its sink were handed to another"
                " worker and may be delivered again"
            )

    def pending(self, run_id: str | None = None) -> int:
        counts = self.store.job_counts(run_id)
        return sum(counts.get(s, 0) for s in PENDING_STATES)

    def close(self) -> None:
        """Close the store, and the backend when it holds connections (`AnthropicBackend`)."""
        try:
            close_backend = getattr(self.backend, "close", None)
            if callable(close_backend):
                close_backend()
        finally:
            self.store.close()

    @contextmanager
    def claim(self) -> Iterator[None]:
        """Hold the store's claim (re-entrant): `nowait run` takes it before it queues
        anything, so a refused second process leaves no trace in the store."""
        if self._claimed:
            yield
            return
        # a store many workers share: join its fleet; else hold the store alone
        with self.worker.membership() if self.store.fleet else self.store.claim():
            self._claimed = True
            try:
                yield
            finally:
                self._claimed = False

    def run(
        self,
        sink: Sink | Callable[[Delivery], None] | None = None,
        *,
        idle: float = 30.0,
        on_progress: Callable[[int], None] | None = None,
        forever: bool = False,
        only_this_run: bool = False,
        on_pass: Callable[[bool], None] | None = None,
    ) -> None:
        """Work until nothing is pending (or forever), delivering as results arrive.

        `on_progress(n)`: n more results delivered; `on_pass(busy)`: after every pass over the
        queue and the batches (a display reads the store there); `busy`: another pass follows
        at once (a display may skip this one), else a wait or the end follows.

        `only_this_run`: deliver only this run's jobs, and stop when they are done (the
        worker still moves every job of the store along). Holds the store's claim
        throughout: a second worker on the same store would race this one's crash recovery
        (`StoreBusyError`)."""
        with self.claim():
            run_id = self.run_id if only_this_run else None
            self._work(sink, idle, on_progress, on_pass, forever, run_id)

    def _work(
        self,
        sink: Sink | Callable[[Delivery], None] | None,
        idle: float,
        on_progress: Callable[[int], None] | None,
        on_pass: Callable[[bool], None] | None,
        forever: bool,
        run_id: str | None,
    ) -> None:
        self._forecast = None  # learn from what finished since
        self.worker.relearn()
        self.worker.recover()
        log.info(
            "run %s: %s pending, %s to deliver",
            self.run_id, f"{self.pending():,}", f"{self.store.undelivered_count():,}",
        )  # fmt: skip

        handed = self._chunk_delivery(sink, run_id)

        def deliver() -> None:
            done = self.deliver(sink, run_id=run_id) if sink is not None else 0
            done, handed.count = done + handed.count, 0
            if on_progress is not None and done:
                on_progress(done)

        self.worker.on_results_applied = deliver  # a large batch's results, as they land
        self.worker.chunk_delivery = handed.delivery
        try:
            self._passes(deliver, sink, idle, on_pass, forever, run_id)
        finally:
            self.worker.on_results_applied = None
            self.worker.chunk_delivery = None

    def _chunk_delivery(
        self, sink: Sink | Callable[[Delivery], None] | None, run_id: str | None
    ) -> _Handed:
        """With a sink that flushes, on a store this process owns: a batch's results are
        delivered in the transaction that applies them (`ChunkDelivery`), each page flushed
        before that transaction marks it delivered. A plain callable is acknowledged result
        by result, and a fleet store's results are claimed first (`deliver`)."""
        handed = _Handed()
        flush = getattr(sink, "flush", None)
        if sink is None or flush is None or self.store.fleet:
            return handed
        checkpoint = self.checkpoint

        def deliver(finished: Sequence[Finished]) -> None:
            for job in finished:
                sink(delivery_of(job))
                checkpoint("result_written")
            flush()
            handed.count += len(finished)
            log.info("deliver: succeeded|failed→delivered: %s", n_jobs(len(finished)))

        handed.delivery = ChunkDelivery(deliver, run_id)
        return handed

    def _passes(
        self,
        deliver: Callable[[], None],
        sink: Sink | Callable[[Delivery], None] | None,
        idle: float,
        on_pass: Callable[[bool], None] | None,
        forever: bool,
        run_id: str | None,
    ) -> None:
        while True:
            report = self.worker.run_once()
            deliver()
            finished = (
                not forever
                and self.pending(run_id) == 0
                and not self._claimed_elsewhere(sink, run_id)
            )
            if on_pass is not None:
                on_pass(report.busy and not finished)
            if finished:
                log.info("run %s: nothing pending", self.run_id)
                return
            if not report.busy:
                wake = self.worker.next_wake(idle)
                self.clock.sleep(max(0.0, (wake - self.clock.now()).total_seconds()))

    def _claimed_elsewhere(
        self, sink: Sink | Callable[[Delivery], None] | None, run_id: str | None
    ) -> bool:
        """Whether results this run must deliver are still claimed by another worker of a
        fleet store (one that died: they wait for its lease, or in doubt for it to start
        again): the run waits for them, and says once which workers hold some in doubt."""
        if sink is None or not self.store.fleet or self.store.undelivered_count(run_id) == 0:
            return False
        if not self._doubt_told and (doubt := self.store.in_doubt()):
            self._doubt_told = True
            log.warning(
                "run %s: waiting for results in doubt (being written when their worker"
                " stopped): %s; start each again with its --worker-id and --out, or"
                " `nowait forget-worker NAME` for one gone for good",
                self.run_id, ", ".join(f"{w} {n:,}" for w, n, _ in doubt),
            )  # fmt: skip
        return True


@dataclass
class _Handed:
    """A run's in-transaction delivery (None: none) and what it delivered since the last
    progress report."""

    delivery: ChunkDelivery | None = None
    count: int = 0


_Plan = tuple[Capacity, GuardConfig, Callable[[float], float]]
"""What a deadline is routed with: capacity, guard and the forecast's chance (`decide_route`)."""


def _chance(forecast: Forecast, model: str, now: datetime) -> Callable[[float], float]:
    """The chance a batch of one `model` request ends within so many seconds of `now`."""

    def chance(seconds: float) -> float:
        return forecast.probability_within(seconds, model, 1, now)

    return chance


def default_home() -> Path:
    """`$NOWAIT_HOME`, else the user's data directory (for library users; the CLI passes its
    settings' `home` down)."""
    from nowait.settings import default_home as home_in

    return home_in(os.environ)


__all__ = ["Delivery", "JsonlSink", "Route", "Router", "default_home"]
