"""Two stores on one API account: each store's requests carry its namespace, so a store that
crashed mid-create never takes the other store's batch for its own. Real `nowait run`
processes killed with SIGKILL, the real SDK, the emulator over HTTP, real SQLite files."""

from __future__ import annotations

import json
import logging
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest
from test_crash_safety import run

from nowait.clock import FakeClock, SystemClock
from nowait.emulator import EmulatorConfig, EmulatorServer, Turnaround
from nowait.route import custom_ids
from nowait.route.backend import AnthropicBackend, ResultLine
from nowait.route.router import Delivery, Router
from nowait.store import BatchState
from nowait.store.sqlite import SQLiteStore

N = 6


def params(store: str, i: int) -> dict[str, Any]:
    return {
        "model": "claude-haiku-5-5",
        "max_tokens": 24,
        "messages": [{"role": "user", "content": f"store {store}, item {i}: summarise it."}],
    }


def write_requests(path: Path, store: str) -> None:
    """The same keys and the same request count in both stores: only the prompts differ."""
    path.write_text(
        "".join(json.dumps({"key": f"k{i}", "params": params(store, i)}) + "\n" for i in range(N))
    )


def answers(out: Path) -> dict[str, str]:
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(line["ok"] for line in lines), lines
    assert Counter(line["key"] for line in lines) == {f"k{i}": 1 for i in range(N)}
    return {line["key"]: line["message"]["content"][0]["text"] for line in lines}


def test_a_store_never_adopts_another_stores_batch_after_a_crash(tmp_path: Path, cli: Any) -> None:
    with EmulatorServer(EmulatorConfig(turnaround=Turnaround(3.0)), SystemClock()) as server:
        homes = {name: tmp_path / f"home-{name}" for name in "AB"}
        files = {name: tmp_path / f"{name}.jsonl" for name in "AB"}
        outs = {name: tmp_path / f"out-{name}.jsonl" for name in "AB"}
        for name in "AB":
            write_requests(files[name], name)

        # A commits "create started" and dies before the call; B's batch then reaches the API
        # (B dies before storing its id): one API batch, A's plan's size, made after A started.
        killed = run(files["A"], homes["A"], outs["A"], server.base_url, "submit_started:1")
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        killed = run(files["B"], homes["B"], outs["B"], server.base_url, "batch_created:1")
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        [b_batch] = server.emulator.batch_ids()

        # A's reconciliation, while B's batch runs: it cannot tell yet, so it waits (no adopt,
        # no resend) and says so in `nowait status`.
        backend = AnthropicBackend(api_key="test-key", base_url=server.base_url)
        a = Router(store=SQLiteStore(homes["A"] / "nowait.db"), backend=backend)
        assert a.worker.submit_planned() == 0
        [plan] = a.store.batches(BatchState.PLANNED)
        assert plan.waiting_for == (b_batch,)
        a.store.close()
        backend.close()
        assert server.emulator.batch_ids() == [b_batch]  # nothing sent meanwhile
        status = cli("status", "--home", str(homes["A"]), "--json")
        assert json.loads(status.out)["waiting"] == [
            {"batch": plan.id, "requests": N, "waiting_for": [b_batch]}
        ]
        text = cli("status", "--home", str(homes["A"]))
        assert f"may already be {b_batch}" in text.out

        # Both restart and finish: each store gets its own answers, each request sent once.
        for name in "AB":
            finished = run(files[name], homes[name], outs[name], server.base_url, None)
            assert finished.returncode == 0, finished.stderr
        with anthropic.Anthropic(api_key="test-key", base_url=server.base_url) as sdk:
            for name in "AB":
                expected = {
                    f"k{i}": sdk.messages.create(**params(name, i)).content[0].text  # type: ignore[union-attr, call-overload]
                    for i in range(N)
                }
                assert answers(outs[name]) == expected, name
        sent = Counter(
            (parsed.namespace, parsed.job_id)
            for batch in server.emulator.batch_ids()
            for cid in server.emulator.batch_custom_ids(batch)
            if (parsed := custom_ids.parse(cid))
        )
        assert len({ns for ns, _ in sent}) == 2 and set(sent.values()) == {1}
        assert len(sent) == 2 * N
        status = cli("status", "--home", str(homes["A"]), "--json")
        assert json.loads(status.out)["waiting"] == []


class StrayLinesBackend(AnthropicBackend):
    """The real SDK on the emulator, with lines no store of ours sent slipped into every
    results file first: another store's (same job ids and attempts, another namespace) and
    a tool's."""

    def batch_results(self, batch_id: str) -> Iterator[ResultLine]:
        real = list(super().batch_results(batch_id))
        for line in real:
            parsed = custom_ids.parse(line.custom_id)
            assert parsed is not None
            foreign = custom_ids.custom_id("0" * 16, parsed.job_id, parsed.attempt)
            yield ResultLine(foreign, "errored", error_type="invalid_request_error")
        yield ResultLine("report-7", "succeeded", message=real[0].message)
        yield from real


def test_result_lines_of_other_stores_are_ignored_and_logged(
    tmp_path: Path, emulator_server: Any, fake_clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    backend = StrayLinesBackend(api_key="test-key", base_url=emulator_server.base_url)
    router = Router(store=SQLiteStore(tmp_path / "nowait.db"), backend=backend, clock=fake_clock)
    for i in range(3):
        router.submit(params("A", i), key=f"k{i}")
    received: list[Delivery] = []
    with caplog.at_level(logging.WARNING, logger="nowait.route.worker"):
        router.run(received.append)
    assert sorted(d.key for d in received) == ["k0", "k1", "k2"] and all(d.ok for d in received)
    ignored = [r for r in caplog.records if "ignored a result line" in r.getMessage()]
    assert len(ignored) == 4 and "'report-7'" in ignored[-1].getMessage()
    router.store.close()
    backend.close()
