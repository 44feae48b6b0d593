"""The emulator's knobs, as one frozen value. The CLI flags map onto these fields one to one."""

from __future__ import annotations

from dataclasses import dataclass, field

from nowait.guard.turnaround import Turnaround
from nowait.limits import BATCH_MAX_BYTES, BATCH_MAX_REQUESTS, MESSAGES_MAX_BYTES

API_VERSIONS = ("2023-01-01", "2023-06-01", "2026-10-21")
"""`anthropic-version` values the API knows; 2026-10-21 drops the sampling parameters."""

SDK_MODELS = (
    "claude-fable-5-2",
    "claude-mythos-5-2",
    "claude-haiku-5-5",
    "claude-sonnet-5-5",
    "claude-fable-5-1",
    "claude-opus-5-5",
    "claude-mythos-5-1",
    "claude-sonnet-5",
    "claude-fable-5",
    "claude-mythos-5",
    "claude-opus-5",
    "claude-opus-4-8",
    "claude-opus-4-7",
    "claude-mythos-preview",
    "claude-opus-4-6",
    "claude-sonnet-4-6",
    "claude-haiku-4-5",
    "claude-haiku-4-5-20251001",
    "claude-opus-4-5",
    "claude-opus-4-5-20251101",
    "claude-sonnet-4-5",
    "claude-sonnet-4-5-20250929",
)
"""The `anthropic` 2.13 SDK's `Model` literal, in its order (the order `/v1/models` lists)."""
KNOWN_MODELS = frozenset(SDK_MODELS)
"""Model ids the emulator answers for."""


@dataclass(frozen=True)
class RateLimit:
    """Per-model limits of the real-time API, per minute; None = unlimited."""

    requests_per_minute: int | None = None
    input_tokens_per_minute: int | None = None
    output_tokens_per_minute: int | None = None


@dataclass(frozen=True)
class Faults:
    """Probabilities of injected failures, drawn from the seeded generator."""

    overloaded: float = 0.0
    """Share of Messages and batch-create calls answered 529 overloaded_error."""
    server_error: float = 0.0
    """Share of Messages and batch-create calls answered 500 api_error."""
    errored_lines: float = 0.0
    """Share of batch requests that end `errored` with an overloaded_error."""
    expired_lines: float = 0.0
    """Share of batch requests that end `expired`."""
    retry_after: float | None = 1.0
    """`retry-after` seconds sent with injected 529s (None: no header)."""

    def __post_init__(self) -> None:
        for name in ("overloaded", "server_error", "errored_lines", "expired_lines"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability between 0 and 1")


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything that makes one emulator behave differently from another."""

    seed: int = 0
    api_keys: frozenset[str] | None = None
    """Keys accepted; None accepts any non-empty key."""
    turnaround: Turnaround = field(default_factory=Turnaround)
    cancel_latency: float = 30.0
    """Emulated seconds from a cancel to `ended`; requests finishing meanwhile keep results."""
    realtime_latency: float = 0.0
    """Emulated seconds a Messages call takes (real seconds under a SystemClock)."""
    rate_limits: dict[str, RateLimit] = field(default_factory=dict)
    """By model id; the key "*" applies to every model without its own entry."""
    faults: Faults = field(default_factory=Faults)
    contract_mode: bool = False
    """Answer any batch id, model id and list cursor, for SDK conformance suites."""
    public_base_url: str | None = None
    """Origin put in `results_url`; None derives it from each request's Host."""
    max_batch_requests: int = BATCH_MAX_REQUESTS
    max_batch_bytes: int = BATCH_MAX_BYTES
    max_messages_bytes: int = MESSAGES_MAX_BYTES
    cache_min_tokens: int = 1024
    """Shortest prefix the API caches."""
    output_tokens: tuple[int, int] = (12, 160)
    """Range of the fake model's natural answer length, in tokens."""
    shuffle_results: bool = True
    realtime_service_tier: str = "standard"
    """`usage.service_tier` of real-time answers: "priority" acts as a Priority Tier
    organization; any other string as a tier the API might add later."""
    models: frozenset[str] = KNOWN_MODELS

    def rate_limit(self, model: str) -> RateLimit | None:
        return self.rate_limits.get(model) or self.rate_limits.get("*")
