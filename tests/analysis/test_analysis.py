"""Waiting signals → verdicts, the savings arithmetic, the CLI, and the HTML in Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from nowait.analyze.engine import connect, load
from nowait.analyze.generate import generate
from nowait.analyze.readers import BadRecords
from nowait.analyze.report import build_report
from nowait.analyze.signals import Signals, infer
from nowait.present.analysis import report_html
from nowait.sort.classify import Verdict

QUIET = Signals(
    requests=100, streamed=0.0, ttft_recorded=0.0, with_user=0.0, http=0.0, queue=0.0,
    cron=0.0, script=0.0, tool_use=0.0, batch_tier=0.0, peak_two_hours=0.1, days=30,
    per_request=True,
)  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "verdict", "confidence", "evidence"),
    [
        (
            {"streamed": 1.0, "ttft_recorded": 1.0, "with_user": 0.9, "http": 1.0},
            Verdict.REALTIME,
            "high",
            "stream",
        ),
        ({"ttft_recorded": 0.9, "with_user": 0.8}, Verdict.REALTIME, "high", "time to first token"),
        ({"cron": 1.0}, Verdict.BATCH, "high", "cron job"),
        ({"peak_two_hours": 0.9}, Verdict.BATCH, "medium", "same two hours every day"),
        ({"queue": 1.0}, Verdict.BATCH, "medium", "queue consumer"),
        ({"script": 1.0}, Verdict.BATCH, "medium", "script"),
        ({"http": 1.0}, Verdict.REVIEW, "low", "do not stream"),
        ({"tool_use": 0.6, "http": 1.0}, Verdict.REALTIME, "high", "agent loop"),
        ({"streamed": 0.5, "http": 1.0}, Verdict.SPLIT, "medium", "non-streamed part"),
        ({"batch_tier": 1.0}, Verdict.BATCH, "high", "already runs on the batch tier"),
        ({"per_request": False}, Verdict.REVIEW, "low", "aggregated usage only"),
        ({}, Verdict.REVIEW, "low", "no streaming, no user"),
        (
            {"http": 1.0, "streamed": None, "stream_unknown": 1.0},
            Verdict.REVIEW,
            "low",
            "do not say whether they stream",
        ),
    ],
)
def test_each_waiting_signal(
    changes: dict[str, Any], verdict: Verdict, confidence: str, evidence: str
) -> None:
    result = infer(replace(QUIET, **changes))
    assert result.classification.verdict is verdict
    assert result.confidence == confidence
    assert any(evidence in e for e in result.evidence), result.evidence


def test_unknown_streaming_is_only_mentioned_where_the_verdict_leans_on_it() -> None:
    cron = infer(replace(QUIET, cron=1.0, streamed=None, stream_unknown=1.0))
    assert cron.classification.verdict is Verdict.BATCH
    assert not any("whether they stream" in e for e in cron.evidence)
    http = infer(replace(QUIET, http=1.0, streamed=None, stream_unknown=1.0))
    assert any("are not recorded as streaming" in e for e in http.evidence)


def test_a_daily_burst_is_not_a_schedule_when_users_are_attached() -> None:
    result = infer(replace(QUIET, peak_two_hours=0.9, with_user=0.6, http=1.0))
    assert result.classification.verdict is Verdict.REVIEW


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("logs") / "month.jsonl"
    generate(path, days=10, scale=0.3, seed=3)
    return path


def report_of(path: Path, **options: Any) -> Any:
    con = connect()
    bad = BadRecords()
    load(con, [path], fmt=None, bad=bad)
    return build_report(con, bad=bad, **options)


def test_the_generated_month_sorts_into_the_expected_verdicts(month: Path) -> None:
    verdicts = {w.name: w.verdict for w in report_of(month).workloads}
    assert verdicts == {
        "/api/chat": Verdict.REALTIME,
        "report-builder": Verdict.SPLIT,
        "/api/research": Verdict.REALTIME,
        "/api/documents/summarize": Verdict.REVIEW,
        "ticket-triage": Verdict.BATCH,
        "nightly-digest": Verdict.BATCH,
        "eval-suite": Verdict.BATCH,
    }


def test_savings_arithmetic_on_a_hand_worked_sample(tmp_path: Path) -> None:
    # One LiteLLM row (claude-sonnet-4-6: $3 input, $0.30 cache read, $3.75 5m write, $15 output
    # per million) in a cron-like nightly burst: 40 uncached, 12,000 read, 800 written, 310 out.
    sample = Path(__file__).parent / "samples" / "litellm.json"
    report = report_of(sample)
    [workload] = report.workloads
    now = (
        Decimal("40") * 3
        + Decimal("12000") * Decimal("0.30")
        + Decimal("800") * Decimal("3.75")
        + Decimal("310") * 15
    )
    assert workload.cost.current == now / 1_000_000
    # aggregated nothing, one request and no context: review, so nothing moves
    assert workload.verdict is Verdict.REVIEW and workload.cost.saved == 0
    assert report.days == 1.0 and workload.monthly.current == workload.cost.current * 30
    # ...but the report says what asking would be worth: every item at half price, monthly
    assert workload.review_if_batch is not None
    assert workload.review_if_batch.saved == now / 2 / 1_000_000 * 30


def test_moving_and_caching_multiply(month: Path) -> None:
    plain = report_of(month)
    cached = report_of(month, cache_share=Decimal("0.5"))
    digest = next(w for w in plain.workloads if w.name == "nightly-digest")
    assert digest.cost.after_batch == digest.cost.current / 2  # batch halves every item
    assert plain.total.after_cache == plain.total.after_batch  # no extra caching asked for
    assert cached.total.after_cache < cached.total.after_batch
    eval_suite = next(w for w in plain.workloads if w.name == "eval-suite")
    assert eval_suite.inference.already_batched and eval_suite.cost.saved == 0
    share = plain.batchable_share
    assert share is not None and Decimal("0.3") < share < Decimal("0.9")


def test_group_by_chooses_the_workload_key(month: Path) -> None:
    names = {w.name for w in report_of(month, group_by="service").workloads}
    assert {"web-api", "ticket-worker", "digest-job", "evals"} <= names


def test_cli_table_json_html_and_errors(month: Path, tmp_path: Path, cli: Any) -> None:
    html = tmp_path / "report.html"
    table = cli("analyze", str(month), "--html", str(html))
    assert table.code == 0, table.err
    assert "nightly-digest" in table.out and "Batchable share of spend" in table.out
    why = table.out.split("Why", 1)[1]  # each workload's evidence, in full, under the table
    assert "cron" in why and "tool_use" in why
    assert "To review: /api/documents/summarize would save $" in " ".join(table.out.split())
    assert html.read_text().startswith("<!doctype html>")
    as_json = json.loads(cli("analyze", str(month), "--json").out)
    assert {w["verdict"] for w in as_json["workloads"]} == {"realtime", "split", "review", "batch"}
    assert cli("analyze", str(month), "--group-by", "colour").code == 2
    bad_share = cli("analyze", str(month), "--cache-share", "2")
    assert bad_share.code == 2 and "--cache-share" in bad_share.err
    broken = tmp_path / "broken.jsonl"
    broken.write_text(month.read_text().splitlines()[0] + "\n{oops\n")
    failed = cli("analyze", str(broken), "--format", "otlp")
    assert failed.code == 2 and "broken.jsonl:2" in failed.err and "Traceback" not in failed.err
    skipped = cli("analyze", str(broken), "--format", "otlp", "--skip-bad", "--json")
    assert json.loads(skipped.out)["malformed"]["count"] == 1


@pytest.mark.chromium
def test_the_html_report_draws_its_charts_in_chromium(month: Path, tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (scripts/system-deps installs it)")
    page = tmp_path / "report.html"
    page.write_text(report_html(report_of(month)), encoding="utf-8")
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=5000",
             "--dump-dom", page.as_uri()],
            capture_output=True, text=True, timeout=120, check=False,
        ).stdout  # fmt: skip
    assert 'data-charts-drawn="3"' in dom  # all three charts laid out with visible bars
