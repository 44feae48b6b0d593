"""A clean PostgreSQL database per test, on the session's throw-away server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest


@pytest.fixture
def pg_database(postgres_dsn: str) -> Iterator[str]:
    """DSN of a database created for this test and dropped after it (~50 ms)."""
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
