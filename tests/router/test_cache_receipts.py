"""Receipts measure the cache: the official SDK against the emulator, a real SQLite file, the
5-minute and 1-hour writes kept apart from the API's usage to the receipt."""

from __future__ import annotations

import io
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from nowait.clock import FakeClock
from nowait.present.tables import receipt_json, receipt_table
from nowait.route.backend import AnthropicBackend
from nowait.route.receipts import build_receipt
from nowait.route.router import Delivery, Router
from nowait.route.worker import WorkerConfig
from nowait.sort.pricing import cost_of_totals, default_table
from nowait.store.sqlite import SQLiteStore
from nowait.types import Tier, Usage

MODEL = "claude-haiku-5-5"
SYSTEM = "You label support tickets by product area and urgency. " * 300  # ~4,000 tokens


@pytest.fixture
def router(tmp_path: Path, fake_clock: FakeClock, emulator_server: Any) -> Iterator[Router]:
    backend = AnthropicBackend(api_key="test-key", base_url=emulator_server.base_url)
    store = SQLiteStore(tmp_path / "nowait.db")
    made = Router(store=store, backend=backend, clock=fake_clock, worker=WorkerConfig(cache="auto"))
    yield made
    backend.close()
    store.close()


def ticket(i: int, system: Any = SYSTEM) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 32,
        "system": system,
        "messages": [{"role": "user", "content": f"Ticket {i}: the export button does nothing."}],
    }


def usage_of(deliveries: list[Delivery]) -> Usage:
    total = Usage()
    for d in deliveries:
        assert d.message is not None
        total = total + Usage.from_api(d.message["usage"])
    return total


def test_the_receipt_splits_writes_by_ttl_and_the_saving_by_discount(router: Router) -> None:
    for i in range(12):  # batch: primed, one 1-hour write, eleven reads
        router.submit(ticket(i), key=f"b{i}", workload="tagging")
    marked = [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}]
    received: list[Delivery] = []
    for i in range(2):  # real time, one after the other: a 5-minute write, then a read
        router.submit(ticket(100 + i, marked), key=f"r{i}", workload="chat", awaited=True)
        router.run(received.append)
    assert len(received) == 14 and all(d.ok for d in received)

    receipt = build_receipt(router.store.usage_rows(), default_table())
    chat, tagging = receipt.lines
    batch = usage_of([d for d in received if d.key.startswith("b")])
    realtime = usage_of([d for d in received if d.key.startswith("r")])
    assert tagging.usage == batch and chat.usage == realtime  # the store kept the split
    assert tagging.usage.cache_write_1h_tokens > 4_000 and tagging.usage.cache_write_5m_tokens == 0
    assert tagging.usage.cache_read_tokens == 11 * tagging.usage.cache_write_1h_tokens
    assert chat.usage.cache_write_5m_tokens > 0 and chat.usage.cache_write_1h_tokens == 0

    assert tagging.hit_rate == Decimal(batch.cache_read_tokens) / batch.prompt_tokens
    fresh = Usage(input_tokens=batch.prompt_tokens, output_tokens=batch.output_tokens)
    uncached = cost_of_totals(fresh, 12, MODEL, Tier.STANDARD)
    listed = cost_of_totals(batch, 12, MODEL, Tier.STANDARD)
    paid = cost_of_totals(batch, 12, MODEL, Tier.BATCH)
    assert uncached is not None and listed is not None and paid is not None
    assert tagging.cache_discount == uncached.total - listed.total > 0
    assert tagging.batch_discount == listed.total - paid.total == tagging.saved
    assert tagging.cache_discount + tagging.batch_discount == uncached.total - paid.total

    shown = receipt_json(receipt)["workloads"]
    assert isinstance(shown, list)
    assert shown[1]["usage"]["cache_write_1h_tokens"] == batch.cache_write_1h_tokens
    assert Decimal(shown[1]["cache"]["cache_discount"]) == tagging.cache_discount.quantize(
        Decimal("0.000001")
    )
    console = Console(width=80, file=io.StringIO(), record=True)
    console.print(receipt_table(receipt))
    text = console.export_text()
    cache = text.split("Cache", 1)[1]
    assert f"{batch.cache_write_1h_tokens:,}" in cache and f"{batch.cache_read_tokens:,}" in cache
    assert all(len(line) <= 80 for line in text.splitlines())


def test_plan_forecasts_with_the_read_share_the_store_has_seen(
    router: Router, tmp_path: Path, cli: Any
) -> None:
    import json

    from nowait.route.cacheforecast import MIN_HISTORY, read_share_of

    for i in range(MIN_HISTORY + 10):
        router.submit(ticket(i), key=f"b{i}", workload="tagging")
    router.run(lambda d: None)
    seen = sum((r.usage for r in router.store.usage_rows() if r.tier is Tier.BATCH), Usage())
    share = read_share_of(seen)
    assert share is not None and 0 < share < 1

    requests = tmp_path / "next.jsonl"
    lines = [{"key": f"n{i}", "workload": "tagging", "params": ticket(1_000 + i)} for i in range(8)]
    requests.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = cli("plan", str(requests), "--home", str(tmp_path), "--json")
    assert result.code == 0, result.err
    group = json.loads(result.out)["groups"][0]
    learned = f"learned: tagging on {MODEL} ({MIN_HISTORY + 10} requests)"
    assert group["read_share_source"] == learned
    assert Decimal(group["read_share"]) == share.quantize(Decimal("0.000001"))
    # eight requests alone would expect 7 reads in 8; the account got more: it expects less
    assert Decimal(group["expected_usd"]) < Decimal(group["with_planning_usd"])

    fresh = cli("plan", str(requests), "--home", str(tmp_path / "empty"), "--json")
    assert fresh.code == 0, fresh.err
    model = json.loads(fresh.out)["groups"][0]
    assert model["read_share_source"] == "planning model"
    assert model["expected_usd"] == model["with_planning_usd"]


def test_the_worksheet_learns_the_read_share_of_its_workload(
    router: Router, tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from nowait.route.cacheforecast import MIN_HISTORY, read_share_of

    for i in range(MIN_HISTORY):
        router.submit(ticket(i), key=f"b{i}", workload="tagging")
    router.run(lambda d: None)
    (row,) = [r for r in router.store.usage_rows() if r.tier is Tier.BATCH]
    sheet = tmp_path / "work.toml"
    sheet.write_text(
        f'[[workload]]\nname = "tagging"\nmodel = "{MODEL}"\nrequests_per_month = 90000\n'
        "avg_input_tokens = 4200\navg_output_tokens = 20\ncacheable_share = 0.95\n"
        'trigger = "backfill"\nwaits = "nobody"\nneeded_within = "7d"\n'
    )
    monkeypatch.setenv("NOWAIT_HOME", str(tmp_path))
    result = cli("worksheet", str(sheet), "--format", "json")
    assert result.code == 0, result.err
    (plan,) = json.loads(result.out)["cache_planning"]
    assert plan["read_share_source"] == f"learned: tagging on {MODEL} ({MIN_HISTORY} requests)"
    share = read_share_of(row.usage)
    assert share is not None and Decimal(plan["read_share"]) == share.quantize(Decimal("0.000001"))


def test_status_shows_the_cache_table(router: Router, tmp_path: Path, cli: Any) -> None:
    import json

    for i in range(6):
        router.submit(ticket(i), key=f"b{i}", workload="tagging")
    router.run(lambda d: None)
    (line,) = build_receipt(router.store.usage_rows(), default_table()).lines
    shown = cli("status", "--home", str(tmp_path), "--json")
    assert shown.code == 0, shown.err
    (tagging,) = json.loads(shown.out)["receipt"]["workloads"]
    assert tagging["usage"]["cache_write_1h_tokens"] == line.usage.cache_write_1h_tokens > 0
    assert tagging["cache"]["batch_discount"] == tagging["saved"]
    assert Decimal(tagging["cache"]["hit_rate"]) == (line.hit_rate or 0).quantize(Decimal("1e-6"))
    text = cli("status", "--home", str(tmp_path))
    assert text.code == 0, text.err
    cache = text.out.split("Cache", 1)[1]
    assert "tagging" in cache and f"{line.usage.cache_read_tokens:,}" in cache
