"""Every HTML file nowait writes, as a person sees it: the command says where it wrote it, and
headless Chromium draws it (a screenshot of the whole page) with the elements that make a chart
honest laid out inside that screenshot: captions (the oracle line, the world's assumptions, the
cache step's explanation) and a scale on every bar chart."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from nowait.analyze.generate import generate

pytestmark = pytest.mark.chromium

WINDOW = (1100, 2400)
PROBE = """
<script>
window.addEventListener("load", function () {
  function box(el) {
    var r = el.getBoundingClientRect();
    return [r.left, r.top, r.width, r.height];
  }
  var out = {captions: [], scales: []};
  document.querySelectorAll(".caption").forEach(function (el) {
    out.captions.push({text: el.textContent, box: box(el)});
  });
  document.querySelectorAll("svg.chart").forEach(function (svg) {
    var scales = Array.prototype.map.call(svg.querySelectorAll("text.scale"), function (t) {
      return {text: t.textContent, box: box(t)};
    });
    out.scales.push({chart: svg.getAttribute("data-chart"), labels: scales});
  });
  var pre = document.createElement("pre");
  pre.id = "probed";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def chromium() -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (scripts/system-deps installs it)")
    return browser


def headless(page: Path, *mode: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", f"--user-data-dir={profile}", "--virtual-time-budget=5000",
             f"--window-size={WINDOW[0]},{WINDOW[1]}", *mode, page.as_uri()],
            capture_output=True, text=True, timeout=120, check=False,
        ).stdout  # fmt: skip


def look_at(page: Path) -> dict[str, Any]:
    """Screenshot the page, then read where its captions and scales were laid out."""
    shot = page.with_suffix(".png")
    headless(page, f"--screenshot={shot}")
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000, "a blank screenshot"
    assert struct.unpack(">II", png[16:24]) == WINDOW
    probe = page.with_name("probe-" + page.name)
    probe.write_text(page.read_text("utf-8").replace("</body>", PROBE + "</body>"), "utf-8")
    dom = headless(probe, "--dump-dom")
    found = re.search(r'<pre id="probed">(.*?)</pre>', dom, re.S)
    assert found is not None, dom[-2000:]
    text = found[1].replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
    result: dict[str, Any] = json.loads(text.replace("&amp;", "&"))
    return result


def in_screenshot(box: list[float]) -> bool:
    left, top, width, height = box
    return width > 0 and height > 0 and left >= 0 and top >= 0 and top + height <= WINDOW[1]


def visible_captions(seen: dict[str, Any]) -> list[str]:
    return [c["text"] for c in seen["captions"] if in_screenshot(c["box"])]


def assert_every_bar_chart_has_a_scale(seen: dict[str, Any]) -> None:
    charts = [c for c in seen["scales"] if c["chart"] in ("bars", "hours")]
    assert charts
    for chart in charts:
        labels = [s for s in chart["labels"] if in_screenshot(s["box"])]
        assert labels, f"a {chart['chart']} chart without a scale"
        assert all(re.search(r"\d", s["text"]) for s in labels)


def test_the_analysis_report(tmp_path: Path, cli: Any) -> None:
    logs = tmp_path / "month.jsonl"
    generate(logs, days=5, scale=0.2, seed=3)
    page = tmp_path / "report.html"
    result = cli("analyze", str(logs), "--html", str(page), "--json")
    assert result.code == 0
    assert f"HTML report written to {page}" in result.err
    seen = look_at(page)
    captions = visible_captions(seen)
    assert any(c.startswith("Cache step: $0 because no --cache-share was given") for c in captions)
    assert_every_bar_chart_has_a_scale(seen)
    hours = next(c for c in seen["scales"] if c["chart"] == "hours")
    assert all(s["text"].endswith("/h") for s in hours["labels"])


def test_the_analysis_report_with_a_cache_share(tmp_path: Path, cli: Any) -> None:
    logs = tmp_path / "month.jsonl"
    generate(logs, days=3, scale=0.1, seed=3)
    page = tmp_path / "report.html"
    assert cli("analyze", str(logs), "--html", str(page), "--cache-share", "0.6").code == 0
    captions = visible_captions(look_at(page))
    assert any(c.startswith("Cache step: 60.0% of every prompt") for c in captions)


def test_the_simulation_chart(tmp_path: Path, cli: Any) -> None:
    trace, page = tmp_path / "trace.jsonl", tmp_path / "chart.html"
    result = cli("simulate", str(trace), "--generate", "600", "--days", "1", "--html", str(page))
    assert result.code == 0
    assert f"chart written to {page}" in result.err
    oracle = re.search(r"nowait captures [\d.]+% of the oracle's savings, missing \w+", result.out)
    assert oracle is not None
    seen = look_at(page)
    captions = visible_captions(seen)
    assert any(c.startswith(oracle[0]) for c in captions)  # the same line as the terminal's
    world = next(c for c in captions if c.startswith("Assumed world: "))
    assert "batch turnaround median 20 min, p95 3 h" in world
    assert "a real-time call takes 15 s and a cancel 3 min" in world
    assert any(c.startswith("Real time: 50 requests") for c in captions)
    assert_every_bar_chart_has_a_scale(seen)
