"""nowait's own store (`nowait.db`): every routed request with its workload, route and usage."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

from nowait.analyze.readers import BadRecords
from nowait.analyze.records import Record
from nowait.errors import InputError, StoreError
from nowait.store.sqlite import SQLiteStore


def _check_store(path: Path) -> None:
    """Read-only, before the store opens it (which would add its tables to any database): the
    file is a SQLite database holding nowait's jobs."""
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    except sqlite3.Error as exc:
        raise InputError(f"not a readable SQLite database ({exc})", file=path) from None
    if "jobs" not in tables:
        raise InputError("a SQLite database, but not a nowait store (no jobs table)", file=path)


def read_store(path: Path, bad: BadRecords) -> Iterator[Record]:
    _check_store(path)
    try:
        store = SQLiteStore(path)
    except StoreError as exc:
        raise InputError(f"not a readable nowait store ({exc})", file=path) from None
    try:
        for job in store.jobs():
            if job.usage is None:
                continue
            usage = job.usage
            yield Record(
                source="nowait",
                producer="nowait-store",
                record_id=job.key,
                start_time=job.created_at,
                model=job.model,
                stream=False,
                service_tier=job.tier.value if job.tier else None,
                input_uncached=usage.input_tokens,
                cache_read=usage.cache_read_tokens,
                cache_write_5m=usage.cache_write_5m_tokens,
                cache_write_1h=usage.cache_write_1h_tokens,
                output_tokens=usage.output_tokens,
                token_rule="anthropic usage object",
                feature=job.workload,
                trigger="script",
                awaited=job.awaited,
                needed_within_s=(job.deadline - job.created_at).total_seconds()
                if job.deadline is not None
                else None,
                file=str(path),
                line=job.id,
            )
    finally:
        store.close()
