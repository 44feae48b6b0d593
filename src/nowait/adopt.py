"""The drop-in client: change the import, then move call sites to batch one keyword at a time.

    client = nowait.Anthropic()                        # takes what anthropic.Anthropic takes
    client.messages.create(**ask)                      # the SDK, untouched: a Message, now
    handle = client.messages.create(**ask, deadline="6h", key="ticket-42")
    handle.result()                                    # the same Message type, at batch price

This module is the SDK's face, not a second backend: an ordinary call is the SDK's own call, and
a call with nowait's keywords (`deadline=`, `awaited=`, `key=`, `workload=`) goes to a `Router`
whose traffic all passes through `AnthropicBackend`. Handles are keys into the durable store,
so a result outlives the process that asked for it (`client.handle(key)` finds it later).

Who does the work: `worker="thread"` (scripts) runs one worker thread in this process;
`worker="external"` leaves it to `nowait worker` processes on the same store (web services).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
import uuid
import weakref
from collections.abc import Generator, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Self, TypeAlias, overload

import anthropic
import httpx2
from anthropic.resources.messages import AsyncMessages as _SDKAsyncMessages
from anthropic.resources.messages import Messages as _SDKMessages
from anthropic.types import Message

from nowait.clock import Clock, SystemClock
from nowait.durations import parse_duration
from nowait.errors import InputError, NowaitError
from nowait.route.backend import AnthropicBackend
from nowait.route.router import Delivery, Router, default_home, delivery_of
from nowait.route.worker import WorkerConfig
from nowait.store import NewJob, Store, open_store
from nowait.types import JobState, Route

if TYPE_CHECKING:
    from typing import Unpack

    from anthropic import AsyncStream, Stream
    from anthropic.types import RawMessageStreamEvent
    from anthropic.types.message_create_params import (
        MessageCreateParamsNonStreaming,
        MessageCreateParamsStreaming,
    )

    class CallParams(MessageCreateParamsNonStreaming, total=False):
        """A real-time call's params, with the SDK's per-call options."""

        extra_headers: Mapping[str, str] | None
        extra_query: Mapping[str, object] | None
        extra_body: Mapping[str, object] | None
        timeout: float | None

    class StreamParams(MessageCreateParamsStreaming, total=False):
        extra_headers: Mapping[str, str] | None
        extra_query: Mapping[str, object] | None
        extra_body: Mapping[str, object] | None
        timeout: float | None


log = logging.getLogger(__name__)

Deadline: TypeAlias = "str | timedelta | datetime"
"""`"6h"`, a `timedelta` from now, or an aware `datetime`."""
WorkerMode = Literal["thread", "external"]
NOWAIT_KEYWORDS = ("deadline", "awaited", "key", "workload")
IDLE_SECONDS = 30.0
"""How long an idle worker thread waits before looking at the store again (a submit from this
process wakes it at once)."""

# The API's error types and their HTTP statuses: a failed request raises the SDK's own error.
_ERROR_STATUS = {
    "invalid_request_error": 400, "authentication_error": 401, "billing_error": 402,
    "permission_error": 403, "not_found_error": 404, "request_too_large": 413,
    "rate_limit_error": 429, "api_error": 500, "timeout_error": 504, "overloaded_error": 529,
}  # fmt: skip
_STORED_ERROR = re.compile(r"^(?:\d{3} |errored )?([a-z_]+): (.*)$", re.S)


class RequestFailed(NowaitError):
    """A request ended without a message, for a reason the API has no error for (it expired
    or was canceled too often, or nowait could not apply its result)."""

    def __init__(self, key: str, error: str) -> None:
        self.key = key
        self.error = error
        super().__init__(f"request {key!r} failed: {error}")


# ---- the engine: one router per client, made on first nowait call -------------------------
class _Engine:
    """The client's router, its worker thread (if any), and the waiters on its results."""

    def __init__(
        self,
        sdk: anthropic.Anthropic | anthropic.AsyncAnthropic,
        store: Store | str | Path | None,
        worker: WorkerMode,
        config: WorkerConfig | None,
        clock: Clock | None,
    ) -> None:
        backend = AnthropicBackend(client=_plain_client(sdk))
        opened = (
            open_store(store or default_home() / "nowait.db")
            if store is None or isinstance(store, str | Path)
            else store
        )
        self.router = Router(store=opened, backend=backend, clock=clock or SystemClock(),
                             worker=config)  # fmt: skip
        self.mode = worker
        self.sdk = sdk
        self.passed = threading.Condition()  # notified after each pass of the worker thread
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failure: BaseException | None = None
        self._lock = threading.Lock()
        self._submitted = set[str]()
        self._pool: ThreadPoolExecutor | None = None
        """Keys this client submitted: they join its router's run, so one scan finds them."""

    # submitting
    def prepare(self, params: Mapping[str, Any], options: Mapping[str, Any]) -> NewJob:
        deadline = _deadline(options.get("deadline"), self.router.clock.now())
        awaited = options.get("awaited")
        with self._lock:
            return self.router.prepare(
                params, key=options.get("key"), workload=options.get("workload"),
                deadline=deadline, awaited=bool(awaited) if awaited is not None else False,
            )  # fmt: skip

    def submit(self, jobs: list[NewJob]) -> None:
        with self._lock:
            self.router.submit_many(jobs)
            self._submitted.update(job.key for job in jobs)
        self.start()
        self._wake.set()
        if self.mode == "external":  # real-time work runs here at once, not at a worker's pass
            for job in jobs:
                if job.route is Route.REALTIME:
                    self._now().submit(self.router.worker.run_now, job.key).add_done_callback(
                        _log_failure
                    )

    def _now(self) -> ThreadPoolExecutor:
        """The pool that runs real-time calls beside an external worker: the account's
        concurrency, as the worker's own real-time path."""
        with self._lock:
            if self._pool is None:
                size = max(1, self.router.config.capacity.concurrency)
                self._pool = ThreadPoolExecutor(size, thread_name_prefix="nowait-now")
            return self._pool

    # finding results
    def outcome(self, key: str) -> Delivery | None:
        if self.failure is not None:
            raise self.failure
        return self.router.result(key)

    def finished(self, keys: Iterable[str]) -> dict[str, Delivery]:
        """The outcomes of those of `keys` that have one: this client's own requests read in
        one pass over its run's finished jobs, any other key (`handle(key)`) one by one."""
        if self.failure is not None:
            raise self.failure
        wanted = set(keys)
        found: dict[str, Delivery] = {}
        for state in (JobState.SUCCEEDED, JobState.FAILED, JobState.DELIVERED):
            for job in self.router.store.jobs(state=state, run_id=self.router.run_id):
                if job.key in wanted:
                    found[job.key] = delivery_of(job)
        for key in wanted - self._submitted - found.keys():
            if (outcome := self.router.result(key)) is not None:
                found[key] = outcome
        return found

    def wait_for_pass(self, timeout: float) -> None:
        """Until the worker thread ends a pass, or `timeout` (an external worker: a poll)."""
        with self.passed:
            self.passed.wait(timeout)

    @property
    def poll_interval(self) -> float:
        return min(1.0, self.router.config.poll.first)

    # the worker thread
    def start(self) -> None:
        if self.mode != "thread" or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._work, name="nowait-worker", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        router, worker = self.router, self.router.worker
        try:
            with router.claim():
                worker.recover()
                while not self._stop.is_set():
                    report = worker.run_once()
                    with self.passed:
                        self.passed.notify_all()
                    if not report.busy:
                        self._rest()
        except BaseException as exc:  # handed to every waiter: the handles raise it
            self.failure = exc
            with self.passed:
                self.passed.notify_all()

    def _rest(self) -> None:
        """Until the next pass has work: a submit wakes the thread at once. Idle, it waits in
        real time; with work pending it waits on the router's clock, so a `FakeClock` shared
        with the emulator lets hours of batch time pass in a blink."""
        clock = self.router.clock
        if self.router.pending() == 0:
            self._wake.wait(IDLE_SECONDS)
        else:
            pause = max(
                0.0, (self.router.worker.next_wake(IDLE_SECONDS) - clock.now()).total_seconds()
            )
            if isinstance(clock, SystemClock):
                self._wake.wait(pause)
            else:
                clock.sleep(pause)
        self._wake.clear()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self.router.close()


def _log_failure(done: Future[str | None]) -> None:
    """A real-time call that stopped on something other than its request (a wrong key): the
    job went back to the queue; say why."""
    if (exc := done.exception()) is not None:
        log.error("a real-time call could not run here: %s", exc)


def _plain_client(
    sdk: anthropic.Anthropic | anthropic.AsyncAnthropic,
) -> anthropic.Anthropic:
    """A plain synchronous SDK client with the same credentials and endpoint, for the backend:
    nowait decides retries itself, so the SDK's are off."""
    return anthropic.Anthropic(
        api_key=sdk.api_key, auth_token=sdk.auth_token, base_url=str(sdk.base_url),
        max_retries=0, default_headers=dict(sdk._custom_headers),
    )  # fmt: skip


def _deadline(value: object, now: datetime) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, timedelta):
        return now + value
    if isinstance(value, str):
        try:
            return now + parse_duration(value)
        except ValueError:
            pass
    raise InputError(f"got {value!r}", field="deadline",
                     expected="a duration like '6h', a timedelta or an aware datetime")  # fmt: skip


def _message(delivery: Delivery, sdk: anthropic.Anthropic | anthropic.AsyncAnthropic) -> Message:
    """The SDK's `Message` for a finished request, or the error it ended with, raised."""
    if delivery.ok and delivery.message_json is not None:
        return Message.model_validate_json(delivery.message_json)
    error = delivery.error or "failed"
    found = _STORED_ERROR.match(error)
    status = _ERROR_STATUS.get(found.group(1)) if found else None
    if found is None or status is None:
        raise RequestFailed(delivery.key, error)
    body = {"type": "error", "error": {"type": found.group(1), "message": found.group(2)}}
    request = httpx2.Request("POST", f"{sdk.base_url}/v1/messages")
    response = httpx2.Response(status, request=request, json=body)
    raise sdk._make_status_error(error, body=body, response=response)


# ---- handles ------------------------------------------------------------------------------
class Handle:
    """A request handed to nowait. `.result()` waits for its `Message`; `.key` finds it later,
    from any process on the same store (`client.handle(key)`)."""

    def __init__(self, engine: _Engine, key: str) -> None:
        self._engine = engine
        self.key = key
        self._outcome: Delivery | None = None

    def __repr__(self) -> str:
        return f"<Handle {self.key!r} {'done' if self.done() else 'pending'}>"

    def done(self) -> bool:
        if self._outcome is None:
            self._outcome = self._engine.outcome(self.key)
        return self._outcome is not None

    def result(self, timeout: float | None = None) -> Message:
        """The message, once the request has finished; raises the SDK's error it ended with,
        `RequestFailed` when the API gave none, `TimeoutError` after `timeout` seconds."""
        give_up = None if timeout is None else time.monotonic() + timeout
        while not self.done():
            left = None if give_up is None else give_up - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"request {self.key!r} has not finished yet")
            step = self._engine.poll_interval
            self._engine.wait_for_pass(step if left is None else min(step, left))
        assert self._outcome is not None
        return _message(self._outcome, self._engine.sdk)


class AsyncHandle(Handle):
    """A `Handle` to await: `message = await handle`. Pending handles cost no thread: one
    task per event loop watches the store for all of them."""

    def __await__(self) -> Generator[Any, None, Message]:
        return self.wait().__await__()

    async def wait(self) -> Message:
        if self._outcome is None:
            self._outcome = await _watcher(self._engine).outcome(self.key)
        return _message(self._outcome, self._engine.sdk)


class _Watcher:
    """One per engine and event loop: resolves the futures of pending async handles after each
    worker pass (or each poll, with an external worker)."""

    def __init__(self, engine: _Engine, loop: asyncio.AbstractEventLoop) -> None:
        self.engine = engine
        self.loop = loop
        self.waiting: dict[str, list[asyncio.Future[Delivery]]] = {}
        self.task: asyncio.Task[None] | None = None

    def outcome(self, key: str) -> asyncio.Future[Delivery]:
        future: asyncio.Future[Delivery] = self.loop.create_future()
        self.waiting.setdefault(key, []).append(future)
        if self.task is None or self.task.done():
            self.task = self.loop.create_task(self._watch())
        return future

    async def _watch(self) -> None:
        while self.waiting:
            try:
                found = await asyncio.to_thread(self.engine.finished, list(self.waiting))
            except BaseException as exc:
                for futures in self.waiting.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(exc)
                self.waiting.clear()
                return
            for key, delivery in found.items():
                for future in self.waiting.pop(key, []):
                    if not future.done():
                        future.set_result(delivery)
            if self.waiting:
                await asyncio.to_thread(self.engine.wait_for_pass, self.engine.poll_interval)


_watchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, _Watcher]] = (
    weakref.WeakKeyDictionary()
)


def _watcher(engine: _Engine) -> _Watcher:
    loop = asyncio.get_running_loop()
    per_loop = _watchers.setdefault(loop, {})
    found = per_loop.get(id(engine))
    if found is None or found.engine is not engine:
        found = per_loop[id(engine)] = _Watcher(engine, loop)
    return found


class Split(NamedTuple):
    """A feature's two parts: the one someone waits on, and the one read later."""

    fast: Handle
    deep: Handle


class AsyncSplit(NamedTuple):
    fast: AsyncHandle
    deep: AsyncHandle


# ---- the messages resources -----------------------------------------------------------------
def _split_keywords(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Take nowait's keywords out of a call's arguments."""
    return {name: kwargs.pop(name) for name in NOWAIT_KEYWORDS if name in kwargs}


class Messages(_SDKMessages):
    """The SDK's `client.messages`, with nowait's keywords on `create`."""

    _owner: Anthropic

    if TYPE_CHECKING:

        @overload  # type: ignore[override]
        def create(
            self, *, deadline: Deadline, awaited: bool = ..., key: str | None = ...,
            workload: str | None = ..., **params: Unpack[MessageCreateParamsNonStreaming],
        ) -> Handle: ...  # fmt: skip
        @overload
        def create(
            self, *, awaited: Literal[False], key: str | None = ...,
            workload: str | None = ..., **params: Unpack[MessageCreateParamsNonStreaming],
        ) -> Handle: ...  # fmt: skip
        @overload
        def create(
            self, *, key: str, awaited: bool = ..., workload: str | None = ...,
            **params: Unpack[MessageCreateParamsNonStreaming],
        ) -> Handle: ...  # fmt: skip
        @overload
        def create(
            self, *, workload: str, awaited: bool = ...,
            **params: Unpack[MessageCreateParamsNonStreaming],
        ) -> Handle: ...  # fmt: skip
        @overload
        def create(self, **params: Unpack[CallParams]) -> Message: ...
        @overload
        def create(self, **params: Unpack[StreamParams]) -> Stream[RawMessageStreamEvent]: ...

    def create(self, **kwargs: Any) -> Any:
        options = _split_keywords(kwargs)
        if not options:
            return super().create(**kwargs)
        engine = self._owner.engine
        job = engine.prepare(kwargs, options)
        engine.submit([job])
        return Handle(engine, job.key)


class AsyncMessages(_SDKAsyncMessages):
    """The SDK's async `client.messages`, with nowait's keywords on `create`."""

    _owner: AsyncAnthropic

    if TYPE_CHECKING:

        @overload  # type: ignore[override]
        async def create(
            self, *, deadline: Deadline, awaited: bool = ..., key: str | None = ...,
            workload: str | None = ..., **params: Unpack[MessageCreateParamsNonStreaming],
        ) -> AsyncHandle: ...  # fmt: skip
        @overload
        async def create(
            self, *, awaited: Literal[False], key: str | None = ...,
            workload: str | None = ..., **params: Unpack[MessageCreateParamsNonStreaming],
        ) -> AsyncHandle: ...  # fmt: skip
        @overload
        async def create(
            self, *, key: str, awaited: bool = ..., workload: str | None = ...,
            **params: Unpack[MessageCreateParamsNonStreaming],
        ) -> AsyncHandle: ...  # fmt: skip
        @overload
        async def create(
            self, *, workload: str, awaited: bool = ...,
            **params: Unpack[MessageCreateParamsNonStreaming],
        ) -> AsyncHandle: ...  # fmt: skip
        @overload
        async def create(self, **params: Unpack[CallParams]) -> Message: ...
        @overload
        async def create(
            self, **params: Unpack[StreamParams]
        ) -> AsyncStream[RawMessageStreamEvent]: ...

    async def create(self, **kwargs: Any) -> Any:
        options = _split_keywords(kwargs)
        if not options:
            return await super().create(**kwargs)
        engine = self._owner.engine
        job = await asyncio.to_thread(engine.prepare, kwargs, options)
        await asyncio.to_thread(engine.submit, [job])
        return AsyncHandle(engine, job.key)


# ---- batch blocks ---------------------------------------------------------------------------
@dataclass
class _Block:
    engine: _Engine
    defaults: dict[str, Any]
    jobs: list[NewJob]

    def add(self, kwargs: dict[str, Any]) -> str:
        options = {**self.defaults, **_split_keywords(kwargs)}
        options.setdefault("awaited", False)
        job = self.engine.prepare(kwargs, options)
        self.jobs.append(job)
        return job.key


class _BlockMessages:
    def __init__(self, block: _Block) -> None:
        self._block = block

    def create(
        self, *, key: str | None = None, **params: Unpack[MessageCreateParamsNonStreaming]
    ) -> Handle:
        """Queue one request of the block (sent when the block ends); its handle now."""
        return Handle(self._block.engine, self._block.add({**params, "key": key}))


class _AsyncBlockMessages:
    def __init__(self, block: _Block) -> None:
        self._block = block

    def create(
        self, *, key: str | None = None, **params: Unpack[MessageCreateParamsNonStreaming]
    ) -> AsyncHandle:
        """Queue one request of the block (sent when the block ends); its handle now."""
        return AsyncHandle(self._block.engine, self._block.add({**params, "key": key}))


class Batch(AbstractContextManager["Batch"]):
    """`with client.batch(deadline="6h", workload="nightly") as b:` — every
    `b.messages.create(...)` in the block is checked at once and submitted when the block ends
    (in one transaction; nothing if the block raises)."""

    def __init__(self, engine: _Engine, defaults: dict[str, Any]) -> None:
        self._block = _Block(engine, defaults, [])
        self.messages = _BlockMessages(self._block)

    @property
    def handles(self) -> list[Handle]:
        return [Handle(self._block.engine, job.key) for job in self._block.jobs]

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None and self._block.jobs:
            self._block.engine.submit(self._block.jobs)


class AsyncBatch:
    """`async with client.batch(...) as b:` (or plain `with`): as `Batch`, with awaitable
    handles; thousands of them cost one watcher task."""

    def __init__(self, engine: _Engine, defaults: dict[str, Any]) -> None:
        self._block = _Block(engine, defaults, [])
        self.messages = _AsyncBlockMessages(self._block)

    def __enter__(self) -> AsyncBatch:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None and self._block.jobs:
            self._block.engine.submit(self._block.jobs)

    async def __aenter__(self) -> AsyncBatch:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None and self._block.jobs:
            await asyncio.to_thread(self._block.engine.submit, self._block.jobs)


# ---- the clients ----------------------------------------------------------------------------
class _LazyEngine:
    """nowait's constructor arguments, and the engine made from them on the first nowait call
    (never for ordinary calls: they open no store). Shared by a client and its copies."""

    def __init__(
        self, store: Store | str | Path | None, worker: WorkerMode,
        config: WorkerConfig | None, clock: Clock | None,
    ) -> None:  # fmt: skip
        if worker not in ("thread", "external"):
            raise InputError(f"got {worker!r}", field="worker", expected="'thread' or 'external'")
        self.options = (store, worker, config, clock)
        self.engine: _Engine | None = None
        self._lock = threading.Lock()

    def get(self, sdk: anthropic.Anthropic | anthropic.AsyncAnthropic) -> _Engine:
        with self._lock:
            if self.engine is None:
                self.engine = _Engine(sdk, *self.options)
            return self.engine

    def close(self) -> None:
        with self._lock:
            if self.engine is not None:
                self.engine.close()
                self.engine = None


class _NowaitOptions:
    """What the two clients share."""

    _nowait: _LazyEngine

    def _defaults(self, deadline: Deadline | None, workload: str | None) -> dict[str, Any]:
        return {k: v for k, v in (("deadline", deadline), ("workload", workload)) if v is not None}

    def _split_jobs(
        self, engine: _Engine, fast: Mapping[str, Any], deep: Mapping[str, Any],
        key: str | None, deadline: Deadline, workload: str | None,
    ) -> tuple[str, str]:  # fmt: skip
        """The awaited part real-time, the deferred part to batch, under one feature name:
        the receipt shows `NAME:fast` and `NAME:deep`, each with what it cost."""
        key = key or uuid.uuid4().hex
        name = workload or "split"
        jobs = [
            engine.prepare(fast, {"key": f"{key}:fast", "workload": f"{name}:fast",
                                  "awaited": True}),
            engine.prepare(deep, {"key": f"{key}:deep", "workload": f"{name}:deep",
                                  "deadline": deadline, "awaited": False}),
        ]  # fmt: skip
        engine.submit(jobs)
        return jobs[0].key, jobs[1].key


class Anthropic(_NowaitOptions, anthropic.Anthropic):
    """`anthropic.Anthropic`, plus nowait's keywords. Extra constructor arguments: `store` (a
    `Store`, a SQLite path or a postgresql:// URL; default `nowait.db` in the nowait home),
    `worker` ("thread" or "external"), `worker_config` (a `WorkerConfig`), `clock`."""

    def __init__(
        self,
        *,
        store: Store | str | Path | None = None,
        worker: WorkerMode = "thread",
        worker_config: WorkerConfig | None = None,
        clock: Clock | None = None,
        **sdk: Any,
    ) -> None:
        self._nowait = _LazyEngine(store, worker, worker_config, clock)
        super().__init__(**sdk)

    @property
    def messages(self) -> Messages:
        found = self.__dict__.get("_nowait_messages")
        if found is None:
            found = self.__dict__["_nowait_messages"] = Messages(self)
            found._owner = self
        return found

    @property
    def engine(self) -> _Engine:
        return self._nowait.get(self)

    def batch(self, *, deadline: Deadline | None = None, workload: str | None = None) -> Batch:
        return Batch(self.engine, self._defaults(deadline, workload))

    def split(
        self, *, fast: Mapping[str, Any], deep: Mapping[str, Any], deadline: Deadline,
        key: str | None = None, workload: str | None = None,
    ) -> Split:  # fmt: skip
        """One feature, two parts: `fast` (someone waits on it) real-time, `deep` to batch."""
        fast_key, deep_key = self._split_jobs(self.engine, fast, deep, key, deadline, workload)
        return Split(Handle(self.engine, fast_key), Handle(self.engine, deep_key))

    def handle(self, key: str) -> Handle:
        """The handle of a request submitted earlier, by this process or another."""
        return Handle(self.engine, key)

    def copy(self, **options: Any) -> Self:
        """The SDK's `copy` (`with_options`), on the same store and worker."""
        made = super().copy(**options)
        made._nowait = self._nowait  # the same store, worker and engine
        return made

    with_options = copy

    def close(self) -> None:
        try:
            self._nowait.close()  # the worker thread stops after its pass; the store closes
        finally:
            super().close()


class AsyncAnthropic(_NowaitOptions, anthropic.AsyncAnthropic):
    """`anthropic.AsyncAnthropic`, plus nowait's keywords; handles are awaited."""

    def __init__(
        self,
        *,
        store: Store | str | Path | None = None,
        worker: WorkerMode = "thread",
        worker_config: WorkerConfig | None = None,
        clock: Clock | None = None,
        **sdk: Any,
    ) -> None:
        self._nowait = _LazyEngine(store, worker, worker_config, clock)
        super().__init__(**sdk)

    @property
    def messages(self) -> AsyncMessages:
        found = self.__dict__.get("_nowait_messages")
        if found is None:
            found = self.__dict__["_nowait_messages"] = AsyncMessages(self)
            found._owner = self
        return found

    @property
    def engine(self) -> _Engine:
        return self._nowait.get(self)

    def batch(self, *, deadline: Deadline | None = None, workload: str | None = None) -> AsyncBatch:
        return AsyncBatch(self.engine, self._defaults(deadline, workload))

    async def split(
        self, *, fast: Mapping[str, Any], deep: Mapping[str, Any], deadline: Deadline,
        key: str | None = None, workload: str | None = None,
    ) -> AsyncSplit:  # fmt: skip
        engine = self.engine
        fast_key, deep_key = await asyncio.to_thread(
            self._split_jobs, engine, fast, deep, key, deadline, workload
        )
        return AsyncSplit(AsyncHandle(engine, fast_key), AsyncHandle(engine, deep_key))

    def handle(self, key: str) -> AsyncHandle:
        return AsyncHandle(self.engine, key)

    def copy(self, **options: Any) -> Self:
        """The SDK's `copy` (`with_options`), on the same store and worker."""
        made = super().copy(**options)
        made._nowait = self._nowait  # the same store, worker and engine
        return made

    with_options = copy

    async def close(self) -> None:
        try:
            await asyncio.to_thread(self._nowait.close)
        finally:
            await super().close()


__all__ = [
    "Anthropic",
    "AsyncAnthropic",
    "AsyncBatch",
    "AsyncHandle",
    "AsyncSplit",
    "Batch",
    "Handle",
    "RequestFailed",
    "Split",
]
