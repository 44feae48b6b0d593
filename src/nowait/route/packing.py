"""Pack queued requests into batches within the API's limits (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from nowait.limits import BATCH_MAX_BYTES, BATCH_MAX_REQUESTS
from nowait.route.cacheplan import MARKER_BYTES

ENVELOPE_BYTES = len('{"requests": []}')


@dataclass(frozen=True, slots=True)  # slots: a planning pass builds one a queued job
class Member:
    job_id: int
    custom_id: str
    params_json: str
    markers: int = 0
    """Cache markers added when it is sent (one a planned prefix level): room is kept."""

    @property
    def size(self) -> int:
        """Bytes this request adds to the create body, as an upper bound.

        Measured on the serialized item `{"custom_id": ..., "params": ...}` plus its separator;
        `params_json` is stored with spaces and ASCII escapes, never shorter than what an HTTP
        client sends.
        """
        return (
            len(self.params_json)
            + len(self.custom_id)
            + len('{"custom_id": "", "params": }, ')
            + MARKER_BYTES * self.markers
        )


def pack(
    members: Iterable[Member],
    max_requests: int = BATCH_MAX_REQUESTS,
    max_bytes: int = BATCH_MAX_BYTES,
) -> Iterator[tuple[list[Member], int]]:
    """Group members, in order, into batches of at most `max_requests` and `max_bytes`."""
    group: list[Member] = []
    size = ENVELOPE_BYTES
    for member in members:
        if ENVELOPE_BYTES + member.size > max_bytes:
            raise ValueError(f"request {member.custom_id} alone exceeds the batch size limit")
        if group and (len(group) == max_requests or size + member.size > max_bytes):
            yield group, size
            group, size = [], ENVELOPE_BYTES
        group.append(member)
        size += member.size
    if group:
        yield group, size
