"""`nowait worksheet`: the bundled example end to end, JSON output, and every bad-input case."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from nowait.sort.worksheet import template_text

BASE = """
[[workload]]
name = "digest"
model = "claude-sonnet-4-6"
requests_per_month = 10000
avg_input_tokens = 2000
avg_output_tokens = 500
trigger = "schedule"
waits = "nobody"
needed_within = "6h"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "work.toml"
    path.write_text(text)
    return path


def test_worked_example_in_json(tmp_path: Path, cli: Any) -> None:
    # 20M input × $3 + 5M output × $15 = $135 now; batch halves it.
    result = cli("worksheet", str(write(tmp_path, BASE)), "--format", "json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    row = data["workloads"][0]
    assert row["verdict"] == "batch"
    assert Decimal(row["monthly_usd"]["current"]) == 135
    assert Decimal(row["monthly_usd"]["after_batch"]) == Decimal("67.5")
    assert Decimal(data["totals_usd"]["saved"]) == Decimal("67.5")
    assert Decimal(data["batchable_share"]) == 1


def test_cache_share_and_cacheable_share_stack(tmp_path: Path, cli: Any) -> None:
    # Today 25% of the prompt is read from cache: 15M × $3 + 5M reads × $0.30 + 5M × $15 = $121.50.
    # In batch with 50% cacheable: 10M × $1.50 + 10M × $0.15 + 5M × $7.50 = $54.
    text = BASE + "cache_share = 0.25\ncacheable_share = 0.5\n"
    data = json.loads(cli("worksheet", str(write(tmp_path, text)), "--format", "json").out)
    money = data["workloads"][0]["monthly_usd"]
    assert Decimal(money["current"]) == Decimal("121.5")
    assert Decimal(money["after_batch"]) == Decimal("60.75")
    assert Decimal(money["after_cache"]) == Decimal(54)


def test_bundled_example_sorts_every_kind(tmp_path: Path, cli: Any) -> None:
    path = write(tmp_path, template_text())
    data = json.loads(cli("worksheet", str(path), "--format", "json").out)
    verdicts = {w["name"]: w["verdict"] for w in data["workloads"]}
    assert verdicts["nightly-digest"] == "batch"
    assert verdicts["support-chat"] == "realtime"
    assert verdicts["coding-agent"] == "realtime"
    assert verdicts["ticket-triage"] == "split"
    assert verdicts["meeting-notes"] == "review"
    assert verdicts["contract-redlines"] == "batch"
    table = cli("worksheet", str(path))
    assert table.code == 0
    for text in ("nightly-digest", "Batchable share of spend", "To review: meeting-notes", "$"):
        assert text in table.out


def test_template_is_written_and_never_overwrites(tmp_path: Path, cli: Any) -> None:
    target = tmp_path / "mine.toml"
    assert cli("worksheet", "--template", str(target)).code == 0
    assert target.read_text() == template_text()
    for category in ("Backlog processing", "Scheduled", "Data preparation", "Reports read later"):
        assert category in target.read_text()
    again = cli("worksheet", "--template", str(target))
    assert again.code == 2
    assert "already exists" in again.err


@pytest.mark.parametrize(
    ("change", "field", "expected"),
    [
        (
            ("requests_per_month = 10000", 'requests_per_month = "lots"'),
            "requests_per_month",
            "whole number",
        ),
        (
            ("avg_output_tokens = 500", "avg_output_tokens = -5"),
            "avg_output_tokens",
            "whole number ≥ 0",
        ),
        (('trigger = "schedule"', 'trigger = "cronjob"'), "trigger", "one of user_action"),
        (('waits = "nobody"', 'waits = "the boss"'), "waits", "person, process, nobody"),
        (('model = "claude-sonnet-4-6"\n', ""), "model", "a model id"),
        (('needed_within = "6h"', 'needed_within = "soon"'), "needed_within", "a duration"),
        (
            ('waits = "nobody"', 'waits = "nobody"\ncache_share = 1.5'),
            "cache_share",
            "between 0 and 1",
        ),
        (
            ('waits = "nobody"', 'waits = "nobody"\nfeeds_next_step = "yes"'),
            "feeds_next_step",
            "true or false",
        ),
        (('waits = "nobody"', 'waits = "nobody"\nrequests = 5'), "requests", "known fields"),
    ],
)
def test_bad_input_names_file_workload_field(
    tmp_path: Path, cli: Any, change: tuple[str, str], field: str, expected: str
) -> None:
    path = write(tmp_path, BASE.replace(*change))
    result = cli("worksheet", str(path))
    assert result.code == 2
    assert "Traceback" not in result.err
    assert str(path) in result.err
    assert "workload 'digest'" in result.err
    assert f"{field}:" in result.err
    assert expected in result.err
    assert result.out == ""


def test_bad_input_points_at_the_line(tmp_path: Path, cli: Any) -> None:
    path = write(tmp_path, BASE.replace("avg_output_tokens = 500", "avg_output_tokens = -5"))
    assert f"{path}:7: avg_output_tokens" in cli("worksheet", str(path)).err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("this is = = not toml", "not TOML"),
        ("", "no workloads"),
        (BASE + BASE, "a unique name"),
        (BASE + '[workload.deferred]\nflavour = "x"\n', "deferred.flavour"),
    ],
)
def test_bad_files(tmp_path: Path, cli: Any, text: str, message: str) -> None:
    result = cli("worksheet", str(write(tmp_path, text)))
    assert result.code == 2
    assert message in result.err
    assert "Traceback" not in result.err


def test_missing_file_and_bad_format(tmp_path: Path, cli: Any) -> None:
    missing = cli("worksheet", str(tmp_path / "nope.toml"))
    assert missing.code == 2
    assert "nope.toml: no such file" in missing.err
    assert cli("worksheet", str(write(tmp_path, BASE)), "--format", "xml").code == 2


def test_unknown_model_is_unknown_money_not_a_guess(tmp_path: Path, cli: Any) -> None:
    path = write(tmp_path, BASE.replace("claude-sonnet-4-6", "claude-imaginary-9"))
    result = cli("worksheet", str(path), "--format", "json")
    assert result.code == 0
    assert json.loads(result.out)["workloads"][0]["monthly_usd"]["current"] is None
    assert "no price for model 'claude-imaginary-9'" in result.err
