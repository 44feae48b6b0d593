"""Priming's pure decisions, as tables: whether a job waits for its primer (the guard's rule at
the moment the primer is forecast to end), nested prefix levels, and markers at both levels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from nowait.guard.forecast import PRIOR
from nowait.guard.policy import Capacity, GuardConfig, WorkLeft, worth_batching
from nowait.route.cacheplan import (
    CACHE_MIN_TOKENS,
    MAX_BREAKPOINTS,
    ONE_HOUR,
    Group,
    Level,
    blocks,
    breakpoints,
    counted_prefix,
    group,
    levels,
    mark,
)
from nowait.sort.pricing import Rates, default_table

NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)
MODEL = "claude-sonnet-4-5"
TOOLS = [{"name": "lookup", "description": "find it", "input_schema": {"type": "object"}}]
SYSTEM = "You answer questions about one customer's contract. " * 300  # ~3,900 tokens


def _rates() -> Rates:
    price = default_table().lookup(MODEL)
    assert price is not None
    return price.rates.scaled(default_table().batch_discount)


def _batches_at(deadline: datetime) -> Any:
    work = WorkLeft(1, 5_000, 500)

    def at(moment: datetime) -> bool:
        return worth_batching(
            moment, deadline, work, Capacity(), GuardConfig(), PRIOR.probability_within
        )

    return at


P95 = timedelta(seconds=PRIOR.quantile(0.95))  # 4 h: the prior for a one-request batch

WAIT_CASES = [
    ("no deadline", None, 1, True),
    ("nothing to wait for", timedelta(minutes=30), 0, True),
    ("8 h: one primer, then room for a batch and its fallback", timedelta(hours=8), 1, True),
    ("2 h: the primer alone may take longer", timedelta(hours=2), 1, False),
    ("4 h 15 m: no room left for the batch after the primer", timedelta(minutes=255), 1, False),
    ("5 h: 48 minutes' room after the primer, most batches end in it", timedelta(hours=5), 1, True),
    ("8 h, two primers (nested levels): 8 h of waiting", timedelta(hours=8), 2, False),
    ("30 h, two primers", timedelta(hours=30), 2, True),
]


@pytest.mark.parametrize(
    ("name", "left", "rounds", "expected"), WAIT_CASES, ids=[c[0] for c in WAIT_CASES]
)
def test_can_wait(name: str, left: timedelta | None, rounds: int, expected: bool) -> None:
    from nowait.route.priming import can_wait

    deadline = NOW + left if left is not None else None
    at = _batches_at(deadline) if deadline else lambda moment: True
    assert can_wait(deadline, NOW, rounds, P95, at) is expected


def customer(c: int, i: int, doc_words: int = 1_600, system: str = SYSTEM) -> dict[str, Any]:
    document = f"Contract of customer {c}: " + "clause " * doc_words
    return {
        "model": MODEL,
        "max_tokens": 100,
        "tools": TOOLS,
        "system": system,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": document},
                    {"type": "text", "text": f"Question {i}: when does it renew?"},
                ],
            }
        ],
    }


def test_a_group_knows_the_wider_prefix_it_shares_with_other_groups() -> None:
    requests = [customer(c, i) for c in range(3) for i in range(5)]
    groups = group(requests)
    assert [len(g.members) for g in groups] == [5, 5, 5]
    outer = {g.outer for g in groups}
    assert len(outer) == 1
    (level,) = outer
    assert level is not None and level.shared_by == 15
    assert level.blocks == 2 and level.tokens == sum(b.tokens for b in blocks(requests[0])[:2])
    assert all(g.blocks == 3 and g.tokens > level.tokens for g in groups)


def test_no_outer_level_when_every_request_shares_the_same_prefix() -> None:
    (g,) = group([customer(0, i) for i in range(4)])
    assert g.outer is None  # tools and system are shared by exactly the same four


def _nested(n: int, inner: int, outer: int | None, sharers: int = 100) -> Group:
    wide = Level("o", outer, 2, sharers) if outer is not None else None
    return Group(MODEL, "i", inner, 3, tuple(range(n)), wide)


LEVEL_CASES = [
    ("both pay", _nested(10, 6_000, 4_000), "auto", ["o", "i"]),
    ("a customer with two requests: the outer level only", _nested(2, 6_000, 4_000), "auto", ["o"]),
    (
        "outer too short to cache: the group's own prefix",
        _nested(10, 6_000, CACHE_MIN_TOKENS - 1),
        "auto",
        ["i"],
    ),
    (
        "a short document past a long outer prefix still pays",
        _nested(10, 4_010, 4_000),
        "auto",
        ["o", "i"],
    ),
    ("the outer shared by two only", _nested(10, 6_000, 4_000, sharers=2), "auto", ["i"]),
    ("no outer level", _nested(10, 6_000, None), "auto", ["i"]),
    ("too few for anything", _nested(2, 6_000, None), "auto", []),
    ("keep marks nothing", _nested(10, 6_000, 4_000), "keep", []),
]


@pytest.mark.parametrize(
    ("name", "g", "mode", "expected"), LEVEL_CASES, ids=[c[0] for c in LEVEL_CASES]
)
def test_levels(name: str, g: Group, mode: Any, expected: list[str]) -> None:
    assert [lv.prefix for lv in levels(g, _rates(), mode)] == expected


def _markers(params: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    return [(b.where, b.marker) for b in blocks(params) if b.marker]


def test_both_levels_are_marked() -> None:
    requests = [customer(c, i) for c in range(3) for i in range(5)]
    g = group(requests)[0]
    planned = levels(g, _rates(), "auto")
    assert len(planned) == 2
    marked = mark(requests[0], planned)
    assert _markers(marked) == [(("system", 0), "1h"), (("messages", 0, 0), "1h")]
    assert marked["messages"][0]["content"][0]["cache_control"] == ONE_HOUR
    assert "cache_control" not in str(requests[0])  # the stored request is untouched


@pytest.mark.parametrize(
    ("user_markers", "expected"),
    [
        (0, [(("system", 0), "1h"), (("messages", 0, 0), "1h")]),
        (2, [(("system", 0), "1h"), (("messages", 0, 0), "1h")]),
        (3, [(("messages", 0, 0), "1h")]),  # one left: the inner level, which reads it all
        (4, []),
    ],
)
def test_nested_markers_stay_within_four_breakpoints(
    user_markers: int, expected: list[Any]
) -> None:
    mine = {"type": "ephemeral", "ttl": "1h"}
    tools = [{**TOOLS[0], "name": f"t{i}", "cache_control": mine} for i in range(user_markers)]
    requests = [{**customer(c, i), "tools": tools or TOOLS} for c in range(3) for i in range(5)]
    planned = levels(group(requests)[0], _rates(), "auto")
    marked = mark(requests[0], planned)
    assert breakpoints(marked) <= MAX_BREAKPOINTS
    assert [m for m in _markers(marked) if m[0][0] != "tools"] == expected
    assert marked["tools"] == requests[0]["tools"]


def test_counted_prefix_holds_the_blocks_and_a_probe() -> None:
    params = customer(1, 1)
    with_prefix, probe = counted_prefix(params, 3)
    assert with_prefix["tools"] == TOOLS and with_prefix["system"] == SYSTEM
    assert with_prefix["messages"][0]["content"] == params["messages"][0]["content"][:1]
    assert with_prefix["messages"][-1] == probe["messages"][0]
    assert (
        "messages" in counted_prefix(params, 1)[0] and "system" not in counted_prefix(params, 1)[0]
    )
