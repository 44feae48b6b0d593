"""What a person at the terminal sees while nowait waits: `nowait run`'s batch lines (plain
and live), the worker's log of its life, and the emulator refusing a busy port."""

from __future__ import annotations

import io
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console

from nowait.cli.router import _heartbeat
from nowait.present.run_progress import LiveTable, PlainLines, batch_line
from nowait.route.watch import BatchView, RunView
from nowait.store import open_store

NOW = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)
BIN = Path(sys.executable).parent


def batch(name: str, state: str, *, fallback: bool = True) -> BatchView:
    return BatchView(
        name=name, state=state, requests=1_200, sent_at=NOW - timedelta(minutes=3),
        finish_p50=NOW + timedelta(minutes=17), finish_p95=NOW + timedelta(hours=3),
        fallback_at=NOW + timedelta(hours=5) if fallback else None,
    )  # fmt: skip


def view(*batches: BatchView, delivered: int = 0) -> RunView:
    return RunView(NOW, batches, delivered, 1_500, {"in_batch": 1_200, "delivered": delivered})


def test_a_batch_line_says_state_size_age_forecast_and_fallback() -> None:
    line = batch_line(batch("msgbatch_01A", "created"), NOW)
    assert re.fullmatch(
        r"batch msgbatch_01A: created, 1,200 requests, 3 min old, forecast end \d\d:\d\d"
        r" \(p95 \d\d:\d\d\), real-time fallback at \d\d:\d\d",
        line,
    ), line
    assert "fallback" not in batch_line(batch("msgbatch_01A", "created", fallback=False), NOW)


def test_plain_lines_on_state_changes_and_a_heartbeat_at_most_once_a_minute() -> None:
    out = io.StringIO()
    lines = PlainLines(out, heartbeat=0.2)
    lines.update(view(batch("msgbatch_01A", "created")))
    lines.update(view(batch("msgbatch_01A", "created")))  # nothing new, too soon: silent
    assert out.getvalue().count("\n") == 1
    time.sleep(0.25)
    lines.update(view(batch("msgbatch_01A", "created")))
    assert out.getvalue().splitlines()[-1].startswith("waiting: results 0/1,500; 1 open batches")
    lines.update(view(batch("msgbatch_01A", "ended")))
    assert out.getvalue().splitlines()[-1].startswith("batch msgbatch_01A: ended")
    lines.update(view(delivered=1_500))
    lines.finish()
    assert out.getvalue().splitlines()[-2:] == [
        "batch msgbatch_01A: results collected",
        out.getvalue().splitlines()[-1],
    ]
    assert out.getvalue().splitlines()[-1].startswith("done: results 1,500/1,500")


@pytest.mark.parametrize("width", [80, 100, 120])
def test_the_live_table_keeps_batch_ids_whole(width: int) -> None:
    name = "msgbatch_01HJKQ7WZ3X9V5M2N8R4T6Y0AB"
    live = LiveTable()
    live.update(view(batch(name, "created"), batch("#12", "planned")))
    console = Console(width=width, file=io.StringIO(), record=True)
    console.print(live)
    text = console.export_text()
    assert name in text and "#12" in text and "results 0/1,500" in text
    assert "created" in text and "planned" in text


def test_the_worker_heartbeat_logs_what_the_store_holds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_store(tmp_path / "nowait.db")
    try:
        beat = _heartbeat(store, every=0.0)
        with caplog.at_level(logging.INFO, logger="nowait.cli.router"):
            beat(False)
        assert any(r.getMessage() == "alive: jobs none" for r in caplog.records)
    finally:
        store.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_emulator_refuses_a_busy_port_before_announcing_it() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [str(BIN / "nowait"), "emulator", "--port", str(port)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == f"nowait: error: port {port} is in use; pass --port"


def test_the_worker_logs_its_start_and_its_stop(tmp_path: Path) -> None:
    port = free_port()
    emulator = subprocess.Popen(
        [str(BIN / "nowait"), "emulator", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    env = {**os.environ, "ANTHROPIC_API_KEY": "sk-worker-log-key", "NOWAIT_HOME": str(tmp_path)}
    worker = subprocess.Popen(
        [str(BIN / "nowait"), "worker", "--base-url", f"http://127.0.0.1:{port}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert worker.stderr is not None
        first = worker.stderr.readline()
        assert "worker started: store " in first and str(tmp_path / "nowait.db") in first
        assert "settings from flags, environment and defaults (no nowait.toml)" in first
        time.sleep(1.0)
        worker.send_signal(signal.SIGINT)
        rest = worker.stderr.read()
        assert worker.wait(timeout=30) == 130
        assert "worker stopped (interrupted): every job is safe in the store" in rest
    finally:
        for proc in (worker, emulator):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                proc.wait(timeout=30)
        if worker.stderr:
            worker.stderr.close()
