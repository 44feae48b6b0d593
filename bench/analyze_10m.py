"""Analyse 10 million LiteLLM spend-log rows (CSV) on this machine, with bounded memory.

The file is generated once with DuckDB in a child process (deterministic, cached in the temp
directory). Prints the seconds for nowait's full analysis (normalization, signals, verdicts,
pricing), the seconds of a bare DuckDB scan of the same file (the baseline, in a child process
before and after the analysis, same run), their ratio, and the peak RSS of the analysis alone.
Exits 1 when the analysis takes longer than the target (60 s).

    .venv/bin/python bench/analyze_10m.py [--rows 10000000] [--limit 60]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from nowait.analyze.engine import connect, load
from nowait.analyze.readers import BadRecords
from nowait.analyze.report import build_report

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


SCAN = """
SELECT count(*), sum(prompt_tokens), sum(completion_tokens) FROM read_csv(?, header = true)
"""


def generate(path: Path, rows: int) -> None:
    """Run in a child process, so that the peak RSS printed is the analysis's alone."""
    partial = path.with_suffix(".partial")
    duckdb.execute(GENERATE.replace("{path}", str(partial)), [rows])
    partial.rename(path)


def bare_scan(path: Path) -> None:
    """The baseline, in a child process (its memory is not the analysis's): prints seconds and
    the row count."""
    started = time.perf_counter()
    con = duckdb.connect()
    con.execute("SET memory_limit = '2GB'")
    row = con.execute(SCAN, [str(path)]).fetchone()
    print(f"{time.perf_counter() - started:.3f} {row[0] if row else 0}")


def child(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--limit", type=float, default=60.0, help="target seconds (exit 1 above)")
    parser.add_argument("--generate", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--scan", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate is not None:
        generate(args.generate, args.rows)
        return 0
    if args.scan is not None:
        bare_scan(args.scan)
        return 0
    rows = args.rows
    path = Path(tempfile.gettempdir()) / f"nowait-bench-litellm-{rows}.csv"
    if not path.exists():
        started = time.perf_counter()
        child("--generate", str(path), "--rows", str(rows))
        print(
            f"generated {path} ({path.stat().st_size / 1e9:.2f} GB) "
            f"in {time.perf_counter() - started:.1f} s"
        )
    # The baseline runs before and after the analysis: the machine is shared, so the two show
    # how much the load on it moved during the run; the ratio uses their mean.
    before, scanned = child("--scan", str(path)).split()
    started = time.perf_counter()
    con = connect("2GB")
    bad = BadRecords()
    load(con, [path], fmt="litellm-csv", bad=bad)
    loaded = time.perf_counter() - started
    report = build_report(con, bad=bad)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    con.close()
    after, _ = child("--scan", str(path)).split()
    baseline = (float(before) + float(after)) / 2
    assert report.records == int(scanned) == rows, (report.records, scanned, rows)
    print(f"rows                          {rows:,}  ({path.stat().st_size / 1e9:.2f} GB CSV)")
    print(
        f"bare DuckDB scan (baseline)   {baseline:8.2f} s  (before {float(before):.2f} s, after {float(after):.2f} s)"
    )
    print(f"nowait analyze: load          {loaded:8.2f} s")
    print(f"nowait analyze: report        {seconds - loaded:8.2f} s")
    print(f"nowait analyze: total         {seconds:8.2f} s  (target <= {args.limit:g} s)")
    print(f"ratio nowait / bare scan      {seconds / baseline:8.2f}x")
    print(f"peak RSS                      {peak:8.1f} MiB (DuckDB memory_limit 2 GB)")
    print("verdicts:", ", ".join(f"{w.name}={w.verdict.value}" for w in report.workloads))
    if seconds > args.limit:
        print(f"FAIL: {seconds:.1f} s is over the {args.limit:g} s target")
        return 1
    print(f"OK: {seconds:.1f} s is within the {args.limit:g} s target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
