"""`nowait run` input checking: a bad line is reported with its number and nothing is queued."""

from __future__ import annotations

import json
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
    status = cli("status", "--home", str(tmp_path / "home"), "--json")
    assert json.loads(status.out)["jobs"] == {}


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
    assert result.code == 2 and "nope.jsonl: cannot read it" in result.err
