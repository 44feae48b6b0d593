"""Capacity from the wire: the API's rate-limit headers read, kept, planned and paced with;
rate limits are waits, not failures."""

from __future__ import annotations

import json
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from nowait.clock import FakeClock
from nowait.emulator import EmulatorConfig, EmulatorServer, RateLimit
from nowait.errors import RetryableBackendError
from nowait.guard.capacity import capacity_in_use, model_class, observed_for
from nowait.guard.policy import Capacity, RetryConfig, wait_retry_at
from nowait.ratelimits import Limit, RateLimits, TokenBucket, read_rate_limits, read_retry_after
from nowait.route.backend import AnthropicBackend
from nowait.route.pacing import Pacer, Reservation
from nowait.route.router import Router
from nowait.route.worker import Worker, WorkerConfig
from nowait.settings import load_settings
from nowait.store import ObservedLimits
from nowait.store.sqlite import SQLiteStore
from nowait.testing import FakeBackend
from nowait.types import JobState, Usage
from router_helpers import ask

NOW = datetime(2026, 11, 24, 12, 3, tzinfo=UTC)


# ---- reading the headers ---------------------------------------------------------------------
def test_the_rate_limit_headers_are_read_as_the_api_sends_them() -> None:
    headers = {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "49",
        "anthropic-ratelimit-requests-reset": "2026-11-24T12:03:01Z",
        "anthropic-ratelimit-input-tokens-limit": "40000",
        "anthropic-ratelimit-input-tokens-remaining": "39000",
        "anthropic-ratelimit-output-tokens-limit": "oops",  # unreadable: left out
    }
    limits = read_rate_limits(headers)
    assert limits == RateLimits(
        Limit(50, 49, datetime(2026, 11, 24, 12, 3, 1, tzinfo=UTC)), Limit(40_000, 39_000), None
    )
    assert read_rate_limits({"request-id": "req_1"}) is None
    assert read_retry_after({"retry-after": "3", "retry-after-ms": "2500"}) == 2.5
    assert read_retry_after({"retry-after": "3"}) == 3.0
    assert read_retry_after({"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"}) is None


def test_a_token_bucket_refills_and_carries_a_debt() -> None:
    bucket = TokenBucket(60, NOW)  # one a second
    bucket.charge(60)
    assert bucket.wait_for(1) == pytest.approx(1.0)
    bucket.charge(30)  # actual usage above the estimate: a debt
    bucket.refill(NOW + timedelta(seconds=40))
    assert bucket.level == pytest.approx(10)
    assert bucket.wait_for(500) == pytest.approx(50)  # more than a minute's worth: a full one


# ---- the capacity in use -------------------------------------------------------------------
def seen(limits: RateLimits, at: datetime = NOW) -> ObservedLimits:
    return ObservedLimits("sonnet", limits, at)


@pytest.mark.parametrize(
    ("user_set", "observed", "expected_rpm", "expected_itpm", "source"),
    [
        (frozenset(), None, 50.0, 50_000.0, "defaults"),
        (frozenset({"requests_per_minute"}), None, 50.0, 50_000.0, "settings"),
        (frozenset(), RateLimits(Limit(4000), Limit(2_000_000)), 4000.0, 2e6, "headers at 12:03"),
        (
            frozenset({"requests_per_minute"}),  # the user's 50 is lower than the account's
            RateLimits(Limit(4000), Limit(2_000_000)),
            50.0,
            2e6,
            "headers at 12:03, settings lower",
        ),
        (frozenset({"requests_per_minute"}), RateLimits(Limit(20)), 20.0, 50_000.0, "headers"),
    ],
)
def test_the_capacity_is_the_lower_of_headers_and_settings(
    user_set: frozenset[str],
    observed: RateLimits | None,
    expected_rpm: float,
    expected_itpm: float,
    source: str,
) -> None:
    found = capacity_in_use(Capacity(), user_set, seen(observed) if observed else None, NOW)
    assert found.capacity.requests_per_minute == expected_rpm
    assert found.capacity.input_tokens_per_minute == expected_itpm
    assert found.capacity.concurrency == Capacity().concurrency  # never in the headers
    assert found.source.startswith(source)


def test_limits_are_kept_per_model_family() -> None:
    assert model_class("claude-sonnet-4-5-20250929") == model_class("claude-sonnet-5-5")
    assert model_class("claude-3-5-haiku-20241022") == "haiku"
    assert model_class("my-own-model") == "my-own-model"
    known = {"haiku": ObservedLimits("haiku", RateLimits(Limit(9)), NOW)}
    assert observed_for("claude-haiku-4-5", known) == known["haiku"]
    assert observed_for("claude-opus-5", known) is None
    old = NOW - timedelta(days=2)
    assert capacity_in_use(
        Capacity(), frozenset(), seen(RateLimits(Limit(9)), old), NOW
    ).source == (f"headers at {old:%Y-%m-%d} 12:03")


def test_a_worker_keeps_the_limits_it_observes_as_the_store_merges_them(
    fake_clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each answer's headers are recorded and merged into what the worker plans with, with
    no read of the store per answer: the same capacity a fresh read gives."""
    store = SQLiteStore(tmp_path / "s.db")
    worker = Worker(store, FakeBackend(), fake_clock)
    model = "claude-haiku-4-5"
    worker.capacity_in_use(model)  # the pass's one read
    reads = 0
    read = store.observed_limits

    def counted() -> list[ObservedLimits]:
        nonlocal reads
        reads += 1
        return read()

    monkeypatch.setattr(store, "observed_limits", counted)
    reset = fake_clock.now() + timedelta(seconds=30)
    worker.observe(model, RateLimits(Limit(900, 899, reset), Limit(90_000), Limit(9_000, 8_000)))
    fake_clock.advance(1)
    worker.observe(model, RateLimits(Limit(800, 700, reset)))  # tokens unstated: kept
    kept = worker.capacity_in_use(model)
    assert reads == 0
    fresh = Worker(store, FakeBackend(), fake_clock).capacity_in_use(model)
    assert kept == fresh and reads == 1
    assert kept.capacity.requests_per_minute == 800
    assert kept.capacity.output_tokens_per_minute == 9_000
    store.close()


def test_the_settings_say_which_capacity_fields_the_user_set() -> None:
    from nowait.guard.capacity import user_capacity

    settings = load_settings({"NOWAIT_CAPACITY__REQUESTS_PER_MINUTE": "30"}, flags={})
    assert user_capacity(settings) == {"requests_per_minute"}
    assert WorkerConfig.from_settings(settings).capacity_set == {"requests_per_minute"}


# ---- pacing --------------------------------------------------------------------------------
def test_the_pacer_holds_calls_to_every_limit_and_settles_with_usage() -> None:
    pacer, capacity = Pacer(), Capacity(60, 1_000, 600)
    first = pacer.reserve("haiku", capacity, 400, 100, NOW)
    assert isinstance(first, Reservation)
    assert isinstance(pacer.reserve("haiku", capacity, 400, 100, NOW), Reservation)
    wait = pacer.reserve("haiku", capacity, 400, 100, NOW)  # 1,000 input tokens a minute
    assert wait == pytest.approx(12.0)  # 200 missing at 1,000 a minute
    pacer.settle(first, Usage(input_tokens=100, output_tokens=10))  # 300 given back
    assert isinstance(pacer.reserve("haiku", capacity, 400, 100, NOW), Reservation)
    assert isinstance(pacer.reserve("opus", capacity, 400, 100, NOW), Reservation)  # own buckets
    pacer.pause("opus", capacity, 5.0, NOW)
    assert pacer.reserve("opus", capacity, 1, 1, NOW) == pytest.approx(5.0)
    later = NOW + timedelta(seconds=5)
    pacer.sync("opus", capacity, RateLimits(requests=Limit(60, 0)), later)  # the API: none left
    assert pacer.reserve("opus", capacity, 1, 1, later) == pytest.approx(1.0)  # one a second


# ---- the backend reads every response's headers --------------------------------------------
def test_the_backend_reads_the_limits_of_every_response(fake_clock: FakeClock) -> None:
    limits = {"*": RateLimit(2, 10_000, 2_000)}
    with (
        EmulatorServer(EmulatorConfig(rate_limits=limits), fake_clock) as server,
        AnthropicBackend(api_key="k", base_url=server.base_url) as backend,
    ):
        answer = backend.create_message(ask(1))
        assert answer.limits is not None and answer.limits.requests == Limit(
            2, 1, answer.limits.requests.reset if answer.limits.requests else None
        )
        assert answer.limits.input_tokens and answer.limits.input_tokens.limit == 10_000
        batch = backend.create_batch([("c1", json.dumps(ask(9)))])
        assert batch.limits is not None and batch.limits.requests
        assert batch.limits.requests.limit == 2
        assert next(backend.list_batches()).limits is not None
        assert backend.retrieve_batch(batch.id).limits is not None
        backend.create_message(ask(2))
        with pytest.raises(RetryableBackendError) as refused:
            backend.create_message(ask(3))
        assert refused.value.status == 429
        assert refused.value.retry_after is not None and 0 < refused.value.retry_after <= 30
        assert refused.value.limits and refused.value.limits.requests
        assert refused.value.limits.requests.remaining == 0
        assert server.emulator.rate_limited == 1


# ---- rate limits are waits -------------------------------------------------------------------
def test_wait_retries_have_no_attempt_cap_but_the_deadline() -> None:
    config = RetryConfig(max_attempts=5, base_delay=2)
    deadline = NOW + timedelta(hours=1)
    assert wait_retry_at(50, NOW, None, deadline, config) == NOW + timedelta(seconds=60)
    assert wait_retry_at(1, NOW, 7.5, deadline, config) == NOW + timedelta(seconds=7.5)
    assert wait_retry_at(1, NOW, 2 * 3600, deadline, config) is None  # pointless


def test_a_rate_limited_request_waits_past_the_attempt_cap_until_answered(
    fake_clock: FakeClock, tmp_path: Path
) -> None:
    backend = FakeBackend(fake_clock)
    backend.fail_next(12, status=429, retry_after=3)  # more refusals than max_attempts (5)
    with closing(
        Router(store=SQLiteStore(tmp_path / "s.db"), backend=backend, clock=fake_clock)
    ) as r:
        deadline = fake_clock.now() + timedelta(minutes=30)
        r.submit(ask(1), key="k", awaited=True, deadline=deadline)
        delivered: list[Any] = []
        r.run(delivered.append)
        [done] = delivered
        assert done.ok, done.error
        assert fake_clock.now() < deadline
        assert len(backend.calls_to("messages")) == 13


def test_a_rate_limited_request_fails_with_the_reason_once_the_deadline_makes_it_pointless(
    fake_clock: FakeClock, tmp_path: Path
) -> None:
    backend = FakeBackend(fake_clock)
    backend.fail_next(1000, status=529, retry_after=30)
    with closing(
        Router(store=SQLiteStore(tmp_path / "s.db"), backend=backend, clock=fake_clock)
    ) as r:
        deadline = fake_clock.now() + timedelta(minutes=10)
        r.submit(ask(1), key="k", awaited=True, deadline=deadline)
        r.run(lambda _: None)
        job = r.store.get_job("k")
        assert job is not None and job.state is JobState.DELIVERED and job.error
        assert "529" in job.error and "its deadline" in job.error
        assert job.attempts > 5  # waited past the attempt cap
        assert fake_clock.now() <= deadline


def test_other_server_errors_keep_the_attempt_cap(fake_clock: FakeClock, tmp_path: Path) -> None:
    backend = FakeBackend(fake_clock)
    backend.fail_next(1000, status=500)
    config = WorkerConfig(retry=RetryConfig(max_attempts=3, base_delay=1))
    store = SQLiteStore(tmp_path / "s.db")
    with closing(Router(store=store, backend=backend, clock=fake_clock, worker=config)) as r:
        r.submit(ask(1), key="k", awaited=True)
        r.run(lambda _: None)
        job = r.store.get_job("k")
        assert job is not None and job.error and "gave up after 3 attempts" in job.error
