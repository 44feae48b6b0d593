"""One store core: every job and batch operation written once, over a thin `Dialect`.

The SQL here is the common subset SQLite (3.35+) and PostgreSQL speak: `?` placeholders (the
PostgreSQL dialect rewrites them), `INSERT … ON CONFLICT`, `UPDATE … FROM`, `RETURNING`.
What differs lives in a dialect (`nowait.store.sqlite`, `nowait.store.postgres`): the
connection and its transactions, how timestamps are stored, how a set of rows reaches the
server (`Tx.bulk`: a set-based statement over rows), the store lock (`claim`) and the
migrations. Job state checks derive from `nowait.types.TRANSITIONS`, batch state checks
from `BATCH_MOVES`: each guarded `WHERE state IN (…)` is generated from those tables, so the
state machine is written once.

The fleet's operations (many workers on one PostgreSQL store: leases, claims, the shared
budget) are methods here too: written once where both databases run them (`claim_realtime`),
else PostgreSQL's SQL in `nowait.store.fleet` (over the same `Tx`) and SQLite's trivial
version beside it, where one process owns the store and so holds every lease and claim.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from nowait.errors import IllegalTransition, StoreError
from nowait.ratelimits import RateLimits
from nowait.store import (
    KEEP_UNSTATED,
    LIMIT_COLUMNS,
    OUTCOME_STATE,
    BatchRecord,
    BatchState,
    DeadlineRow,
    Finished,
    Job,
    NewJob,
    NoSuchJob,
    ObservedLimits,
    Outcome,
    UsageRow,
    gave_up,
    limit_values,
    limits_of,
    new_namespace,
)
from nowait.store import fleet as fleet_sql
from nowait.types import TRANSITIONS, USAGE_FIELDS, JobState, Route, Tier, Usage, transition

PAGE = 1000
ROWS = "<<rows>>"
"""The FROM item of a set-based statement (`Tx.bulk`), always written `FROM <<rows>>` or
`FROM table, <<rows>>`; the statement names the rows' columns `alias.column`, nothing else
(SQLite binds those references per row; PostgreSQL joins a temporary table)."""
"""Rows per read when a result may be large (a batch's members, every job of a run)."""

Row = Sequence[Any]


@dataclass(frozen=True)
class Staged:
    """Rows for one set-based statement: `name` is the alias the SQL joins, `columns` its
    (name, kind) pairs, kind one of text, int, float, bool, time."""

    name: str
    columns: tuple[tuple[str, str], ...]
    rows: Iterable[Sequence[object]]
    """Read once per statement: a statement run twice over the same rows needs a sequence."""

    @property
    def table(self) -> str:
        """The temporary table holding them: one per alias and column list."""
        spec = ",".join(f"{c} {k}" for c, k in self.columns)
        return f"nowait_{self.name}_{zlib.crc32(spec.encode()):08x}"


class Tx(Protocol):
    """One open transaction."""

    def run(self, sql: str, args: Sequence[object] = ()) -> int:
        """Execute one statement; the number of rows it changed."""
        ...

    def rows(self, sql: str, args: Sequence[object] = ()) -> list[Row]: ...

    def bulk(self, sql: str, staged: Staged, args: Sequence[object] = ()) -> int:
        """Execute `sql` over the rows of `staged`, which it names `staged.name` in the FROM
        item `ROWS` stands for; `args` fill its other placeholders. The rows changed."""
        ...


class Dialect(Protocol):
    """What one database does its own way."""

    name: str  # "sqlite" or "postgresql"

    def tx(self) -> AbstractContextManager[Tx]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        ...

    def read(self, sql: str, args: Sequence[object] = ()) -> list[Row]:
        """One read statement in its own transaction."""
        ...

    def statements(self) -> AbstractContextManager[Tx]:
        """Statements each committed on its own as it runs (no BEGIN, no COMMIT): for a write
        that is one statement, so the rows it locks are never held across a round trip to
        this process (a hot row many workers update: the shared budget). Not for `bulk`."""
        ...

    def ts(self, moment: datetime | None) -> object:
        """A timestamp as the database stores it."""
        ...

    def dt(self, value: Any) -> datetime | None:
        """A stored timestamp back as a datetime."""
        ...

    def json_int(self, column: str, key: str) -> str:
        """SQL: the integer at `key` of the JSON text in `column`, 0 when absent or not one."""
        ...

    def claim(self) -> AbstractContextManager[None]: ...

    def migrate(self) -> None:
        """Bring the schema to the newest version; `StoreError` if a newer nowait wrote it."""
        ...

    def close(self) -> None: ...


# ---- the state tables, as SQL -----------------------------------------------------------------
def sources(target: JobState) -> tuple[JobState, ...]:
    """Every state `TRANSITIONS` lets a job leave for `target`."""
    return tuple(s for s in JobState if target in TRANSITIONS[s])


def in_states(states: Iterable[JobState | BatchState], column: str = "state") -> str:
    """`state IN ('a', 'b')`, or `state = 'a'` for one: literals (from the enums, never input),
    spelled as the partial indexes are, so that SQLite's planner matches them (it does not
    read `IN ('a')` as `= 'a'`)."""
    found = [repr(str(s.value)) for s in states]
    return f"{column} = {found[0]}" if len(found) == 1 else f"{column} IN ({', '.join(found)})"


def checked(moves: Iterable[JobState], target: JobState) -> str:
    """The guard of a move to `target` from `moves`, each checked against the table."""
    found = tuple(moves)
    for source in found:
        transition(source, target)
    return in_states(found)


BATCH_MOVES: dict[BatchState, frozenset[BatchState]] = {
    BatchState.PLANNED: frozenset({BatchState.CREATED, BatchState.ABANDONED}),
    BatchState.CREATED: frozenset({BatchState.ENDED, BatchState.LOST}),
    BatchState.ENDED: frozenset({BatchState.COLLECTED, BatchState.LOST}),
    BatchState.COLLECTED: frozenset(),
    BatchState.ABANDONED: frozenset(),
    BatchState.LOST: frozenset(),
}
"""A batch row's legal moves (its final states have none)."""


def batch_guard(target: BatchState) -> str:
    """`state IN (…)`: every batch state `BATCH_MOVES` lets a batch leave for `target`."""
    return in_states(s for s in BatchState if target in BATCH_MOVES[s])


# ---- rows --------------------------------------------------------------------------------------
JOB_COLUMNS = (
    "id", "key", "workload", "params_json", "model", "route", "reasons", "deadline", "awaited",
    "state", "attempts", "not_before", "batch_ref", "custom_id", "tier", *USAGE_FIELDS,
    "error", "run_id", "created_at",
)  # fmt: skip
JOB_SELECT = (
    "SELECT "
    + ", ".join(f"jobs.{c}" for c in JOB_COLUMNS)
    + ", results.result_json FROM jobs LEFT JOIN results ON results.job_id = jobs.id"
)
QUEUED_SELECT = f"SELECT {', '.join(f'jobs.{c}' for c in JOB_COLUMNS)}, NULL FROM jobs"
"""`JOB_SELECT` for queued jobs: only a succeeded job has a result, and it never queues again."""
BATCH_COLUMNS = (
    "id", "api_id", "state", "request_count", "body_bytes", "model", "planned_at",
    "submit_started_at", "created_at", "ended_at", "next_poll_at", "poll_interval",
    "cancel_requested", "waiting_for",
)  # fmt: skip
BATCH_SELECT = f"SELECT {', '.join(BATCH_COLUMNS)} FROM batches"
USAGE_SETS = ", ".join(f"{c} = u.{c}" for c in USAGE_FIELDS)
NO_USAGE = ", ".join(f"{c} = NULL" for c in USAGE_FIELDS)
DELIVERABLE = sources(JobState.DELIVERED)
FINISHED = (*DELIVERABLE, JobState.DELIVERED)

_ROUTES = {r.value: r for r in Route}
_STATES = {s.value: s for s in JobState}
_TIERS = {t.value: t for t in Tier}


class CoreStore:
    """`Store` over a `Dialect`; `SQLiteStore` and `PostgresStore` only make the dialect."""

    def __init__(self, dialect: Dialect) -> None:
        self.d = dialect
        try:
            dialect.migrate()
            with dialect.tx() as tx:
                tx.run(
                    """INSERT INTO nowait_meta (name, value) VALUES ('namespace', ?)
                       ON CONFLICT (name) DO NOTHING""",
                    (new_namespace(),),
                )
                [(namespace,)] = tx.rows("SELECT value FROM nowait_meta WHERE name = 'namespace'")
        except BaseException:
            dialect.close()
            raise
        self._namespace = str(namespace)
        self.fleet = dialect.name == "postgresql"
        """Whether several worker processes may work this store at once."""

    @property
    def namespace(self) -> str:
        return self._namespace

    def close(self) -> None:
        self.d.close()

    def claim(self) -> AbstractContextManager[None]:
        return self.d.claim()

    # ---- jobs -----------------------------------------------------------------------------------
    def add_job(self, job: NewJob, now: datetime) -> tuple[Job, bool]:
        with self.d.tx() as tx:
            new = self._add(tx, [job], now) == 1
            [row] = tx.rows(JOB_SELECT + " WHERE jobs.key = ?", (job.key,))
            return self._job(row), new

    def add_jobs(self, jobs: Sequence[NewJob], now: datetime) -> int:
        if not jobs:
            return 0
        with self.d.tx() as tx:
            return self._add(tx, jobs, now)

    def _add(self, tx: Tx, jobs: Sequence[NewJob], now: datetime) -> int:
        """Insert new keys in one statement; a key already present (or repeated) joins the
        latest run given, so that run's receipt counts it. Returns how many were new."""
        first: dict[str, NewJob] = {}
        run_of: dict[str, str | None] = {}
        for j in jobs:
            first.setdefault(j.key, j)
            run_of[j.key] = j.run_id if j.run_id is not None else run_of.get(j.key)
        ts = self.d.ts
        staged = Staged(
                "u",
                (("key", "text"), ("workload", "text"), ("params_json", "text"),
                 ("model", "text"), ("route", "text"), ("reasons", "text"), ("deadline", "time"),
                 ("awaited", "bool"), ("run_id", "text")),
                [
                    (j.key, j.workload, j.params_json, j.model, j.route.value, j.reasons,
                     ts(j.deadline), j.awaited, run_of[j.key])
                    for j in first.values()
                ],
        )  # fmt: skip
        stamp = ts(now)
        new = tx.bulk(
            f"""INSERT INTO jobs (key, workload, params_json, model, route, reasons, deadline,
                    awaited, state, not_before, run_id, created_at, updated_at)
                SELECT u.key, u.workload, u.params_json, u.model, u.route, u.reasons,
                    u.deadline, u.awaited, '{JobState.QUEUED.value}', ?, u.run_id, ?, ?
                FROM {ROWS} WHERE true
                ON CONFLICT (key) DO NOTHING""",
            staged,
            (stamp, stamp, stamp),
        )
        if new < len(first):  # keys seen before join this run
            tx.bulk(
                f"""UPDATE jobs SET run_id = u.run_id FROM {ROWS}
                    WHERE jobs.key = u.key AND u.run_id IS NOT NULL
                      AND (jobs.run_id IS NULL OR jobs.run_id <> u.run_id)""",
                staged,
            )
        return new

    def get_job(self, key: str) -> Job | None:
        rows = self.d.read(JOB_SELECT + " WHERE jobs.key = ?", (key,))
        return self._job(rows[0]) if rows else None

    def due_jobs(self, route: Route, now: datetime, limit: int) -> list[Job]:
        rows = self.d.read(
            QUEUED_SELECT
            + f""" WHERE {in_states([JobState.QUEUED], "jobs.state")} AND jobs.route = ?
                   AND jobs.not_before <= ?
               ORDER BY jobs.awaited DESC, jobs.deadline IS NULL, jobs.deadline, jobs.id
               LIMIT ?""",
            (route.value, self.d.ts(now), limit),
        )
        # A planning pass reads up to 100,000: each row is dropped once it is a Job (popped
        # from the end), and the texts most rows repeat are kept once.
        rows.reverse()
        same: dict[str, str] = {}
        jobs = []
        while rows:
            jobs.append(self._job(rows.pop(), same))
        return jobs

    def _move(
        self, tx: Tx, job_id: int, source: JobState, target: JobState, sets: str, *args: object
    ) -> bool:
        """One guarded move of one job; `sets` are further SET clauses, `args` their values."""
        done = tx.run(
            f"UPDATE jobs SET state = '{target.value}', {sets}"
            f" WHERE id = ? AND {checked([source], target)}",
            (*args, job_id),
        )
        return done > 0

    def start_realtime(self, job_id: int, now: datetime) -> bool:
        stamp = self.d.ts(now)
        with self.d.tx() as tx:
            return self._move(
                tx, job_id, JobState.QUEUED, JobState.RUNNING,
                "attempts = attempts + 1, updated_at = ?, call_started_at = ?", stamp, stamp,
            )  # fmt: skip

    def finish_realtime(self, job_id: int, outcome: Outcome, now: datetime) -> None:
        with self.d.tx() as tx:
            found = tx.rows("SELECT call_started_at FROM jobs WHERE id = ?", (job_id,))
            moved = self._apply(tx, job_id, JobState.RUNNING, outcome, now)
            started = self.d.dt(found[0][0]) if found else None
            if moved and outcome.kind == "succeeded" and started is not None:
                seconds = max(0.0, (now - started).total_seconds())
                tx.run("UPDATE jobs SET call_seconds = ? WHERE id = ?", (seconds, job_id))

    def _apply(
        self, tx: Tx, job_id: int, source: JobState, outcome: Outcome, now: datetime
    ) -> bool:
        """One outcome onto one job: the guarded state move first, then (only if it moved)
        its result row, so an outcome arriving twice never replaces a stored result."""
        stamp = self.d.ts(now)
        target = OUTCOME_STATE[outcome.kind]
        if outcome.kind == "succeeded":
            usage = outcome.usage or Usage()
            moved = self._move(
                tx, job_id, source, target,
                "tier = ?, error = NULL, updated_at = ?, "
                + ", ".join(f"{c} = ?" for c in USAGE_FIELDS),
                outcome.tier.value if outcome.tier else None, stamp, *usage.counts(),
            )  # fmt: skip
            if moved:
                tx.run(
                    """INSERT INTO results (job_id, result_json) VALUES (?, ?)
                       ON CONFLICT (job_id) DO UPDATE SET result_json = excluded.result_json""",
                    (job_id, outcome.result_json or "{}"),
                )
            return moved
        if outcome.kind == "failed":
            return self._move(
                tx, job_id, source, target, "error = ?, updated_at = ?", outcome.error, stamp
            )
        return self._move(
            tx, job_id, source, target,
            "error = ?, batch_ref = NULL, custom_id = NULL, not_before = ?, updated_at = ?",
            outcome.error, self.d.ts(outcome.not_before or now), stamp,
        )  # fmt: skip

    def release_realtime(self, job_id: int, now: datetime) -> None:
        with self.d.tx() as tx:
            self._move(
                tx, job_id, JobState.RUNNING, JobState.QUEUED,
                "attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, updated_at = ?",
                self.d.ts(now),
            )  # fmt: skip

    def requeue_running(self, now: datetime) -> int:
        guard = checked([JobState.RUNNING], JobState.QUEUED)
        with self.d.tx() as tx:
            return tx.run(
                f"UPDATE jobs SET state = '{JobState.QUEUED.value}', updated_at = ? WHERE {guard}",
                (self.d.ts(now),),
            )

    def reroute(self, job_ids: Sequence[int], route: Route, reason: str, now: datetime) -> int:
        """Only queued jobs move: a job's route is not a state, so no transition applies."""
        if not job_ids:
            return 0
        with self.d.tx() as tx:
            return tx.bulk(
                f"""UPDATE jobs SET route = ?, reasons = reasons || '; ' || ?, updated_at = ?
                    WHERE id IN (SELECT u.id FROM {ROWS})
                      AND {in_states([JobState.QUEUED])}""",
                Staged("u", (("id", "int"),), [(i,) for i in dict.fromkeys(job_ids)]),
                (route.value, reason, self.d.ts(now)),
            )

    def undelivered(self, limit: int, run_id: str | None = None) -> list[Job]:
        run = "" if run_id is None else " AND jobs.run_id = ?"
        rows = self.d.read(
            JOB_SELECT
            + f" WHERE {in_states(DELIVERABLE, 'jobs.state')}{run} ORDER BY jobs.id LIMIT ?",
            (limit,) if run_id is None else (run_id, limit),
        )
        return [self._job(r) for r in rows]

    def undelivered_results(self, limit: int, run_id: str | None = None) -> list[Finished]:
        rows = self.d.read(*_undelivered(limit, run_id))
        return [self._finished_row(r) for r in rows]

    def undelivered_count(self, run_id: str | None = None) -> int:
        run = "" if run_id is None else " AND run_id = ?"
        [(count,)] = self.d.read(
            f"SELECT count(*) FROM jobs WHERE {in_states(DELIVERABLE)}{run}",
            () if run_id is None else (run_id,),
        )
        return int(count)

    def mark_delivered(self, job_id: int, now: datetime) -> None:
        with self.d.tx() as tx:
            done = tx.run(
                f"""UPDATE jobs SET state = '{JobState.DELIVERED.value}', updated_at = ?
                    WHERE id = ? AND {checked(DELIVERABLE, JobState.DELIVERED)}""",
                (self.d.ts(now), job_id),
            )
            if done:
                return
            found = tx.rows("SELECT state FROM jobs WHERE id = ?", (job_id,))
        if not found:
            raise NoSuchJob(f"no job {job_id} to deliver")
        transition(_STATES[found[0][0]], JobState.DELIVERED)  # raises: the state forbids it

    def mark_delivered_many(self, job_ids: Sequence[int], now: datetime) -> None:
        if not job_ids:
            return
        with self.d.tx() as tx:
            self._mark_delivered(tx, job_ids, now)

    def _mark_delivered(self, tx: Tx, job_ids: Sequence[int], now: datetime) -> None:
        done = tx.bulk(
            f"""UPDATE jobs SET state = '{JobState.DELIVERED.value}', updated_at = ?
                FROM {ROWS} WHERE jobs.id = u.id
                  AND jobs.{checked(DELIVERABLE, JobState.DELIVERED)}""",
            Staged("u", (("id", "int"),), [(i,) for i in dict.fromkeys(job_ids)]),
            (self.d.ts(now),),
        )
        if done != len(job_ids):
            raise IllegalTransition("only succeeded or failed jobs can be delivered, once")

    def jobs(self, *, run_id: str | None = None, state: JobState | None = None) -> Iterator[Job]:
        sql, args = JOB_SELECT + " WHERE jobs.id > ?", list[object]()
        if run_id is not None:
            sql, args = sql + " AND jobs.run_id = ?", [*args, run_id]
        if state is not None:
            sql = sql + f" AND {in_states([state], 'jobs.state')}"
        sql += " ORDER BY jobs.id LIMIT ?"
        last = 0
        while True:  # pages, so a million jobs never sit in memory at once
            page = [self._job(r) for r in self.d.read(sql, (last, *args, PAGE))]
            if not page:
                return
            yield from page
            last = page[-1].id

    def job_counts(self, run_id: str | None = None) -> dict[JobState, int]:
        where = "WHERE run_id = ?" if run_id is not None else ""
        rows = self.d.read(
            f"SELECT state, count(*) FROM jobs {where} GROUP BY state",
            (run_id,) if run_id is not None else (),
        )
        return {_STATES[state]: int(count) for state, count in rows}

    def usage_rows(self, run_id: str | None = None) -> list[UsageRow]:
        where = "AND run_id = ?" if run_id is not None else ""
        sums = ", ".join(f"sum({c})" for c in USAGE_FIELDS)
        rows = self.d.read(
            f"""SELECT workload, model, tier, {sums}, count(*) FROM jobs
                WHERE tier IS NOT NULL {where} GROUP BY workload, model, tier""",
            (run_id,) if run_id is not None else (),
        )
        found = [
            UsageRow(r[0], r[1], _TIERS[r[2]], Usage(*(int(v or 0) for v in r[3:8])), int(r[8]))
            for r in rows
        ]
        # sorted here, not in SQL: the two databases order NULLs and text differently
        return sorted(
            found, key=lambda u: (u.workload is not None, u.workload or "", u.model, u.tier)
        )

    # ---- batches --------------------------------------------------------------------------------
    def plan_batch(
        self, members: Sequence[tuple[int, str]], body_bytes: int, model: str, now: datetime
    ) -> BatchRecord:
        stamp = self.d.ts(now)
        guard = checked([JobState.QUEUED], JobState.SUBMITTING)
        with self.d.tx() as tx:
            [row] = tx.rows(
                f"""INSERT INTO batches (state, request_count, body_bytes, model, planned_at)
                    VALUES ('{BatchState.PLANNED.value}', ?, ?, ?, ?)
                    RETURNING {", ".join(BATCH_COLUMNS)}""",
                (len(members), body_bytes, model, stamp),
            )
            moved = tx.bulk(
                f"""UPDATE jobs SET state = '{JobState.SUBMITTING.value}', batch_ref = ?,
                    custom_id = m.custom_id, attempts = attempts + 1, updated_at = ?
                    FROM {ROWS} WHERE jobs.id = m.id AND jobs.{guard}""",
                Staged("m", (("id", "int"), ("custom_id", "text")), members),
                (row[0], stamp),
            )
            if moved != len(members):
                raise StoreError("a planned job is no longer queued; batch plan rolled back")
            return self._batch(row)

    def submit_started(self, batch_id: int, now: datetime) -> None:
        with self.d.tx() as tx:
            done = tx.run(
                f"""UPDATE batches SET submit_started_at = ?
                    WHERE id = ? AND {in_states([BatchState.PLANNED])}""",
                (self.d.ts(now), batch_id),
            )
            if not done:
                raise StoreError(f"batch {batch_id} is not planned; not sending it")

    def batch_created(
        self, batch_id: int, api_id: str, created_at: datetime, next_poll_at: datetime
    ) -> None:
        with self.d.tx() as tx:
            done = tx.run(
                f"""UPDATE batches SET state = '{BatchState.CREATED.value}', api_id = ?,
                    created_at = ?, next_poll_at = ?, waiting_for = NULL
                    WHERE id = ? AND {batch_guard(BatchState.CREATED)}""",
                (api_id, self.d.ts(created_at), self.d.ts(next_poll_at), batch_id),
            )
            if not done:  # e.g. another process abandoned the plan: its jobs are elsewhere
                raise StoreError(f"batch {batch_id} is no longer planned; {api_id} not recorded")
            tx.run(
                f"""UPDATE jobs SET state = '{JobState.IN_BATCH.value}'
                    WHERE batch_ref = ? AND {checked([JobState.SUBMITTING], JobState.IN_BATCH)}""",
                (batch_id,),
            )

    def wait_for(self, batch_id: int, api_ids: Sequence[str]) -> None:
        with self.d.tx() as tx:
            tx.run(
                f"""UPDATE batches SET waiting_for = ?
                    WHERE id = ? AND {in_states([BatchState.PLANNED])}""",
                (",".join(api_ids) or None, batch_id),
            )

    def abandon_batch(self, batch_id: int, now: datetime) -> int:
        with self.d.tx() as tx:
            tx.run(
                f"""UPDATE batches SET state = '{BatchState.ABANDONED.value}', waiting_for = NULL
                    WHERE id = ? AND {batch_guard(BatchState.ABANDONED)}""",
                (batch_id,),
            )
            return tx.run(
                f"""UPDATE jobs SET state = '{JobState.QUEUED.value}', batch_ref = NULL,
                    custom_id = NULL, updated_at = ?
                    WHERE batch_ref = ? AND {checked([JobState.SUBMITTING], JobState.QUEUED)}""",
                (self.d.ts(now), batch_id),
            )

    def batches(self, *states: BatchState) -> list[BatchRecord]:
        if not states:
            return []
        rows = self.d.read(f"{BATCH_SELECT} WHERE {in_states(states)} ORDER BY id")
        return [self._batch(r) for r in rows]

    def batch_members(self, batch_id: int) -> Iterator[tuple[str, str]]:
        last = 0
        while True:  # pages by id: a batch of 100,000 requests never sits in memory at once
            rows = self.d.read(
                """SELECT id, custom_id, params_json FROM jobs
                   WHERE batch_ref = ? AND id > ? ORDER BY id LIMIT ?""",
                (batch_id, last, PAGE),
            )
            for row in rows:
                yield row[1], row[2]
            if len(rows) < PAGE:
                return
            last = rows[-1][0]

    def batch_custom_ids(self, batch_id: int) -> Iterator[str]:
        last = 0
        while True:  # pages by id, as batch_members, without the params
            rows = self.d.read(
                """SELECT id, custom_id FROM jobs
                   WHERE batch_ref = ? AND id > ? ORDER BY id LIMIT ?""",
                (batch_id, last, PAGE),
            )
            for row in rows:
                yield row[1]
            if len(rows) < PAGE:
                return
            last = rows[-1][0]

    def schedule_poll(self, batch_id: int, next_poll_at: datetime, interval: float) -> None:
        with self.d.tx() as tx:
            tx.run(
                "UPDATE batches SET next_poll_at = ?, poll_interval = ? WHERE id = ?",
                (self.d.ts(next_poll_at), interval, batch_id),
            )

    def request_cancel(self, batch_id: int, now: datetime | None = None) -> None:
        with self.d.tx() as tx:
            tx.run(
                """UPDATE batches SET cancel_requested = ?,
                   cancel_requested_at = coalesce(cancel_requested_at, ?) WHERE id = ?""",
                (True, self.d.ts(now), batch_id),
            )

    def batch_ended(self, batch_id: int, ended_at: datetime) -> None:
        with self.d.tx() as tx:
            tx.run(
                f"""UPDATE batches SET state = '{BatchState.ENDED.value}', ended_at = ?
                    WHERE id = ? AND {in_states([BatchState.CREATED])}""",
                (self.d.ts(ended_at), batch_id),
            )

    def apply_batch_outcomes(
        self,
        batch_id: int,
        outcomes: Sequence[Outcome],
        now: datetime,
        *,
        deliver: Callable[[Sequence[Finished]], None] | None = None,
        run_id: str | None = None,
    ) -> int:
        """Set-based: one statement stores the results and one moves the jobs, both joined
        by custom_id to jobs still in a batch (by id and custom_id when every line names its
        job: a primary key lookup, not an index's)."""
        lines = _first_lines(outcomes)
        if not lines:
            return 0
        by_id = all(o.job_id is not None for o in lines)

        def matches(alias: str) -> str:
            same = f"jobs.custom_id = {alias}.custom_id"
            return f"jobs.id = {alias}.job_id AND {same}" if by_id else same

        in_batch = in_states([JobState.IN_BATCH], "jobs.state")
        for target in OUTCOME_STATE.values():
            transition(JobState.IN_BATCH, target)
        ts = self.d.ts
        with self.d.tx() as tx:
            if any(
                o.kind == "succeeded" for o in lines
            ):  # results first: once the jobs move, the join no longer finds them
                tx.bulk(
                    f"""INSERT INTO results (job_id, result_json)
                        SELECT jobs.id, r.result_json FROM jobs, {ROWS}
                        WHERE {matches("r")} AND {in_batch}
                        ON CONFLICT (job_id) DO UPDATE SET result_json = excluded.result_json""",
                    Staged(
                        "r",
                        (("job_id", "int"), ("custom_id", "text"), ("result_json", "text")),
                        (
                            (o.job_id, o.custom_id, o.result_json or "{}")
                            for o in lines
                            if o.kind == "succeeded"
                        ),
                    ),
                )
            final = any(o.kind != "retry" for o in lines)
            retried = any(o.kind == "retry" for o in lines)
            moved = 0
            if final:
                staged = Staged(
                    "u",
                    (("job_id", "int"), ("custom_id", "text"), ("state", "text"), ("tier", "text"),
                     ("error", "text"), *((c, "int") for c in USAGE_FIELDS)),
                    (_final_row(o) for o in lines if o.kind != "retry"),
                )  # fmt: skip
                # Final outcomes leave batch_ref and custom_id alone: an UPDATE that does not
                # set an indexed column does not rewrite that index, and these are most lines.
                moved += tx.bulk(
                    f"""UPDATE jobs SET state = u.state, tier = u.tier, error = u.error,
                        updated_at = ?, {USAGE_SETS}
                        FROM {ROWS} WHERE {matches("u")} AND {in_batch}""",
                    staged,
                    (ts(now),),
                )
            if retried:
                staged = Staged(
                    "q",
                    (
                        ("job_id", "int"),
                        ("custom_id", "text"),
                        ("error", "text"),
                        ("not_before", "time"),
                    ),
                    (
                        (o.job_id, o.custom_id, o.error, ts(o.not_before))
                        for o in lines
                        if o.kind == "retry"
                    ),
                )
                moved += tx.bulk(
                    f"""UPDATE jobs SET state = '{JobState.QUEUED.value}', tier = NULL,
                        error = q.error, not_before = coalesce(q.not_before, jobs.not_before),
                        updated_at = ?, batch_ref = NULL, custom_id = NULL, {NO_USAGE}
                        FROM {ROWS} WHERE {matches("q")} AND {in_batch}""",
                    staged,
                    (ts(now),),
                )
            if deliver is not None:
                self._deliver_open(tx, deliver, run_id, now)
            return moved

    def _deliver_open(
        self,
        tx: Tx,
        deliver: Callable[[Sequence[Finished]], None],
        run_id: str | None,
        now: datetime,
    ) -> None:
        """Every finished result (of `run_id`) to `deliver`, page by page, each page marked
        delivered once `deliver` returns, all in the open transaction: a job's row is written
        once for its result and its delivery, not once for each."""
        while rows := tx.rows(*_undelivered(PAGE, run_id)):
            finished = [self._finished_row(r) for r in rows]
            deliver(finished)
            self._mark_delivered(tx, [f.id for f in finished], now)

    def batch_history(self, limit: int = 5000) -> list[tuple[str, int, datetime, datetime]]:
        ran = in_states([BatchState.ENDED, BatchState.COLLECTED])
        rows = self.d.read(
            f"""SELECT model, request_count, created_at, ended_at FROM batches
                WHERE {ran} AND cancel_requested = ?
                  AND created_at IS NOT NULL AND ended_at IS NOT NULL
                ORDER BY id DESC LIMIT ?""",
            (False, limit),
        )
        return [(r[0], int(r[1]), self._when(r[2]), self._when(r[3])) for r in rows]

    def cached_prefixes(self, since: datetime) -> list[tuple[str, int, datetime]]:
        rows = self.d.read(
            """SELECT j.params_json, j.cache_read_tokens + j.cache_write_1h_tokens, b.ended_at
               FROM batches b JOIN jobs j ON j.batch_ref = b.id
               WHERE b.ended_at >= ? AND j.tier = 'batch'
                 AND (j.cache_write_1h_tokens > 0 OR j.cache_read_tokens > 0)""",
            (self.d.ts(since),),
        )
        return [(r[0], int(r[1]), self._when(r[2])) for r in rows]

    def cancel_history(self, limit: int = 1000) -> list[float]:
        rows = self.d.read(
            """SELECT cancel_requested_at, ended_at FROM batches
               WHERE cancel_requested_at IS NOT NULL AND ended_at IS NOT NULL
               ORDER BY id DESC LIMIT ?""",
            (limit,),
        )
        return [max(0.0, (self._when(r[1]) - self._when(r[0])).total_seconds()) for r in rows]

    def call_history(self, limit: int = 5000) -> list[tuple[str, int, float]]:
        rows = self.d.read(
            """SELECT model, coalesce(output_tokens, 0), call_seconds FROM jobs
               WHERE call_seconds IS NOT NULL ORDER BY id DESC LIMIT ?""",
            (limit,),
        )
        return [(r[0], int(r[1]), float(r[2])) for r in rows]

    def deadline_rows(self, run_id: str | None = None) -> list[DeadlineRow]:
        where = "AND jobs.run_id = ?" if run_id is not None else ""
        rows = self.d.read(
            f"""SELECT jobs.deadline, jobs.call_started_at, jobs.call_seconds,
                      batches.ended_at, jobs.reasons
               FROM jobs LEFT JOIN batches ON batches.id = jobs.batch_ref
               WHERE jobs.deadline IS NOT NULL AND {in_states(FINISHED, "jobs.state")} {where}""",
            (run_id,) if run_id is not None else (),
        )
        return [
            DeadlineRow(
                self._when(r[0]), self._finished(r[1], r[2], r[3]), "deadline guard:" in r[4]
            )
            for r in rows
        ]

    def _finished(self, started: Any, seconds: float | None, batch_ended: Any) -> datetime | None:
        """When a job's result came: its real-time call's end, else its batch's `ended`."""
        call = self.d.dt(started)
        if call is not None and seconds is not None:
            return call + timedelta(seconds=seconds)
        return self.d.dt(batch_ended)

    def batch_work(self, batch_id: int) -> tuple[datetime | None, int, int, int]:
        waiting = in_states([JobState.IN_BATCH, JobState.SUBMITTING])
        [row] = self.d.read(
            f"""SELECT min(deadline), count(*), sum(length(params_json)) / 4,
                      sum({self.d.json_int("params_json", "max_tokens")})
               FROM jobs WHERE batch_ref = ? AND {waiting}""",
            (batch_id,),
        )
        return self.d.dt(row[0]), int(row[1] or 0), int(row[2] or 0), int(row[3] or 0)

    # ---- rate limits ----------------------------------------------------------------------------
    def record_rate_limits(self, model_class: str, limits: RateLimits, now: datetime) -> None:
        values = [self.d.ts(v) if isinstance(v, datetime) else v for v in limit_values(limits)]
        with self.d.statements() as tx:
            tx.run(
                f"""INSERT INTO rate_limits (model_class, {", ".join(LIMIT_COLUMNS)}, seen_at)
                    VALUES ({", ".join("?" * (len(LIMIT_COLUMNS) + 2))})
                    ON CONFLICT (model_class) DO UPDATE SET {KEEP_UNSTATED},
                        seen_at = excluded.seen_at""",
                (model_class, *values, self.d.ts(now)),
            )

    def observed_limits(self) -> list[ObservedLimits]:
        rows = self.d.read(
            f"SELECT model_class, {', '.join(LIMIT_COLUMNS)}, seen_at FROM rate_limits"
            " ORDER BY model_class"
        )
        return [
            ObservedLimits(
                r[0],
                limits_of(
                    [
                        self.d.dt(v) if c.endswith("_reset") else v
                        for c, v in zip(LIMIT_COLUMNS, r[1:-1], strict=True)
                    ]
                ),
                self._when(r[-1]),
            )
            for r in rows
        ]

    def close_batch(
        self, batch_id: int, retry_at: datetime, now: datetime, max_attempts: int
    ) -> int:
        with self.d.tx() as tx:
            requeued = self._release_unanswered(
                tx, batch_id, "missing from the batch results", retry_at, now, max_attempts
            )
            tx.run(
                f"""UPDATE batches SET state = '{BatchState.COLLECTED.value}'
                    WHERE id = ? AND {in_states([BatchState.ENDED])}""",
                (batch_id,),
            )
            return requeued

    def lose_batch(
        self, batch_id: int, reason: str, retry_at: datetime, now: datetime, max_attempts: int
    ) -> int:
        with self.d.tx() as tx:
            requeued = self._release_unanswered(tx, batch_id, reason, retry_at, now, max_attempts)
            tx.run(
                f"""UPDATE batches SET state = '{BatchState.LOST.value}'
                    WHERE id = ? AND {batch_guard(BatchState.LOST)}""",
                (batch_id,),
            )
            return requeued

    def _release_unanswered(
        self, tx: Tx, batch_id: int, reason: str, retry_at: datetime, now: datetime,
        max_attempts: int,
    ) -> int:  # fmt: skip
        """Jobs a batch never answered: failed once their attempts are used up (each plan
        counted one), else back to the queue. Returns how many were re-queued."""
        stamp = self.d.ts(now)
        tx.run(
            f"""UPDATE jobs SET state = '{JobState.FAILED.value}', error = ?, updated_at = ?
                WHERE batch_ref = ? AND {checked([JobState.IN_BATCH], JobState.FAILED)}
                  AND attempts >= ?""",
            (gave_up(reason, max_attempts), stamp, batch_id, max_attempts),
        )
        return tx.run(
            f"""UPDATE jobs SET state = '{JobState.QUEUED.value}', batch_ref = NULL,
                custom_id = NULL, not_before = ?, error = ?, updated_at = ?
                WHERE batch_ref = ? AND {checked([JobState.IN_BATCH], JobState.QUEUED)}""",
            (self.d.ts(retry_at), reason, stamp, batch_id),
        )

    # ---- the fleet: many workers on one store (PostgreSQL) ---------------------------------------
    def join_fleet(self, worker: str, now: datetime, lease: float) -> bool:
        if not self.fleet:
            return True
        with self.d.tx() as tx:
            return fleet_sql.join(tx, worker, now, lease, self._namespace)

    def heartbeat(self, worker: str, now: datetime, lease: float) -> bool:
        if not self.fleet:
            return True
        with self.d.tx() as tx:
            return fleet_sql.heartbeat(tx, worker, now, lease)

    def leave_fleet(self, worker: str, now: datetime) -> None:
        if self.fleet:
            with self.d.tx() as tx:
                fleet_sql.leave(tx, worker, now)

    def reap(self, now: datetime, restarted: str | None = None) -> tuple[int, int]:
        if not self.fleet:  # one process: every running call was its own
            return (self.requeue_running(now) if restarted else 0), 0
        with self.d.tx() as tx:
            return fleet_sql.reap(tx, now, restarted)

    def claim_realtime(
        self, worker: str, now: datetime, limit: int, only: int | None = None
    ) -> list[Job]:
        """One statement on both databases; PostgreSQL skips the rows another worker is
        claiming rather than waiting for them (SQLite has one writer at a time)."""
        which = "not_before <= ?" if only is None else "id = ?"
        skip = " FOR UPDATE SKIP LOCKED" if self.fleet else ""
        stamp = self.d.ts(now)
        with self.d.statements() as tx:
            rows = tx.rows(
                f"""WITH picked AS (
                       SELECT id FROM jobs
                       WHERE {in_states([JobState.QUEUED])} AND route = ? AND {which}
                       ORDER BY awaited DESC, deadline IS NULL, deadline, id LIMIT ?{skip})
                    UPDATE jobs SET state = '{JobState.RUNNING.value}', owner = ?,
                        attempts = attempts + 1, updated_at = ?, call_started_at = ?
                    WHERE id IN (SELECT id FROM picked)
                      AND {checked([JobState.QUEUED], JobState.RUNNING)}
                    RETURNING {", ".join(JOB_COLUMNS)}, NULL""",  # a queued job has no result
                (Route.REALTIME.value, stamp if only is None else only, limit, worker, stamp,
                 stamp),
            )  # fmt: skip
        jobs = [self._job(r) for r in rows]
        jobs.sort(key=lambda j: (not j.awaited, j.deadline is None, j.deadline or now, j.id))
        return jobs

    def plan_lock(self) -> AbstractContextManager[bool]:
        return fleet_sql.plan_lock(self.d, self._namespace) if self.fleet else nullcontext(True)

    def own_batch(self, batch_id: int, worker: str) -> bool:
        if not self.fleet:
            return True
        with self.d.tx() as tx:
            return fleet_sql.own_batch(tx, batch_id, worker)

    def take_batches(self, worker: str, limit: int) -> set[int]:
        if not self.fleet:
            return {b.id for b in self.batches(*map(BatchState, fleet_sql.OPEN_BATCHES))}
        with self.d.tx() as tx:
            return fleet_sql.take_batches(tx, worker, limit)

    def claim_deliveries(self, worker: str, limit: int, run_id: str | None = None) -> list[Job]:
        if not self.fleet:
            return self.undelivered(limit, run_id)
        with self.d.tx() as tx:
            rows = fleet_sql.claim_deliveries(tx, worker, limit, run_id, JOB_SELECT)
        return [self._job(r) for r in rows]

    def start_delivery(
        self,
        job_ids: Sequence[int],
        worker: str,
        margin: float,
        now: datetime,
        *,
        in_doubt: bool = True,
    ) -> bool:
        if not self.fleet:  # one process: nobody reaps its claims
            return True
        with self.d.tx() as tx:
            return fleet_sql.start_delivery(tx, job_ids, worker, margin, now, in_doubt)

    def forget_worker(self, worker: str, now: datetime) -> list[str] | None:
        if not self.fleet:
            return []
        with self.d.tx() as tx:
            return fleet_sql.forget(tx, worker, now)

    def in_doubt(self) -> list[tuple[str, int, datetime]]:
        if not self.fleet:
            return []
        with self.d.tx() as tx:
            return fleet_sql.in_doubt(tx)

    def deliver_claimed(self, job_ids: Sequence[int], worker: str, now: datetime) -> int:
        if not self.fleet:
            self.mark_delivered_many(job_ids, now)
            return len(job_ids)
        with self.d.tx() as tx:
            return fleet_sql.delivered(tx, job_ids, worker, now)

    def take_budget(
        self, model_class: str, sizes: fleet_sql.Sizes, wants: fleet_sql.Sizes, now: datetime
    ) -> float:
        if not self.fleet:
            return 0.0  # the worker's in-process pacer keeps the budget
        with self.d.statements() as tx:
            return fleet_sql.take_budget(tx, model_class, sizes, wants, now)

    def adjust_budget(
        self, model_class: str, sizes: fleet_sql.Sizes, charges: fleet_sql.Sizes, now: datetime
    ) -> None:
        if self.fleet:
            with self.d.statements() as tx:
                fleet_sql.adjust_budget(tx, model_class, sizes, charges, now)

    def lower_budget(
        self,
        model_class: str,
        sizes: fleet_sql.Sizes,
        levels: tuple[float | None, float | None, float | None],
        now: datetime,
    ) -> None:
        if self.fleet:
            with self.d.statements() as tx:
                fleet_sql.lower_budget(tx, model_class, sizes, levels, now)

    def pause_budget(self, model_class: str, until: datetime) -> None:
        if self.fleet:
            with self.d.statements() as tx:
                fleet_sql.pause_budget(tx, model_class, until)

    # ---- rows back to objects -------------------------------------------------------------------
    def _when(self, value: Any) -> datetime:
        return self.d.dt(value) or datetime.min

    def _job(self, row: Row, same: dict[str, str] | None = None) -> Job:
        """A `JOB_SELECT` row. Hot (every due job and every delivery), so by position. `same`:
        one copy of each model, reasons, workload and run_id text across the rows read."""
        (id_, key, workload, params_json, model, route, reasons, deadline, awaited, state,
         attempts, not_before, batch_ref, custom_id, tier, *counts, error, run_id, created_at,
         result_json) = row  # fmt: skip
        if same is not None:
            model, reasons = same.setdefault(model, model), same.setdefault(reasons, reasons)
            workload = workload and same.setdefault(workload, workload)
            run_id = run_id and same.setdefault(run_id, run_id)
        dt = self.d.dt
        return Job(  # by position too: keywords cost a dict per job
            id_, key, workload, params_json, model, _ROUTES[route], reasons, dt(deadline),
            bool(awaited), _STATES[state], attempts, dt(not_before) or datetime.min, batch_ref,
            custom_id, _TIERS[tier] if tier is not None else None,
            Usage(*[c or 0 for c in counts]) if tier is not None else None, result_json, error,
            run_id, dt(created_at) or datetime.min,
        )  # fmt: skip

    def _finished_row(self, row: Row) -> Finished:
        """An `undelivered_results` row, by position (hot: every delivery)."""
        id_, key, workload, route, awaited, deadline, tier, result_json, error, created_at = row
        return Finished(
            id_, key, workload, _ROUTES[route], bool(awaited), self.d.dt(deadline),
            _TIERS[tier] if tier is not None else None, result_json, error,
            self.d.dt(created_at) or datetime.min,
        )  # fmt: skip

    def _batch(self, row: Row) -> BatchRecord:
        (id_, api_id, state, request_count, body_bytes, model, planned_at, submit_started_at,
         created_at, ended_at, next_poll_at, poll_interval, cancel_requested,
         waiting_for) = row  # fmt: skip
        dt = self.d.dt
        return BatchRecord(
            id=id_,
            api_id=api_id,
            state=BatchState(state),
            request_count=request_count,
            body_bytes=body_bytes,
            model=model,
            planned_at=dt(planned_at) or datetime.min,
            submit_started_at=dt(submit_started_at),
            created_at=dt(created_at),
            ended_at=dt(ended_at),
            next_poll_at=dt(next_poll_at),
            poll_interval=float(poll_interval),
            cancel_requested=bool(cancel_requested),
            waiting_for=tuple(filter(None, (waiting_for or "").split(","))),
        )


def _undelivered(limit: int, run_id: str | None) -> tuple[str, tuple[object, ...]]:
    """The query of `undelivered_results`, with its arguments: the delivery columns only."""
    run = "" if run_id is None else " AND jobs.run_id = ?"
    sql = f"""SELECT jobs.id, jobs.key, jobs.workload, jobs.route, jobs.awaited, jobs.deadline,
                     jobs.tier, results.result_json, jobs.error, jobs.created_at
              FROM jobs LEFT JOIN results ON results.job_id = jobs.id
              WHERE {in_states(DELIVERABLE, "jobs.state")}{run} ORDER BY jobs.id LIMIT ?"""
    return sql, (limit,) if run_id is None else (run_id, limit)


def _first_lines(outcomes: Sequence[Outcome]) -> Sequence[Outcome]:
    """The lines, each custom_id once (its first line wins): the API never repeats one, so
    this copies only when a stray file did."""
    if len({o.custom_id for o in outcomes}) == len(outcomes):
        return outcomes
    return list({o.custom_id: o for o in reversed(outcomes)}.values())


def _final_row(o: Outcome) -> tuple[object, ...]:
    """A succeeded or failed line as staged: job_id, custom_id, state, tier, error, usage
    counts."""
    ok = o.kind == "succeeded"
    counts = (o.usage or Usage()).counts() if ok else (None,) * len(USAGE_FIELDS)
    return (
        o.job_id, o.custom_id, OUTCOME_STATE[o.kind].value,
        o.tier.value if ok and o.tier else None, o.error, *counts,
    )  # fmt: skip
