"""Cursor paging of the API's list endpoints (`after_id`, `before_id`, `limit`).

The API documents each cursor alone: `after_id` gives the page right after that object,
`before_id` the page right before it. It does not document both at once; here both bound a
window (the objects strictly between them), and the page is taken next to `before_id`, the
direction the SDK keeps paging in once a call used `before_id` (its next request sends
`before_id=first_id` and repeats the original `after_id`, so paging stops at `after_id`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from nowait.emulator.apierror import invalid

T = TypeVar("T")
DEFAULT_LIMIT = 20
MAX_LIMIT = 1000
_DIGITS = re.compile(r"[0-9]{1,9}")  # ASCII only: str.isdigit() also accepts "²"


@dataclass(frozen=True)
class Page:
    """What a list call asked for, checked."""

    after_id: str | None
    before_id: str | None
    limit: int


def page_query(query: Mapping[str, str]) -> Page:
    """Read `after_id`, `before_id` and `limit` from a query string, or raise a 400."""
    text = query.get("limit", str(DEFAULT_LIMIT))
    if not _DIGITS.fullmatch(text) or not 1 <= int(text) <= MAX_LIMIT:
        raise invalid(f"limit: Input should be an integer between 1 and {MAX_LIMIT}")
    after, before = query.get("after_id"), query.get("before_id")
    for name, value in (("after_id", after), ("before_id", before)):
        if value is not None and not value:
            raise invalid(f"{name}: String should have at least 1 character")
    return Page(after, before, int(text))


def paginate(
    items: Sequence[T], ids: Sequence[str], page: Page, *, any_cursor: bool
) -> tuple[list[T], bool]:
    """The page of `items` (listed in API order) and `has_more` in the page's direction.

    A cursor naming no listed object is a 400, unless `any_cursor` (contract mode), where it
    bounds nothing.
    """
    low, high = 0, len(items)  # the window: items[low:high]
    if page.after_id is not None:
        at = _position(ids, page.after_id, "after_id", any_cursor)
        low = 0 if at is None else at + 1
    if page.before_id is not None:
        at = _position(ids, page.before_id, "before_id", any_cursor)
        high = len(items) if at is None else at
        start = max(low, high - page.limit)
        return list(items[start:high]), start > low
    end = min(high, low + page.limit)
    return list(items[low:end]), end < high


def _position(ids: Sequence[str], cursor: str, name: str, any_cursor: bool) -> int | None:
    try:
        return list(ids).index(cursor)
    except ValueError:
        if any_cursor:
            return None
        raise invalid(f"{name}: no object found with id {cursor!r}") from None
