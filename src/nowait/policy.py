"""Pure routing decisions. No I/O, no clock: `now` is passed in.

The deadline guard refines these with a learned turnaround forecast (`forecast.py`); the router
calls `choose_route` for every submitted request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from nowait.models import Decision, Route


@dataclass(frozen=True)
class RouteRequest:
    """What the policy sees of one request."""

    awaited: bool
    deadline: datetime | None = None
    model: str = ""
    prompt_tokens: int = 0


@dataclass(frozen=True)
class PolicyConfig:
    # Until history says otherwise, assume a batch may take this long to end; most batches end
    # within an hour, and the API only promises 24 hours.
    assumed_turnaround: timedelta = timedelta(hours=1)
    # Time kept in hand after the batch to fall back to real time if it runs late.
    margin: timedelta = timedelta(minutes=10)


DEFAULT_POLICY = PolicyConfig()


def choose_route(
    request: RouteRequest,
    now: datetime,
    config: PolicyConfig = DEFAULT_POLICY,
    turnaround: timedelta | None = None,
) -> Decision:
    """Real time when someone waits or no batch can land before the deadline; batch otherwise.

    `turnaround` is the batch turnaround to plan for (a forecast quantile); without one the
    configured assumption is used.
    """
    if request.awaited:
        return Decision(Route.REALTIME, ("a person or process is waiting on this result",))
    expected = turnaround if turnaround is not None else config.assumed_turnaround
    if request.deadline is not None:
        left = request.deadline - now
        if left < expected + config.margin:
            return Decision(
                Route.REALTIME,
                (
                    f"deadline in {_human(left)} is too soon for a batch "
                    f"(turnaround {_human(expected)} + margin {_human(config.margin)})",
                ),
            )
        return Decision(
            Route.BATCH,
            (f"nobody waits and the deadline in {_human(left)} leaves room for a batch",),
        )
    return Decision(Route.BATCH, ("nobody waits and there is no deadline",))


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 0:
        return "the past"
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"
