"""Checked by mypy --strict in test_typed.py (not run): each API of the drop-in client, with the
types a user's editor and type checker see."""

from __future__ import annotations

from anthropic import Stream
from anthropic.types import Message, MessageParam, RawMessageStreamEvent

import nowait
from nowait.adopt import AsyncBatch, AsyncSplit, Batch, Split

ASK: MessageParam = {"role": "user", "content": "Summarize."}


def sync_calls(client: nowait.Anthropic) -> list[Message]:
    now: Message = client.messages.create(model="claude-haiku-5-5", max_tokens=8, messages=[ASK])
    stream: Stream[RawMessageStreamEvent] = client.messages.create(
        model="claude-haiku-5-5", max_tokens=8, messages=[ASK], stream=True
    )
    stream.close()
    later: nowait.Handle = client.messages.create(
        model="claude-haiku-5-5", max_tokens=8, messages=[ASK], deadline="6h", key="k1"
    )
    keyed: nowait.Handle = client.messages.create(
        model="claude-haiku-5-5", max_tokens=8, messages=[ASK], awaited=False
    )
    pending: list[bool] = [later.done(), keyed.done()]
    print(pending)
    block: Batch
    with client.batch(deadline="6h", workload="nightly") as block:
        queued: nowait.Handle = block.messages.create(
            model="claude-haiku-5-5", max_tokens=8, messages=[ASK], key="n1"
        )
    parts: Split = client.split(
        fast={"model": "claude-haiku-5-5", "max_tokens": 8, "messages": [ASK]},
        deep={"model": "claude-haiku-5-5", "max_tokens": 512, "messages": [ASK]},
        key="export-1",
        deadline="6h",
        workload="export",
    )
    again: nowait.Handle = client.handle("k1")
    return [now, later.result(timeout=5.0), queued.result(), parts.deep.result(), again.result()]


async def async_calls(client: nowait.AsyncAnthropic) -> list[Message]:
    now: Message = await client.messages.create(
        model="claude-haiku-5-5", max_tokens=8, messages=[ASK]
    )
    handle = await client.messages.create(
        model="claude-haiku-5-5", max_tokens=8, messages=[ASK], deadline="6h"
    )
    later: Message = await handle
    block: AsyncBatch
    async with client.batch(deadline="6h") as block:
        queued = block.messages.create(model="claude-haiku-5-5", max_tokens=8, messages=[ASK])
    parts: AsyncSplit = await client.split(
        fast={"model": "claude-haiku-5-5", "max_tokens": 8, "messages": [ASK]},
        deep={"model": "claude-haiku-5-5", "max_tokens": 8, "messages": [ASK]},
        deadline="6h",
    )
    return [now, later, await queued, await parts.fast, await client.handle("k")]
