"""The dated price table and the exact cost of a usage.

Costs are `Decimal` US dollars computed from token counts and per-million-token rates; nothing
is rounded on the way. A model the table does not know costs `None` (with a visible
`UnknownModelWarning`), never a guess.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any

from nowait.errors import InputError
from nowait.reading import parse_toml, read_text, toml_line_of
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


MAX_PRICE = Decimal(100_000)
"""Highest rate a price file may give, USD per million tokens (today's dearest is below 100)."""
MAX_FACTOR = Decimal(100)
"""Highest `batch_discount` or `priority_factor`, a multiple of the standard rates."""


@dataclass(frozen=True)
class _Source:
    """A price file being read: its name and text, to point errors at a line."""

    file: str
    text: str = ""

    def error(self, field: str, reason: str, expected: str | None = None) -> InputError:
        line = toml_line_of(self.text, field)
        return InputError(reason, file=self.file, line=line, field=field, expected=expected)


def _decimal(value: Any, src: _Source, field: str, limit: Decimal = MAX_PRICE) -> Decimal:
    expected = f'a number from 0 to {limit:,}, such as "3.75"'
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise src.error(field, f"got {value!r}", expected)
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise src.error(field, f"got {value!r}", expected) from None
    if not amount.is_finite() or not 0 <= amount <= limit:
        raise src.error(field, f"got {value!r}", expected)
    return amount


def _optional_decimal(data: Mapping[str, Any], key: str, src: _Source) -> Decimal | None:
    return _decimal(data[key], src, key, MAX_FACTOR) if key in data else None


def _rates(entry: Mapping[str, Any], src: _Source, where: str) -> Rates:
    missing = [item for item in ITEMS if item not in entry]
    if missing:
        raise src.error(where, f"missing {', '.join(missing)}", ", ".join(ITEMS))
    return Rates(*(_decimal(entry[i], src, f"{where}.{i}") for i in ITEMS))


def _model_price(model: str, entry: Any, src: _Source) -> ModelPrice:
    where = f"models.{model}"
    if not isinstance(entry, Mapping):
        raise src.error(where, "not a table", "a [models.ID] table")
    long_rates, above = None, None
    if "long_context" in entry:
        lc = entry["long_context"]
        above = lc.get("above_prompt_tokens") if isinstance(lc, Mapping) else None
        if not isinstance(above, int) or isinstance(above, bool) or above < 0:
            expected = "{ above_prompt_tokens = N, input = ..., ... }"
            raise src.error(f"{where}.long_context", "bad long_context", expected)
        long_rates = _rates(lc, src, f"{where}.long_context")
    aliases = entry.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise src.error(f"{where}.aliases", "bad aliases", "a list of strings")
    confirmed = entry.get("confirmed", True)
    if not isinstance(confirmed, bool):
        raise src.error(f"{where}.confirmed", f"got {confirmed!r}", "true or false")
    note = entry.get("note", "")
    if not isinstance(note, str):
        raise src.error(f"{where}.note", f"got {note!r}", "text")
    return ModelPrice(
        model=model,
        rates=_rates(entry, src, where),
        long_context_above=above,
        long_context=long_rates,
        aliases=tuple(aliases),
        confirmed=confirmed,
        note=note,
    )


def _as_of(value: Any, src: _Source) -> date:
    if not isinstance(value, date) or isinstance(value, datetime):
        raise src.error("as_of", f"got {value!r}", "a date, 2026-11-24")
    return value


def _models(data: Mapping[str, Any], src: _Source) -> dict[str, ModelPrice]:
    models = data.get("models", {})
    if not isinstance(models, Mapping):
        raise src.error("models", "not a table", "[models.ID] tables")
    return {m: _model_price(m, e, src) for m, e in models.items()}


def _text(data: Mapping[str, Any], key: str, default: str, src: _Source) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise src.error(key, f"got {value!r}", "text")
    return value


_FILE_KEYS = {"as_of", "models", "batch_discount", "priority_factor", "currency", "source"}


def parse_table(data: Mapping[str, Any], *, file: str, text: str = "") -> PriceTable:
    """Build a price table from parsed TOML (`text`: the file's text, to name lines)."""
    src = _Source(file, text)
    return PriceTable(
        as_of=_as_of(data.get("as_of"), src),
        models=_models(data, src),
        batch_discount=_decimal(
            data.get("batch_discount", "0.5"), src, "batch_discount", MAX_FACTOR
        ),
        priority_factor=_optional_decimal(data, "priority_factor", src),
        currency=_text(data, "currency", "USD", src),
        source=_text(data, "source", "", src),
    )


def merge_override(base: PriceTable, path: Path) -> PriceTable:
    """`base` with the models (and optionally the date and discount) of a user's price file."""
    text = read_text(path, "--prices", expected="a TOML price file")
    data = parse_toml(text, file=path)
    src = _Source(str(path), text)
    if not data:  # not silently the bundled table: the user meant to change something
        raise InputError(
            "no prices in the file", file=path, expected="[models.ID] tables, as_of, batch_discount"
        )
    unknown = sorted(set(data) - _FILE_KEYS)
    if unknown:
        raise src.error(unknown[0], "unknown key", "one of " + ", ".join(sorted(_FILE_KEYS)))
    merged = dict(base.models)
    merged.update(_models(data, src))
    as_of = _as_of(data["as_of"], src) if "as_of" in data else base.as_of
    discount = base.batch_discount
    if "batch_discount" in data:
        discount = _decimal(data["batch_discount"], src, "batch_discount", MAX_FACTOR)
    priority = _optional_decimal(data, "priority_factor", src) or base.priority_factor
    return replace(
        base,
        as_of=as_of,
        models=merged,
        batch_discount=discount,
        priority_factor=priority,
        overrides_from=(*base.overrides_from, str(path)),
    )


BUNDLED = "nowait/data/prices.toml"


def bundled_table() -> PriceTable:
    """The price table shipped with nowait."""
    text = resources.files("nowait").joinpath("data/prices.toml").read_text("utf-8")
    return parse_table(parse_toml(text, file=BUNDLED), file=BUNDLED, text=text)


def load_table(override: Path | None = None) -> PriceTable:
    """The bundled table, with a user's price file applied on top when given."""
    table = default_table()  # read once per process; tables are frozen
    return merge_override(table, override) if override is not None else table


@functools.cache
def default_table() -> PriceTable:
    """The bundled table, read once per process."""
    return bundled_table()
