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
