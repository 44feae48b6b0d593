"""Validation at the door: every request is checked before anything is queued, with the same
rules for both routes; a refused line is named by file, line and field. Real SDK types, real
emulator over HTTP, real SQLite."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from nowait.clock import SystemClock
from nowait.emulator import EmulatorConfig, EmulatorServer, Turnaround
from nowait.errors import InputError
from nowait.route.router import Router
from nowait.store.sqlite import SQLiteStore
from router_helpers import ask


def line(key: str, params: dict[str, Any] | str, **extra: Any) -> str:
    if isinstance(params, str):  # raw JSON text: NaN and friends json.dumps would not write
        return f'{{"key": "{key}", "params": {params}}}\n'
    return json.dumps({"key": key, "params": params, **extra}) + "\n"


MIXED = (
    line("batch-0", ask(0))
    + line("rt-0", ask(1), awaited=True)
    + line("unknown", {**ask(2), "temperature": 0.2})  # line 3: gone from anthropic 2.13
    + line("nan", '{"model": "claude-haiku-5-5", "max_tokens": NaN, "messages": []}')  # 4
    + line("batch-1", ask(3))
    + line("huge", '{"model": "claude-haiku-5-5", "max_tokens": 1e999, "messages": []}')  # 6
    + '{"key": "lone", "params": {"model": "claude-haiku-5-5", "max_tokens": 8,'
    ' "messages": [{"role": "user", "content": "\\ud800"}]}}\n'  # 7: a lone surrogate
)
REFUSED = {
    "requests.jsonl:3: params.temperature: unknown parameter 'temperature'",
    "requests.jsonl:4: params.max_tokens: got nan",
    "requests.jsonl:6: params.max_tokens: got inf",
    "requests.jsonl:7: params.messages.0.content: invalid Unicode",
}


@pytest.fixture
def server() -> Any:
    with EmulatorServer(EmulatorConfig(turnaround=Turnaround(0.2)), SystemClock()) as made:
        yield made


def test_a_file_with_bad_lines_is_refused_whole_or_run_without_them(
    tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch, server: Any
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    requests, home, out = tmp_path / "requests.jsonl", tmp_path / "home", tmp_path / "out.jsonl"
    requests.write_text(MIXED)
    run = ("run", str(requests), "--home", str(home), "--out", str(out))
    options = ("--base-url", server.base_url, "--poll", "0.1")

    refused = cli(*run, *options)
    assert refused.code == 2 and "Traceback" not in refused.err
    assert "requests.jsonl:3: params.temperature: unknown parameter 'temperature'" in refused.err
    assert "params.extra_body" in refused.err  # how to send it anyway
    assert "3 more bad lines: 4, 6, 7" in refused.err and "--skip-bad" in refused.err
    assert not (home / "nowait.db").exists()  # no store touched
    assert server.emulator.batch_ids() == [] and not out.exists()

    for _ in range(2):  # the second run finds everything delivered: no crash, no duplicate
        done = cli(*run, *options, "--skip-bad")
        assert done.code == 1, done.err  # bad lines were left out: not every request succeeded
        assert all(any(r in err for err in done.err.splitlines()) for r in REFUSED), done.err
    lines = [json.loads(text) for text in out.read_text().splitlines()]
    assert Counter(d["key"] for d in lines) == {"batch-0": 1, "rt-0": 1, "batch-1": 1}
    assert all(d["ok"] for d in lines)
    assert {d["key"]: d["route"] for d in lines}["rt-0"] == "realtime"
    assert len(server.emulator.batch_ids()) == 1


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({**ask(0), "top_k": 5}, "params.top_k", "unknown parameter 'top_k'"),
        ({**ask(0), "max_tokens": float("nan")}, "params.max_tokens", "finite"),
        ({**ask(0), "max_tokens": 200_000}, "params.max_tokens", "at most 128,000"),
        ({**ask(0), "max_tokens": True}, "params.max_tokens", "needs max_tokens"),
        ({**ask(0), "metadata": {"user_id": 7}}, "params.metadata.user_id", "valid string"),
        ({**ask(0), "system": "\udc80"}, "params.system", "lone surrogate"),
        ({**ask(0), "stop_sequences": [2**70]}, "params.stop_sequences.0", "64-bit"),
        (
            {**ask(0), "messages": [{"role": "robot", "content": "hi"}]},
            "params.messages.0.role",
            "Input should be",
        ),
        (
            {**ask(0), "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
            "params.messages.0.content.0.text",
            "valid string",
        ),
        ({**ask(0), "extra_body": ["temperature"]}, "params.extra_body", "an object"),
        (
            {**ask(0), "extra_body": {"temperature": float("inf")}},
            "params.extra_body.temperature",
            "finite",
        ),
    ],
)
def test_submit_refuses_a_bad_request_naming_the_field(
    tmp_path: Path, params: dict[str, Any], field: str, words: str
) -> None:
    router = Router(store=SQLiteStore(tmp_path / "nowait.db"), backend=None)  # type: ignore[arg-type]
    with pytest.raises(InputError) as refused:
        router.submit(params, key="k", deadline=datetime(2030, 1, 1, tzinfo=UTC))
    assert refused.value.field == field and words in str(refused.value)
    assert router.store.job_counts() == {}
    router.store.close()


def test_extra_body_reaches_the_api_on_both_routes(
    tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch, server: Any
) -> None:
    """Extras are forwarded as they are: here one the API (version 2026-10-21) refuses, so
    both routes come back with the API's own word on it."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    requests, out = tmp_path / "requests.jsonl", tmp_path / "out.jsonl"
    extra = {"extra_body": {"temperature": 0.3}}
    requests.write_text(
        line("rt", {**ask(0), **extra}, awaited=True)
        + line("batch", {**ask(1), **extra})
        + line("plain", ask(2))
    )
    done = cli(
        "run", str(requests), "--out", str(out), "--base-url", server.base_url, "--poll", "0.1"
    )
    assert done.code == 1, done.err  # two requests failed
    lines = {d["key"]: d for d in map(json.loads, out.read_text().splitlines())}
    assert lines["plain"]["ok"]
    for key in ("rt", "batch"):
        assert not lines[key]["ok"] and "temperature" in lines[key]["error"], lines[key]
