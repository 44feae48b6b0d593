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
from nowait.models import Decision, Route, Tier, Usage
from nowait.pricing import PriceTable, UnknownModelWarning, cost, cost_breakdown, load_table

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
