"""`nowait emulator` as a separate process, the way users and crash tests run it."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from typing import Any

from nowait.cli.emulator import rate_limits
from nowait.emulator import RateLimit


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[str], seconds: float = 20) -> None:
    """Poll the socket: cheaper than riding the SDK's connection-retry backoff."""
    deadline = time.monotonic() + seconds
    while True:
        assert process.poll() is None, "the emulator exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            assert time.monotonic() < deadline, "the emulator did not start"
            time.sleep(0.05)


def ask(model: str) -> dict[str, Any]:
    return {"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}


def test_emulator_command_serves_the_sdk(sdk_for: Any) -> None:
    port = free_port()
    # An hour of emulated time per real second; a 30-minute call latency is half a second.
    flags = ["--time-scale", "3600", "--turnaround", "1h", "--latency", "30m"]
    flags += ["--cancel-latency", "15m"]  # a quarter of a real second
    flags += ["--rpm", "1000", "--rpm", "claude-haiku-5-5=1"]
    process = subprocess.Popen(
        [sys.executable, "-m", "nowait", "emulator", "--port", str(port), *flags],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(port, process)
        server = type("Server", (), {"base_url": f"http://127.0.0.1:{port}"})()
        client = sdk_for(server, max_retries=0)
        started = time.monotonic()
        sonnet = client.messages.with_raw_response.create(**ask("claude-sonnet-5-5"))
        assert time.monotonic() - started >= 0.45
        assert sonnet.headers["anthropic-ratelimit-requests-limit"] == "1000"
        haiku = client.messages.with_raw_response.create(**ask("claude-haiku-5-5"))
        assert haiku.headers["anthropic-ratelimit-requests-limit"] == "1"
        batch = client.messages.batches.create(
            requests=[{"custom_id": "a", "params": ask("claude-haiku-5-5")}]
        )
        deadline = time.monotonic() + 10
        while client.messages.batches.retrieve(batch.id).processing_status != "ended":
            assert time.monotonic() < deadline, "an emulated hour took over 10 real seconds"
            time.sleep(0.1)
        [line] = list(client.messages.batches.results(batch.id))
        assert line.result.type == "succeeded"
        created = client.messages.batches.with_raw_response.create(
            requests=[{"custom_id": "b", "params": ask("claude-sonnet-5-5")}]
        )  # every response states the limits, batch endpoints included
        assert created.headers["anthropic-ratelimit-requests-limit"] == "1000"
        slow = created.parse()
        started = time.monotonic()
        assert client.messages.batches.cancel(slow.id).processing_status == "canceling"
        while client.messages.batches.retrieve(slow.id).processing_status != "ended":
            assert time.monotonic() - started < 5, "a 15-minute cancel took over 5 real seconds"
            time.sleep(0.02)
        assert time.monotonic() - started >= 0.2  # 15 emulated minutes
    finally:
        process.terminate()
        process.wait(timeout=10)
        assert process.stderr is not None
        process.stderr.close()


def test_bad_flags_are_clear_errors(cli: Any) -> None:
    result = cli("emulator", "--turnaround", "soon")
    assert result.code == 2
    assert "--turnaround" in result.err and "expected e.g. 90s" in result.err
    assert "Traceback" not in result.err
    bad_rate = cli("emulator", "--overloaded-rate", "2")
    assert bad_rate.code == 2 and "probability" in bad_rate.err
    bad_cancel = cli("emulator", "--cancel-latency", "slowly")
    assert bad_cancel.code == 2 and "--cancel-latency" in bad_cancel.err
    bad_rpm = cli("emulator", "--rpm", "claude-haiku-4-5=fast")
    assert bad_rpm.code == 2 and "--rpm" in bad_rpm.err and "MODEL=N" in bad_rpm.err


def test_rate_limit_flags_per_model_inherit_the_defaults() -> None:
    limits = rate_limits(["50", "claude-haiku-4-5=500"], ["10000"], ["claude-opus-5=80"])
    assert limits == {
        "*": RateLimit(50, 10000, None),
        "claude-haiku-4-5": RateLimit(500, 10000, None),
        "claude-opus-5": RateLimit(50, 10000, 80),
    }
    assert rate_limits([], [], []) == {}
