"""Load normalized records into DuckDB and aggregate them there: streaming, bounded memory.

Python readers write their records to a temporary CSV in chunks, which DuckDB reads; the
LiteLLM CSV export is mapped to the record in SQL alone, so millions of rows never pass
through Python.
"""

from __future__ import annotations

import csv
import tempfile
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path

import duckdb

from nowait.analysis.detect import READERS, detect
from nowait.analysis.readers import BadRecords
from nowait.analysis.records import COLUMNS, Record

NULL = "\\N"
TYPES = {
    "start_time": "TIMESTAMPTZ",
    "end_time": "TIMESTAMPTZ",
    "request_count": "BIGINT",
    "ttft_s": "DOUBLE",
    "stream": "BOOLEAN",
    "input_uncached": "BIGINT",
    "cache_read": "BIGINT",
    "cache_write_5m": "BIGINT",
    "cache_write_1h": "BIGINT",
    "output_tokens": "BIGINT",
    "cost_usd_reported": "DOUBLE",
    "line": "BIGINT",
}
SCHEMA = ", ".join(f"{c} {TYPES.get(c, 'VARCHAR')}" for c in COLUMNS)


def connect(memory_limit: str = "2GB") -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute("SET preserve_insertion_order = false")
    con.execute(f"CREATE TABLE records ({SCHEMA})")
    return con


def load(
    con: duckdb.DuckDBPyConnection,
    paths: Iterable[Path],
    *,
    fmt: str | None,
    bad: BadRecords,
    on_file: Callable[[Path], None] | None = None,
) -> None:
    for path in paths:
        kind = fmt or detect(path)
        if kind == "litellm-csv" or (
            kind == "litellm" and path.name.removesuffix(".gz").endswith(".csv")
        ):
            load_litellm_csv(con, path, bad)
        else:
            _load_python(con, READERS[kind](path, bad))
        if on_file is not None:
            on_file(path)


def _cell(value: object) -> object:
    if value is None:
        return NULL
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _load_python(
    con: duckdb.DuckDBPyConnection, records: Iterable[Record], chunk: int = 200_000
) -> None:
    with tempfile.TemporaryDirectory(prefix="nowait-analyze-") as tmp:
        part = Path(tmp) / "records.csv"
        rows: list[list[object]] = []
        for record in records:
            rows.append([_cell(getattr(record, c)) for c in COLUMNS])
            if len(rows) >= chunk:
                _flush(con, part, rows)
                rows = []
        if rows:
            _flush(con, part, rows)


def _flush(con: duckdb.DuckDBPyConnection, part: Path, rows: list[list[object]]) -> None:
    with part.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    columns = "{" + ", ".join(f"'{c}': '{TYPES.get(c, 'VARCHAR')}'" for c in COLUMNS) + "}"
    con.execute(
        f"INSERT INTO records SELECT * FROM read_csv(?, header = true, nullstr = '{NULL}', "
        f"columns = {columns}, quote = '\"', escape = '\"')",
        [str(part)],
    )


def load_litellm_csv(con: duckdb.DuckDBPyConnection, path: Path, bad: BadRecords) -> None:
    """`LiteLLM_SpendLogs` exported as CSV, normalized in SQL. prompt_tokens includes the cache
    tokens, which are only in metadata.usage_object; completionStartTime = endTime means the
    call did not stream."""
    con.execute("DROP TABLE IF EXISTS reject_errors")
    con.execute("DROP TABLE IF EXISTS reject_scans")
    meta = "TRY_CAST(metadata AS JSON)"
    usage = "'$.usage_object.cache_{}_input_tokens'"
    read = f"coalesce(TRY_CAST(json_extract({meta}, {usage.format('read')}) AS BIGINT), 0)"
    write = f"coalesce(TRY_CAST(json_extract({meta}, {usage.format('creation')}) AS BIGINT), 0)"
    con.execute(
        f"""
        INSERT INTO records BY NAME
        SELECT 'litellm' AS source, 'litellm' AS producer, request_id AS record_id,
               startTime AS start_time, endTime AS end_time, model, 'request' AS granularity,
               1 AS request_count,
               CASE WHEN completionStartTime < endTime
                    THEN epoch(completionStartTime) - epoch(startTime) END AS ttft_s,
               CASE WHEN completionStartTime IS NULL THEN NULL
                    ELSE completionStartTime < endTime END AS stream,
               CASE WHEN call_type LIKE '%batch%' THEN 'batch' END AS service_tier,
               greatest(prompt_tokens - {read} - {write}, 0) AS input_uncached,
               {read} AS cache_read, {write} AS cache_write_5m, 0 AS cache_write_1h,
               completion_tokens AS output_tokens,
               'inclusive' || CASE WHEN {write} > 0
                   THEN ', cache-write TTL unknown: priced as 5m' ELSE '' END AS token_rule,
               json_extract_string({meta}, '$.spend_logs_metadata.feature') AS feature,
               coalesce(json_extract_string({meta}, '$.user_api_key_alias'), api_key) AS api_key,
               request_tags AS tags, nullif(coalesce(end_user, "user"), '') AS user_id,
               session_id, 'unknown' AS trigger, spend AS cost_usd_reported, ? AS file,
               0 AS line
        FROM read_csv(?, header = true, store_rejects = true, types = {{
            'request_id': 'VARCHAR', 'call_type': 'VARCHAR', 'api_key': 'VARCHAR',
            'spend': 'DOUBLE', 'total_tokens': 'BIGINT', 'prompt_tokens': 'BIGINT',
            'completion_tokens': 'BIGINT', 'startTime': 'TIMESTAMPTZ', 'endTime': 'TIMESTAMPTZ',
            'completionStartTime': 'TIMESTAMPTZ', 'model': 'VARCHAR', 'user': 'VARCHAR',
            'end_user': 'VARCHAR', 'metadata': 'VARCHAR', 'request_tags': 'VARCHAR',
            'session_id': 'VARCHAR', 'custom_llm_provider': 'VARCHAR'}})
        WHERE coalesce(custom_llm_provider, 'anthropic') = 'anthropic' OR model LIKE '%claude%'
        """,
        [str(path), str(path)],
    )
    for line, column, message in con.execute(
        "SELECT line, column_name, error_message FROM reject_errors ORDER BY line LIMIT 1000"
    ).fetchall():
        bad.add(path, int(line), f"{column}: {message}")
    extra = con.execute("SELECT count(*) FROM reject_errors").fetchone()
    if extra and extra[0] > 1000:
        bad.count += int(extra[0]) - 1000
