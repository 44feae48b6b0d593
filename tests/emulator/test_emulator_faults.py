"""Fault and limit knobs, and how the official SDK's retries meet them (spec §6, §7)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import anthropic
import pytest

from nowait.clock import FakeClock
from nowait.emulator import EmulatorConfig, EmulatorServer, Faults, RateLimit, Turnaround

MODEL = "claude-sonnet-5-5"


def ask(**extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}


def one_request_batch() -> list[dict[str, Any]]:
    return [{"custom_id": "only", "params": ask()}]


# ---- the SDK's retries ----------------------------------------------------------------------
def test_sdk_gives_up_after_two_retries_of_a_persistent_529(
    sdk_for: Any, emulator_server: Any
) -> None:
    emulator = emulator_server.emulator
    emulator.fail_next(5, status=529, retry_after=0.01)
    with pytest.raises(anthropic.OverloadedError):
        sdk_for(emulator_server).messages.create(**ask())  # the default: max_retries=2
    assert emulator.calls["messages"] == 3
    emulator.fail_next(5, status=529, endpoint="batches.create", retry_after=0.01)
    with pytest.raises(anthropic.OverloadedError):
        sdk_for(emulator_server).messages.batches.create(requests=one_request_batch())
    assert emulator.calls["batches.create"] == 3 and emulator.batch_ids() == []


@pytest.mark.parametrize(("status", "kind"), [(500, "api_error"), (429, "rate_limit_error")])
def test_sdk_retries_500_and_429(
    sdk_for: Any, emulator_server: Any, status: int, kind: str
) -> None:
    emulator = emulator_server.emulator
    emulator.fail_next(1, status=status, retry_after=0.01)
    assert sdk_for(emulator_server).messages.create(**ask()).content
    assert emulator.calls["messages"] == 2
    emulator.fail_next(1, status=status, retry_after=0.01)
    with pytest.raises(anthropic.APIStatusError) as caught:
        sdk_for(emulator_server, max_retries=0).messages.create(**ask())
    assert caught.value.status_code == status
    assert caught.value.body["error"]["type"] == kind  # type: ignore[index]


def test_sdk_waits_as_long_as_retry_after_says(sdk_for: Any, emulator_server: Any) -> None:
    emulator_server.emulator.fail_next(1, status=529, retry_after=0.6)
    started = time.monotonic()
    assert sdk_for(emulator_server).messages.create(**ask()).content
    assert time.monotonic() - started >= 0.6  # its own first backoff is at most 0.5 s
    assert emulator_server.emulator.calls["messages"] == 2


# ---- fault rates ----------------------------------------------------------------------------
def test_overloaded_and_server_error_rates(sdk_for: Any) -> None:
    config = EmulatorConfig(seed=7, faults=Faults(overloaded=0.2, server_error=0.2))
    outcomes: Counter[str] = Counter()
    with EmulatorServer(config, FakeClock()) as server:
        sdk = sdk_for(server, max_retries=0)
        for _ in range(300):
            try:
                sdk.messages.create(**ask())
                outcomes["ok"] += 1
            except anthropic.APIStatusError as error:
                outcomes[error.body["error"]["type"]] += 1  # type: ignore[index]
    # 60 expected of each error; a seeded draw, with room for a fair coin's spread.
    assert 35 <= outcomes["overloaded_error"] <= 85
    assert 35 <= outcomes["api_error"] <= 85
    assert outcomes["ok"] == 300 - outcomes["overloaded_error"] - outcomes["api_error"]


def test_errored_and_expired_line_rates(sdk_for: Any, fake_clock: FakeClock) -> None:
    faults = Faults(errored_lines=0.1, expired_lines=0.2)
    config = EmulatorConfig(seed=3, faults=faults, turnaround=Turnaround(600))
    with EmulatorServer(config, fake_clock) as server:
        sdk = sdk_for(server)
        params = ask()
        batch = sdk.messages.batches.create(
            requests=[{"custom_id": f"r{i}", "params": params} for i in range(2000)]
        )
        fake_clock.advance(601)
        counts = sdk.messages.batches.retrieve(batch.id).request_counts
        assert 140 <= counts.errored <= 260  # 200 expected
        assert 320 <= counts.expired <= 480  # 400 expected
        assert counts.succeeded == 2000 - counts.errored - counts.expired
        errors = {
            line.result.error.error.type
            for line in sdk.messages.batches.results(batch.id)
            if line.result.type == "errored"
        }
        assert errors == {"overloaded_error"}


# ---- rate limits ----------------------------------------------------------------------------
def test_output_tokens_per_minute_limit(sdk_for: Any, fake_clock: FakeClock) -> None:
    config = EmulatorConfig(
        output_tokens=(120, 120), rate_limits={"*": RateLimit(output_tokens_per_minute=100)}
    )
    with EmulatorServer(config, fake_clock) as server:
        sdk = sdk_for(server, max_retries=0)
        first = sdk.messages.with_raw_response.create(**{**ask(), "max_tokens": 500})
        assert first.parse().usage.output_tokens == 120
        assert first.headers["anthropic-ratelimit-output-tokens-limit"] == "100"
        assert first.headers["anthropic-ratelimit-output-tokens-remaining"] == "0"
        with pytest.raises(anthropic.RateLimitError) as caught:
            sdk.messages.create(**ask())  # 20 tokens in debt: 13 s until one is free
        wait = int(caught.value.response.headers["retry-after"])
        assert wait == 13
        fake_clock.advance(wait)
        assert sdk.messages.create(**ask()).content
        assert "output tokens" in caught.value.message


def test_a_429_names_the_limit_that_ran_out(sdk_for: Any, fake_clock: FakeClock) -> None:
    config = EmulatorConfig(rate_limits={"*": RateLimit(requests_per_minute=1)})
    with EmulatorServer(config, fake_clock) as server:
        sdk = sdk_for(server, max_retries=0)
        assert sdk.messages.create(**ask()).content
        with pytest.raises(anthropic.RateLimitError) as caught:
            sdk.messages.create(**ask())
        assert "Number of requests has exceeded" in caught.value.message


def test_count_tokens_knows_only_real_models(sdk_for: Any, emulator_server: Any) -> None:
    sdk = sdk_for(emulator_server, max_retries=0)
    assert sdk.messages.count_tokens(model=MODEL, messages=ask()["messages"]).input_tokens > 0
    with pytest.raises(anthropic.NotFoundError):
        sdk.messages.count_tokens(model="claude-imaginary-9", messages=ask()["messages"])


def test_a_client_killed_mid_request_is_no_emulator_error(
    sdk_for: Any, emulator_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import socket
    from urllib.parse import urlsplit

    caplog.set_level("INFO", logger="nowait.emulator")
    url = urlsplit(emulator_server.base_url)
    with socket.create_connection((url.hostname, url.port)) as raw:  # half a body, then gone
        raw.sendall(
            b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: k\r\n"
            b"anthropic-version: 2023-06-01\r\ncontent-type: application/json\r\n"
            b'content-length: 1000\r\n\r\n{"model": '
        )
    deadline = time.monotonic() + 5
    while "client disconnected" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "client disconnected" in caplog.text
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    assert sdk_for(emulator_server).messages.create(**ask()).content  # it serves on
