"""Cache-aware batching against the emulator: requests sharing a 4,000-token prefix (system and
tools) with 300-token unique tails, costed three ways in the same run.

- real time with caching: every request marked by its author (5-minute breakpoint), sent one
  after the other through the SDK;
- plain batch: nowait with `cache = "off"`;
- planned batch: nowait with `cache = "auto"` (grouping, priming, 1-hour breakpoint).

It prints the input cost (uncached input, cache writes and reads, priced from the bundled
table) and hit rate of each, the ideal (one write, every other request a read, all at batch
price) and the ratios. Target: planned ≤ 30% of plain batch's input cost, within 10% of ideal.

    .venv/bin/python bench/cache_planning.py [--requests 10000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic

from nowait.clock import FakeClock
from nowait.emulator import EmulatorServer
from nowait.route.backend import AnthropicBackend
from nowait.route.router import Delivery, Router
from nowait.route.worker import WorkerConfig
from nowait.settings import CacheMode
from nowait.sort.pricing import cost_breakdown, default_table
from nowait.store.sqlite import SQLiteStore
from nowait.types import Tier, Usage

MODEL = "claude-haiku-4-5"
TOOLS = [
    {
        "name": f"tool_{i}",
        "description": "Record one field of the ticket's label. " * 20,
        "input_schema": {"type": "object", "properties": {"value": {"type": "string"}}},
    }
    for i in range(4)
]
SYSTEM = "You label support tickets by product area, urgency and sentiment. " * 186


def request(i: int, marked: bool = False) -> dict[str, Any]:
    tail = f"Ticket {i}: " + "the export button does nothing when I click it. " * 25
    system: Any = SYSTEM
    if marked:
        system = [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}]
    return {
        "model": MODEL,
        "max_tokens": 16,
        "tools": TOOLS,
        "system": system,
        "messages": [{"role": "user", "content": tail}],
    }


class Figures:
    def __init__(self, name: str, tier: Tier) -> None:
        self.name, self.tier = name, tier
        self.input = Decimal(0)
        self.calls = self.reads = 0
        self.seconds = 0.0

    def add(self, usage: Usage) -> None:
        cost = cost_breakdown(usage, MODEL, self.tier)
        assert cost is not None
        self.input += cost.input + cost.cache
        self.calls += 1
        self.reads += usage.cache_read_tokens > 0

    def line(self, plain: Decimal) -> str:
        return (
            f"{self.name:<28} ${self.input:>9.4f}  {self.input / plain:>6.1%} of plain batch"
            f"   hit rate {self.reads / max(self.calls, 1):>6.1%}   {self.seconds:6.1f} s"
        )


def realtime(server: EmulatorServer, n: int) -> Figures:
    figures = Figures("real time, author's cache", Tier.STANDARD)
    client = anthropic.Anthropic(base_url=server.base_url, api_key="bench", max_retries=0)
    started = time.perf_counter()
    for i in range(n):
        message = client.messages.create(**request(i, marked=True))
        figures.add(Usage.from_api(message.usage.model_dump()))
    figures.seconds = time.perf_counter() - started
    client.close()
    return figures


def batched(
    server: EmulatorServer, clock: FakeClock, n: int, cache: CacheMode, home: Path
) -> Figures:
    name = {"off": "plain batch", "auto": "planned batch"}[cache]
    figures = Figures(name, Tier.BATCH)
    backend = AnthropicBackend(api_key="bench", base_url=server.base_url)
    store = SQLiteStore(home / cache / "nowait.db")
    router = Router(store=store, backend=backend, clock=clock, worker=WorkerConfig(cache=cache))
    started = time.perf_counter()
    router.submit_many(router.prepare(request(i), key=f"{cache}{i}") for i in range(n))
    received: list[Delivery] = []
    router.run(received.append)
    figures.seconds = time.perf_counter() - started
    for d in _answered(received):
        figures.add(Usage.from_api(d["usage"]))
    backend.close()
    store.close()
    return figures


def _answered(received: Iterable[Delivery]) -> Iterable[dict[str, Any]]:
    for d in received:
        assert d.ok and d.message is not None, d
        yield d.message


def ideal(n: int, prefix: int, prompt: int) -> Decimal:
    """One 1-hour write, every other request a read, every tail fresh, all at batch price."""
    price = default_table().lookup(MODEL)
    assert price is not None
    r = price.rates.scaled(default_table().batch_discount)
    tails = n * (prompt - prefix)
    total = prefix * r.cache_write_1h + (n - 1) * prefix * r.cache_read + tails * r.input
    return total / Decimal(1_000_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    n = parser.parse_args().requests
    clock = FakeClock()
    with EmulatorServer(clock=clock) as server, tempfile.TemporaryDirectory() as tmp:
        counted = anthropic.Anthropic(base_url=server.base_url, api_key="bench")
        prompt = counted.messages.count_tokens(**{
            k: v for k, v in request(0).items() if k != "max_tokens"
        }).input_tokens  # fmt: skip
        no_tail = {**request(0), "messages": [{"role": "user", "content": "x"}]}
        prefix = counted.messages.count_tokens(**{
            k: v for k, v in no_tail.items() if k != "max_tokens"
        }).input_tokens - 5  # fmt: skip
        counted.close()
        plain = batched(server, clock, n, "off", Path(tmp))
        planned = batched(server, clock, n, "auto", Path(tmp))
        live = realtime(server, n)
    best = ideal(n, prefix, prompt)
    print(f"{n:,} requests: ~{prefix:,}-token shared prefix, {prompt:,}-token prompts, {MODEL}")
    print("input cost (uncached input + cache writes + reads), bundled prices:")
    for figures in (live, plain, planned):
        print("  " + figures.line(plain.input))
    print(
        f"  {'ideal (1 write, n-1 reads)':<28} ${best:>9.4f}  {best / plain.input:>6.1%} of plain batch"
    )
    print(f"planned / plain batch: {planned.input / plain.input:.1%} (target ≤ 30%)")
    print(f"planned / ideal: {planned.input / best:.3f} (target ≤ 1.10)")


if __name__ == "__main__":
    main()
