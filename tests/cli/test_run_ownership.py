"""A run owns its jobs: its --out gets exactly its keys, a refused run leaves no trace, and
the exit code says whether every request succeeded."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nowait import EmulatorServer, open_store
from nowait.types import JobState


def write_requests(path: Path, keys: list[str]) -> Path:
    with path.open("w") as out:
        for key in keys:
            params = {"model": "claude-haiku-5-5", "max_tokens": 8,
                      "messages": [{"role": "user", "content": f"item {key}"}]}  # fmt: skip
            out.write(json.dumps({"key": key, "params": params, "awaited": True}) + "\n")
    return path


def keys_in(path: Path) -> list[str]:
    return sorted(json.loads(line)["key"] for line in path.read_text().splitlines())


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    with EmulatorServer() as running:
        yield running


def run(cli: Any, server: Any, requests: Path, home: Path, out: Path) -> Any:
    return cli("run", str(requests), "--home", str(home), "--out", str(out),
               "--base-url", server.base_url, "--poll", "0.05")  # fmt: skip


def test_a_refused_run_queues_nothing(tmp_path: Path, cli: Any, server: Any) -> None:
    home = tmp_path / "home"
    requests = write_requests(tmp_path / "b.jsonl", ["b1", "b2"])
    busy = open_store(home / "nowait.db")
    with busy.claim():  # another process is working on this home
        result = run(cli, server, requests, home, tmp_path / "b.out")
    assert result.code == 2 and "another nowait process" in result.err
    assert "Traceback" not in result.err
    assert busy.job_counts() == {}
    assert not (tmp_path / "b.out").exists()
    busy.close()


def test_out_gets_exactly_the_keys_of_its_file(tmp_path: Path, cli: Any, server: Any) -> None:
    home = tmp_path / "home"
    first = run(cli, server, write_requests(tmp_path / "a.jsonl", ["a1", "a2"]), home,
                tmp_path / "a.out")  # fmt: skip
    assert first.code == 0, first.err
    # Jobs another client left in the store: worked, but not this run's to deliver.
    from nowait import AnthropicBackend, Router

    backend = AnthropicBackend(api_key="test-key", base_url=server.base_url)
    other = Router(store=open_store(home / "nowait.db"), backend=backend)
    ask = {
        "model": "claude-haiku-5-5",
        "max_tokens": 8,
        "messages": [{"role": "user", "content": "x"}],
    }
    other.submit(ask, key="other", awaited=True)
    other.store.close()
    backend.close()

    second = run(cli, server, write_requests(tmp_path / "b.jsonl", ["b1", "b2"]), home,
                 tmp_path / "b.out")  # fmt: skip
    assert second.code == 0, second.err
    assert keys_in(tmp_path / "a.out") == ["a1", "a2"]
    assert keys_in(tmp_path / "b.out") == ["b1", "b2"]
    assert "2 results in" in second.err

    # The same file again, into a new file: every key of the input, though delivered before.
    again = run(cli, server, tmp_path / "a.jsonl", home, tmp_path / "a2.out")
    assert again.code == 0, again.err
    assert keys_in(tmp_path / "a2.out") == ["a1", "a2"]
    run_id = again.err.rsplit("(run ", 1)[1].split(")", 1)[0]
    listed = cli("results", "--home", str(home), "--run", run_id)
    assert sorted(json.loads(x)["key"] for x in listed.out.splitlines()) == ["a1", "a2"]
    missing = cli("results", "--home", str(home), "--run", "nope")
    assert missing.code == 2 and "--run" in missing.err


def test_exit_code_1_when_a_request_failed(tmp_path: Path, cli: Any, server: Any) -> None:
    requests = write_requests(tmp_path / "r.jsonl", ["bad", "ok"])
    server.emulator.fail_next(1, status=400, endpoint="messages")  # one request refused
    result = run(cli, server, requests, tmp_path / "home", tmp_path / "out.jsonl")
    assert result.code == 1, result.err
    assert "1 of 2 requests failed" in result.err and "ok" in result.err
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(x["key"] for x in lines) == ["bad", "ok"]
    assert sum(not x["ok"] for x in lines) == 1


@pytest.mark.parametrize("shape", ["folder", "missing-folder"])
def test_a_bad_out_is_refused_before_anything_is_queued(
    tmp_path: Path, cli: Any, server: Any, shape: str
) -> None:
    out = tmp_path if shape == "folder" else tmp_path / "missing" / "out.jsonl"
    home = tmp_path / "home"
    result = run(cli, server, write_requests(tmp_path / "r.jsonl", ["k"]), home, out)
    assert result.code == 2 and "--out" in result.err and "Traceback" not in result.err
    if (home / "nowait.db").exists():
        store = open_store(home / "nowait.db")
        assert store.job_counts() == {}
        store.close()


def test_ctrl_c_exits_130_without_a_traceback_and_the_run_carries_on(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from nowait.emulator import EmulatorConfig, Turnaround

    requests = tmp_path / "r.jsonl"
    with requests.open("w") as out:  # batch work: the run waits on the batch
        params = {"model": "claude-haiku-5-5", "max_tokens": 8,
                  "messages": [{"role": "user", "content": "x"}]}  # fmt: skip
        out.write(json.dumps({"key": "k", "params": params}) + "\n")
    home = tmp_path / "home"
    env = {**os.environ, "ANTHROPIC_API_KEY": "test-key"}
    with EmulatorServer(EmulatorConfig(turnaround=Turnaround(3600))) as server:
        command = [sys.executable, "-m", "nowait", "run", str(requests), "--home", str(home),
                   "--out", str(tmp_path / "out.jsonl"), "--base-url", server.base_url,
                   "--poll", "0.1"]  # fmt: skip
        process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not server.emulator.batch_ids() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server.emulator.batch_ids(), "the run never created its batch"
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    store = open_store(home / "nowait.db")
    # Stopped in the batch, or between its create and storing its id: either way the next
    # run carries on (reconciled, never sent twice).
    assert set(store.job_counts()) <= {JobState.IN_BATCH, JobState.SUBMITTING}
    assert sum(store.job_counts().values()) == 1
    store.close()
