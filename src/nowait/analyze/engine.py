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

from nowait.analyze.detect import READERS, detect
from nowait.analyze.readers import BadRecords
from nowait.analyze.readers.logs import is_csv
from nowait.analyze.records import COLUMNS, Record

NULL = "\\N"
TYPES = {
    "start_time": "TIMESTAMPTZ",
    "end_time": "TIMESTAMPTZ",
    "request_count": "BIGINT",
    "ttft_s": "DOUBLE",
    "stream": "BOOLEAN",
    "awaited": "BOOLEAN",
    "needed_within_s": "DOUBLE",
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
        if kind == "litellm-csv" or (kind == "litellm" and is_csv(path)):
            load_litellm_csv(con, path, bad)
        else:
            load_records(con, READERS[kind](path, bad))
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


def load_records(
    con: duckdb.DuckDBPyConnection, records: Iterable[Record], chunk: int = 200_000
) -> None:
    """Insert records from a Python reader, in chunks (memory stays bounded)."""
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


LITELLM_TYPES = {
    "request_id": "VARCHAR", "call_type": "VARCHAR", "api_key": "VARCHAR", "spend": "DOUBLE",
    "total_tokens": "BIGINT", "prompt_tokens": "BIGINT", "completion_tokens": "BIGINT",
    "startTime": "TIMESTAMPTZ", "endTime": "TIMESTAMPTZ", "completionStartTime": "TIMESTAMPTZ",
    "model": "VARCHAR", "user": "VARCHAR", "end_user": "VARCHAR", "metadata": "VARCHAR",
    "request_tags": "VARCHAR", "session_id": "VARCHAR", "custom_llm_provider": "VARCHAR",
}  # fmt: skip
# Everything the record needs from `metadata`, extracted in one parse per row (`try`: a row
# whose metadata is not JSON counts no cache tokens and has no feature, as if it had none).
METADATA_PATHS = (
    "$.usage_object.cache_read_input_tokens",
    "$.usage_object.cache_creation_input_tokens",
    "$.spend_logs_metadata.feature",
    "$.user_api_key_alias",
)
# Calls that agree on everything the report reads (model, tier, streaming, cache writes, the
# workload keys, whether a user or session is attached) and start in the same hour are stored
# as one record with their count in `request_count`: the table stays small whatever the size
# of the export, and no signal is lost. The ids kept are the first of each group.
LITELLM_SQL = """
INSERT INTO records BY NAME
WITH rows AS (
    SELECT *, try(json_extract_string(metadata, {paths})) AS meta
    FROM read_csv(?, header = true, store_rejects = true, compression = '{compression}',
                  types = {types})
    WHERE coalesce(custom_llm_provider, 'anthropic') = 'anthropic' OR model LIKE '%claude%'
), calls AS (
    SELECT request_id, startTime, endTime, model, prompt_tokens, completion_tokens, spend,
           CASE WHEN completionStartTime < endTime
                THEN (epoch_us(completionStartTime) - epoch_us(startTime)) / 1e6 END AS ttft_s,
           CASE WHEN completionStartTime IS NULL THEN NULL
                ELSE completionStartTime < endTime END AS stream,
           CASE WHEN call_type LIKE '%batch%' THEN 'batch' END AS service_tier,
           coalesce(TRY_CAST(meta[1] AS BIGINT), 0) AS cache_read,
           coalesce(TRY_CAST(meta[2] AS BIGINT), 0) AS cache_write,
           meta[3] AS feature, coalesce(meta[4], api_key) AS api_key, request_tags AS tags,
           nullif(coalesce(end_user, "user"), '') AS user_id, session_id
    FROM rows
)
SELECT 'litellm' AS source, 'litellm' AS producer, min(request_id) AS record_id,
       min(startTime) AS start_time, max(endTime) AS end_time, model,
       'request' AS granularity, count(*) AS request_count, avg(ttft_s) AS ttft_s, stream,
       service_tier, sum(greatest(prompt_tokens - cache_read - cache_write, 0)) AS input_uncached,
       sum(cache_read) AS cache_read, sum(cache_write) AS cache_write_5m, 0 AS cache_write_1h,
       sum(completion_tokens) AS output_tokens,
       'inclusive' || CASE WHEN cache_write > 0
           THEN ', cache-write TTL unknown: priced as 5m' ELSE '' END AS token_rule,
       feature, api_key,
       nullif(array_to_string(try(from_json(tags, '["VARCHAR"]')), ','), '') AS tags,
       min(user_id) AS user_id, min(session_id) AS session_id,
       'unknown' AS trigger, sum(spend) AS cost_usd_reported, ? AS file, 0 AS line
FROM calls
GROUP BY model, stream, service_tier, cache_write > 0, feature, api_key, tags,
         user_id IS NULL, session_id IS NULL, date_trunc('hour', startTime)
"""


def load_litellm_csv(con: duckdb.DuckDBPyConnection, path: Path, bad: BadRecords) -> None:
    """`LiteLLM_SpendLogs` exported as CSV, normalized in SQL. prompt_tokens includes the cache
    tokens, which are only in metadata.usage_object; completionStartTime = endTime means the
    call did not stream. `metadata` is parsed once per row (a list of paths in one call), and
    calls alike in every signal within an hour are counted into one record."""
    con.execute("DROP TABLE IF EXISTS reject_errors")
    con.execute("DROP TABLE IF EXISTS reject_scans")
    types = "{" + ", ".join(f"'{k}': '{v}'" for k, v in LITELLM_TYPES.items()) + "}"
    paths = "[" + ", ".join(f"'{p}'" for p in METADATA_PATHS) + "]"
    with path.open("rb") as raw:
        compression = "gzip" if raw.read(2) == b"\x1f\x8b" else "none"
    sql = LITELLM_SQL.format(paths=paths, types=types, compression=compression)
    con.execute(sql, [str(path), str(path)])
    for line, column, message in con.execute(
        "SELECT line, column_name, error_message FROM reject_errors ORDER BY line LIMIT 1000"
    ).fetchall():
        bad.add(path, int(line), f"{column}: {message}")
    extra = con.execute("SELECT count(*) FROM reject_errors").fetchone()
    if extra and extra[0] > 1000:
        bad.count += int(extra[0]) - 1000
