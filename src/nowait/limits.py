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
