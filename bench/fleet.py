"""Many `nowait worker` processes on one PostgreSQL store, against the emulator (issue 17).

    .venv/bin/python bench/fleet.py --requests 20000

Starts a throw-away PostgreSQL server (tests/pgserver.py), then two phases, each on a fresh
schema of that server, against the emulator (100 ms real-time latency, per-minute rate
limits, 2% 529s with a 0.1 s `retry-after`):

1. Real-time throughput: 1, 2 and 4 workers (real `python -m nowait worker` processes)
   run awaited real-time requests (`--per-worker` each), each count `--rounds` times in
   turn (1, 2, 4, 1, 2, 4: a change in the machine's load meets every count); requests a
   second between 10% and 90% of the calls answered (the same warm-up and 529 tail left
   out for every count), and the ratio to one worker (targets: >= 1.7x with 2, >= 3x with
   4). The emulator runs in a process of its own here, so its CPU is neither the bench's
   nor behind the bench's GIL; its limit (100,000 requests a minute) is out of reach, but
   its rate-limit headers come back with every answer, as the API's do. The CPU each
   process spent per call in the window is printed (workers, emulator, PostgreSQL, the
   bench's polling).
2. Mixed load under kills: `--requests` requests, 10% awaited real time, the rest batch with
   deadlines, worked by `--workers` workers while one of them, picked at random, is
   SIGKILLed every `--kill-every` seconds and started again (same name, same --out file).
   The account's limit binds here (`--rpm`): the fleet shares one budget. Checks: every key
   delivered exactly once (across the workers' --out files), no batch request sent twice
   (custom_ids counted at the emulator), no deadline missed, 429s at most a handful.

Prints the figures; exits 1 when a check fails. Not a timed test: the figures are ratios
measured in the same run (the machines are noisy).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from nowait.clock import SystemClock
from nowait.emulator import EmulatorConfig, EmulatorServer, Turnaround
from nowait.emulator.config import Faults, RateLimit
from nowait.store import NewJob
from nowait.store.postgres import PostgresStore
from nowait.types import JobState, Route

MODEL = "claude-haiku-5-5"
WINDOW = (0.1, 0.9)
"""Throughput is measured between these shares of the calls answered, for every count of
workers alike: before, the workers wake up and make their first calls (connections, first
statements); after, the last calls are those a 529 sent back with a backoff, a tail that
measures the backoff, not the fleet."""
ANSWERED = (JobState.SUCCEEDED, JobState.FAILED, JobState.DELIVERED)
"""A call counts when its answer is stored, not when a pass delivers it (in chunks)."""
POLL = 0.025
"""Seconds between two counts of the calls answered: ±0.3% of a window of 8 s, and the
count's CPU (here and in PostgreSQL) a small share of a call's."""


@dataclass
class Options:
    requests: int = 20_000
    per_worker: int = 300
    workers: int = 4
    concurrency: int = 4
    kill_every: float = 3.0
    rpm: int = 1200
    lease: float = 15.0
    overloaded: float = 0.02
    latency: float = 0.1
    timeout: float = 900.0
    counts: tuple[int, ...] = (1, 2, 4)
    rounds: int = 2


@dataclass
class Report:
    throughput: dict[int, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)


def parse(argv: list[str] | None) -> Options:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--requests", type=int, default=Options.requests)
    p.add_argument("--per-worker", type=int, default=Options.per_worker)
    p.add_argument("--workers", type=int, default=Options.workers)
    p.add_argument("--concurrency", type=int, default=Options.concurrency)
    p.add_argument("--kill-every", type=float, default=Options.kill_every)
    p.add_argument("--rpm", type=int, default=Options.rpm)
    p.add_argument("--lease", type=float, default=Options.lease)
    p.add_argument("--timeout", type=float, default=Options.timeout)
    p.add_argument("--rounds", type=int, default=Options.rounds)
    p.add_argument("--serve-emulator", type=int, metavar="PORT", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.serve_emulator:
        serve_emulator(a.serve_emulator, Options())
        sys.exit(0)
    return Options(
        a.requests, a.per_worker, a.workers, a.concurrency, a.kill_every, a.rpm, a.lease,
        timeout=a.timeout, rounds=a.rounds,
    )  # fmt: skip


def params(i: int) -> str:
    return json.dumps(
        {"model": MODEL, "max_tokens": 32, "messages": [{"role": "user", "content": f"item {i}"}]}
    )


def jobs(n: int, share_realtime: float, prefix: str) -> list[NewJob]:
    """`n` jobs: the first `share_realtime` of every ten awaited real time, the rest batch
    with a deadline two hours out."""
    now = SystemClock().now()
    deadline = now + timedelta(hours=2)
    out = []
    for i in range(n):
        awaited = (i % 10) < round(share_realtime * 10)
        out.append(
            NewJob(
                key=f"{prefix}{i}", params_json=params(i), model=MODEL,
                route=Route.REALTIME if awaited else Route.BATCH,
                reasons="bench", deadline=None if awaited else deadline, awaited=awaited,
            )
        )  # fmt: skip
    return out


class Fleet:
    """Worker processes on one store: started, killed and restarted by slot."""

    def __init__(self, dsn: str, base_url: str, opts: Options, root: Path, rpm: int) -> None:
        self.dsn, self.base_url, self.opts, self.root, self.rpm = dsn, base_url, opts, root, rpm
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.kills = 0

    def start(self, slot: int) -> None:
        env = {
            **os.environ, "ANTHROPIC_API_KEY": "bench-key", "NOWAIT_HOME": str(self.root),
            "PYTHONUNBUFFERED": "1",
        }  # fmt: skip
        command = [
            sys.executable, "-m", "nowait", "worker", "--store", self.dsn,
            "--base-url", self.base_url, "--poll", "0.2", "--worker-id", f"w{slot}",
            "--lease", str(self.opts.lease), "--concurrency", str(self.opts.concurrency),
            "--rpm", str(self.rpm), "--itpm", "100000000", "--otpm", "100000000",
            "--out", str(self.root / f"w{slot}.jsonl"), "--log-level", "WARNING",
        ]  # fmt: skip
        with (self.root / f"w{slot}.log").open("ab") as log:
            self.procs[slot] = subprocess.Popen(command, env=env, stdout=log, stderr=log)

    def kill_one(self, rng: random.Random) -> None:
        slot = rng.choice(sorted(self.procs))
        self.procs[slot].send_signal(signal.SIGKILL)
        self.procs[slot].wait()
        self.kills += 1
        self.start(slot)

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGINT)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def delivered(self) -> Counter[str]:
        keys: Counter[str] = Counter()
        for path in self.root.glob("w*.jsonl"):
            for line in path.read_text().splitlines():
                if line.strip():
                    keys[json.loads(line)["key"]] += 1
        return keys


@contextmanager
def schema(dsn: str, name: str) -> Iterator[str]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute(f"CREATE SCHEMA {name}")
    yield f"{dsn}?options=-csearch_path%3D{name}"


def wait_for(store: PostgresStore, n: int, timeout: float, state: JobState | None = None) -> float:
    """When `n` jobs have been delivered (or, with `state`, fewer than `n` wait in it), on
    the monotonic clock; inf: not within `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        counts = store.job_counts()
        if counts.get(state, 0) < n if state else counts.get(JobState.DELIVERED, 0) >= n:
            return time.monotonic()
        time.sleep(0.02)
    return float("inf")


def wait_joined(store: PostgresStore, n: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        [(joined,)] = store.dialect.read("SELECT count(*) FROM workers")  # the fleet table
        if joined >= n:
            return
        time.sleep(0.05)
    raise RuntimeError(f"{n} workers did not join in {timeout:g}s")


class Cpu:
    """CPU seconds spent so far by the worker processes, the emulator's process, the
    PostgreSQL server (the postmaster, the backends it reaped and those alive) and this
    process (polling the store), read from /proc."""

    def __init__(self, pg_data: Path | None) -> None:
        self.pg_data = pg_data
        self.tick = os.sysconf("SC_CLK_TCK")
        self.emulator: int | None = None
        """The emulator's process, when it has its own."""

    def now(self, workers: Fleet) -> dict[str, float]:
        return {
            "workers": sum(self._seconds(p.pid) for p in workers.procs.values()),
            "emulator": self._seconds(self.emulator) if self.emulator else 0.0,
            "postgres": self._postgres(),
            "bench": time.process_time(),
        }

    def _stat(self, pid: int) -> list[str]:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return []

    def _seconds(self, pid: int, reaped: bool = False) -> float:
        """utime + stime (+ cutime + cstime: the children it waited for)."""
        fields = self._stat(pid)
        return sum(int(f) for f in fields[11 : 15 if reaped else 13]) / self.tick

    def _postgres(self) -> float:
        if self.pg_data is None:
            return 0.0
        try:
            pid = int((self.pg_data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return 0.0
        total = self._seconds(pid, reaped=True)
        for stat in Path("/proc").glob("[0-9]*/stat"):
            fields = self._stat(int(stat.parent.name))
            if fields and int(fields[1]) == pid:
                total += self._seconds(int(stat.parent.name))
        return total

    @staticmethod
    def per_call(spent: dict[str, float], calls: int) -> str:
        return ", ".join(f"{name} {seconds * 1000 / calls:.1f}" for name, seconds in spent.items())


def answered(store: PostgresStore) -> int:
    """Real-time calls answered so far (a 529's retry is answered when it is)."""
    states = [s.value for s in ANSWERED]
    [(count,)] = store.dialect.read("SELECT count(*) FROM jobs WHERE state = ANY(?)", (states,))
    return int(count)


def wait_answered(store: PostgresStore, n: int, timeout: float) -> float:
    """When `n` calls have been answered, on the monotonic clock; inf: not within `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if answered(store) >= n:
            return time.monotonic()
        time.sleep(POLL)
    return float("inf")


def measure(
    dsn: str, base_url: str, opts: Options, n: int, name: str, cpu: Cpu
) -> tuple[int, float] | None:
    """One measurement with `n` workers: (calls, seconds) in the window, None: timed out."""
    with schema(dsn, name) as url, tempfile.TemporaryDirectory() as tmp:
        store = PostgresStore(url)
        fleet = Fleet(url, base_url, opts, Path(tmp), rpm=10_000_000)
        for slot in range(1, n + 1):
            fleet.start(slot)
        try:
            wait_joined(store, n)
            total = opts.per_worker * n
            start, end = (int(total * share) for share in WINDOW)
            store.add_jobs(jobs(total, 1.0, f"{name}-"), SystemClock().now())
            began = wait_answered(store, start, opts.timeout)
            spent = cpu.now(fleet)
            seconds = wait_answered(store, end, opts.timeout) - began
            spent = {k: v - spent[k] for k, v in cpu.now(fleet).items()}
            rest = wait_answered(store, total, opts.timeout) - began - seconds
        finally:
            fleet.stop()
            store.close()
    if rest == float("inf"):
        return None
    calls = end - start
    print(f"  {n} worker(s): calls {start:,} to {end:,} of {total:,} in {seconds:.2f} s,"
          f" {calls / seconds:.1f}/s (the last {rest:.2f} s later); CPU ms a call:"
          f" {Cpu.per_call(spent, calls)}", flush=True)  # fmt: skip
    return calls, seconds


def throughput(dsn: str, opts: Options, report: Report, cpu: Cpu) -> None:
    """Each count of workers `opts.rounds` times, the counts in turn (1, 2, 4, 1, 2, 4: a
    change in the machine's load meets every count); a count's throughput is its calls over
    its seconds, all rounds together."""
    done: dict[int, list[tuple[int, float]]] = {n: [] for n in opts.counts}
    with emulator_process(opts, cpu) as base_url:
        for round_ in range(opts.rounds):
            for n in opts.counts:
                got = measure(dsn, base_url, opts, n, f"tp{n}r{round_}", cpu)
                if got is None:
                    report.failures.append(f"throughput with {n} workers: timed out")
                    return
                done[n].append(got)
    for n, runs in done.items():
        report.throughput[n] = sum(c for c, _ in runs) / sum(s for _, s in runs)
    one = report.throughput.get(1)
    print("  calls a second: " + ", ".join(
        f"{n} worker(s) {tp:.1f}" for n, tp in report.throughput.items()))  # fmt: skip
    for n, target in ((2, 1.7), (4, 3.0)):
        if one and n in report.throughput:
            ratio = report.throughput[n] / one
            report.figures[f"ratio_{n}"] = ratio
            print(f"  {n} workers / 1 worker: {ratio:.2f}x (target >= {target}x)")
            if ratio < target:
                report.failures.append(f"{n} workers: {ratio:.2f}x of one, below {target}x")


def emulator_config(opts: Options) -> EmulatorConfig:
    """The issue's emulator: 100 ms real-time latency, 2% 529s (0.1 s `retry-after`); the
    rate limits are set per phase."""
    return EmulatorConfig(
        realtime_latency=opts.latency,
        turnaround=Turnaround(2.0),
        faults=Faults(overloaded=opts.overloaded, retry_after=0.1),
    )


PHASE1_RPM = 100_000
"""Phase 1's limit at the emulator: its headers come back on every answer, as the API's
do, and the workers' pacing reads them; 4 workers' 160 calls a second (9,600 a minute)
stay far below it."""


@contextmanager
def emulator_process(opts: Options, cpu: Cpu) -> Iterator[str]:
    """Phase 1's emulator in a process of its own: its CPU is not the bench's (nor behind
    the bench's GIL), and it is counted on its own line. Yields its base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, __file__, "--serve-emulator", str(port)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the emulator process did not start") from None
                time.sleep(0.05)
        cpu.emulator = proc.pid
        yield f"http://127.0.0.1:{port}"
    finally:
        cpu.emulator = None
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def serve_emulator(port: int, opts: Options) -> None:
    """`--serve-emulator PORT`: phase 1's emulator, until interrupted."""
    from nowait.emulator.server import serve_forever

    config = replace(
        emulator_config(opts), rate_limits={"*": RateLimit(requests_per_minute=PHASE1_RPM)}
    )
    with suppress(KeyboardInterrupt):
        serve_forever(config, SystemClock(), "127.0.0.1", port)


def mixed(dsn: str, server: EmulatorServer, opts: Options, report: Report) -> None:
    emulator = server.emulator
    limited_before = emulator.rate_limited
    batches_before = set(emulator.batch_ids())
    emulator.configure(rate_limits={"*": RateLimit(requests_per_minute=opts.rpm)})
    rng = random.Random(17)
    with schema(dsn, "mixed") as url, tempfile.TemporaryDirectory() as tmp:
        store = PostgresStore(url)
        todo = jobs(opts.requests, 0.1, "k")
        store.add_jobs(todo, SystemClock().now())
        fleet = Fleet(url, server.base_url, opts, Path(tmp), rpm=opts.rpm)
        started = time.monotonic()
        for slot in range(1, opts.workers + 1):
            fleet.start(slot)
        next_kill = started + rng.uniform(0.5, 1.5) * opts.kill_every
        done = False
        try:
            while time.monotonic() - started < opts.timeout:
                if store.job_counts().get(JobState.DELIVERED, 0) >= opts.requests:
                    done = True
                    break
                if time.monotonic() >= next_kill:
                    fleet.kill_one(rng)
                    next_kill = time.monotonic() + rng.uniform(0.5, 1.5) * opts.kill_every
                time.sleep(0.05)
            seconds = time.monotonic() - started
        finally:
            fleet.stop()
        rows = store.deadline_rows()
        counts = store.job_counts()
        store.close()
        delivered = fleet.delivered()
    sent = Counter(
        cid
        for b in emulator.batch_ids()
        if b not in batches_before
        for cid in emulator.batch_custom_ids(b)
    )
    missed = sum(1 for r in rows if r.finished_at is None or r.finished_at > r.deadline)
    limited = emulator.rate_limited - limited_before
    twice = sum(1 for n in delivered.values() if n > 1)
    print(
        f"  {opts.requests:,} requests, {opts.workers} workers, {fleet.kills} SIGKILLs,"
        f" {seconds:.1f} s: delivered {len(delivered):,} keys ({twice} twice), batch"
        f" requests sent {sum(sent.values()):,} ({sum(1 for n in sent.values() if n > 1)}"
        f" custom_ids twice), deadlines missed {missed}, 429s {limited},"
        f" job states { {s.value: n for s, n in counts.items()} }",
        flush=True,
    )
    report.figures.update(kills=fleet.kills, limited=limited, missed=missed, seconds=seconds)
    expected = {j.key for j in todo}
    if not done:
        report.failures.append("mixed load: timed out before every key was delivered")
    if set(delivered) != expected:
        report.failures.append(f"mixed load: {len(expected - set(delivered))} keys not delivered")
    if twice:
        report.failures.append(f"mixed load: {twice} keys delivered twice")
    if any(n > 1 for n in sent.values()):
        report.failures.append("mixed load: a batch request was sent twice")
    if missed:
        report.failures.append(f"mixed load: {missed} deadlines missed")
    if limited > 5:
        report.failures.append(f"mixed load: {limited} calls refused 429 (a handful at most)")


def data_directory(dsn: str) -> Path | None:
    """The server's data directory, where `postmaster.pid` names its process (None: not
    readable here, e.g. another user's files)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as db:
        row = db.execute("SHOW data_directory").fetchone()
    path = Path(row[0]) if row else None
    try:
        return path if path is not None and (path / "postmaster.pid").exists() else None
    except OSError:
        return None


def run(opts: Options) -> Report:
    from pgserver import postgres_server

    report = Report()
    print(f"load average {os.getloadavg()[0]:.2f} at start", flush=True)
    with postgres_server() as dsn:
        print(f"real-time throughput ({opts.per_worker} calls a worker, concurrency"
              f" {opts.concurrency}, {opts.latency * 1000:g} ms latency, {opts.rounds} rounds;"
              f" the emulator in its own process):", flush=True)  # fmt: skip
        throughput(dsn, opts, report, Cpu(data_directory(dsn)))
        print(f"load average {os.getloadavg()[0]:.2f} after phase 1", flush=True)
        with EmulatorServer(emulator_config(opts), SystemClock()) as server:
            print(f"mixed load under SIGKILLs every ~{opts.kill_every:g} s (limit {opts.rpm}"
                  " requests/min):", flush=True)  # fmt: skip
            mixed(dsn, server, opts, report)
    print(f"load average {os.getloadavg()[0]:.2f} at end", flush=True)
    for failure in report.failures:
        print(f"FAILED: {failure}", flush=True)
    return report


def main(argv: list[str] | None = None) -> int:
    return 1 if run(parse(argv)).failures else 0


if __name__ == "__main__":
    sys.exit(main())
