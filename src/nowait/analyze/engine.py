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
from nowait.analyze.readers import (
    EARLIEST,
    LATEST,
    MAX_COUNT,
    RECORD_ERRORS,
    BadRecords,
    compression_of,
)
from nowait.analyze.readers.logs import csv_rows, is_csv, litellm_record, reason
from nowait.analyze.records import COLUMNS, Record
from nowait.errors import InputError

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
) -> dict[Path, int]:
    """Load every file; the records each one gave (0: the caller says so, never silently)."""
    loaded: dict[Path, int] = {}
    for path in paths:
        kind = fmt or detect(path)
        if kind == "litellm-csv" or (kind == "litellm" and is_csv(path)):
            count = load_litellm_csv(con, path, bad)
        elif kind == "nowait-store" and compression_of(path) != "none":
            raise InputError("a compressed store: decompress it first", file=path)
        else:
            count = load_records(con, READERS[kind](path, bad))
        loaded[path] = loaded.get(path, 0) + count
        if on_file is not None:
            on_file(path)
    return loaded


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
) -> int:
    """Insert records from a Python reader, in chunks (memory stays bounded); how many."""
    count = 0
    with tempfile.TemporaryDirectory(prefix="nowait-analyze-") as tmp:
        part = Path(tmp) / "records.csv"
        rows: list[list[object]] = []
        for record in records:
            rows.append([_cell(getattr(record, c)) for c in COLUMNS])
            if len(rows) >= chunk:
                _flush(con, part, rows)
                count, rows = count + len(rows), []
        if rows:
            _flush(con, part, rows)
            count += len(rows)
    return count


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
# Rows the Python readers would refuse, by the same rules (`readers.number`, `money`,
# `timestamp`): the first problem of each row, NULL for a good one.
PROBLEM_SQL = f"""
CASE
    WHEN startTime IS NULL THEN 'startTime: missing'
    WHEN NOT startTime BETWEEN {{earliest}} AND {{latest}}
        OR NOT coalesce(endTime BETWEEN {{earliest}} AND {{latest}}, true)
        OR NOT coalesce(completionStartTime BETWEEN {{earliest}} AND {{latest}}, true)
        THEN 'a time outside 2020 to 2100 (startTime, endTime or completionStartTime)'
    WHEN prompt_tokens < 0 OR completion_tokens < 0 THEN 'a negative token count'
    WHEN prompt_tokens > {MAX_COUNT} OR completion_tokens > {MAX_COUNT}
        THEN 'a token count larger than {MAX_COUNT:,}'
    WHEN meta IS NULL AND left(metadata, 1) IN ('{{{{', '[') THEN 'metadata: not JSON'
    WHEN meta[1] IS NOT NULL AND NOT coalesce(cache_read BETWEEN 0 AND {MAX_COUNT}, false)
        THEN 'metadata.usage_object.cache_read_input_tokens: not a count'
    WHEN meta[2] IS NOT NULL AND NOT coalesce(cache_write BETWEEN 0 AND {MAX_COUNT}, false)
        THEN 'metadata.usage_object.cache_creation_input_tokens: not a count'
    WHEN NOT coalesce(isfinite(spend) AND spend >= 0, true)
        THEN 'spend: not an amount of money (finite, not negative)'
END"""
# Calls that agree on everything the report reads (model, tier, streaming, cache writes, the
# workload keys, whether a user or session is attached) and start in the same hour are stored
# as one record with their count in `request_count`: the table stays small whatever the size
# of the export, and no signal is lost. The ids kept are one of each group's. Rows with a
# problem are grouped apart, by problem, and never loaded.
LITELLM_SQL = """
CREATE OR REPLACE TEMP TABLE litellm_groups AS
WITH rows AS (
    SELECT *, try(json_extract_string(metadata, {paths})) AS meta
    FROM read_csv(?, header = true, store_rejects = true, compression = '{compression}',
                  types = {types})
    WHERE coalesce(custom_llm_provider, 'anthropic') = 'anthropic' OR model LIKE '%claude%'
), parsed AS (
    SELECT *, TRY_CAST(meta[1] AS BIGINT) AS cache_read, TRY_CAST(meta[2] AS BIGINT) AS cache_write
    FROM rows
), calls AS (
    SELECT request_id, startTime, endTime, model, prompt_tokens, completion_tokens, spend,
           CASE WHEN completionStartTime < endTime
                THEN (epoch_us(completionStartTime) - epoch_us(startTime)) / 1e6 END AS ttft_s,
           CASE WHEN completionStartTime IS NULL THEN NULL
                ELSE completionStartTime < endTime END AS stream,
           CASE WHEN call_type LIKE '%batch%' THEN 'batch' END AS service_tier,
           coalesce(cache_read, 0) AS cache_read, coalesce(cache_write, 0) AS cache_write,
           meta[3] AS feature, coalesce(meta[4], api_key) AS api_key, request_tags AS tags,
           nullif(coalesce(end_user, "user"), '') AS user_id, session_id,
           {problem} AS problem
    FROM parsed
)
SELECT 'litellm' AS source, 'litellm' AS producer, arbitrary(request_id) AS record_id,
       min(startTime) AS start_time, max(endTime) AS end_time, model,
       'request' AS granularity, count(*) AS request_count, avg(ttft_s) AS ttft_s, stream,
       service_tier,
       sum(CASE WHEN smaller THEN prompt_tokens
                ELSE prompt_tokens - cache_read - cache_write END) AS input_uncached,
       sum(cache_read) AS cache_read, sum(cache_write) AS cache_write_5m, 0 AS cache_write_1h,
       sum(completion_tokens) AS output_tokens,
       CASE WHEN smaller THEN 'exclusive (input smaller than cache tokens)' ELSE 'inclusive' END
       || CASE WHEN cache_write > 0
              THEN ', cache-write TTL unknown: priced as 5m' ELSE '' END AS token_rule,
       feature, api_key,
       nullif(array_to_string(try(from_json(tags, '["VARCHAR"]')), ','), '') AS tags,
       arbitrary(user_id) AS user_id, arbitrary(session_id) AS session_id,
       'unknown' AS trigger, sum(spend) AS cost_usd_reported, ? AS file, 0 AS line, problem
FROM (SELECT *, prompt_tokens < cache_read + cache_write AS smaller FROM calls)
GROUP BY model, stream, service_tier, cache_write > 0, smaller, feature, api_key, tags,
         user_id IS NULL, session_id IS NULL, date_trunc('hour', startTime), problem
"""


def load_litellm_csv(con: duckdb.DuckDBPyConnection, path: Path, bad: BadRecords) -> int:
    """`LiteLLM_SpendLogs` exported as CSV, normalized in SQL; the records loaded. prompt_tokens
    includes the cache tokens, which are only in metadata.usage_object; completionStartTime =
    endTime means the call did not stream. `metadata` is parsed once per row (a list of paths
    in one call), and calls alike in every signal within an hour are counted into one record.

    Rows are checked by the Python reader's rules in the same pass; when some fail, the Python
    reader goes through the file to name the first bad line (only then: bad input is rare)."""
    con.execute("DROP TABLE IF EXISTS reject_errors")
    con.execute("DROP TABLE IF EXISTS reject_scans")
    types = "{" + ", ".join(f"'{k}': '{v}'" for k, v in LITELLM_TYPES.items()) + "}"
    paths = "[" + ", ".join(f"'{p}'" for p in METADATA_PATHS) + "]"
    problem = PROBLEM_SQL.format(
        earliest=f"TIMESTAMPTZ '{EARLIEST.isoformat()}'",
        latest=f"TIMESTAMPTZ '{LATEST.isoformat()}'",
    )
    compression = compression_of(path)
    sql = LITELLM_SQL.format(paths=paths, types=types, compression=compression, problem=problem)
    try:
        con.execute(sql, [str(path), str(path)])
        rejects = con.execute(
            "SELECT line, column_name, error_message FROM reject_errors ORDER BY line LIMIT 20"
        ).fetchall()
        rejected = _one(con, "SELECT count(*) FROM reject_errors")
        problems = con.execute(
            "SELECT problem, sum(request_count) FROM litellm_groups WHERE problem IS NOT NULL "
            "GROUP BY problem ORDER BY problem"
        ).fetchall()
        loaded = _one(
            con,
            "INSERT INTO records BY NAME "
            "SELECT * EXCLUDE (problem) FROM litellm_groups WHERE problem IS NULL",
        )
    except duckdb.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read it as a LiteLLM CSV export ({reason})", file=path) from None
    for line, column, message in rejects:
        bad.add(path, int(line), f"{column}: {message}")
    bad.count += max(0, rejected - len(rejects))
    if problems:
        _report_problems(path, bad, [(str(p), int(n)) for p, n in problems])
    return loaded


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _report_problems(path: Path, bad: BadRecords, problems: list[tuple[str, int]]) -> None:
    """Rows the SQL refused: the Python reader names the first by its line (the same rules);
    the others are counted under their problem."""
    total = sum(n for _, n in problems)
    named = 0
    for line, row in csv_rows(path, bad):
        try:
            litellm_record(row, path, line)
        except RECORD_ERRORS as exc:
            bad.add(path, line, reason(exc))
            named = 1
            break
    if not named:
        problem, count = problems[0]
        bad.add(path, None, f"{count:,} rows: {problem}")
        named = count
    for problem, count in problems:
        if len(bad.examples) < 20:
            bad.examples.append(f"{path}: {count:,} rows: {problem}")
    bad.count += total - named
