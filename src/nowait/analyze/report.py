"""From loaded records to the report: workloads, verdicts with evidence, and the money."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import duckdb

from nowait.analyze.readers import BadRecords
from nowait.analyze.records import GROUP_BY, GROUP_KEYS
from nowait.analyze.signals import Inference, Signals, infer
from nowait.route.cacheforecast import WorkloadPlan, plan_workload
from nowait.sort.classify import (
    REALTIME_WITHIN,
    MoveCost,
    Traffic,
    Verdict,
    price_move,
    traffic_cost,
)
from nowait.sort.pricing import PriceTable, default_table
from nowait.types import Tier, Usage


@dataclass(frozen=True)
class WorkloadReport:
    name: str
    requests: int
    models: tuple[str, ...]
    inference: Inference
    cost: MoveCost  # over the period the logs cover; of the priced models only
    monthly: MoveCost  # projected to 30 days
    unpriced: tuple[str, ...] = ()  # models with no price: their requests are not in the money
    unpriced_requests: int = 0
    review_if_batch: MoveCost | None = None  # review only: the monthly money if nobody waits
    cache_plans: tuple[WorkloadPlan, ...] = ()  # batch and split: what cache planning adds

    @property
    def verdict(self) -> Verdict:
        return self.inference.classification.verdict


@dataclass(frozen=True)
class Report:
    workloads: list[WorkloadReport]
    total: MoveCost  # the priced models' money; None only when nothing could be priced
    monthly_total: MoveCost
    records: int
    days: float
    arrivals_by_hour: dict[str, list[int]]  # workload → 24 counts (UTC)
    bad: BadRecords
    group_by: str
    token_rules: dict[str, int] = field(default_factory=dict)
    unknown_models: tuple[str, ...] = ()  # models the price table does not know
    unpriced_requests: int = 0  # requests on those models, left out of every sum of money
    cache_share: Decimal | None = None  # prompts served from cache after the move (None: not given)

    @property
    def batchable_share(self) -> Decimal | None:
        """The share of the priced spend that nobody waits for."""
        current, movable = self.total.current, self.total.batchable_current
        if current is None or movable is None or current == 0:
            return None
        return movable / current


def workload_expression(group_by: str | None) -> str:
    if group_by is not None:
        if group_by not in GROUP_BY:
            raise ValueError(group_by)
        return f"coalesce({group_by}, '(no {group_by})')"
    return f"coalesce({', '.join(GROUP_KEYS)})"


# One scan of the records for the whole report: the fine groups (workload × model × tier ×
# streaming × hour of day × token rule) hold every sum the report needs, and a second grouping
# set of the same scan gives the distinct days per workload.
REPORT_SQL = """
WITH r AS (
    SELECT {w} AS workload, model, coalesce(service_tier = 'batch', false) AS batched,
           coalesce(stream, false) AS streamed, hour(start_time AT TIME ZONE 'UTC') AS hour,
           date_trunc('day', start_time) AS day, token_rule,
           granularity = 'request' AS per_request, coalesce(request_count, 1) AS n,
           stream, ttft_s, user_id, session_id, trigger, finish_reason, input_uncached,
           output_tokens, cache_write_5m, cache_write_1h, cache_read, start_time,
           coalesce(end_time, start_time) AS end_time, awaited, needed_within_s
    FROM records
)
SELECT grouping(day) = 0 AS by_day, workload, model, batched, streamed, hour, token_rule,
       per_request, day, sum(CASE WHEN per_request THEN n ELSE 1 END), sum(n),
       sum(CASE WHEN stream IS NOT NULL THEN n END), sum(CASE WHEN stream THEN n END),
       sum(CASE WHEN ttft_s IS NOT NULL THEN n END),
       sum(CASE WHEN user_id IS NOT NULL OR session_id IS NOT NULL THEN n END),
       sum(CASE WHEN trigger = 'http' THEN n END), sum(CASE WHEN trigger = 'queue' THEN n END),
       sum(CASE WHEN trigger = 'cron' THEN n END), sum(CASE WHEN trigger = 'script' THEN n END),
       sum(CASE WHEN finish_reason = 'tool_use' THEN n END),
       sum(input_uncached), sum(output_tokens), sum(cache_write_5m), sum(cache_write_1h),
       sum(cache_read), min(start_time), max(end_time),
       sum(CASE WHEN awaited IS NOT NULL THEN n END), sum(CASE WHEN awaited THEN n END),
       sum(CASE WHEN needed_within_s IS NOT NULL THEN n END),
       sum(CASE WHEN needed_within_s < {realtime_s} THEN n END), min(needed_within_s)
FROM r
GROUP BY GROUPING SETS (
    (workload, model, batched, streamed, hour, token_rule, per_request), (workload, day))
"""

# Counters rolled up per workload from the fine groups, in the order of REPORT_SQL's columns:
# records (a request row counts its requests, a bucket counts one), requests, stream known,
# streamed, ttft, user, http, queue, cron, script, tool_use. Shares are of requests.
_COUNTERS = 11


@dataclass
class _Totals:
    counters: list[int] = field(default_factory=lambda: [0] * _COUNTERS)
    batched_requests: int = 0
    per_request: bool = True
    days: int = 0
    # nowait's own flags: requests whose `awaited` is known, awaited, with a deadline, with a
    # deadline too soon for a batch; and the shortest deadline (seconds)
    flags: list[int] = field(default_factory=lambda: [0] * 4)
    shortest_deadline_s: float | None = None


def build_report(
    con: duckdb.DuckDBPyConnection,
    *,
    bad: BadRecords,
    group_by: str | None = None,
    cache_share: Decimal | None = None,
    table: PriceTable | None = None,
) -> Report:
    table = table or default_table()
    sql = REPORT_SQL.format(
        w=workload_expression(group_by), realtime_s=REALTIME_WITHIN.total_seconds()
    )
    rows = con.execute(sql).fetchall()
    totals: dict[str, _Totals] = {}
    traffic: dict[tuple[str, str, bool, bool], list[int]] = {}
    hours: dict[str, list[int]] = {}
    rules: dict[str, int] = {}
    count, first, last = 0, None, None
    for row in rows:
        by_day, name = bool(row[0]), str(row[1])
        workload = totals.setdefault(name, _Totals())
        if by_day:
            workload.days += row[8] is not None
            continue
        model, batched, streamed, hour, rule, per_request = row[2:8]
        counters = [int(v or 0) for v in row[9:20]]
        workload.counters = [a + b for a, b in zip(workload.counters, counters, strict=True)]
        workload.per_request = workload.per_request and bool(per_request)
        if batched:
            workload.batched_requests += counters[1]
        workload.flags = [a + int(b or 0) for a, b in zip(workload.flags, row[27:31], strict=True)]
        if row[31] is not None:
            shortest = workload.shortest_deadline_s
            workload.shortest_deadline_s = row[31] if shortest is None else min(shortest, row[31])
        tokens = [int(v or 0) for v in row[20:25]]
        key = (name, str(model), bool(batched), bool(streamed))
        part = traffic.setdefault(key, [0] * 6)
        traffic[key] = [a + b for a, b in zip(part, [counters[1], *tokens], strict=True)]
        if hour is not None:
            hours.setdefault(name, [0] * 24)[int(hour)] += counters[1]
        rules[str(rule)] = rules.get(str(rule), 0) + counters[0]
        count += counters[0]
        first = row[25] if first is None or (row[25] is not None and row[25] < first) else first
        last = row[26] if last is None or (row[26] is not None and row[26] > last) else last
    days = max(1.0, (last - first).total_seconds() / 86400) if first and last else 1.0
    scale = Decimal(30) / Decimal(str(round(days, 6)))
    parts: dict[str, list[_Part]] = {}
    for (name, model, batched, streamed), sums in traffic.items():
        usage = Usage(*sums[1:])
        parts.setdefault(name, []).append((Traffic(model, sums[0], usage), batched, streamed))
    workloads = []
    for name, t in totals.items():
        _, n, known, streamed, ttft, user, http, queue, cron, script, tool = t.counters
        signals = Signals(
            requests=n, streamed=_share(streamed, known) if known else None,
            ttft_recorded=_share(ttft, n), with_user=_share(user, n), http=_share(http, n),
            queue=_share(queue, n), cron=_share(cron, n), script=_share(script, n),
            tool_use=_share(tool, n), batch_tier=_share(t.batched_requests, n),
            peak_two_hours=_peak_two_hours(hours.get(name, [0] * 24)), days=t.days,
            per_request=t.per_request, stream_unknown=_share(n - known, n),
            peak_hour=_peak_hour(hours.get(name, [0] * 24)),
            peak_start=_peak_start(hours.get(name, [0] * 24)),
            awaited_known=_share(t.flags[0], n), awaited=_share(t.flags[1], n),
            with_deadline=_share(t.flags[2], n), short_deadline=_share(t.flags[3], n),
            shortest_deadline_s=t.shortest_deadline_s,
        )  # fmt: skip
        inference = infer(signals)
        mine = parts.get(name, [])
        verdict = inference.classification.verdict
        cost, unpriced = _price(mine, verdict, cache_share, table)
        review_if_batch = (
            _scaled(_price(mine, Verdict.BATCH, cache_share, table)[0], scale)
            if verdict is Verdict.REVIEW
            else None
        )
        workloads.append(
            WorkloadReport(
                name,
                signals.requests,
                tuple(sorted({p[0].model for p in mine})),
                inference,
                cost,
                _scaled(cost, scale),
                tuple(sorted({p[0].model for p in unpriced})),
                sum(p[0].requests for p in unpriced),
                review_if_batch,
                _cache_plans(name, mine, verdict, cache_share, scale, table),
            )
        )
    workloads.sort(key=lambda x: (x.cost.current is None, -(x.cost.current or 0), x.name))
    total = _sum_known([x.cost for x in workloads])
    return Report(
        workloads, total, _scaled(total, scale), count, days, hours, bad,
        group_by or "best available", rules,
        tuple(sorted({m for x in workloads for m in x.unpriced})),
        sum(x.unpriced_requests for x in workloads), cache_share,
    )  # fmt: skip


_Part = tuple[Traffic, bool, bool]  # traffic, already batched, streamed


def _price(
    parts: list[_Part], verdict: Verdict, cache_share: Decimal | None, table: PriceTable
) -> tuple[MoveCost, list[_Part]]:
    """The money of the parts whose model has a price under `verdict`, and the parts that
    have none."""
    costs: list[MoveCost] = []
    unpriced: list[_Part] = []
    for part in parts:
        traffic, batched, streamed = part
        if table.lookup(traffic.model) is None:
            unpriced.append(part)
        elif batched:  # already at batch price: nothing left to move
            paid = traffic_cost(traffic, Tier.BATCH, table)
            costs.append(MoveCost(paid, paid, paid, Decimal(0) if paid is not None else None))
        elif verdict is Verdict.SPLIT:
            part_verdict = Verdict.REALTIME if streamed else Verdict.BATCH
            costs.append(
                price_move(part_verdict, traffic, cache_share_after=cache_share, table=table)
            )
        else:
            costs.append(price_move(verdict, traffic, cache_share_after=cache_share, table=table))
    if not costs and unpriced:
        return MoveCost(None, None, None, None), unpriced
    return _sum_known(costs), unpriced


def _cache_plans(
    name: str,
    parts: list[_Part],
    verdict: Verdict,
    cache_share: Decimal | None,
    scale: Decimal,
    table: PriceTable,
) -> tuple[WorkloadPlan, ...]:
    """What cache planning would add, per model, to the part of a batch or split workload
    that goes to batches (a split's unstreamed calls), a month. The shared prefix is
    `--cache-share` of the prompt when given, else the share that goes through the cache in
    the logs today (writes and reads)."""
    if verdict not in (Verdict.BATCH, Verdict.SPLIT):
        return ()
    requests: dict[str, int] = {}
    usages: dict[str, Usage] = {}
    for traffic, _, streamed in parts:
        if verdict is Verdict.BATCH or not streamed:
            model = traffic.model
            requests[model] = requests.get(model, 0) + traffic.requests
            usages[model] = usages.get(model, Usage()) + traffic.usage
    plans = []
    for model, count in sorted(requests.items()):
        if not count or table.lookup(model) is None:
            continue
        usage = usages[model]
        through = usage.prompt_tokens - usage.input_tokens  # cache writes and reads
        prefix: tuple[Decimal, str] | None = None
        if cache_share is not None:
            prefix = (cache_share, "--cache-share")
        elif through:
            prefix = (Decimal(through) / usage.prompt_tokens, "cached in the logs")
        monthly, prompt = int(count * scale), usage.prompt_tokens // count
        plans.append(plan_workload(name, model, monthly, prompt, prefix, table))
    return tuple(plans)


def _sum_known(costs: list[MoveCost]) -> MoveCost:
    """The sum of the costs that are known: unknown ones are listed apart, never counted as 0.
    Unknown when nothing at all is known."""
    known = [c for c in costs if c.current is not None]
    if costs and not known:
        return MoveCost(None, None, None, None)
    total = MoveCost(Decimal(0), Decimal(0), Decimal(0), Decimal(0))
    for c in known:
        total = MoveCost(
            _add(total.current, c.current),
            _add(total.after_batch, c.after_batch),
            _add(total.after_cache, c.after_cache),
            _add(total.batchable_current, c.batchable_current),
        )
    return total


def _add(a: Decimal | None, b: Decimal | None) -> Decimal | None:
    return None if a is None or b is None else a + b


def _scaled(cost: MoveCost, factor: Decimal) -> MoveCost:
    def s(v: Decimal | None) -> Decimal | None:
        return None if v is None else v * factor

    return MoveCost(
        s(cost.current), s(cost.after_batch), s(cost.after_cache), s(cost.batchable_current)
    )


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _peak_hour(counts: list[int]) -> float:
    total = sum(counts)
    return max(counts) / total if total else 0.0


def _peak_start(counts: list[int]) -> int | None:
    """The hour the busiest two hours start at; the busiest hour when it holds nearly all."""
    if not any(counts):
        return None
    two = max(range(24), key=lambda h: counts[h] + counts[(h + 1) % 24])
    one = max(range(24), key=lambda h: counts[h])
    return one if counts[one] >= 0.95 * (counts[two] + counts[(two + 1) % 24]) else two


def _peak_two_hours(counts: list[int]) -> float:
    total = sum(counts)
    if total == 0:
        return 0.0
    return max(counts[h] + counts[(h + 1) % 24] for h in range(24)) / total
