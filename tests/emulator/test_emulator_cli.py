"""`nowait emulator` as a separate process, the way users and crash tests run it."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from typing import Any

import anthropic


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_emulator_command_serves_the_sdk(sdk_for: Any) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "nowait", "emulator", "--port", str(port), "--turnaround", "2s"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        server = type("Server", (), {"base_url": f"http://127.0.0.1:{port}"})()
        client = sdk_for(server, max_retries=8)
        deadline = time.monotonic() + 20
        while True:
            try:
                batch = client.messages.batches.create(
                    requests=[
                        {
                            "custom_id": "a",
                            "params": {
                                "model": "claude-haiku-5-5",
                                "max_tokens": 8,
                                "messages": [{"role": "user", "content": "hi"}],
                            },
                        }
                    ]
                )
                break
            except anthropic.APIConnectionError:
                assert time.monotonic() < deadline, "the emulator did not start"
                time.sleep(0.2)
        time.sleep(2.2)
        assert client.messages.batches.retrieve(batch.id).processing_status == "ended"
        [line] = list(client.messages.batches.results(batch.id))
        assert line.result.type == "succeeded"
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
