"""Test doubles for code built on nowait, and for nowait's own tests.

    clock = FakeClock()
    backend = FakeBackend(clock, turnaround=600)          # every batch ends 10 min after creation
    router = Router(store=SQLiteStore(tmp / "nowait.db"), backend=backend, clock=clock)
    router.submit(params, key="k1")
    router.run(delivered.append)                          # hours of batch time, instantly
    assert backend.sent_custom_ids().most_common(1)[0][1] == 1   # no request sent twice

`FakeBackend` is a deterministic, in-memory `Backend` (no HTTP, no SDK) with the API's batch
life cycle (in_progress → canceling → ended), request counts, result lines that succeed, error,
are canceled or expire, real-time answers with usage and tier, injectable 429/529s and a record
of every call. Answers and token counts come from the emulator's fake model, so a request costs
the same here as against `nowait emulator`. For the real SDK over HTTP, use the emulator.

`crash_at(point, n)` is a checkpoint hook (`Router(checkpoint=...)`) that kills the process
with SIGKILL the n-th time it passes `point`, like a power cut; `CheckpointLog` records the
points passed.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, get_args

from nowait.clock import Clock, FakeClock
from nowait.emulator.apierror import STATUS_TYPES
from nowait.emulator.batches import message_json
from nowait.emulator.fakemodel import (
    Answer,
    CacheUsage,
    answer,
    count_tokens,
    request_digest,
    text_tokens,
)
from nowait.emulator.state import LINE_ERRORS
from nowait.errors import PermanentBackendError
from nowait.limits import BATCH_EXPIRY_HOURS, BATCH_MAX_REQUESTS
from nowait.route.backend import BatchInfo, MessageOutcome, ResultLine, status_error
from nowait.route.worker import CHECKPOINTS, Checkpoint, CheckpointName
from nowait.types import RESULT_TYPES, BatchStatus, ResultType, Tier, Usage

Endpoint = Literal[
    "messages",
    "batches.create",
    "batches.retrieve",
    "batches.list",
    "batches.cancel",
    "count_tokens",
    "batches.results",
]
ENDPOINTS: tuple[Endpoint, ...] = get_args(Endpoint)
ANSWER_LENGTH = (12, 160)
"""Range of the fake model's natural answer length in tokens, as the emulator's default."""

Reply = Callable[[Mapping[str, Any]], str]
"""The text answering one request's params; may raise a `BackendError` to refuse it."""


@dataclass(frozen=True)
class Call:
    """One call the code under test made."""

    endpoint: Endpoint
    at: datetime
    batch_id: str | None = None
    custom_ids: tuple[str, ...] = ()
    """batches.create: the custom_ids sent, in order."""
    params: Mapping[str, Any] | None = None
    """messages: the request as sent."""


@dataclass
class _Item:
    custom_id: str
    params: dict[str, Any]
    done_after: float
    """Seconds after the batch's creation when this request is done."""
    fate: str
    """succeeded, expired, or the error type of an errored line."""


@dataclass
class _Batch:
    id: str
    created_at: datetime
    turnaround: float
    items: list[_Item]
    cancel_at: datetime | None = None
    cancel_latency: float = 0.0
    forgotten: bool = False

    @property
    def expires_at(self) -> datetime:
        return self.created_at + timedelta(hours=BATCH_EXPIRY_HOURS)

    def ended_at(self) -> datetime:
        end = min(self.created_at + timedelta(seconds=self.turnaround), self.expires_at)
        if self.cancel_at is not None:
            end = min(end, self.cancel_at + timedelta(seconds=self.cancel_latency))
        return end

    def status(self, now: datetime) -> BatchStatus:
        if now >= self.ended_at():
            return "ended"
        return "canceling" if self.cancel_at is not None else "in_progress"

    def line_kind(self, item: _Item) -> ResultType:
        """succeeded | errored | canceled | expired, once the batch has ended."""
        if self.created_at + timedelta(seconds=item.done_after) <= self.ended_at():
            return RESULT_TYPES.get(item.fate, "errored")  # a fate is an error type otherwise
        cut_by_cancel = self.cancel_at is not None and self.ended_at() < self.expires_at
        return "canceled" if cut_by_cancel else "expired"

    def counts(self, now: datetime) -> dict[str, int]:
        counts = dict.fromkeys(("processing", "succeeded", "errored", "canceled", "expired"), 0)
        if self.status(now) != "ended":
            counts["processing"] = len(self.items)
            return counts
        for item in self.items:
            counts[self.line_kind(item)] += 1
        return counts

    def info(self, now: datetime) -> BatchInfo:
        status = self.status(now)
        ended_at = self.ended_at() if status == "ended" else None
        return BatchInfo(
            self.id, status, len(self.items), self.created_at, ended_at, self.counts(now)
        )


@dataclass
class _Fault:
    status: int
    endpoint: Endpoint | Literal["any"]
    retry_after: float | None


class FakeBackend:
    """An in-memory `Backend` on a `Clock`, programmable from the test. Thread-safe.

    Batches end `turnaround` seconds of clock time after creation; their requests finish
    evenly over that time in the order sent (request i of n at (i+1)/n of it), so a batch
    canceled half way has its first half succeeded and the rest canceled. A cancel takes
    `cancel_latency` seconds of clock time before `ended`. Unfinished requests expire after
    24 h. Results stream in the order the requests were sent. A real-time call takes
    `realtime_latency` seconds (a number, or a function of the params), slept on the clock:
    on a `FakeClock`, concurrent calls add up as if they ran one after another. `reply` gives
    the text of every answer, real-time and batch (default: the emulator's fake model).
    """

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        turnaround: float = 600.0,
        cancel_latency: float = 30.0,
        realtime_latency: float | Callable[[Mapping[str, Any]], float] = 0.0,
        reply: Reply | None = None,
        seed: int = 0,
    ) -> None:
        self.clock: Clock = clock or FakeClock()
        self.turnaround = turnaround
        """Seconds from creation to `ended` for batches created from now on."""
        self.cancel_latency = cancel_latency
        """Seconds from a cancel to `ended`, read at each cancel."""
        self.realtime_latency = realtime_latency
        self.reply = reply
        self.seed = seed
        self.calls: list[Call] = []
        self._lock = threading.RLock()
        self._batches: dict[str, _Batch] = {}
        self._batch_ids = itertools.count(1)
        self._message_ids = itertools.count(1)
        self._faults: list[_Fault] = []
        self._line_fates: dict[str, str] = {}
        self._next_fates: list[str] = []

    # ---- programming ---------------------------------------------------------------------
    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 529,
        endpoint: Endpoint | Literal["any"] = "messages",
        retry_after: float | None = None,
    ) -> None:
        """The next `count` calls of `endpoint` fail with this HTTP status, classified as the
        real backend classifies it (429, 529, 5xx: `RetryableBackendError` with `retry_after`;
        401/403: `AuthError`; other 4xx: `PermanentBackendError`)."""
        if endpoint != "any" and endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; one of {', '.join(ENDPOINTS)}")
        with self._lock:
            self._faults.extend(_Fault(status, endpoint, retry_after) for _ in range(count))

    def fail_line(self, custom_id: str, outcome: str = "overloaded_error") -> None:
        """The batch request with this custom_id ends `errored` with this error type, or
        `expired`, whichever batch it is sent in."""
        with self._lock:
            self._line_fates[custom_id] = _checked_fate(outcome)

    def fail_next_lines(self, count: int, outcome: str = "overloaded_error") -> None:
        """The next `count` batch requests sent end `errored` with this error type, or
        `expired`."""
        with self._lock:
            self._next_fates.extend([_checked_fate(outcome)] * count)

    def set_turnaround(self, batch_id: str, seconds: float) -> None:
        """Make one batch slower or faster (seconds from its creation to `ended`)."""
        with self._lock:
            self._batch(batch_id).turnaround = seconds

    def forget(self, batch_id: str) -> None:
        """The API no longer shows this batch: every call about it answers 404."""
        with self._lock:
            self._batch(batch_id).forgotten = True

    # ---- what happened -------------------------------------------------------------------
    def calls_to(self, endpoint: Endpoint) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.endpoint == endpoint]

    def sent_custom_ids(self) -> Counter[str]:
        """How many times each custom_id was sent in a created batch (1 each: none twice)."""
        with self._lock:
            return Counter(cid for b in self._batches.values() for cid in _ids_of(b))

    def messages_sent(self) -> list[Mapping[str, Any]]:
        """The params of every real-time call that was answered or failed, in order."""
        return [c.params for c in self.calls_to("messages") if c.params is not None]

    def batch_ids(self) -> list[str]:
        """Every batch created, oldest first."""
        with self._lock:
            return list(self._batches)

    def request_counts(self, batch_id: str) -> dict[str, int]:
        """The batch's `request_counts` now: all `processing` until it ends."""
        with self._lock:
            return self._batch(batch_id).counts(self.clock.now())

    # ---- Backend -------------------------------------------------------------------------
    def create_message(self, params: dict[str, Any]) -> MessageOutcome:
        self._record("messages", params=params)
        latency = self.realtime_latency
        self.clock.sleep(latency(params) if callable(latency) else latency)
        message = self._message(params, "standard")
        usage = message["usage"]
        tier = Tier.from_api(usage["service_tier"])
        return MessageOutcome(json.dumps(message), Usage.from_api(usage), tier)

    def count_tokens(self, params: Mapping[str, Any]) -> int:
        """The emulator's count: the same tokens its usage reports."""
        with self._lock:
            self.calls.append(Call("count_tokens", self.clock.now(), params=params))
        return count_tokens(params)

    def create_batch(self, requests: Iterable[tuple[str, str]]) -> BatchInfo:
        pairs = [(cid, json.loads(params)) for cid, params in requests]
        ids = tuple(cid for cid, _ in pairs)
        with self._lock:
            self._record("batches.create", custom_ids=ids)
            _check_batch(ids)
            now = self.clock.now()
            batch = _Batch(f"msgbatch_fake{next(self._batch_ids):05d}", now, self.turnaround, [])
            batch.items = [
                _Item(cid, params, self.turnaround * (i + 1) / len(pairs), self._fate(cid))
                for i, (cid, params) in enumerate(pairs)
            ]
            self._batches[batch.id] = batch
            return batch.info(now)

    def retrieve_batch(self, batch_id: str) -> BatchInfo:
        with self._lock:
            self._record("batches.retrieve", batch_id=batch_id)
            return self._batch(batch_id).info(self.clock.now())

    def list_batches(self, limit: int = 100) -> Iterator[BatchInfo]:
        with self._lock:
            self._record("batches.list")
            now = self.clock.now()
            newest_first = [b for b in reversed(self._batches.values()) if not b.forgotten]
            infos = [b.info(now) for b in newest_first]
        yield from infos

    def cancel_batch(self, batch_id: str) -> BatchInfo:
        with self._lock:
            self._record("batches.cancel", batch_id=batch_id)
            batch = self._batch(batch_id)
            now = self.clock.now()
            if batch.status(now) == "ended":
                raise status_error(
                    400,
                    f"400 invalid_request_error: Batch {batch_id} has already ended"
                    " and can no longer be canceled",
                )
            if batch.cancel_at is None:
                batch.cancel_at, batch.cancel_latency = now, self.cancel_latency
            return batch.info(now)

    def batch_results(self, batch_id: str) -> Iterator[ResultLine]:
        with self._lock:
            self._record("batches.results", batch_id=batch_id)
            batch = self._batch(batch_id)
            if batch.status(self.clock.now()) != "ended":
                raise PermanentBackendError(
                    f"404 not_found_error: Batch {batch_id} has not ended", status=404
                )
            kinds = [(item, batch.line_kind(item)) for item in batch.items]
        for item, kind in kinds:
            yield self._line(item, kind)

    # ---- inside --------------------------------------------------------------------------
    def _record(
        self,
        endpoint: Endpoint,
        *,
        batch_id: str | None = None,
        custom_ids: tuple[str, ...] = (),
        params: Mapping[str, Any] | None = None,
    ) -> None:
        """Log the call, then fail it if a fault is due for its endpoint."""
        with self._lock:
            self.calls.append(Call(endpoint, self.clock.now(), batch_id, custom_ids, params))
            fault = next((f for f in self._faults if f.endpoint in (endpoint, "any")), None)
            if fault is None:
                return
            self._faults.remove(fault)
        kind = STATUS_TYPES.get(fault.status, "api_error")
        raise status_error(
            fault.status, f"{fault.status} {kind}: injected by FakeBackend", fault.retry_after
        )

    def _batch(self, batch_id: str) -> _Batch:
        batch = self._batches.get(batch_id)
        if batch is None or batch.forgotten:
            raise PermanentBackendError(
                f"404 not_found_error: message_batch_id: no batch found with id {batch_id!r}",
                status=404,
            )
        return batch

    def _fate(self, custom_id: str) -> str:
        if custom_id in self._line_fates:
            return self._line_fates[custom_id]
        return self._next_fates.pop(0) if self._next_fates else "succeeded"

    def _line(self, item: _Item, kind: ResultType) -> ResultLine:
        if kind == "succeeded":
            message = self._message(item.params, "batch")
            usage = message["usage"]
            outcome = MessageOutcome(json.dumps(message), Usage.from_api(usage), Tier.BATCH)
            return ResultLine(item.custom_id, kind, message=outcome)
        if kind == "errored":
            text = LINE_ERRORS.get(item.fate, item.fate)
            return ResultLine(item.custom_id, kind, error_type=item.fate, error_message=text)
        return ResultLine(item.custom_id, kind)

    def _message(self, params: Mapping[str, Any], tier: str) -> dict[str, Any]:
        """A Messages API response: the fake model's answer (or `reply`'s text), usage counted
        from the content the way the emulator counts it."""
        if self.reply is not None:
            text = self.reply(params)
            said = Answer([{"type": "text", "text": text}], "end_turn", None, _tokens(text))
        else:
            said = answer(params, request_digest(self.seed, params), ANSWER_LENGTH)
        with self._lock:
            message_id = f"msg_fake{next(self._message_ids):05d}"
        usage = CacheUsage(count_tokens(params), 0, 0, 0)
        return message_json(message_id, str(params.get("model")), said, usage, tier)


def _tokens(text: str) -> int:
    return max(1, text_tokens(text))  # generating even an empty text costs a token


def _checked_fate(outcome: str) -> str:
    if outcome != "expired" and outcome not in LINE_ERRORS:
        raise ValueError(
            f"unknown line outcome {outcome!r}; one of expired, {', '.join(LINE_ERRORS)}"
        )
    return outcome


def _check_batch(custom_ids: tuple[str, ...]) -> None:
    """The API's own refusals of a whole batch (400), before anything is created."""
    if not custom_ids:
        raise status_error(400, "400 invalid_request_error: requests: at least one required")
    if len(custom_ids) > BATCH_MAX_REQUESTS:
        raise status_error(
            400, f"400 invalid_request_error: requests: at most {BATCH_MAX_REQUESTS:,} allowed"
        )
    seen: set[str] = set()
    for i, cid in enumerate(custom_ids):
        if cid in seen:
            raise status_error(
                400,
                f"400 invalid_request_error: requests.{i}.custom_id: {cid!r} is not unique"
                " within the batch",
            )
        seen.add(cid)


def _ids_of(batch: _Batch) -> Iterator[str]:
    return (item.custom_id for item in batch.items)


@dataclass
class CheckpointLog:
    """A checkpoint hook that records, in order, every point passed."""

    passed: list[CheckpointName] = field(default_factory=list)

    def __call__(self, name: CheckpointName) -> None:
        self.passed.append(name)  # list.append is atomic: safe from the real-time threads


def crash_at(point: CheckpointName, n: int = 1) -> Checkpoint:
    """A checkpoint hook that kills this process with SIGKILL the `n`-th time it passes
    `point`: no cleanup, no flush, no `finally`, like a power cut."""
    if point not in CHECKPOINTS:
        raise ValueError(f"unknown checkpoint {point!r}; one of {', '.join(CHECKPOINTS)}")
    if n < 1:
        raise ValueError(f"n must be 1 or more, got {n}")
    passes = itertools.count(1)  # next() on it is atomic: safe from the real-time threads

    def checkpoint(name: CheckpointName) -> None:
        if name == point and next(passes) >= n:
            os.kill(os.getpid(), signal.SIGKILL)

    return checkpoint


__all__ = [
    "CHECKPOINTS",
    "Call",
    "Checkpoint",
    "CheckpointLog",
    "CheckpointName",
    "FakeBackend",
    "FakeClock",
    "crash_at",
]
