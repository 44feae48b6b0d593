"""One emulated Message Batch: its requests' fates are drawn at creation, its status is read
lazily from the clock, so a test that moves a fake clock moves every batch with it."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from nowait.emulator.apierror import envelope
from nowait.emulator.fakemodel import Answer, CacheUsage, answer, new_id
from nowait.emulator.ratelimit import rfc3339
from nowait.limits import BATCH_EXPIRY_HOURS, RESULTS_RETENTION_DAYS


@dataclass(slots=True)
class Item:
    """One request of a batch, reduced to what its result line needs."""

    custom_id: str
    finish: float
    """Share of the batch's turnaround after which this request is done (0..1]."""
    outcome: str
    """succeeded | errored | expired: the fate if the batch runs to the end."""
    model: str = ""
    digest: bytes = b""
    answer_params: dict[str, Any] | None = None
    usage: CacheUsage | None = None
    error: tuple[str, str] | None = None


@dataclass
class Batch:
    id: str
    created_at: datetime
    turnaround: float
    items: list[Item]
    seed: int
    cancel_at: datetime | None = None
    cancel_latency: float = 0.0
    deleted: bool = False
    _final: dict[str, int] | None = field(default=None, repr=False)

    @property
    def expires_at(self) -> datetime:
        return self.created_at + timedelta(hours=BATCH_EXPIRY_HOURS)

    @property
    def archived_after(self) -> datetime:
        return self.created_at + timedelta(days=RESULTS_RETENTION_DAYS)

    def natural_end(self) -> datetime:
        return min(self.created_at + timedelta(seconds=self.turnaround), self.expires_at)

    def ended_at(self) -> datetime:
        end = self.natural_end()
        if self.cancel_at is not None:
            end = min(end, self.cancel_at + timedelta(seconds=self.cancel_latency))
        return end

    def is_ended(self, now: datetime) -> bool:
        return now >= self.ended_at()

    def final_outcome(self, item: Item) -> str:
        done_at = self.created_at + timedelta(seconds=item.finish * self.turnaround)
        if done_at <= self.ended_at() and done_at <= self.expires_at:
            return item.outcome
        return (
            "canceled"
            if self.cancel_at is not None and self.ended_at() < self.expires_at
            else "expired"
        )

    def final_counts(self) -> dict[str, int]:
        if self._final is None:
            counts = dict.fromkeys(("succeeded", "errored", "canceled", "expired"), 0)
            for item in self.items:
                counts[self.final_outcome(item)] += 1
            self._final = counts
        return self._final

    def to_json(self, now: datetime, origin: str) -> dict[str, Any]:
        ended = self.is_ended(now)
        counts = (
            {"processing": 0, **self.final_counts()}
            if ended
            else {
                "processing": len(self.items),
                "succeeded": 0,
                "errored": 0,
                "canceled": 0,
                "expired": 0,
            }
        )
        status = "ended" if ended else ("canceling" if self.cancel_at else "in_progress")
        return {
            "id": self.id,
            "type": "message_batch",
            "processing_status": status,
            "request_counts": counts,
            "ended_at": rfc3339(self.ended_at()) if ended else None,
            "created_at": rfc3339(self.created_at),
            "expires_at": rfc3339(self.expires_at),
            "archived_at": rfc3339(self.archived_after) if now >= self.archived_after else None,
            "cancel_initiated_at": rfc3339(self.cancel_at) if self.cancel_at else None,
            "results_url": f"{origin}/v1/messages/batches/{self.id}/results" if ended else None,
        }

    def result_lines(self, shuffle: bool, length_range: tuple[int, int]) -> Iterator[bytes]:
        """The results file, one JSON line per request, generated as it streams."""
        order = list(range(len(self.items)))
        if shuffle:
            random.Random(f"{self.seed}:{self.id}").shuffle(order)
        chunk: list[str] = []
        for index in order:
            chunk.append(json.dumps(self.result_line(self.items[index], length_range)))
            if len(chunk) == 500:
                yield ("\n".join(chunk) + "\n").encode()
                chunk = []
        if chunk:
            yield ("\n".join(chunk) + "\n").encode()

    def result_line(self, item: Item, length_range: tuple[int, int]) -> dict[str, Any]:
        outcome = self.final_outcome(item)
        if outcome == "succeeded":
            result: dict[str, Any] = {
                "type": "succeeded",
                "message": self._message(item, length_range),
            }
        elif outcome == "errored":
            kind, message = item.error or ("api_error", "Internal server error")
            result = {"type": "errored", "error": envelope(kind, message, None)}
        else:
            result = {"type": outcome}
        return {"custom_id": item.custom_id, "result": result}

    def _message(self, item: Item, length_range: tuple[int, int]) -> dict[str, Any]:
        said = answer(item.answer_params or {}, item.digest, length_range)
        rng = random.Random(f"{self.id}:{item.custom_id}")
        return message_json(new_id("msg", rng), item.model, said, item.usage, "batch")


def message_json(
    message_id: str, model: str, said: Answer, usage: CacheUsage | None, tier: str
) -> dict[str, Any]:
    """A `Message` object exactly as the API returns it."""
    usage = usage or CacheUsage(0, 0, 0, 0)
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": said.content,
        "stop_reason": said.stop_reason,
        "stop_sequence": said.stop_sequence,
        "stop_details": None,
        "container": None,
        "usage": {
            "input_tokens": usage.input_tokens,
            "output_tokens": said.output_tokens,
            "cache_creation_input_tokens": usage.cache_write_5m + usage.cache_write_1h,
            "cache_read_input_tokens": usage.cache_read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": usage.cache_write_5m,
                "ephemeral_1h_input_tokens": usage.cache_write_1h,
            },
            "server_tool_use": None,
            "service_tier": tier,
        },
    }
