"""Routing, packing, retries, cancel and exactly-once delivery, against the emulator."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import anthropic
import pytest

from nowait.clock import FakeClock
from nowait.emulator import EmulatorConfig, EmulatorServer
from nowait.errors import InputError
from nowait.guard.latency import MIN_CALLS, CallSample, learn
from nowait.guard.policy import Capacity, RouteRequest, decide_route
from nowait.ratelimits import Limit, RateLimits
from nowait.route.params import prompt_tokens_estimate
from nowait.route.router import CheckedRequest, Delivery, check_request
from nowait.store import BatchState
from nowait.types import JobState, Route, Tier
from router_helpers import ask


def run_all(router: Any) -> list[Delivery]:
    received: list[Delivery] = []
    router.run(received.append)
    return received


def test_routes_by_waiting_and_deadline_and_delivers_each_once(
    emulator_server: Any, make_router: Any, fake_clock: FakeClock
) -> None:
    router = make_router(emulator_server)
    now = fake_clock.now()
    router.submit(ask(0), key="chat", awaited=True)
    router.submit(ask(1), key="alert", deadline=now + timedelta(minutes=20))
    router.submit(ask(2), key="nightly", deadline=now + timedelta(hours=8))
    router.submit(ask(3), key="backlog")
    router.submit(ask(3), key="backlog")  # the same key again: nothing new
    routes = {j.key: j.route for j in router.store.jobs()}
    assert routes == {
        "chat": Route.REALTIME,
        "alert": Route.REALTIME,
        "nightly": Route.BATCH,
        "backlog": Route.BATCH,
    }
    received = run_all(router)
    assert sorted(d.key for d in received) == ["alert", "backlog", "chat", "nightly"]
    assert all(d.ok and d.message and d.message["type"] == "message" for d in received)
    assert {d.key: d.tier for d in received} == {
        "chat": "standard",
        "alert": "standard",
        "nightly": "batch",
        "backlog": "batch",
    }
    assert router.deliver(received.append) == 0  # nothing is delivered twice
    result = router.result("nightly")
    assert result is not None and result.ok
    assert emulator_server.emulator.calls["messages"] == 2
    assert emulator_server.emulator.batch_create_requests == 2


def test_packs_at_the_request_limit(fake_clock: FakeClock, make_router: Any) -> None:
    with EmulatorServer(EmulatorConfig(max_batch_requests=40), fake_clock) as server:
        router = make_router(server, max_batch_requests=40)
        for i in range(100):
            router.submit(ask(i), key=f"k{i}")
        assert len(run_all(router)) == 100
        sizes = sorted(
            len(server.emulator.batch_custom_ids(b)) for b in server.emulator.batch_ids()
        )
        assert sizes == [20, 40, 40]


def test_packs_at_the_byte_limit_measured_on_the_serialized_body(
    fake_clock: FakeClock, make_router: Any
) -> None:
    limit = 4_000
    with EmulatorServer(EmulatorConfig(max_batch_bytes=limit), fake_clock) as server:
        router = make_router(server, max_batch_bytes=limit)
        for i in range(60):
            router.submit(ask(i, system="Be concise. " * (i % 7)), key=f"k{i}")
        assert len(run_all(router)) == 60
        batches = router.store.batches(BatchState.COLLECTED)
        assert len(batches) >= 3 and all(b.body_bytes <= limit for b in batches)
        # every create call was accepted: none hit the emulator's 413
        assert server.emulator.calls["batches.create"] == len(batches)
        assert sum(b.request_count for b in batches) == 60


@pytest.mark.parametrize("fate", ["overloaded_error", "api_error", "rate_limit_error", "expired"])
def test_retryable_lines_are_retried(emulator_server: Any, make_router: Any, fate: str) -> None:
    emulator_server.emulator.fail_next_lines(2, fate)
    router = make_router(emulator_server)
    for i in range(5):
        router.submit(ask(i), key=f"k{i}")
    received = run_all(router)
    assert sorted(d.key for d in received) == [f"k{i}" for i in range(5)]
    assert all(d.ok for d in received)
    assert emulator_server.emulator.batch_create_requests == 7  # 5 + the 2 retried
    attempts = Counter(j.attempts for j in router.store.jobs())
    assert attempts == {1: 3, 2: 2}


def test_invalid_requests_fail_without_retry(emulator_server: Any, make_router: Any) -> None:
    emulator_server.emulator.fail_next_lines(1, "invalid_request_error")
    router = make_router(emulator_server)
    router.submit(ask(0), key="bad")
    router.submit(ask(1, model="claude-unknown-1"), key="unknown-model")
    router.submit(ask(2), key="good")
    received = {d.key: d for d in run_all(router)}
    assert not received["bad"].ok and "invalid_request_error" in (received["bad"].error or "")
    assert not received["unknown-model"].ok and "not_found_error" in (
        received["unknown-model"].error or ""
    )
    assert received["good"].ok
    assert emulator_server.emulator.batch_create_requests == 3  # no retry of permanent errors


def test_retries_stop_at_the_cap(emulator_server: Any, make_router: Any) -> None:
    from nowait.guard.policy import RetryConfig

    emulator_server.emulator.fail_next_lines(10, "overloaded_error")
    router = make_router(emulator_server, retry=RetryConfig(max_attempts=3))
    router.submit(ask(0), key="k")
    [delivery] = run_all(router)
    assert not delivery.ok and "gave up after 3 attempts" in (delivery.error or "")
    assert emulator_server.emulator.batch_create_requests == 3


def test_realtime_overload_and_rate_limits_are_retried_after_retry_after(
    emulator_server: Any, make_router: Any, fake_clock: FakeClock
) -> None:
    emulator_server.emulator.fail_next(1, status=529, retry_after=30)
    emulator_server.emulator.fail_next(1, status=429, retry_after=90)
    router = make_router(emulator_server)
    router.submit(ask(0), key="chat", awaited=True)
    start = fake_clock.now()
    [delivery] = run_all(router)
    assert delivery.ok and delivery.tier == "standard"
    assert emulator_server.emulator.calls["messages"] == 3
    assert fake_clock.now() - start >= timedelta(seconds=120)  # both retry-after values honoured


def test_realtime_permanent_errors_fail(emulator_server: Any, make_router: Any) -> None:
    router = make_router(emulator_server)
    router.submit(ask(0, model="claude-unknown-1"), key="x", awaited=True)
    [delivery] = run_all(router)
    assert not delivery.ok and "404" in (delivery.error or "")
    assert emulator_server.emulator.calls["messages"] == 1


def test_a_canceled_batch_has_its_finished_part_kept_and_the_rest_resent(
    emulator_server: Any, make_router: Any, fake_clock: FakeClock
) -> None:
    router = make_router(emulator_server)
    for i in range(40):
        router.submit(ask(i), key=f"k{i}")
    router.worker.run_once()  # plan + create
    [api_id] = emulator_server.emulator.batch_ids()
    fake_clock.advance(300)  # half of the 10-minute batch
    with anthropic.Anthropic(base_url=emulator_server.base_url, api_key="k") as sdk:
        sdk.messages.batches.cancel(api_id)
    received = run_all(router)
    assert sorted(d.key for d in received) == sorted(f"k{i}" for i in range(40))
    assert all(d.ok for d in received)
    first = emulator_server.emulator.get_batch(api_id).final_counts()
    assert 0 < first["succeeded"] < 40 and first["canceled"] == 40 - first["succeeded"]
    assert emulator_server.emulator.batch_create_requests == 40 + first["canceled"]


def test_bad_params_are_refused_at_submit(emulator_server: Any, make_router: Any) -> None:
    router = make_router(emulator_server)
    with pytest.raises(InputError, match=r"params\.model"):
        router.submit({"max_tokens": 5, "messages": []})
    with pytest.raises(InputError, match="stream"):
        router.submit({**ask(0), "stream": True})
    assert router.store.job_counts() == {}


def test_results_iterate_and_states(emulator_server: Any, make_router: Any) -> None:
    router = make_router(emulator_server)
    router.submit(ask(0), key="a")
    assert router.result("a") is None  # still pending
    router.run()
    assert [d.key for d in router.results()] == ["a"]
    assert router.store.job_counts() == {JobState.SUCCEEDED: 1}
    assert [j.tier for j in router.store.jobs()] == [Tier.BATCH]


@pytest.mark.parametrize(
    "torn", ['{"key": "a", "ok": tr', '{"key": "a", "ok": true, "message": null}']
)
def test_the_jsonl_sink_cuts_a_torn_last_line_and_redelivers_it_whole(
    tmp_path: Path, torn: str
) -> None:
    from nowait.route.router import JsonlSink

    out = tmp_path / "results.jsonl"
    out.write_text(json.dumps({"key": "x", "ok": True}) + "\n" + torn)  # power cut mid-line
    sink = JsonlSink(out)
    sink(Delivery("a", None, True, "batch", "batch", '{"m": 1}', None))  # redelivered
    sink(Delivery("b", None, True, "batch", "batch", '{"m": 2}', None))
    sink.flush()
    sink.close()
    assert [json.loads(line)["key"] for line in out.read_text().splitlines()] == ["x", "a", "b"]


@pytest.mark.parametrize(
    ("message_json", "error"),
    [('{"id": "msg_1", "content": [{"type": "text", "text": "caf\\u00e9 \\"q\\""}]}', None),
     (None, "errored invalid_request_error: bad \"param\"\nline")],
)  # fmt: skip
def test_a_jsonl_line_is_the_delivery_as_json(message_json: str | None, error: str | None) -> None:
    ok = message_json is not None
    delivery = Delivery('k"1', "w", ok, "batch", "batch", message_json, error)
    line = delivery.to_json_line()
    assert "\n" not in line and json.loads(line) == delivery.to_json()


def per_request_route(router: Any, request: CheckedRequest) -> tuple[Route, str]:
    """Routing as it was planned before `route_many`: capacity and latencies for each request."""
    now = router.clock.now()
    model = request.model
    capacity, guard = router.worker.latencies.plan(
        router.worker.capacity_in_use(model).capacity, router.config.guard, model,
        request.max_tokens,
    )  # fmt: skip
    asked = RouteRequest(
        request.awaited, request.deadline, model,
        prompt_tokens_estimate(request.params_json), request.max_tokens,
    )  # fmt: skip

    def chance(seconds: float) -> float:
        return router.forecast.probability_within(seconds, model, 1, now)

    decision = decide_route(asked, now, capacity, guard, chance)
    return decision.route, "; ".join(decision.reasons)


def test_routing_many_plans_once_a_model_and_routes_as_planning_each_request(
    emulator_server: Any, make_router: Any, fake_clock: FakeClock
) -> None:
    """Mixed input: awaited, no deadline, deadlines from minutes to a day, two models (one with
    stated rate limits, so their capacities differ), outputs and prompts of several sizes, on
    a small account where the real-time run of a request decides some routes."""
    router = make_router(
        emulator_server,
        capacity=Capacity(requests_per_minute=2, output_tokens_per_minute=3_000, concurrency=1),
    )
    now = fake_clock.now()
    router.store.record_rate_limits("haiku", RateLimits(requests=Limit(1, 1, now)), now)
    calls = [  # learned call durations that differ by output size (`route` plans with them)
        CallSample(model, output, output / 20)
        for model in ("claude-haiku-5-5", "claude-sonnet-5-5")
        for output in (16, 900, 8_000, 60_000)
        for _ in range(MIN_CALLS)
    ]
    router.worker._latencies = learn([], calls, router.config.capacity, router.config.guard)
    requests = []
    for i in range(240):
        model = ("claude-haiku-5-5", "claude-sonnet-5-5")[i % 2]
        params = {
            **ask(i, model),
            "max_tokens": (16, 900, 8_000, 60_000)[i % 4],
            "messages": [{"role": "user", "content": "x" * (40 * (i % 7) ** 4)}],
        }
        deadline = None if i % 5 == 0 else now + timedelta(minutes=2 * 1.04**i)
        requests.append(check_request(params, key=f"k{i}", deadline=deadline, awaited=i % 11 == 0))
    many = [(job.route, job.reasons) for job in router.route_many(requests)]
    assert many == [per_request_route(router, r) for r in requests]
    assert many == [(job.route, job.reasons) for job in map(router.route, requests)]
    assert len({route for route, _ in many}) == 2
    assert len({reasons for _, reasons in many}) >= 4  # every branch of the policy is met
