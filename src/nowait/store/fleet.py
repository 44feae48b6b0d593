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

The functions here take the store core's `Tx` (`?` placeholders) and run inside the caller's
transaction; `CoreStore` calls them on PostgreSQL. They are PostgreSQL's SQL (advisory locks,
arrays, `SKIP LOCKED`): SQLite keeps one process per store (`claim`), so it needs none of it.
The locks' keys derive from the store's namespace (one per store, so per schema).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from nowait.errors import StoreError
from nowait.types import JobState, transition

if TYPE_CHECKING:
    from nowait.store.core import Dialect, Row, Tx

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
"""The same tables on SQLite (only `jobs.owner` is written there: one process owns a SQLite
store), so the two schemas stay equivalent."""

POSTGRES_IN_DOUBT = "ALTER TABLE jobs ADD COLUMN delivering_since timestamptz;"
SQLITE_IN_DOUBT = "ALTER TABLE jobs ADD COLUMN delivering_since TEXT;"
"""When a worker started writing a claimed result to its sink; set until it is marked
delivered. A worker that dies in between leaves the result *in doubt* (its sink may hold it):
it stays that worker's until it starts again and reconciles its sink (`forget` releases it)."""

OPEN_BATCHES = ("planned", "created", "ended")
"""Batch states with work left for an owner: submit, poll, collect."""

Sizes = tuple[float, float, float]
"""Requests, input tokens and output tokens a minute: a budget's three bucket sizes."""


def _int4(key: int) -> int:
    """An unsigned 32-bit key (as `pg_locks.objid` shows it) as the int4 the lock functions take."""
    return key - 2**32 if key >= 2**31 else key


# ---- membership ------------------------------------------------------------------------------
_ALIVE = """EXISTS (
    SELECT 1 FROM pg_locks l
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND l.classid = ?::bigint::oid AND l.objid = w.lock_key::oid)"""
"""Whether worker `w`'s liveness lock is held (its session lives); one argument: WORKER_LOCK."""


def join(tx: Tx, worker: str, now: datetime, lease: float, namespace: str) -> bool:
    """Register `worker` and take its liveness lock (again, after a restart: its old claims
    are its own again); False when a live process holds that name."""
    key = zlib.crc32(f"{namespace}\0{worker}".encode())  # as pg_locks shows it: unsigned
    [(got,)] = tx.rows("SELECT pg_try_advisory_lock(?, ?)", (WORKER_LOCK, _int4(key)))
    if not got:
        return False
    tx.run(
        """INSERT INTO workers (id, lock_key, started_at, heartbeat_at, lease_until)
           VALUES (?, ?, ?, ?, ?)
           ON CONFLICT (id) DO UPDATE SET lock_key = excluded.lock_key,
               started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at,
               lease_until = excluded.lease_until""",
        (worker, key, now, now, now + timedelta(seconds=lease)),
    )
    return True


def heartbeat(tx: Tx, worker: str, now: datetime, lease: float) -> bool:
    """Renew the lease; False when it was lost (reaped by another worker after it expired):
    the worker must stop, its claims are someone else's now."""
    renewed = tx.run(
        """UPDATE workers SET heartbeat_at = ?, lease_until = ?
           WHERE id = ? AND lease_until >= ?""",
        (now, now + timedelta(seconds=lease), worker, now),
    )
    return renewed == 1


def leave(tx: Tx, worker: str, now: datetime) -> None:
    """A clean stop: what `worker` held is free at once, and its liveness lock too."""
    _release(tx, [worker], now)
    _release_deliveries(tx, [worker])
    for (key,) in tx.rows("DELETE FROM workers WHERE id = ? RETURNING lock_key", (worker,)):
        tx.rows("SELECT pg_advisory_unlock(?, ?)", (WORKER_LOCK, _int4(key)))


def reap(tx: Tx, now: datetime, restarted: str | None = None) -> tuple[int, int]:
    """Free what dead workers held: their running calls go back to the queue and their
    batches to whoever takes them, at once; the results they claimed for delivery wait for
    their lease to expire (started again under its name within it, a worker writes them to
    its own sink, which skips the keys it holds; after it, another worker delivers them),
    except the ones in doubt (being written when it died): those wait for it, or `forget`.
    With `restarted`: also the running calls and batches that worker held before it started
    again, and calls no live worker owns (left by a nowait older than the fleet). Returns
    (jobs re-queued, batches freed)."""
    dead = tx.rows(  # dead: its liveness lock is free (its session ended), or its lease expired
        f"""SELECT id, lease_until < ? AS expired FROM workers w
           WHERE lease_until < ? OR NOT {_ALIVE}
           FOR UPDATE SKIP LOCKED""",
        (now, now, WORKER_LOCK),
    )
    requeued, freed = _release(tx, [*(r[0] for r in dead), *filter(None, [restarted])], now)
    expired = [r[0] for r in dead if r[1]]
    if expired:
        _release_deliveries(tx, expired)
        tx.run("DELETE FROM workers WHERE id = ANY(?::text[])", (expired,))
    if restarted is None:
        return requeued, freed
    transition(JobState.RUNNING, JobState.QUEUED)
    orphans = tx.run(  # calls started by no live worker (a nowait older than the fleet)
        """UPDATE jobs SET state = 'queued', owner = NULL, updated_at = ?
           WHERE state = 'running' AND (owner IS NULL OR NOT EXISTS (
               SELECT 1 FROM workers WHERE workers.id = jobs.owner))""",
        (now,),
    )
    return requeued + orphans, freed


def _release(tx: Tx, owners: Sequence[str], now: datetime) -> tuple[int, int]:
    """`owners`' running calls back to the queue, their batches free; (calls, batches)."""
    transition(JobState.RUNNING, JobState.QUEUED)
    requeued = tx.run(
        """UPDATE jobs SET state = 'queued', owner = NULL, updated_at = ?
           WHERE owner = ANY(?::text[]) AND state = 'running'""",
        (now, list(owners)),
    )
    freed = tx.run("UPDATE batches SET owner = NULL WHERE owner = ANY(?::text[])", (list(owners),))
    return requeued, freed


def _release_deliveries(tx: Tx, owners: Sequence[str]) -> None:
    """`owners`' claimed results go to whoever asks next, but not those in doubt: the owner's
    sink may hold them already, and only it can tell."""
    tx.run(
        """UPDATE jobs SET deliverer = NULL
           WHERE deliverer = ANY(?::text[]) AND state IN ('succeeded', 'failed')
             AND delivering_since IS NULL""",
        (list(owners),),
    )


def forget(tx: Tx, worker: str, now: datetime) -> list[str] | None:
    """`worker` is gone for good, with its sink: the results it left in doubt go to the other
    workers (their keys returned: they may be in its sink too), its other claims too. None
    when it is alive (its liveness lock is held): it must be stopped first."""
    [(alive,)] = tx.rows(
        f"SELECT EXISTS (SELECT 1 FROM workers w WHERE w.id = ? AND {_ALIVE})",
        (worker, WORKER_LOCK),
    )
    if alive:
        return None
    keys = tx.rows(
        """UPDATE jobs SET deliverer = NULL, delivering_since = NULL
           WHERE deliverer = ? AND state IN ('succeeded', 'failed')
           RETURNING key""",
        (worker,),
    )
    _release(tx, [worker], now)
    tx.run("DELETE FROM workers WHERE id = ?", (worker,))
    return sorted(str(k) for (k,) in keys)


def in_doubt(tx: Tx) -> list[tuple[str, int, datetime]]:
    """Per worker: how many results it left in doubt, and since when (the oldest)."""
    return [
        (str(w), int(n), since)
        for w, n, since in tx.rows(
            """SELECT deliverer, count(*), min(delivering_since) FROM jobs
               WHERE delivering_since IS NOT NULL AND state IN ('succeeded', 'failed')
               GROUP BY deliverer ORDER BY deliverer"""
        )
    ]


# ---- planning and batches ----------------------------------------------------------------------
@contextmanager
def plan_lock(dialect: Dialect, namespace: str) -> Iterator[bool]:
    """Try the planning lock, a session advisory lock (a lost connection drops it); yield
    whether it is held. Outside any transaction: it lasts the block, not one statement."""
    key = (PLAN_LOCK, zlib.crc32(namespace.encode()) - 2**31)
    [(got,)] = dialect.read("SELECT pg_try_advisory_lock(?, ?)", key)
    try:
        yield bool(got)
    finally:
        if got:
            with suppress(StoreError):  # the connection is gone, and the lock with it
                dialect.read("SELECT pg_advisory_unlock(?, ?)", key)


def own_batch(tx: Tx, batch_id: int, worker: str) -> bool:
    """Take one batch (one just planned) unless another worker holds it."""
    taken = tx.run(
        "UPDATE batches SET owner = ? WHERE id = ? AND (owner IS NULL OR owner = ?)",
        (worker, batch_id, worker),
    )
    return taken == 1


def take_batches(tx: Tx, worker: str, limit: int) -> set[int]:
    """Take up to `limit` open batches nobody holds (a reaped worker's, or a plan whose owner
    died before taking it); returns every open batch `worker` holds."""
    tx.run(
        """UPDATE batches SET owner = ? WHERE id IN (
               SELECT id FROM batches WHERE owner IS NULL AND state = ANY(?::text[])
               ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED)""",
        (worker, list(OPEN_BATCHES), limit),
    )
    rows = tx.rows(
        "SELECT id FROM batches WHERE owner = ? AND state = ANY(?::text[])",
        (worker, list(OPEN_BATCHES)),
    )
    return {r[0] for r in rows}


# ---- delivery --------------------------------------------------------------------------------
def claim_deliveries(
    tx: Tx, worker: str, limit: int, run_id: str | None, job_select: str
) -> list[Row]:
    """Finished results for `worker` to deliver, oldest first: those it claimed before (a
    restart redelivers them to its own sink first), then free ones, skipping rows another
    worker is claiming. `job_select`: the core's `JOB_SELECT`, so rows read as its jobs."""
    run = "" if run_id is None else " AND run_id = ?"
    claimed = tx.rows(
        f"""WITH picked AS (
               SELECT id FROM jobs
               WHERE state IN ('succeeded', 'failed')
                 AND (deliverer IS NULL OR deliverer = ?){run}
               ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED)
           UPDATE jobs SET deliverer = ? FROM picked WHERE jobs.id = picked.id
           RETURNING jobs.id""",
        (worker, limit, worker) if run_id is None else (worker, run_id, limit, worker),
    )
    ids = [r[0] for r in claimed]
    return tx.rows(job_select + " WHERE jobs.id = ANY(?::bigint[]) ORDER BY jobs.id", (ids,))


def start_delivery(
    tx: Tx, job_ids: Sequence[int], worker: str, margin: float, now: datetime, in_doubt: bool
) -> bool:
    """The fence before `worker`'s sink sees `job_ids`: if it still holds every one of them
    with at least `margin` seconds of its lease left (by `now`, the clock reaping uses),
    return True, having marked them in doubt (being written) if `in_doubt`; else mark none.
    From then on only a mark of delivery, `worker` started again, or `forget` frees them:
    never a reap. A worker that never joined has no lease to lose."""
    ids = list(job_ids)
    marked = tx.rows(
        """WITH holds AS (
               SELECT count(*) = cardinality(?::bigint[]) AND NOT EXISTS (
                   SELECT 1 FROM workers WHERE id = ?
                     AND lease_until < ?::timestamptz + make_interval(secs => ?)) AS ok
               FROM jobs WHERE id = ANY(?::bigint[]) AND deliverer = ?
                 AND state IN ('succeeded', 'failed'))
           UPDATE jobs SET delivering_since = ? FROM holds
           WHERE holds.ok AND jobs.id = ANY(?::bigint[]) AND jobs.deliverer = ?
             AND jobs.state IN ('succeeded', 'failed')
           RETURNING jobs.id""",
        (ids, worker, now, margin, ids, worker, now if in_doubt else None, ids, worker),
    )
    if len(marked) == len(ids):
        return True
    if marked:  # a reap took some between the check and the update: write none of them
        tx.run(
            """UPDATE jobs SET delivering_since = NULL
               WHERE id = ANY(?::bigint[]) AND deliverer = ?""",
            (ids, worker),
        )
    return False


def delivered(tx: Tx, job_ids: Sequence[int], worker: str, now: datetime) -> int:
    """succeeded|failed → delivered, for the results `worker` still holds; returns how many
    (fewer: its lease was lost and another worker took the rest)."""
    transition(JobState.SUCCEEDED, JobState.DELIVERED)
    transition(JobState.FAILED, JobState.DELIVERED)
    return tx.run(
        """UPDATE jobs SET state = 'delivered', updated_at = ?, delivering_since = NULL
           WHERE id = ANY(?::bigint[]) AND deliverer = ?
             AND state IN ('succeeded', 'failed')""",
        (now, list(job_ids), worker),
    )


# ---- the shared real-time budget ---------------------------------------------------------------
# Each statement names its arguments once, in a one-row `p`, and reads them from there.
_ARGS = """p AS (SELECT ?::text AS cls, ?::timestamptz AS now, ?::float8 AS r,
    ?::float8 AS i, ?::float8 AS o, ?::float8 AS a, ?::float8 AS b, ?::float8 AS c)"""
"""The class, `now`, the three bucket sizes, and three more per statement (a, b, c)."""


def _refilled(col: str, size: str) -> str:
    """SQL: bucket `col` of `rate_budget` refilled to `p.now` at `p.<size>` a minute."""
    return (
        f"least(p.{size}, rate_budget.{col} + greatest(0, extract(epoch FROM p.now"
        f" - rate_budget.updated_at)) * p.{size} / 60.0)"
    )


def take_budget(tx: Tx, model_class: str, sizes: Sizes, wants: Sizes, now: datetime) -> float:
    """Take `wants` (1 request, input and output tokens) from the class's buckets when all
    three have room now, in one statement; else take nothing and return the seconds until
    they will (0.0: taken)."""
    want = tuple(min(w, s) for w, s in zip(wants, sizes, strict=True))
    args = (model_class, now, *sizes, *want)
    row = _take(tx, args)
    if row is None:  # the class's first call: a full bucket
        tx.run(
            """INSERT INTO rate_budget
                   (model_class, requests, input_tokens, output_tokens, updated_at)
               VALUES (?, ?, ?, ?, ?)
               ON CONFLICT (model_class) DO NOTHING""",
            (model_class, *sizes, now),
        )
        row = _take(tx, args)
    if row is None or row[0]:
        return 0.0
    _, *levels, paused_until = row
    paused = max(0.0, (paused_until - now).total_seconds())
    short = ((w - have) * 60.0 / size for w, have, size in zip(want, levels, sizes, strict=True))
    return float(max(paused, *short, 0.001))


def _take(tx: Tx, args: Sequence[object]) -> Row | None:
    """(fits, requests, input, output levels, paused_until); None: the class has no row."""
    rows = tx.rows(
        f"""WITH {_ARGS},
            level AS (
                SELECT {_refilled("requests", "r")} AS r, {_refilled("input_tokens", "i")} AS i,
                       {_refilled("output_tokens", "o")} AS o,
                       coalesce(rate_budget.paused_until, p.now) AS paused_until
                FROM rate_budget, p WHERE rate_budget.model_class = p.cls
                FOR UPDATE OF rate_budget),
            fit AS (
                SELECT level.*, level.paused_until <= p.now AND level.r >= p.a
                       AND level.i >= p.b AND level.o >= p.c AS fits FROM level, p)
            UPDATE rate_budget SET
                requests = fit.r - CASE WHEN fit.fits THEN p.a ELSE 0 END,
                input_tokens = fit.i - CASE WHEN fit.fits THEN p.b ELSE 0 END,
                output_tokens = fit.o - CASE WHEN fit.fits THEN p.c ELSE 0 END,
                updated_at = greatest(rate_budget.updated_at, p.now)
            FROM fit, p WHERE rate_budget.model_class = p.cls
            RETURNING fit.fits, fit.r, fit.i, fit.o, fit.paused_until""",
        args,
    )
    return rows[0] if rows else None


def adjust_budget(tx: Tx, model_class: str, sizes: Sizes, charges: Sizes, now: datetime) -> None:
    """Charge the buckets (negative: give back) after the fact: an answer's actual usage
    against its reservation. A level may go below zero: a debt the refill pays first."""
    tx.run(
        f"""WITH {_ARGS}
            UPDATE rate_budget SET
               requests = least(p.r, {_refilled("requests", "r")} - p.a),
               input_tokens = least(p.i, {_refilled("input_tokens", "i")} - p.b),
               output_tokens = least(p.o, {_refilled("output_tokens", "o")} - p.c),
               updated_at = greatest(rate_budget.updated_at, p.now)
            FROM p WHERE rate_budget.model_class = p.cls""",
        (model_class, now, *sizes, *charges),
    )


def lower_budget(
    tx: Tx,
    model_class: str,
    sizes: Sizes,
    levels: tuple[float | None, float | None, float | None],
    now: datetime,
) -> None:
    """Lower each bucket to what the API says remains (never raise it: answers arrive out
    of order, and calls reserved by other workers may not have reached the API yet)."""
    caps = tuple(float("inf") if level is None else level for level in levels)
    tx.run(
        f"""WITH {_ARGS}
            UPDATE rate_budget SET
               requests = least({_refilled("requests", "r")}, p.a),
               input_tokens = least({_refilled("input_tokens", "i")}, p.b),
               output_tokens = least({_refilled("output_tokens", "o")}, p.c),
               updated_at = greatest(rate_budget.updated_at, p.now)
            FROM p WHERE rate_budget.model_class = p.cls""",
        (model_class, now, *sizes, *caps),
    )


def pause_budget(tx: Tx, model_class: str, until: datetime) -> None:
    """The account's limit refused a call (a 429): no worker starts a call of the class
    before `until`."""
    tx.run(
        """UPDATE rate_budget SET paused_until = greatest(coalesce(paused_until, ?), ?)
           WHERE model_class = ?""",
        (until, until, model_class),
    )
