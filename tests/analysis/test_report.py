"""The money in the report, worked by hand: a batch move, a split, caching stacked on batch,
the batchable share and the monthly projection; models without a price; and the HTML charts
drawn by Chromium at the sizes the report's numbers call for."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from nowait.analyze.engine import connect, load, load_records
from nowait.analyze.generate import generate
from nowait.analyze.readers import BadRecords
from nowait.analyze.records import Record
from nowait.analyze.report import Report, build_report
from nowait.present.analysis import report_html, report_json
from nowait.sort.classify import Verdict

SAMPLES = Path(__file__).parent / "samples"
M = Decimal(1_000_000)
# claude-sonnet-4-6, USD per million tokens: input 3, output 15, cache read 0.30; batch 50%.
IN, OUT, READ = Decimal(3), Decimal(15), Decimal("0.30")
DAY0 = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)


def call(feature: str, at: datetime, tokens_in: int, tokens_out: int, **fields: Any) -> Record:
    return Record(
        source="test", producer="test", record_id=f"{feature}-{at.isoformat()}-{tokens_in}",
        start_time=at, end_time=at + timedelta(seconds=1), model="claude-sonnet-4-6",
        input_uncached=tokens_in, output_tokens=tokens_out, feature=feature, **fields,
    )  # fmt: skip


def report_of_records(records: list[Record], **options: Any) -> Report:
    con = connect()
    load_records(con, records)
    return build_report(con, bad=BadRecords(), **options)


# Three days exactly, from the first start (day 0, 02:00) to the last end (day 3, 02:00).
NIGHTLY = [
    call("nightly", DAY0, 1000, 200, trigger="cron"),
    call("nightly", DAY0 + timedelta(days=1), 1000, 200, trigger="cron"),
    call("nightly", DAY0 + timedelta(days=3, seconds=-1), 1000, 200, trigger="cron"),
]
# An HTTP handler: half the calls stream (someone reads them as they come), half do not.
REPORTS = [
    call("reports", DAY0 + timedelta(hours=h), 1000, 100, trigger="http", stream=True)
    for h in (8, 9)
] + [
    call("reports", DAY0 + timedelta(hours=h), 2000, 400, trigger="http", stream=False)
    for h in (10, 11)
]


def test_a_batch_move_halves_every_item() -> None:
    report = report_of_records(NIGHTLY)
    [nightly] = report.workloads
    assert nightly.verdict is Verdict.BATCH
    each = (1000 * IN + 200 * OUT) / M  # $0.006 a call
    assert each == Decimal("0.006")
    assert nightly.cost.current == 3 * each == Decimal("0.018")
    assert nightly.cost.after_batch == nightly.cost.after_cache == Decimal("0.009")
    assert nightly.cost.saved == Decimal("0.009")
    assert nightly.cost.batchable_current == Decimal("0.018")
    assert report.batchable_share == 1


def test_a_split_moves_only_the_part_nobody_watches() -> None:
    [reports] = report_of_records(REPORTS).workloads
    assert reports.verdict is Verdict.SPLIT
    streamed = 2 * (1000 * IN + 100 * OUT) / M  # $0.009, stays real-time
    deferred = 2 * (2000 * IN + 400 * OUT) / M  # $0.024, moves to batch at half price
    assert (streamed, deferred) == (Decimal("0.009"), Decimal("0.024"))
    assert reports.cost.current == Decimal("0.033")
    assert reports.cost.after_batch == streamed + deferred / 2 == Decimal("0.021")
    assert reports.cost.batchable_current == deferred
    assert reports.cost.saved == Decimal("0.012")


def test_caching_stacks_on_batch_and_multiplies() -> None:
    report = report_of_records(NIGHTLY + REPORTS, cache_share=Decimal("0.5"))
    nightly = next(w for w in report.workloads if w.name == "nightly")
    # Half of each 1,000-token prompt is read from the cache, then the batch halves it all:
    # (500 × $3 + 500 × $0.30 + 200 × $15) / 1M / 2 = $0.002325 a call.
    per_call = (500 * IN + 500 * READ + 200 * OUT) / M / 2
    assert per_call == Decimal("0.002325")
    assert nightly.cost.after_cache == 3 * per_call == Decimal("0.006975")
    assert nightly.cost.after_batch == Decimal("0.009")  # the batch step alone is unchanged
    reports = next(w for w in report.workloads if w.name == "reports")
    stays = 2 * (500 * IN + 500 * READ + 100 * OUT) / M  # real-time, cached: $0.0063
    moves = 2 * (1000 * IN + 1000 * READ + 400 * OUT) / M / 2  # batch and cached: $0.0093
    assert reports.cost.after_cache == stays + moves == Decimal("0.0156")
    assert report.total.after_cache == Decimal("0.006975") + Decimal("0.0156")


def test_batchable_share_and_monthly_projection_over_three_days() -> None:
    report = report_of_records(NIGHTLY + REPORTS)
    assert report.days == 3.0
    # movable today: all of nightly ($0.018) and the deferred part of reports ($0.024),
    # out of $0.018 + $0.033 of spend
    assert report.total.current == Decimal("0.051")
    assert report.total.batchable_current == Decimal("0.042")
    assert report.batchable_share == Decimal("0.042") / Decimal("0.051")
    # 30 days / 3 days of logs = ×10
    assert report.monthly_total.current == Decimal("0.51")
    assert report.monthly_total.after_batch == Decimal("0.30")
    assert report.monthly_total.saved == Decimal("0.21")
    nightly = next(w for w in report.workloads if w.name == "nightly")
    assert nightly.monthly.current == Decimal("0.18") and nightly.inference.facts.trigger
    money = report_json(report)["monthly_total"]
    assert isinstance(money, dict)  # exact decimal strings, no float rounding
    assert {k: Decimal(v) for k, v in money.items()} == {
        "current": Decimal("0.51"),
        "after_batch": Decimal("0.30"),
        "after_cache": Decimal("0.30"),
        "saved": Decimal("0.21"),
        "batchable_current": Decimal("0.42"),
    }


# ---- models without a price --------------------------------------------------------------
def _spend_rows() -> list[dict[str, Any]]:
    """The LiteLLM sample (priced, feature ticket_tagging) plus two calls on a model the price
    table does not know: one in the same workload, one in a workload of its own."""
    good = json.loads((SAMPLES / "litellm.json").read_text())[0]
    same = {**good, "request_id": "r-2", "model": "claude-mystery-9"}
    alone = json.loads(json.dumps(same))
    alone["request_id"] = "r-3"
    alone["metadata"]["spend_logs_metadata"]["feature"] = "mystery-feature"
    return [good, same, alone]


@pytest.fixture
def spend_with_unpriced(tmp_path: Path) -> Path:
    path = tmp_path / "spend.json"
    path.write_text(json.dumps(_spend_rows()))
    return path


def report_of(*paths: Path, **options: Any) -> Report:
    con = connect()
    bad = BadRecords()
    load(con, list(paths), fmt=None, bad=bad)
    return build_report(con, bad=bad, **options)


def test_an_unpriced_model_is_listed_and_the_known_ones_still_add_up(
    spend_with_unpriced: Path,
) -> None:
    report = report_of(spend_with_unpriced)
    known = (40 * IN + 12000 * READ + 800 * Decimal("3.75") + 310 * OUT) / M
    assert report.total.current == known  # not None: the priced call still counts
    assert report.unknown_models == ("claude-mystery-9",) and report.unpriced_requests == 2
    assert report.batchable_share == 0  # review: nothing moves, but the share is known
    tagging = next(w for w in report.workloads if w.name == "ticket_tagging")
    assert tagging.cost.current == known and tagging.unpriced == ("claude-mystery-9",)
    assert tagging.unpriced_requests == 1
    mystery = next(w for w in report.workloads if w.name == "mystery-feature")
    assert mystery.cost.current is None and mystery.monthly.saved is None  # unknown, not $0
    assert report.workloads[-1] is mystery  # unknown money sorts last


def test_unpriced_money_shows_as_unknown_in_table_json_and_html(
    spend_with_unpriced: Path, tmp_path: Path, cli: Any
) -> None:
    html = tmp_path / "r.html"
    table = cli("analyze", str(spend_with_unpriced), "--html", str(html))
    assert table.code == 0, table.err
    mystery_row = next(line for line in table.out.splitlines() if "mystery-feature" in line)
    assert "unknown" in mystery_row and "$0.00" not in mystery_row
    assert "claude-mystery-9" in table.out and "no price" in table.out
    data = json.loads(cli("analyze", str(spend_with_unpriced), "--json").out)
    assert data["unknown_models"] == ["claude-mystery-9"] and data["unpriced_requests"] == 2
    mystery = next(w for w in data["workloads"] if w["workload"] == "mystery-feature")
    assert mystery["monthly"]["current"] is None and mystery["unpriced_models"]
    assert data["monthly_total"]["current"] is not None
    page = html.read_text()
    assert "claude-mystery-9" in page
    bars = re.search(r'<svg class="chart" data-chart="bars".*?</svg>', page, re.S)
    assert bars is not None
    assert re.search(r'<text class="value" data-label="mystery-feature"[^>]*>unknown<', bars[0])
    assert 'rect class="bar" data-label="mystery-feature"' not in bars[0]  # no bar at all


# ---- the HTML in Chromium ----------------------------------------------------------------
MEASURE = """
<script>
// Test probe: the laid-out size of every bar and the text of every value label.
window.addEventListener("load", function () {
  var out = [];
  document.querySelectorAll("svg.chart").forEach(function (svg) {
    svg.querySelectorAll("rect.bar").forEach(function (r) {
      var box = r.getBoundingClientRect();
      out.push({chart: svg.dataset.chart, label: r.dataset.label, hour: r.dataset.hour,
                width: box.width, height: box.height});
    });
    svg.querySelectorAll("text.value").forEach(function (t) {
      out.push({chart: svg.dataset.chart, label: t.dataset.label, text: t.textContent});
    });
  });
  var pre = document.createElement("pre");
  pre.id = "measured";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def draw(page: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Lay the page out in headless Chromium: (what was drawn, the report data it embeds)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (scripts/system-deps installs it)")
    probe = page.with_name("probe-" + page.name)
    probe.write_text(page.read_text().replace("</body>", MEASURE + "</body>"))
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=5000",
             "--dump-dom", probe.as_uri()],
            capture_output=True, text=True, timeout=120, check=False,
        ).stdout  # fmt: skip
    measured = re.search(r'<pre id="measured">(.*?)</pre>', dom, re.S)
    data = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', dom, re.S)
    assert measured is not None and data is not None, dom[-2000:]
    unescaped = measured[1].replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
    return json.loads(unescaped.replace("&amp;", "&")), json.loads(data[1])


def dollars(label: str) -> float:
    return float(label.replace("−", "-").replace("$", "").replace(",", ""))


def assert_proportional(sizes: dict[str, float], values: dict[str, float]) -> None:
    """Drawn sizes in the same ratios as the values (within a pixel of rounding)."""
    assert sizes and set(sizes) == {k for k, v in values.items() if v != 0}, (sizes, values)
    biggest = max(sizes, key=lambda k: sizes[k])
    assert sizes[biggest] > 20  # a real bar, not a minimum-size stub
    for key, size in sizes.items():
        expected = sizes[biggest] * abs(values[key]) / abs(values[biggest])
        assert abs(size - expected) <= max(1.0, 0.01 * expected), (key, size, expected)


@pytest.mark.chromium
def test_the_charts_draw_the_report_numbers_in_chromium(
    tmp_path: Path, spend_with_unpriced: Path
) -> None:
    month = tmp_path / "month.jsonl"
    generate(month, days=10, scale=0.3, seed=3)
    page = tmp_path / "report.html"
    page.write_text(report_html(report_of(month, spend_with_unpriced)), encoding="utf-8")
    drawn, data = draw(page)
    bars = {d["label"]: d for d in drawn if d["chart"] == "bars" and "width" in d}
    labels = {d["label"]: d["text"] for d in drawn if d["chart"] == "bars" and "text" in d}
    spend = {
        w["workload"]: float(w["monthly"]["current"])
        for w in data["workloads"]
        if w["monthly"]["current"] is not None
    }
    assert len(spend) == 8 and all(v > 0 for v in spend.values())
    assert_proportional({k: b["width"] for k, b in bars.items()}, spend)
    for name, value in spend.items():  # each label says the bar's amount
        assert dollars(labels[name]) == pytest.approx(value, abs=0.5 if value >= 100 else 0.005)
    assert labels["mystery-feature"] == "unknown" and "mystery-feature" not in bars

    total = {k: float(v) for k, v in data["monthly_total"].items()}
    steps = {
        "real-time today": total["current"],
        "batch": total["current"] - total["after_batch"],
        "cache": total["after_batch"] - total["after_cache"],
        "after": total["after_cache"],
    }
    assert steps["batch"] > 0 and steps["cache"] == 0  # no extra caching asked for
    fall = {d["label"]: d["height"] for d in drawn if d["chart"] == "waterfall" and "height" in d}
    assert_proportional(fall, steps)

    hours = [d for d in drawn if d["chart"] == "hours" and "height" in d]
    for name, counts in data["arrivals_by_hour"].items():
        heights = {d["hour"]: d["height"] for d in hours if d["label"] == name}
        assert_proportional(heights, {str(h): float(n) for h, n in enumerate(counts)})


def test_group_by_tags_and_workspace(tmp_path: Path, cli: Any) -> None:
    rows = _spend_rows()
    rows[1]["request_tags"] = ["ticket-tagger"]
    path = tmp_path / "spend.json"
    path.write_text(json.dumps(rows))
    by_tags = {w.name for w in report_of(path, group_by="tags").workloads}
    assert by_tags == {"ticket-tagger,nightly", "ticket-tagger"}
    usage = report_of(SAMPLES / "usage-report.json", group_by="workspace")
    assert [w.name for w in usage.workloads] == ["wrkspc_01ExampleProd"]
    result = cli("analyze", str(path), "--group-by", "tags", "--json")
    assert result.code == 0, result.err
    assert {w["workload"] for w in json.loads(result.out)["workloads"]} == by_tags
