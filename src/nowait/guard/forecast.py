"""How long a batch will take (creation → ended), learned from the store's history. Pure.

Quantiles by model and batch size, and by hour of day where that hour has enough history of
its own; before enough history exists, a documented prior: log-normal with a 30-minute median
and a 4-hour 95th percentile (most batches end within an hour; the API promises 24 hours).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from nowait.guard.turnaround import Turnaround

SIZE_BUCKETS = (1_000, 10_000, 100_000)


def size_bucket(requests: int) -> int:
    """The smallest bucket bound at or above `requests`."""
    for bound in SIZE_BUCKETS:
        if requests <= bound:
            return bound
    return SIZE_BUCKETS[-1]


PRIOR = Turnaround(median=30 * 60, p95=4 * 3600)
"""The turnaround before history: log-normal, median 30 min, 95th percentile 4 h."""


@dataclass(frozen=True)
class BatchSample:
    model: str
    requests: int
    created_at: datetime
    ended_at: datetime

    @property
    def seconds(self) -> float:
        return (self.ended_at - self.created_at).total_seconds()


@dataclass(frozen=True)
class Forecast:
    prior: Turnaround = PRIOR
    min_samples: int = 20
    samples: dict[tuple[str, int, int | None], tuple[float, ...]] = field(default_factory=dict)

    def quantile(
        self, q: float, model: str, requests: int, at: datetime | None = None
    ) -> timedelta:
        """The q-quantile of turnaround for a batch of `requests` on `model` created at `at`."""
        bucket = size_bucket(requests)
        keys: list[tuple[str, int, int | None]] = []
        if at is not None:
            keys.append((model, bucket, at.hour))
        keys += [(model, bucket, None), (model, 0, None)]
        for key in keys:
            values = self.samples.get(key, ())
            if len(values) >= self.min_samples:
                return timedelta(seconds=_empirical(values, q))
        return timedelta(seconds=min(24 * 3600.0, self.prior.quantile(q)))

    def probability_within(
        self, seconds: float, model: str, requests: int, at: datetime | None = None
    ) -> float:
        """P(turnaround <= seconds): the history's share when there is enough, else the prior's."""
        bucket = size_bucket(requests)
        keys: list[tuple[str, int, int | None]] = (
            [(model, bucket, at.hour)] if at is not None else []
        )
        for key in [*keys, (model, bucket, None), (model, 0, None)]:
            values = self.samples.get(key, ())
            if len(values) >= self.min_samples:
                return bisect.bisect_right(values, seconds) / len(values)
        return self.prior.probability_within(seconds)

    def source(self, model: str, requests: int, at: datetime | None = None) -> str:
        """Where `quantile` takes its answer from, in words (for reports and reasons)."""
        bucket = size_bucket(requests)
        if (
            at is not None
            and len(self.samples.get((model, bucket, at.hour), ())) >= self.min_samples
        ):
            return f"history of {model} batches of up to {bucket:,} requests at {at.hour:02d}h"
        if len(self.samples.get((model, bucket, None), ())) >= self.min_samples:
            return f"history of {model} batches of up to {bucket:,} requests"
        if len(self.samples.get((model, 0, None), ())) >= self.min_samples:
            return f"history of {model} batches"
        return "the prior (not enough history yet)"


def _empirical(values: tuple[float, ...], q: float) -> float:
    """Nearest-rank quantile: never below an observed value that often happened."""
    rank = max(0, min(len(values) - 1, math.ceil(q * len(values)) - 1))
    return values[rank]


def fit(
    history: Iterable[BatchSample], prior: Turnaround = PRIOR, min_samples: int = 20
) -> Forecast:
    grouped: dict[tuple[str, int, int | None], list[float]] = {}
    for sample in history:
        bucket = size_bucket(sample.requests)
        for key in (
            (sample.model, bucket, sample.created_at.hour),
            (sample.model, bucket, None),
            (sample.model, 0, None),
        ):
            grouped.setdefault(key, []).append(sample.seconds)
    return Forecast(prior, min_samples, {k: tuple(sorted(v)) for k, v in grouped.items()})
