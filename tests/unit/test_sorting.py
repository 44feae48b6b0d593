"""The sorting rules, one row per rule, and the stacked-savings arithmetic by hand."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from nowait.sort.classify import (
    Facts,
    Traffic,
    Trigger,
    Verdict,
    Waiter,
    classify,
    price_move,
    with_cache_share,
)
from nowait.types import Usage

H = timedelta(hours=1)


@pytest.mark.parametrize(
    ("facts", "verdict", "reason_part"),
    [
        # The one question: is a person or a process waiting on this specific result?
        (Facts(Trigger.USER_ACTION, Waiter.PERSON), Verdict.REALTIME, "a person waits"),
        (Facts(Trigger.EVENT, Waiter.PROCESS), Verdict.REALTIME, "a process waits"),
        (Facts(Trigger.SCHEDULE, Waiter.NOBODY), Verdict.BATCH, "nobody waits"),
        # The deadline against the batch window: needed within minutes stays real-time.
        (
            Facts(Trigger.QUEUE, Waiter.NOBODY, needed_within=timedelta(minutes=15)),
            Verdict.REALTIME,
            "needed within 15 min",
        ),
        (
            Facts(Trigger.SCHEDULE, Waiter.NOBODY, needed_within=6 * H),
            Verdict.BATCH,
            "deadline guard",
        ),
        (
            Facts(Trigger.BACKFILL, Waiter.NOBODY, needed_within=72 * H),
            Verdict.BATCH,
            "24 h batch limit fits",
        ),
        # Triggered by a user is not awaited by a user.
        (
            Facts(Trigger.USER_ACTION, Waiter.NOBODY),
            Verdict.BATCH,
            "triggered by a user, but nobody waits",
        ),
        (Facts(Trigger.USER_ACTION, Waiter.UNKNOWN), Verdict.REVIEW, "not known whether"),
        # A fast part someone waits on + a deeper part read later: split.
        (
            Facts(Trigger.USER_ACTION, Waiter.PERSON, has_deferred_part=True),
            Verdict.SPLIT,
            "deferred part",
        ),
        # Agent loops whose result feeds the next step stay real-time, whoever watches.
        (
            Facts(Trigger.SCHEDULE, Waiter.NOBODY, feeds_next_step=True),
            Verdict.REALTIME,
            "agent loop",
        ),
        (Facts(Trigger.AGENT, Waiter.UNKNOWN), Verdict.REALTIME, "agent loop"),
        # Unattended triggers with nobody declared still go to batch; nothing known → review.
        (Facts(Trigger.PIPELINE, Waiter.UNKNOWN), Verdict.BATCH, "pipeline step"),
        (Facts(None, Waiter.UNKNOWN), Verdict.REVIEW, "not known who waits"),
    ],
)
def test_classification_rules(facts: Facts, verdict: Verdict, reason_part: str) -> None:
    result = classify(facts)
    assert result.verdict is verdict
    assert any(reason_part in reason for reason in result.reasons), result.reasons


SONNET_MONTH = Traffic(
    "claude-sonnet-4-6", 10_000, Usage(input_tokens=20_000_000, output_tokens=5_000_000)
)


def test_stacked_savings_worked_example() -> None:
    # Sonnet 4.6, 10,000 calls a month of 2,000 input + 500 output tokens.
    # Now: 20M × $3 + 5M × $15 = $135. Batch: half, $67.50.
    # Half the prompt from cache on top: 10M × $1.50 + 10M reads × $0.15 (0.5 × 0.1 × $3: the
    # discounts multiply) + 5M × $7.50 = $15 + $1.50 + $37.50 = $54.
    move = price_move(Verdict.BATCH, SONNET_MONTH, cache_share_after=Decimal("0.5"))
    assert move.current == Decimal(135)
    assert move.after_batch == Decimal("67.5")
    assert move.after_cache == Decimal(54)
    assert move.saved == Decimal(81)
    assert move.saved_by_batch == Decimal("67.5")
    assert move.saved_by_cache == Decimal("13.5")
    assert move.batchable_current == Decimal(135)


def test_realtime_and_review_work_does_not_move() -> None:
    for verdict in (Verdict.REALTIME, Verdict.REVIEW):
        move = price_move(verdict, SONNET_MONTH)
        assert move.after_batch == move.current == Decimal(135)
        assert move.saved == 0
        assert move.batchable_current == 0


def test_split_prices_each_part_on_its_own() -> None:
    # Awaited part: 10,000 × (1,000 in + 100 out) on Haiku 4.5 = 10M × $1 + 1M × $5 = $15.
    # Deferred part: 10,000 × (4,000 in + 1,000 out) on Sonnet 4.6 = 40M × $3 + 10M × $15 = $270,
    # in batch $135.
    fast = Traffic("claude-haiku-4-5", 10_000, Usage(10_000_000, 1_000_000))
    deep = Traffic("claude-sonnet-4-6", 10_000, Usage(40_000_000, 10_000_000))
    move = price_move(Verdict.SPLIT, fast, deep)
    assert move.current == Decimal(285)
    assert move.after_batch == Decimal(150)
    assert move.batchable_current == Decimal(270)


def test_cache_share_only_ever_adds_caching() -> None:
    traffic = Traffic("claude-sonnet-4-6", 1, Usage(input_tokens=100, cache_read_tokens=300))
    assert with_cache_share(traffic, Decimal("0.5")).usage == traffic.usage
    assert with_cache_share(traffic, Decimal("0.9")).usage.cache_read_tokens == 360


def test_unknown_model_makes_the_money_unknown() -> None:
    with pytest.warns(UserWarning, match="claude-imaginary"):
        move = price_move(Verdict.BATCH, Traffic("claude-imaginary", 1, Usage(10, 10)))
    assert move.current is None
    assert move.saved is None
