"""The custom_id nowait gives each batch request: `n<namespace>-j<job id>-a<attempt>`.

The namespace is the store's random id (`Store.namespace`): stores sharing one API account
name their requests apart, so reconciliation and collection never take another store's batch
or line for their own. The attempt makes each try unique, so a line of an earlier batch never
lands on a later try. Stores older than namespaces sent `j<job id>-a<attempt>` (legacy).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from nowait.limits import CUSTOM_ID_MAX_LENGTH, CUSTOM_ID_PATTERN

_OURS = re.compile(r"n([0-9A-Za-z_]{1,40})-j(\d{1,19})-a(\d{1,6})")
_LEGACY = re.compile(r"j(\d{1,19})-a(\d{1,6})")


@dataclass(frozen=True)
class CustomId:
    namespace: str | None  # None: a legacy id, from before stores had namespaces
    job_id: int
    attempt: int


def custom_id(namespace: str, job_id: int, attempt: int) -> str:
    made = f"{_prefix(namespace)}{job_id}-a{attempt}"
    # Numbers add only digits and dashes, which the pattern takes: only the length can fail.
    if len(made) > CUSTOM_ID_MAX_LENGTH or not _plain_prefix(namespace):
        raise ValueError(f"custom_id {made!r} is outside the API's pattern")
    return made


def _prefix(namespace: str) -> str:
    return f"n{namespace}-j"


@lru_cache(maxsize=64)
def _plain_prefix(namespace: str) -> bool:
    """Whether a namespace keeps custom_ids in the API's pattern: checked once per store
    (a planning pass names 100,000 requests of one namespace)."""
    return CUSTOM_ID_PATTERN.fullmatch(_prefix(namespace)) is not None


def parse(text: str) -> CustomId | None:
    """What a custom_id names, or None when nowait did not make it."""
    if found := _OURS.fullmatch(text):
        return CustomId(found.group(1), int(found.group(2)), int(found.group(3)))
    if found := _LEGACY.fullmatch(text):
        return CustomId(None, int(found.group(1)), int(found.group(2)))
    return None


def job_in(text: str, namespace: str) -> int | None:
    """The job a custom_id of `namespace` names; None when it is not one (`parse` without
    building a `CustomId`: collecting reads one per result line)."""
    found = _OURS.fullmatch(text)
    return int(found.group(2)) if found is not None and found.group(1) == namespace else None
