"""The route part of `nowait demo`: the bundled requests through the embedded emulator.

The emulator and the router share one fake clock, so the worker's waits move batch time
forward: hours of batch turnaround pass in about a second, deterministically.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path

from nowait.clock import FakeClock
from nowait.emulator import EmulatorConfig, EmulatorServer, Turnaround
from nowait.present.progress import progress
from nowait.route.backend import AnthropicBackend
from nowait.route.receipts import Receipt, build_receipt
from nowait.route.requests_file import read_requests
from nowait.route.router import JsonlSink, Router
from nowait.sort.pricing import PriceTable
from nowait.store import BatchState
from nowait.store.sqlite import SQLiteStore
from nowait.types import Route


@dataclass(frozen=True)
class RouteDemo:
    receipt: Receipt
    realtime: int
    batched: int
    batches: int
    retried: int
    emulated_start: datetime
    emulated_end: datetime
    results: Path


def example_requests() -> Path:
    return Path(str(resources.files("nowait") / "data" / "example-requests.jsonl"))


def route_example(
    out_dir: Path, table: PriceTable | None = None, *, show_progress: bool = True
) -> RouteDemo:
    """Route the bundled example requests through a fresh emulator; results in `out_dir`."""
    clock = FakeClock()
    start = clock.now()
    store_dir = out_dir / "store"
    shutil.rmtree(store_dir, ignore_errors=True)
    results = out_dir / "results.jsonl"
    results.unlink(missing_ok=True)
    config = EmulatorConfig(seed=1, turnaround=Turnaround(median=25 * 60, p95=3 * 3600))
    with EmulatorServer(config, clock) as server:
        server.emulator.fail_next_lines(3, "overloaded_error")  # a few lines to retry
        server.emulator.fail_next_lines(2, "expired")
        backend = AnthropicBackend(api_key="demo", base_url=server.base_url)
        store = SQLiteStore(store_dir / "nowait.db")
        router = Router(store=store, backend=backend, clock=clock)
        for line in read_requests(example_requests(), start):
            router.submit(
                line.params,
                key=line.key,
                workload=line.workload,
                deadline=line.deadline,
                awaited=line.awaited,
            )
        realtime = sum(1 for j in store.jobs() if j.route is Route.REALTIME)
        total = store.job_counts()
        sink = JsonlSink(results)
        with progress("results", total=sum(total.values()), enabled=show_progress) as bar:
            router.run(sink, on_progress=bar.advance)
        sink.close()
        backend.close()
        batches = store.batches(BatchState.COLLECTED)
        attempts = sum(j.attempts for j in store.jobs())
        receipt = build_receipt(store.usage_rows(), table)
        jobs = sum(total.values())
        store.close()
    return RouteDemo(
        receipt=receipt,
        realtime=realtime,
        batched=jobs - realtime,
        batches=len(batches),
        retried=attempts - jobs,
        emulated_start=start,
        emulated_end=clock.now(),
        results=results,
    )
