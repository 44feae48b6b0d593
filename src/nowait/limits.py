"""The Message Batches API's hard limits, shared by the emulator (which enforces them) and the
router (which packs within them). Sizes are decimal megabytes, the conservative reading."""

from __future__ import annotations

import re

BATCH_MAX_REQUESTS = 100_000
BATCH_MAX_BYTES = 256_000_000
MESSAGES_MAX_BYTES = 32_000_000
CUSTOM_ID_MAX_LENGTH = 64
CUSTOM_ID_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
BATCH_EXPIRY_HOURS = 24
RESULTS_RETENTION_DAYS = 29
NESTING_MAX_DEPTH = 100
"""Deepest nesting nowait accepts in a request (the API's own requests stay far shallower)."""
MAX_OUTPUT_TOKENS_5X = 128_000
"""`max_tokens` ceiling of the 5.x models (1M context, 128K output); older ones: not known."""
_FIVE_X = re.compile(r"claude-(fable|mythos|opus|sonnet|haiku)-5(-\d+)?(-\d{8})?")


def max_output_tokens(model: str) -> int | None:
    """The model's `max_tokens` ceiling where nowait knows it, else None."""
    return MAX_OUTPUT_TOKENS_5X if _FIVE_X.fullmatch(model) else None
