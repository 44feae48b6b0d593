"""Decimal strings in JSON outputs: one scale for every figure (six places), never floats."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from nowait.present import tables
from nowait.route.receipts import build_receipt
from nowait.sort import pricing, worksheet
from nowait.store import UsageRow
from nowait.types import Tier, Usage

EXAMPLE = Path(__file__).resolve().parents[2] / "src/nowait/data/example-worksheet.toml"


def strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def decimals(value: object) -> list[str]:
    return [s for s in strings(value) if re.fullmatch(r"-?\d+\.\d+", s)]


def test_worksheet_json_has_one_scale() -> None:
    result = worksheet.evaluate(worksheet.read_worksheet(EXAMPLE))
    found = decimals(tables.worksheet_json(result))
    assert len(found) > 50
    assert {len(s.split(".")[1]) for s in found} == {6}, found


def test_receipt_json_has_one_scale() -> None:
    usage = Usage(input_tokens=1_000, output_tokens=333, cache_read_tokens=7)
    rows = [UsageRow("w", "claude-sonnet-4-6", t, usage, 3) for t in (Tier.BATCH, Tier.STANDARD)]
    found = decimals(tables.receipt_json(build_receipt(rows, pricing.default_table())))
    assert len(found) == 14  # per line: list, paid, saved, and the cache split (4)
    assert {len(s.split(".")[1]) for s in found} == {6}, found
