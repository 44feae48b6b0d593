"""nowait: find the Claude work nobody is waiting for, and run it at batch price."""

import importlib
from typing import TYPE_CHECKING

from nowait.clock import Clock, FakeClock, ScaledClock, SystemClock
from nowait.errors import (
    BackendError,
    ConfigError,
    IllegalTransition,
    InputError,
    NowaitError,
    PermanentBackendError,
    RetryableBackendError,
    StoreError,
)
from nowait.sort.pricing import PriceTable, UnknownModelWarning, cost, cost_breakdown, load_table
from nowait.types import Decision, Route, Tier, Usage

if TYPE_CHECKING:
    from nowait.route.router import Delivery, JsonlSink, Router
    from nowait.store.sqlite import SQLiteStore

__version__ = "0.1.0"

_LAZY = {
    "Delivery": "nowait.route.router",
    "JsonlSink": "nowait.route.router",
    "Router": "nowait.route.router",
    "SQLiteStore": "nowait.store.sqlite",
}
"""Names imported on first use: `import nowait` stays quick for commands that never route."""


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nowait' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "BackendError",
    "Clock",
    "ConfigError",
    "Decision",
    "Delivery",
    "FakeClock",
    "IllegalTransition",
    "InputError",
    "JsonlSink",
    "NowaitError",
    "PermanentBackendError",
    "PriceTable",
    "RetryableBackendError",
    "Route",
    "Router",
    "SQLiteStore",
    "ScaledClock",
    "StoreError",
    "SystemClock",
    "Tier",
    "UnknownModelWarning",
    "Usage",
    "__version__",
    "cost",
    "cost_breakdown",
    "load_table",
]
