"""Serve the emulator on localhost: in a background thread (tests, demo) or in the foreground
(`nowait emulator`)."""

from __future__ import annotations

import socket
import threading
from types import TracebackType

import uvicorn

from nowait.clock import Clock
from nowait.emulator.app import create_app
from nowait.emulator.config import EmulatorConfig
from nowait.emulator.state import Emulator


class EmulatorServer:
    """`with EmulatorServer(clock=clock) as srv:` → `srv.base_url`, `srv.emulator` (the knobs)."""

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        clock: Clock | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.app = create_app(config, clock)
        self.emulator: Emulator = self.app.state.emulator
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only when the
        # protocol says TCP; without it every response waits ~40 ms on Nagle + delayed ACK.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        self.base_url = f"http://{self.host}:{self.port}"
        self._server = uvicorn.Server(
            uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off")
        )
        self._thread: threading.Thread | None = None

    def start(self) -> EmulatorServer:
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the emulator server failed to start")
            threading.Event().wait(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._socket.close()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve_forever(config: EmulatorConfig, clock: Clock, host: str, port: int) -> None:
    """Run in the foreground until interrupted."""
    uvicorn.run(
        create_app(config, clock),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
