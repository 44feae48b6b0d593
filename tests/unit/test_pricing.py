"""Prices against the published numbers (anthropic-api.md §8) and the exact cost arithmetic."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from nowait.errors import InputError
from nowait.sort.pricing import UnknownModelWarning, cost, cost_breakdown, load_table
from nowait.types import Tier, Usage

M = 1_000_000
N = 50_000  # below every long-context threshold; N tokens cost price × N / M = price / 20

# model, input, output, 5m write, 1h write, cache read: USD per million tokens, standard tier.
PUBLISHED = [
    ("claude-fable-5-2", "8", "40", "10", "16", "0.20"),
    ("claude-fable-5-1", "10", "50", "12.50", "20", "0.25"),
    ("claude-opus-5-5", "4", "20", "5", "8", "0.20"),
    ("claude-opus-4-8", "5", "25", "6.25", "10", "0.50"),
    ("claude-sonnet-5-5", "2", "10", "2.50", "4", "0.10"),
    ("claude-sonnet-4-6", "3", "15", "3.75", "6", "0.30"),
    ("claude-haiku-5-5", "0.10", "0.50", "0.125", "0.20", "0.01"),
    ("claude-haiku-4-5", "1", "5", "1.25", "2", "0.10"),
]


@pytest.mark.parametrize(("model", "inp", "out", "w5", "w1", "read"), PUBLISHED)
def test_standard_items_match_published_prices(
    model: str, inp: str, out: str, w5: str, w1: str, read: str
) -> None:
    assert cost(Usage(input_tokens=N), model) == Decimal(inp) / 20
    assert cost(Usage(output_tokens=N), model) == Decimal(out) / 20
    assert cost(Usage(cache_write_5m_tokens=N), model) == Decimal(w5) / 20
    assert cost(Usage(cache_write_1h_tokens=N), model) == Decimal(w1) / 20
    assert cost(Usage(cache_read_tokens=N), model) == Decimal(read) / 20


@pytest.mark.parametrize(("model", "inp", "out", "w5", "w1", "read"), PUBLISHED)
def test_batch_is_half_of_every_item_cache_included(
    model: str, inp: str, out: str, w5: str, w1: str, read: str
) -> None:
    half = Decimal("0.5")
    assert cost(Usage(input_tokens=N), model, Tier.BATCH) == Decimal(inp) / 20 * half
    assert cost(Usage(output_tokens=N), model, Tier.BATCH) == Decimal(out) / 20 * half
    assert cost(Usage(cache_write_5m_tokens=N), model, Tier.BATCH) == Decimal(w5) / 20 * half
    assert cost(Usage(cache_write_1h_tokens=N), model, Tier.BATCH) == Decimal(w1) / 20 * half
    assert cost(Usage(cache_read_tokens=N), model, Tier.BATCH) == Decimal(read) / 20 * half


def test_cache_write_multipliers_follow_input() -> None:
    for price in load_table():
        assert price.rates.cache_write_5m == price.rates.input * Decimal("1.25")
        assert price.rates.cache_write_1h == price.rates.input * 2


def test_a_mixed_call_is_exact_to_the_micro_dollar() -> None:
    # Sonnet 4.6: 1,234 in × $3 + 567 out × $15 + 2,000 5m-writes × $3.75 + 10,000 reads × $0.30
    usage = Usage(1234, 567, cache_write_5m_tokens=2000, cache_read_tokens=10000)
    expected = Decimal("0.003702") + Decimal("0.008505") + Decimal("0.0075") + Decimal("0.003")
    assert cost(usage, "claude-sonnet-4-6") == expected == Decimal("0.022707")
    assert cost(usage, "claude-sonnet-4-6", Tier.BATCH) == Decimal("0.0113535")


def test_haiku_5_5_reprices_the_whole_request_above_100k_prompt_tokens() -> None:
    small = Usage(input_tokens=60_000, cache_read_tokens=40_000, output_tokens=1000)
    large = Usage(input_tokens=60_001, cache_read_tokens=40_000, output_tokens=1000)
    assert cost(small, "claude-haiku-5-5") == Decimal("0.006") + Decimal("0.0004") + Decimal(
        "0.0005"
    )
    assert cost(large, "claude-haiku-5-5") == (
        Decimal("60001") * Decimal("0.50") / M + Decimal("0.002") + Decimal("0.0025")
    )


def test_dated_and_provider_ids_resolve_to_the_same_price() -> None:
    usage = Usage(input_tokens=M)
    for name in (
        "claude-sonnet-4-5-20250929",
        "anthropic/claude-sonnet-4-5",
        "anthropic.claude-sonnet-4-5-20250929-v1:0",
        "claude-haiku-4-5-20251001",
    ):
        assert cost(usage, name) is not None, name
    assert cost(Usage(input_tokens=N), "claude-sonnet-4-5-20250929") == Decimal(3) / 20


def test_unknown_model_costs_none_with_a_warning() -> None:
    with pytest.warns(UnknownModelWarning, match="claude-imaginary-9"):
        assert cost(Usage(input_tokens=10), "claude-imaginary-9") is None
        assert cost_breakdown(Usage(), "claude-imaginary-9") is None


def test_usage_from_api_reads_cache_fields() -> None:
    usage = Usage.from_api(
        {
            "input_tokens": 10,
            "output_tokens": 5,
            "cache_creation_input_tokens": 300,
            "cache_read_input_tokens": 7,
            "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200},
        }
    )
    assert usage == Usage(10, 5, 100, 200, 7)
    legacy = Usage.from_api(
        {"input_tokens": 1, "output_tokens": 1, "cache_creation_input_tokens": 9}
    )
    assert legacy.cache_write_5m_tokens == 9


def test_user_price_file_overrides_and_adds(tmp_path: Path) -> None:
    override = tmp_path / "prices.toml"
    override.write_text(
        'as_of = 2026-12-01\n[models."claude-sonnet-4-6"]\ninput = "2.5"\noutput = "12"\n'
        'cache_write_5m = "3.125"\ncache_write_1h = "5"\ncache_read = "0.25"\n'
        '[models."my-finetune"]\ninput = 1\noutput = 2\ncache_write_5m = 1.25\n'
        "cache_write_1h = 2\ncache_read = 0.1\n"
    )
    table = load_table(override)
    assert table.as_of.isoformat() == "2026-12-01"
    assert cost(Usage(input_tokens=M), "claude-sonnet-4-6", table=table) == Decimal("2.5")
    assert cost(Usage(output_tokens=M), "my-finetune", table=table) == Decimal(2)
    assert cost(Usage(input_tokens=M), "claude-opus-5-5", table=table) == Decimal(4)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            '[models.x]\ninput = "abc"\noutput=1\n'
            "cache_write_5m=1\ncache_write_1h=1\ncache_read=1\n",
            "models.x.input",
        ),
        (
            "[models.x]\ninput = -1\noutput=1\ncache_write_5m=1\ncache_write_1h=1\ncache_read=1\n",
            "models.x.input",
        ),
        ("[models.x]\ninput = 1\n", "models.x"),
        ('as_of = "soon"\n', "as_of"),
    ],
)
def test_bad_price_file_names_the_field(tmp_path: Path, body: str, field: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(body)
    with pytest.raises(InputError) as err:
        load_table(path)
    assert err.value.field == field
    assert str(path) in str(err.value)


def test_prices_cli_prints_the_date_and_models(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("prices")
    assert result.code == 0
    assert "as of 2026-11-24" in result.out
    assert "claude-opus-5-5" in result.out
    bad = cli("prices", "--prices", "/nonexistent/prices.toml")
    assert bad.code == 2
    assert "/nonexistent/prices.toml: --prices: no such file" in bad.err
    assert "Traceback" not in bad.err
