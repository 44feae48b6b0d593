"""Request builders shared by the router tests."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from nowait.errors import RetryableBackendError
from nowait.route.backend import AnthropicBackend, BatchInfo


def ask(i: int, model: str = "claude-haiku-5-5", **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 32,
        "messages": [{"role": "user", "content": f"Label item {i}."}],
        **extra,
    }


class ReplyLostBackend(AnthropicBackend):
    """The real SDK against the emulator, except that the replies of the next `lose` batch
    creates are dropped after the API acted on them: a timeout or connection reset after the
    batch was made, as far as nowait can tell."""

    def __init__(self, lose: int = 1, **options: Any) -> None:
        super().__init__(**options)
        self.lose = lose

    def create_batch(self, requests: Iterable[tuple[str, str]]) -> BatchInfo:
        info = super().create_batch(requests)
        if self.lose > 0:
            self.lose -= 1
            raise RetryableBackendError("cannot reach the API: APITimeoutError")
        return info
