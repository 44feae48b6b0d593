"""What `nowait run` shows while it waits: on a terminal a live table, one line per batch
(state, requests, age, forecast end p50/p95, fallback moment) and a total; off a terminal one
plain line per batch state change and a heartbeat at most once a minute.

Fed `RunView`s (`nowait.route.watch`) by the run loop; nothing here reads the store."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol, TextIO

from nowait.route.watch import BatchView, RunView
from nowait.sort.classify import human_duration

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult

HEARTBEAT = 60.0  # seconds between plain "still waiting" lines


class RunDisplay(Protocol):
    def update(self, view: RunView) -> None: ...


def clock_time(at: datetime | None, now: datetime) -> str:
    """`14:05` today, `Tue 14:05` on another day; `-` for no moment."""
    if at is None:
        return "-"
    local, today = at.astimezone(), now.astimezone()
    return local.strftime("%H:%M" if local.date() == today.date() else "%a %H:%M")


def age(since: datetime | None, now: datetime) -> str:
    return human_duration(max(timedelta(0), now - since)) if since else "-"


def batch_line(batch: BatchView, now: datetime) -> str:
    """One batch in words, for logs: `msgbatch_01: created, 190 requests, 3 min old, ...`."""
    parts = [f"batch {batch.name}: {batch.state}", f"{batch.requests:,} requests"]
    if batch.sent_at:
        parts.append(f"{age(batch.sent_at, now)} old")
    if batch.finish_p50:
        parts.append(
            f"forecast end {clock_time(batch.finish_p50, now)}"
            f" (p95 {clock_time(batch.finish_p95, now)})"
        )
    if batch.fallback_at:
        parts.append(f"real-time fallback at {clock_time(batch.fallback_at, now)}")
    return ", ".join(parts)


def total_line(view: RunView, elapsed: float) -> str:
    jobs = ", ".join(f"{state} {n:,}" for state, n in sorted(view.jobs.items()))
    return (
        f"results {view.delivered:,}/{view.total:,}; {len(view.batches)} open batches;"
        f" jobs: {jobs or 'none'}; {human_duration(timedelta(seconds=elapsed))} elapsed"
    )


class PlainLines:
    """Log-friendly: a line when a batch appears or changes state, a heartbeat a minute."""

    def __init__(self, stream: TextIO, heartbeat: float = HEARTBEAT) -> None:
        self.stream, self.heartbeat = stream, heartbeat
        self._states: dict[str, str] = {}
        self._started = self._last = time.monotonic()
        self.view: RunView | None = None

    def update(self, view: RunView) -> None:
        self.view = view
        changed = [b for b in view.batches if self._states.get(b.name) != b.state]
        gone = self._states.keys() - {b.name for b in view.batches}
        for batch in changed:
            self._write(batch_line(batch, view.now))
        for name in sorted(gone):
            self._write(f"batch {name}: results collected")
        self._states = {b.name: b.state for b in view.batches}
        if not changed and not gone and time.monotonic() - self._last >= self.heartbeat:
            self._write("waiting: " + total_line(view, time.monotonic() - self._started))

    def finish(self) -> None:
        if self.view is not None:
            self._write("done: " + total_line(self.view, time.monotonic() - self._started))

    def _write(self, line: str) -> None:
        self._last = time.monotonic()
        self.stream.write(line + "\n")
        self.stream.flush()


class LiveTable:
    """The live display's content: the latest view, aged by the wall clock at each refresh
    (rich redraws it several times a second, between the run's passes)."""

    def __init__(self) -> None:
        self.view: RunView | None = None
        self._stamp = self._started = time.monotonic()
        self._collected: dict[str, BatchView] = {}

    def update(self, view: RunView) -> None:
        if self.view is not None:
            open_now = {b.name for b in view.batches}
            for b in self.view.batches:
                if b.name not in open_now:
                    self._collected[b.name] = b
        self.view, self._stamp = view, time.monotonic()

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from nowait.present.tables import FitTable

        view = self.view
        if view is None:
            yield "routing…"
            return
        now = view.now + timedelta(seconds=time.monotonic() - self._stamp)
        table = FitTable(box=None, pad_edge=False, show_edge=False)
        for header in ("batch", "state", "requests", "age", "ends p50", "p95", "fallback"):
            table.add_column(header, overflow="fold", no_wrap=header != "batch")
        for b in self._collected.values():
            table.add_row(b.name, "collected", f"{b.requests:,}/{b.requests:,}", "", "", "", "")
        for b in view.batches:
            done = f"{b.requests:,}/{b.requests:,}" if b.state == "ended" else f"{b.requests:,}"
            table.add_row(
                b.name, b.state, done, age(b.sent_at, now), clock_time(b.finish_p50, now),
                clock_time(b.finish_p95, now), clock_time(b.fallback_at, now),
            )  # fmt: skip
        yield table
        yield total_line(view, time.monotonic() - self._started)


@contextmanager
def run_display(stream: TextIO | None = None) -> Iterator[RunDisplay]:
    """The display for `stream` (stderr by default): live on a terminal, plain lines off one."""
    out = stream or sys.stderr
    if not out.isatty():
        plain = PlainLines(out)
        yield plain
        plain.finish()
        return
    from rich.console import Console
    from rich.live import Live

    content = LiveTable()
    with Live(content, console=Console(file=out), refresh_per_second=2, transient=False):
        yield content
