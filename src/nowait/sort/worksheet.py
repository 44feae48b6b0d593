"""The worksheet: workloads described by hand in TOML, sorted and priced without any API call."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

from nowait.durations import parse_duration
from nowait.errors import InputError
from nowait.reading import parse_toml, read_text
from nowait.sort.classify import (
    Classification,
    Facts,
    MoveCost,
    Traffic,
    Trigger,
    Verdict,
    Waiter,
    classify,
    price_move,
)
from nowait.sort.pricing import PriceTable
from nowait.types import Usage

TEMPLATE_RESOURCE = "data/example-worksheet.toml"
MAX_COUNT = 10**12
"""Largest count a worksheet gives (requests a month, tokens a request): a trillion."""


@dataclass(frozen=True)
class Part:
    """One part of a workload: the whole of it, or a split's deferred part."""

    model: str
    requests_per_month: int
    avg_input_tokens: int  # the whole prompt per call, cached tokens included
    avg_output_tokens: int
    cache_share: Decimal  # share of the prompt served from the prompt cache today

    def traffic(self) -> Traffic:
        prompt = self.requests_per_month * self.avg_input_tokens
        reads = int(prompt * self.cache_share)
        return Traffic(
            self.model,
            self.requests_per_month,
            Usage(
                input_tokens=prompt - reads,
                output_tokens=self.requests_per_month * self.avg_output_tokens,
                cache_read_tokens=reads,
            ),
        )


@dataclass(frozen=True)
class Workload:
    name: str
    part: Part
    facts: Facts
    deferred: Part | None = None
    cacheable_share: Decimal | None = None
    description: str = ""


@dataclass(frozen=True)
class Row:
    workload: Workload
    classification: Classification
    money: MoveCost
    if_batch: MoveCost | None = None  # for a review: what moving it would save


@dataclass(frozen=True)
class WorksheetResult:
    rows: tuple[Row, ...]

    def total(self, attribute: str) -> Decimal | None:
        """Sum of one `MoveCost` attribute over the rows; `None` if any row's is unknown."""
        values = [getattr(row.money, attribute) for row in self.rows]
        if any(v is None for v in values):
            return None
        return sum(values, Decimal(0))

    @property
    def batchable_share(self) -> Decimal | None:
        """Share of today's spend that nobody waits on."""
        current, batchable = self.total("current"), self.total("batchable_current")
        if current is None or batchable is None or current == 0:
            return None
        return batchable / current


def evaluate(workloads: list[Workload], table: PriceTable | None = None) -> WorksheetResult:
    """Classify and price every workload."""
    rows = []
    for w in workloads:
        result = classify(w.facts)
        deferred = w.deferred.traffic() if w.deferred else None
        money = price_move(
            result.verdict,
            w.part.traffic(),
            deferred,
            cache_share_after=w.cacheable_share,
            table=table,
        )
        if_batch = None
        if result.verdict is Verdict.REVIEW:
            if_batch = price_move(
                Verdict.BATCH, w.part.traffic(), cache_share_after=w.cacheable_share, table=table
            )
        rows.append(Row(w, result, money, if_batch))
    return WorksheetResult(tuple(rows))


def template_text() -> str:
    """The commented starter worksheet shipped with nowait (also the demo's example)."""
    return resources.files("nowait").joinpath(TEMPLATE_RESOURCE).read_text("utf-8")


# --- reading -------------------------------------------------------------------------------

_WORKLOAD_FIELDS = {
    "name",
    "description",
    "model",
    "requests_per_month",
    "avg_input_tokens",
    "avg_output_tokens",
    "cache_share",
    "cacheable_share",
    "trigger",
    "waits",
    "needed_within",
    "feeds_next_step",
    "deferred",
}
_DEFERRED_FIELDS = {
    "model",
    "requests_per_month",
    "avg_input_tokens",
    "avg_output_tokens",
    "cache_share",
}


class _Reader:
    """Reads one worksheet file, raising `InputError`s that name the file, workload and field."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()

    def error(
        self, index: int, name: str | None, field: str, got: Any, expected: str
    ) -> InputError:
        who = f"workload {name!r}" if name else f"workload #{index + 1}"
        return InputError(
            f"{who}: got {got!r}" if got is not _MISSING else f"{who}: missing",
            file=self.path,
            line=self._line_of(
                index, field.rsplit(".", maxsplit=1)[-1], field.startswith("deferred.")
            ),
            field=field,
            expected=expected,
        )

    def _line_of(self, index: int, key: str, deferred: bool = False) -> int | None:
        """The line of `key` inside the index-th [[workload]] table (`deferred`: in its
        [workload.deferred] table first), for the error message; for a key it lacks, the
        table's own [[workload]] line."""
        seen, header, inside, found = -1, None, False, None
        for number, line in enumerate(self.lines, start=1):
            stripped = line.strip()
            if stripped.startswith("[[workload]]"):
                seen += 1
                if seen == index + 1:
                    break
                header = number if seen == index else header
            elif stripped.startswith("[workload.deferred]") and seen == index:
                inside = True
            elif seen == index and re.match(rf"{re.escape(key)}\s*=", stripped):
                if inside == deferred:
                    return number
                found = found or number
        return found or header

    def workloads(self, data: Mapping[str, Any]) -> list[Workload]:
        unknown = set(data) - {"workload"}
        if unknown:
            first = sorted(unknown)[0]
            raise InputError(
                f"unknown top-level key {first!r}",
                file=self.path,
                line=self._line_of(-1, first),
                expected="[[workload]] tables",
            )
        entries = data.get("workload")
        if entries is not None and not isinstance(entries, list):
            raise InputError(
                f"got {entries!r}", file=self.path, line=self._line_of(-1, "workload"),
                field="workload", expected="[[workload]] tables",
            )  # fmt: skip
        if not entries:
            raise InputError(
                "no workloads", file=self.path, expected="at least one [[workload]] table"
            )
        names: set[str] = set()
        out = []
        for index, entry in enumerate(entries):
            if not isinstance(entry, Mapping):
                raise InputError(
                    f"workload #{index + 1}: got {entry!r}",
                    file=self.path, line=self._line_of(-1, "workload"), field="workload",
                    expected="[[workload]] tables",
                )  # fmt: skip
            workload = self.workload(index, entry)
            if workload.name in names:
                raise self.error(index, workload.name, "name", workload.name, "a unique name")
            names.add(workload.name)
            out.append(workload)
        return out

    def workload(self, index: int, entry: Mapping[str, Any]) -> Workload:
        raw_name = entry.get("name")
        name = raw_name if isinstance(raw_name, str) and raw_name.strip() else None
        if name is None:
            raise self.error(index, None, "name", raw_name if raw_name else _MISSING, "a name")
        for key in entry:
            if key not in _WORKLOAD_FIELDS:
                raise self.error(index, name, key, entry[key], _known(_WORKLOAD_FIELDS))
        facts = Facts(
            trigger=self.enum(index, name, entry, "trigger", Trigger, required=True),
            waiter=self.enum(index, name, entry, "waits", Waiter, required=True) or Waiter.UNKNOWN,
            needed_within=self.duration(index, name, entry, "needed_within"),
            has_deferred_part="deferred" in entry,
            feeds_next_step=self.boolean(index, name, entry, "feeds_next_step"),
        )
        deferred = None
        if "deferred" in entry:
            table = entry["deferred"]
            if not isinstance(table, Mapping):
                raise self.error(index, name, "deferred", table, "a [workload.deferred] table")
            for key in table:
                if key not in _DEFERRED_FIELDS:
                    raise self.error(
                        index, name, f"deferred.{key}", table[key], _known(_DEFERRED_FIELDS)
                    )
            deferred = self.part(index, name, {**_inherited(entry), **table}, "deferred.")
        return Workload(
            name=name,
            part=self.part(index, name, entry, ""),
            facts=facts,
            deferred=deferred,
            cacheable_share=self.share(index, name, entry, "cacheable_share", None),
            description=self.text(index, name, entry, "description"),
        )

    def part(self, index: int, name: str, entry: Mapping[str, Any], prefix: str) -> Part:
        model = entry.get("model")
        if not isinstance(model, str) or not model.strip():
            got = model if "model" in entry else _MISSING
            raise self.error(
                index, name, prefix + "model", got, "a model id, e.g. claude-sonnet-5-5"
            )
        share = self.share(index, name, entry, "cache_share", Decimal(0), prefix)
        assert share is not None
        return Part(
            model=model.strip(),
            requests_per_month=self.count(index, name, entry, "requests_per_month", prefix),
            avg_input_tokens=self.count(index, name, entry, "avg_input_tokens", prefix),
            avg_output_tokens=self.count(index, name, entry, "avg_output_tokens", prefix),
            cache_share=share,
        )

    def count(
        self, index: int, name: str, entry: Mapping[str, Any], key: str, prefix: str = ""
    ) -> int:
        value = entry.get(key, _MISSING)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
            expected = f"a whole number ≥ 0, at most {MAX_COUNT:,}"
            raise self.error(index, name, prefix + key, value, expected)
        return value

    def share(
        self,
        index: int,
        name: str,
        entry: Mapping[str, Any],
        key: str,
        default: Decimal | None,
        prefix: str = "",
    ) -> Decimal | None:
        if key not in entry:
            return default
        value = entry[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise self.error(index, name, prefix + key, value, "a share between 0 and 1")
        return Decimal(str(value))

    def enum(
        self,
        index: int,
        name: str,
        entry: Mapping[str, Any],
        key: str,
        kind: type[Trigger] | type[Waiter],
        *,
        required: bool,
    ) -> Any:
        if key not in entry:
            if required:
                raise self.error(index, name, key, _MISSING, _choices(kind))
            return None
        value = entry[key]
        try:
            return kind(value)
        except ValueError:
            raise self.error(index, name, key, value, _choices(kind)) from None

    def duration(
        self, index: int, name: str, entry: Mapping[str, Any], key: str
    ) -> timedelta | None:
        value = entry.get(key, "none")
        if value == "none":
            return None
        try:
            if not isinstance(value, str):
                raise ValueError(value)
            return parse_duration(value)
        except ValueError:
            raise self.error(
                index, name, key, value,
                'a duration such as "30s", "15m", "6h", "2d" (at most 400 days), or "none"',
            ) from None  # fmt: skip

    def text(self, index: int, name: str, entry: Mapping[str, Any], key: str) -> str:
        value = entry.get(key, "")
        if not isinstance(value, str):
            raise self.error(index, name, key, value, "text")
        return value

    def boolean(self, index: int, name: str, entry: Mapping[str, Any], key: str) -> bool:
        value = entry.get(key, False)
        if not isinstance(value, bool):
            raise self.error(index, name, key, value, "true or false")
        return value


class _Missing:
    def __repr__(self) -> str:
        return "nothing"


_MISSING: Any = _Missing()


def _choices(kind: type[Trigger] | type[Waiter]) -> str:
    return "one of " + ", ".join(member.value for member in kind)


def _known(fields: set[str]) -> str:
    return "one of the known fields: " + ", ".join(sorted(fields))


def _inherited(entry: Mapping[str, Any]) -> dict[str, Any]:
    """What a deferred part takes from its workload unless it says otherwise."""
    return {k: entry[k] for k in ("model", "requests_per_month", "cache_share") if k in entry}


def read_worksheet(path: Path) -> list[Workload]:
    """Parse and validate a worksheet file."""
    text = read_text(path, expected="a TOML worksheet")
    return _Reader(path, text).workloads(parse_toml(text, file=path))


__all__ = [
    "Part",
    "Row",
    "Verdict",
    "Workload",
    "WorksheetResult",
    "evaluate",
    "parse_duration",
    "read_worksheet",
    "template_text",
]
