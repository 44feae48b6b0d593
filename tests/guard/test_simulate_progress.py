"""`nowait simulate` shows how far into its trace it has read, in bytes, on a terminal only."""

from __future__ import annotations

import sys
from pathlib import Path

from nowait.simulate.trace import read_trace, write_trace
from terminal_capture import stderr_shown


def test_the_trace_reader_reports_every_byte_of_the_file(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    write_trace(trace, 2_000, days=1)
    steps: list[int] = []
    requests = read_trace(trace, on_bytes=steps.append)
    assert len(requests) == 2_000
    assert sum(steps) == trace.stat().st_size and len(steps) > 100 and min(steps) > 0


def _simulate_on(stderr_tty: bool, trace: Path) -> str:
    command = [sys.executable, "-c", "from nowait.cli import main; main()", "simulate", str(trace)]
    return stderr_shown(command, stderr_tty)


def test_bytes_read_show_on_a_terminal_and_nothing_when_piped(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    write_trace(trace, 3_000, days=1)
    assert "trace read (bytes)" in _simulate_on(True, trace)
    assert "trace read" not in _simulate_on(False, trace)
