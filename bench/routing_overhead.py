"""nowait against a bare SDK script doing the same batches on the emulator, in the same run.

Both sides send N batch requests, wait for the batch to end, and write every result to a
JSONL file. Each side runs in its own process so its peak memory (max RSS) is its own.
Prints wall time of each, the ratio (target ≤ 1.3) and the peak memory while collecting.

    .venv/bin/python bench/routing_overhead.py [--requests 100000]
"""

from __future__ import annotations

import argparse
import json
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PARAMS = {"model": "claude-haiku-5-5", "max_tokens": 64}


def request(i: int) -> dict[str, object]:
    return {
        **PARAMS,
        "messages": [{"role": "user", "content": f"Tag product {i}: a blue ceramic mug."}],
    }


def bare_sdk(base_url: str, n: int, out: Path) -> None:
    import anthropic

    client = anthropic.Anthropic(base_url=base_url, api_key="bench", max_retries=0, timeout=600)
    batch = client.messages.batches.create(
        requests=[{"custom_id": f"r{i}", "params": request(i)} for i in range(n)]  # type: ignore[misc]
    )
    while client.messages.batches.retrieve(batch.id).processing_status != "ended":
        time.sleep(0.05)
    with out.open("w") as sink:
        for line in client.messages.batches.results(batch.id):
            sink.write(
                json.dumps({"key": line.custom_id, "result": line.result.model_dump(mode="json")})
                + "\n"
            )


def with_nowait(base_url: str, n: int, out: Path, home: Path) -> None:
    from nowait.guard.policy import PollConfig
    from nowait.route.backend import AnthropicBackend
    from nowait.route.router import JsonlSink, Router
    from nowait.route.worker import WorkerConfig
    from nowait.store.sqlite import SQLiteStore

    store = SQLiteStore(home / "nowait.db")
    router = Router(
        store=store,
        backend=AnthropicBackend(api_key="bench", base_url=base_url),
        worker=WorkerConfig(poll=PollConfig(first=0.05, factor=1.0, longest=0.05)),
    )
    router.submit_many(router.prepare(request(i), key=f"r{i}") for i in range(n))
    sink = JsonlSink(out)
    router.run(sink, idle=0.05)
    sink.close()


def child(side: str, base_url: str, n: int, workdir: Path) -> None:
    started = time.perf_counter()
    if side == "sdk":
        bare_sdk(base_url, n, workdir / "sdk.jsonl")
    else:
        with_nowait(base_url, n, workdir / "nowait.jsonl", workdir / "home")
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mib": peak}))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--child", nargs=3, metavar=("SIDE", "URL", "DIR"))
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.requests, Path(args.child[2]))
        return
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "nowait", "emulator", "--port", str(port), "--turnaround", "0s"],
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.5)
    figures = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for side in ("sdk", "nowait"):
                done = subprocess.run(
                    [sys.executable, __file__, "--requests", str(args.requests),
                     "--child", side, base_url, tmp],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                figures[side] = json.loads(done.stdout.strip().splitlines()[-1])
                lines = sum(1 for _ in (Path(tmp) / f"{side}.jsonl").open())
                assert lines == args.requests, (side, lines)
    finally:
        server.terminate()
        server.wait(timeout=10)
    sdk, ours = figures["sdk"], figures["nowait"]
    print(f"requests                 {args.requests:,} (one batch each side, results to JSONL)")
    print(f"bare SDK script          {sdk['seconds']:8.2f} s   peak RSS {sdk['peak_mib']:7.1f} MiB")
    print(
        f"nowait (durable, exactly-once) {ours['seconds']:8.2f} s   "
        f"peak RSS {ours['peak_mib']:7.1f} MiB"
    )
    print(
        f"wall-time ratio nowait/SDK     {ours['seconds'] / sdk['seconds']:8.2f}x (target <= 1.3)"
    )


if __name__ == "__main__":
    main()
