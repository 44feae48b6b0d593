"""`nowait demo` runs on the embedded defaults and leaves its files in --out."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def test_demo_sorts_the_bundled_worksheet(tmp_path: Path, cli: Any) -> None:
    result = cli("demo", "--out", str(tmp_path / "demo"))
    assert result.code == 0, result.err
    assert (tmp_path / "demo" / "worksheet.toml").exists()
    assert "Batchable share of spend" in result.out
    assert "ticket-triage" in result.out


def test_demo_routes_the_bundled_requests_and_prints_the_receipt(tmp_path: Path, cli: Any) -> None:
    import json

    result = cli("demo", "--out", str(tmp_path / "demo"))
    assert result.code == 0, result.err
    lines = [json.loads(x) for x in (tmp_path / "demo" / "results.jsonl").read_text().splitlines()]
    assert len(lines) == len({x["key"] for x in lines}) == 210
    assert all(x["ok"] for x in lines)
    assert {x["tier"] for x in lines} == {"batch", "standard"}
    assert "Receipt" in result.out and "catalog-enrichment" in result.out
    assert "went to" in result.out and "retried" in result.out
