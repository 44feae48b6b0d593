"""Tiers beyond standard and batch: delivered, priced or marked, never a crash."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from nowait.clock import FakeClock
from nowait.emulator import EmulatorConfig, EmulatorServer
from nowait.route.receipts import build_receipt
from nowait.sort.pricing import load_table
from nowait.types import JobState, Tier
from router_helpers import ask


def _run_awaited(make_router: Any, fake_clock: FakeClock, tier: str) -> Any:
    with EmulatorServer(EmulatorConfig(realtime_service_tier=tier), clock=fake_clock) as server:
        router = make_router(server)
        router.submit(ask(0), key="chat-1", awaited=True, workload="chat")
        router.submit(ask(1), key="chat-2", awaited=True, workload="chat")
        delivered: list[Any] = []
        router.run(delivered.append)
    return router, delivered


@pytest.mark.parametrize(
    ("reported", "tier"), [("priority", Tier.PRIORITY), ("flex", Tier.UNKNOWN)]
)
def test_a_non_standard_tier_is_delivered_and_leaves_no_job_running(
    make_router: Any, fake_clock: FakeClock, reported: str, tier: Tier
) -> None:
    router, delivered = _run_awaited(make_router, fake_clock, reported)
    assert sorted(d.key for d in delivered) == ["chat-1", "chat-2"]
    assert all(d.ok and d.tier == tier.value for d in delivered)
    assert all(d.message["usage"]["service_tier"] == reported for d in delivered)
    assert router.store.job_counts() == {JobState.DELIVERED: 2}
    assert {j.tier for j in router.store.jobs()} == {tier}


def test_unknown_tier_is_priced_at_standard_rates_with_a_note(
    make_router: Any, fake_clock: FakeClock
) -> None:
    router, _ = _run_awaited(make_router, fake_clock, "flex")
    receipt = build_receipt(router.store.usage_rows(), load_table())
    assert receipt.total.paid is not None and receipt.total.paid > 0
    assert receipt.total.paid == receipt.total.list_price  # standard rates: nothing saved
    assert receipt.total.realtime_requests == 2
    assert receipt.notes == [
        "2 requests came back on a service tier nowait does not know: priced at standard rates"
    ]


def test_priority_tier_costs_unknown_until_the_table_prices_it(
    make_router: Any, fake_clock: FakeClock, tmp_path: Path
) -> None:
    router, _ = _run_awaited(make_router, fake_clock, "priority")
    rows = list(router.store.usage_rows())
    unpriced = build_receipt(rows, load_table())
    assert unpriced.total.paid is None  # unknown, never a guess
    assert unpriced.total.list_price is not None
    assert "Priority Tier" in unpriced.notes[0] and "priority_factor" in unpriced.notes[0]

    prices = tmp_path / "prices.toml"
    prices.write_text('priority_factor = "1.5"\n')
    priced = build_receipt(rows, load_table(prices))
    assert priced.notes == []
    assert priced.total.list_price is not None
    assert priced.total.paid == priced.total.list_price * Decimal("1.5")


def test_receipt_in_the_cli_shows_the_note(
    tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    requests = tmp_path / "r.jsonl"
    requests.write_text(
        '{"key": "a", "awaited": true, "params": {"model": "claude-haiku-5-5", "max_tokens": 8,'
        ' "messages": [{"role": "user", "content": "hi"}]}}\n'
    )
    with EmulatorServer(EmulatorConfig(realtime_service_tier="priority")) as server:
        result = cli(
            "run", str(requests), "--out", str(tmp_path / "out.jsonl"), "--home",
            str(tmp_path / "home"), "--base-url", server.base_url,
        )  # fmt: skip
    assert result.code == 0, result.err
    assert "Priority Tier" in result.out
