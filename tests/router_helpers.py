"""Request builders shared by the router tests."""

from __future__ import annotations

from typing import Any


def ask(i: int, model: str = "claude-haiku-5-5", **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 32,
        "messages": [{"role": "user", "content": f"Label item {i}."}],
        **extra,
    }
