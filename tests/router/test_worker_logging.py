"""What the route side logs: every batch state change and job state changes counted per step,
never one line per job, never a request's content, never the API key."""

from __future__ import annotations

import logging
from contextlib import closing
from pathlib import Path

import pytest

from nowait.clock import FakeClock
from nowait.emulator import EmulatorConfig, EmulatorServer
from nowait.route.backend import AnthropicBackend, AuthError
from nowait.route.router import Router
from nowait.store.sqlite import SQLiteStore
from nowait.testing import FakeBackend
from router_helpers import ask

SECRET = "sk-ant-api03-DO-NOT-LOG-ME-0123456789"
PROMPT = "Label item"  # every request's content starts so (router_helpers.ask)


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("nowait")]


def test_batch_and_job_changes_are_logged_with_counts_not_per_job(
    tmp_path: Path, fake_clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    backend = FakeBackend(fake_clock, turnaround=600)
    backend.fail_next_lines(2, "overloaded_error")
    # a 500, not a 529: a 529's retry-after pauses every call of the model class (pacing), so
    # the calls in flight beside it would be counted in one pass or the next
    backend.fail_next(1, status=500, retry_after=5)
    with closing(SQLiteStore(tmp_path / "nowait.db")) as store:
        router = Router(store=store, backend=backend, clock=fake_clock)
        for i in range(200):
            router.submit(ask(i), key=f"k{i}")
        for i in range(3):
            router.submit(ask(1000 + i), key=f"chat{i}", awaited=True)
        caplog.set_level(logging.INFO, logger="nowait")
        router.run(lambda _: None)

    said = messages(caplog)
    first, second = backend.batch_ids()
    expected = [
        "plan: queued→submitting: 200 jobs in 1 batches",
        "batch #1 planned: 200 requests, claude-haiku-5-5, ",
        f"batch #1 created: {first}, 200 requests; submitting→in_batch: 200 jobs",
        f"batch {first}: in_progress→ended after 0:10:00:"
        " 198 succeeded, 2 errored, 0 canceled, 0 expired",
        f"batch {first} collected: 200 lines (2 errored, 198 succeeded);"
        " in_batch→queued: 2 jobs, in_batch→succeeded: 198 jobs",
        "plan: queued→submitting: 2 jobs in 1 batches",
        f"batch #2 created: {second}, 2 requests; submitting→in_batch: 2 jobs",
        f"batch {second} collected: 2 lines (2 succeeded); in_batch→succeeded: 2 jobs",
        "realtime: running→queued: 1 job, running→succeeded: 2 jobs",
        "realtime: running→succeeded: 1 job",
        "deliver: succeeded|failed→delivered: 198 jobs",
        "deliver: succeeded|failed→delivered: 1 job",
    ]
    for line in expected:
        assert any(m.startswith(line) for m in said), (line, said)
    assert len(said) < 30  # 203 jobs: counted per step, never a line per job
    assert not any("k1" in m or PROMPT in m for m in said)  # no keys, no content


def test_the_api_key_and_request_content_never_reach_a_log_record(
    tmp_path: Path, fake_clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    config = EmulatorConfig(api_keys=frozenset({SECRET}))
    caplog.set_level(logging.DEBUG, logger="nowait")
    with (
        EmulatorServer(config, fake_clock) as server,
        closing(SQLiteStore(tmp_path / "a.db")) as store,
    ):
        server.emulator.fail_next(1, status=529, endpoint="messages", retry_after=1)
        server.emulator.fail_next(1, status=529, endpoint="batches.create", retry_after=1)
        with AnthropicBackend(api_key=SECRET, base_url=server.base_url) as backend:
            router = Router(store=store, backend=backend, clock=fake_clock)
            router.submit(ask(0), key="chat", awaited=True)
            router.submit(ask(1), key="later")
            router.run(lambda _: None)
        wrong = SECRET.replace("ME", "ME-EITHER")
        with (
            closing(SQLiteStore(tmp_path / "b.db")) as other,
            AnthropicBackend(api_key=wrong, base_url=server.base_url) as refused,
        ):
            router = Router(store=other, backend=refused, clock=fake_clock)
            router.submit(ask(2), key="chat", awaited=True)
            with pytest.raises(AuthError):
                router.run(lambda _: None)
    said = messages(caplog)
    assert any("529 overloaded_error" in m for m in said)  # failures are logged...
    assert any("401" in m for m in said)
    everything = caplog.text + "\n".join(said)
    assert SECRET not in everything and wrong not in everything  # ...the key never
    assert PROMPT not in everything


def test_worker_loggers_are_named_by_module() -> None:
    from nowait.route import backend, router, worker

    assert {m.log.name for m in (backend, router, worker)} == {  # type: ignore[attr-defined]
        "nowait.route.backend",
        "nowait.route.router",
        "nowait.route.worker",
    }
