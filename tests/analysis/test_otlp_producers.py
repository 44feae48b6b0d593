"""One call, one record: the anthropic SDK's own spans beside OpenLLMetry's, duplicates,
gzip, protobuf, the parallel path and progress. The fixtures come from the real packages
(scripts/otlp_fixtures.py: the SDK and OpenLLMetry calling nowait's emulator)."""

from __future__ import annotations

import gzip
import re
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from otlp_samples import LEGACY, otlp_line, span

from nowait.analyze.detect import detect
from nowait.analyze.engine import connect, load
from nowait.analyze.readers import BadRecords
from nowait.analyze.readers import otlp as otlp_module
from nowait.analyze.readers.otlp import read_otlp
from nowait.analyze.report import Report, build_report
from nowait.errors import InputError
from terminal_capture import stderr_shown

SAMPLES = Path(__file__).parent / "samples"
ONE = SAMPLES / "otlp-sdk.jsonl"  # the SDK's spans only
TWO = SAMPLES / "otlp-sdk-openllmetry.jsonl"  # the SDK's and OpenLLMetry's, same calls
PROTO = SAMPLES / "otlp-sdk-openllmetry.binpb"  # the second as the Collector writes protobuf
CENT = Decimal("0.01")


def report(*paths: Path, fmt: str | None = None) -> Report:
    con = connect()
    bad = BadRecords()
    load(con, list(paths), fmt=fmt, bad=bad)
    return build_report(con, bad=bad)


def summary(r: Report) -> dict[str, tuple[int, str, Decimal | None]]:
    """workload → (requests, verdict, today's money to the cent)."""
    return {
        w.name: (
            w.requests,
            w.verdict.value,
            w.cost.current.quantize(CENT) if w.cost.current is not None else None,
        )
        for w in r.workloads
    }


def test_one_producer_or_two_give_the_same_workloads_counts_and_money() -> None:
    alone, both = summary(report(ONE)), summary(report(TWO))
    assert both == alone
    assert set(alone) == {"/chat", "/summaries", "ticket-worker", "nightly-digest"}
    assert {name: n for name, (n, _, _) in alone.items()} == {
        "/chat": 3,
        "/summaries": 2,
        "ticket-worker": 2,
        "nightly-digest": 2,
    }
    assert alone["/chat"][1] == "realtime"  # the SDK says it streamed, with a first chunk
    assert alone["nightly-digest"][1] == "batch"
    assert report(TWO).total.current == report(ONE).total.current  # exact, not only to the cent


def test_the_sdks_client_route_is_never_a_workload() -> None:
    records = list(read_otlp(ONE, BadRecords()))
    assert records and all(r.http_route != "/v1/messages" for r in records)
    queue = [r for r in records if r.service == "ticket-worker"]
    assert {(r.trigger, r.http_route) for r in queue} == {("queue", None)}


def test_sibling_spans_merge_their_evidence() -> None:
    merged = {r.record_id: r for r in read_otlp(TWO, BadRecords())}
    alone = {r.record_id: r for r in read_otlp(ONE, BadRecords())}
    assert len(merged) == 9  # 18 LLM spans, 9 calls
    chat = [r for r in merged.values() if r.http_route == "/chat"]
    assert len(chat) == 3
    for r in chat:
        assert r.producer.startswith("com.anthropic.sdk.python@")
        assert "opentelemetry.instrumentation.anthropic@" in r.producer
        # OpenLLMetry records nothing for messages.stream(): the SDK's span says it streamed
        assert r.stream is True and r.ttft_s is not None and r.ttft_s > 0
        assert r.service_tier == "standard"
        assert "com.anthropic.sdk.python of 2 spans" in r.token_rule
    # the SDK's span keeps the API's TTL split: OpenLLMetry's one cache-write figure does not
    digest = [r for r in merged.values() if r.workflow == "nightly-digest"]
    assert sum(r.cache_write_1h for r in digest) > 0
    assert sum(r.cache_write_5m for r in digest) == 0
    # the same calls in both runs (a fresh emulator each): the same API token counts
    assert sum(r.output_tokens for r in merged.values()) == sum(
        r.output_tokens for r in alone.values()
    )


def test_an_export_read_twice_or_holding_every_span_twice_counts_once(tmp_path: Path) -> None:
    doubled = tmp_path / "doubled.jsonl"
    doubled.write_text(TWO.read_text() * 2)
    assert summary(report(doubled)) == summary(report(TWO))
    assert summary(report(TWO, TWO)) == summary(report(TWO))


def test_a_gzipped_export_is_detected_and_reads_the_same(tmp_path: Path) -> None:
    packed = tmp_path / "traces.jsonl.gz"
    packed.write_bytes(gzip.compress(TWO.read_bytes()))
    assert detect(packed) == "otlp"
    assert summary(report(packed)) == summary(report(TWO))


def test_a_batched_line_longer_than_the_detection_head_is_detected(tmp_path: Path) -> None:
    lines = TWO.read_text().splitlines()
    one_line = tmp_path / "batched.jsonl.gz"
    documents = [line.removeprefix('{"resourceSpans":[').removesuffix("]}") for line in lines]
    text = '{"resourceSpans":[' + ",".join(documents * 3) + "]}\n"
    assert len(text) > 65536
    one_line.write_bytes(gzip.compress(text.encode()))
    assert detect(one_line) == "otlp"
    assert summary(report(one_line)) == summary(report(TWO))


def test_the_collectors_protobuf_file_reads_like_the_json() -> None:
    assert detect(PROTO) == "otlp"
    assert summary(report(PROTO)) == summary(report(TWO))


def test_a_truncated_protobuf_file_is_a_bad_record(tmp_path: Path) -> None:
    cut = tmp_path / "cut.binpb"
    cut.write_bytes(PROTO.read_bytes()[:-100])
    bad = BadRecords(skip=True)
    assert list(read_otlp(cut, bad)) == []
    assert bad.count == 1 and "cut.binpb:1" in bad.examples[0]


def test_the_parallel_path_gives_the_same_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = tmp_path / "big.jsonl"
    big.write_text(TWO.read_text() * 3)  # duplicates too: they may land in other chunks
    serial = sorted((r.record_id, r.stream, r.output_tokens) for r in read_otlp(big, BadRecords()))
    monkeypatch.setattr(otlp_module, "PARALLEL_FROM", 0)
    monkeypatch.setattr(otlp_module, "CHUNK_BYTES", 4096)
    monkeypatch.setattr(otlp_module, "SWEEP_EVERY", 5)
    seen: list[int] = []
    parallel = sorted(
        (r.record_id, r.stream, r.output_tokens)
        for r in read_otlp(big, BadRecords(), on_bytes=seen.append)
    )
    assert parallel == serial and len(serial) == 9
    assert sum(seen) == big.stat().st_size and len(seen) > 3
    packed = tmp_path / "big.jsonl.gz"  # compressed: this process reads, workers decode
    packed.write_bytes(gzip.compress(big.read_bytes()))
    seen.clear()
    unpacked = sorted(
        (r.record_id, r.stream, r.output_tokens)
        for r in read_otlp(packed, BadRecords(), on_bytes=seen.append)
    )
    assert unpacked == serial and sum(seen) == packed.stat().st_size


def test_progress_counts_the_compressed_bytes_of_a_gzip(tmp_path: Path) -> None:
    packed = tmp_path / "traces.jsonl.gz"
    packed.write_bytes(gzip.compress(TWO.read_bytes()))
    seen: list[int] = []
    list(read_otlp(packed, BadRecords(), on_bytes=seen.append))
    assert sum(seen) == packed.stat().st_size


def _sdk(span_id: str, *, at: int, model: str = "claude-sonnet-4-6") -> dict[str, object]:
    attrs = {
        "gen_ai.provider.name": "anthropic", "gen_ai.operation.name": "chat",
        "gen_ai.request.model": model, "gen_ai.usage.input_tokens": 5000,
        "gen_ai.usage.cache_read.input_tokens": 3000,
        "gen_ai.usage.cache_write.input_tokens": 1500, "gen_ai.usage.output_tokens": 120,
        "http.route": "/v1/messages",
    }  # fmt: skip
    return span(span_id, attrs, parent="99" * 8, name="anthropic.messages.create", at=at)


SDK = ("com.anthropic.sdk.python", "2.15.0")


def test_siblings_without_a_response_id_merge_by_model_and_time(tmp_path: Path) -> None:
    root = span("99" * 8, {"http.route": "/ask"}, kind=2, name="POST /ask", at=1795140899)
    path = tmp_path / "siblings.jsonl"
    lines = [
        otlp_line([root], scope=("opentelemetry.instrumentation.fastapi", "0.55b0")),
        # one call: the SDK's span and OpenLLMetry's, same model, same time
        otlp_line([_sdk("01" * 8, at=1795140900)], scope=SDK),
        otlp_line([span("02" * 8, LEGACY, parent="99" * 8, at=1795140900)]),
        # a second call by the SDK alone, later in the same request: not merged
        otlp_line([_sdk("03" * 8, at=1795140910)], scope=SDK),
        # another model at the same time: another call
        otlp_line([_sdk("04" * 8, at=1795140900, model="claude-haiku-4-5")], scope=SDK),
    ]
    path.write_text("\n".join(lines) + "\n")
    records = list(read_otlp(path, BadRecords()))
    assert len(records) == 3
    assert {r.http_route for r in records} == {"/ask"}
    merged = next(r for r in records if "+" in r.producer)
    # tokens from the SDK: input includes the cache, and `cache_write` is its name for writes
    assert (merged.input_uncached, merged.cache_read, merged.cache_write_5m) == (500, 3000, 1500)


def _analyze_on(stderr_tty: bool, path: Path) -> str:
    """`nowait analyze` with stderr on a pseudo-terminal or a pipe: what stderr showed."""
    command = [sys.executable, "-c", "from nowait.cli import main; main()", "analyze", str(path)]
    return stderr_shown(command, stderr_tty)


def test_bytes_read_show_on_a_terminal_and_nothing_when_piped() -> None:
    assert "bytes read" in _analyze_on(True, TWO)
    assert "bytes read" not in _analyze_on(False, TWO)


@pytest.mark.parametrize("parallel", [False, True])
def test_a_bad_line_in_a_later_chunk_is_named_by_its_line_in_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parallel: bool
) -> None:
    lines = TWO.read_text().splitlines() * 3
    lines[60] = '{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": 7}]}]}]}'
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(otlp_module, "CHUNK_BYTES", 4096)
    if parallel:
        monkeypatch.setattr(otlp_module, "PARALLEL_FROM", 0)
    bad = BadRecords(skip=True)
    records = list(read_otlp(path, bad))
    assert bad.count == 1 and f"{path}:61: " in bad.examples[0]
    assert len(records) == 9
    assert all(r.record_id in lines[r.line - 1] for r in records)  # each names its line


DEEP = "[" * 100_000 + "]" * 100_000
BAD_LINES = [  # what the fuzz suite found, each one line of JSON Lines
    '{"resourceSpans": [1]}',
    '{"resourceSpans": 1e308}',
    '{"resourceSpans": ' + "9" * 4301 + "}",
    '{"resourceSpans": [{"scopeSpans": [{"spans": ' + DEEP + "}]}]}",
    '{"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": '
    '{"arrayValue": 5}}]}}]}',
]


@pytest.mark.parametrize("parallel", [False, True])
def test_malformed_lines_and_spans_are_bad_records_by_line_in_workers_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parallel: bool
) -> None:
    lines = TWO.read_text().splitlines() * 3
    llm = [i for i, line in enumerate(lines) if "gen_ai.provider.name" in line and i > 60]
    start = re.search(r'"startTimeUnixNano": ?"\d+"', lines[llm[-1]])
    assert start is not None
    lines[llm[-1]] = lines[llm[-1]].replace(start[0], '"startTimeUnixNano": "1"')  # 1970
    model = re.search(r'\{"stringValue": ?"claude[^"]*"\}', lines[llm[-2]])
    assert model is not None
    lines[llm[-2]] = lines[llm[-2]].replace(model[0], '{"kvlistValue": {"values": []}}')
    for at, text in zip(range(20, 70, 10), BAD_LINES, strict=True):
        lines[at] = text
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(otlp_module, "CHUNK_BYTES", 4096)
    if parallel:
        monkeypatch.setattr(otlp_module, "PARALLEL_FROM", 0)
    bad = BadRecords(skip=True)
    records = list(read_otlp(path, bad))
    named = sorted(int(e.split(f"{path}:", 1)[1].split(":")[0]) for e in bad.examples)
    assert named == sorted([21, 31, 41, 51, 61, llm[-1] + 1, llm[-2] + 1]), bad.examples
    assert "not a plausible time" in "".join(bad.examples)
    assert all(r.start_time.year >= 2020 for r in records)
    with pytest.raises(InputError, match=f"{path}:21: .*--skip-bad"):
        list(read_otlp(path, BadRecords()))
