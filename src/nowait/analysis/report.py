"""From loaded records to the report: workloads, verdicts with evidence, and the money."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import duckdb

from nowait.analysis.readers import BadRecords
from nowait.analysis.records import GROUP_KEYS
from nowait.analysis.signals import Inference, Signals, infer
from nowait.models import Tier, Usage
from nowait.pricing import PriceTable
from nowait.sorting import MoveCost, Traffic, Verdict, price_move, traffic_cost


@dataclass(frozen=True)
class WorkloadReport:
    name: str
    requests: int
    models: tuple[str, ...]
    inference: Inference
    cost: MoveCost  # over the period the logs cover
    monthly: MoveCost  # projected to 30 days

    @property
    def verdict(self) -> Verdict:
        return self.inference.classification.verdict


@dataclass(frozen=True)
class Report:
    workloads: list[WorkloadReport]
    total: MoveCost
    monthly_total: MoveCost
    records: int
    days: float
    arrivals_by_hour: dict[str, list[int]]  # workload → 24 counts (UTC)
    bad: BadRecords
    group_by: str
    token_rules: dict[str, int] = field(default_factory=dict)
    unknown_models: tuple[str, ...] = ()

    @property
    def batchable_share(self) -> Decimal | None:
        current, movable = self.total.current, self.total.batchable_current
        if current is None or movable is None or current == 0:
            return None
        return movable / current


def workload_expression(group_by: str | None) -> str:
    if group_by is not None:
        if group_by not in GROUP_KEYS:
            raise ValueError(group_by)
        return f"coalesce({group_by}, '(no {group_by})')"
    return f"coalesce({', '.join(GROUP_KEYS)})"


SIGNALS_SQL = """
SELECT {w} AS workload,
       sum(coalesce(request_count, 1)) AS requests,
       avg(CASE WHEN stream IS NOT NULL THEN stream::INT END) AS streamed,
       avg((ttft_s IS NOT NULL)::INT) AS ttft,
       avg((user_id IS NOT NULL OR session_id IS NOT NULL)::INT) AS with_user,
       avg((trigger = 'http')::INT), avg((trigger = 'queue')::INT),
       avg((trigger = 'cron')::INT), avg((trigger = 'script')::INT),
       avg((finish_reason = 'tool_use')::INT),
       sum(CASE WHEN service_tier = 'batch' THEN coalesce(request_count, 1) ELSE 0 END)
           / sum(coalesce(request_count, 1)),
       count(DISTINCT date_trunc('day', start_time)),
       bool_and(granularity = 'request')
FROM records GROUP BY 1
"""

TRAFFIC_SQL = """
SELECT {w} AS workload, model, coalesce(service_tier = 'batch', false) AS batched,
       coalesce(stream, false) AS streamed, sum(coalesce(request_count, 1)),
       sum(input_uncached), sum(output_tokens), sum(cache_write_5m), sum(cache_write_1h),
       sum(cache_read)
FROM records GROUP BY ALL
"""


def build_report(
    con: duckdb.DuckDBPyConnection,
    *,
    bad: BadRecords,
    group_by: str | None = None,
    cache_share: Decimal | None = None,
    table: PriceTable | None = None,
) -> Report:
    w = workload_expression(group_by)
    summary = con.execute(
        "SELECT count(*), min(start_time), max(coalesce(end_time, start_time)) FROM records"
    ).fetchone()
    count = int(summary[0]) if summary else 0
    days = max(1.0, (summary[2] - summary[1]).total_seconds() / 86400) if count and summary else 1.0
    scale = Decimal(30) / Decimal(str(round(days, 6)))
    traffic = _traffic(con, w)
    hours = _arrivals(con, w)
    peaks = {name: _peak_two_hours(counts) for name, counts in hours.items()}
    workloads = []
    for row in con.execute(SIGNALS_SQL.format(w=w)).fetchall():
        name = str(row[0])
        signals = Signals(
            requests=int(row[1]), streamed=row[2], ttft_recorded=row[3] or 0.0,
            with_user=row[4] or 0.0, http=row[5] or 0.0, queue=row[6] or 0.0,
            cron=row[7] or 0.0, script=row[8] or 0.0, tool_use=row[9] or 0.0,
            batch_tier=float(row[10] or 0.0), peak_two_hours=peaks.get(name, 0.0),
            days=int(row[11]), per_request=bool(row[12]),
        )  # fmt: skip
        inference = infer(signals)
        cost = _price(traffic.get(name, []), inference, cache_share, table)
        workloads.append(
            WorkloadReport(
                name,
                signals.requests,
                tuple(sorted({t[0].model for t in traffic.get(name, [])})),
                inference,
                cost,
                _scaled(cost, scale),
            )
        )
    workloads.sort(key=lambda x: x.cost.current or Decimal(0), reverse=True)
    total = _sum_costs([x.cost for x in workloads])
    rules = dict(con.execute("SELECT token_rule, count(*) FROM records GROUP BY 1").fetchall())
    return Report(
        workloads, total, _scaled(total, scale), count, days, hours, bad,
        group_by or "best available", rules,
    )  # fmt: skip


_Part = tuple[Traffic, bool, bool]  # traffic, already batched, streamed


def _traffic(con: duckdb.DuckDBPyConnection, w: str) -> dict[str, list[_Part]]:
    out: dict[str, list[_Part]] = {}
    for row in con.execute(TRAFFIC_SQL.format(w=w)).fetchall():
        usage = Usage(*(int(v or 0) for v in row[5:10]))
        out.setdefault(str(row[0]), []).append(
            (Traffic(str(row[1]), int(row[4]), usage), bool(row[2]), bool(row[3]))
        )
    return out


def _price(
    parts: list[_Part], inference: Inference, cache_share: Decimal | None, table: PriceTable | None
) -> MoveCost:
    costs: list[MoveCost] = []
    verdict = inference.classification.verdict
    for traffic, batched, streamed in parts:
        if batched:  # already at batch price: nothing left to move
            paid = traffic_cost(traffic, Tier.BATCH, table)
            costs.append(MoveCost(paid, paid, paid, Decimal(0) if paid is not None else None))
        elif verdict is Verdict.SPLIT:
            part_verdict = Verdict.REALTIME if streamed else Verdict.BATCH
            costs.append(
                price_move(part_verdict, traffic, cache_share_after=cache_share, table=table)
            )
        else:
            costs.append(price_move(verdict, traffic, cache_share_after=cache_share, table=table))
    return _sum_costs(costs)


def _add(a: Decimal | None, b: Decimal | None) -> Decimal | None:
    return None if a is None or b is None else a + b


def _sum_costs(costs: list[MoveCost]) -> MoveCost:
    total = MoveCost(Decimal(0), Decimal(0), Decimal(0), Decimal(0))
    for c in costs:
        total = MoveCost(
            _add(total.current, c.current),
            _add(total.after_batch, c.after_batch),
            _add(total.after_cache, c.after_cache),
            _add(total.batchable_current, c.batchable_current),
        )
    return total


def _scaled(cost: MoveCost, factor: Decimal) -> MoveCost:
    def s(v: Decimal | None) -> Decimal | None:
        return None if v is None else v * factor

    return MoveCost(
        s(cost.current), s(cost.after_batch), s(cost.after_cache), s(cost.batchable_current)
    )


def _arrivals(con: duckdb.DuckDBPyConnection, w: str) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    rows = con.execute(
        f"SELECT {w}, hour(start_time AT TIME ZONE 'UTC'), sum(coalesce(request_count, 1)) "
        "FROM records GROUP BY ALL"
    ).fetchall()
    for name, hour, n in rows:
        out.setdefault(str(name), [0] * 24)[int(hour)] += int(n)
    return out


def _peak_two_hours(counts: list[int]) -> float:
    total = sum(counts)
    if total == 0:
        return 0.0
    return max(counts[h] + counts[(h + 1) % 24] for h in range(24)) / total
