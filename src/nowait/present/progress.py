"""Progress for long work: a live bar on a terminal, plain lines when output is not a TTY."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol, TextIO


class Progress(Protocol):
    def advance(self, n: int = 1) -> None: ...

    def set_total(self, total: int | None) -> None: ...


class _Silent:
    def advance(self, n: int = 1) -> None:
        pass

    def set_total(self, total: int | None) -> None:
        pass


class _PlainLines:
    """One line every `interval` seconds (and at the end), for logs and CI."""

    def __init__(self, label: str, total: int | None, stream: TextIO, interval: float) -> None:
        self.label, self.total, self.stream, self.interval = label, total, stream, interval
        self.done = 0
        self._last = time.monotonic()

    def advance(self, n: int = 1) -> None:
        self.done += n
        if time.monotonic() - self._last >= self.interval:
            self.emit()

    def set_total(self, total: int | None) -> None:
        self.total = total

    def emit(self) -> None:
        self._last = time.monotonic()
        of = f"/{self.total:,}" if self.total else ""
        self.stream.write(f"{self.label}: {self.done:,}{of}\n")
        self.stream.flush()


class _RichBar:
    def __init__(self, bar: object, task: object) -> None:
        self._bar, self._task = bar, task

    def advance(self, n: int = 1) -> None:
        self._bar.advance(self._task, n)  # type: ignore[attr-defined]

    def set_total(self, total: int | None) -> None:
        self._bar.update(self._task, total=total)  # type: ignore[attr-defined]


SILENT: Progress = _Silent()


@contextmanager
def progress(
    label: str,
    total: int | None = None,
    *,
    stream: TextIO | None = None,
    enabled: bool = True,
    interval: float = 5.0,
) -> Iterator[Progress]:
    """Show progress of `label` on `stream` (stderr by default)."""
    out = stream or sys.stderr
    if not enabled:
        yield SILENT
        return
    if out.isatty():
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(file=out),
            transient=False,
        ) as bar:
            yield _RichBar(bar, bar.add_task(label, total=total))
        return
    plain = _PlainLines(label, total, out, interval)
    yield plain
    plain.emit()
