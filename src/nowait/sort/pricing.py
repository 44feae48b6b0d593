"""The dated price table and the exact cost of a usage.

Costs are `Decimal` US dollars computed from token counts and per-million-token rates; nothing
is rounded on the way. A model the table does not know costs `None` (with a visible
`UnknownModelWarning`), never a guess.
"""

from __future__ import annotations

import functools
import re
import tomllib
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any

from nowait.errors import InputError
from nowait.types import Tier, Usage

MILLION = Decimal(1_000_000)
ITEMS = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")


class UnknownModelWarning(UserWarning):
    """A model has no price; its cost is reported as unknown."""


@dataclass(frozen=True)
class Rates:
    """USD per million tokens for each billed item."""

    input: Decimal
    output: Decimal
    cache_write_5m: Decimal
    cache_write_1h: Decimal
    cache_read: Decimal

    def scaled(self, factor: Decimal) -> Rates:
        return Rates(*(getattr(self, item) * factor for item in ITEMS))


@dataclass(frozen=True)
class ModelPrice:
    model: str
    rates: Rates
    long_context_above: int | None = None
    long_context: Rates | None = None
    aliases: tuple[str, ...] = ()
    confirmed: bool = True
    note: str = ""

    def rates_for(self, prompt_tokens: int) -> Rates:
        """The rates a request with this many prompt tokens is billed at."""
        above = self.long_context_above
        if self.long_context is not None and above is not None and prompt_tokens > above:
            return self.long_context
        return self.rates


@dataclass(frozen=True)
class CostBreakdown:
    """What one usage cost, item by item, in exact USD."""

    input: Decimal
    output: Decimal
    cache_write_5m: Decimal
    cache_write_1h: Decimal
    cache_read: Decimal

    @property
    def total(self) -> Decimal:
        return (
            self.input + self.output + self.cache_write_5m + self.cache_write_1h + self.cache_read
        )

    @property
    def cache(self) -> Decimal:
        return self.cache_write_5m + self.cache_write_1h + self.cache_read

    def __add__(self, other: CostBreakdown) -> CostBreakdown:
        return CostBreakdown(*(getattr(self, i) + getattr(other, i) for i in ITEMS))


ZERO_COST = CostBreakdown(*(Decimal(0),) * 5)


@dataclass(frozen=True)
class PriceTable:
    as_of: date
    models: Mapping[str, ModelPrice]
    batch_discount: Decimal = Decimal("0.5")
    priority_factor: Decimal | None = None
    """Priority Tier rates as a multiple of standard; None: not known, so not priced."""
    currency: str = "USD"
    source: str = ""
    overrides_from: tuple[str, ...] = ()
    _aliases: Mapping[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        aliases = {a: m.model for m in self.models.values() for a in m.aliases}
        object.__setattr__(self, "_aliases", aliases)

    def __iter__(self) -> Iterator[ModelPrice]:
        return iter(sorted(self.models.values(), key=lambda m: m.model))

    def lookup(self, model: str) -> ModelPrice | None:
        """The price of a model id, accepting dated ids and cloud/proxy spellings."""
        for candidate in model_id_candidates(model):
            if candidate in self.models:
                return self.models[candidate]
            if candidate in self._aliases:
                return self.models[self._aliases[candidate]]
        return None

    def tier_factor(self, tier: Tier) -> Decimal | None:
        """The multiple of standard rates `tier` is billed at; None when the table does not
        know it (Priority Tier without `priority_factor`). An unknown tier is priced as
        standard: the receipt says so."""
        if tier is Tier.BATCH:
            return self.batch_discount
        if tier is Tier.PRIORITY:
            return self.priority_factor
        return Decimal(1)


_DATE_SUFFIX = re.compile(r"(-|@)\d{8}$")
_VERSION_SUFFIX = re.compile(r"-v\d+(:\d+)?$")
_PREFIXES = ("anthropic/", "anthropic.", "us.anthropic.", "eu.anthropic.", "apac.anthropic.")


def model_id_candidates(model: str) -> Iterator[str]:
    """`model` as given, then without provider prefixes, version and date suffixes."""
    name = model.strip()
    yield name
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix) :]
            yield name
    stripped = _VERSION_SUFFIX.sub("", name)
    if stripped != name:
        yield stripped
    undated = _DATE_SUFFIX.sub("", stripped)
    if undated != stripped:
        yield undated


def warn_unknown_model(model: str) -> None:
    """Warn that a model's cost is unknown (Python shows each model's warning once per place)."""
    warnings.warn(
        f"no price for model {model!r}: its cost is unknown (add it with --prices)",
        UnknownModelWarning,
        stacklevel=3,
    )


def cost_breakdown(
    usage: Usage, model: str, tier: Tier = Tier.STANDARD, table: PriceTable | None = None
) -> CostBreakdown | None:
    """Exact cost of one API call's usage on `tier`, item by item; `None` for an unknown model.

    Long-context rates are chosen from this usage's own prompt size, so pass one call's usage
    (or a per-call average) when a model has long-context pricing.
    """
    return cost_of_totals(usage, 1, model, tier, table)


def cost(
    usage: Usage, model: str, tier: Tier = Tier.STANDARD, table: PriceTable | None = None
) -> Decimal | None:
    """Exact USD cost of one API call's usage on `tier`; `None` for an unknown model."""
    breakdown = cost_breakdown(usage, model, tier, table)
    return None if breakdown is None else breakdown.total


def cost_of_totals(
    usage: Usage,
    requests: int,
    model: str,
    tier: Tier = Tier.STANDARD,
    table: PriceTable | None = None,
) -> CostBreakdown | None:
    """Exact cost of `requests` calls whose usage adds up to `usage`.

    Long-context rates are chosen from the average prompt per call, since only totals are known.
    """
    table = table or default_table()
    price = table.lookup(model)
    if price is None:
        warn_unknown_model(model)
        return None
    factor = table.tier_factor(tier)
    if factor is None:
        return None
    average_prompt = usage.prompt_tokens // requests if requests > 0 else 0
    rates = price.rates_for(average_prompt).scaled(factor)
    return _priced(usage, rates)


def _priced(usage: Usage, rates: Rates) -> CostBreakdown:
    return CostBreakdown(
        input=usage.input_tokens * rates.input / MILLION,
        output=usage.output_tokens * rates.output / MILLION,
        cache_write_5m=usage.cache_write_5m_tokens * rates.cache_write_5m / MILLION,
        cache_write_1h=usage.cache_write_1h_tokens * rates.cache_write_1h / MILLION,
        cache_read=usage.cache_read_tokens * rates.cache_read / MILLION,
    )


# --- loading -------------------------------------------------------------------------------


def _decimal(value: Any, *, file: str, field: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InputError(
            f"got {value!r}", file=file, field=field, expected="a price in USD per million tokens"
        )
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise InputError(
            f"got {value!r}", file=file, field=field, expected='a number such as "3.75"'
        ) from None
    if not amount.is_finite() or amount < 0:
        raise InputError(f"got {value!r}", file=file, field=field, expected="a price ≥ 0")
    return amount


def _optional_decimal(data: Mapping[str, Any], key: str, *, file: str) -> Decimal | None:
    return _decimal(data[key], file=file, field=key) if key in data else None


def _rates(entry: Mapping[str, Any], *, file: str, where: str) -> Rates:
    missing = [item for item in ITEMS if item not in entry]
    if missing:
        raise InputError(
            f"missing {', '.join(missing)}", file=file, field=where, expected=", ".join(ITEMS)
        )
    return Rates(*(_decimal(entry[i], file=file, field=f"{where}.{i}") for i in ITEMS))


def _model_price(model: str, entry: Any, *, file: str) -> ModelPrice:
    where = f"models.{model}"
    if not isinstance(entry, Mapping):
        raise InputError("not a table", file=file, field=where, expected="a [models.ID] table")
    long_rates, above = None, None
    if "long_context" in entry:
        lc = entry["long_context"]
        if not isinstance(lc, Mapping) or not isinstance(lc.get("above_prompt_tokens"), int):
            raise InputError(
                "bad long_context",
                file=file,
                field=f"{where}.long_context",
                expected="{ above_prompt_tokens = N, input = ..., ... }",
            )
        above = lc["above_prompt_tokens"]
        long_rates = _rates(lc, file=file, where=f"{where}.long_context")
    aliases = entry.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise InputError("bad aliases", file=file, field=f"{where}.aliases", expected="strings")
    return ModelPrice(
        model=model,
        rates=_rates(entry, file=file, where=where),
        long_context_above=above,
        long_context=long_rates,
        aliases=tuple(aliases),
        confirmed=bool(entry.get("confirmed", True)),
        note=str(entry.get("note", "")),
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise InputError("file not found", file=path) from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not valid TOML: {exc}", file=path) from None


def parse_table(data: Mapping[str, Any], *, file: str) -> PriceTable:
    """Build a price table from parsed TOML."""
    as_of = data.get("as_of")
    if not isinstance(as_of, date):
        raise InputError(f"got {as_of!r}", file=file, field="as_of", expected="a date, 2026-11-24")
    models = data.get("models", {})
    if not isinstance(models, Mapping):
        raise InputError("not a table", file=file, field="models", expected="[models.ID] tables")
    return PriceTable(
        as_of=as_of,
        models={m: _model_price(m, e, file=file) for m, e in models.items()},
        batch_discount=_decimal(
            data.get("batch_discount", "0.5"), file=file, field="batch_discount"
        ),
        priority_factor=_optional_decimal(data, "priority_factor", file=file),
        currency=str(data.get("currency", "USD")),
        source=str(data.get("source", "")),
    )


def merge_override(base: PriceTable, path: Path) -> PriceTable:
    """`base` with the models (and optionally the date and discount) of a user's price file."""
    data = _read_toml(path)
    file = str(path)
    models = data.get("models", {})
    if not isinstance(models, Mapping):
        raise InputError("not a table", file=file, field="models", expected="[models.ID] tables")
    merged = dict(base.models)
    merged.update({m: _model_price(m, e, file=file) for m, e in models.items()})
    as_of = data.get("as_of", base.as_of)
    if not isinstance(as_of, date):
        raise InputError(f"got {as_of!r}", file=file, field="as_of", expected="a date, 2026-11-24")
    discount = base.batch_discount
    if "batch_discount" in data:
        discount = _decimal(data["batch_discount"], file=file, field="batch_discount")
    priority = _optional_decimal(data, "priority_factor", file=file) or base.priority_factor
    return replace(
        base,
        as_of=as_of,
        models=merged,
        batch_discount=discount,
        priority_factor=priority,
        overrides_from=(*base.overrides_from, file),
    )


def bundled_table() -> PriceTable:
    """The price table shipped with nowait."""
    text = resources.files("nowait").joinpath("data/prices.toml").read_text("utf-8")
    return parse_table(tomllib.loads(text), file="nowait/data/prices.toml")


def load_table(override: Path | None = None) -> PriceTable:
    """The bundled table, with a user's price file applied on top when given."""
    table = bundled_table()
    return merge_override(table, override) if override is not None else table


@functools.cache
def default_table() -> PriceTable:
    """The bundled table, read once per process."""
    return bundled_table()
