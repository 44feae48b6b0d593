"""`nowait plan FILE`: prefix groups, their sizes, and the input cost with and without planning."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from nowait.sort.pricing import default_table

MODEL = "claude-haiku-4-5"
SYSTEM = "You label support tickets by product area and urgency. " * 300  # 4,125 tokens


def write_requests(path: Path, shared: int, alone: int) -> Path:
    lines = []
    for i in range(shared):
        params = {
            "model": MODEL,
            "max_tokens": 64,
            "system": SYSTEM,
            "messages": [{"role": "user", "content": f"Ticket {i}: export fails"}],
        }
        lines.append(json.dumps({"key": f"k{i}", "params": params}))
    for i in range(alone):
        params = {
            "model": MODEL,
            "max_tokens": 64,
            "messages": [{"role": "user", "content": f"q{i}"}],
        }
        lines.append(json.dumps({"key": f"o{i}", "params": params}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_plan_prices_the_shared_prefix_from_the_price_table(cli: Any, tmp_path: Path) -> None:
    file = write_requests(tmp_path / "requests.jsonl", shared=50, alone=3)
    result = cli("plan", str(file), "--json")
    assert result.code == 0, result.err
    out = json.loads(result.out)
    shared, alone = out["groups"]
    assert (shared["prefix_tokens"], shared["requests"], shared["planned"]) == (4125, 50, True)
    assert (alone["prefix_tokens"], alone["requests"], alone["planned"]) == (0, 3, False)
    price = default_table().lookup(MODEL)
    assert price is not None
    batch = price.rates.scaled(default_table().batch_discount)
    tails = shared["prompt_tokens"] - 50 * 4125
    expected = (4125 * (batch.cache_write_1h + 49 * batch.cache_read) + tails * batch.input) / 10**6
    micro = Decimal("0.000001")  # the JSON's dollars are to the millionth
    assert abs(Decimal(shared["with_planning_usd"]) - expected) <= micro
    plain = shared["prompt_tokens"] * batch.input / 10**6
    assert abs(Decimal(shared["plain_usd"]) - plain) <= micro
    assert Decimal(out["with_planning_usd"]) < Decimal(out["plain_usd"]) / 5


def test_keep_and_off_plan_nothing(cli: Any, tmp_path: Path, monkeypatch: Any) -> None:
    file = write_requests(tmp_path / "requests.jsonl", shared=10, alone=0)
    keep = json.loads(cli("plan", str(file), "--json", "--cache", "keep").out)
    assert keep["cache"] == "keep" and keep["plain_usd"] == keep["with_planning_usd"]
    monkeypatch.setenv("NOWAIT_CACHE", "off")
    assert json.loads(cli("plan", str(file), "--json").out)["cache"] == "off"


def test_plan_table(cli: Any, tmp_path: Path) -> None:
    file = write_requests(tmp_path / "requests.jsonl", shared=50, alone=3)
    result = cli("plan", str(file))
    assert result.code == 0
    assert "4,125" in result.out and "prefix 1" in result.out and "no shared prefix" in result.out


def test_bad_input_is_a_clear_error(cli: Any, tmp_path: Path) -> None:
    file = write_requests(tmp_path / "requests.jsonl", shared=2, alone=0)
    bad = cli("plan", str(file), "--cache", "sometimes")
    assert bad.code == 2 and "expected one of 'auto', 'keep' or 'off'" in bad.err
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"params": {"model": "x"\n')
    result = cli("plan", str(broken))
    assert result.code == 2 and "broken.jsonl:1" in result.err and "Traceback" not in result.err


def test_plan_loads_no_heavy_library(tmp_path: Path) -> None:
    file = write_requests(tmp_path / "requests.jsonl", shared=3, alone=0)
    code = (
        "import sys\nfrom nowait.cli import main\n"
        f"try:\n    main(['plan', {str(file)!r}])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('anthropic', 'duckdb', 'uvicorn') if m in sys.modules]\n"
        "print(heavy, file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False,
        env={"NOWAIT_HOME": str(tmp_path), "PATH": ""},
    )  # fmt: skip
    assert done.stderr.strip().splitlines()[-1] == "[]"
