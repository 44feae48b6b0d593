"""Routers wired to a real emulator over HTTP and a real SQLite file."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nowait.clock import FakeClock
from nowait.route.backend import AnthropicBackend
from nowait.route.router import Router
from nowait.route.worker import WorkerConfig
from nowait.store.sqlite import SQLiteStore


@pytest.fixture
def make_router(tmp_path: Path, fake_clock: FakeClock) -> Iterator[Callable[..., Router]]:
    made: list[tuple[Router, AnthropicBackend]] = []

    def make(server: Any, **worker: Any) -> Router:
        backend = AnthropicBackend(api_key="test-key", base_url=server.base_url)
        store = SQLiteStore(tmp_path / f"store{len(made)}" / "nowait.db")
        router = Router(
            store=store, backend=backend, clock=fake_clock, worker=WorkerConfig(**worker)
        )
        made.append((router, backend))
        return router

    yield make
    for router, backend in made:
        backend.close()
        router.store.close()
