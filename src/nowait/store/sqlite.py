"""The embedded store: one SQLite file (WAL, mode 0600), migrations as code.

`SQLiteStore` is the one store core (`nowait.store.core`) over `SQLiteDialect`: one connection
shared by the threads of one process under a lock, timestamps as ISO 8601 text, set-based
statements run once per row in one prepared loop (`SQLiteTx.bulk`), `claim()` an `flock` on a
file beside the database.
"""

from __future__ import annotations

import fcntl
import os
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from functools import lru_cache
from operator import itemgetter
from pathlib import Path
from typing import Any

from nowait.errors import StoreError
from nowait.files import make_private_dir
from nowait.store import StoreBusyError
from nowait.store import fleet as fleet_sql
from nowait.store.core import ROWS, CoreStore, Row, Staged

MIGRATIONS = (
    """
    CREATE TABLE batches (
        id INTEGER PRIMARY KEY,
        api_id TEXT UNIQUE,
        state TEXT NOT NULL,
        request_count INTEGER NOT NULL,
        body_bytes INTEGER NOT NULL,
        model TEXT NOT NULL,
        planned_at TEXT NOT NULL,
        created_at TEXT,
        ended_at TEXT,
        next_poll_at TEXT,
        poll_interval REAL NOT NULL DEFAULT 0,
        cancel_requested INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,
        workload TEXT,
        params_json TEXT NOT NULL,
        model TEXT NOT NULL,
        route TEXT NOT NULL,
        reasons TEXT NOT NULL DEFAULT '',
        deadline TEXT,
        awaited INTEGER NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        not_before TEXT NOT NULL,
        batch_ref INTEGER REFERENCES batches(id),
        custom_id TEXT,
        tier TEXT,
        input_tokens INTEGER, output_tokens INTEGER, cache_write_5m_tokens INTEGER,
        cache_write_1h_tokens INTEGER, cache_read_tokens INTEGER,
        error TEXT,
        run_id TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE results (
        job_id INTEGER PRIMARY KEY REFERENCES jobs(id),
        result_json TEXT NOT NULL
    );
    CREATE INDEX jobs_due ON jobs (state, route, not_before);
    CREATE INDEX jobs_batch ON jobs (batch_ref, custom_id);
    CREATE INDEX jobs_run ON jobs (run_id, state);
    CREATE INDEX batches_state ON batches (state);
    """,
    # 2: when each create call started (reconciliation matches on it; a plan left by an older
    # nowait may have been sent); result lines are applied by custom_id alone.
    """
    ALTER TABLE batches ADD COLUMN submit_started_at TEXT;
    UPDATE batches SET submit_started_at = planned_at WHERE state = 'planned';
    CREATE INDEX jobs_custom ON jobs (custom_id);
    """,
    # 3: indexes a job's state moves do not rewrite: the queue and the undelivered results are
    # partial indexes, entered and left once; the run index does not carry the state.
    """
    DROP INDEX jobs_due;
    CREATE INDEX jobs_due ON jobs (route, not_before) WHERE state = 'queued';
    DROP INDEX jobs_run;
    CREATE INDEX jobs_run ON jobs (run_id);
    CREATE INDEX jobs_undelivered ON jobs (id) WHERE state IN ('succeeded', 'failed');
    """,
    # 4: the store's namespace (written once, after the migrations) and the API batches a plan
    # waits on before reconciliation can tell whether one of them is its own.
    """
    CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
    ALTER TABLE batches ADD COLUMN waiting_for TEXT;
    """,
    # 5: what the guard learns its latencies from: when each cancel was sent (→ ended_at), and
    # how long each real-time call took.
    """
    ALTER TABLE batches ADD COLUMN cancel_requested_at TEXT;
    ALTER TABLE jobs ADD COLUMN call_started_at TEXT;
    ALTER TABLE jobs ADD COLUMN call_seconds REAL;
    """,
    # 6: the latest rate limits the API stated per model class (`Store.record_rate_limits`).
    """
    CREATE TABLE rate_limits (
        model_class TEXT PRIMARY KEY,
        requests_limit INTEGER, requests_remaining INTEGER, requests_reset TEXT,
        input_tokens_limit INTEGER, input_tokens_remaining INTEGER, input_tokens_reset TEXT,
        output_tokens_limit INTEGER, output_tokens_remaining INTEGER, output_tokens_reset TEXT,
        seen_at TEXT NOT NULL
    );
    """,
    # 7: the schema both stores end with (one store core): the meta table's name; a batch's
    # members are read in pages by id, which (batch_ref, id) serves without a sort.
    """
    ALTER TABLE meta RENAME TO nowait_meta;
    DROP INDEX jobs_batch;
    CREATE INDEX jobs_batch ON jobs (batch_ref, id);
    """,
    # 8: results stored in arrival order (their own rowid), found by a unique job_id: a
    # batch's lines come in any order, and keyed by job_id each one landed on a page of its
    # own (a 1,000-line chunk rewrote ~1,000 pages; appended, ~200).
    """
    CREATE TABLE results_by_arrival (
        id INTEGER PRIMARY KEY,
        job_id INTEGER NOT NULL UNIQUE REFERENCES jobs(id),
        result_json TEXT NOT NULL
    );
    INSERT INTO results_by_arrival (job_id, result_json)
        SELECT job_id, result_json FROM results ORDER BY job_id;
    DROP TABLE results;
    ALTER TABLE results_by_arrival RENAME TO results;
    """,
    # 9: many workers on one store: the same tables as PostgreSQL (one process owns a SQLite
    # store, so only `jobs.owner` is written here).
    fleet_sql.SQLITE_MIGRATION,
    # 10: results a worker was writing to its sink when it died stay its own (in doubt).
    fleet_sql.SQLITE_IN_DOUBT,
    # 11: a queued job has no batch and no custom_id: the indexes on them hold only the jobs
    # that do, so adding a job touches neither and planning it only enters them.
    """
    DROP INDEX jobs_custom;
    CREATE INDEX jobs_custom ON jobs (custom_id) WHERE custom_id IS NOT NULL;
    DROP INDEX jobs_batch;
    CREATE INDEX jobs_batch ON jobs (batch_ref, id) WHERE batch_ref IS NOT NULL;
    """,
)

OLDEST_SQLITE = (3, 35)  # UPDATE … FROM (3.33), RETURNING (3.35)


class SQLiteTx:
    """One `BEGIN IMMEDIATE` transaction on the shared connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def run(self, sql: str, args: Sequence[object] = ()) -> int:
        return self.db.execute(sql, args).rowcount

    def rows(self, sql: str, args: Sequence[object] = ()) -> list[Row]:
        return self.db.execute(sql, args).fetchall()

    def bulk(self, sql: str, staged: Staged, args: Sequence[object] = ()) -> int:
        """The statement once per row, with its `alias.column` references bound as that row's
        values: one prepared statement looped in C (executemany), as a hand-written per-row
        statement would be. In-process that beats any staging: a temporary table or a VALUES
        list is copied once more and joined, which cost 2-3× on 20,000 result lines."""
        statement, plan = _per_row(sql, staged)
        fixed = tuple(args)
        if plan == tuple((False, i) for i in range(len(staged.columns))):
            return self.db.executemany(statement, staged.rows).rowcount  # the rows as they are
        # Each row's parameters picked in C from the row followed by the fixed arguments.
        width = len(staged.columns)
        where = [width + i if arg else i for arg, i in plan]
        pick = itemgetter(*where) if len(where) > 1 else lambda values: (values[where[0]],)
        done = self.db.executemany(statement, (pick((*row, *fixed)) for row in staged.rows))
        return done.rowcount


@lru_cache(maxsize=256)
def _per_row_cached(
    sql: str, name: str, columns: tuple[str, ...]
) -> tuple[str, tuple[tuple[bool, int], ...]]:
    without = sql.replace(f", {ROWS}", "").replace(f"FROM {ROWS}", "")
    if ROWS in without:
        raise StoreError(f"a set-based statement names its rows in an unknown way: {sql!r}")
    plan: list[tuple[bool, int]] = []
    args = 0

    def bind(match: re.Match[str]) -> str:
        nonlocal args
        if match.group(0) == "?":
            plan.append((True, args))
            args += 1
        else:
            plan.append((False, columns.index(match.group(1))))
        return "?"

    statement = re.sub(rf"\?|(?<![\w.]){name}\.(\w+)", bind, without)
    return statement, tuple(plan)


def _per_row(sql: str, staged: Staged) -> tuple[str, tuple[tuple[bool, int], ...]]:
    """`sql` as a per-row statement, and where each of its parameters comes from: (True, i)
    the i-th fixed argument, (False, j) the row's j-th column."""
    return _per_row_cached(sql, staged.name, tuple(c for c, _ in staged.columns))


_from_iso = lru_cache(maxsize=4096)(datetime.fromisoformat)
"""Stored times back as datetimes (immutable, so shared): the rows added in one call share
their `created_at` and `not_before`, and a planning or delivery pass reads 100,000."""


class SQLiteDialect:
    """How the store core talks to one SQLite file."""

    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.RLock()
        if sqlite3.sqlite_version_info < OLDEST_SQLITE:
            raise StoreError(
                f"SQLite {sqlite3.sqlite_version} is too old for the nowait store"
                f" (needs {'.'.join(map(str, OLDEST_SQLITE))} or newer)"
            )
        make_private_dir(path.parent)
        if not path.exists():
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        os.chmod(path, 0o600)
        try:
            self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            # WAL with synchronous=NORMAL: a commit survives the process crashing (SIGKILL,
            # OOM) at any point; only a power loss or OS crash can lose the last commits,
            # never corrupt the file. The crash-safety guarantees are about process crashes.
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            # 8 MiB: collect memory stays flat in N (64 MiB filled up at 100,000 results and
            # was no faster on the routing bench).
            self.db.execute("PRAGMA cache_size=-8192")
            self.db.execute("PRAGMA busy_timeout=10000")
            # Fewer, larger checkpoints: collecting 100,000 results writes ~100 MB of WAL.
            self.db.execute("PRAGMA wal_autocheckpoint=16384")
            self.db.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path}: not a usable nowait store ({exc})") from None

    @contextmanager
    def tx(self) -> Iterator[SQLiteTx]:
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield SQLiteTx(self.db)
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def statements(self) -> AbstractContextManager[SQLiteTx]:
        """One transaction: a single writer in one process holds no lock another waits on."""
        return self.tx()

    def read(self, sql: str, args: Sequence[object] = ()) -> list[Row]:
        with self.lock:
            return self.db.execute(sql, args).fetchall()

    def ts(self, moment: datetime | None) -> str | None:
        return moment.isoformat() if moment is not None else None

    def dt(self, value: Any) -> datetime | None:
        return _from_iso(value) if value else None

    def json_int(self, column: str, key: str) -> str:
        return f"coalesce(json_extract({column}, '$.{key}'), 0)"

    def migrate(self) -> None:
        try:
            with self.tx() as tx:
                version = tx.rows("PRAGMA user_version")[0][0]
                if version > len(MIGRATIONS):
                    raise StoreError(
                        f"{self.path} was written by a newer nowait (schema {version})"
                    )
                for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                    for statement in filter(str.strip, script.split(";")):
                        tx.run(statement)
                    tx.run(f"PRAGMA user_version = {number}")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: not a usable nowait store ({exc})") from None

    @contextmanager
    def claim(self) -> Iterator[None]:
        """An exclusive `flock` on `<db>.lock`; the kernel drops it if the process dies."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreBusyError(
                    f"another nowait process is working on {self.path}; a SQLite store has one"
                    " worker at a time: stop it first, use another --home, or keep the state in"
                    " PostgreSQL (--store postgresql://…) to run several workers"
                ) from None
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def close(self) -> None:
        with self.lock:
            self.db.close()


class SQLiteStore(CoreStore):
    """`Store` on a SQLite file. Safe to share between threads of one process."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        super().__init__(SQLiteDialect(self.path))
