"""Cache planning's pure decisions, as tables: prefixes, groups, whether planning pays, markers."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from nowait.route.cacheplan import (
    CACHE_MIN_TOKENS,
    ONE_HOUR,
    Group,
    Traffic,
    blocks,
    breakpoints,
    group,
    group_costs,
    mark,
    placed,
    plans,
    prefix_cost,
)
from nowait.sort.pricing import Rates, default_table

MODEL = "claude-sonnet-4-5"
BIG = "policy " * 1200  # ~2,100 tokens: above the minimum
TOOL = {"name": "lookup", "description": "find it", "input_schema": {"type": "object"}}


def _rates() -> Rates:
    price = default_table().lookup(MODEL)
    assert price is not None
    return price.rates.scaled(default_table().batch_discount)


def req(tail: str, system: Any = BIG, **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 100,
        "system": system,
        "messages": [{"role": "user", "content": tail}],
        **extra,
    }


def test_blocks_follow_the_api_order() -> None:
    params = req("hi", tools=[TOOL], system=[{"type": "text", "text": "a"}, "b"])
    assert [b.where for b in blocks(params)] == [
        ("tools", 0),
        ("system", 0),
        ("system", 1),
        ("messages", 0, 0),
    ]


def test_a_marker_does_not_change_the_key() -> None:
    plain = req("hi", system=[{"type": "text", "text": BIG}])
    marked = req(
        "hi", system=[{"type": "text", "text": BIG, "cache_control": {"type": "ephemeral"}}]
    )
    assert [b.key for b in blocks(plain)] == [b.key for b in blocks(marked)]
    assert [b.marker for b in blocks(marked)] == ["5m", None]


@pytest.mark.parametrize(
    ("requests", "expected"),
    [
        # shared system, unique tails: one group of three
        ([req("a"), req("b"), req("c")], [(3, 1)]),
        # nothing shared: one prefix-less group
        ([req("a", system="x"), req("b", system="y")], [(2, 0)]),
        # two families: each its own group, the bigger prefix first
        (
            [req("a"), req("a2", system="small"), req("b"), req("b2", system="small")],
            [(2, 1), (2, 1)],
        ),
        # a deeper shared prefix (same first user turn) wins for the two that share it
        (
            [
                req(
                    "q",
                    messages=[
                        {"role": "user", "content": "same"},
                        {"role": "assistant", "content": "1"},
                    ],
                ),
                req(
                    "q",
                    messages=[
                        {"role": "user", "content": "same"},
                        {"role": "assistant", "content": "2"},
                    ],
                ),
                req("other"),
            ],
            [(2, 2), (1, 1)],
        ),
    ],
)
def test_groups(requests: list[dict[str, Any]], expected: list[tuple[int, int]]) -> None:
    assert [(len(g.members), g.blocks) for g in group(requests)] == expected
    assert sorted(i for g in group(requests) for i in g.members) == list(range(len(requests)))


def test_models_never_share_a_group() -> None:
    groups = group([req("a"), {**req("b"), "model": "claude-haiku-4-5"}])
    assert sorted(g.model for g in groups) == ["claude-haiku-4-5", MODEL]
    assert all(g.prefix == "" for g in groups)


def test_prefix_tokens_add_up() -> None:
    (g,) = group([req("a"), req("b")])
    assert g.tokens == blocks(req("a"))[0].tokens >= CACHE_MIN_TOKENS


def _group(n: int, tokens: int) -> Group:
    return Group(MODEL, "p" if tokens else "", tokens, 1, tuple(range(n)))


@pytest.mark.parametrize(
    ("n", "tokens", "mode", "expected"),
    [
        (1, 4000, "auto", False),  # one request: a 2x write, nothing to read it
        (2, 4000, "auto", False),  # 2 + 0.1 > 2
        (3, 4000, "auto", True),  # 2 + 0.2 < 3
        (10_000, 4000, "auto", True),
        (10_000, CACHE_MIN_TOKENS - 1, "auto", False),  # too short to cache
        (10_000, 0, "auto", False),  # nothing shared
        (10_000, 4000, "keep", False),
        (10_000, 4000, "off", False),
    ],
)
def test_plans(n: int, tokens: int, mode: Any, expected: bool) -> None:
    assert plans(_group(n, tokens), _rates(), mode) is expected


def test_unpriced_models_are_not_planned() -> None:
    assert plans(_group(100, 4000), None, "auto") is False


def test_prefix_cost_from_the_price_table() -> None:
    rates = _rates()
    cost = prefix_cost(_group(10_000, 4000), rates)
    per = Decimal(4000) / 1_000_000
    assert cost.plain == 10_000 * per * rates.input
    assert cost.planned == per * (rates.cache_write_1h + 9_999 * rates.cache_read)
    assert cost.planned / cost.plain < Decimal("0.2")


def _markers(params: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    return [(b.where, b.marker) for b in blocks(params) if b.marker]


def _shared(requests: list[dict[str, Any]]) -> Group:
    return group(requests)[0]


MARK_CASES = [
    # plain string system: becomes a text block carrying the 1h marker
    ("string system", req("a"), [(("system", 0), "1h")]),
    # tools + system: the marker goes on the last shared block
    ("tools", req("a", tools=[TOOL]), [(("system", 0), "1h")]),
    # user's marker on the shared block: left alone, nothing added
    (
        "user marker at the cut",
        req(
            "a",
            system=[
                {"type": "text", "text": BIG, "cache_control": {"type": "ephemeral", "ttl": "1h"}}
            ],
        ),
        [(("system", 0), "1h")],
    ),
    # user's 5m marker before the cut: a 1h one after it would be refused
    (
        "5m before",
        req("a", tools=[{**TOOL, "cache_control": {"type": "ephemeral"}}]),
        [(("tools", 0), "5m")],
    ),
]


@pytest.mark.parametrize(("name", "params", "expected"), MARK_CASES, ids=[c[0] for c in MARK_CASES])
def test_mark(name: str, params: dict[str, Any], expected: list[Any]) -> None:
    other = {**params, "messages": [{"role": "user", "content": "other tail"}]}
    g = _shared([params, other])
    before = repr(params)
    marked = mark(params, g)
    assert _markers(marked) == expected
    assert repr(params) == before  # the stored request is untouched
    assert [b.key for b in blocks(marked)][g.blocks :] == [b.key for b in blocks(params)][
        g.blocks :
    ]


def test_mark_respects_the_four_breakpoint_limit() -> None:
    tools = [
        {**TOOL, "name": f"t{i}", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
        for i in range(3)
    ]
    params = req("a", tools=tools, cache_control={"type": "ephemeral"})
    g = _shared([params, {**params, "messages": [{"role": "user", "content": "b"}]}])
    assert breakpoints(params) == 4
    assert mark(params, g) == params
    three = req("a", tools=tools)
    g3 = _shared([three, {**three, "messages": [{"role": "user", "content": "b"}]}])
    assert breakpoints(mark(three, g3)) == 4
    assert mark(three, g3)["system"][0]["cache_control"] == ONE_HOUR


def test_nothing_shared_marks_nothing() -> None:
    g = group([req("a", system="x"), req("b", system="y")])[0]
    assert mark(req("a", system="x"), g) == req("a", system="x")


def nested(customers: int, each: int, **extra: Any) -> list[dict[str, Any]]:
    """A shared system prompt (the outer level), a document per customer (the inner level)."""
    out = []
    for c in range(customers):
        document = {"type": "text", "text": f"customer {c} " + "clause " * 800}
        for i in range(each):
            question = {"type": "text", "text": f"question {i}"}
            content = [document, question]
            out.append(req("", messages=[{"role": "user", "content": content}], **extra))
    return out


def test_nested_levels_are_priced_once_each() -> None:
    requests = nested(3, 5)
    outer, *inner = rows = group_costs(requests, default_table(), "auto")
    tokens = [b.tokens for b in blocks(requests[0])]
    assert outer.shared and outer.parent is None and len(outer.group.members) == 15
    assert outer.group.tokens == tokens[0]
    assert outer.traffic == Traffic(written=tokens[0], read=14 * tokens[0])
    for row in inner:
        assert row.parent == outer.group.prefix and row.start == tokens[0] and row.planned
        assert row.own_tokens == tokens[1]
        assert row.traffic == Traffic(fresh=5 * tokens[2], written=tokens[1], read=4 * tokens[1])
    assert sum(r.prompt_tokens for r in rows) == 15 * sum(tokens)
    rates = _rates()
    assert sum(r.with_planning or 0 for r in rows) == (
        tokens[0] * (rates.cache_write_1h + 14 * rates.cache_read)
        + 3 * tokens[1] * (rates.cache_write_1h + 4 * rates.cache_read)
        + 15 * tokens[2] * rates.input
    ) / Decimal(1_000_000)


def test_a_level_without_room_for_its_marker_is_not_priced() -> None:
    mine = {"type": "ephemeral", "ttl": "1h"}
    tools = [{**TOOL, "name": f"t{i}", "cache_control": mine} for i in range(3)]
    requests = nested(3, 5, tools=tools)  # one breakpoint left: the inner level takes it
    rows = group_costs(requests, default_table(), "auto")
    assert [r.shared for r in rows] == [False] * 3 and all(r.parent is None for r in rows)
    whole = sum(b.tokens for b in blocks(requests[0])[:-1])
    assert all(r.traffic.written == whole and r.traffic.read == 4 * whole for r in rows)
    assert all(breakpoints(mark(requests[0], placed(requests[0], [r.group.inner]))) == 4
               for r in rows)  # fmt: skip


def test_keep_prices_every_level_fresh() -> None:
    rows = group_costs(nested(3, 5), default_table(), "keep")
    assert not any(r.shared or r.planned for r in rows)
    assert all(r.plain == r.with_planning for r in rows)
