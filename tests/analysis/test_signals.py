"""Waiting signals read from real records, through the readers and the engine to the verdict:
a timer trigger on a span, a k8s CronJob, a daily burst in the timestamps, user and session
ids."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from otlp_samples import otlp_line, span

from nowait.analyze.engine import connect, load
from nowait.analyze.readers import BadRecords
from nowait.analyze.readers.otlp import read_otlp
from nowait.analyze.report import Report, WorkloadReport, build_report
from nowait.sort.classify import Verdict

SAMPLES = Path(__file__).parent / "samples"
DAY = 86400
T0 = 1795140900  # 2026-11-18 02:15 UTC
SEMCONV = {
    "gen_ai.provider.name": "anthropic", "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "claude-sonnet-4-6", "gen_ai.usage.input_tokens": 2000,
    "gen_ai.usage.output_tokens": 300,
}  # fmt: skip
SCOPE = ("my.genai.instrumentation", "1.0")


def report_of(path: Path) -> Report:
    con = connect()
    bad = BadRecords()
    load(con, [path], fmt=None, bad=bad)
    return build_report(con, bad=bad)


def only(report: Report) -> WorkloadReport:
    [workload] = report.workloads
    return workload


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def _trace(n: int) -> str:
    return f"{n:032x}"


def test_a_timer_trigger_on_an_ancestor_span_means_cron(tmp_path: Path) -> None:
    lines = []
    for day in range(4):  # one scheduled function run a day, its LLM call inside it
        root = span(
            f"{day:015x}a",
            {"faas.trigger": "timer", "faas.name": "nightly-sync"},
            kind="SPAN_KIND_SERVER",
            trace=_trace(day),
            at=T0 + day * DAY,
            name="sync",
        )
        child = span(f"{day:015x}b", {**SEMCONV, "feature": "sync"}, parent=f"{day:015x}a",
                     trace=_trace(day), at=T0 + day * DAY + 1)  # fmt: skip
        lines.append(otlp_line([root, child], scope=SCOPE))
    path = write(tmp_path / "timer.jsonl", lines)
    assert {r.trigger for r in read_otlp(path, BadRecords())} == {"cron"}
    sync = only(report_of(path))
    assert sync.verdict is Verdict.BATCH and sync.inference.confidence == "high"
    assert any("cron job" in e for e in sync.inference.evidence)


def test_a_timer_trigger_on_the_llm_span_itself(tmp_path: Path) -> None:
    line = otlp_line([span("c" * 16, {**SEMCONV, "faas.trigger": "timer"})], scope=SCOPE)
    [record] = read_otlp(write(tmp_path / "own.jsonl", [line]), BadRecords())
    assert record.trigger == "cron"


def test_a_k8s_cronjob_pod_means_cron(tmp_path: Path) -> None:
    lines = [
        otlp_line(
            [span(f"{day:016x}", SEMCONV, trace=_trace(day), at=T0 + day * DAY)],
            resource={"service.name": "digest", "k8s.cronjob.name": "daily-digest"},
            scope=SCOPE,
        )
        for day in range(3)
    ]
    digest = only(report_of(write(tmp_path / "cron.jsonl", lines)))
    assert digest.name == "daily-digest"  # the CronJob names the workload
    assert digest.verdict is Verdict.BATCH and digest.cost.saved == digest.cost.current / 2


def _spend_rows(hours: list[tuple[int, int]], **changes: Any) -> list[dict[str, Any]]:
    """LiteLLM rows (not streamed: completionStartTime = endTime) at (day, minutes after
    02:00 UTC) from 2026-11-18."""
    base = json.loads((SAMPLES / "litellm.json").read_text())[0]
    rows = []
    for i, (day, minute) in enumerate(hours):
        stamp = f"2026-11-{18 + day:02d}T{2 + minute // 60:02d}:{minute % 60:02d}:00Z"
        end = f"2026-11-{18 + day:02d}T{2 + minute // 60:02d}:{minute % 60:02d}:04Z"
        rows.append({**base, "request_id": f"r{i}", "startTime": stamp, "endTime": end,
                     "completionStartTime": end, **changes})  # fmt: skip
    return rows


def test_a_burst_at_the_same_hour_every_day_is_a_schedule(tmp_path: Path) -> None:
    times = [(day, minute) for day in range(5) for minute in range(0, 60, 5)]
    path = tmp_path / "burst.json"
    path.write_text(json.dumps(_spend_rows(times)))
    report = report_of(path)
    burst = only(report)
    assert report.arrivals_by_hour["ticket_tagging"][2] == len(times)  # all at 02:xx UTC
    assert burst.verdict is Verdict.BATCH and burst.inference.confidence == "medium"
    # the text says what the chart shows: one hour, 02:00
    assert "100% arrive in the same hour every day (02:00 UTC): a schedule" in (
        burst.inference.evidence
    )
    # the same burst with a user on every call is people, not a schedule
    path.write_text(json.dumps(_spend_rows(times, end_user="u_1")))
    people = only(report_of(path))
    assert people.verdict is not Verdict.BATCH
    assert any("user or session id" in e for e in people.inference.evidence)


def test_user_and_session_ids_with_streaming_mean_someone_waits(tmp_path: Path) -> None:
    lines = []
    for n in range(6):
        server = span(f"{n:015x}a", {"http.route": "/api/chat", "user.id": f"u{n}"}, kind=2,
                      trace=_trace(n), at=T0 + n * 3600, name="POST /api/chat")  # fmt: skip
        llm = span(
            f"{n:015x}b",
            {**SEMCONV, "gen_ai.request.stream": True,
             "gen_ai.response.time_to_first_chunk": 0.5,
             "traceloop.association.properties.session_id": f"s{n}"},
            parent=f"{n:015x}a", trace=_trace(n), at=T0 + n * 3600,
        )  # fmt: skip
        lines.append(otlp_line([server, llm], scope=SCOPE))
    path = write(tmp_path / "chat.jsonl", lines)
    records = list(read_otlp(path, BadRecords()))
    assert {(r.user_id, r.session_id) for r in records} == {(f"u{n}", f"s{n}") for n in range(6)}
    chat = only(report_of(path))
    assert chat.name == "/api/chat" and chat.verdict is Verdict.REALTIME
    evidence = " ".join(chat.inference.evidence)
    assert "100% carry a user or session id" in evidence and "100% of calls stream" in evidence
    assert chat.cost.saved == 0
