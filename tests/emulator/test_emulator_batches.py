"""The Message Batches API of the emulator: lifecycle, limits and faults, through the SDK."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import pytest

from nowait.clock import FakeClock
from nowait.emulator import EmulatorConfig, EmulatorServer, Turnaround

MODEL = "claude-haiku-5-5"


def requests(n: int, prefix: str = "req", **params: Any) -> list[dict[str, Any]]:
    return [
        {
            "custom_id": f"{prefix}-{i}",
            "params": {
                "model": MODEL,
                "max_tokens": 64,
                "messages": [{"role": "user", "content": f"Label record {i}."}],
                **params,
            },
        }
        for i in range(n)
    ]


@pytest.fixture
def hour_server(fake_clock: FakeClock) -> Iterator[EmulatorServer]:
    config = EmulatorConfig(turnaround=Turnaround(3600), cancel_latency=60)
    with EmulatorServer(config, fake_clock) as server:
        yield server


def test_lifecycle_counts_stay_processing_until_the_end(
    sdk_for: Any, hour_server: Any, fake_clock: FakeClock
) -> None:
    sdk = sdk_for(hour_server)
    batch = sdk.messages.batches.create(requests=requests(50))
    assert batch.id.startswith("msgbatch_") and batch.processing_status == "in_progress"
    assert batch.request_counts.processing == 50 and batch.results_url is None
    assert batch.expires_at > batch.created_at
    fake_clock.advance(3000)
    midway = sdk.messages.batches.retrieve(batch.id)
    assert midway.processing_status == "in_progress"
    assert midway.request_counts.processing == 50 and midway.request_counts.succeeded == 0
    fake_clock.advance(601)
    ended = sdk.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended" and ended.ended_at is not None
    assert ended.request_counts.succeeded == 50 and ended.request_counts.processing == 0
    assert ended.results_url == f"{hour_server.base_url}/v1/messages/batches/{batch.id}/results"
    results = list(sdk.messages.batches.results(batch.id))
    ids = [r.custom_id for r in results]
    assert sorted(ids) == sorted(f"req-{i}" for i in range(50))
    assert ids != sorted(ids, key=lambda c: int(c.split("-")[1]))  # no fixed order
    message = results[0].result.message  # type: ignore[union-attr]
    assert message.usage.service_tier == "batch"


def test_batch_answers_match_real_time_answers(
    sdk_for: Any, hour_server: Any, fake_clock: FakeClock
) -> None:
    sdk = sdk_for(hour_server)
    [request] = requests(1)
    live = sdk.messages.create(**request["params"])
    batch = sdk.messages.batches.create(requests=[request])
    fake_clock.advance(3601)
    [line] = list(sdk.messages.batches.results(batch.id))
    assert line.result.type == "succeeded"
    assert line.result.message.content == live.content
    assert line.result.message.usage.input_tokens == live.usage.input_tokens


def test_results_stream_as_jsonl_with_no_blank_lines(
    sdk_for: Any, hour_server: Any, fake_clock: FakeClock
) -> None:
    sdk = sdk_for(hour_server)
    batch = sdk.messages.batches.create(requests=requests(1200))
    fake_clock.advance(3601)
    raw = httpx2.get(
        f"{hour_server.base_url}/v1/messages/batches/{batch.id}/results",
        headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
    )
    assert raw.headers["content-type"] == "application/x-jsonl"
    lines = raw.text.split("\n")
    assert lines[-1] == "" and all(lines[:-1])
    assert len({json.loads(line)["custom_id"] for line in lines[:-1]}) == 1200


def test_results_before_the_end_and_after_archival(
    sdk_for: Any, hour_server: Any, fake_clock: FakeClock
) -> None:
    sdk = sdk_for(hour_server)
    batch = sdk.messages.batches.create(requests=requests(2))
    with pytest.raises(anthropic.AnthropicError, match="No `results_url`"):
        list(sdk.messages.batches.results(batch.id))
    with pytest.raises(anthropic.NotFoundError):
        sdk.get(f"/v1/messages/batches/{batch.id}/results", cast_to=object)
    fake_clock.advance(29 * 86400 + 1)
    archived = sdk.messages.batches.retrieve(batch.id)
    assert archived.archived_at is not None and archived.processing_status == "ended"
    with pytest.raises(anthropic.NotFoundError, match="archived"):
        list(sdk.messages.batches.results(batch.id))


def test_list_is_newest_first_with_pagination(
    sdk_for: Any, hour_server: Any, fake_clock: FakeClock
) -> None:
    sdk = sdk_for(hour_server)
    created = []
    for _ in range(5):
        created.append(sdk.messages.batches.create(requests=requests(1)).id)
        fake_clock.advance(1)
    page = sdk.messages.batches.list(limit=2)
    assert [b.id for b in page.data] == created[::-1][:2]
    assert page.has_more and page.first_id == created[4] and page.last_id == created[3]
    assert [b.id for b in sdk.messages.batches.list(limit=2)] == created[::-1]  # auto-pagination
    before = sdk.messages.batches.list(before_id=created[1], limit=2)
    assert [b.id for b in before.data] == [created[3], created[2]] and before.has_more
    with pytest.raises(anthropic.BadRequestError, match="limit"):
        sdk.messages.batches.list(limit=1001)


def test_cancel_keeps_finished_results_and_cancels_the_rest(
    sdk_for: Any, hour_server: Any, fake_clock: FakeClock
) -> None:
    sdk = sdk_for(hour_server)
    batch = sdk.messages.batches.create(requests=requests(200))
    fake_clock.advance(1800)
    canceling = sdk.messages.batches.cancel(batch.id)
    assert canceling.processing_status == "canceling"
    assert canceling.cancel_initiated_at is not None
    assert canceling.request_counts.processing == 200
    fake_clock.advance(61)
    ended = sdk.messages.batches.retrieve(batch.id)
    counts = ended.request_counts
    assert ended.processing_status == "ended"
    assert counts.succeeded + counts.canceled == 200
    assert 60 < counts.succeeded < 140  # about half had finished in 31 of 60 minutes
    kinds = [r.result.type for r in sdk.messages.batches.results(batch.id)]
    assert (
        kinds.count("succeeded") == counts.succeeded and kinds.count("canceled") == counts.canceled
    )
    with pytest.raises(anthropic.BadRequestError, match="already ended"):
        sdk.messages.batches.cancel(batch.id)


def test_delete_only_after_the_end(sdk_for: Any, hour_server: Any, fake_clock: FakeClock) -> None:
    sdk = sdk_for(hour_server)
    batch = sdk.messages.batches.create(requests=requests(1))
    with pytest.raises(anthropic.BadRequestError, match="cancel it first"):
        sdk.messages.batches.delete(batch.id)
    fake_clock.advance(3601)
    deleted = sdk.messages.batches.delete(batch.id)
    assert deleted.id == batch.id and deleted.type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        sdk.messages.batches.retrieve(batch.id)
    assert batch.id not in [b.id for b in sdk.messages.batches.list()]


def test_unfinished_requests_expire_after_24_hours(sdk_for: Any, fake_clock: FakeClock) -> None:
    config = EmulatorConfig(turnaround=Turnaround(30 * 3600))
    with EmulatorServer(config, fake_clock) as server:
        sdk = sdk_for(server)
        batch = sdk.messages.batches.create(requests=requests(100))
        fake_clock.advance(24 * 3600 - 1)
        assert sdk.messages.batches.retrieve(batch.id).processing_status == "in_progress"
        fake_clock.advance(1)
        counts = sdk.messages.batches.retrieve(batch.id).request_counts
        assert counts.expired > 0 and counts.succeeded > 0
        assert counts.expired + counts.succeeded == 100


def test_semantic_errors_become_errored_lines(
    sdk_for: Any, hour_server: Any, fake_clock: FakeClock
) -> None:
    sdk = sdk_for(hour_server)
    good, bad = requests(2)
    bad["params"]["model"] = "claude-unknown-9"
    batch = sdk.messages.batches.create(requests=[good, bad])
    fake_clock.advance(3601)
    assert sdk.messages.batches.retrieve(batch.id).request_counts.errored == 1
    by_id = {r.custom_id: r.result for r in sdk.messages.batches.results(batch.id)}
    assert by_id["req-0"].type == "succeeded"
    errored = by_id["req-1"]
    assert errored.type == "errored"
    assert errored.error.error.type == "not_found_error"


def test_schema_errors_reject_the_whole_batch(sdk_for: Any, hour_server: Any) -> None:
    sdk = sdk_for(hour_server)
    broken = requests(3)
    del broken[1]["params"]["max_tokens"]
    with pytest.raises(
        anthropic.BadRequestError, match=r"requests\.1\.params\.max_tokens: Field required"
    ):
        sdk.messages.batches.create(requests=broken)
    streaming = requests(1, stream=True)
    with pytest.raises(anthropic.BadRequestError, match="stream"):
        sdk.messages.batches.create(requests=streaming)
    assert hour_server.emulator.batch_ids() == []


@pytest.mark.parametrize(
    ("custom_id", "message"),
    [
        ("x" * 65, "String should have at most 64 characters"),
        ("has space", "String should match pattern"),
        ("", "at least 1 character"),
    ],
)
def test_custom_id_rules(sdk_for: Any, hour_server: Any, custom_id: str, message: str) -> None:
    bad = requests(2)
    bad[1]["custom_id"] = custom_id
    with pytest.raises(anthropic.BadRequestError, match=message) as caught:
        sdk_for(hour_server).messages.batches.create(requests=bad)
    assert caught.value.body["error"]["message"].startswith("requests.1.custom_id")  # type: ignore[index]


def test_custom_ids_must_be_unique_within_a_batch_but_not_across(
    sdk_for: Any, hour_server: Any
) -> None:
    sdk = sdk_for(hour_server)
    duplicated = requests(2) + requests(1)
    with pytest.raises(anthropic.BadRequestError, match="Duplicate custom_id 'req-0'"):
        sdk.messages.batches.create(requests=duplicated)
    sdk.messages.batches.create(requests=requests(1))
    sdk.messages.batches.create(requests=requests(1))


@pytest.mark.slow
def test_the_100000_request_limit(sdk_for: Any, hour_server: Any) -> None:
    sdk = sdk_for(hour_server)
    with pytest.raises(anthropic.BadRequestError, match="at most 100000 items"):
        sdk.messages.batches.create(requests=requests(100_001))
    assert (
        sdk.messages.batches.create(requests=requests(100_000)).request_counts.processing == 100_000
    )


@pytest.mark.slow
def test_the_256_mb_limit_returns_413(hour_server: Any) -> None:
    size = 256_000_001
    chunk = b" " * (1 << 20)

    def body() -> Iterator[bytes]:
        sent = 0
        while sent < size:
            piece = chunk[: min(len(chunk), size - sent)]
            sent += len(piece)
            yield piece

    raw = httpx2.post(
        f"{hour_server.base_url}/v1/messages/batches",
        content=body(),
        headers={"x-api-key": "k", "anthropic-version": "2023-06-01", "content-length": str(size)},
        timeout=60,
    )
    assert raw.status_code == 413
    assert raw.json()["error"]["type"] == "request_too_large"


def test_body_limit_knob_through_the_sdk(sdk_for: Any, fake_clock: FakeClock) -> None:
    with EmulatorServer(EmulatorConfig(max_batch_bytes=10_000), fake_clock) as server:
        with pytest.raises(anthropic.RequestTooLargeError):
            sdk_for(server, max_retries=0).messages.batches.create(requests=requests(200))
        assert sdk_for(server).messages.batches.create(requests=requests(5))


def test_injected_line_faults_and_create_faults(
    sdk_for: Any, hour_server: Any, fake_clock: FakeClock
) -> None:
    emulator = hour_server.emulator
    emulator.fail_next(1, status=529, endpoint="batches.create", retry_after=0)
    emulator.fail_next_lines(2, "overloaded_error")
    emulator.fail_next_lines(1, "expired")
    sdk = sdk_for(hour_server)
    batch = sdk.messages.batches.create(requests=requests(5))
    assert emulator.calls["batches.create"] == 2  # the SDK retried the 529 once
    assert emulator.batch_ids() == [batch.id]
    fake_clock.advance(3601)
    results = {r.custom_id: r.result for r in sdk.messages.batches.results(batch.id)}
    assert results["req-0"].type == results["req-1"].type == "errored"
    assert results["req-0"].error.error.type == "overloaded_error"
    assert results["req-2"].type == "expired"
    assert results["req-3"].type == results["req-4"].type == "succeeded"


def test_slow_batch_knob(sdk_for: Any, hour_server: Any, fake_clock: FakeClock) -> None:
    sdk = sdk_for(hour_server)
    batch = sdk.messages.batches.create(requests=requests(3))
    hour_server.emulator.set_turnaround(batch.id, 5 * 3600)
    fake_clock.advance(3601)
    assert sdk.messages.batches.retrieve(batch.id).processing_status == "in_progress"
    fake_clock.advance(4 * 3600)
    assert sdk.messages.batches.retrieve(batch.id).processing_status == "ended"


def test_batch_cache_is_separate_and_blind_within_a_batch(
    sdk_for: Any, emulator_server: Any, fake_clock: FakeClock
) -> None:
    sdk = sdk_for(emulator_server)  # 10-minute batches, inside the 1-hour cache lifetime
    system = [
        {
            "type": "text",
            "text": "Shared labelling guide. " * 250,
            "cache_control": {"type": "ephemeral", "ttl": "1h"},
        }
    ]
    sdk.messages.create(
        model=MODEL, max_tokens=8, system=system, messages=[{"role": "user", "content": "warm"}]
    )
    first = sdk.messages.batches.create(requests=requests(3, system=system))
    fake_clock.advance(601)
    usages = [r.result.message.usage for r in sdk.messages.batches.results(first.id)]
    assert all(u.cache_read_input_tokens == 0 for u in usages)  # no real-time entry, no sibling's
    assert all((u.cache_creation_input_tokens or 0) > 0 for u in usages)
    second = sdk.messages.batches.create(requests=requests(2, system=system))
    fake_clock.advance(601)
    assert all(
        r.result.message.usage.cache_read_input_tokens > 0
        for r in sdk.messages.batches.results(second.id)
    )


def test_canceled_requests_write_nothing_to_the_batch_cache(
    sdk_for: Any, hour_server: Any, fake_clock: FakeClock
) -> None:
    sdk = sdk_for(hour_server)
    system = [
        {
            "type": "text",
            "text": "Shared labelling guide. " * 250,
            "cache_control": {"type": "ephemeral", "ttl": "1h"},
        }
    ]
    canceled = sdk.messages.batches.create(requests=requests(5, system=system))
    sdk.messages.batches.cancel(canceled.id)  # ends in a minute, before any request finishes
    fake_clock.advance(3600)  # past the moment every one of them would have finished
    assert sdk.messages.batches.retrieve(canceled.id).request_counts.canceled == 5
    hour_server.emulator.configure(turnaround=Turnaround(60))
    follower = sdk.messages.batches.create(requests=requests(3, system=system))
    fake_clock.advance(61)
    usages = [r.result.message.usage for r in sdk.messages.batches.results(follower.id)]
    assert all(u.cache_read_input_tokens == 0 for u in usages)
    assert all((u.cache_creation_input_tokens or 0) > 0 for u in usages)


def test_contract_mode_answers_any_id_and_model(sdk_for: Any, fake_clock: FakeClock) -> None:
    with EmulatorServer(EmulatorConfig(contract_mode=True), fake_clock) as server:
        sdk = sdk_for(server)
        batch = sdk.messages.batches.retrieve("message_batch_id")
        assert batch.id == "message_batch_id" and batch.processing_status == "ended"
        assert sdk.messages.batches.delete("message_batch_id").type == "message_batch_deleted"
        canceling = sdk.messages.batches.cancel("message_batch_id")
        assert canceling.id == "message_batch_id"
        assert canceling.processing_status == "canceling"
        assert canceling.cancel_initiated_at is not None
        [line] = list(sdk.messages.batches.results("message_batch_id"))
        assert line.result.type == "succeeded"
        reply = sdk.messages.create(
            model="claude-mythos-preview-x",
            max_tokens=5,
            messages=[{"role": "user", "content": "hi"}],
        )
        assert reply.content


def test_async_client_batch_lifecycle(hour_server: Any, fake_clock: FakeClock) -> None:
    async def run() -> list[str]:
        sdk = anthropic.AsyncAnthropic(
            base_url=hour_server.base_url, api_key="k", _strict_response_validation=True
        )
        batch = await sdk.messages.batches.create(requests=requests(4))
        fake_clock.advance(3601)
        assert (await sdk.messages.batches.retrieve(batch.id)).processing_status == "ended"
        kinds = [r.result.type async for r in await sdk.messages.batches.results(batch.id)]
        listed = [b.id async for b in sdk.messages.batches.list()]
        assert listed == [batch.id]
        await sdk.close()
        return kinds

    assert asyncio.run(run()) == ["succeeded"] * 4
