"""nowait against a bare SDK script doing the same batches on the emulator, in the same run.

Both sides send N batch requests, wait for the batch to end, and write every result to a
JSONL file. Each side runs in its own process so its peak memory (max RSS) is its own.
Prints wall time of each, the ratio (target ≤ 1.2) and each side's peak memory.

`--collect-sizes 20000,50000,100000`: peak memory of collecting alone, at each size: nowait
submits a batch and waits for its end in one process, then a fresh process collects and
delivers it to JSONL (its max RSS is the collect's), next to a bare SDK process iterating the
same batch's results to JSONL (target ≤ 200 MB, flat in N).

    .venv/bin/python bench/routing_overhead.py [--requests 100000] [--collect-sizes 20000,...]
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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nowait.route.router import Router

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


def bare_sdk_results(base_url: str, batch_id: str, out: Path) -> None:
    import anthropic

    client = anthropic.Anthropic(base_url=base_url, api_key="bench", max_retries=0, timeout=600)
    with out.open("w") as sink:
        for line in client.messages.batches.results(batch_id):
            sink.write(
                json.dumps({"key": line.custom_id, "result": line.result.model_dump(mode="json")})
                + "\n"
            )


def nowait_router(base_url: str, home: Path) -> Router:
    from nowait.guard.policy import PollConfig
    from nowait.route.backend import AnthropicBackend
    from nowait.route.router import Router
    from nowait.route.worker import WorkerConfig
    from nowait.store.sqlite import SQLiteStore

    return Router(
        store=SQLiteStore(home / "nowait.db"),
        backend=AnthropicBackend(api_key="bench", base_url=base_url),
        worker=WorkerConfig(poll=PollConfig(first=0.05, factor=1.0, longest=0.05)),
    )


def submit(router: Router, n: int) -> None:
    """As `nowait run FILE` does: every request through the door, routed in one pass."""
    from nowait.route.router import check_request

    checked = (check_request(request(i), key=f"r{i}") for i in range(n))
    router.submit_many(router.route_many(checked))


def with_nowait(base_url: str, n: int, out: Path, home: Path) -> None:
    from nowait.route.router import JsonlSink

    router = nowait_router(base_url, home)
    submit(router, n)
    with JsonlSink(out) as sink:
        router.run(sink, idle=0.05)


def nowait_until_ended(base_url: str, n: int, home: Path) -> None:
    """Submit `n` requests and wait for their batch to end; nothing collected."""
    from nowait.store import BatchState

    router = nowait_router(base_url, home)
    submit(router, n)
    worker = router.worker
    worker.plan_batches()
    worker.submit_planned()
    while not router.store.batches(BatchState.ENDED):
        time.sleep(0.05)
        worker.poll_batches()
    (batch,) = router.store.batches(BatchState.ENDED)
    (home / "api_id").write_text(batch.api_id or "")
    router.close()


def nowait_collect(base_url: str, out: Path, home: Path) -> None:
    """A fresh worker collects the ended batch and delivers every result to JSONL."""
    from nowait.route.router import JsonlSink

    router = nowait_router(base_url, home)
    with JsonlSink(out) as sink:
        router.run(sink, idle=0.05)
    router.close()


def child(side: str, base_url: str, n: int, workdir: Path) -> None:
    started = time.perf_counter()
    home = workdir / "home"
    home.mkdir(exist_ok=True)
    if side == "sdk":
        bare_sdk(base_url, n, workdir / "sdk.jsonl")
    elif side == "nowait":
        with_nowait(base_url, n, workdir / "nowait.jsonl", home)
    elif side == "ended":
        nowait_until_ended(base_url, n, home)
    elif side == "collect":
        nowait_collect(base_url, workdir / "collect.jsonl", home)
    else:  # "sdk-results"
        bare_sdk_results(base_url, (home / "api_id").read_text(), workdir / "sdk-results.jsonl")
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime  # on a busy machine, steadier than wall time
    print(json.dumps({"seconds": seconds, "cpu": cpu, "peak_mib": usage.ru_maxrss / 1024}))


def run_child(side: str, base_url: str, n: int, workdir: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--requests", str(n), "--child", side, base_url, str(workdir)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def lines_in(path: Path) -> int:
    with path.open() as file:
        return sum(1 for _ in file)


def overhead(base_url: str, n: int) -> None:
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        for side in ("sdk", "nowait"):
            figures[side] = run_child(side, base_url, n, Path(tmp))
            lines = lines_in(Path(tmp) / f"{side}.jsonl")
            assert lines == n, (side, lines)
    sdk, ours = figures["sdk"], figures["nowait"]
    print(f"requests                 {n:,} (one batch each side, results to JSONL)")
    for name, side in (("bare SDK script", sdk), ("nowait (durable, exactly-once)", ours)):
        print(
            f"{name:31} {side['seconds']:7.2f} s  (CPU {side['cpu']:6.2f} s)"
            f"  peak RSS {side['peak_mib']:6.1f} MiB"
        )
    print(
        f"wall-time ratio nowait/SDK      {ours['seconds'] / sdk['seconds']:7.2f}x (target <= 1.2);"
        f" CPU {ours['cpu'] / sdk['cpu']:.2f}x"
    )


def collect_memory(base_url: str, sizes: list[int]) -> None:
    print("collecting one ended batch into JSONL, each in a fresh process (peak RSS):")
    print(f"{'results':>9}  {'bare SDK results':>18}  {'nowait collect+deliver':>24}")
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            run_child("ended", base_url, n, workdir)
            sdk = run_child("sdk-results", base_url, n, workdir)
            ours = run_child("collect", base_url, n, workdir)
            for name in ("sdk-results", "collect"):
                lines = lines_in(workdir / f"{name}.jsonl")
                assert lines == n, (name, lines)
        print(
            f"{n:>9,}  {sdk['peak_mib']:8.1f} MiB {sdk['seconds']:5.1f} s"
            f"  {ours['peak_mib']:12.1f} MiB {ours['seconds']:5.1f} s"
        )
    print("target: nowait <= 200 MB (190.7 MiB), flat in N")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--collect-sizes", help="e.g. 20000,50000,100000: collect memory only")
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
    try:
        if args.collect_sizes:
            collect_memory(base_url, [int(n) for n in args.collect_sizes.split(",")])
        else:
            overhead(base_url, args.requests)
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
