"""nowait: find the Claude work nobody is waiting for, and run it at batch price.

Everything the README uses is importable from here. The heavy parts (the `anthropic` SDK, the
emulator's server) load on first use, so `import nowait` stays fast.

    Anthropic, AsyncAnthropic                                    the drop-in SDK client
    Router, Delivery, JsonlSink, AnthropicBackend, open_store   the route side
    EmulatorServer, EmulatorConfig                               a local Anthropic API
    FakeClock, SystemClock, ScaledClock, Clock                   the one clock
    PriceTable, load_table, cost, cost_breakdown                 exact money
    Settings, load_settings, WorkerConfig                        settings, as the CLI reads them
    NowaitError and its subclasses                               errors
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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
from nowait.types import Decision, Route, Tier, Usage

if TYPE_CHECKING:
    from nowait.adopt import Anthropic, AsyncAnthropic, AsyncHandle, Handle, RequestFailed
    from nowait.emulator import EmulatorConfig, EmulatorServer
    from nowait.route.backend import AnthropicBackend, Backend
    from nowait.route.receipts import Receipt, build_receipt
    from nowait.route.router import Delivery, JsonlSink, Router
    from nowait.route.worker import WorkerConfig
    from nowait.settings import Settings, load_settings
    from nowait.sort.pricing import (
        PriceTable,
        UnknownModelWarning,
        cost,
        cost_breakdown,
        load_table,
    )
    from nowait.store import Store, StoreBusyError, open_store

__version__ = "0.1.0"

_LAZY = {
    "Anthropic": "nowait.adopt",
    "AsyncAnthropic": "nowait.adopt",
    "AsyncHandle": "nowait.adopt",
    "Handle": "nowait.adopt",
    "RequestFailed": "nowait.adopt",
    "AnthropicBackend": "nowait.route.backend",
    "Backend": "nowait.route.backend",
    "Delivery": "nowait.route.router",
    "EmulatorConfig": "nowait.emulator",
    "EmulatorServer": "nowait.emulator",
    "JsonlSink": "nowait.route.router",
    "PriceTable": "nowait.sort.pricing",
    "Receipt": "nowait.route.receipts",
    "Router": "nowait.route.router",
    "Settings": "nowait.settings",
    "Store": "nowait.store",
    "StoreBusyError": "nowait.store",
    "UnknownModelWarning": "nowait.sort.pricing",
    "WorkerConfig": "nowait.route.worker",
    "build_receipt": "nowait.route.receipts",
    "cost": "nowait.sort.pricing",
    "cost_breakdown": "nowait.sort.pricing",
    "load_settings": "nowait.settings",
    "load_table": "nowait.sort.pricing",
    "open_store": "nowait.store",
}


def __getattr__(name: str) -> Any:
    """Load a heavy export on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nowait' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "Anthropic",
    "AnthropicBackend",
    "AsyncAnthropic",
    "AsyncHandle",
    "Backend",
    "BackendError",
    "Clock",
    "ConfigError",
    "Decision",
    "Delivery",
    "EmulatorConfig",
    "EmulatorServer",
    "FakeClock",
    "Handle",
    "IllegalTransition",
    "InputError",
    "JsonlSink",
    "NowaitError",
    "PermanentBackendError",
    "PriceTable",
    "Receipt",
    "RequestFailed",
    "RetryableBackendError",
    "Route",
    "Router",
    "ScaledClock",
    "Settings",
    "Store",
    "StoreBusyError",
    "StoreError",
    "SystemClock",
    "Tier",
    "UnknownModelWarning",
    "Usage",
    "WorkerConfig",
    "__version__",
    "build_receipt",
    "cost",
    "cost_breakdown",
    "load_settings",
    "load_table",
    "open_store",
]
