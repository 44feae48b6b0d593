"""`AsyncAnthropic`: the SDK's async client for ordinary calls, awaitable handles for nowait's;
thousands of pending handles share one watcher task, not a thread each."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest
from anthropic.types import Message

import nowait
from nowait import EmulatorConfig, EmulatorServer, WorkerConfig
from nowait.guard.policy import PollConfig
from nowait.guard.turnaround import Turnaround

ASK: dict[str, Any] = {
    "model": "claude-haiku-5-5",
    "max_tokens": 8,
    "messages": [{"role": "user", "content": "Tag this row."}],
}
FAST = WorkerConfig(poll=PollConfig(first=0.05, factor=1.0, longest=0.2))


@pytest.fixture
def server() -> Iterator[Any]:
    with EmulatorServer(EmulatorConfig(turnaround=Turnaround(0.5))) as running:
        yield running


def make(server: Any, tmp_path: Path) -> nowait.AsyncAnthropic:
    return nowait.AsyncAnthropic(api_key="test-key", base_url=server.base_url,
                                 store=tmp_path / "nowait.db", worker_config=FAST)  # fmt: skip


def test_ordinary_and_deferred_calls(server: Any, tmp_path: Path) -> None:
    async def main() -> None:
        client = make(server, tmp_path)
        try:
            now = await client.messages.create(**ASK)
            handle = await client.messages.create(**ASK, deadline="6h", key="row-1")
            later = await handle
            assert type(now) is type(later) is Message
            with pytest.raises(anthropic.NotFoundError):
                await client.messages.create(**{**ASK, "model": "no-such-model"})
            fast, deep = await client.split(fast=ASK, deep=ASK, deadline="6h", key="f")
            assert isinstance(await fast, Message) and isinstance(await deep, Message)
        finally:
            await client.close()

    asyncio.run(main())


def test_ten_thousand_handles_resolve_without_a_thread_each(server: Any, tmp_path: Path) -> None:
    n = 10_000
    peak = threading.active_count()

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, threading.active_count())
            await asyncio.sleep(0.01)

    async def main() -> list[Message]:
        client = make(server, tmp_path)
        try:
            async with client.batch(deadline="6h", workload="enrich") as b:
                handles = [b.messages.create(**ASK, key=f"row-{i}") for i in range(n)]
            sampler = asyncio.create_task(sample())
            messages = await asyncio.wait_for(asyncio.gather(*handles), timeout=300)
            sampler.cancel()
            return messages
        finally:
            await client.close()

    before = threading.active_count()
    messages = asyncio.run(main())
    assert len(messages) == n and all(isinstance(m, Message) for m in messages)
    # The worker thread, its real-time pool, the asyncio helpers: a handful, not 10,000.
    assert peak - before < 16, (before, peak)
