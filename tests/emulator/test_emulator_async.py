"""The async SDK client and the `client.beta` batch routes, over real HTTP on localhost."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import anthropic
import httpx2
import pytest

from nowait.clock import FakeClock
from nowait.emulator import EmulatorConfig, EmulatorServer, Turnaround

MODEL = "claude-haiku-5-5"
MESSAGES: list[Any] = [{"role": "user", "content": "Summarise ticket 7."}]


def requests(n: int, prefix: str = "req") -> list[dict[str, Any]]:
    params = {"model": MODEL, "max_tokens": 32, "messages": MESSAGES}
    return [{"custom_id": f"{prefix}-{i}", "params": params} for i in range(n)]


def run_async(
    server: EmulatorServer,
    body: Callable[[anthropic.AsyncAnthropic], Awaitable[None]],
    **options: Any,
) -> None:
    """Run `body` with a strict async client on the server, closing it afterwards."""

    async def main() -> None:
        async with anthropic.AsyncAnthropic(
            base_url=server.base_url, api_key="k", _strict_response_validation=True, **options
        ) as sdk:
            await body(sdk)

    asyncio.run(main())


@pytest.fixture
def hour_server(fake_clock: FakeClock) -> Any:
    config = EmulatorConfig(turnaround=Turnaround(3600), cancel_latency=60)
    with EmulatorServer(config, fake_clock) as server:
        yield server


def test_async_count_tokens_matches_usage(hour_server: EmulatorServer) -> None:
    async def body(sdk: anthropic.AsyncAnthropic) -> None:
        counted = await sdk.messages.count_tokens(model=MODEL, messages=MESSAGES)
        reply = await sdk.messages.create(model=MODEL, max_tokens=32, messages=MESSAGES)
        assert counted.input_tokens == reply.usage.input_tokens > 0

    run_async(hour_server, body)


def test_async_stream_yields_the_plain_answer(hour_server: EmulatorServer) -> None:
    async def body(sdk: anthropic.AsyncAnthropic) -> None:
        plain = await sdk.messages.create(model=MODEL, max_tokens=32, messages=MESSAGES)
        async with sdk.messages.stream(model=MODEL, max_tokens=32, messages=MESSAGES) as stream:
            pieces = [text async for text in stream.text_stream]
            final = await stream.get_final_message()
        assert "".join(pieces) == plain.content[0].text  # type: ignore[union-attr]
        assert len(pieces) > 1  # it really streamed
        assert final.usage.output_tokens == plain.usage.output_tokens
        assert final.stop_reason == plain.stop_reason

    run_async(hour_server, body)


def test_async_cancel_then_delete(hour_server: EmulatorServer, fake_clock: FakeClock) -> None:
    async def body(sdk: anthropic.AsyncAnthropic) -> None:
        batch = await sdk.messages.batches.create(requests=requests(3))
        with pytest.raises(anthropic.BadRequestError, match="cancel it first"):
            await sdk.messages.batches.delete(batch.id)
        canceling = await sdk.messages.batches.cancel(batch.id)
        assert canceling.processing_status == "canceling"
        fake_clock.advance(61)
        ended = await sdk.messages.batches.retrieve(batch.id)
        assert ended.processing_status == "ended"
        kinds = [r.result.type async for r in await sdk.messages.batches.results(batch.id)]
        assert sorted(kinds) == sorted(
            ["succeeded"] * ended.request_counts.succeeded
            + ["canceled"] * ended.request_counts.canceled
        )
        deleted = await sdk.messages.batches.delete(batch.id)
        assert deleted.type == "message_batch_deleted"
        with pytest.raises(anthropic.NotFoundError):
            await sdk.messages.batches.retrieve(batch.id)

    run_async(hour_server, body)


def test_async_list_pages_and_auto_paging(
    hour_server: EmulatorServer, fake_clock: FakeClock
) -> None:
    async def body(sdk: anthropic.AsyncAnthropic) -> None:
        created = []
        for _ in range(5):
            created.append((await sdk.messages.batches.create(requests=requests(1))).id)
            fake_clock.advance(1)
        newest_first = created[::-1]
        page = await sdk.messages.batches.list(limit=2)
        assert [b.id for b in page.data] == newest_first[:2] and page.has_more
        following = await page.get_next_page()
        assert [b.id for b in following.data] == newest_first[2:4]
        assert [b.id async for b in sdk.messages.batches.list(limit=2)] == newest_first

    run_async(hour_server, body)


def test_async_errors_raise_the_sdk_exceptions(hour_server: EmulatorServer) -> None:
    async def body(sdk: anthropic.AsyncAnthropic) -> None:
        with pytest.raises(anthropic.NotFoundError) as missing:
            await sdk.messages.batches.retrieve("msgbatch_nope")
        assert missing.value.request_id and missing.value.request_id.startswith("req_")
        with pytest.raises(anthropic.BadRequestError, match="max_tokens"):
            await sdk.messages.create(model=MODEL, max_tokens=-1, messages=MESSAGES)
        hour_server.emulator.fail_next(1, status=529)
        with pytest.raises(anthropic.OverloadedError):
            await sdk.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)

    run_async(hour_server, body, max_retries=0)


def test_beta_batch_routes_with_the_beta_query(
    sdk_for: Any, hour_server: EmulatorServer, fake_clock: FakeClock
) -> None:
    sent: list[str] = []
    http = httpx2.Client(event_hooks={"request": [lambda request: sent.append(str(request.url))]})
    beta = sdk_for(hour_server, http_client=http).beta.messages.batches
    old_sdk = {"extra_query": {"beta": "true"}}  # what 0.x/1.x SDKs add to every beta call
    batch = beta.create(requests=requests(2), **old_sdk)
    assert beta.retrieve(batch.id, **old_sdk).processing_status == "in_progress"
    assert [b.id for b in beta.list(**old_sdk)] == [batch.id]
    other = beta.create(requests=requests(1, "other"), **old_sdk)
    assert beta.cancel(other.id, **old_sdk).processing_status == "canceling"
    fake_clock.advance(3601)
    lines = {line.custom_id: line.result.type for line in beta.results(batch.id, **old_sdk)}
    assert lines == {"req-0": "succeeded", "req-1": "succeeded"}
    assert beta.delete(batch.id, **old_sdk).type == "message_batch_deleted"
    assert [b.id for b in beta.list(**old_sdk)] == [other.id]
    beta_routes = {
        url.split("/v1/")[1]
        .removesuffix("?beta=true")
        .replace(batch.id, "ID")
        .replace(other.id, "ID")
        for url in sent
        if url.endswith("?beta=true")
    }
    assert beta_routes == {
        "messages/batches",
        "messages/batches/ID",
        "messages/batches/ID/cancel",
        "messages/batches/ID/results",
    }
    http.close()
