"""Create a 100,000-request batch on the emulator and stream its results through the SDK.

Prints the seconds for each step, the peak memory (RSS) of the emulator process and of this
client process, and the ratio of streaming results through the SDK to parsing the same JSONL
from memory (the baseline, measured in the same run).

    .venv/bin/python bench/emulator_batch_100k.py [--requests 100000]
"""

from __future__ import annotations

import argparse
import json
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import httpx2


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_until_up(base_url: str) -> None:
    for _ in range(200):
        try:
            httpx2.get(
                base_url + "/v1/messages/batches",
                headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
            )
            return
        except httpx2.TransportError:
            time.sleep(0.05)
    raise SystemExit("the emulator did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    n = parser.parse_args().requests
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "nowait", "emulator", "--port", str(port), "--turnaround", "0s"],
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_up(base_url)
        client = anthropic.Anthropic(base_url=base_url, api_key="bench", max_retries=0, timeout=600)
        requests = [
            {
                "custom_id": f"r{i}",
                "params": {
                    "model": "claude-haiku-5-5",
                    "max_tokens": 64,
                    "messages": [
                        {
                            "role": "user",
                            "content": f"Classify support ticket {i}: my order arrived damaged.",
                        }
                    ],
                },
            }
            for i in range(n)
        ]
        started = time.perf_counter()
        batch = client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
        created = time.perf_counter()
        del requests
        while client.messages.batches.retrieve(batch.id).processing_status != "ended":
            time.sleep(0.05)
        ended = time.perf_counter()
        lines = 0
        succeeded = 0
        for result in client.messages.batches.results(batch.id):
            lines += 1
            succeeded += result.result.type == "succeeded"
        streamed = time.perf_counter()
        raw = httpx2.get(
            f"{base_url}/v1/messages/batches/{batch.id}/results",
            headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
            timeout=600,
        ).content
        t0 = time.perf_counter()
        parsed = sum(1 for line in raw.splitlines() if json.loads(line))
        baseline = time.perf_counter() - t0
        client_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        emulator_peak = peak_rss_mib(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert lines == parsed == n and succeeded == n, (lines, parsed, succeeded)
    sdk_seconds = streamed - ended
    print(f"requests                      {n:,}")
    print(f"results JSONL size            {len(raw) / 1e6:,.1f} MB")
    print(f"create (SDK → emulator)       {created - started:8.2f} s")
    print(f"until ended (polling)         {ended - created:8.2f} s")
    print(f"stream results through SDK    {sdk_seconds:8.2f} s  ({n / sdk_seconds:,.0f} results/s)")
    print(f"baseline: json.loads of same  {baseline:8.2f} s")
    print(f"ratio SDK streaming/baseline  {sdk_seconds / baseline:8.2f}x")
    print(f"peak RSS emulator             {emulator_peak:8.1f} MiB")
    print(
        f"peak RSS client               {client_peak:8.1f} MiB "
        "(includes the request list and the baseline copy)"
    )


if __name__ == "__main__":
    main()
