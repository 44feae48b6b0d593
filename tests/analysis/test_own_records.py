"""nowait's own data speaks first: the demo's results.jsonl and store carry what the caller
told the router (awaited, deadline, workload), and analyzing them sorts each workload the way
the router routed it."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from nowait.analyze.engine import connect, load
from nowait.analyze.readers import BadRecords
from nowait.analyze.report import Report, build_report
from nowait.demo.route import route_example
from nowait.sort.classify import Verdict
from nowait.store.sqlite import SQLiteStore
from nowait.types import Route


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    route_example(out, show_progress=False)
    return out


def analyze(path: Path) -> Report:
    con = connect()
    bad = BadRecords()
    load(con, [path], fmt=None, bad=bad)
    return build_report(con, bad=bad)


def routed(store_path: Path) -> dict[str, Route]:
    """Each workload's route as the router decided it (one route per workload in the demo)."""
    store = SQLiteStore(store_path)
    try:
        routes: dict[str, Counter[Route]] = {}
        for job in store.jobs():
            routes.setdefault(job.workload or "", Counter())[job.route] += 1
    finally:
        store.close()
    assert all(len(c) == 1 for c in routes.values()), routes
    return {name: next(iter(c)) for name, c in routes.items()}


def test_results_carry_what_the_caller_said(demo: Path) -> None:
    lines = [json.loads(x) for x in (demo / "results.jsonl").read_text().splitlines()]
    chat = [x for x in lines if x["workload"] == "support-chat"]
    fraud = [x for x in lines if x["workload"] == "fraud-alert"]
    assert chat and all(x["awaited"] is True and x["deadline"] is None for x in chat)
    assert fraud and all(x["awaited"] is False and x["deadline"] for x in fraud)
    assert all(x["submitted_at"] for x in lines)


@pytest.mark.parametrize("source", ["results.jsonl", "store/nowait.db"])
def test_the_analysis_of_nowaits_own_records_agrees_with_the_router(
    demo: Path, source: str
) -> None:
    report = analyze(demo / source)
    verdicts = {w.name: w for w in report.workloads}
    router = routed(demo / "store" / "nowait.db")
    assert set(verdicts) == set(router)
    for name, route in router.items():
        expected = Verdict.REALTIME if route is Route.REALTIME else Verdict.BATCH
        assert verdicts[name].verdict is expected, (name, verdicts[name].inference)
    assert router["support-chat"] is Route.REALTIME and router["fraud-alert"] is Route.REALTIME
    assert router["catalog-enrichment"] is Route.BATCH
    chat, fraud = verdicts["support-chat"].inference, verdicts["fraud-alert"].inference
    assert chat.confidence == "high" and "awaited: true" in " ".join(chat.evidence)
    assert fraud.confidence == "high" and "deadline under 60 min" in " ".join(fraud.evidence)
    assert "needed within 15 min" in " ".join(fraud.classification.reasons)
