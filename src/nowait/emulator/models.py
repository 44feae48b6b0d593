"""The Models API (`GET /v1/models`, `GET /v1/models/{id}`): the emulator's known models as
`ModelInfo` objects.

Only what the reference states is filled in; the rest is left out (the fields are optional) or,
for `created_at`, set to the epoch, which the API documents for an unknown release date:
- release dates: Fable 5.2 (2026-11-09) and the dated snapshot ids (their date);
- 5.x models: 1M-token context, 128K max output;
- lifecycle: `deprecated` for the SDK's `DEPRECATED_MODELS`, with their end-of-life dates as
  `retires_at` (a past date means retirement is overdue, not done: the emulator still runs
  them), `active` for the rest.
The list is in the order of the SDK's `Model` literal, newest models first.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any

from nowait.emulator.apierror import invalid
from nowait.emulator.config import SDK_MODELS

LIFECYCLES = ("active", "deprecated", "retired")
DEFAULT_LIFECYCLES = frozenset({"active", "deprecated"})
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

CATALOGUE_ORDER = SDK_MODELS

RELEASED = {
    "claude-fable-5-2": datetime(2026, 11, 9, tzinfo=UTC),
    "claude-haiku-4-5": datetime(2025, 10, 1, tzinfo=UTC),
    "claude-haiku-4-5-20251001": datetime(2025, 10, 1, tzinfo=UTC),
    "claude-opus-4-5": datetime(2025, 11, 1, tzinfo=UTC),
    "claude-opus-4-5-20251101": datetime(2025, 11, 1, tzinfo=UTC),
    "claude-sonnet-4-5": datetime(2025, 9, 29, tzinfo=UTC),
    "claude-sonnet-4-5-20250929": datetime(2025, 9, 29, tzinfo=UTC),
}
RETIRES = {  # the SDK's DEPRECATED_MODELS, end-of-life dates
    "claude-mythos-preview": datetime(2026, 6, 30, tzinfo=UTC),
    "claude-opus-4-5": datetime(2027, 1, 22, tzinfo=UTC),
    "claude-opus-4-5-20251101": datetime(2027, 1, 22, tzinfo=UTC),
    "claude-sonnet-4-5": datetime(2026, 11, 30, tzinfo=UTC),
    "claude-sonnet-4-5-20250929": datetime(2026, 11, 30, tzinfo=UTC),
}
LINES = ("haiku", "sonnet", "opus", "fable", "mythos")
FIVE_X_CONTEXT = 1_000_000
FIVE_X_MAX_OUTPUT = 128_000


def ordered(models: Collection[str]) -> list[str]:
    """Known models in catalogue order; models added by configuration after them, sorted."""
    known = [m for m in CATALOGUE_ORDER if m in models]
    return known + sorted(set(models) - set(CATALOGUE_ORDER))


def model_info(model_id: str) -> dict[str, Any]:
    """One `ModelInfo` object."""
    parts = model_id.split("-")
    line = parts[1] if len(parts) > 1 and parts[0] == "claude" and parts[1] in LINES else None
    five_x = line is not None and len(parts) > 2 and parts[2] == "5"
    retires = RETIRES.get(model_id)
    return {
        "type": "model",
        "id": model_id,
        "display_name": display_name(model_id),
        "created_at": _rfc3339(RELEASED.get(model_id, EPOCH)),
        "lifecycle": "deprecated" if retires else "active",
        "deprecated_at": None,
        "retires_at": _rfc3339(retires) if retires else None,
        "line": line,
        "max_input_tokens": FIVE_X_CONTEXT if five_x else None,
        "max_tokens": FIVE_X_MAX_OUTPUT if five_x else None,
    }


def display_name(model_id: str) -> str:
    """`claude-opus-4-5-20251101` → `Claude Opus 4.5`; an unknown shape is shown as is."""
    parts = model_id.split("-")
    if len(parts) < 3 or parts[0] != "claude":
        return model_id
    version = [p for p in parts[2:] if p.isdecimal() and len(p) < 8]
    if not version:
        return " ".join(p.capitalize() for p in parts)
    return f"Claude {parts[1].capitalize()} {'.'.join(version)}"


def lifecycle_filter(values: Sequence[str]) -> frozenset[str]:
    """The `lifecycle[]` filter (the SDK sends arrays bracket-style), default active+deprecated."""
    if not values:
        return DEFAULT_LIFECYCLES
    if len(values) > len(LIFECYCLES):
        raise invalid(f"lifecycle: List should have at most {len(LIFECYCLES)} items")
    for value in values:
        if value not in LIFECYCLES:
            raise invalid("lifecycle: Input should be 'active', 'deprecated' or 'retired'")
    return frozenset(values)


def _rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
