"""The Messages API of the emulator, driven by the official SDK over real HTTP."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import httpx2
import pytest

from nowait.clock import FakeClock, SystemClock
from nowait.emulator import EmulatorConfig, EmulatorServer, RateLimit, create_app

MODEL = "claude-sonnet-5-5"
LONG_SYSTEM = "You are a careful analyst of support tickets. " * 120  # ~1,350 tokens


def ask(text: str = "Summarise ticket 42.", **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 200,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }


def test_create_is_deterministic_and_usage_matches_count_tokens(
    sdk_for: Any, emulator_server: Any
) -> None:
    sdk = sdk_for(emulator_server)
    first = sdk.messages.create(**ask())
    again = sdk.messages.create(**ask())
    counted = sdk.messages.count_tokens(model=MODEL, messages=ask()["messages"])
    assert first.content[0].type == "text"
    assert first.content == again.content
    assert first.id != again.id and first.id.startswith("msg_")
    assert first.usage.input_tokens == counted.input_tokens > 0
    assert first.usage.output_tokens == len(first.content[0].text.split())
    assert first.usage.service_tier == "standard"
    assert first.stop_reason == "end_turn"
    assert first._request_id and first._request_id.startswith("req_")


def test_max_tokens_and_stop_sequences_are_respected(sdk_for: Any, emulator_server: Any) -> None:
    sdk = sdk_for(emulator_server)
    short = sdk.messages.create(**{**ask(), "max_tokens": 3})
    assert short.stop_reason == "max_tokens"
    assert short.usage.output_tokens == 3 == len(short.content[0].text.split())
    full = sdk.messages.create(**ask()).content[0].text
    word = full.split()[2]
    stopped = sdk.messages.create(**ask(stop_sequences=[word]))
    assert stopped.stop_reason == "stop_sequence"
    assert stopped.stop_sequence == word
    assert word not in stopped.content[0].text


def test_a_stop_sequence_at_the_start_still_costs_an_output_token(
    sdk_for: Any, emulator_server: Any
) -> None:
    sdk = sdk_for(emulator_server)
    first_word = sdk.messages.create(**ask()).content[0].text.split()[0]
    stopped = sdk.messages.create(**ask(stop_sequences=[first_word]))
    assert stopped.stop_reason == "stop_sequence" and stopped.content[0].text == ""
    assert stopped.usage.output_tokens == 1  # the API never reports 0 output tokens


def test_forced_tool_choice_returns_a_tool_call(sdk_for: Any, emulator_server: Any) -> None:
    tool = {"name": "lookup", "description": "Find an order", "input_schema": {"type": "object"}}
    forced = ask(tools=[tool], tool_choice={"type": "tool", "name": "lookup"})
    reply = sdk_for(emulator_server).messages.create(**forced)
    assert reply.stop_reason == "tool_use"
    assert reply.content[0].type == "tool_use" and reply.content[0].name == "lookup"
    assert reply.usage.output_tokens < 200
    capped = sdk_for(emulator_server).messages.create(**{**forced, "max_tokens": 3})
    assert capped.stop_reason == "max_tokens" and capped.usage.output_tokens == 3


def test_streaming_yields_the_same_answer(sdk_for: Any, emulator_server: Any) -> None:
    sdk = sdk_for(emulator_server)
    plain = sdk.messages.create(**ask())
    with sdk.messages.stream(**ask()) as stream:
        text = stream.get_final_text()
        final = stream.get_final_message()
    assert text == plain.content[0].text
    assert final.usage.output_tokens == plain.usage.output_tokens
    assert final.stop_reason == "end_turn"


def test_prompt_cache_writes_then_reads_and_expires(
    sdk_for: Any, emulator_server: Any, fake_clock: FakeClock
) -> None:
    sdk = sdk_for(emulator_server)
    system = [{"type": "text", "text": LONG_SYSTEM, "cache_control": {"type": "ephemeral"}}]
    first = sdk.messages.create(**ask(system=system))
    assert first.usage.cache_creation is not None
    written = first.usage.cache_creation.ephemeral_5m_input_tokens
    assert written >= 1024 and first.usage.cache_read_input_tokens == 0
    second = sdk.messages.create(**ask("Another ticket.", system=system))
    assert second.usage.cache_read_input_tokens == written
    assert second.usage.cache_creation_input_tokens == 0
    total = sdk.messages.count_tokens(
        model=MODEL, system=system, messages=ask("Another ticket.")["messages"]
    )
    assert second.usage.input_tokens + written == total.input_tokens
    fake_clock.advance(6 * 60)  # past the 5-minute lifetime
    third = sdk.messages.create(**ask(system=system))
    assert third.usage.cache_read_input_tokens == 0
    assert third.usage.cache_creation_input_tokens == written


def test_one_hour_cache_and_short_prefixes(
    sdk_for: Any, emulator_server: Any, fake_clock: FakeClock
) -> None:
    sdk = sdk_for(emulator_server)
    hour = [
        {"type": "text", "text": LONG_SYSTEM, "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    ]
    first = sdk.messages.create(**ask(system=hour))
    assert first.usage.cache_creation is not None
    assert first.usage.cache_creation.ephemeral_1h_input_tokens > 0
    fake_clock.advance(30 * 60)
    assert sdk.messages.create(**ask(system=hour)).usage.cache_read_input_tokens > 0
    tiny = [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]
    assert sdk.messages.create(**ask(system=tiny)).usage.cache_creation_input_tokens == 0


def test_authentication_keys_and_headers_of_every_sdk_generation(sdk_for: Any) -> None:
    config = EmulatorConfig(api_keys=frozenset({"good-key"}))
    with EmulatorServer(config, FakeClock()) as server:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            sdk_for(server, api_key="bad-key").messages.create(**ask())
        assert caught.value.status_code == 401
        assert caught.value.request_id and caught.value.request_id.startswith("req_")
        ok = sdk_for(server, api_key="good-key").messages.create(**ask())
        assert ok.content
        # 0.x/1.x SDKs: X-Api-Key, API version 2023-06-01, `?beta=true` on paths.
        old = httpx2.post(
            f"{server.base_url}/v1/messages?beta=true",
            json=ask(temperature=0.2),
            headers={"x-api-key": "good-key", "anthropic-version": "2023-06-01"},
        )
        assert old.status_code == 200 and old.json()["type"] == "message"
        assert old.headers["request-id"].startswith("req_")
        missing = httpx2.post(
            f"{server.base_url}/v1/messages",
            json=ask(),
            headers={"anthropic-version": "2023-06-01"},
        )
        assert missing.status_code == 401
        assert missing.json()["error"]["type"] == "authentication_error"


def test_api_version_2026_rejects_sampling_parameters(sdk_for: Any, emulator_server: Any) -> None:
    sdk = sdk_for(emulator_server)
    with pytest.raises(
        anthropic.BadRequestError, match="temperature: Extra inputs are not permitted"
    ):
        sdk.messages.create(**ask(), extra_body={"temperature": 0.5})
    old = sdk_for(emulator_server, default_headers={"anthropic-version": "2023-06-01"})
    assert old.messages.create(**ask(), extra_body={"temperature": 0.5}).content


def test_bad_requests_get_the_error_envelope(sdk_for: Any, emulator_server: Any) -> None:
    sdk = sdk_for(emulator_server)
    with pytest.raises(anthropic.NotFoundError, match="model: claude-nope"):
        sdk.messages.create(**{**ask(), "model": "claude-nope"})
    with pytest.raises(anthropic.BadRequestError, match="max_tokens: Field required"):
        sdk.post("/v1/messages", body={"model": MODEL, "messages": []}, cast_to=object)
    raw = httpx2.get(f"{emulator_server.base_url}/v1/nothing", headers={"x-api-key": "k"})
    assert raw.status_code == 404
    body = raw.json()
    assert body["type"] == "error" and body["error"]["type"] == "not_found_error"
    assert body["request_id"] == raw.headers["request-id"]


def test_too_deeply_nested_json_is_a_400_with_the_envelope(emulator_server: Any) -> None:
    raw = httpx2.post(
        f"{emulator_server.base_url}/v1/messages",
        content=b"[" * 100_000 + b"]" * 100_000,
        headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
    )
    assert raw.status_code == 400
    assert raw.json()["error"] == {
        "type": "invalid_request_error",
        "message": "body: Invalid JSON: nested too deeply",
    }
    assert raw.headers["request-id"] == raw.json()["request_id"]


def test_an_emulator_failure_still_answers_like_the_api(
    sdk_for: Any, emulator_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    emulator_server.emulator.configure(output_tokens=(9, 1))  # a broken knob: the model crashes
    with pytest.raises(anthropic.InternalServerError) as caught:
        sdk_for(emulator_server, max_retries=0).messages.create(**ask())
    assert caught.value.status_code == 500
    assert caught.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    assert caught.value.request_id and caught.value.request_id.startswith("req_")
    assert "failed" in caplog.text  # the traceback is logged for whoever runs the emulator
    emulator_server.emulator.configure(output_tokens=(1, 9))
    assert sdk_for(emulator_server).messages.create(**ask()).content  # and it keeps serving


def test_injected_overload_is_retried_by_the_sdk(sdk_for: Any, emulator_server: Any) -> None:
    emulator = emulator_server.emulator
    emulator.fail_next(1, status=529, retry_after=0.05)
    assert sdk_for(emulator_server).messages.create(**ask()).content
    assert emulator.calls["messages"] == 2
    emulator.fail_next(1, status=500)
    with pytest.raises(anthropic.InternalServerError):
        sdk_for(emulator_server, max_retries=0).messages.create(**ask())
    emulator.fail_next(1, status=529)
    with pytest.raises(anthropic.OverloadedError):
        sdk_for(emulator_server, max_retries=0).messages.create(**ask())


def test_midstream_error_event_raises_in_the_sdk(sdk_for: Any, emulator_server: Any) -> None:
    emulator_server.emulator.fail_next(1, midstream=True)
    client = sdk_for(emulator_server, max_retries=0)
    with (
        pytest.raises(anthropic.APIStatusError, match="Overloaded"),
        client.messages.stream(**ask()) as stream,
    ):
        stream.get_final_text()


def test_fault_rates_from_config(sdk_for: Any) -> None:
    from nowait.emulator import Faults

    config = EmulatorConfig(faults=Faults(overloaded=1.0))
    with EmulatorServer(config, FakeClock()) as server, pytest.raises(anthropic.OverloadedError):
        sdk_for(server, max_retries=0).messages.create(**ask())


def test_rate_limit_429_with_headers_and_sdk_retry(sdk_for: Any) -> None:
    config = EmulatorConfig(rate_limits={"*": RateLimit(requests_per_minute=30)})
    with EmulatorServer(config, SystemClock()) as server:
        sdk = sdk_for(server, max_retries=0)
        first = sdk.messages.with_raw_response.create(**ask(max_tokens=1))
        assert first.headers["anthropic-ratelimit-requests-limit"] == "30"
        assert int(first.headers["anthropic-ratelimit-requests-remaining"]) >= 28
        with pytest.raises(anthropic.RateLimitError) as caught:
            for _ in range(200):
                sdk.messages.create(**ask(max_tokens=1))
        assert 1 <= int(caught.value.response.headers["retry-after"]) <= 2
        assert caught.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
        before = server.emulator.calls["messages"]
        retried = sdk_for(server, max_retries=2).messages.create(**ask(max_tokens=1))
        assert retried.content
        assert server.emulator.calls["messages"] - before == 2  # a 429, then the retry


def test_token_rate_limits_apply_per_model(sdk_for: Any) -> None:
    config = EmulatorConfig(rate_limits={MODEL: RateLimit(input_tokens_per_minute=50)})
    with EmulatorServer(config, FakeClock()) as server:
        sdk = sdk_for(server, max_retries=0)
        assert sdk.messages.create(**ask("word " * 400)).content  # a full bucket admits one
        with pytest.raises(anthropic.RateLimitError):
            sdk.messages.create(**ask("word " * 400))
        other = sdk.messages.create(**{**ask("word " * 400), "model": "claude-haiku-5-5"})
        assert other.content


def test_async_client_in_process_and_over_http(emulator_server: Any) -> None:
    async def run() -> tuple[str, str]:
        app = create_app(clock=FakeClock())
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://emulator") as http:
            local = anthropic.AsyncAnthropic(
                base_url="http://emulator",
                api_key="k",
                http_client=http,
                _strict_response_validation=True,
            )
            in_process = await local.messages.create(**ask())
        remote = anthropic.AsyncAnthropic(
            base_url=emulator_server.base_url, api_key="k", _strict_response_validation=True
        )
        over_http = await remote.messages.create(**ask())
        await remote.close()
        return in_process.content[0].text, over_http.content[0].text  # type: ignore[union-attr]

    in_process, over_http = asyncio.run(run())
    assert in_process == over_http
