"""Each reader on realistic samples, with each producer's cache-token meaning."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest
from otlp_samples import LEGACY, otlp_line, span

from nowait.analyze.detect import detect
from nowait.analyze.engine import connect, load
from nowait.analyze.readers import BadRecords
from nowait.analyze.readers.admin import read_usage_report
from nowait.analyze.readers.logs import read_langfuse, read_litellm, read_nowait
from nowait.analyze.readers.otlp import read_otlp
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
    # OpenLLMetry sets gen_ai.is_streaming from the `stream` kwarg only: a messages.stream()
    # call carries nothing, so silence is unknown, not "not streamed"
    assert r.stream is None


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
    # Logfire 3.0.0 is before pydantic/logfire#1812 (v4.31.0): input 150 excludes the 900 read.
    r = one(list(read_otlp(SAMPLES / "otlp-logfire-old.jsonl", BadRecords())))
    assert (r.input_uncached, r.cache_read) == (150, 900)
    assert r.token_rule.startswith("exclusive (logfire < 4.31")


def _logfire(tmp_path: Path, version: str | None, reported: int) -> object:
    text = (SAMPLES / "otlp-logfire-old.jsonl").read_text().replace('"150"', f'"{reported}"')
    if version is None:
        text = text.replace(', "version": "3.0.0"', "")
    else:
        text = text.replace('"3.0.0"', f'"{version}"')
    path = tmp_path / "logfire.jsonl"
    path.write_text(text)
    return one(list(read_otlp(path, BadRecords())))


def test_otlp_logfire_version_decides_even_when_input_exceeds_the_cache(tmp_path: Path) -> None:
    # 5,000 input with 900 read: the numbers fit both meanings; the scope version decides.
    old = _logfire(tmp_path, "4.30.2", 5000)
    assert (old.input_uncached, old.cache_read) == (5000, 900)  # exclusive: all uncached
    assert old.token_rule.startswith("exclusive")
    new = _logfire(tmp_path, "4.31.0", 5000)
    assert (new.input_uncached, new.cache_read) == (4100, 900)  # inclusive: 5000 − 900
    assert new.token_rule.startswith("inclusive")
    # no version: only the numbers are left
    unknown = _logfire(tmp_path, None, 5000)
    assert unknown.input_uncached == 4100 and unknown.token_rule == "inferred-inclusive"
    assert _logfire(tmp_path, None, 150).token_rule == "inferred-exclusive"


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
        "SELECT input_uncached, cache_read, cache_write_5m, output_tokens, feature, stream, tags "
        "FROM records"
    ).fetchall()
    assert got == [(40, 12000, 800, 310, "ticket_tagging", False, "ticket-tagger,nightly")]
    assert one(list(read_litellm(SAMPLES / "litellm.json", BadRecords()))).tags == (  # type: ignore[attr-defined]
        "ticket-tagger,nightly"
    )


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


@pytest.mark.parametrize("mtime", [0x0A, 0x10A, 1_700_000_010])
def test_a_gzip_archive_is_never_taken_for_binary_otlp_whatever_its_stamp(
    tmp_path: Path, mtime: int
) -> None:
    """gzip's header carries the compression time: its low byte once matched binary OTLP's
    first field tag, and a gzip'd JSON trace was read as length-prefixed protobuf."""
    packed = tmp_path / "trace.jsonl.gz"
    raw = (SAMPLES / "otlp-openllmetry.jsonl").read_bytes()
    packed.write_bytes(gzip.compress(raw, mtime=mtime))
    assert len(list(read_otlp(packed, BadRecords()))) == 1


def test_malformed_records_name_file_and_line_or_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "spend.jsonl"
    good = json.loads((SAMPLES / "litellm.json").read_text())[0]
    path.write_text(
        json.dumps(good) + "\n{broken\n" + json.dumps({**good, "prompt_tokens": -5}) + "\n"
    )
    with pytest.raises(InputError, match=r"spend.jsonl:2: not JSON"):
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
    from nowait.analyze.readers.admin import read_cost_report

    assert detect(SAMPLES / "cost-report.json") == "anthropic-cost"
    records = list(read_cost_report(SAMPLES / "cost-report.json", BadRecords()))
    assert len(records) == 2  # the web_search row is not a token cost
    standard, batch = records
    # $4.5690 of Sonnet 4.6 input at $3 per million = 1,523,000 tokens
    assert standard.input_uncached == 1_523_000 and standard.service_tier == "standard"
    # $1.20 of batch output at $7.50 per million = 160,000 tokens
    assert batch.output_tokens == 160_000 and batch.service_tier == "batch"
    assert standard.cost_usd_reported == pytest.approx(4.569)


# ---- legacy producer names ---------------------------------------------------------------
def test_otlp_openllmetry_legacy_names(tmp_path: Path) -> None:
    # OpenLLMetry ≤ 0.4x: gen_ai.system "Anthropic", llm.request.type, prompt/completion tokens
    # that include the cache, underscore cache names, and llm.is_streaming.
    path = tmp_path / "legacy.jsonl"
    path.write_text(
        otlp_line([span("01" * 8, {**LEGACY, "llm.is_streaming": True})])
        + "\n"
        + otlp_line([span("02" * 8, {**LEGACY, "llm.is_streaming": False})])
        + "\n"
    )
    streamed, batch = read_otlp(path, BadRecords())
    assert (streamed.input_uncached, streamed.cache_read, streamed.cache_write_5m) == (
        500,
        3000,
        1500,
    )
    assert streamed.output_tokens == 120 and streamed.token_rule.startswith("inclusive")
    assert (streamed.stream, batch.stream) == (True, False)
    other = {**LEGACY, "llm.request.type": "embedding"}
    path.write_text(otlp_line([span("03" * 8, other)]) + "\n")
    assert list(read_otlp(path, BadRecords())) == []  # not a Messages call


def test_otlp_streaming_is_unknown_unless_the_producer_says(tmp_path: Path) -> None:
    semconv = {
        "gen_ai.provider.name": "anthropic", "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "claude-sonnet-4-6", "gen_ai.usage.input_tokens": 10,
    }  # fmt: skip
    inference = {
        "llm.provider": "anthropic", "openinference.span.kind": "LLM",
        "llm.model_name": "claude-sonnet-4-6", "llm.token_count.prompt": 10,
    }  # fmt: skip
    mine, oi = ("my.instrumentation", "1.0"), ("openinference.instrumentation.anthropic", "3.1")
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        "\n".join(
            [
                # OpenLLMetry, messages.stream(): no is_streaming at all
                otlp_line([span("01" * 8, LEGACY)]),
                # a semconv ≥ 1.41 producer sets gen_ai.request.stream only when streaming...
                otlp_line([span("02" * 8, {**semconv, "gen_ai.request.stream": True})], scope=mine),
                # ...so its spans without it did not stream
                otlp_line([span("03" * 8, semconv)], scope=mine),
                # OpenInference names the span after the SDK method
                otlp_line([span("04" * 8, inference, name="messages.stream")], scope=oi),
            ]
        )
        + "\n"
    )
    got = [r.stream for r in read_otlp(path, BadRecords())]
    assert got == [None, True, False, True]


def test_otlp_span_kind_given_as_a_name_is_accepted(tmp_path: Path) -> None:
    text = (SAMPLES / "otlp-openinference.jsonl").read_text()
    assert '"kind": 2' in text
    path = tmp_path / "kinds.jsonl"
    path.write_text(text.replace('"kind": 2', '"kind": "SPAN_KIND_SERVER"'))
    bad = BadRecords()
    r = one(list(read_otlp(path, bad)))
    assert (r.trigger, r.http_route, bad.count) == ("http", "/api/chat", 0)
    path.write_text(text.replace('"kind": 2', '"kind": "SpanKind.SERVER"'))
    assert one(list(read_otlp(path, BadRecords()))).trigger == "http"
    path.write_text(text.replace('"kind": 2', '"kind": "SIDEWAYS"'))
    with pytest.raises(InputError, match="unknown span kind"):
        list(read_otlp(path, BadRecords()))


# ---- Langfuse cache buckets and TTFT ----------------------------------------------------
def _langfuse(tmp_path: Path, **changes: object) -> object:
    row = {**json.loads((SAMPLES / "langfuse.jsonl").read_text().splitlines()[0]), **changes}
    path = tmp_path / "obs.jsonl"
    path.write_text(json.dumps(row) + "\n")
    return one(list(read_langfuse(path, BadRecords())))


def test_langfuse_cache_writes_keep_their_ttl(tmp_path: Path) -> None:
    usage = {"input": 220, "input_cache_read": 9800, "input_cache_creation_5m": 700,
             "input_cache_creation_1h": 300, "output": 540}  # fmt: skip
    r = _langfuse(tmp_path, usage_details=usage)
    assert (r.input_uncached, r.cache_read, r.cache_write_5m, r.cache_write_1h) == (
        220,
        9800,
        700,
        300,
    )


def test_langfuse_ttft_in_milliseconds_from_older_exports(tmp_path: Path) -> None:
    # integrations created before 2026-04-01 export time_to_first_token in ms
    older = _langfuse(tmp_path, completion_start_time=None, time_to_first_token=610)
    assert older.ttft_s == pytest.approx(0.61)
    newer = _langfuse(tmp_path, completion_start_time=None, time_to_first_token=0.61)
    assert newer.ttft_s == pytest.approx(0.61)
    # the timestamps, when there, decide: no unit to guess
    timed = _langfuse(tmp_path, time_to_first_token=999)
    assert timed.ttft_s == pytest.approx(0.61)


# ---- Admin analytics API -----------------------------------------------------------------
ANALYTICS = {
    "data": [
        {"starting_at": "2026-11-20T00:00:00Z", "ending_at": "2026-11-21T00:00:00Z",
         "group": {"api_key_id": "apikey_01", "workspace_id": "wrkspc_01",
                   "model": "claude-sonnet-4-6", "service_tier": "standard",
                   "product": "messages_api"},
         "usage": {"uncached_input_tokens": 1523000,
                   "cache_creation": {"ephemeral_5m_input_tokens": 210000,
                                      "ephemeral_1h_input_tokens": 40000},
                   "cache_read_input_tokens": 8400000, "output_tokens": 612000,
                   "requests": 4210, "server_tool_use": {"web_search_requests": 0},
                   "total_tokens": 10785000}},
        {"starting_at": "2026-11-20T00:00:00Z", "ending_at": "2026-11-21T00:00:00Z",
         "group": {"api_key_id": "apikey_02", "model": "claude-sonnet-4-6",
                   "service_tier": None, "product": "message_batches_api"},
         "usage": {"uncached_input_tokens": 1000, "cache_read_input_tokens": 0,
                   "output_tokens": 100, "requests": 3}},
    ],
    "has_more": False, "next_page": None, "data_refreshed_at": "2026-11-21T00:05:00Z",
}  # fmt: skip


def test_admin_analytics_usage_items_are_read(tmp_path: Path) -> None:
    path = tmp_path / "analytics.json"
    path.write_text(json.dumps(ANALYTICS))
    assert detect(path) == "anthropic-usage"
    bad = BadRecords()
    standard, batched = read_usage_report(path, bad)
    assert bad.count == 0
    assert (standard.input_uncached, standard.cache_write_5m, standard.cache_write_1h) == (
        1523000,
        210000,
        40000,
    )
    assert (standard.cache_read, standard.output_tokens, standard.request_count) == (
        8400000,
        612000,
        4210,
    )
    assert (standard.api_key, standard.workspace, standard.granularity) == (
        "apikey_01",
        "wrkspc_01",
        "bucket_1d",
    )
    assert batched.service_tier == "batch" and batched.request_count == 3
    # and through the engine: the requests count, the batch product already at batch price
    con = connect()
    load(con, [path], fmt=None, bad=BadRecords())
    assert con.execute("SELECT sum(request_count) FROM records").fetchone() == (4213,)


def test_admin_pages_without_usage_are_bad_records_with_a_reason(tmp_path: Path) -> None:
    page = {"data": [{"starting_at": "2026-11-20T00:00:00Z", "ending_at": "2026-11-21T00:00:00Z",
                      "group": {"model": "claude-sonnet-4-6"}, "totals": {}}],
            "has_more": False}  # fmt: skip
    path = tmp_path / "odd.json"
    path.write_text(json.dumps(page))
    with pytest.raises(InputError, match=r"odd.json:1: .*neither results .* nor usage"):
        list(read_usage_report(path, BadRecords()))
    bad = BadRecords(skip=True)
    assert list(read_usage_report(path, bad)) == [] and bad.count == 1


def test_admin_analytics_cost_items(tmp_path: Path) -> None:
    from nowait.analyze.readers.admin import read_cost_report

    def item(group: dict[str, object], amount: str) -> dict[str, object]:
        return {"starting_at": "2026-11-20T00:00:00Z", "ending_at": "2026-11-21T00:00:00Z",
                "group": group, "cost": {"amount": amount, "list_amount": amount,
                                         "currency": "USD", "requests": 12}}  # fmt: skip

    page = {
        "data": [
            # $4.569 of Sonnet 4.6 uncached input at $3 per million = 1,523,000 tokens
            item({"model": "claude-sonnet-4-6", "token_type": "uncached_input_tokens"}, "456.9"),
            item({"workspace_id": "wrkspc_01"}, "100"),  # not grouped by token type
        ],
        "has_more": False,
    }
    path = tmp_path / "cost.json"
    path.write_text(json.dumps(page))
    assert detect(path) == "anthropic-cost"
    bad = BadRecords(skip=True)
    [record] = read_cost_report(path, bad)
    assert record.input_uncached == 1_523_000 and record.request_count == 12
    assert bad.count == 1 and "group_by[]=model and group_by[]=token_type" in bad.examples[0]


# ---- nowait's own store, and LiteLLM CSV edge cases ---------------------------------------
def test_litellm_csv_bad_row_names_file_and_line(tmp_path: Path) -> None:
    row = json.loads((SAMPLES / "litellm.json").read_text())[0]
    path = tmp_path / "spend.csv"
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(row))
        writer.writeheader()
        cells = {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in row.items()}
        writer.writerow(cells)
        writer.writerow({**cells, "request_id": "r2", "prompt_tokens": "lots"})
    with pytest.raises(InputError, match=r"spend.csv:3: .*prompt_tokens"):
        load(connect(), [path], fmt=None, bad=BadRecords())
    bad = BadRecords(skip=True)
    con = connect()
    load(con, [path], fmt=None, bad=bad)
    assert bad.count == 1 and con.execute("SELECT count(*) FROM records").fetchone() == (1,)


def test_litellm_csv_without_the_extension_when_the_format_is_forced(tmp_path: Path) -> None:
    row = json.loads((SAMPLES / "litellm.json").read_text())[0]
    path = tmp_path / "spend-export.txt"
    with path.open("w", newline="", encoding="utf-8-sig") as out:  # with a BOM, as Excel saves
        writer = csv.DictWriter(out, fieldnames=list(row))
        writer.writeheader()
        writer.writerow(
            {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in row.items()}
        )
    for packed in (path, tmp_path / "spend-export.bin"):
        if packed != path:
            packed.write_bytes(gzip.compress(path.read_bytes()))
        con = connect()
        load(con, [packed], fmt="litellm", bad=BadRecords())
        got = con.execute(
            "SELECT input_uncached, cache_read, cache_write_5m, output_tokens FROM records"
        ).fetchall()
        assert got == [(40, 12000, 800, 310)]


def test_the_nowait_store_is_read(tmp_path: Path) -> None:
    from nowait.analyze.readers.store import read_store

    store_path = tmp_path / "nowait.db"
    _fill_store(store_path)
    assert detect(store_path) == "nowait-store"
    records = {r.record_id: r for r in read_store(store_path, BadRecords())}
    assert set(records) == {"digest-1", "chat-1"}  # the job without usage is not a call
    digest, chat = records["digest-1"], records["chat-1"]
    assert (digest.input_uncached, digest.output_tokens, digest.cache_read) == (1200, 300, 50)
    assert digest.feature == "digest" and digest.service_tier == "batch"
    assert digest.awaited is False and chat.awaited is True


def _fill_store(path: Path) -> None:
    """A real store: two jobs that ran (one deferred, one awaited) and one still queued."""
    from datetime import UTC, datetime

    from nowait.store import NewJob, Outcome
    from nowait.store.sqlite import SQLiteStore
    from nowait.types import Route, Tier, Usage

    now = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
    store = SQLiteStore(path)
    try:
        for key, workload, awaited, usage, tier in (
            ("digest-1", "digest", False, Usage(1200, 300, 0, 0, 50), Tier.BATCH),
            ("chat-1", "chat", True, Usage(80, 40), Tier.STANDARD),
        ):
            job, _ = store.add_job(
                NewJob(key, '{"model": "claude-sonnet-4-6"}', "claude-sonnet-4-6",
                       Route.REALTIME, "test", workload=workload, awaited=awaited),
                now,
            )  # fmt: skip
            assert store.start_realtime(job.id, now)
            store.finish_realtime(job.id, Outcome(None, "succeeded", "{}", usage, tier), now)
        store.add_job(
            NewJob("queued-1", "{}", "claude-sonnet-4-6", Route.BATCH, "test", workload="digest"),
            now,
        )
    finally:
        store.close()
