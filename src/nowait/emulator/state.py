"""The emulator's state and behaviour behind the HTTP layer; also the knob handle tests hold.

Everything is guarded by one lock: the HTTP handlers run on the server's thread while a test
changes knobs or reads counters from its own.
"""

from __future__ import annotations

import math
import random
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from nowait.clock import Clock, SystemClock
from nowait.emulator.apierror import ApiError, invalid
from nowait.emulator.batches import Batch, Item, message_json
from nowait.emulator.config import EmulatorConfig, RateLimit
from nowait.emulator.fakemodel import (
    PromptCache,
    answer,
    count_tokens,
    new_id,
    request_digest,
    segments,
)
from nowait.emulator.ratelimit import ModelLimiter
from nowait.emulator.validation import check_batch_requests, check_message_params, semantic_error
from nowait.guard.turnaround import Turnaround

_EXHAUSTED = {
    "requests": "requests",
    "input-tokens": "request tokens",
    "output-tokens": "output tokens",
}
ANSWER_PARAMS = (
    "max_tokens",
    "stop_sequences",
    "tools",
    "tool_choice",
    "output_config",
    "output_format",
)
"""What a batch request keeps for its answer, which is generated when the results stream."""
LINE_ERRORS = {
    "overloaded_error": "Overloaded",
    "api_error": "Internal server error",
    "rate_limit_error": "Rate limited",
    "invalid_request_error": "Invalid request (injected)",
}


@dataclass
class _Fault:
    status: int
    endpoint: str
    retry_after: float | None
    midstream: bool


class Emulator:
    """State of one emulated API account, plus the knobs to bend it at run time."""

    def __init__(self, config: EmulatorConfig | None = None, clock: Clock | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.clock: Clock = clock or SystemClock()
        self.calls: Counter[str] = Counter()
        self.batch_create_requests = 0
        self.rate_limited = 0
        """Calls answered 429 because a rate limit was exhausted (injected faults aside)."""
        self._lock = threading.RLock()
        self._rng = random.Random(self.config.seed)
        self._batches: dict[str, Batch] = {}
        self._order: list[str] = []
        self._realtime_cache = PromptCache(self.config.cache_min_tokens)
        self._batch_cache = PromptCache(self.config.cache_min_tokens)
        self._limiters: dict[str, ModelLimiter] = {}
        self._faults: list[_Fault] = []
        self._line_faults: list[str] = []

    # ---- knobs -----------------------------------------------------------------------------
    def configure(self, **changes: Any) -> None:
        """Change knobs from now on, e.g. `configure(turnaround=Turnaround(7200))`."""
        with self._lock:
            self.config = replace(self.config, **changes)

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 529,
        endpoint: str = "messages",
        retry_after: float | None = None,
        midstream: bool = False,
    ) -> None:
        """Answer the next `count` calls of `endpoint` (a route name, or "any") with an error."""
        with self._lock:
            self._faults.extend(
                _Fault(status, endpoint, retry_after, midstream) for _ in range(count)
            )

    def fail_next_lines(self, count: int, outcome: str = "overloaded_error") -> None:
        """Give the next `count` batch requests created this fate: an error type or "expired"."""
        if outcome != "expired" and outcome not in LINE_ERRORS:
            raise ValueError(f"unknown line outcome {outcome!r}")
        with self._lock:
            self._line_faults.extend([outcome] * count)

    def set_turnaround(self, batch_id: str, seconds: float) -> None:
        """Make one batch slower or faster than drawn."""
        with self._lock:
            self._batch(batch_id).turnaround = seconds

    def batch_ids(self) -> list[str]:
        with self._lock:
            return [b for b in self._order if not self._batches[b].deleted]

    def batch_custom_ids(self, batch_id: str) -> list[str]:
        with self._lock:
            return [item.custom_id for item in self._batch(batch_id).items]

    # ---- faults ----------------------------------------------------------------------------
    def take_fault(self, endpoint: str) -> _Fault | None:
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.endpoint in (endpoint, "any"):
                    return self._faults.pop(i)
            faults = self.config.faults
            if endpoint not in ("messages", "batches.create"):
                return None
            roll = self._rng.random()
            if roll < faults.overloaded:
                return _Fault(529, endpoint, faults.retry_after, False)
            if roll < faults.overloaded + faults.server_error:
                return _Fault(500, endpoint, None, False)
            return None

    # ---- messages --------------------------------------------------------------------------
    def check_message(self, body: Any, version: str) -> dict[str, Any]:
        return check_message_params(body, version=version)

    def admit(self, params: Mapping[str, Any]) -> dict[str, str]:
        """Apply the model's rate limit; returns rate-limit headers or raises a 429."""
        model = str(params["model"])
        limit = self.config.rate_limit(model)
        if limit is None:
            return {}
        with self._lock:
            now = self.clock.now()
            limiter = self._limiter(model, limit, now)
            wait, exhausted = limiter.admit(count_tokens(params), now)
            headers = limiter.headers(now)
            if wait > 0:
                self.rate_limited += 1
                headers["retry-after"] = str(max(1, math.ceil(wait)))
                headers["retry-after-ms"] = str(max(1, math.ceil(wait * 1000)))
                what = _EXHAUSTED.get(exhausted or "", "requests")
                raise ApiError(
                    429,
                    f"Number of {what} has exceeded your per-minute rate limit for {model}",
                    headers=headers,
                )
            return headers

    def _limiter(self, model: str, limit: RateLimit, now: datetime) -> ModelLimiter:
        limiter = self._limiters.get(model)
        if limiter is None:
            limiter = self._limiters[model] = ModelLimiter(limit, now)
        return limiter

    def limit_headers(self, model: str | None = None) -> dict[str, str]:
        """The rate-limit headers of any response: the state of `model`'s limits (None: the
        limits every model without its own has), nothing taken; none without limits."""
        key = model or "*"
        limit = self.config.rate_limit(key)
        if limit is None:
            return {}
        with self._lock:
            now = self.clock.now()
            return self._limiter(key, limit, now).headers(now)

    def count_message_tokens(self, params: Mapping[str, Any]) -> int:
        """`count_tokens`: the prompt's input tokens, for a model the API knows."""
        model = str(params["model"])
        if model not in self._models(model):
            raise ApiError(404, f"model: {model}")
        return count_tokens(params)

    def run_message(
        self, params: Mapping[str, Any], betas: frozenset[str]
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """Run one real-time Messages call: the Message JSON and rate-limit headers."""
        models = self._models(str(params["model"]))
        error = semantic_error(params, models=models, batch=False, betas=betas)
        if error is not None:
            raise error
        with self._lock:
            now = self.clock.now()
            usage = self._realtime_cache.apply(str(params["model"]), segments(params), now)
            digest = request_digest(self.config.seed, params)
            said = answer(params, digest, self.config.output_tokens)
            message = message_json(
                new_id("msg", self._rng),
                str(params["model"]),
                said,
                usage,
                self.config.realtime_service_tier,
            )
            limiter = self._limiters.get(str(params["model"]))
            headers = {}
            if limiter is not None:
                limiter.charge_output(said.output_tokens)
                headers = limiter.headers(now)
        return message, headers

    def _models(self, model: str) -> frozenset[str]:
        return self.config.models | {model} if self.config.contract_mode else self.config.models

    # ---- batches ---------------------------------------------------------------------------
    def create_batch(self, body: Any, version: str, betas: frozenset[str]) -> Batch:
        if not isinstance(body, dict):
            raise invalid("body: Input should be a valid dictionary")
        requests = check_batch_requests(body.get("requests"), self.config.max_batch_requests)
        for i, item in enumerate(requests):
            check_message_params(
                item["params"],
                version=version,
                path=f"requests.{i}.params",
                streaming_allowed=False,
            )
        with self._lock:
            now = self.clock.now()
            batch_id = new_id("msgbatch", self._rng)
            turnaround = self.config.turnaround.draw(self._rng)
            batch = Batch(
                batch_id,
                now,
                turnaround,
                [],
                self.config.seed,
                cancel_latency=self.config.cancel_latency,
            )
            batch.items = [self._plan_item(r, batch, betas) for r in requests]
            self._batches[batch_id] = batch
            self._order.append(batch_id)
            self.batch_create_requests += len(batch.items)
            return batch

    def _plan_item(self, request: dict[str, Any], batch: Batch, betas: frozenset[str]) -> Item:
        params = request["params"]
        finish = max(1e-9, self._rng.random())
        item = Item(request["custom_id"], finish, "succeeded", model=str(params["model"]))
        error = semantic_error(params, models=self._models(item.model), batch=True, betas=betas)
        fate = self._line_faults.pop(0) if self._line_faults else self._drawn_fate()
        if error is not None:
            item.outcome, item.error = "errored", (error.type, error.message)
        elif fate == "expired":
            item.outcome = "expired"
        elif fate is not None:
            item.outcome, item.error = "errored", (fate, LINE_ERRORS[fate])
        else:
            at = batch.created_at + _seconds(finish * batch.turnaround)
            item.usage = self._batch_cache.apply(item.model, segments(params), at, owner=batch)
            item.digest = request_digest(self.config.seed, params)
            item.answer_params = {k: params[k] for k in ANSWER_PARAMS if k in params}
        return item

    def _drawn_fate(self) -> str | None:
        faults = self.config.faults
        if not (faults.errored_lines or faults.expired_lines):
            return None
        roll = self._rng.random()
        if roll < faults.errored_lines:
            return "overloaded_error"
        if roll < faults.errored_lines + faults.expired_lines:
            return "expired"
        return None

    def get_batch(self, batch_id: str) -> Batch:
        with self._lock:
            return self._batch(batch_id)

    def _batch(self, batch_id: str) -> Batch:
        batch = self._batches.get(batch_id)
        if batch is None or batch.deleted:
            if self.config.contract_mode:
                return self._synthetic(batch_id)
            raise ApiError(404, f"message_batch_id: no batch found with id {batch_id!r}")
        return batch

    def _synthetic(self, batch_id: str) -> Batch:
        """An ended one-request batch for an id contract mode has never seen."""
        now = self.clock.now()
        item = Item(
            "contract",
            1.0,
            "succeeded",
            model="claude-sonnet-5-5",
            answer_params={"max_tokens": 16},
        )
        return Batch(batch_id, now - _seconds(60), 1.0, [item], self.config.seed)

    def _synthetic_canceling(self, batch_id: str) -> Batch:
        """What a cancel answers in contract mode for an unknown id: a batch still `canceling`."""
        batch = self._synthetic(batch_id)
        now = self.clock.now()
        batch.created_at, batch.turnaround = now, 3600.0
        batch.cancel_at, batch.cancel_latency = now, max(1.0, self.config.cancel_latency)
        return batch

    def list_batches(self) -> list[Batch]:
        with self._lock:
            return [self._batches[b] for b in reversed(self._order) if not self._batches[b].deleted]

    def cancel_batch(self, batch_id: str) -> Batch:
        with self._lock:
            known = self._batches.get(batch_id)
            if self.config.contract_mode and (known is None or known.deleted):
                return self._synthetic_canceling(batch_id)
            batch = self._batch(batch_id)
            now = self.clock.now()
            if batch.is_ended(now):
                raise invalid(f"Batch {batch_id} has already ended and can no longer be canceled")
            if batch.cancel_at is None:
                batch.cancel_at = now
                batch.cancel_latency = self.config.cancel_latency
            return batch

    def delete_batch(self, batch_id: str) -> None:
        with self._lock:
            batch = self._batch(batch_id)
            if not batch.is_ended(self.clock.now()):
                raise invalid(
                    f"Batch {batch_id} cannot be deleted while it is in progress; cancel it first"
                )
            batch.deleted = True

    def results_batch(self, batch_id: str) -> Batch:
        with self._lock:
            batch = self._batch(batch_id)
            now = self.clock.now()
            if not batch.is_ended(now):
                raise ApiError(
                    404,
                    f"Batch {batch_id} has not ended; results exist once processing ends",
                )
            if now >= batch.archived_after:
                raise ApiError(
                    404, f"Batch {batch_id} is archived; its results are no longer available"
                )
            return batch


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


__all__ = ["Emulator", "Turnaround"]
