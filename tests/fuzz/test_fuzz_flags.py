"""Bad values of the flags that take numbers and durations: exit 2 naming the flag, before
any work starts (no traceback, no OverflowError, no NaN taken as a number)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fuzzkit import run_cli

HUGE = ["99999999999d", "9" * 400 + "s", "401d", "1e999s"]
CASES = [
    *(("simulate", flag, value) for flag in ("--turnaround", "--turnaround-p95", "--buffer",
                                               "--call-time", "--cancel-time") for value in HUGE),
    ("simulate", "--turnaround-p95", "1s"),  # below the median (20m)
    ("simulate", "--noise", "nan"),
    ("simulate", "--noise", "2"),
    ("simulate", "--rpm", "inf"),
    ("simulate", "--rpm", "nan"),
    ("simulate", "--itpm", "1e300"),
    ("simulate", "--concurrency", "100000000"),
    ("simulate", "--margin", "99999999999d"),
    ("simulate", "--cancel-latency", "1e308"),
    ("simulate", "--min-batch-chance", "nan"),
    ("run", "--deadline", "99999999999d"),
    ("run", "--poll", "1e308"),
    ("run", "--poll", "nan"),
]  # fmt: skip


@pytest.mark.parametrize(("command", "flag", "value"), CASES)
def test_a_bad_flag_value_is_named(
    command: str, flag: str, value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    row = {"t": 1.0, "model": "claude-haiku-5-5", "input_tokens": 9, "output_tokens": 9}
    path = tmp_path / "input.jsonl"
    path.write_text(json.dumps(row) + "\n")
    out = ["--out", str(tmp_path / "out.jsonl")] if command == "run" else []
    result = run_cli(command, str(path), flag, value, *out)
    assert result.code == 2, (result.code, result.err)
    assert result.err.startswith(f"nowait: error: {flag}: "), result.err
    assert "Traceback" not in result.err and not (tmp_path / "out.jsonl").exists()
