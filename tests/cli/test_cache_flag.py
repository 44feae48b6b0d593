"""`--cache` on `nowait run` and `nowait worker`: the flag beats NOWAIT_CACHE and nowait.toml,
and reaches the worker (the emulator's usage says whether the prefix was read from cache)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

SYSTEM = "You label support tickets by product area and urgency. " * 300  # ~4,000 tokens


def write_tickets(path: Path, count: int) -> None:
    with path.open("w") as out:
        for i in range(count):
            params = {
                "model": "claude-haiku-5-5",
                "max_tokens": 8,
                "system": SYSTEM,
                "messages": [{"role": "user", "content": f"Ticket {i}: export is broken."}],
            }
            out.write(json.dumps({"key": f"k{i}", "params": params}) + "\n")


def cache_reads(out: Path) -> int:
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 6 and all(line["ok"] for line in lines)
    return sum(line["message"]["usage"]["cache_read_input_tokens"] > 0 for line in lines)


@pytest.mark.parametrize(("flag", "reads"), [(None, 5), ("off", 0), ("keep", 0), ("auto", 5)])
def test_the_cache_flag_of_run_wins_over_the_environment_and_the_file(
    tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch, flag: str | None, reads: int
) -> None:
    from nowait.clock import SystemClock
    from nowait.emulator import EmulatorConfig, EmulatorServer, Turnaround

    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    monkeypatch.setenv("NOWAIT_CACHE", "auto")
    home = tmp_path / "home"
    home.mkdir()
    (home / "nowait.toml").write_text('cache = "off"\n')  # the environment beats the file
    write_tickets(tmp_path / "requests.jsonl", 6)
    out = tmp_path / "out.jsonl"
    args = ["run", str(tmp_path / "requests.jsonl"), "--home", str(home), "--out", str(out)]
    args += ["--poll", "0.05"] + (["--cache", flag] if flag else [])
    with EmulatorServer(EmulatorConfig(turnaround=Turnaround(0.1)), SystemClock()) as server:
        result = cli(*args, "--base-url", server.base_url)
    assert result.code == 0, result.err
    assert cache_reads(out) == reads


@pytest.mark.parametrize("command", ["run", "worker", "config", "plan"])
def test_the_cache_flag_is_documented(cli: Any, command: str) -> None:
    result = cli(command, "--help")
    assert result.code == 0
    assert "--cache" in result.out and "keep" in result.out


def test_a_bad_cache_flag_is_a_clear_error(tmp_path: Path, cli: Any) -> None:
    result = cli("worker", "--home", str(tmp_path), "--cache", "always")
    assert result.code == 2
    assert "--cache: got 'always'" in result.err and "Traceback" not in result.err


def test_config_shows_the_cache_flag_as_its_source(tmp_path: Path, cli: Any) -> None:
    result = cli("config", "--home", str(tmp_path), "--cache", "keep", "--json")
    assert result.code == 0, result.err
    cache = json.loads(result.out)["settings"]["cache"]
    assert cache["value"] == "keep" and cache["source"] == "flag" and cache["flag"] == "--cache"
