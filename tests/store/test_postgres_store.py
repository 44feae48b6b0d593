"""PostgreSQL-only facts (the shared behaviour is in test_store_contract.py): migrations, the
claim across processes and connections, clear errors without the password."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nowait.errors import ConfigError, StoreError
from nowait.store import BatchState, NewJob, Outcome, StoreBusyError
from nowait.store.postgres import MIGRATIONS, PostgresStore, mask
from nowait.types import JobState, Route, Tier, Usage

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def job(key: str, route: Route = Route.REALTIME) -> NewJob:
    return NewJob(key=key, params_json='{"max_tokens": 8}', model="m", route=route, reasons="r")


@pytest.mark.postgres
def test_migrations_run_once_and_survive_reopen(pg_database: str) -> None:
    first = PostgresStore(pg_database)
    first.add_job(job("a"), NOW)
    first.close()
    again = PostgresStore(pg_database)
    assert again.get_job("a") is not None
    again.close()
    import psycopg

    with psycopg.connect(pg_database) as db:
        versions = [v for (v,) in db.execute("SELECT version FROM nowait_migrations ORDER BY 1")]
    assert versions == list(range(1, len(MIGRATIONS) + 1))


@pytest.mark.postgres
def test_an_older_store_gains_a_namespace_kept_from_then_on(pg_database: str) -> None:
    import psycopg

    with psycopg.connect(pg_database, autocommit=True) as db:  # a store of schema version 1
        db.execute(
            "CREATE TABLE nowait_migrations (version integer PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        db.execute(MIGRATIONS[0])
        db.execute("INSERT INTO nowait_migrations (version) VALUES (1)")
        db.execute(
            "INSERT INTO batches (state, request_count, body_bytes, model, planned_at)"
            " VALUES ('planned', 1, 10, 'm', now())"
        )
    store = PostgresStore(pg_database)
    namespace = store.namespace
    [planned] = store.batches(BatchState.PLANNED)
    assert planned.waiting_for == ()
    store.close()
    again = PostgresStore(pg_database)
    assert again.namespace == namespace and len(namespace) == 16
    again.close()


@pytest.mark.postgres
def test_a_store_written_by_a_newer_nowait_is_refused(pg_database: str) -> None:
    PostgresStore(pg_database).close()
    import psycopg

    with psycopg.connect(pg_database, autocommit=True) as db:
        db.execute("INSERT INTO nowait_migrations (version) VALUES (99)")
    with pytest.raises(StoreError, match="newer nowait"):
        PostgresStore(pg_database)


@pytest.mark.postgres
def test_timestamps_are_timestamptz_read_back_in_utc(pg_database: str) -> None:
    store = PostgresStore(pg_database)
    store.add_job(job("a"), NOW)
    got = store.get_job("a")
    store.close()
    assert got is not None and got.created_at == NOW and got.created_at.utcoffset() is not None
    import psycopg

    with psycopg.connect(pg_database) as db:
        [(kind,)] = db.execute(
            "SELECT data_type FROM information_schema.columns"
            " WHERE table_name = 'jobs' AND column_name = 'not_before'"
        )
    assert kind == "timestamp with time zone"


HOLDER = """
import sys, time
from nowait.store.postgres import PostgresStore
store = PostgresStore(sys.argv[1])
with store.claim():
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.mark.postgres
def test_the_claim_is_held_against_other_processes_until_the_holder_dies(
    pg_database: str,
) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, pg_database], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        standby = PostgresStore(pg_database)
        with pytest.raises(StoreBusyError, match="another nowait process"):
            standby.claim().__enter__()
        holder.kill()  # a crash: no unlock, only the connection dropping
        holder.wait()
        deadline = time.monotonic() + 10
        while True:
            try:
                with standby.claim():
                    break
            except StoreBusyError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        standby.close()
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


@pytest.mark.postgres
def test_stores_in_two_schemas_of_one_database_do_not_block_each_other(
    pg_database: str,
) -> None:
    import psycopg

    with psycopg.connect(pg_database, autocommit=True) as db:
        db.execute("CREATE SCHEMA team_a; CREATE SCHEMA team_b")
    a = PostgresStore(pg_database + "?options=-csearch_path%3Dteam_a")
    b = PostgresStore(pg_database + "?options=-csearch_path%3Dteam_b")
    a.add_job(job("only-in-a"), NOW)
    with a.claim(), b.claim():
        assert b.get_job("only-in-a") is None
    assert a.namespace != b.namespace  # two stores: their batch requests are told apart
    a.close()
    b.close()


@pytest.mark.postgres
def test_a_lost_connection_is_a_store_error(pg_database: str) -> None:
    import psycopg

    store = PostgresStore(pg_database)
    with psycopg.connect(pg_database, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'nowait' AND datname = current_database()"
        )
    with pytest.raises(StoreError, match="PostgreSQL at"):
        store.get_job("a")
    store.close()


@pytest.mark.postgres
def test_worker_threads_share_one_store(pg_database: str) -> None:
    store = PostgresStore(pg_database)
    store.add_jobs([job(f"k{i}") for i in range(40)], NOW)
    ids = [j.id for j in store.jobs()]

    def work(mine: list[int]) -> None:
        for job_id in mine:
            if store.start_realtime(job_id, NOW):
                store.finish_realtime(
                    job_id, Outcome(None, "succeeded", "{}", Usage(1, 1), Tier.STANDARD), NOW
                )

    threads = [threading.Thread(target=work, args=(ids[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.job_counts() == {JobState.SUCCEEDED: 40}
    store.close()


def test_an_unreachable_server_is_a_config_error_without_the_password() -> None:
    with pytest.raises(ConfigError, match="cannot connect to PostgreSQL") as caught:
        PostgresStore("postgresql://nowait:hunter2-secret@127.0.0.1:1/nowait?connect_timeout=2")
    assert "hunter2-secret" not in str(caught.value)
    assert "postgresql://nowait:***@127.0.0.1:1/nowait" in str(caught.value)


def test_a_missing_psycopg_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # what `import psycopg` sees uninstalled
    with pytest.raises(ConfigError, match=r"pip install 'nowait\[postgres\]'"):
        PostgresStore("postgresql://localhost/nowait")


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("postgresql://u:p%40ss@h:5432/db", "postgresql://u:***@h:5432/db"),
        (
            "postgresql://u@h/db?password=x&sslmode=require",
            "postgresql://u@h/db?password=***&sslmode=require",
        ),
        ("host=h password='a b' dbname=d", "host=h password=*** dbname=d"),
        ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:pa/ss@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:pa ss@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgres://u:p?x=1@h/db", "postgres://u:***@h/db"),
        ("postgresql://u:s3cr#t@h/db?sslmode=require", "postgresql://u:***@h/db?sslmode=require"),
        ("postgresql://h/db", "postgresql://h/db"),
        ("postgresql://u@h:5432/db", "postgresql://u@h:5432/db"),
        ("PASSWORD=abc host=h", "PASSWORD=*** host=h"),
    ],
)
def test_mask_hides_the_password(dsn: str, shown: str) -> None:
    assert mask(dsn) == shown


@given(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=3, max_size=20
    ).filter(lambda p: p.strip() == p and "'" not in p)
)
def test_no_password_shape_survives_masking(password: str) -> None:
    for template in (
        "postgresql://user:{}@db.example:5432/nowait?sslmode=require",
        "postgresql://user@db.example/nowait?password={}",
        "host=db.example password='{}' dbname=nowait",
    ):
        if "?password=" in template and any(c == "&" or c.isspace() for c in password):
            continue  # not one parameter any more: the URL means something else
        shown = template.format("***").replace("'***'", "***")
        assert mask(template.format(password)) == shown, password
