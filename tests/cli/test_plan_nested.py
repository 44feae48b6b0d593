"""`nowait plan` prices nested prefix groups as the router runs them: the plan of a requests
file and what the emulator bills (through the official SDK, read back from the store's usage
rows, as receipts are) when `nowait run` sends the same file agree."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import closing
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from nowait.clock import SystemClock
from nowait.emulator import EmulatorConfig, EmulatorServer, Turnaround
from nowait.emulator.fakemodel import count_tokens
from nowait.present.cacheplan import cache_plan_table
from nowait.route.cacheforecast import forecast_groups
from nowait.route.cacheplan import CACHE_MIN_TOKENS, blocks, group_costs
from nowait.sort.pricing import MILLION, cost_of_totals, default_table
from nowait.store.sqlite import SQLiteStore
from nowait.types import Tier, Usage

MODEL = "claude-sonnet-4-6"
TOOL = {"name": "answer", "description": "record an answer", "input_schema": {"type": "object"}}
SYSTEM = "You answer questions about customer contracts, citing the clause. " * 250
MICRO = Decimal("0.000001")


def params(system: str, document: str, question: str) -> dict[str, Any]:
    """Tools and the system prompt shared by all (the outer level); a document shared by one
    customer's requests (the inner level); a question of its own."""
    content = [{"type": "text", "text": document}, {"type": "text", "text": question}]
    return {
        "model": MODEL,
        "max_tokens": 16,
        "tools": [TOOL],
        "system": system,
        "messages": [{"role": "user", "content": content}],
    }


def write_file(path: Path, customers: list[int], system: str = SYSTEM, words: int = 1_150) -> Path:
    lines = []
    for c, count in enumerate(customers):
        document = f"Contract of customer {c}: " + "clause " * words
        for i in range(count):
            line = {"key": f"c{c}-{i}", "params": params(system, document, f"Question {i}?")}
            lines.append(json.dumps({**line, "workload": "contracts"}))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    config = EmulatorConfig(turnaround=Turnaround(0.1))
    with EmulatorServer(config, SystemClock()) as server:
        yield server


def plan(cli: Any, file: Path, home: Path) -> dict[str, Any]:
    result = cli("plan", str(file), "--json", "--home", str(home))
    assert result.code == 0, result.err
    out: dict[str, Any] = json.loads(result.out)
    return out


def billed(home: Path) -> tuple[Usage, Decimal]:
    """The batch usage the run stored and its input side at batch prices (output left out:
    the plan prices input)."""
    with closing(SQLiteStore(home / "nowait.db")) as store:
        rows = [r for r in store.usage_rows() if r.tier is Tier.BATCH]
    usage = sum((r.usage for r in rows), Usage())
    cost = cost_of_totals(usage, sum(r.requests for r in rows), MODEL, Tier.BATCH)
    assert cost is not None
    return usage, cost.total - cost.output


def preamble(file: Path) -> int:
    """Tokens the emulator counts in each prompt that the plan's estimate does not see (the
    API's own framing of a request, cached with its prefix)."""
    found = set()
    for line in file.read_text().splitlines():
        p = json.loads(line)["params"]
        found.add(count_tokens(p) - sum(b.tokens for b in blocks(p)))
    (tokens,) = found
    return tokens


@pytest.mark.parametrize(
    ("customers", "writers"),
    [
        ([17, 17, 17], 3),  # each document pays: the shared prefix once, a document each
        ([17, 17, 17, 2], 3),  # two requests do not pay for their document: they read the rest
    ],
)
def test_the_plan_of_nested_groups_is_what_the_run_bills(
    cli: Any,
    tmp_path: Path,
    emulator: EmulatorServer,
    monkeypatch: pytest.MonkeyPatch,
    customers: list[int],
    writers: int,
) -> None:
    file, home = write_file(tmp_path / "requests.jsonl", customers), tmp_path / "home"
    before = plan(cli, file, home)  # no store yet: the planning model
    outer, *inner = before["groups"]
    assert (outer["name"], outer["level"], outer["parent"]) == (f"{MODEL} prefix 1", 1, None)
    assert outer["shared_level"] and outer["requests"] == sum(customers)
    assert [g["parent"] for g in inner] == [outer["name"]] * len(customers)
    assert [(g["level"], g["requests"]) for g in inner] == [(2, n) for n in customers]
    assert [g["planned"] for g in inner] == [n > 2 for n in customers]
    assert all(g["own_prefix_tokens"] == g["prefix_tokens"] - outer["prefix_tokens"] for g in inner)
    requests = sum(customers)
    assert before["requests"] == requests

    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    run = cli("run", str(file), "--home", str(home), "--out", str(tmp_path / "out.jsonl"),
              "--base-url", emulator.base_url, "--poll", "0.05")  # fmt: skip
    assert run.code == 0, run.err
    usage, cost = billed(home)

    # Level by level: one request writes the shared prefix (and its document), one more per
    # paying document writes only that; every other request reads. The emulator's preamble
    # goes with the outer level.
    extra = preamble(file)
    written = sum(g["cache_write_tokens"] for g in before["groups"])
    read = sum(g["cache_read_tokens"] for g in before["groups"])
    assert usage.cache_write_1h_tokens == written + extra
    assert usage.cache_read_tokens == read + (requests - 1) * extra
    assert usage.cache_write_5m_tokens == 0
    assert written == outer["prefix_tokens"] + writers * inner[0]["own_prefix_tokens"]

    # In dollars, before the run (the planning model's shares) and after it (the read share
    # the store learned from this very run): the plan is the bill, but for the preamble.
    after = plan(cli, file, home)
    assert all(g["read_share_source"].startswith("learned: contracts") for g in after["groups"]
               if g["planned"])  # fmt: skip
    rates = default_table().lookup(MODEL)
    assert rates is not None
    slack = requests * extra * rates.rates.cache_write_1h / MILLION + MICRO
    for figures in (before, after):
        assert abs(Decimal(figures["expected_usd"]) - cost) <= slack, (figures, cost)
    assert Decimal(before["expected_usd"]) == Decimal(before["with_planning_usd"])
    assert Decimal(before["with_planning_usd"]) < Decimal(before["plain_usd"]) / 3


def test_levels_too_short_to_cache_are_priced_fresh(
    cli: Any, tmp_path: Path, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    system = "Answer briefly. " * 30  # the shared prefix and a document stay under the minimum
    file = write_file(tmp_path / "requests.jsonl", [10, 10], system=system, words=100)
    first = json.loads(file.read_text().splitlines()[0])["params"]
    assert sum(b.tokens for b in blocks(first)[:-1]) < CACHE_MIN_TOKENS
    home = tmp_path / "home"
    planned = plan(cli, file, home)
    assert [g["planned"] for g in planned["groups"]] == [False, False]
    assert not any(g["shared_level"] for g in planned["groups"])
    assert planned["with_planning_usd"] == planned["plain_usd"] == planned["expected_usd"]

    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    run = cli("run", str(file), "--home", str(home), "--out", str(tmp_path / "out.jsonl"),
              "--base-url", emulator.base_url, "--poll", "0.05")  # fmt: skip
    assert run.code == 0, run.err
    usage, cost = billed(home)
    assert usage.cache_read_tokens == usage.cache_write_1h_tokens == 0
    rates = default_table().lookup(MODEL)
    assert rates is not None
    slack = 20 * preamble(file) * rates.rates.input / MILLION + MICRO
    assert abs(Decimal(planned["plain_usd"]) - cost) <= slack


@pytest.mark.parametrize("width", [80, 120])
def test_the_nesting_is_drawn_indented(tmp_path: Path, width: int) -> None:
    file = write_file(tmp_path / "requests.jsonl", [5, 5, 5])
    requests = [json.loads(line)["params"] for line in file.read_text().splitlines()]
    table = default_table()
    forecasts = forecast_groups(group_costs(requests, table, "auto"), [None] * 15, table)
    console = Console(width=width, file=io.StringIO(), record=True)
    console.print(cache_plan_table(forecasts, "auto"))
    lines = console.export_text().splitlines()
    assert all(len(line) <= width for line in lines) and "…" not in "".join(lines)
    top = next(n for n, line in enumerate(lines) if line.startswith(f"{MODEL} prefix 1"))
    children = [n for n, line in enumerate(lines) if line.startswith("  prefix 1.")]
    assert len(children) == 3 and all(n > top for n in children)
    assert all("+2,0" in lines[n] or lines[n + 1].startswith("    prefix tokens: +2,0")
               for n in children)  # fmt: skip
    assert "written once and read by all" in " ".join(lines)


def test_bad_input_is_still_a_clear_error(cli: Any, tmp_path: Path) -> None:
    file = write_file(tmp_path / "requests.jsonl", [3, 3])
    with file.open("a") as out:
        out.write('{"key": "late", "params": {"model": "x", "max_tokens": 0, "messages": [{}]}}\n')
    result = cli("plan", str(file), "--home", str(tmp_path / "home"))
    assert result.code == 2 and "requests.jsonl:7: params.max_tokens" in result.err
    assert "Traceback" not in result.err
