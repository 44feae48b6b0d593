"""`nowait submit` now, `nowait collect` later: nothing lost across processes, each key once,
exit code 0 when the run is complete and 75 when not yet."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nowait import EmulatorConfig, EmulatorServer
from nowait.guard.turnaround import Turnaround

KEYS = ["n1", "n2", "n3", "chat"]


def write_requests(path: Path) -> Path:
    with path.open("w") as out:
        for key in KEYS:
            params = {"model": "claude-haiku-5-5", "max_tokens": 8,
                      "messages": [{"role": "user", "content": f"item {key}"}]}  # fmt: skip
            line: dict[str, Any] = {"key": key, "params": params, "workload": "nightly"}
            if key == "chat":
                line["awaited"] = True
            out.write(json.dumps(line) + "\n")
    return path


def keys_in(path: Path) -> list[str]:
    return sorted(json.loads(line)["key"] for line in path.read_text().splitlines())


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    with EmulatorServer(EmulatorConfig(turnaround=Turnaround(1.0))) as running:
        yield running


def nowait(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nowait", *args], capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip


def test_a_submitted_run_survives_its_process_and_collect_finds_every_key(
    tmp_path: Path, cli: Any, server: Any
) -> None:
    home = str(tmp_path / "home")
    requests = write_requests(tmp_path / "requests.jsonl")
    submitted = nowait("submit", str(requests), "--deadline", "6h", "--home", home, "--json")
    assert submitted.returncode == 0, submitted.stderr
    run = json.loads(submitted.stdout)["run"]  # the submitting process is gone

    early = cli("collect", run, "--home", home, "--out", str(tmp_path / "early.jsonl"))
    assert early.code == 75, early.err  # nothing has worked on it yet
    assert (tmp_path / "early.jsonl").read_text() == ""

    # A worker starts, and is killed at once (before or after some of the work).
    worker = subprocess.Popen(
        [sys.executable, "-m", "nowait", "worker", "--home", home, "--poll", "0.05",
         "--base-url", server.base_url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        worker.wait(timeout=1.5)
    except subprocess.TimeoutExpired:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()

    out = tmp_path / "results.jsonl"
    finished = nowait("collect", run, "--home", home, "--out", str(out), "--wait",
                      "--base-url", server.base_url)  # fmt: skip
    assert finished.returncode == 0, finished.stderr
    assert keys_in(out) == sorted(KEYS)  # every key, exactly once
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert all(x["ok"] and x["message"]["type"] == "message" for x in lines)
    assert {x["key"]: x["tier"] for x in lines}["n1"] == "batch"

    again = cli("collect", run, "--home", home, "--out", str(out))
    assert again.code == 0, again.err
    assert keys_in(out) == sorted(KEYS)  # collecting twice writes nothing twice
    elsewhere = cli("collect", run, "--home", home, "--out", str(tmp_path / "copy.jsonl"))
    assert elsewhere.code == 0 and keys_in(tmp_path / "copy.jsonl") == sorted(KEYS)


def test_collect_is_75_until_a_worker_finishes_the_run_then_0(
    tmp_path: Path, cli: Any, server: Any
) -> None:
    home = str(tmp_path / "home")
    submitted = cli("submit", str(write_requests(tmp_path / "r.jsonl")), "--home", home,
                    "--deadline", "6h")  # fmt: skip
    assert submitted.code == 0, submitted.err
    run = submitted.out.strip()
    out = tmp_path / "out.jsonl"
    assert cli("collect", run, "--home", home, "--out", str(out)).code == 75

    worker = subprocess.Popen(
        [sys.executable, "-m", "nowait", "worker", "--home", home, "--poll", "0.05",
         "--base-url", server.base_url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        codes = []
        for _ in range(200):
            result = cli("collect", run, "--home", home, "--out", str(out))
            codes.append(result.code)
            if result.code != 75:
                break
            time.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGINT)
        worker.wait(timeout=30)
    assert codes[-1] == 0, codes
    assert set(codes[:-1]) <= {75}
    assert keys_in(out) == sorted(KEYS)


def test_collect_of_an_unknown_run_is_a_clear_error(tmp_path: Path, cli: Any, server: Any) -> None:
    result = cli("collect", "nope", "--home", str(tmp_path / "home"),
                 "--out", str(tmp_path / "o.jsonl"))  # fmt: skip
    assert result.code == 2 and "no run with id 'nope'" in result.err
    assert "Traceback" not in result.err


def test_submit_refuses_a_bad_file_and_queues_nothing(
    tmp_path: Path, cli: Any, server: Any
) -> None:
    requests = write_requests(tmp_path / "r.jsonl")
    with requests.open("a") as file:
        file.write("{not json\n")
    result = cli("submit", str(requests), "--home", str(tmp_path / "home"))
    assert result.code == 2 and "r.jsonl:5" in result.err
    assert not (tmp_path / "home" / "nowait.db").exists()  # no store touched


def test_submit_and_collect_need_no_api_key_only_the_work_does(
    tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    home = str(tmp_path / "home")
    submitted = cli("submit", str(write_requests(tmp_path / "r.jsonl")), "--home", home)
    assert submitted.code == 0, submitted.err
    run = submitted.out.strip()
    out = str(tmp_path / "o.jsonl")
    assert cli("collect", run, "--home", home, "--out", out).code == 75
    working = cli("collect", run, "--home", home, "--out", out, "--wait")
    assert working.code == 2 and "ANTHROPIC_API_KEY" in working.err


def test_a_results_file_another_process_is_writing_is_refused_and_left_whole(
    tmp_path: Path, cli: Any, server: Any
) -> None:
    home = str(tmp_path / "home")
    requests = write_requests(tmp_path / "requests.jsonl")
    submitted = nowait("submit", str(requests), "--home", home, "--json")
    run = json.loads(submitted.stdout)["run"]
    out = tmp_path / "results.jsonl"
    out.write_text('{"key": "earlier", "state": "succeeded"}\n')
    holder = subprocess.Popen(  # another worker appending to the same file
        [sys.executable, "-c", "import sys; from nowait.route.router import JsonlSink;"
         " s = JsonlSink(sys.argv[1]); print('ready', flush=True); sys.stdin.read()", str(out)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
        refused = cli("collect", run, "--home", home, "--out", str(out), "--wait",
                      "--base-url", server.base_url)  # fmt: skip
        assert refused.code == 2 and "Traceback" not in refused.err
        assert f"{out} is being written by another process" in refused.err
        assert keys_in(out) == ["earlier"]  # untouched
    finally:
        holder.communicate("")
    done = cli("collect", run, "--home", home, "--out", str(out), "--wait",
               "--base-url", server.base_url)  # fmt: skip
    assert done.code == 0, done.err  # its writer gone, the file is free
    assert keys_in(out) == sorted(["earlier", *KEYS])
