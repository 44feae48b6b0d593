"""Plain values shared by every layer: usage, tiers, routes. No I/O here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, get_args


class Tier(StrEnum):
    """Which price list a request is billed on (the API's `usage.service_tier`)."""

    STANDARD = "standard"
    PRIORITY = "priority"  # a Priority Tier organization's real-time capacity
    BATCH = "batch"
    UNKNOWN = "unknown"  # a tier the API named that nowait does not know: priced as standard

    @classmethod
    def from_api(cls, value: object) -> Tier:
        """The tier of a `usage.service_tier` value; missing means standard, and a value the
        API adds later is `UNKNOWN` (never an error: the answer is still delivered)."""
        if value is None:
            return cls.STANDARD
        return _API_TIERS.get(value, cls.UNKNOWN)


_API_TIERS: dict[object, Tier] = {t.value: t for t in (Tier.STANDARD, Tier.PRIORITY, Tier.BATCH)}

BatchStatus = Literal["in_progress", "canceling", "ended"]
"""A Message Batch's `processing_status`."""
BATCH_STATUSES: dict[object, BatchStatus] = {s: s for s in get_args(BatchStatus)}

ResultType = Literal["succeeded", "errored", "canceled", "expired"]
"""The `result.type` of one line of a batch's results."""
RESULT_TYPES: dict[object, ResultType] = {t: t for t in get_args(ResultType)}

OutcomeKind = Literal["succeeded", "failed", "retry"]
"""What one attempt of a job came to."""


class Route(StrEnum):
    """Where a request is sent."""

    REALTIME = "realtime"
    BATCH = "batch"


@dataclass(frozen=True)
class Decision:
    """A route plus the reasons for it, in plain words."""

    route: Route
    reasons: tuple[str, ...] = ()


USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "cache_read_tokens",
)


_INT = {int}


@dataclass(frozen=True)
class Usage:
    """Token counts of one or more Messages API calls, split the way they are billed.

    `input_tokens` is the uncached input only, as the Messages API reports it; cache writes and
    cache reads are separate counts.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    cache_read_tokens: int = 0

    def __post_init__(self) -> None:
        counts = self.counts()
        if set(map(type, counts)) == _INT and min(counts) >= 0:  # the usual case, in C
            return
        for name, value in zip(USAGE_FIELDS, counts, strict=True):
            if type(value) is not int or value < 0:  # bool is not a token count either
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")

    def counts(self) -> tuple[int, int, int, int, int]:
        """The five counts in `USAGE_FIELDS` order."""
        return (
            self.input_tokens,
            self.output_tokens,
            self.cache_write_5m_tokens,
            self.cache_write_1h_tokens,
            self.cache_read_tokens,
        )

    @property
    def prompt_tokens(self) -> int:
        """Everything the model read: uncached input + cache writes + cache reads."""
        return (
            self.input_tokens
            + self.cache_write_5m_tokens
            + self.cache_write_1h_tokens
            + self.cache_read_tokens
        )

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_write_5m_tokens + other.cache_write_5m_tokens,
            self.cache_write_1h_tokens + other.cache_write_1h_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
        )

    @classmethod
    def from_api(cls, usage: Mapping[str, Any]) -> Usage:
        """Read a Messages API `usage` object (a dict, as in JSON).

        When only the legacy `cache_creation_input_tokens` total is present, the writes are
        counted as 5-minute writes, the API's default TTL.
        """
        creation = usage.get("cache_creation") or {}
        write_5m = creation.get("ephemeral_5m_input_tokens")
        write_1h = creation.get("ephemeral_1h_input_tokens")
        if write_5m is None and write_1h is None:
            write_5m, write_1h = usage.get("cache_creation_input_tokens") or 0, 0
        return cls(  # by position: once per result line, keywords cost a dict each
            int(usage.get("input_tokens") or 0),
            int(usage.get("output_tokens") or 0),
            int(write_5m or 0),
            int(write_1h or 0),
            int(usage.get("cache_read_input_tokens") or 0),
        )


class JobState(StrEnum):
    """A request's life inside nowait. See `TRANSITIONS` for the legal moves."""

    QUEUED = "queued"  # routed, waiting to be sent (again, after a retryable failure)
    SUBMITTING = "submitting"  # in a planned batch; the create call may or may not have happened
    IN_BATCH = "in_batch"  # in a batch the API acknowledged
    RUNNING = "running"  # a real-time call is under way
    SUCCEEDED = "succeeded"  # result stored, not yet delivered
    FAILED = "failed"  # permanent error stored, not yet delivered
    DELIVERED = "delivered"  # the sink acknowledged the outcome: final


TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.SUBMITTING, JobState.RUNNING}),
    JobState.SUBMITTING: frozenset({JobState.IN_BATCH, JobState.QUEUED}),
    JobState.IN_BATCH: frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.QUEUED}),
    JobState.RUNNING: frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.QUEUED}),
    JobState.SUCCEEDED: frozenset({JobState.DELIVERED}),
    JobState.FAILED: frozenset({JobState.DELIVERED}),
    JobState.DELIVERED: frozenset(),
}
"""QUEUED is re-entered for retries, fallbacks and abandoned batch plans."""

PENDING_STATES = frozenset(
    {JobState.QUEUED, JobState.SUBMITTING, JobState.IN_BATCH, JobState.RUNNING}
)


def transition(current: JobState, target: JobState) -> JobState:
    """The one gate every job state change passes; an illegal move raises."""
    from nowait.errors import IllegalTransition

    if target not in TRANSITIONS[current]:
        raise IllegalTransition(f"a job cannot move from {current} to {target}")
    return target
