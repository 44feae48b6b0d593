"""The simulator prices shared prefixes under each cache policy: a trace worked by hand, the
trace reader's errors for bad prefix fields, and the CLI's table and chart."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from nowait.errors import InputError
from nowait.guard.turnaround import Turnaround
from nowait.simulate.cache import CACHE_POLICIES, simulate_cache
from nowait.simulate.engine import SimConfig
from nowait.simulate.trace import TraceRequest, read_trace
from nowait.sort.pricing import default_table

HAIKU = "claude-haiku-4-5"


def prefixed(t: float, *, awaited: bool = False, prefix: str | None = "p") -> TraceRequest:
    return TraceRequest(t, HAIKU, 2_100, 50, awaited, None, prefix, 2_000 if prefix else 0)


def test_each_cache_policy_on_a_hand_worked_trace() -> None:
    # Batches every 5 minutes, each ending 10 minutes after its submit, every request half way:
    # three requests finish at 600 s (one batch), one at 1,500 s, one at 10,500 s (> 1 h later).
    trace = [prefixed(0), prefixed(10), prefixed(20), prefixed(1_000), prefixed(10_000)]
    trace += [prefixed(30, awaited=True), prefixed(40, prefix=None)]  # neither counts
    config = SimConfig(turnaround=Turnaround(600), finish_fractions=[0.5] * len(trace))
    results = {r.policy: r for r in simulate_cache(trace, config, default_table())}
    assert list(results) == list(CACHE_POLICIES)
    assert {r.requests for r in results.values()} == {5}
    tokens = {p: (r.fresh, r.writes_5m, r.writes_1h, r.reads) for p, r in results.items()}
    assert tokens == {
        "no planning": (10_000, 0, 0, 0),
        # one batch cannot read its own writes; each later batch finds the 5-minute entry gone
        "grouping only": (0, 10_000, 0, 0),
        # primed: one 1-hour write, its batch and the next read; alone after the hour: fresh
        "grouping + 1h + priming": (2_000, 0, 2_000, 6_000),
        "oracle": (2_000, 0, 2_000, 6_000),
    }
    rates = default_table().models[HAIKU].rates.scaled(Decimal("0.5"))
    per = Decimal(2_000) / 1_000_000
    assert results["no planning"].cost == 5 * per * rates.input
    assert results["grouping only"].cost == 5 * per * rates.cache_write_5m
    primed = per * (rates.input + rates.cache_write_1h + 3 * rates.cache_read)
    assert results["grouping + 1h + priming"].cost == primed
    assert results["grouping + 1h + priming"].hit_rate == Decimal("0.6")


def test_a_short_prefix_is_never_cached_and_no_prefix_means_no_table() -> None:
    short = [TraceRequest(t, HAIKU, 900, 10, False, None, "p", 800) for t in (0, 1, 2)]
    results = simulate_cache(short, SimConfig(turnaround=Turnaround(600)))
    assert {(r.fresh, r.reads) for r in results} == {(2_400, 0)}
    assert simulate_cache([prefixed(0, prefix=None)], SimConfig()) == []


def test_the_oracle_is_never_dearer_than_priming() -> None:
    trace = [prefixed(t * 137.0) for t in range(300)]  # a prefix used every 2 min 17 s
    results = {r.policy: r for r in simulate_cache(trace, SimConfig())}
    assert results["oracle"].cost <= results["grouping + 1h + priming"].cost
    assert results["grouping + 1h + priming"].cost < results["no planning"].cost


GOOD = {"t": 0, "model": HAIKU, "input_tokens": 10, "output_tokens": 5, "awaited": False}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"prefix": "p", "prefix_tokens": -1}, "prefix_tokens"),
        ({"prefix": "p", "prefix_tokens": "4000"}, "prefix_tokens"),
        ({"prefix": "p", "prefix_tokens": 11}, "prefix_tokens"),  # more than the input
        ({"prefix": "p", "prefix_tokens": True}, "prefix_tokens"),
        ({"prefix": "p"}, "prefix_tokens"),
        ({"prefix": 7, "prefix_tokens": 4}, "prefix"),
        ({"prefix": "", "prefix_tokens": 4}, "prefix"),
        ({"prefix_tokens": 4}, "prefix"),
    ],
)
def test_bad_prefix_fields_name_file_line_and_field(
    fields: dict[str, Any], field: str, tmp_path: Path, cli: Any
) -> None:
    trace = tmp_path / "trace.jsonl"
    ok = {**GOOD, "prefix": "p", "prefix_tokens": 10}
    trace.write_text(json.dumps(ok) + "\n" + json.dumps({**GOOD, **fields}) + "\n")
    with pytest.raises(InputError) as caught:
        read_trace(trace)
    assert (caught.value.line, caught.value.field) == (2, field)
    result = cli("simulate", str(trace))
    assert result.code == 2 and f"trace.jsonl:2: {field}: got" in result.err
    assert "expected" in result.err and "Traceback" not in result.err


def test_simulate_cli_shows_the_cache_policies(tmp_path: Path, cli: Any) -> None:
    trace, html = tmp_path / "trace.jsonl", tmp_path / "sim.html"
    rows = [{**GOOD, "t": t * 20, "input_tokens": 4_300, "prefix": "sys", "prefix_tokens": 4_000}
            for t in range(40)]  # fmt: skip
    trace.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = cli("simulate", str(trace), "--html", str(html))
    assert result.code == 0, result.err
    for policy in CACHE_POLICIES:
        assert policy in result.out
    assert "Cache policies on the prefixes of 40 batched requests" in result.out
    page = html.read_text()
    assert "Prefix cost by cache policy" in page and page.count('data-label="oracle"') >= 2
    plain = cli("simulate", str(tmp_path / "plain.jsonl"), "--generate", "200", "--days", "1")
    assert plain.code == 0 and "Cache policies" not in plain.out


def test_the_cache_mix_writes_prefixes_the_reader_takes(tmp_path: Path) -> None:
    from nowait.simulate.trace import PREFIXES, generate_trace, write_trace

    path = tmp_path / "trace.jsonl"
    assert write_trace(path, 2_000, days=2, seed=3, mix="cache") == 2_000
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == list(generate_trace(2_000, days=2, seed=3, mix="cache"))
    requests = read_trace(path)
    shared = {(r.prefix, r.prefix_tokens) for r in requests if r.prefix is not None}
    assert shared == set(PREFIXES.values())
    assert all(r.input_tokens > r.prefix_tokens for r in requests if r.prefix is not None)
    assert any(r.prefix is None and r.awaited for r in requests)  # chat shares nothing
    plain = tmp_path / "plain.jsonl"
    write_trace(plain, 500, seed=3)
    assert "prefix" not in plain.read_text()  # the other mixes are as they were
    results = {r.policy: r for r in simulate_cache(requests, SimConfig())}
    assert results["oracle"].cost <= results["grouping + 1h + priming"].cost
    assert results["grouping + 1h + priming"].cost < results["no planning"].cost / 5
