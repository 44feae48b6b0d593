"""`nowait run` input checking: a bad line is reported with its number and nothing is queued."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

GOOD = {
    "key": "a",
    "params": {
        "model": "claude-haiku-5-5",
        "max_tokens": 8,
        "messages": [{"role": "user", "content": "hi"}],
    },
}


@pytest.mark.parametrize(
    ("bad_line", "expected"),
    [
        ("{not json", "requests.jsonl:2: not JSON"),
        (
            json.dumps({"params": {"model": "m", "max_tokens": 0, "messages": [{}]}}),
            "requests.jsonl:2: params.max_tokens: got 0",
        ),
        (json.dumps({"params": {"max_tokens": 5, "messages": [{}]}}), "params.model: got None"),
        (json.dumps({**GOOD, "deadline": "soon"}), "deadline: got 'soon'"),
        (json.dumps({**GOOD, "awaited": "yes"}), "awaited: got 'yes' (expected true or false)"),
        (json.dumps({**GOOD, "colour": "red"}), "colour: unknown field"),
        (
            json.dumps({"key": "b", "params": {**GOOD["params"], "stream": True}}),  # type: ignore[dict-item]
            "requests.jsonl:2: params.stream: nowait collects whole results",
        ),
        (
            json.dumps({**GOOD, "params": {**GOOD["params"], "max_tokens": 9}}),  # type: ignore[dict-item]
            "requests.jsonl:2: key: 'a' is also the key of line 1 (expected one line per key)",
        ),
    ],
)
def test_bad_lines_are_named_and_nothing_is_queued(
    tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch, bad_line: str, expected: str
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    requests = tmp_path / "requests.jsonl"
    requests.write_text(json.dumps(GOOD) + "\n" + bad_line + "\n")
    result = cli(
        "run", str(requests), "--home", str(tmp_path / "home"), "--base-url", "http://127.0.0.1:9"
    )
    assert result.code == 2
    assert expected in result.err and "Traceback" not in result.err
    assert not (tmp_path / "home" / "nowait.db").exists()  # no store touched


def test_missing_api_key_is_a_clear_error(tmp_path: Path, cli: Any) -> None:
    requests = tmp_path / "requests.jsonl"
    requests.write_text(json.dumps(GOOD) + "\n")
    result = cli("run", str(requests), "--home", str(tmp_path / "home"))
    assert result.code == 2 and "ANTHROPIC_API_KEY" in result.err


def test_missing_file_is_a_clear_error(
    tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    result = cli("run", str(tmp_path / "nope.jsonl"), "--home", str(tmp_path / "home"))
    assert result.code == 2 and "nope.jsonl: no such file" in result.err


SECRET = "sk-ant-api03-NOWAIT-LEAK-CANARY-7f3a9c"


def write_lines(path: Path, count: int, workload: str = "nightly") -> None:
    with path.open("w") as out:
        for i in range(count):
            params = {**GOOD["params"], "messages": [{"role": "user", "content": f"item {i}"}]}  # type: ignore[dict-item]
            line = {"key": f"k{i}", "params": params, "awaited": i == 0, "workload": workload}
            out.write(json.dumps(line) + "\n")


def run_args(tmp_path: Path, base_url: str) -> list[str]:
    requests, home = tmp_path / "requests.jsonl", tmp_path / "home"
    out = tmp_path / "out.jsonl"
    return ["run", str(requests), "--home", str(home), "--out", str(out), "--base-url", base_url,
            "--poll", "0.05"]  # fmt: skip


def test_a_wrong_key_stops_with_a_clear_error_and_a_rerun_carries_on(
    tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nowait.clock import SystemClock
    from nowait.emulator import EmulatorConfig, EmulatorServer, Turnaround

    write_lines(tmp_path / "requests.jsonl", 4)
    home = str(tmp_path / "home")
    config = EmulatorConfig(api_keys=frozenset({"right-key"}), turnaround=Turnaround(0.1))
    with EmulatorServer(config, SystemClock()) as server:
        monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
        refused = cli(*run_args(tmp_path, server.base_url))
        status = cli("status", "--home", home, "--json")
        results = cli("results", "--home", home)
        assert refused.code == 2, refused.err
        assert "refused the credentials" in refused.err and "Traceback" not in refused.err
        jobs = json.loads(status.out)["jobs"]
        assert "failed" not in jobs and sum(jobs.values()) == 4  # nothing marked failed
        monkeypatch.setenv("ANTHROPIC_API_KEY", "right-key")
        again = cli(*run_args(tmp_path, server.base_url))
        assert again.code == 0, again.err
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(line["key"] for line in lines) == [f"k{i}" for i in range(4)]
    assert all(line["ok"] for line in lines)
    outputs = [refused, status, results, again, cli("status", "--home", home)]
    outputs.append(cli("results", "--home", home))
    for output in outputs:
        assert SECRET not in output.out and SECRET not in output.err
    for stored in (tmp_path / "home").iterdir():  # the database, its WAL, the lock file
        assert SECRET.encode() not in stored.read_bytes(), stored.name


def test_a_rerun_receipt_covers_the_run_input(
    tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nowait.clock import SystemClock
    from nowait.emulator import EmulatorConfig, EmulatorServer, Turnaround

    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    write_lines(tmp_path / "requests.jsonl", 3, workload="digest")
    with EmulatorServer(EmulatorConfig(turnaround=Turnaround(0.1)), SystemClock()) as server:
        assert cli(*run_args(tmp_path, server.base_url)).code == 0
        rerun = cli(*run_args(tmp_path, server.base_url))  # every key already known
    assert rerun.code == 0, rerun.err
    assert "digest" in rerun.out  # the receipt has this input's line, not an empty table


def test_a_second_worker_on_one_store_is_refused(
    tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nowait.store.sqlite import SQLiteStore

    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    home = tmp_path / "home"
    store = SQLiteStore(home / "nowait.db")
    with store.claim():
        result = cli("worker", "--home", str(home), "--base-url", "http://127.0.0.1:9")
    store.close()
    assert result.code == 2
    assert "another nowait process is working on" in result.err and "Traceback" not in result.err


@pytest.fixture
def fresh_database(postgres_dsn: str) -> Iterator[str]:
    """A database of its own on the session's PostgreSQL server, dropped afterwards."""
    import uuid

    import psycopg

    name = "cli_" + uuid.uuid4().hex[:16]
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    yield postgres_dsn.rpartition("/")[0] + "/" + name
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.mark.postgres
def test_run_and_status_on_a_postgres_store(
    tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch, fresh_database: str
) -> None:
    from nowait.clock import SystemClock
    from nowait.emulator import EmulatorConfig, EmulatorServer, Turnaround

    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    write_lines(tmp_path / "requests.jsonl", 3, workload="digest")
    with EmulatorServer(EmulatorConfig(turnaround=Turnaround(0.1)), SystemClock()) as server:
        result = cli(*run_args(tmp_path, server.base_url), "--store", fresh_database)
    assert result.code == 0, result.err
    assert "digest" in result.out
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(line["key"] for line in lines) == ["k0", "k1", "k2"]
    monkeypatch.setenv("NOWAIT_STORE", fresh_database)  # the option's environment variable
    status = cli("status", "--json")
    assert status.code == 0, status.err
    assert json.loads(status.out)["jobs"] == {"delivered": 3}
    assert not (tmp_path / "home" / "nowait.db").exists()  # nothing went to --home


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://nowait:pw-CANARY-1@db/nowait", "is not a postgresql://… URL"),
        (
            "postgresql://nowait:pw-CANARY-1@127.0.0.1:1/nowait?connect_timeout=2",
            "cannot connect to PostgreSQL at postgresql://nowait:***@127.0.0.1:1/nowait",
        ),
    ],
)
def test_a_bad_store_url_is_a_clear_error_without_the_password(
    cli: Any, url: str, expected: str
) -> None:
    for command in ("status", "results"):
        result = cli(command, "--store", url)
        assert result.code == 2, result.err
        assert expected in result.err and "Traceback" not in result.err
        assert "pw-CANARY-1" not in result.err + result.out
