"""Receipt arithmetic on a worked example, and packing at both limits (pure code)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from nowait.guard.policy import PollConfig, RetryConfig, line_verdict, next_poll, retry_at
from nowait.route.packing import ENVELOPE_BYTES, Member, pack
from nowait.route.receipts import build_receipt
from nowait.store import UsageRow
from nowait.types import Tier, Usage


def test_receipt_worked_example() -> None:
    # claude-haiku-4-5: $1 input, $5 output, $0.10 cache read per million; batch halves all.
    rows = [
        UsageRow(
            "digest", "claude-haiku-4-5", Tier.BATCH, Usage(1_000_000, 200_000, 0, 0, 500_000), 10
        ),
        UsageRow("chat", "claude-haiku-4-5", Tier.STANDARD, Usage(100_000, 10_000), 4),
    ]
    receipt = build_receipt(rows)
    digest, chat = receipt.lines[1], receipt.lines[0]
    # list: 1.00 input + 1.00 output + 0.05 cache read = 2.05; paid at batch: 1.025
    assert (digest.list_price, digest.paid, digest.saved) == (
        Decimal("2.05"),
        Decimal("1.025"),
        Decimal("1.025"),
    )
    # real time: 0.10 + 0.05, paid as listed
    assert (chat.list_price, chat.paid, chat.saved) == (
        Decimal("0.15"),
        Decimal("0.15"),
        Decimal(0),
    )
    total = receipt.total
    assert (total.list_price, total.paid, total.saved) == (
        Decimal("2.20"),
        Decimal("1.175"),
        Decimal("1.025"),
    )
    assert total.requests == {Tier.BATCH: 10, Tier.STANDARD: 4}
    assert total.usage.cache_read_tokens == 500_000


def test_unknown_model_makes_money_unknown_not_zero() -> None:
    with pytest.warns(UserWarning, match="claude-mystery"):
        receipt = build_receipt([UsageRow("w", "claude-mystery", Tier.BATCH, Usage(10, 10), 1)])
    assert receipt.total.paid is None and receipt.total.saved is None
    assert receipt.total.cache_discount is None and receipt.total.batch_discount is None


def test_cache_split_worked_example() -> None:
    # claude-haiku-4-5: $1 input, $1.25 5m write, $2 1h write, $0.10 read per million.
    usage = Usage(100_000, 0, 200_000, 100_000, 600_000)
    receipt = build_receipt([UsageRow("w", "claude-haiku-4-5", Tier.BATCH, usage, 10)])
    line = receipt.lines[0]
    assert line.hit_rate == Decimal("0.6")  # 600k reads of a 1M-token prompt
    assert line.uncached == Decimal("1.00")  # every prompt token fresh, real time
    assert line.list_price == Decimal("0.1") + Decimal("0.25") + Decimal("0.2") + Decimal("0.06")
    assert line.cache_discount == Decimal("1.00") - Decimal("0.61")
    assert line.batch_discount == Decimal("0.305")
    assert line.cache_discount + line.batch_discount == line.uncached - line.paid


def members(n: int, params: str = '{"a": 1}') -> list[Member]:
    return [Member(i, f"j{i}-a1", params) for i in range(n)]


def test_pack_at_the_request_limit() -> None:
    groups = [len(g) for g, _ in pack(members(250), max_requests=100)]
    assert groups == [100, 100, 50]


def test_pack_at_the_byte_limit_exactly() -> None:
    each = members(1)[0].size
    limit = ENVELOPE_BYTES + 3 * each
    groups = list(pack(members(7), max_bytes=limit))
    assert [len(g) for g, _ in groups] == [3, 3, 1]
    assert all(size <= limit for _, size in groups)
    assert groups[0][1] == limit  # filled to the byte


def test_one_oversized_request_is_refused() -> None:
    with pytest.raises(ValueError, match="alone exceeds"):
        list(pack(members(1, "x" * 500), max_bytes=100))


@pytest.mark.parametrize(
    ("kind", "error", "verdict"),
    [
        ("succeeded", None, "succeeded"),
        ("errored", "overloaded_error", "retry"),
        ("errored", "api_error", "retry"),
        ("errored", "rate_limit_error", "retry"),
        ("errored", "invalid_request_error", "failed"),
        ("errored", "not_found_error", "failed"),
        ("expired", None, "retry"),
        ("canceled", None, "retry"),
    ],
)
def test_line_verdicts(kind: str, error: str | None, verdict: str) -> None:
    assert line_verdict(kind, error) == verdict


def test_retry_backoff_honours_retry_after_and_the_cap() -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime(2026, 11, 24, tzinfo=UTC)
    config = RetryConfig(max_attempts=3, base_delay=2, max_delay=600)
    assert retry_at(1, now, None, config) == now + timedelta(seconds=2)
    assert retry_at(2, now, None, config) == now + timedelta(seconds=4)
    assert retry_at(1, now, 30, config) == now + timedelta(seconds=30)
    assert retry_at(3, now, None, config) is None
    assert next_poll(0, PollConfig()) == 10 and next_poll(100, PollConfig()) == 120


def test_the_receipt_says_how_many_fell_back_and_which_deadlines_were_missed() -> None:
    from datetime import UTC, datetime, timedelta

    from nowait.present.tables import receipt_json
    from nowait.route.receipts import build_receipt
    from nowait.store import DeadlineRow

    due = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    on_time = [DeadlineRow(due, due - timedelta(minutes=5), fell_back=i < 3) for i in range(10)]
    assert build_receipt([], deadlines=on_time).deadlines.lines() == [
        "3 of 10 requests with a deadline fell back from a batch to real time",
        "no deadline missed",
    ]
    late = [DeadlineRow(due, due + timedelta(seconds=s), fell_back=True) for s in (30, 90, 600)] + [
        DeadlineRow(due, None, fell_back=False)
    ]  # no known time: counted on time
    receipt = build_receipt([], deadlines=on_time + late)
    assert receipt.deadlines.lines() == [
        "6 of 14 requests with a deadline fell back from a batch to real time",
        "3 requests missed their deadline: late by up to 10 min (median 90 s)",
    ]
    assert receipt_json(receipt)["deadlines"] == {
        "with_deadline": 14, "fell_back": 6, "missed": 3, "late_seconds_max": 600.0,
    }  # fmt: skip
    assert build_receipt([]).deadlines.lines() == []  # no deadline: nothing to say
