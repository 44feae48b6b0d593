"""Quarantine: an unexpected exception while working one job fails that job (error kind
`internal`) and every other job goes on; a restart never meets the same crash again. The
faults are real: store rows made bad behind nowait's back (as an older nowait, a manual edit
or a bug could leave them), sent with the real SDK to the emulator over HTTP."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from nowait.clock import FakeClock
from nowait.route.backend import AnthropicBackend
from nowait.route.router import Delivery, Router
from nowait.store import BatchState
from nowait.store.sqlite import SQLiteStore
from router_helpers import ask


def open_router(path: Path, server: Any, clock: FakeClock) -> Router:
    backend = AnthropicBackend(api_key="test-key", base_url=server.base_url)
    return Router(store=SQLiteStore(path), backend=backend, clock=clock)


def shut(router: Router) -> None:
    router.store.close()
    backend = router.backend
    assert isinstance(backend, AnthropicBackend)
    backend.close()


def spoil(path: Path, key: str, params_json: str) -> None:
    """Rewrite a queued job's stored request, as no check of nowait's would let it be."""
    with sqlite3.connect(path) as db:
        assert db.execute("UPDATE jobs SET params_json = ? WHERE key = ?", (params_json, key))


def run_all(router: Router) -> list[Delivery]:
    received: list[Delivery] = []
    router.run(received.append)
    return received


def test_a_bad_job_fails_internal_and_every_other_job_completes(
    tmp_path: Path, emulator_server: Any, fake_clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "nowait.db"
    router = open_router(path, emulator_server, fake_clock)
    for i in range(3):
        router.submit(ask(i), key=f"rt{i}", awaited=True)  # real time
    for i in range(4):
        router.submit(ask(i), key=f"b{i}")  # one batch
    # rt1: a parameter messages.create() does not take (TypeError inside the SDK call);
    # b2: a NaN that strict JSON cannot carry (the batch body cannot be serialized).
    spoil(path, "rt1", json.dumps({**ask(1), "temperature": 0.5}))
    spoil(path, "b2", json.dumps({**ask(2), "max_tokens": float("nan")}))
    with caplog.at_level(logging.ERROR, logger="nowait.route.worker"):
        received = {d.key: d for d in run_all(router)}
    assert sorted(received) == ["b0", "b1", "b2", "b3", "rt0", "rt1", "rt2"]
    bad = {k for k, d in received.items() if not d.ok}
    assert bad == {"rt1", "b2"}
    assert (received["rt1"].error or "").startswith("internal: TypeError: ")
    assert "temperature" in (received["rt1"].error or "")
    assert (received["b2"].error or "").startswith("internal: the stored request is not valid JSON")
    assert "internal error" in caplog.text  # logged, with the job
    # the good members of b2's plan were packed again and sent once, in a batch of their own
    sent = [
        c
        for b in emulator_server.emulator.batch_ids()
        for c in emulator_server.emulator.batch_custom_ids(b)
    ]
    assert len(sent) == 3
    shut(router)

    again = open_router(path, emulator_server, fake_clock)  # a restart: nothing to repeat
    assert run_all(again) == []
    assert again.store.job_counts() == {"delivered": 7}
    shut(again)


def test_a_job_left_running_by_a_crash_on_a_bad_row_is_not_a_crash_at_every_restart(
    tmp_path: Path, emulator_server: Any, fake_clock: FakeClock
) -> None:
    """A row that is not even JSON: the real-time path fails it instead of raising, so the
    job leaves `running` for good and the next start has nothing left to trip on."""
    path = tmp_path / "nowait.db"
    router = open_router(path, emulator_server, fake_clock)
    router.submit(ask(0), key="good", awaited=True)
    router.submit(ask(1), key="torn", awaited=True)
    spoil(path, "torn", '{"model": "claude-haiku-5-5", "max_tok')
    received = {d.key: d for d in run_all(router)}
    assert received["good"].ok and not received["torn"].ok
    assert (received["torn"].error or "").startswith("internal: JSONDecodeError")
    assert router.store.batches(*BatchState) == []
    shut(router)
    again = open_router(path, emulator_server, fake_clock)
    assert run_all(again) == []
    shut(again)


def test_a_batch_that_cannot_be_collected_fails_its_requests_and_the_rest_go_on(
    tmp_path: Path, emulator_server: Any, fake_clock: FakeClock
) -> None:
    """A member row of a batch the deadline guard cancelled made bad (its custom_id): the
    fallback needs every member, so collecting that batch raises, and its unanswered requests
    fail `internal`; the other batch and the real-time job complete, and the next start has
    nothing left to trip on."""
    path = tmp_path / "nowait.db"
    router = open_router(path, emulator_server, fake_clock)
    router.submit(ask(0), key="rt", awaited=True)
    router.submit(ask(1), key="a1")
    router.submit(ask(2), key="a2")
    router.submit(ask(3, model="claude-sonnet-5-5"), key="other")  # a batch of its own
    router.worker.run_once()  # both batches created
    job = router.store.get_job("a2")
    assert job is not None and job.batch_ref is not None
    router.store.request_cancel(job.batch_ref, fake_clock.now())
    with sqlite3.connect(path) as db:
        db.execute("UPDATE jobs SET custom_id = 'garbage' WHERE key = 'a2'")
    received = {d.key: d for d in run_all(router)}
    assert received["rt"].ok and received["other"].ok
    for key in ("a1", "a2"):
        assert not received[key].ok
        assert (received[key].error or "") == (
            "internal: ValueError: 'garbage' is not a custom_id nowait made"
        )
    assert sorted(b.state for b in router.store.batches(*BatchState)) == [
        BatchState.COLLECTED,
        BatchState.LOST,
    ]
    shut(router)
    again = open_router(path, emulator_server, fake_clock)
    assert run_all(again) == []
    shut(again)


def test_a_member_row_made_bad_in_a_batch_misses_its_line_and_is_sent_again(
    tmp_path: Path, emulator_server: Any, fake_clock: FakeClock
) -> None:
    """Collecting streams the lines and reads no member row: a line whose row lost its
    custom_id lands nowhere, so that job is left unanswered and sent again; the rest land."""
    path = tmp_path / "nowait.db"
    router = open_router(path, emulator_server, fake_clock)
    router.submit(ask(1), key="a1")
    router.submit(ask(2), key="a2")
    router.worker.run_once()  # the batch created
    with sqlite3.connect(path) as db:
        db.execute("UPDATE jobs SET custom_id = 'garbage' WHERE key = 'a2'")
    received = {d.key: d for d in run_all(router)}
    assert received["a1"].ok and received["a2"].ok
    assert emulator_server.emulator.batch_create_requests == 3  # both, then a2 alone again
    shut(router)
    again = open_router(path, emulator_server, fake_clock)
    assert run_all(again) == []
    shut(again)


@pytest.mark.parametrize(
    "text",
    [
        '{"custom_id": "nab-j1-a1", "result": {"type": "succeeded", "message": 5}}',
        '{"custom_id": "nab-j1-a1", "result": {"type": "succeeded", "message": {"usage":'
        ' {"input_tokens": -1}}}}',
        '{"custom_id": "nab-j1-a1", "result": ',
    ],
)
def test_an_unreadable_result_line_fails_its_job_internal(
    text: str, tmp_path: Path, emulator_server: Any, fake_clock: FakeClock
) -> None:
    """The line stands for its job (found by its custom_id) instead of ending the stream."""
    from nowait.route.backend import _read_line

    [line] = _read_line(text)
    assert line.custom_id == "nab-j1-a1" and line.kind == "unreadable"
    router = open_router(tmp_path / "nowait.db", emulator_server, fake_clock)
    outcome = router.worker._safe_outcome(line)
    assert outcome.kind == "failed" and (outcome.error or "").startswith("internal: unreadable")
    assert list(_read_line('{"no": "custom_id"}')) == []  # nothing to pin it on: logged only
    shut(router)
