"""A local Anthropic API (Messages, Message Batches, Models) that the official SDK runs against."""

from nowait.emulator.app import create_app
from nowait.emulator.config import EmulatorConfig, Faults, RateLimit
from nowait.emulator.server import EmulatorServer
from nowait.emulator.state import Emulator
from nowait.guard.turnaround import Turnaround

__all__ = [
    "Emulator",
    "EmulatorConfig",
    "EmulatorServer",
    "Faults",
    "RateLimit",
    "Turnaround",
    "create_app",
]
