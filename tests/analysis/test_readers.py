"""Each reader on realistic samples, with each producer's cache-token meaning."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest

from nowait.analysis.detect import detect
from nowait.analysis.engine import connect, load
from nowait.analysis.readers import BadRecords
from nowait.analysis.readers.admin import read_usage_report
from nowait.analysis.readers.logs import read_langfuse, read_litellm, read_nowait
from nowait.analysis.readers.otlp import read_otlp
from nowait.errors import InputError

SAMPLES = Path(__file__).parent / "samples"


def one(records: list) -> object:  # type: ignore[type-arg]
    assert len(records) == 1
    return records[0]


def test_otlp_openllmetry_counts_cache_inside_input_and_reads_the_cronjob() -> None:
    r = one(list(read_otlp(SAMPLES / "otlp-openllmetry.jsonl", BadRecords())))
    # 12840 reported = 40 uncached + 12000 cache read + 800 cache write (log-sources §1.5)
    assert (r.input_uncached, r.cache_read, r.cache_write_5m, r.output_tokens) == (
        40,
        12000,
        800,
        310,
    )
    assert r.token_rule.startswith("inclusive") and "TTL unknown" in r.token_rule
    assert r.trigger == "cron" and r.workflow == "tag_ticket" and r.service == "ticket-tagger"
    assert r.model == "claude-sonnet-4-6" and r.record_id == "msg_01ExampleAbc"
    assert r.stream is False  # semconv: unset means not streaming


def test_otlp_openinference_and_http_parent_with_streaming() -> None:
    r = one(list(read_otlp(SAMPLES / "otlp-openinference.jsonl", BadRecords())))
    assert (r.input_uncached, r.cache_read, r.cache_write_5m) == (1000, 4000, 500)
    assert r.trigger == "http" and r.http_route == "/api/chat"
    assert r.stream is True and r.user_id == "u_42"
    assert r.finish_reason == "tool_use"


def test_otlp_logfire_raw_usage_is_exact_and_shows_the_batch_tier() -> None:
    r = one(list(read_otlp(SAMPLES / "otlp-logfire.jsonl", BadRecords())))
    assert (r.input_uncached, r.cache_write_5m, r.cache_write_1h, r.cache_read) == (
        200,
        0,
        1000,
        300,
    )
    assert r.service_tier == "batch" and r.token_rule == "anthropic usage object"


def test_otlp_logfire_before_the_fix_counted_input_without_cache() -> None:
    # Logfire before pydantic/logfire#1812: input 150 < cache 900, so it cannot include them.
    r = one(list(read_otlp(SAMPLES / "otlp-logfire-old.jsonl", BadRecords())))
    assert (r.input_uncached, r.cache_read) == (150, 900)
    assert r.token_rule == "inferred-exclusive"


def test_litellm_json_prompt_tokens_include_cache_from_the_usage_object() -> None:
    r = one(list(read_litellm(SAMPLES / "litellm.json", BadRecords())))
    assert (r.input_uncached, r.cache_read, r.cache_write_5m, r.output_tokens) == (
        40,
        12000,
        800,
        310,
    )
    assert r.feature == "ticket_tagging" and r.api_key == "ticket-tagger-prod"
    assert r.stream is False and r.ttft_s is None  # completionStartTime == endTime
    assert r.cost_usd_reported == pytest.approx(0.00915)


def test_litellm_csv_goes_through_sql_with_the_same_meaning(tmp_path: Path) -> None:
    row = json.loads((SAMPLES / "litellm.json").read_text())[0]
    path = tmp_path / "spend.csv"
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(row))
        writer.writeheader()
        writer.writerow(
            {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in row.items()}
        )
    assert detect(path) == "litellm-csv"
    con = connect()
    load(con, [path], fmt=None, bad=BadRecords())
    got = con.execute(
        "SELECT input_uncached, cache_read, cache_write_5m, output_tokens, feature, stream "
        "FROM records"
    ).fetchall()
    assert got == [(40, 12000, 800, 310, "ticket_tagging", False)]


def test_langfuse_input_is_uncached_and_streaming_from_first_token() -> None:
    r = one(list(read_langfuse(SAMPLES / "langfuse.jsonl", BadRecords())))
    assert (r.input_uncached, r.cache_read, r.output_tokens) == (220, 9800, 540)
    assert r.stream is True and r.ttft_s == pytest.approx(0.61)
    assert r.user_id == "u_4821" and r.trigger == "http"


def test_admin_usage_report_buckets_keep_the_ttl_split() -> None:
    r = one(list(read_usage_report(SAMPLES / "usage-report.json", BadRecords())))
    assert (r.input_uncached, r.cache_write_5m, r.cache_write_1h, r.cache_read) == (
        1523000,
        210000,
        0,
        8400000,
    )
    assert (
        r.granularity == "bucket_1d"
        and r.request_count is None
        and r.api_key == "apikey_01ExampleTagger"
    )


def test_nowait_results_use_the_api_usage_object() -> None:
    r = one(list(read_nowait(SAMPLES / "nowait-results.jsonl", BadRecords())))
    assert (r.input_uncached, r.output_tokens, r.service_tier, r.feature) == (
        12,
        40,
        "batch",
        "digest",
    )


def test_formats_are_detected_and_gzip_is_read(tmp_path: Path) -> None:
    expected = {
        "otlp-openllmetry.jsonl": "otlp",
        "litellm.json": "litellm",
        "langfuse.jsonl": "langfuse",
        "usage-report.json": "anthropic-usage",
        "nowait-results.jsonl": "nowait",
    }
    for name, kind in expected.items():
        assert detect(SAMPLES / name) == kind
    packed = tmp_path / "trace.jsonl.gz"
    packed.write_bytes(gzip.compress((SAMPLES / "otlp-openllmetry.jsonl").read_bytes()))
    assert detect(packed) == "otlp"
    assert len(list(read_otlp(packed, BadRecords()))) == 1


def test_malformed_records_name_file_and_line_or_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "spend.jsonl"
    good = json.loads((SAMPLES / "litellm.json").read_text())[0]
    path.write_text(
        json.dumps(good) + "\n{broken\n" + json.dumps({**good, "prompt_tokens": -5}) + "\n"
    )
    with pytest.raises(InputError, match=r"spend.jsonl:2: not valid JSON"):
        list(read_litellm(path, BadRecords()))
    bad = BadRecords(skip=True)
    assert len(list(read_litellm(path, bad))) == 1
    assert bad.count == 2 and "spend.jsonl:3" in bad.examples[1]


def test_unknown_format_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "what.json"
    path.write_text('{"hello": 1}\n')
    with pytest.raises(InputError, match="cannot tell the log format"):
        detect(path)


def test_cost_report_rows_become_tokens_at_the_table_rate() -> None:
    from nowait.analysis.readers.admin import read_cost_report

    assert detect(SAMPLES / "cost-report.json") == "anthropic-cost"
    records = list(read_cost_report(SAMPLES / "cost-report.json", BadRecords()))
    assert len(records) == 2  # the web_search row is not a token cost
    standard, batch = records
    # $4.5690 of Sonnet 4.6 input at $3 per million = 1,523,000 tokens
    assert standard.input_uncached == 1_523_000 and standard.service_tier == "standard"
    # $1.20 of batch output at $7.50 per million = 160,000 tokens
    assert batch.output_tokens == 160_000 and batch.service_tier == "batch"
    assert standard.cost_usd_reported == pytest.approx(4.569)
