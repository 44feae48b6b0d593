"""The drop-in client against the emulator over HTTP: the SDK's behaviour for ordinary calls,
nowait's routing for calls with its keywords, handles that outlive their process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest
from anthropic.types import Message

import nowait
from nowait import EmulatorConfig, EmulatorServer, WorkerConfig, build_receipt, open_store
from nowait.guard.policy import PollConfig
from nowait.guard.turnaround import Turnaround

ASK: dict[str, Any] = {
    "model": "claude-haiku-5-5",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "Summarize the night's tickets."}],
}
FAST = WorkerConfig(poll=PollConfig(first=0.05, factor=1.0, longest=0.05))

SCRIPT = """
import anthropic
{import_line}

client = Anthropic()
reply = client.messages.create(model="claude-haiku-5-5", max_tokens=32,
                               messages=[{{"role": "user", "content": "Hello there"}}])
print(type(reply).__module__, type(reply).__name__, reply.model, reply.stop_reason)
print(reply.content[0].text)
print([m.id for m in client.models.list(limit=2).data])
with client.messages.stream(model="claude-haiku-5-5", max_tokens=16,
                            messages=[{{"role": "user", "content": "Stream it"}}]) as stream:
    print("".join(stream.text_stream))
try:
    client.messages.create(model="no-such-model", max_tokens=8,
                           messages=[{{"role": "user", "content": "x"}}])
except anthropic.NotFoundError as exc:
    print("error", type(exc).__name__, exc.status_code)
client.close()
"""


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    with EmulatorServer(EmulatorConfig(turnaround=Turnaround(0.5))) as running:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", running.base_url)
        yield running


@pytest.fixture
def client(server: Any, tmp_path: Path) -> Iterator[nowait.Anthropic]:
    made = nowait.Anthropic(store=tmp_path / "nowait.db", worker_config=FAST)
    yield made
    made.close()


def run_script(import_line: str, cwd: Path) -> str:
    done = subprocess.run([sys.executable, "-c", SCRIPT.format(import_line=import_line)],
                          cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
                          env=os.environ.copy())  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_an_sdk_script_runs_unchanged_with_only_its_import_changed(
    server: Any, tmp_path: Path
) -> None:
    with_sdk = run_script("from anthropic import Anthropic", tmp_path)
    with_nowait = run_script("from nowait import Anthropic", tmp_path)
    assert "anthropic.types.message Message claude-haiku-5-5" in with_sdk
    assert "error NotFoundError 404" in with_sdk
    assert with_nowait == with_sdk
    assert not (Path(os.environ["NOWAIT_HOME"]) / "nowait.db").exists()  # no store opened


def test_deadline_on_one_call_sends_it_to_batch_and_returns_the_same_message_type(
    client: nowait.Anthropic,
) -> None:
    now = client.messages.create(**ASK)
    handle = client.messages.create(**ASK, deadline="6h", key="nightly-1", workload="nightly")
    assert isinstance(handle, nowait.Handle) and handle.key == "nightly-1"
    later = handle.result(timeout=60)
    assert type(later) is type(now) is Message
    assert handle.done()
    stored = client.engine.router.result("nightly-1")
    assert stored is not None and stored.tier == "batch" and stored.route == "batch"


def test_handles_survive_the_process_the_key_finds_the_result(server: Any, tmp_path: Path) -> None:
    store = tmp_path / "shared.db"
    first = nowait.Anthropic(store=store, worker="external", worker_config=FAST)
    handle = first.messages.create(**ASK, deadline="6h", key="report-7")
    assert not handle.done()  # nobody works on it: an external worker will
    first.close()  # the process that asked is gone

    later = nowait.Anthropic(store=store, worker_config=FAST)  # this one runs a worker
    try:
        found = later.handle("report-7")
        later.engine.start()
        assert isinstance(found.result(timeout=60), Message)
    finally:
        later.close()


def test_a_failed_request_raises_the_sdks_error(client: nowait.Anthropic, server: Any) -> None:
    server.emulator.fail_next(1, status=400, endpoint="messages")
    handle = client.messages.create(**ASK, awaited=True, key="chat-1")
    with pytest.raises(anthropic.BadRequestError) as raised:
        handle.result(timeout=60)
    assert raised.value.status_code == 400


def test_result_times_out_while_nobody_works(server: Any, tmp_path: Path) -> None:
    made = nowait.Anthropic(store=tmp_path / "n.db", worker="external", worker_config=FAST)
    try:
        handle = made.messages.create(**ASK, deadline="6h")
        with pytest.raises(TimeoutError):
            handle.result(timeout=0.2)
    finally:
        made.close()


def test_a_batch_block_submits_on_exit_and_its_handles_resolve(client: nowait.Anthropic) -> None:
    with client.batch(deadline="6h", workload="nightly") as b:
        handles = [b.messages.create(**ASK, key=f"n{i}") for i in range(5)]
        assert client.engine.router.store.job_counts() == {}  # nothing sent inside the block
    messages = [h.result(timeout=60) for h in handles]
    assert all(isinstance(m, Message) for m in messages)
    tiers = {client.engine.router.result(f"n{i}").tier for i in range(5)}  # type: ignore[union-attr]
    assert tiers == {"batch"}


def test_a_block_that_raises_submits_nothing(client: nowait.Anthropic) -> None:
    with pytest.raises(RuntimeError), client.batch(deadline="6h") as b:
        b.messages.create(**ASK, key="never")
        raise RuntimeError("the caller changed its mind")
    assert client.engine.router.store.get_job("never") is None


def test_split_routes_each_part_and_the_receipt_shows_both(client: nowait.Anthropic) -> None:
    deep_ask = {**ASK, "max_tokens": 64}
    fast, deep = client.split(fast=ASK, deep=deep_ask, key="export-9", deadline="6h",
                              workload="export-pdf")  # fmt: skip
    assert isinstance(fast.result(timeout=60), Message)
    assert isinstance(deep.result(timeout=60), Message)
    router = client.engine.router
    assert router.result(fast.key).route == "realtime"  # type: ignore[union-attr]
    assert router.result(deep.key).tier == "batch"  # type: ignore[union-attr]
    receipt = build_receipt(router.store.usage_rows())
    lines = {line.workload: line for line in receipt.lines}
    assert set(lines) == {"export-pdf:fast", "export-pdf:deep"}
    assert lines["export-pdf:fast"].realtime_requests == 1
    assert lines["export-pdf:deep"].requests == {nowait.Tier.BATCH: 1}
    assert lines["export-pdf:deep"].saved is not None and lines["export-pdf:deep"].saved > 0


def test_bad_nowait_input_is_a_clear_error(client: nowait.Anthropic) -> None:
    with pytest.raises(nowait.InputError, match="deadline"):
        client.messages.create(**ASK, deadline="soon")
    with pytest.raises(nowait.InputError, match=r"params\.messages"):
        client.messages.create(model="claude-haiku-5-5", max_tokens=8, messages="hi",  # type: ignore[arg-type]
                               deadline="6h")  # fmt: skip


def test_the_store_is_the_default_home_when_none_is_given(server: Any) -> None:
    made = nowait.Anthropic(worker="external")
    try:
        made.messages.create(**ASK, deadline="6h", key="k")
        home = Path(os.environ["NOWAIT_HOME"])
        store = open_store(home / "nowait.db")
        assert store.get_job("k") is not None
        store.close()
    finally:
        made.close()


def test_importing_nowait_does_not_import_the_sdk() -> None:
    code = (
        "import sys, nowait\nassert 'anthropic' not in sys.modules\n"
        "nowait.Anthropic\nassert 'anthropic' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_fake_clock_shared_with_the_emulator_runs_batch_time_in_a_blink(
    tmp_path: Path,
) -> None:
    clock = nowait.FakeClock()
    with EmulatorServer(clock=clock) as server:  # a batch takes ten minutes of fake time
        client = nowait.Anthropic(api_key="test-key", base_url=server.base_url, clock=clock,
                                  store=tmp_path / "nowait.db")  # fmt: skip
        try:
            started = clock.now()
            handle = client.messages.create(**ASK, deadline="6h")
            assert isinstance(handle.result(timeout=60), Message)
            assert (clock.now() - started).total_seconds() >= 60
        finally:
            client.close()


def test_with_options_keeps_the_store_and_worker(client: nowait.Anthropic) -> None:
    quick = client.with_options(timeout=30.0)
    assert isinstance(quick, nowait.Anthropic) and quick.timeout == 30.0
    handle = quick.messages.create(**ASK, deadline="6h", key="via-copy")
    assert quick.engine is client.engine
    assert isinstance(client.handle("via-copy").result(timeout=60), Message)
    assert handle.done()


def test_an_unknown_worker_mode_is_refused_at_once() -> None:
    with pytest.raises(nowait.InputError, match="worker"):
        nowait.Anthropic(api_key="k", worker="fleet")  # type: ignore[arg-type]


def test_a_worker_thread_beside_a_nowait_worker_says_so(server: Any, tmp_path: Path) -> None:
    busy = open_store(tmp_path / "nowait.db")
    made = nowait.Anthropic(store=tmp_path / "nowait.db", worker_config=FAST)
    try:
        with busy.claim():  # a `nowait worker` holds this store
            handle = made.messages.create(**ASK, deadline="6h")
            with pytest.raises(nowait.StoreBusyError):
                handle.result(timeout=30)
    finally:
        made.close()
        busy.close()


def test_beside_an_external_worker_the_awaited_part_runs_here_at_once(
    server: Any, tmp_path: Path
) -> None:
    made = nowait.Anthropic(store=tmp_path / "nowait.db", worker="external", worker_config=FAST)
    try:
        fast, deep = made.split(fast=ASK, deep=ASK, deadline="6h", workload="export")
        assert isinstance(fast.result(timeout=30), Message)  # no worker runs: this process did
        assert not deep.done()  # left for the fleet's `nowait worker`, in a batch
        job = made.engine.router.store.get_job(deep.key)
        assert job is not None and job.route.value == "batch"
    finally:
        made.close()
