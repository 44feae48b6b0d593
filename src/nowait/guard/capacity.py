"""The real-time capacity the guard plans with, and where it comes from.

The API states the account's limits on every response; the store keeps the latest per model
class (`Store.observed_limits`). The capacity in use is, limit by limit, the lower of the
observed limit and the user's setting; without an observation, the user's settings, then the
documented defaults (`Capacity()`). Concurrency and call duration are never in the headers:
they come from the settings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import TYPE_CHECKING

from nowait.guard.policy import Capacity
from nowait.ratelimits import Limit
from nowait.store import ObservedLimits

if TYPE_CHECKING:
    from nowait.settings import Settings

FAMILIES = ("haiku", "sonnet", "opus", "fable", "mythos")
ANY_MODEL = "*"
"""The class of limits stated by a response about no model (a batch list)."""
RATE_FIELDS = {
    "requests_per_minute": "requests",
    "input_tokens_per_minute": "input_tokens",
    "output_tokens_per_minute": "output_tokens",
}
"""`Capacity`'s fields the headers state, and the `RateLimits` field that states each."""


def model_class(model: str) -> str:
    """The class whose limits a model shares: its family (`claude-sonnet-4-5-20250929` →
    `sonnet`), as the API pools limits per family; an unknown naming: the model id itself."""
    for part in model.split("-"):
        if part in FAMILIES:
            return part
    return model


def user_capacity(settings: Settings) -> frozenset[str]:
    """`Capacity`'s fields the user set (flag, environment or file), not left at defaults."""
    return frozenset(
        f.name for f in fields(Capacity) if settings.source(f"capacity.{f.name}").kind != "default"
    )


@dataclass(frozen=True)
class CapacityInUse:
    capacity: Capacity
    source: str
    """"headers at 12:03" (perhaps "…, settings lower"), "settings" or "defaults"."""
    model_class: str | None = None
    """The class the headers were about (None: no headers were seen)."""


def capacity_in_use(
    configured: Capacity,
    user_set: frozenset[str],
    observed: ObservedLimits | None,
    now: datetime,
) -> CapacityInUse:
    """The capacity to plan and pace with. `configured` is the settings' capacity (defaults
    where unset), `user_set` the fields the user set. Pure."""
    if observed is None:
        return CapacityInUse(configured, "settings" if user_set else "defaults")
    changes: dict[str, float] = {}
    lowered = False
    for name, kind in RATE_FIELDS.items():
        limit: Limit | None = getattr(observed.limits, kind)
        if limit is None:
            continue
        mine = float(getattr(configured, name))
        if name in user_set and mine < limit.limit:
            lowered = True
            continue  # the user's own limit is the lower: keep it
        changes[name] = float(limit.limit)
    seen = observed.seen_at
    when = f"{seen:%H:%M}" if seen.date() == now.date() else f"{seen:%Y-%m-%d %H:%M}"
    source = f"headers at {when}" + (", settings lower" if lowered else "")
    capacity = replace(
        configured,
        requests_per_minute=changes.get("requests_per_minute", configured.requests_per_minute),
        input_tokens_per_minute=changes.get(
            "input_tokens_per_minute", configured.input_tokens_per_minute
        ),
        output_tokens_per_minute=changes.get(
            "output_tokens_per_minute", configured.output_tokens_per_minute
        ),
    )
    return CapacityInUse(capacity, source, observed.model_class)


def observed_for(model: str, observed: Mapping[str, ObservedLimits]) -> ObservedLimits | None:
    """The latest limits that apply to `model`: its class's, else those about no model."""
    return observed.get(model_class(model)) or observed.get(ANY_MODEL)


def capacities(
    configured: Capacity,
    user_set: frozenset[str],
    observed: Iterable[ObservedLimits],
    now: datetime,
) -> list[CapacityInUse]:
    """The capacity in use for each model class the API stated limits for; one entry (settings
    or defaults) when it stated none yet. For `nowait status`."""
    found = [capacity_in_use(configured, user_set, o, now) for o in observed]
    return found or [capacity_in_use(configured, user_set, None, now)]


def capacity_status(
    observed: Iterable[ObservedLimits], settings: Settings, now: datetime
) -> list[CapacityInUse]:
    """`capacities` with the capacity and user-set fields of `settings` (`nowait status`)."""
    return capacities(Capacity.from_settings(settings), user_capacity(settings), observed, now)
