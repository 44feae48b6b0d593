"""Many workers on one PostgreSQL store: leases, claims, the planning lock, the shared budget.

Every worker registers in `workers` and holds a session advisory lock of its own while it
lives: a worker whose lock is free is dead (killed: the server drops a session's locks when
its connection ends), and so is one whose lease (`lease_until`, renewed by a heartbeat) has
expired (a hung process, or a host cut off while its connection lingers). What a
worker holds carries its id: the real-time jobs it runs (`jobs.owner`, claimed with
`FOR UPDATE SKIP LOCKED`, so two workers never take one job; meaningful while `running`), the
batches it submits, polls and collects (`batches.owner`, one at a time), and the finished
results it is delivering (`jobs.deliverer`). Any other
worker reaps a dead one (`reap`):
its running jobs go back to the queue (the move `transition` allows), its batches and
deliveries lose their owner and are taken by whoever asks next. Packing runs under a session
advisory lock (`plan_lock`), so two workers never plan one job into two batches.

The real-time budget (`rate_budget`) holds three token buckets per model class, shared by
the whole fleet: a call's reservation is one `UPDATE … RETURNING` that refills the buckets
to `now` and takes its share only when all three have room.

Functions here take a psycopg cursor (dict rows) and run inside the caller's transaction;
`PostgresStore` delegates to them. SQLite keeps one process per store, so it needs none of it.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from nowait.types import JobState, transition

if TYPE_CHECKING:
    import psycopg

    from nowait.store import Job, Store

Row = dict[str, Any]

PLAN_LOCK = 0x6E6F7770  # "nowp": advisory lock class of the planning lock
WORKER_LOCK = 0x6E6F7777  # "noww": advisory lock class of a live worker

POSTGRES_MIGRATION = """
    CREATE TABLE workers (
        id text PRIMARY KEY,
        lock_key bigint NOT NULL,
        started_at timestamptz NOT NULL,
        heartbeat_at timestamptz NOT NULL,
        lease_until timestamptz NOT NULL
    );
    ALTER TABLE jobs ADD COLUMN owner text;
    ALTER TABLE jobs ADD COLUMN deliverer text;
    ALTER TABLE batches ADD COLUMN owner text;
    CREATE INDEX jobs_owner ON jobs (owner) WHERE owner IS NOT NULL;
    CREATE TABLE rate_budget (
        model_class text PRIMARY KEY,
        requests double precision NOT NULL,
        input_tokens double precision NOT NULL,
        output_tokens double precision NOT NULL,
        updated_at timestamptz NOT NULL,
        paused_until timestamptz
    );
"""
"""Workers and their leases, owners of jobs and batches, the shared real-time budget."""

SQLITE_MIGRATION = """
    CREATE TABLE workers (
        id TEXT PRIMARY KEY,
        lock_key INTEGER NOT NULL,
        started_at TEXT NOT NULL,
        heartbeat_at TEXT NOT NULL,
        lease_until TEXT NOT NULL
    );
    ALTER TABLE jobs ADD COLUMN owner TEXT;
    ALTER TABLE jobs ADD COLUMN deliverer TEXT;
    ALTER TABLE batches ADD COLUMN owner TEXT;
    CREATE INDEX jobs_owner ON jobs (owner) WHERE owner IS NOT NULL;
    CREATE TABLE rate_budget (
        model_class TEXT PRIMARY KEY,
        requests REAL NOT NULL,
        input_tokens REAL NOT NULL,
        output_tokens REAL NOT NULL,
        updated_at TEXT NOT NULL,
        paused_until TEXT
    );
"""
"""The same tables on SQLite (unused there: one process owns a SQLite store), so the two
schemas stay equivalent."""

OPEN_BATCHES = ("planned", "created", "ended")
"""Batch states with work left for an owner: submit, poll, collect."""

Sizes = tuple[float, float, float]
"""Requests, input tokens and output tokens a minute: a budget's three bucket sizes."""


def plan_lock_key(schema: str) -> tuple[int, int]:
    """The planning lock's two keys: the class, and the schema (two stores, two locks)."""
    return PLAN_LOCK, zlib.crc32(schema.encode()) - 2**31


# ---- membership ------------------------------------------------------------------------------
def join(cur: psycopg.Cursor[Row], worker: str, now: datetime, lease: float, schema: str) -> bool:
    """Register `worker` and take its liveness lock (again, after a restart: its old claims
    are its own again); False when a live process holds that name."""
    key = zlib.crc32(f"{schema}\0{worker}".encode())  # as pg_locks shows it: unsigned
    cur.execute("SELECT pg_try_advisory_lock(%s, %s) AS got", (WORKER_LOCK, _int4(key)))
    row = cur.fetchone()
    if row is None or not row["got"]:
        return False
    cur.execute(
        """INSERT INTO workers (id, lock_key, started_at, heartbeat_at, lease_until)
           VALUES (%s, %s, %s, %s, %s)
           ON CONFLICT (id) DO UPDATE SET lock_key = excluded.lock_key,
               started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at,
               lease_until = excluded.lease_until""",
        (worker, key, now, now, now + timedelta(seconds=lease)),
    )
    return True


def heartbeat(cur: psycopg.Cursor[Row], worker: str, now: datetime, lease: float) -> bool:
    """Renew the lease; False when it was lost (reaped by another worker after it expired):
    the worker must stop, its claims are someone else's now."""
    cur.execute(
        """UPDATE workers SET heartbeat_at = %s, lease_until = %s
           WHERE id = %s AND lease_until >= %s""",
        (now, now + timedelta(seconds=lease), worker, now),
    )
    return cur.rowcount == 1


def leave(cur: psycopg.Cursor[Row], worker: str, now: datetime) -> None:
    """A clean stop: what `worker` held is free at once, and its liveness lock too."""
    _release(cur, [worker], now)
    _release_deliveries(cur, [worker])
    cur.execute("DELETE FROM workers WHERE id = %s RETURNING lock_key", (worker,))
    for row in cur.fetchall():
        key = row["lock_key"]
        cur.execute("SELECT pg_advisory_unlock(%s, %s)", (WORKER_LOCK, _int4(key)))


def _int4(key: int) -> int:
    """An unsigned 32-bit key (as `pg_locks.objid` shows it) as the int4 the lock functions take."""
    return key - 2**32 if key >= 2**31 else key


def reap(cur: psycopg.Cursor[Row], now: datetime, restarted: str | None = None) -> tuple[int, int]:
    """Free what dead workers held: their running calls go back to the queue and their
    batches to whoever takes them, at once; the results they claimed for delivery wait for
    their lease to expire (started again under its name within it, a worker writes them to
    its own sink, which skips the keys it holds; after it, another worker delivers them).
    With `restarted`: also the running calls and batches that worker held before it started
    again, and calls no live worker owns (left by a nowait older than the fleet). Returns
    (jobs re-queued, batches freed)."""
    cur.execute(  # dead: its liveness lock is free (its session ended), or its lease expired
        """SELECT id, lease_until < %s AS expired FROM workers w
           WHERE lease_until < %s OR NOT EXISTS (
               SELECT 1 FROM pg_locks l
               WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
                 AND l.database = (SELECT oid FROM pg_database
                                   WHERE datname = current_database())
                 AND l.classid = %s::bigint::oid AND l.objid = w.lock_key::oid)
           FOR UPDATE SKIP LOCKED""",
        (now, now, WORKER_LOCK),
    )
    dead = cur.fetchall()
    requeued, freed = _release(cur, [*(r["id"] for r in dead), *filter(None, [restarted])], now)
    expired = [r["id"] for r in dead if r["expired"]]
    if expired:
        _release_deliveries(cur, expired)
        cur.execute("DELETE FROM workers WHERE id = ANY(%s::text[])", (expired,))
    if restarted is None:
        return requeued, freed
    transition(JobState.RUNNING, JobState.QUEUED)
    cur.execute(  # calls started by no live worker (a nowait older than the fleet)
        """UPDATE jobs SET state = 'queued', owner = NULL, updated_at = %s
           WHERE state = 'running' AND (owner IS NULL OR NOT EXISTS (
               SELECT 1 FROM workers WHERE workers.id = jobs.owner))""",
        (now,),
    )
    return requeued + cur.rowcount, freed


def _release(cur: psycopg.Cursor[Row], owners: Sequence[str], now: datetime) -> tuple[int, int]:
    """`owners`' running calls back to the queue, their batches free; (calls, batches)."""
    transition(JobState.RUNNING, JobState.QUEUED)
    cur.execute(
        """UPDATE jobs SET state = 'queued', owner = NULL, updated_at = %s
           WHERE owner = ANY(%s::text[]) AND state = 'running'""",
        (now, list(owners)),
    )
    requeued = cur.rowcount
    cur.execute("UPDATE batches SET owner = NULL WHERE owner = ANY(%s::text[])", (list(owners),))
    return requeued, cur.rowcount


def _release_deliveries(cur: psycopg.Cursor[Row], owners: Sequence[str]) -> None:
    cur.execute(
        """UPDATE jobs SET deliverer = NULL
           WHERE deliverer = ANY(%s::text[]) AND state IN ('succeeded', 'failed')""",
        (list(owners),),
    )


# ---- real-time jobs --------------------------------------------------------------------------
def claim_realtime(
    cur: psycopg.Cursor[Row],
    worker: str,
    now: datetime,
    limit: int,
    only: int | None = None,
) -> list[Row]:
    """Due real-time jobs, queued → running for `worker` (attempt counted): the queue's order
    (`Store.due_jobs`), rows another worker is claiming skipped rather than waited for.
    `only`: that one job, due or not (an awaited call run at once)."""
    transition(JobState.QUEUED, JobState.RUNNING)
    which = "not_before <= %s" if only is None else "id = %s"
    cur.execute(
        f"""WITH picked AS (
               SELECT id FROM jobs
               WHERE state = 'queued' AND route = 'realtime' AND {which}
               ORDER BY awaited DESC, deadline IS NULL, deadline, id LIMIT %s
               FOR UPDATE SKIP LOCKED)
           UPDATE jobs SET state = 'running', owner = %s, attempts = attempts + 1,
               updated_at = %s, call_started_at = %s
           FROM picked WHERE jobs.id = picked.id
           RETURNING jobs.*, NULL::text AS result_json""",
        (now if only is None else only, limit, worker, now, now),
    )  # a queued job has no result yet
    rows = cur.fetchall()
    return sorted(
        rows, key=lambda r: (not r["awaited"], r["deadline"] is None, r["deadline"] or now, r["id"])
    )


# ---- batches ---------------------------------------------------------------------------------
def own_batch(cur: psycopg.Cursor[Row], batch_id: int, worker: str) -> bool:
    """Take one batch (one just planned) unless another worker holds it."""
    cur.execute(
        "UPDATE batches SET owner = %s WHERE id = %s AND (owner IS NULL OR owner = %s)",
        (worker, batch_id, worker),
    )
    return cur.rowcount == 1


def take_batches(cur: psycopg.Cursor[Row], worker: str, limit: int) -> set[int]:
    """Take up to `limit` open batches nobody holds (a reaped worker's, or a plan whose owner
    died before taking it); returns every open batch `worker` holds."""
    cur.execute(
        """UPDATE batches SET owner = %s WHERE id IN (
               SELECT id FROM batches WHERE owner IS NULL AND state = ANY(%s::text[])
               ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)""",
        (worker, list(OPEN_BATCHES), limit),
    )
    cur.execute(
        "SELECT id FROM batches WHERE owner = %s AND state = ANY(%s::text[])",
        (worker, list(OPEN_BATCHES)),
    )
    return {r["id"] for r in cur.fetchall()}


# ---- delivery --------------------------------------------------------------------------------
def claim_deliveries(
    cur: psycopg.Cursor[Row], worker: str, limit: int, run_id: str | None, job_select: str
) -> list[Row]:
    """Finished results for `worker` to deliver, oldest first: those it claimed before (a
    restart redelivers them to its own sink first), then free ones, skipping rows another
    worker is claiming."""
    run = "" if run_id is None else " AND run_id = %s"
    cur.execute(
        f"""WITH picked AS (
               SELECT id FROM jobs
               WHERE state IN ('succeeded', 'failed')
                 AND (deliverer IS NULL OR deliverer = %s){run}
               ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)
           UPDATE jobs SET deliverer = %s FROM picked WHERE jobs.id = picked.id
           RETURNING jobs.id""",
        (worker, limit, worker) if run_id is None else (worker, run_id, limit, worker),
    )
    ids = [r["id"] for r in cur.fetchall()]
    cur.execute(job_select + " WHERE jobs.id = ANY(%s::bigint[]) ORDER BY jobs.id", (ids,))
    return cur.fetchall()


def delivered(cur: psycopg.Cursor[Row], job_ids: Sequence[int], worker: str, now: datetime) -> int:
    """succeeded|failed → delivered, for the results `worker` still holds; returns how many
    (fewer: its lease was lost and another worker took the rest)."""
    transition(JobState.SUCCEEDED, JobState.DELIVERED)
    transition(JobState.FAILED, JobState.DELIVERED)
    cur.execute(
        """UPDATE jobs SET state = 'delivered', updated_at = %s
           WHERE id = ANY(%s::bigint[]) AND deliverer = %s
             AND state IN ('succeeded', 'failed')""",
        (now, list(job_ids), worker),
    )
    return cur.rowcount


# ---- the shared real-time budget ---------------------------------------------------------------
_REFILLED = """least(%(size)s, {col} + greatest(0, extract(epoch FROM %(now)s::timestamptz
    - updated_at)) * %(size)s / 60.0)"""


def _refilled(col: str, size: str) -> str:
    return _REFILLED.replace("%(size)s", f"%({size})s").format(col=col)


def take_budget(
    cur: psycopg.Cursor[Row], model_class: str, sizes: Sizes, wants: Sizes, now: datetime
) -> float:
    """Take `wants` (1 request, input and output tokens) from the class's buckets when all
    three have room now, in one statement; else take nothing and return the seconds until
    they will (0.0: taken)."""
    args = {
        "cls": model_class, "now": now, "r": sizes[0], "i": sizes[1], "o": sizes[2],
        "wr": min(wants[0], sizes[0]), "wi": min(wants[1], sizes[1]),
        "wo": min(wants[2], sizes[2]),
    }  # fmt: skip
    row = _take(cur, args)
    if row is None:  # the class's first call: a full bucket
        cur.execute(
            """INSERT INTO rate_budget
                   (model_class, requests, input_tokens, output_tokens, updated_at)
               VALUES (%(cls)s, %(r)s, %(i)s, %(o)s, %(now)s)
               ON CONFLICT (model_class) DO NOTHING""",
            args,
        )
        row = _take(cur, args)
    if row is None or row["fits"]:
        return 0.0
    paused = max(0.0, (row["paused_until"] - now).total_seconds())
    buckets = (("wr", "r", sizes[0]), ("wi", "i", sizes[1]), ("wo", "o", sizes[2]))
    short = ((args[want] - row[have]) * 60.0 / size for want, have, size in buckets)
    return float(max(paused, *short, 0.001))


def _take(cur: psycopg.Cursor[Row], args: dict[str, Any]) -> Row | None:
    cur.execute(
        f"""WITH level AS (
                SELECT {_refilled("requests", "r")} AS r, {_refilled("input_tokens", "i")} AS i,
                       {_refilled("output_tokens", "o")} AS o,
                       coalesce(paused_until, %(now)s) AS paused_until
                FROM rate_budget WHERE model_class = %(cls)s FOR UPDATE),
            fit AS (
                SELECT *, paused_until <= %(now)s AND r >= %(wr)s AND i >= %(wi)s
                          AND o >= %(wo)s AS fits FROM level)
            UPDATE rate_budget SET
                requests = fit.r - CASE WHEN fits THEN %(wr)s ELSE 0 END,
                input_tokens = fit.i - CASE WHEN fits THEN %(wi)s ELSE 0 END,
                output_tokens = fit.o - CASE WHEN fits THEN %(wo)s ELSE 0 END,
                updated_at = greatest(rate_budget.updated_at, %(now)s)
            FROM fit WHERE rate_budget.model_class = %(cls)s
            RETURNING fit.fits, fit.r, fit.i, fit.o, fit.paused_until""",
        args,
    )
    return cur.fetchone()


def adjust_budget(
    cur: psycopg.Cursor[Row], model_class: str, sizes: Sizes, charges: Sizes, now: datetime
) -> None:
    """Charge the buckets (negative: give back) after the fact: an answer's actual usage
    against its reservation. A level may go below zero: a debt the refill pays first."""
    cur.execute(
        f"""UPDATE rate_budget SET
               requests = least(%(r)s, {_refilled("requests", "r")} - %(cr)s),
               input_tokens = least(%(i)s, {_refilled("input_tokens", "i")} - %(ci)s),
               output_tokens = least(%(o)s, {_refilled("output_tokens", "o")} - %(co)s),
               updated_at = greatest(updated_at, %(now)s)
            WHERE model_class = %(cls)s""",
        {
            "cls": model_class, "now": now, "r": sizes[0], "i": sizes[1], "o": sizes[2],
            "cr": charges[0], "ci": charges[1], "co": charges[2],
        },
    )  # fmt: skip


def lower_budget(
    cur: psycopg.Cursor[Row],
    model_class: str,
    sizes: Sizes,
    levels: tuple[float | None, float | None, float | None],
    now: datetime,
) -> None:
    """Lower each bucket to what the API says remains (never raise it: answers arrive out
    of order, and calls reserved by other workers may not have reached the API yet)."""
    inf = float("inf")
    cur.execute(
        f"""UPDATE rate_budget SET
               requests = least({_refilled("requests", "r")}, %(lr)s),
               input_tokens = least({_refilled("input_tokens", "i")}, %(li)s),
               output_tokens = least({_refilled("output_tokens", "o")}, %(lo)s),
               updated_at = greatest(updated_at, %(now)s)
            WHERE model_class = %(cls)s""",
        {
            "cls": model_class, "now": now, "r": sizes[0], "i": sizes[1], "o": sizes[2],
            "lr": inf if levels[0] is None else levels[0],
            "li": inf if levels[1] is None else levels[1],
            "lo": inf if levels[2] is None else levels[2],
        },
    )  # fmt: skip


def pause_budget(cur: psycopg.Cursor[Row], model_class: str, until: datetime) -> None:
    """The API refused a call (429, 529): no worker starts a call of the class before `until`."""
    cur.execute(
        """UPDATE rate_budget SET paused_until = greatest(coalesce(paused_until, %s), %s)
           WHERE model_class = %s""",
        (until, until, model_class),
    )


# ---- SQLite: one process owns the store ---------------------------------------------------------
def claim_one_by_one(store: Store, now: datetime, limit: int, only: int | None) -> list[Job]:
    """`claim_realtime` where one process owns the store: due jobs, each moved to running."""
    from nowait.types import Route

    due = store.due_jobs(Route.REALTIME, now, limit) if only is None else []
    if only is not None:
        due = [j for j in store.jobs(state=JobState.QUEUED) if j.id == only][:1]
    claimed = (store.get_job(job.key) for job in due if store.start_realtime(job.id, now))
    return [job for job in claimed if job is not None]


def deliver_all(store: Store, job_ids: Sequence[int], now: datetime) -> int:
    """`deliver_claimed` where one process owns the store: every result it names."""
    store.mark_delivered_many(job_ids, now)
    return len(job_ids)
