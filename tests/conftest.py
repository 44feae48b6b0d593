"""Shared fixtures. Tests never see the developer's own nowait or Anthropic settings."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from nowait.cli import main


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    for name in list(os.environ):
        if name.startswith(("NOWAIT_", "ANTHROPIC_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NOWAIT_HOME", str(tmp_path_factory.mktemp("nowait-home")))


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Iterator[object]:
    """Run `nowait ARGS...` through the real entry point (error boundary included)."""

    def run(*args: str) -> CliResult:
        code = 0
        try:
            main(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0) if not isinstance(exc.code, str) else 1
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    yield run


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """DSN of a real PostgreSQL server started for this test session (skips if not installed)."""
    from pgserver import pg_bin_dir, postgres_server

    if pg_bin_dir() is None:
        pytest.skip("PostgreSQL is not installed (scripts/system-deps installs it)")
    with postgres_server() as dsn:
        yield dsn


@pytest.fixture
def fake_clock() -> object:
    from nowait.clock import FakeClock

    return FakeClock()


@pytest.fixture
def emulator_server(fake_clock: object) -> Iterator[object]:
    """The emulator on a free localhost port, on a fake clock the test moves."""
    from nowait.emulator import EmulatorServer

    with EmulatorServer(clock=fake_clock) as server:  # type: ignore[arg-type]
        yield server


@pytest.fixture
def sdk_for() -> Iterator[object]:
    """`sdk_for(server, **options)`: an SDK client on the emulator, closed after the test."""
    import anthropic

    made: list[anthropic.Anthropic] = []

    def make(server: object, **options: object) -> anthropic.Anthropic:
        options.setdefault("api_key", "test-key")
        options.setdefault("_strict_response_validation", True)
        made.append(anthropic.Anthropic(base_url=server.base_url, **options))  # type: ignore[attr-defined, arg-type]
        return made[-1]

    yield make
    for client in made:
        client.close()


@pytest.fixture
def pg_database(postgres_dsn: str) -> Iterator[str]:
    """DSN of a database created for this test and dropped after it (~50 ms)."""
    import uuid

    import psycopg

    name = "t_" + uuid.uuid4().hex[:16]
    base, _, _ = postgres_dsn.rpartition("/")
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


pytest_plugins = ["router_fixtures"]
