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
from nowait.analyze.readers.otlp import read_otlp
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
    on_bytes: Callable[[int], None] | None = None,
) -> dict[Path, int]:
    """Load every file; the records each one gave (0: the caller says so, never silently).
    `on_bytes(n)`: `n` more bytes of the current file read (OTLP reports within a file)."""
    loaded: dict[Path, int] = {}
    spans: set[int] = set()  # OTLP spans taken: a span in two exports counts once
    for path in paths:
        kind = fmt or detect(path)
        if kind == "litellm-csv" or (kind == "litellm" and is_csv(path)):
            count = load_litellm_csv(con, path, bad)
        elif kind == "nowait-store" and compression_of(path) != "none":
            raise InputError("a compressed store: decompress it first", file=path)
        elif kind == "otlp":
            count = load_records(con, read_otlp(path, bad, on_bytes, spans))
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
# `timestamp`): the first problem of each row, NULL for a good one. Evaluated only when the
# fast pass (`ROW_OK`, a plain condition) found some.
PROBLEM_SQL = f"""
CASE
    WHEN startTime IS NULL THEN 'startTime: missing'
    WHEN NOT (startTime >= {{earliest}} AND startTime < {{latest}})
        OR NOT coalesce(endTime >= {{earliest}} AND endTime < {{latest}}, true)
        OR NOT coalesce(completionStartTime >= {{earliest}} AND completionStartTime < {{latest}},
                        true)
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
ROW_OK = f"""coalesce(
    startTime >= {{earliest}} AND startTime < {{latest}}
    AND coalesce(endTime >= {{earliest}} AND endTime < {{latest}}, true)
    AND coalesce(completionStartTime >= {{earliest}} AND completionStartTime < {{latest}}, true)
    AND coalesce(prompt_tokens BETWEEN 0 AND {MAX_COUNT}, true)
    AND coalesce(completion_tokens BETWEEN 0 AND {MAX_COUNT}, true)
    AND (meta IS NOT NULL OR coalesce(left(metadata, 1) NOT IN ('{{{{', '['), true))
    AND (meta[1] IS NULL OR coalesce(cache_read BETWEEN 0 AND {MAX_COUNT}, false))
    AND (meta[2] IS NULL OR coalesce(cache_write BETWEEN 0 AND {MAX_COUNT}, false))
    AND coalesce(isfinite(spend) AND spend >= 0, true), false)"""
# Every row of the export, with its metadata parsed once (a list of paths in one call).
LITELLM_ROWS = """
rows AS (
    SELECT startTime, endTime, completionStartTime, model, prompt_tokens,
           completion_tokens, spend, call_type, api_key, request_tags, "user", end_user,
           session_id, metadata, try(json_extract_string(metadata, {paths})) AS meta
    FROM read_csv(?, header = true, store_rejects = true, compression = '{compression}',
                  types = {types})
    WHERE coalesce(custom_llm_provider, 'anthropic') = 'anthropic' OR model LIKE '%claude%'
), calls AS (
    SELECT *, TRY_CAST(meta[1] AS BIGINT) AS cache_read, TRY_CAST(meta[2] AS BIGINT) AS cache_write
    FROM rows
)"""
# Calls that agree on everything the report reads (model, tier, streaming, cache writes, the
# workload keys, whether a user or session is attached) and start in the same hour are one
# group, counted into one record (`request_count`): the table stays small whatever the size
# of the export, and no signal is lost. Each group says whether all its rows are good (`ok`).
# Kept cheap, as this runs on every row: boolean keys, no per-row strings, no ids.
LITELLM_GROUPS = """
CREATE OR REPLACE TEMP TABLE litellm_groups AS
WITH {rows}
SELECT model, completionStartTime < endTime AS stream, call_type LIKE '%batch%' AS batched,
       coalesce(cache_write, 0) > 0 AS writes,
       prompt_tokens < coalesce(cache_read, 0) + coalesce(cache_write, 0) AS smaller,
       meta[3] AS feature, coalesce(meta[4], api_key) AS api_key, request_tags AS tags,
       coalesce(end_user, "user", '') <> '' AS has_user, session_id IS NOT NULL AS has_session,
       epoch_us(startTime) // 3600000000 AS hour,
       count(*) AS n, min(startTime) AS first, max(endTime) AS last,
       avg(CASE WHEN completionStartTime < endTime
                THEN epoch_us(completionStartTime) - epoch_us(startTime) END) / 1e6 AS ttft_s,
       sum(prompt_tokens) AS prompt, sum(cache_read) AS cache_read,
       sum(cache_write) AS cache_write, sum(completion_tokens) AS output, sum(spend) AS spend,
       bool_and({ok}) AS ok
FROM calls {where}
GROUP BY ALL
"""
# The bad rows by problem (run only when there are some).
LITELLM_PROBLEMS = """
WITH {rows}
SELECT problem, count(*) FROM (SELECT {problem} AS problem FROM calls)
WHERE problem IS NOT NULL GROUP BY problem ORDER BY problem
"""
# The groups as records. The input includes the cache tokens, unless it is smaller than them
# (then it cannot: the Python reader's `split_input` rule).
LITELLM_RECORDS = """
INSERT INTO records BY NAME
SELECT 'litellm' AS source, 'litellm' AS producer, ? || '#' || row_number() OVER () AS record_id,
       first AS start_time, last AS end_time, model, 'request' AS granularity,
       n AS request_count, ttft_s, stream, CASE WHEN batched THEN 'batch' END AS service_tier,
       prompt - CASE WHEN smaller THEN 0 ELSE coalesce(cache_read, 0) + coalesce(cache_write, 0)
                END AS input_uncached,
       coalesce(cache_read, 0) AS cache_read, coalesce(cache_write, 0) AS cache_write_5m,
       0 AS cache_write_1h, coalesce(output, 0) AS output_tokens,
       CASE WHEN smaller THEN 'exclusive (input smaller than cache tokens)' ELSE 'inclusive' END
       || CASE WHEN writes THEN ', cache-write TTL unknown: priced as 5m' ELSE '' END
       AS token_rule,
       feature, api_key,
       nullif(array_to_string(try(from_json(tags, '["VARCHAR"]')), ','), '') AS tags,
       CASE WHEN has_user THEN '(set)' END AS user_id,
       CASE WHEN has_session THEN '(set)' END AS session_id,
       'unknown' AS trigger, spend AS cost_usd_reported, ? AS file, 0 AS line
FROM litellm_groups
"""


def load_litellm_csv(con: duckdb.DuckDBPyConnection, path: Path, bad: BadRecords) -> int:
    """`LiteLLM_SpendLogs` exported as CSV, normalized in SQL; the records loaded. prompt_tokens
    includes the cache tokens, which are only in metadata.usage_object; completionStartTime =
    endTime means the call did not stream.

    Rows are checked by the Python reader's rules in the same pass. When some fail (bad input
    is rare: only then), without --skip-bad the Python reader reads the file up to the first
    bad row to name its line; with it, a second pass leaves them out and counts them."""
    con.execute("DROP TABLE IF EXISTS reject_errors")
    con.execute("DROP TABLE IF EXISTS reject_scans")
    bounds = {
        "earliest": f"TIMESTAMPTZ '{EARLIEST.isoformat()}'",
        "latest": f"TIMESTAMPTZ '{LATEST.isoformat()}'",
    }
    ok = ROW_OK.format(**bounds)
    rows = LITELLM_ROWS.format(
        paths="[" + ", ".join(f"'{p}'" for p in METADATA_PATHS) + "]",
        types="{" + ", ".join(f"'{k}': '{v}'" for k, v in LITELLM_TYPES.items()) + "}",
        compression=compression_of(path),
    )
    file = [str(path)]
    try:
        con.execute(LITELLM_GROUPS.format(rows=rows, ok=ok, where=""), file)
        _report_rejects(con, path, bad)
        if _one(con, "SELECT count(*) FROM litellm_groups WHERE NOT ok"):
            sql = LITELLM_PROBLEMS.format(rows=rows, problem=PROBLEM_SQL.format(**bounds))
            problems = [(str(p), int(n)) for p, n in con.execute(sql, file).fetchall()]
            if not bad.skip:
                _name_first_bad_row(path, bad, problems)
            con.execute(LITELLM_GROUPS.format(rows=rows, ok=ok, where=f"WHERE {ok}"), file)
            for problem, count in problems:
                bad.add(path, None, f"{count:,} rows: {problem}")
                bad.count += count - 1
        return _one(con, LITELLM_RECORDS, [str(path), str(path)])
    except duckdb.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read it as a LiteLLM CSV export ({reason})", file=path) from None


def _report_rejects(con: duckdb.DuckDBPyConnection, path: Path, bad: BadRecords) -> None:
    """Rows DuckDB's CSV reader could not read (a cell of the wrong type, say), by line."""
    rejects = con.execute(
        "SELECT line, column_name, error_message FROM reject_errors ORDER BY line LIMIT 20"
    ).fetchall()
    for line, column, message in rejects:
        bad.add(path, int(line), f"{column}: {message}")
    bad.count += max(0, _one(con, "SELECT count(*) FROM reject_errors") - len(rejects))


def _one(con: duckdb.DuckDBPyConnection, sql: str, parameters: list[str] | None = None) -> int:
    row = con.execute(sql, parameters).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _name_first_bad_row(path: Path, bad: BadRecords, problems: list[tuple[str, int]]) -> None:
    """Raise the first bad row's error, by its line: the Python reader has the same rules."""
    for line, row in csv_rows(path, bad):
        try:
            litellm_record(row, path, line)
        except RECORD_ERRORS as exc:
            bad.add(path, line, reason(exc))
    problem, count = problems[0] if problems else ("rows refused", 0)
    bad.add(path, None, f"{count:,} rows: {problem}")
