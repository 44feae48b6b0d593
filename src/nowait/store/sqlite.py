"""The embedded store: one SQLite file (WAL, mode 0600), migrations as code."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from nowait.errors import IllegalTransition, StoreError
from nowait.files import make_private_dir
from nowait.ratelimits import RateLimits
from nowait.store import (
    KEEP_UNSTATED,
    LIMIT_COLUMNS,
    OUTCOME_STATE,
    BatchRecord,
    BatchState,
    DeadlineRow,
    Job,
    NewJob,
    ObservedLimits,
    Outcome,
    StoreBusyError,
    UsageRow,
    gave_up,
    limit_values,
    limits_of,
    new_namespace,
)
from nowait.store import fleet as fleet_sql
from nowait.types import USAGE_FIELDS, JobState, Route, Tier, Usage, transition

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
    # 7: many workers on one store (PostgreSQL only; the same tables here, unused).
    fleet_sql.SQLITE_MIGRATION,
)

_JOB_COLUMNS = (
    "id", "key", "workload", "params_json", "model", "route", "reasons", "deadline", "awaited",
    "state", "attempts", "not_before", "batch_ref", "custom_id", "tier", "input_tokens",
    "output_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens", "cache_read_tokens",
    "error", "run_id", "created_at",
)  # fmt: skip
JOB_SELECT = (
    "SELECT "
    + ", ".join(f"jobs.{c}" for c in _JOB_COLUMNS)
    + ", results.result_json FROM jobs LEFT JOIN results ON results.job_id = jobs.id"
)
USAGE_COLUMNS = USAGE_FIELDS  # the jobs table names its usage columns after the fields


def _ts(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _dt(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


class SQLiteStore:
    """`Store` on a SQLite file. Safe to share between threads of one process."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        make_private_dir(self.path.parent)
        if not self.path.exists():
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        os.chmod(self.path, 0o600)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA cache_size=-65536")  # 64 MiB: a 100,000-job batch's rows
            self._db.execute("PRAGMA busy_timeout=10000")
            # Fewer, larger checkpoints: collecting 100,000 results writes ~100 MB of WAL.
            self._db.execute("PRAGMA wal_autocheckpoint=16384")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._lock = threading.RLock()
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: not a usable nowait store ({exc})") from None

    def _migrate(self) -> None:
        with self._tx() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise StoreError(f"{self.path} was written by a newer nowait (schema {version})")
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in filter(str.strip, script.split(";")):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")
            db.execute(
                "INSERT OR IGNORE INTO meta (name, value) VALUES ('namespace', ?)",
                (new_namespace(),),
            )
            self._namespace = str(
                db.execute("SELECT value FROM meta WHERE name = 'namespace'").fetchone()[0]
            )

    @property
    def namespace(self) -> str:
        return self._namespace

    class _Tx:
        def __init__(self, store: SQLiteStore) -> None:
            self.store = store

        def __enter__(self) -> sqlite3.Connection:
            self.store._lock.acquire()
            self.store._db.execute("BEGIN IMMEDIATE")
            return self.store._db

        def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
            try:
                self.store._db.execute("ROLLBACK" if exc_type else "COMMIT")
            finally:
                self.store._lock.release()

    def _tx(self) -> SQLiteStore._Tx:
        return SQLiteStore._Tx(self)

    def close(self) -> None:
        with self._lock:
            self._db.close()

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

    # ---- jobs -------------------------------------------------------------------------------
    def add_job(self, job: NewJob, now: datetime) -> tuple[Job, bool]:
        with self._tx() as db:
            new = _upsert_jobs(db, [job], now) == 1
            return _job(db.execute(JOB_SELECT + " WHERE key = ?", (job.key,)).fetchone()), new

    def add_jobs(self, jobs: Sequence[NewJob], now: datetime) -> int:
        with self._tx() as db:
            return _upsert_jobs(db, jobs, now)

    def get_job(self, key: str) -> Job | None:
        with self._lock:
            row = self._db.execute(JOB_SELECT + " WHERE key = ?", (key,)).fetchone()
        return _job(row) if row else None

    def due_jobs(self, route: Route, now: datetime, limit: int) -> list[Job]:
        with self._lock:
            rows = self._db.execute(
                JOB_SELECT
                + """ WHERE state = 'queued' AND route = ? AND not_before <= ?
                   ORDER BY awaited DESC, deadline IS NULL, deadline, id LIMIT ?""",
                (route.value, _ts(now), limit),
            ).fetchall()
        return [_job(r) for r in rows]

    def _move(
        self, db: sqlite3.Connection, job_id: int, source: JobState, target: JobState, **cols: Any
    ) -> bool:
        transition(source, target)
        sets = ", ".join(f"{c} = ?" for c in cols)
        sql = f"UPDATE jobs SET state = ?{', ' + sets if sets else ''} WHERE id = ? AND state = ?"
        done = db.execute(sql, (target.value, *cols.values(), job_id, source.value)).rowcount
        return bool(done)

    def start_realtime(self, job_id: int, now: datetime) -> bool:
        with self._tx() as db:
            return self._move(
                db, job_id, JobState.QUEUED, JobState.RUNNING, updated_at=_ts(now),
                attempts=_attempts(db, job_id) + 1, call_started_at=_ts(now),
            )  # fmt: skip

    def finish_realtime(self, job_id: int, outcome: Outcome, now: datetime) -> None:
        with self._tx() as db:
            row = db.execute("SELECT call_started_at FROM jobs WHERE id = ?", (job_id,)).fetchone()
            moved = self._apply(db, job_id, JobState.RUNNING, outcome, now)
            started = _dt(row[0]) if row else None
            if moved and outcome.kind == "succeeded" and started is not None:
                seconds = max(0.0, (now - started).total_seconds())
                db.execute("UPDATE jobs SET call_seconds = ? WHERE id = ?", (seconds, job_id))

    def _apply(
        self, db: sqlite3.Connection, job_id: int, source: JobState, outcome: Outcome, now: datetime
    ) -> bool:
        if outcome.kind == "succeeded":
            db.execute(
                "INSERT OR REPLACE INTO results (job_id, result_json) VALUES (?, ?)",
                (job_id, outcome.result_json or "{}"),
            )
            usage = outcome.usage or Usage()
            cols = {c: getattr(usage, c) for c in USAGE_COLUMNS}
            return self._move(
                db, job_id, source, JobState.SUCCEEDED,
                tier=outcome.tier.value if outcome.tier else None, error=None,
                updated_at=_ts(now), **cols,
            )  # fmt: skip
        if outcome.kind == "failed":
            return self._move(
                db, job_id, source, JobState.FAILED, error=outcome.error, updated_at=_ts(now)
            )
        return self._move(
            db, job_id, source, JobState.QUEUED, error=outcome.error, batch_ref=None,
            custom_id=None, not_before=_ts(outcome.not_before or now), updated_at=_ts(now),
        )  # fmt: skip

    def release_realtime(self, job_id: int, now: datetime) -> None:
        with self._tx() as db:
            self._move(
                db, job_id, JobState.RUNNING, JobState.QUEUED, updated_at=_ts(now),
                attempts=max(0, _attempts(db, job_id) - 1),
            )  # fmt: skip

    def requeue_running(self, now: datetime) -> int:
        with self._tx() as db:
            return db.execute(
                "UPDATE jobs SET state = 'queued', updated_at = ? WHERE state = 'running'",
                (_ts(now),),
            ).rowcount

    def reroute(self, job_ids: Sequence[int], route: Route, reason: str, now: datetime) -> int:
        with self._tx() as db:
            return sum(
                db.execute(
                    """UPDATE jobs SET route = ?, reasons = reasons || ? || ?, updated_at = ?
                       WHERE id = ? AND state = 'queued'""",
                    (route.value, "; ", reason, _ts(now), job_id),
                ).rowcount
                for job_id in job_ids
            )

    def undelivered(self, limit: int, run_id: str | None = None) -> list[Job]:
        run = "" if run_id is None else " AND run_id = ?"
        with self._lock:
            rows = self._db.execute(
                JOB_SELECT + f" WHERE state IN ('succeeded', 'failed'){run} LIMIT ?",
                (limit,) if run_id is None else (run_id, limit),
            ).fetchall()
        return [_job(r) for r in rows]

    def undelivered_count(self, run_id: str | None = None) -> int:
        run = "" if run_id is None else " AND run_id = ?"
        with self._lock:
            row = self._db.execute(
                f"SELECT count(*) FROM jobs WHERE state IN ('succeeded', 'failed'){run}",
                () if run_id is None else (run_id,),
            ).fetchone()
        return int(row[0])

    def mark_delivered(self, job_id: int, now: datetime) -> None:
        with self._tx() as db:
            state = JobState(
                db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]
            )
            self._move(db, job_id, state, JobState.DELIVERED, updated_at=_ts(now))

    def mark_delivered_many(self, job_ids: Sequence[int], now: datetime) -> None:
        transition(JobState.SUCCEEDED, JobState.DELIVERED)
        transition(JobState.FAILED, JobState.DELIVERED)
        with self._tx() as db:
            done = db.executemany(
                """UPDATE jobs SET state = 'delivered', updated_at = ?
                   WHERE id = ? AND state IN ('succeeded', 'failed')""",
                ((_ts(now), job_id) for job_id in job_ids),
            ).rowcount
            if done != len(job_ids):
                raise IllegalTransition("only succeeded or failed jobs can be delivered, once")

    def jobs(self, *, run_id: str | None = None, state: JobState | None = None) -> Iterator[Job]:
        sql, args = JOB_SELECT + " WHERE 1=1", list[str]()
        if run_id is not None:
            sql, args = sql + " AND run_id = ?", [*args, run_id]
        if state is not None:
            sql, args = sql + " AND state = ?", [*args, state.value]
        last = 0
        while True:  # pages, so a million jobs never sit in memory at once
            with self._lock:
                rows = self._db.execute(sql + " AND id > ? ORDER BY id LIMIT 1000", (*args, last))
                page = [_job(r) for r in rows.fetchall()]
            if not page:
                return
            yield from page
            last = page[-1].id

    def job_counts(self, run_id: str | None = None) -> dict[JobState, int]:
        where = "WHERE run_id = ?" if run_id is not None else ""
        with self._lock:
            rows = self._db.execute(
                f"SELECT state, count(*) FROM jobs {where} GROUP BY state",
                (run_id,) if run_id is not None else (),
            ).fetchall()
        return {JobState(state): count for state, count in rows}

    def usage_rows(self, run_id: str | None = None) -> list[UsageRow]:
        where = "AND run_id = ?" if run_id is not None else ""
        sums = ", ".join(f"sum({c})" for c in USAGE_COLUMNS)
        with self._lock:
            rows = self._db.execute(
                f"""SELECT workload, model, tier, {sums}, count(*) FROM jobs
                    WHERE tier IS NOT NULL {where} GROUP BY workload, model, tier
                    ORDER BY workload, model, tier""",
                (run_id,) if run_id is not None else (),
            ).fetchall()
        return [
            UsageRow(r[0], r[1], Tier(r[2]), Usage(*(int(v or 0) for v in r[3:8])), r[8])
            for r in rows
        ]

    # ---- batches ----------------------------------------------------------------------------
    def plan_batch(
        self, members: Sequence[tuple[int, str]], body_bytes: int, model: str, now: datetime
    ) -> BatchRecord:
        with self._tx() as db:
            batch_id = db.execute(
                """INSERT INTO batches (state, request_count, body_bytes, model, planned_at)
                   VALUES ('planned', ?, ?, ?, ?)""",
                (len(members), body_bytes, model, _ts(now)),
            ).lastrowid
            transition(JobState.QUEUED, JobState.SUBMITTING)
            moved = db.executemany(
                """UPDATE jobs SET state = 'submitting', batch_ref = ?, custom_id = ?,
                   attempts = attempts + 1, updated_at = ? WHERE id = ? AND state = 'queued'""",
                ((batch_id, custom_id, _ts(now), job_id) for job_id, custom_id in members),
            ).rowcount
            if moved != len(members):
                raise StoreError("a planned job is no longer queued; batch plan rolled back")
            return _batch(db.execute("SELECT * FROM batches WHERE id = ?", (batch_id,)).fetchone())

    def submit_started(self, batch_id: int, now: datetime) -> None:
        with self._tx() as db:
            done = db.execute(
                "UPDATE batches SET submit_started_at = ? WHERE id = ? AND state = 'planned'",
                (_ts(now), batch_id),
            ).rowcount
            if not done:
                raise StoreError(f"batch {batch_id} is not planned; not sending it")

    def batch_created(
        self, batch_id: int, api_id: str, created_at: datetime, next_poll_at: datetime
    ) -> None:
        with self._tx() as db:
            done = db.execute(
                """UPDATE batches SET state = 'created', api_id = ?, created_at = ?,
                   next_poll_at = ?, waiting_for = NULL WHERE id = ? AND state = 'planned'""",
                (api_id, _ts(created_at), _ts(next_poll_at), batch_id),
            ).rowcount
            if not done:  # e.g. another process abandoned the plan: its jobs are elsewhere
                raise StoreError(f"batch {batch_id} is no longer planned; {api_id} not recorded")
            transition(JobState.SUBMITTING, JobState.IN_BATCH)
            db.execute(
                "UPDATE jobs SET state = 'in_batch' WHERE batch_ref = ? AND state = 'submitting'",
                (batch_id,),
            )

    def wait_for(self, batch_id: int, api_ids: Sequence[str]) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE batches SET waiting_for = ? WHERE id = ? AND state = 'planned'",
                (",".join(api_ids) or None, batch_id),
            )

    def abandon_batch(self, batch_id: int, now: datetime) -> int:
        with self._tx() as db:
            db.execute(
                """UPDATE batches SET state = 'abandoned', waiting_for = NULL
                   WHERE id = ? AND state = 'planned'""",
                (batch_id,),
            )
            transition(JobState.SUBMITTING, JobState.QUEUED)
            return db.execute(
                """UPDATE jobs SET state = 'queued', batch_ref = NULL, custom_id = NULL,
                   updated_at = ? WHERE batch_ref = ? AND state = 'submitting'""",
                (_ts(now), batch_id),
            ).rowcount

    def batches(self, *states: BatchState) -> list[BatchRecord]:
        marks = ", ".join("?" for _ in states)
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM batches WHERE state IN ({marks}) ORDER BY id",
                [s.value for s in states],
            ).fetchall()
        return [_batch(r) for r in rows]

    def batch_members(self, batch_id: int) -> Iterator[tuple[str, str]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT custom_id, params_json FROM jobs WHERE batch_ref = ? ORDER BY id",
                (batch_id,),
            ).fetchall()
        for row in rows:
            yield row[0], row[1]

    def schedule_poll(self, batch_id: int, next_poll_at: datetime, interval: float) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE batches SET next_poll_at = ?, poll_interval = ? WHERE id = ?",
                (_ts(next_poll_at), interval, batch_id),
            )

    def request_cancel(self, batch_id: int, now: datetime | None = None) -> None:
        with self._tx() as db:
            db.execute(
                """UPDATE batches SET cancel_requested = 1,
                   cancel_requested_at = coalesce(cancel_requested_at, ?) WHERE id = ?""",
                (_ts(now), batch_id),
            )

    def batch_ended(self, batch_id: int, ended_at: datetime) -> None:
        with self._tx() as db:
            db.execute(
                """UPDATE batches SET state = 'ended', ended_at = ?
                   WHERE id = ? AND state = 'created'""",
                (_ts(ended_at), batch_id),
            )

    def apply_batch_outcomes(
        self, batch_id: int, outcomes: Sequence[Outcome], now: datetime
    ) -> int:
        for target in OUTCOME_STATE.values():
            transition(JobState.IN_BATCH, target)
        sets = ", ".join(f"{c} = ?" for c in USAGE_COLUMNS)
        no_usage = ", ".join(f"{c} = NULL" for c in USAGE_COLUMNS)
        stamp = _ts(now)
        with self._tx() as db:
            db.executemany(  # results live in their own table: appends, not row growth
                """INSERT OR REPLACE INTO results (job_id, result_json)
                   SELECT id, ? FROM jobs WHERE custom_id = ? AND state = 'in_batch'""",
                ((o.result_json, o.custom_id) for o in outcomes if o.kind == "succeeded"),
            )
            # Final outcomes leave batch_ref and custom_id alone: an UPDATE that does not set
            # an indexed column does not rewrite that index, and these are nearly every line.
            final = db.executemany(
                f"""UPDATE jobs SET state = ?, tier = ?, error = ?, updated_at = ?, {sets}
                    WHERE custom_id = ? AND state = 'in_batch'""",
                (_final_row(o, stamp) for o in outcomes if o.kind != "retry"),
            ).rowcount
            retried = db.executemany(
                f"""UPDATE jobs SET state = 'queued', tier = NULL, error = ?,
                    not_before = coalesce(?, not_before), updated_at = ?,
                    batch_ref = NULL, custom_id = NULL, {no_usage}
                    WHERE custom_id = ? AND state = 'in_batch'""",
                (
                    (o.error, _ts(o.not_before), stamp, o.custom_id)
                    for o in outcomes
                    if o.kind == "retry"
                ),
            ).rowcount
            return max(0, final) + max(0, retried)

    def batch_history(self, limit: int = 5000) -> list[tuple[str, int, datetime, datetime]]:
        with self._lock:
            rows = self._db.execute(
                """SELECT model, request_count, created_at, ended_at FROM batches
                   WHERE state IN ('ended', 'collected') AND cancel_requested = 0
                     AND created_at IS NOT NULL AND ended_at IS NOT NULL
                   ORDER BY id DESC LIMIT ?""",
                (limit,),
            ).fetchall()
        return [
            (r[0], r[1], datetime.fromisoformat(r[2]), datetime.fromisoformat(r[3])) for r in rows
        ]

    def cancel_history(self, limit: int = 1000) -> list[float]:
        with self._lock:
            rows = self._db.execute(
                """SELECT cancel_requested_at, ended_at FROM batches
                   WHERE cancel_requested_at IS NOT NULL AND ended_at IS NOT NULL
                   ORDER BY id DESC LIMIT ?""",
                (limit,),
            ).fetchall()
        return [_seconds_between(r[0], r[1]) for r in rows]

    def call_history(self, limit: int = 5000) -> list[tuple[str, int, float]]:
        with self._lock:
            rows = self._db.execute(
                """SELECT model, coalesce(output_tokens, 0), call_seconds FROM jobs
                   WHERE call_seconds IS NOT NULL ORDER BY id DESC LIMIT ?""",
                (limit,),
            ).fetchall()
        return [(r[0], int(r[1]), float(r[2])) for r in rows]

    def deadline_rows(self, run_id: str | None = None) -> list[DeadlineRow]:
        where = "AND jobs.run_id = ?" if run_id is not None else ""
        with self._lock:
            rows = self._db.execute(
                f"""SELECT jobs.deadline, jobs.call_started_at, jobs.call_seconds,
                          batches.ended_at, jobs.reasons LIKE '%deadline guard:%'
                   FROM jobs LEFT JOIN batches ON batches.id = jobs.batch_ref
                   WHERE jobs.deadline IS NOT NULL
                     AND jobs.state IN ('succeeded', 'failed', 'delivered') {where}""",
                (run_id,) if run_id is not None else (),
            ).fetchall()
        return [
            DeadlineRow(datetime.fromisoformat(r[0]), _finished(r[1], r[2], r[3]), bool(r[4]))
            for r in rows
        ]

    def batch_work(self, batch_id: int) -> tuple[datetime | None, int, int, int]:
        with self._lock:
            row = self._db.execute(
                """SELECT min(deadline), count(*), sum(length(params_json)) / 4,
                          sum(coalesce(json_extract(params_json, '$.max_tokens'), 0))
                   FROM jobs WHERE batch_ref = ? AND state IN ('in_batch', 'submitting')""",
                (batch_id,),
            ).fetchone()
        return _dt(row[0]), int(row[1] or 0), int(row[2] or 0), int(row[3] or 0)

    def record_rate_limits(self, model_class: str, limits: RateLimits, now: datetime) -> None:
        values = [_ts(v) if isinstance(v, datetime) else v for v in limit_values(limits)]
        with self._tx() as db:
            db.execute(
                f"""INSERT INTO rate_limits (model_class, {", ".join(LIMIT_COLUMNS)}, seen_at)
                    VALUES ({", ".join("?" * (len(LIMIT_COLUMNS) + 2))})
                    ON CONFLICT (model_class) DO UPDATE SET {KEEP_UNSTATED},
                        seen_at = excluded.seen_at""",
                (model_class, *values, _ts(now)),
            )

    def observed_limits(self) -> list[ObservedLimits]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT model_class, {', '.join(LIMIT_COLUMNS)}, seen_at FROM rate_limits"
                " ORDER BY model_class"
            ).fetchall()
        return [
            ObservedLimits(
                r[0],
                limits_of(
                    [
                        _dt(v) if c.endswith("_reset") else v
                        for c, v in zip(LIMIT_COLUMNS, r[1:-1], strict=True)
                    ]
                ),
                datetime.fromisoformat(r[-1]),
            )
            for r in rows
        ]

    def close_batch(
        self, batch_id: int, retry_at: datetime, now: datetime, max_attempts: int
    ) -> int:
        with self._tx() as db:
            requeued = _release_unanswered(
                db, batch_id, "missing from the batch results", retry_at, now, max_attempts
            )
            db.execute(
                "UPDATE batches SET state = 'collected' WHERE id = ? AND state = 'ended'",
                (batch_id,),
            )
            return requeued

    def lose_batch(
        self, batch_id: int, reason: str, retry_at: datetime, now: datetime, max_attempts: int
    ) -> int:
        with self._tx() as db:
            requeued = _release_unanswered(db, batch_id, reason, retry_at, now, max_attempts)
            db.execute(
                "UPDATE batches SET state = 'lost' WHERE id = ? AND state IN ('created', 'ended')",
                (batch_id,),
            )
            return requeued

    # fleet: one process owns a SQLite store (`claim`), so it holds every lease and claim
    fleet = False

    def join_fleet(self, worker: str, now: datetime, lease: float) -> bool:
        return True

    def heartbeat(self, worker: str, now: datetime, lease: float) -> bool:
        return True

    def leave_fleet(self, worker: str, now: datetime) -> None:
        pass

    def reap(self, now: datetime, restarted: str | None = None) -> tuple[int, int]:
        return (self.requeue_running(now) if restarted else 0), 0

    def claim_realtime(
        self, worker: str, now: datetime, limit: int, only: int | None = None
    ) -> list[Job]:
        return fleet_sql.claim_one_by_one(self, now, limit, only)

    def plan_lock(self) -> AbstractContextManager[bool]:
        return nullcontext(True)

    def own_batch(self, batch_id: int, worker: str) -> bool:
        return True

    def take_batches(self, worker: str, limit: int) -> set[int]:
        return {b.id for b in self.batches(*map(BatchState, fleet_sql.OPEN_BATCHES))}

    def claim_deliveries(self, worker: str, limit: int, run_id: str | None = None) -> list[Job]:
        return self.undelivered(limit, run_id)

    def deliver_claimed(self, job_ids: Sequence[int], worker: str, now: datetime) -> int:
        return fleet_sql.deliver_all(self, job_ids, now)

    def take_budget(
        self, model_class: str, sizes: fleet_sql.Sizes, wants: fleet_sql.Sizes, now: datetime
    ) -> float:
        return 0.0  # the worker's in-process pacer keeps the budget

    def adjust_budget(
        self, model_class: str, sizes: fleet_sql.Sizes, charges: fleet_sql.Sizes, now: datetime
    ) -> None:
        pass

    def lower_budget(
        self,
        model_class: str,
        sizes: fleet_sql.Sizes,
        levels: tuple[float | None, float | None, float | None],
        now: datetime,
    ) -> None:
        pass

    def pause_budget(self, model_class: str, until: datetime) -> None:
        pass


_INSERT_JOB = """INSERT INTO jobs (key, workload, params_json, model, route, reasons, deadline,
    awaited, state, not_before, run_id, created_at, updated_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT(key) DO UPDATE SET run_id = coalesce(excluded.run_id, run_id)"""


def _finished(
    call_started: str | None, call_seconds: float | None, batch_ended: str | None
) -> datetime | None:
    """When a job's result came: its real-time call's end, else its batch's `ended`."""
    started = _dt(call_started)
    if started is not None and call_seconds is not None:
        return started + timedelta(seconds=call_seconds)
    return _dt(batch_ended)


def _seconds_between(start: str, end: str) -> float:
    return max(0.0, (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds())


def _upsert_jobs(db: sqlite3.Connection, jobs: Sequence[NewJob], now: datetime) -> int:
    """Insert jobs in one statement; a key already present joins this run (its receipt counts
    it) and keeps the rest. Returns how many were new."""
    last = db.execute("SELECT coalesce(max(id), 0) FROM jobs").fetchone()[0]
    stamp = _ts(now)
    db.executemany(_INSERT_JOB, (_job_row(j, stamp) for j in jobs))
    return int(db.execute("SELECT count(*) FROM jobs WHERE id > ?", (last,)).fetchone()[0])


def _job_row(job: NewJob, stamp: str | None) -> tuple[object, ...]:
    """The INSERT parameters of a new job; `stamp` is the time it arrives, as stored."""
    return (
        job.key, job.workload, job.params_json, job.model, job.route.value, job.reasons,
        _ts(job.deadline), int(job.awaited), JobState.QUEUED.value, stamp, job.run_id,
        stamp, stamp,
    )  # fmt: skip


def _release_unanswered(
    db: sqlite3.Connection,
    batch_id: int,
    reason: str,
    retry_at: datetime,
    now: datetime,
    max_attempts: int,
) -> int:
    """Jobs a batch never answered: failed once their attempts are used up (each plan counted
    one), else back to the queue. Returns how many were re-queued."""
    transition(JobState.IN_BATCH, JobState.FAILED)
    db.execute(
        """UPDATE jobs SET state = 'failed', error = ?, updated_at = ?
           WHERE batch_ref = ? AND state = 'in_batch' AND attempts >= ?""",
        (gave_up(reason, max_attempts), _ts(now), batch_id, max_attempts),
    )
    transition(JobState.IN_BATCH, JobState.QUEUED)
    return db.execute(
        """UPDATE jobs SET state = 'queued', batch_ref = NULL, custom_id = NULL,
           not_before = ?, error = ?, updated_at = ? WHERE batch_ref = ? AND state = 'in_batch'""",
        (_ts(retry_at), reason, _ts(now), batch_id),
    ).rowcount


def _final_row(o: Outcome, stamp: str | None) -> tuple[object, ...]:
    """A succeeded or failed line's UPDATE parameters; `stamp` is now, as stored."""
    ok = o.kind == "succeeded"
    counts = (o.usage or Usage()).counts() if ok else (None,) * len(USAGE_COLUMNS)
    return (
        OUTCOME_STATE[o.kind].value, o.tier.value if ok and o.tier else None, o.error, stamp,
        *counts, o.custom_id,
    )  # fmt: skip


def _attempts(db: sqlite3.Connection, job_id: int) -> int:
    row = db.execute("SELECT attempts FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return int(row[0]) if row else 0


_ROUTES = {r.value: r for r in Route}
_STATES = {s.value: s for s in JobState}
_TIERS = {t.value: t for t in Tier}


def _job(row: sqlite3.Row) -> Job:
    """A `JOB_SELECT` row. Hot (every due job and every delivery), so by position: a Row's
    lookup by name compares the name with each column's in turn."""
    (id_, key, workload, params_json, model, route, reasons, deadline, awaited, state,
     attempts, not_before, batch_ref, custom_id, tier, *counts, error, run_id, created_at,
     result_json) = row  # fmt: skip
    return Job(
        id=id_,
        key=key,
        workload=workload,
        params_json=params_json,
        model=model,
        route=_ROUTES[route],
        reasons=reasons,
        deadline=_dt(deadline),
        awaited=bool(awaited),
        state=_STATES[state],
        attempts=attempts,
        not_before=_dt(not_before) or datetime.min,
        batch_ref=batch_ref,
        custom_id=custom_id,
        tier=_TIERS[tier] if tier is not None else None,
        usage=Usage(*(int(c or 0) for c in counts)) if tier is not None else None,
        result_json=result_json,
        error=error,
        run_id=run_id,
        created_at=_dt(created_at) or datetime.min,
    )


def _batch(row: sqlite3.Row) -> BatchRecord:
    return BatchRecord(
        id=row["id"],
        api_id=row["api_id"],
        state=BatchState(row["state"]),
        request_count=row["request_count"],
        body_bytes=row["body_bytes"],
        model=row["model"],
        planned_at=_dt(row["planned_at"]) or datetime.min,
        submit_started_at=_dt(row["submit_started_at"]),
        created_at=_dt(row["created_at"]),
        ended_at=_dt(row["ended_at"]),
        next_poll_at=_dt(row["next_poll_at"]),
        poll_interval=row["poll_interval"],
        cancel_requested=bool(row["cancel_requested"]),
        waiting_for=tuple(filter(None, (row["waiting_for"] or "").split(","))),
    )
