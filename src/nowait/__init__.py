"""nowait: find the Claude work nobody is waiting for, and run it at batch price."""

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

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "Clock",
    "ConfigError",
    "Decision",
    "FakeClock",
    "IllegalTransition",
    "InputError",
    "NowaitError",
    "PermanentBackendError",
    "PriceTable",
    "RetryableBackendError",
    "Route",
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
