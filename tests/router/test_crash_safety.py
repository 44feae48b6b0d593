"""Kill a real `nowait run` process with SIGKILL at each step, restart it, and check that no
request was lost, none was sent to the API twice, and no result was delivered twice.

The killed run is the real command line with a crash point installed (`crash_runner.py`);
the run that finishes the work is plain `python -m nowait run`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from nowait.clock import SystemClock
from nowait.emulator import EmulatorConfig, EmulatorServer, Turnaround

N_BATCH, N_REALTIME = 24, 4


def write_requests(path: Path) -> None:
    with path.open("w") as out:
        for i in range(N_BATCH + N_REALTIME):
            params = {
                "model": "claude-haiku-5-5",
                "max_tokens": 16,
                "messages": [{"role": "user", "content": f"item {i}"}],
            }
            out.write(
                json.dumps({"key": f"k{i}", "params": params, "awaited": i < N_REALTIME}) + "\n"
            )


CRASH_RUNNER = Path(__file__).parent.parent / "crash_runner.py"


def run(
    requests: Path,
    home: Path,
    out: Path,
    base_url: str,
    crash_at: str | None,
    store_url: str | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANTHROPIC_API_KEY": "test-key", "NOWAIT_HOME": str(home)}
    if store_url:
        env["NOWAIT_STORE"] = store_url
    if crash_at:  # "point:n"
        point, n = crash_at.split(":")
        program = [sys.executable, str(CRASH_RUNNER), point, n]
    else:
        program = [sys.executable, "-m", "nowait"]
    command = [
        *program,
        "run",
        str(requests),
        "--out",
        str(out),
        "--base-url",
        base_url,
        "--poll",
        "0.1",
    ]
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize(
    "crash_at",
    [
        "batch_planned:1",  # intent stored, create never called
        "submit_started:1",  # the create call is about to start: it may or may not happen
        "batch_created:1",  # the API has the batch, its id was never stored
        "batch_ended:1",  # the batch ended, results not collected
        "result_line:10",  # mid results chunk: lines read, none applied
        "realtime_answered:2",  # a real-time answer arrived but was not stored
        "result_written:1",  # the sink wrote a result that was never acknowledged
        "result_written:20",
    ],
)
@pytest.mark.parametrize(
    "store", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_kill_and_restart_loses_nothing_and_repeats_nothing(
    tmp_path: Path, crash_at: str, store: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("pg_database") if store == "postgresql" else None
    config = EmulatorConfig(turnaround=Turnaround(0.5))
    with EmulatorServer(config, SystemClock()) as server:
        requests, home, out = tmp_path / "requests.jsonl", tmp_path / "home", tmp_path / "out.jsonl"
        write_requests(requests)
        killed = run(requests, home, out, server.base_url, crash_at, url)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        finished = run(requests, home, out, server.base_url, None, url)
        assert finished.returncode == 0, finished.stderr
        emulator = server.emulator
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        delivered = Counter(line["key"] for line in lines)
        assert set(delivered) == {f"k{i}" for i in range(N_BATCH + N_REALTIME)}  # none lost
        assert max(delivered.values()) == 1  # none delivered twice
        assert all(line["ok"] for line in lines)
        sent_in_batches = Counter(
            cid.split("-a")[0] for b in emulator.batch_ids() for cid in emulator.batch_custom_ids(b)
        )
        assert sum(sent_in_batches.values()) == N_BATCH  # no batch request sent twice
        if crash_at.startswith("realtime"):
            # The Messages API has no idempotency key: calls answered but not yet stored when
            # the process died are sent again (at most the ones in flight), never delivered twice.
            assert N_REALTIME < emulator.calls["messages"] <= 2 * N_REALTIME
        else:
            assert emulator.calls["messages"] == N_REALTIME


def test_status_and_results_read_the_store(tmp_path: Path, cli: Any) -> None:
    with EmulatorServer(EmulatorConfig(turnaround=Turnaround(0.2)), SystemClock()) as server:
        requests, home, out = tmp_path / "requests.jsonl", tmp_path / "home", tmp_path / "out.jsonl"
        write_requests(requests)
        assert run(requests, home, out, server.base_url, None).returncode == 0
    status = cli("status", "--home", str(home), "--json")
    assert status.code == 0, status.err
    body = json.loads(status.out)
    assert body["jobs"] == {"delivered": N_BATCH + N_REALTIME}
    assert body["batches"]["collected"] >= 1
    total = body["receipt"]["total"]
    assert total["requests"] == {"batch": N_BATCH, "standard": N_REALTIME}
    assert float(total["saved"]) > 0
    results = cli("results", "--home", str(home), "--key", "k7")
    assert json.loads(results.out)["key"] == "k7"
