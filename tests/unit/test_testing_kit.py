"""`nowait.testing`: the fake backend keeps the API's semantics, `crash_at` really kills."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest

from nowait.clock import FakeClock
from nowait.errors import PermanentBackendError, RetryableBackendError
from nowait.route.backend import AuthError
from nowait.testing import CHECKPOINTS, FakeBackend, crash_at


def params(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-haiku-5-5",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": f"Summarise ticket {i}: the printer is on fire."}],
        **extra,
    }


def requests(n: int) -> list[tuple[str, str]]:
    return [(f"r{i}", json.dumps(params(i))) for i in range(n)]


def test_a_batch_lives_in_progress_then_ends_with_its_counts_and_lines() -> None:
    clock = FakeClock()
    backend = FakeBackend(clock, turnaround=100)
    created = backend.create_batch(requests(4))
    assert (created.status, created.request_total, created.ended_at) == ("in_progress", 4, None)
    assert created.counts == {
        "processing": 4, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0,
    }  # fmt: skip
    with pytest.raises(PermanentBackendError, match="has not ended") as early:
        list(backend.batch_results(created.id))
    assert early.value.status == 404
    clock.advance(100)
    ended = backend.retrieve_batch(created.id)
    assert ended.status == "ended" and ended.ended_at == created.created_at + timedelta(seconds=100)
    assert ended.counts is not None and ended.counts["succeeded"] == 4
    lines = list(backend.batch_results(created.id))
    assert [line.custom_id for line in lines] == ["r0", "r1", "r2", "r3"]
    assert {line.kind for line in lines} == {"succeeded"}
    message = lines[0].message
    assert message is not None and message.tier == "batch"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert json.loads(message.message_json)["usage"]["service_tier"] == "batch"


def test_a_slow_cancel_keeps_what_finished_and_cancels_the_rest() -> None:
    clock = FakeClock()
    backend = FakeBackend(clock, turnaround=100, cancel_latency=20)
    batch = backend.create_batch(requests(10))
    clock.advance(30)  # 3 of 10 done
    assert backend.cancel_batch(batch.id).status == "canceling"
    clock.advance(19)
    assert backend.retrieve_batch(batch.id).status == "canceling"  # 4 done by now
    clock.advance(1)  # 50 s: 5 done when the cancel lands
    info = backend.retrieve_batch(batch.id)
    assert info.status == "ended" and info.counts is not None
    assert (info.counts["succeeded"], info.counts["canceled"]) == (5, 5)
    kinds = [line.kind for line in backend.batch_results(batch.id)]
    assert kinds == ["succeeded"] * 5 + ["canceled"] * 5
    with pytest.raises(PermanentBackendError, match="already ended") as late:
        backend.cancel_batch(batch.id)
    assert late.value.status == 400


def test_errored_and_expired_lines_by_custom_id_or_count() -> None:
    clock = FakeClock()
    backend = FakeBackend(clock, turnaround=10)
    backend.fail_line("r3", "invalid_request_error")
    backend.fail_next_lines(2, "expired")
    batch = backend.create_batch(requests(5))
    clock.advance(10)
    lines = {line.custom_id: line for line in backend.batch_results(batch.id)}
    assert [lines[f"r{i}"].kind for i in range(5)] == [
        "expired", "expired", "succeeded", "errored", "succeeded",
    ]  # fmt: skip
    assert lines["r3"].error_type == "invalid_request_error"
    assert backend.request_counts(batch.id)["errored"] == 1
    with pytest.raises(ValueError, match="unknown line outcome"):
        backend.fail_line("r9", "bad_luck")


def test_requests_still_running_after_24_hours_expire() -> None:
    clock = FakeClock()
    backend = FakeBackend(clock, turnaround=48 * 3600)
    batch = backend.create_batch(requests(4))
    clock.advance(24 * 3600)
    kinds = [line.kind for line in backend.batch_results(batch.id)]
    assert kinds == ["succeeded", "succeeded", "expired", "expired"]


@pytest.mark.parametrize(
    ("status", "kind"),
    [(429, RetryableBackendError), (529, RetryableBackendError), (500, RetryableBackendError),
     (400, PermanentBackendError), (404, PermanentBackendError), (401, AuthError)],
)  # fmt: skip
def test_injected_statuses_are_classified_as_the_real_backend_does(
    status: int, kind: type[Exception]
) -> None:
    backend = FakeBackend(turnaround=10)
    backend.fail_next(1, status=status, endpoint="batches.create", retry_after=7)
    backend.create_message(params(0))  # another endpoint: unaffected
    with pytest.raises(kind) as failed:
        backend.create_batch(requests(1))
    if isinstance(failed.value, RetryableBackendError):
        assert (failed.value.status, failed.value.retry_after) == (status, 7)
    assert backend.batch_ids() == []  # a failed create made nothing
    backend.create_batch(requests(1))  # one call only
    assert [c.endpoint for c in backend.calls] == ["messages", "batches.create", "batches.create"]


def test_unknown_and_forgotten_batches_are_404_and_listing_is_newest_first() -> None:
    backend = FakeBackend()
    first = backend.create_batch(requests(1))
    second = backend.create_batch(requests(2))
    assert [b.id for b in backend.list_batches()] == [second.id, first.id]
    backend.forget(first.id)
    assert [b.id for b in backend.list_batches()] == [second.id]
    for batch_id in (first.id, "msgbatch_nope"):
        with pytest.raises(PermanentBackendError, match="no batch found") as missing:
            backend.retrieve_batch(batch_id)
        assert missing.value.status == 404
    with pytest.raises(PermanentBackendError, match="not unique"):
        backend.create_batch([("a", json.dumps(params(0))), ("a", json.dumps(params(1)))])


def test_realtime_answers_are_the_emulators_with_programmable_text_and_latency(
    emulator_server: Any, sdk_for: Any
) -> None:
    clock = FakeClock()
    backend = FakeBackend(clock)
    ours = json.loads(backend.create_message(params(1)).message_json)
    theirs = sdk_for(emulator_server).messages.create(**params(1)).model_dump(mode="json")
    assert ours["content"][0]["text"] == theirs["content"][0]["text"]  # the same fake model
    for field in ("input_tokens", "output_tokens", "service_tier"):
        assert ours["usage"][field] == theirs["usage"][field]

    backend.reply = lambda p: "yes" if "ticket 2" in json.dumps(p) else "no, not at all"
    backend.realtime_latency = lambda p: float(p["max_tokens"])
    start = clock.now()
    answer = backend.create_message(params(2, max_tokens=5))
    assert json.loads(answer.message_json)["content"] == [{"type": "text", "text": "yes"}]
    assert answer.usage.output_tokens == 1 and answer.tier == "standard"
    assert clock.now() - start == timedelta(seconds=5)
    assert len(backend.messages_sent()) == 2


def test_crash_at_kills_the_process_the_nth_time_it_passes_the_point() -> None:
    program = (
        "from nowait.testing import crash_at\n"
        "hook = crash_at('result_line', 3)\n"
        "for i in range(5):\n"
        "    hook('batch_ended')\n"
        "    hook('result_line')\n"
        "    print(i, flush=True)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == -signal.SIGKILL
    assert done.stdout.split() == ["0", "1"]


def test_crash_at_refuses_an_unknown_point() -> None:
    assert "result_line" in CHECKPOINTS
    with pytest.raises(ValueError, match="unknown checkpoint 'result_lines'"):
        crash_at("result_lines", 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="1 or more"):
        crash_at("result_line", 0)
