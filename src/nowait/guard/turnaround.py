"""Batch turnaround (creation → ended) as a distribution: fixed, or log-normal from its median
and 95th percentile. The emulator draws from it, the simulator replays it, and the forecast
uses one as its prior. Pure."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import cached_property
from statistics import NormalDist

_NORMAL = NormalDist()


@dataclass(frozen=True)
class Turnaround:
    """How long a batch takes from creation to `ended`, in seconds.

    Fixed, or log-normal given by its median and 95th percentile (the shape real batch
    turnarounds have: most end well within an hour, a long tail runs for many hours).
    """

    median: float = 600.0
    p95: float | None = None

    def __post_init__(self) -> None:
        if self.median < 0 or (self.p95 is not None and self.p95 < self.median):
            raise ValueError("turnaround needs 0 <= median <= p95")

    @cached_property
    def _sigma(self) -> float | None:
        """The log-normal's shape; None for a fixed turnaround."""
        if self.p95 is None or self.median in (self.p95, 0.0):
            return None
        return math.log(self.p95 / self.median) / _NORMAL.inv_cdf(0.95)

    def quantile(self, q: float) -> float:
        """The q-quantile of this turnaround, in seconds."""
        sigma = self._sigma
        return self.median if sigma is None else self.median * math.exp(sigma * _NORMAL.inv_cdf(q))

    def probability_within(self, seconds: float) -> float:
        """P(turnaround <= seconds)."""
        if seconds <= 0:
            return 0.0
        sigma = self._sigma
        if sigma is None:
            return 1.0 if seconds >= self.median else 0.0
        return _NORMAL.cdf(math.log(seconds / self.median) / sigma)

    def draw(self, rng: random.Random) -> float:
        """One turnaround, drawn with `rng`."""
        sigma = self._sigma
        return self.median if sigma is None else self.median * math.exp(sigma * rng.gauss(0.0, 1.0))
