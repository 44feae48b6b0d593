"""What a run is waiting on, at one moment: its open batches with their forecast and fallback
moment, and the run's results so far. Read from the store by `watch`; drawn by
`nowait.present.run_progress`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from nowait.store import BatchRecord, BatchState

if TYPE_CHECKING:
    from nowait.route.router import Router

OPEN_BATCHES = (BatchState.PLANNED, BatchState.CREATED, BatchState.ENDED)


@dataclass(frozen=True)
class BatchView:
    name: str
    """The API's batch id, or `#N` for a plan not sent yet."""
    state: str
    requests: int
    sent_at: datetime | None
    """When nowait sent its create call (by nowait's clock: the API's own times may be another
    clock's, e.g. an emulator's scaled time)."""
    finish_p50: datetime | None
    """When the forecast expects it to end: half of such batches end by then."""
    finish_p95: datetime | None
    fallback_at: datetime | None
    """The guard's moment to cancel and finish in real time (None: no deadline to guard)."""


@dataclass(frozen=True)
class RunView:
    now: datetime
    batches: tuple[BatchView, ...]
    delivered: int
    total: int
    jobs: dict[str, int]
    """The run's jobs by state (`JobState` values)."""


def batch_view(router: Router, batch: BatchRecord) -> BatchView:
    started = batch.submit_started_at or batch.created_at
    p50 = p95 = None
    if started is not None and batch.state is not BatchState.ENDED:
        forecast = router.forecast
        p50 = started + forecast.quantile(0.5, batch.model, batch.request_count, started)
        p95 = started + forecast.quantile(0.95, batch.model, batch.request_count, started)
    return BatchView(
        name=batch.api_id or f"#{batch.id}",
        state=batch.state.value,
        requests=batch.request_count,
        sent_at=started,
        finish_p50=p50,
        finish_p95=p95,
        fallback_at=router.worker.fallback_moment(batch),
    )


def watch(router: Router, delivered: int, total: int, run_id: str | None = None) -> RunView:
    """The store's open batches and the run's job counts, now (by the router's clock)."""
    batches = tuple(batch_view(router, b) for b in router.store.batches(*OPEN_BATCHES))
    counts = router.store.job_counts(run_id)
    jobs = {state.value: n for state, n in counts.items() if n}
    return RunView(router.clock.now(), batches, delivered, total, jobs)
