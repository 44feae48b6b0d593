"""`nowait emulator` as a real subprocess on a free port, for tests that need its own process
(the SDK's suite, memory measured as the process's RSS, its log)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class EmulatorProcess:
    process: subprocess.Popen[bytes]
    base_url: str
    log: Path

    def rss_bytes(self) -> int:
        """Resident memory now (Linux /proc)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS line")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_emulator(tmp_path: Path, *args: str) -> Iterator[EmulatorProcess]:
    port = free_port()
    log = tmp_path / f"emulator-{port}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "nowait", "emulator", "--port", str(port), *args],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"emulator did not start: {log.read_text()}") from None
                time.sleep(0.05)
        yield EmulatorProcess(process, f"http://127.0.0.1:{port}", log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def emulator_process(
    tmp_path: Path,
) -> Callable[..., AbstractContextManager[EmulatorProcess]]:
    """`with emulator_process("--contract") as emu:` → `emu.base_url`, `emu.rss_bytes()`."""
    return lambda *args: running_emulator(tmp_path, *args)
