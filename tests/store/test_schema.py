"""Both stores end with the same schema, and stores made by older nowait versions upgrade.

The schemas are read back by introspection (SQLite's pragmas, PostgreSQL's catalogs) after the
real migrations ran on a real SQLite file and a real PostgreSQL server, then compared: tables,
columns (name, type class, nullability) and indexes (columns, uniqueness, partial predicate)."""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from nowait.store import BatchState, NewJob
from nowait.store.postgres import MIGRATIONS as PG_MIGRATIONS
from nowait.store.postgres import PostgresStore
from nowait.store.sqlite import MIGRATIONS as SQLITE_MIGRATIONS
from nowait.store.sqlite import SQLiteStore
from nowait.types import JobState, Route

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

# What a column stores, whichever database: SQLite keeps timestamps as ISO text and booleans
# as 0/1, so those are its equivalents of timestamptz and boolean.
SQLITE_TYPES = {"TEXT": "text", "INTEGER": "int", "REAL": "float"}
PG_TYPES = {
    "text": "text", "timestamp with time zone": "text", "integer": "int", "bigint": "int",
    "boolean": "int", "double precision": "float",
}  # fmt: skip
BOOKKEEPING = {"nowait_migrations"}  # PostgreSQL's version table; SQLite uses user_version

Schema = tuple[dict[str, set[tuple[str, str, bool]]], set[tuple[object, ...]]]


def literals(predicate: str | None) -> frozenset[str]:
    """A partial index's predicate as the state names it admits (each database spells it
    its own way: `state IN ('a')` or `(state = ANY (ARRAY['a'::text]))`), and whether it
    leaves out NULLs (`… IS NOT NULL`)."""
    found = set(re.findall(r"'([^']*)'", predicate or ""))
    if "IS NOT NULL" in (predicate or "").upper():
        found.add("IS NOT NULL")
    return frozenset(found)


def sqlite_schema(path: Path) -> Schema:
    db = sqlite3.connect(path)
    tables = [
        name
        for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    columns = {
        table: {
            (name, SQLITE_TYPES[kind], not (notnull or pk))
            for _, name, kind, notnull, _, pk in db.execute(f"PRAGMA table_info({table})")
        }
        for table in tables
    }
    indexes: set[tuple[object, ...]] = set()
    for table in tables:
        for _, name, unique, origin, _ in db.execute(f"PRAGMA index_list({table})"):
            if origin == "pk":
                continue
            cols = tuple(r[2] for r in db.execute(f"PRAGMA index_info({name})"))
            [(sql,)] = db.execute("SELECT sql FROM sqlite_master WHERE name = ?", (name,))
            predicate = sql.partition(" WHERE ")[2] if sql else None
            named = name if origin == "c" else None  # UNIQUE columns: the database names it
            indexes.add((table, named, cols, bool(unique), literals(predicate)))
    db.close()
    return columns, indexes


def postgres_schema(dsn: str) -> Schema:
    import psycopg

    with psycopg.connect(dsn) as db:
        columns: dict[str, set[tuple[str, str, bool]]] = {}
        for table, name, kind, nullable in db.execute(
            """SELECT table_name, column_name, data_type, is_nullable = 'YES'
               FROM information_schema.columns WHERE table_schema = current_schema()"""
        ):
            if table not in BOOKKEEPING:
                columns.setdefault(table, set()).add((name, PG_TYPES[kind], nullable))
        indexes: set[tuple[object, ...]] = set()
        for table, name, unique, cols, predicate, constraint in db.execute(
            """SELECT t.relname, i.relname, x.indisunique,
                      array(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY AS k(n, o)
                            JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.n
                            ORDER BY k.o),
                      pg_get_expr(x.indpred, x.indrelid), c.oid IS NOT NULL
               FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
               JOIN pg_class t ON t.oid = x.indrelid
               JOIN pg_namespace s ON s.oid = t.relnamespace
               LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid AND c.contype = 'u'
               WHERE s.nspname = current_schema() AND NOT x.indisprimary"""
        ):
            if table not in BOOKKEEPING:
                named = None if constraint else name
                indexes.add((table, named, tuple(cols), unique, literals(predicate)))
    return columns, indexes


@pytest.mark.postgres
def test_both_stores_end_with_the_same_tables_columns_and_indexes(
    tmp_path: Path, pg_database: str
) -> None:
    SQLiteStore(tmp_path / "nowait.db").close()
    PostgresStore(pg_database).close()
    lite, pg = sqlite_schema(tmp_path / "nowait.db"), postgres_schema(pg_database)
    assert sorted(lite[0]) == sorted(pg[0])  # the same tables
    for table in lite[0]:
        assert lite[0][table] == pg[0][table], table
    assert lite[1] == pg[1]
    assert ("jobs", "jobs_due", ("route", "not_before"), False, frozenset({"queued"})) in lite[1]


def test_a_sqlite_store_of_schema_6_upgrades_and_keeps_its_work(tmp_path: Path) -> None:
    path = tmp_path / "nowait.db"
    db = sqlite3.connect(path)
    for script in SQLITE_MIGRATIONS[:6]:  # the last schema shipped before the one store core
        db.executescript(script)
    db.executescript(
        f"""PRAGMA user_version = 6;
        INSERT INTO meta (name, value) VALUES ('namespace', '00112233aabbccdd');
        INSERT INTO jobs (key, params_json, model, route, awaited, state, not_before,
                          created_at, updated_at, custom_id, tier)
        VALUES ('a', '{{}}', 'm', 'batch', 0, 'succeeded', '{NOW.isoformat()}',
                '{NOW.isoformat()}', '{NOW.isoformat()}', 'c1', 'batch');
        INSERT INTO results (job_id, result_json) VALUES (1, '{{"ok": 1}}');"""
    )
    db.close()
    store = SQLiteStore(path)
    assert store.namespace == "00112233aabbccdd"
    [done] = store.undelivered(10)
    assert done.key == "a" and done.result_json == '{"ok": 1}'
    store.mark_delivered(done.id, NOW)
    store.close()
    again = sqlite3.connect(path)
    assert again.execute("PRAGMA user_version").fetchone()[0] == len(SQLITE_MIGRATIONS)
    again.close()


@pytest.mark.postgres
def test_a_postgres_store_of_schema_4_upgrades_and_keeps_its_work(pg_database: str) -> None:
    import psycopg

    with psycopg.connect(pg_database, autocommit=True) as db:
        db.execute(
            "CREATE TABLE nowait_migrations (version integer PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for number, script in enumerate(PG_MIGRATIONS[:4], start=1):
            db.execute(script)
            db.execute("INSERT INTO nowait_migrations (version) VALUES (%s)", (number,))
        db.execute("INSERT INTO nowait_meta (name, value) VALUES ('namespace', 'feedfacecafe0001')")
        db.execute(
            """INSERT INTO batches (state, request_count, body_bytes, model, planned_at)
               VALUES ('planned', 1, 10, 'm', %s)""",
            (NOW,),
        )
        db.execute(
            """INSERT INTO jobs (key, params_json, model, route, awaited, state, not_before,
                                 created_at, updated_at, tier)
               VALUES ('done', '{}', 'm', 'batch', false, 'succeeded', %s, %s, %s, 'batch')""",
            (NOW, NOW, NOW),
        )
        db.execute("""INSERT INTO results (job_id, result_json) VALUES (1, '{"ok": 1}')""")
    store = PostgresStore(pg_database)
    assert store.namespace == "feedfacecafe0001"
    done = store.get_job("done")
    assert done is not None and done.result_json == '{"ok": 1}'  # results kept their rows
    [planned] = store.batches(BatchState.PLANNED)
    job = store.add_job(NewJob("k", "{}", "m", Route.BATCH, "r"), NOW)[0]
    assert store.due_jobs(Route.BATCH, NOW, 5)[0].id == job.id
    store.abandon_batch(planned.id, NOW)
    assert store.batches(BatchState.ABANDONED) and job.state is JobState.QUEUED
    store.close()
    with psycopg.connect(pg_database) as db:
        [(version,)] = db.execute("SELECT max(version) FROM nowait_migrations")
    assert version == len(PG_MIGRATIONS)
