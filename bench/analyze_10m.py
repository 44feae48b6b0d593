"""Analyse 10 million LiteLLM spend-log rows (CSV) on this machine, with bounded memory.

The file is generated once with DuckDB (seeded, cached in the temp directory). Prints the
seconds for nowait's full analysis (normalization, signals, verdicts, pricing), the seconds of
a bare DuckDB scan of the same file (the baseline, same run), their ratio, and the peak RSS.

    .venv/bin/python bench/analyze_10m.py [--rows 10000000]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import duckdb

from nowait.analysis.engine import connect, load
from nowait.analysis.readers import BadRecords
from nowait.analysis.report import build_report

GENERATE = """
COPY (
  SELECT 'req-' || i AS request_id,
         CASE WHEN i % 10 = 9 THEN 'acreate_batch' ELSE 'anthropic_messages' END AS call_type,
         'hashed-key-' || (i % 7) AS api_key,
         0.001 AS spend, 0 AS total_tokens,
         1000 + (i * 7919) % 9000 AS prompt_tokens,
         100 + (i * 104729) % 900 AS completion_tokens,
         t AS startTime, t + INTERVAL 4 SECOND AS endTime,
         CASE WHEN i % 10 < 4 THEN t + INTERVAL 600 MILLISECOND ELSE t + INTERVAL 4 SECOND END
             AS completionStartTime,
         CASE WHEN i % 3 = 0 THEN 'claude-haiku-5-5' ELSE 'claude-sonnet-5-5' END AS model,
         CASE WHEN i % 10 < 4 THEN 'u' || (i % 5000) ELSE '' END AS "user",
         NULL AS end_user,
         '{"user_api_key_alias": "svc-' || (i % 10) || '", "spend_logs_metadata": {"feature": "'
           || ['chat', 'chat', 'chat', 'chat', 'digest', 'triage', 'triage', 'enrich',
               'enrich', 'evals'][(i % 10) + 1]
           || '"}, "usage_object": {"cache_read_input_tokens": '
           || CASE WHEN i % 2 = 0 THEN 500 ELSE 0 END
           || ', "cache_creation_input_tokens": 0}}' AS metadata,
         '[]' AS request_tags, NULL AS session_id, 'anthropic' AS custom_llm_provider
  FROM (SELECT range AS i,
               TIMESTAMPTZ '2026-10-01 00:00:00+00'
                 + to_seconds(CASE WHEN range % 10 = 4
                                   THEN (range % 30) * 86400 + 7200 + range % 1800
                                   ELSE (range * 2654435761) % (30 * 86400) END) AS t
        FROM range(?))
) TO '{path}' (HEADER, DELIMITER ',')
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    rows = parser.parse_args().rows
    path = Path(tempfile.gettempdir()) / f"nowait-bench-litellm-{rows}.csv"
    if not path.exists():
        started = time.perf_counter()
        duckdb.execute(GENERATE.replace("{path}", str(path)), [rows])
        print(
            f"generated {path} ({path.stat().st_size / 1e9:.2f} GB) "
            f"in {time.perf_counter() - started:.1f} s"
        )
    started = time.perf_counter()
    base = duckdb.connect()
    base.execute("SET memory_limit = '2GB'")
    total = base.execute(
        "SELECT count(*), sum(prompt_tokens), sum(completion_tokens) "
        "FROM read_csv(?, header = true)",
        [str(path)],
    ).fetchone()
    baseline = time.perf_counter() - started
    started = time.perf_counter()
    con = connect("2GB")
    bad = BadRecords()
    load(con, [path], fmt="litellm-csv", bad=bad)
    loaded = time.perf_counter() - started
    report = build_report(con, bad=bad)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert total is not None and report.records == total[0] == rows
    print(f"rows                          {rows:,}  ({path.stat().st_size / 1e9:.2f} GB CSV)")
    print(f"bare DuckDB scan (baseline)   {baseline:8.2f} s")
    print(f"nowait analyze: load          {loaded:8.2f} s")
    print(f"nowait analyze: total         {seconds:8.2f} s  (target <= 60 s)")
    print(f"ratio nowait / bare scan      {seconds / baseline:8.2f}x")
    print(f"peak RSS                      {peak:8.1f} MiB (DuckDB memory_limit 2 GB)")
    print("verdicts:", ", ".join(f"{w.name}={w.verdict.value}" for w in report.workloads))


if __name__ == "__main__":
    main()
