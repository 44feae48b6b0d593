"""A seeded month of realistic mixed Claude traffic as OTLP JSON lines, for the demo, the
tests and the benchmark. Seven workloads, each with the signals real instrumentations leave:

    support-chat     HTTP handler, streamed, TTFT, user ids, business hours   (OpenLLMetry)
    report-builder   HTTP handler, a streamed summary + a deep part not streamed (OpenLLMetry)
    research-agent   tool_use loops of 3-6 calls in one trace                 (OpenInference)
    doc-summaries    HTTP handler, not streamed: a user triggers, may not wait (OpenInference)
    ticket-triage    SQS consumer, around the clock                            (OpenLLMetry)
    nightly-digest   k8s CronJob at 02:00 UTC                                  (OpenLLMetry)
    eval-suite       a k8s Job already on the batch tier                        (Logfire)
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

OPENLLMETRY = {"name": "opentelemetry.instrumentation.anthropic", "version": "0.62.4"}
OPENINFERENCE = {"name": "openinference.instrumentation.anthropic", "version": "3.1.0"}
LOGFIRE = {"name": "logfire", "version": "5.4.0"}
HTTP_SCOPE = {"name": "opentelemetry.instrumentation.fastapi", "version": "0.55b0"}


def _attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    if isinstance(value, float):
        return {"key": key, "value": {"doubleValue": value}}
    if isinstance(value, list):
        return {
            "key": key,
            "value": {"arrayValue": {"values": [{"stringValue": v} for v in value]}},
        }
    return {"key": key, "value": {"stringValue": str(value)}}


class _Gen:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def hex(self, n: int) -> str:
        return "".join(self.rng.choice("0123456789abcdef") for _ in range(n))

    def line(
        self, resource: dict[str, Any], scopes: list[tuple[dict[str, str], list[dict[str, Any]]]]
    ) -> str:
        return json.dumps(
            {
                "resourceSpans": [
                    {
                        "resource": {"attributes": [_attr(k, v) for k, v in resource.items()]},
                        "scopeSpans": [{"scope": s, "spans": spans} for s, spans in scopes],
                    }
                ]
            },
            separators=(",", ":"),
        )

    def span(
        self,
        trace: str,
        name: str,
        kind: int,
        start: datetime,
        seconds: float,
        attrs: dict[str, Any],
        parent: str | None = None,
    ) -> dict[str, Any]:
        nanos = int(start.timestamp() * 1e9)
        span: dict[str, Any] = {
            "traceId": trace, "spanId": self.hex(16), "name": name, "kind": kind,
            "startTimeUnixNano": str(nanos), "endTimeUnixNano": str(nanos + int(seconds * 1e9)),
            "attributes": [_attr(k, v) for k, v in attrs.items()], "status": {"code": 1},
        }  # fmt: skip
        if parent:
            span["parentSpanId"] = parent
        return span

    def openllmetry(
        self, model: str, tin: int, tout: int, cached: Any = 0, **extra: Any
    ) -> dict[str, Any]:
        return {
            "gen_ai.provider.name": "anthropic", "gen_ai.operation.name": "chat",
            "gen_ai.request.model": model, "gen_ai.response.model": model,
            "gen_ai.response.id": "msg_" + self.hex(24),
            "gen_ai.usage.input_tokens": tin + cached, "gen_ai.usage.output_tokens": tout,
            "gen_ai.usage.cache_read.input_tokens": cached, "gen_ai.usage.cache_creation.input_tokens": 0,
            "gen_ai.response.finish_reasons": ["end_turn"], **extra,
        }  # fmt: skip

    def openinference(
        self, model: str, tin: int, tout: int, finish: str = "end_turn", **extra: Any
    ) -> dict[str, Any]:
        return {
            "llm.provider": "anthropic", "llm.system": "anthropic", "openinference.span.kind": "LLM",
            "llm.model_name": model, "llm.token_count.prompt": tin, "llm.token_count.completion": tout,
            "llm.invocation_parameters": json.dumps({"max_tokens": 2048}),
            "gen_ai.response.finish_reasons": [finish], **extra,
        }  # fmt: skip


def generate(
    path: Path, *, days: int = 30, scale: float = 1.0, seed: int = 7, start: datetime | None = None
) -> int:
    """Write the month to `path` (JSON lines); returns how many LLM spans it holds."""
    g = _Gen(seed)
    first = start or datetime(2026, 10, 1, tzinfo=UTC)
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for day in range(days):
            for line, spans in _day(g, first + timedelta(days=day), scale):
                out.write(line + "\n")
                count += spans
    return count


def _day(g: _Gen, day: datetime, scale: float) -> Iterator[tuple[str, int]]:
    rng = g.rng
    weekday = day.weekday() < 5
    api = {"service.name": "web-api", "k8s.deployment.name": "web-api"}
    for _ in range(int(rng.gauss(140 if weekday else 40, 10) * scale)):  # support-chat
        at = day + timedelta(hours=rng.uniform(8, 18))
        trace = g.hex(32)
        server = g.span(
            trace,
            "POST /api/chat",
            2,
            at,
            6,
            {
                "http.route": "/api/chat",
                "http.request.method": "POST",
                "user.id": f"u{rng.randrange(900)}",
            },
        )
        llm = g.span(
            trace,
            "anthropic.chat",
            3,
            at,
            5.5,
            g.openllmetry(
                "claude-sonnet-5-5",
                rng.randint(300, 900),
                rng.randint(150, 600),
                cached=rng.choice([0, 3000]),
                **{
                    "gen_ai.is_streaming": True,
                    "gen_ai.response.time_to_first_chunk": rng.uniform(0.4, 1.2),
                    "traceloop.association.properties.session_id": f"s{rng.randrange(5000)}",
                },
            ),
            server["spanId"],
        )
        yield g.line(api, [(HTTP_SCOPE, [server]), (OPENLLMETRY, [llm])]), 1
    for _ in range(int(rng.gauss(40 if weekday else 8, 4) * scale)):  # report-builder: split
        at = day + timedelta(hours=rng.uniform(9, 17))
        trace = g.hex(32)
        server = g.span(
            trace,
            "POST /api/reports",
            2,
            at,
            60,
            {"http.route": "/api/reports", "http.request.method": "POST"},
        )
        quick = g.span(
            trace,
            "anthropic.chat",
            3,
            at,
            4,
            g.openllmetry(
                "claude-sonnet-5-5",
                2000,
                300,
                **{
                    "gen_ai.is_streaming": True,
                    "gen_ai.response.time_to_first_chunk": 0.7,
                    "traceloop.workflow.name": "report-builder",
                },
            ),
            server["spanId"],
        )
        deep = g.span(
            trace,
            "anthropic.chat",
            3,
            at + timedelta(seconds=5),
            50,
            g.openllmetry(  # the deep part passes stream=False, which OpenLLMetry records
                "claude-opus-5-5",
                12000,
                3000,
                **{"traceloop.workflow.name": "report-builder", "gen_ai.is_streaming": False},
            ),
            server["spanId"],
        )
        yield g.line(api, [(HTTP_SCOPE, [server]), (OPENLLMETRY, [quick, deep])]), 2
    for _ in range(int(rng.gauss(12, 2) * scale)):  # research-agent
        at = day + timedelta(hours=rng.uniform(7, 20))
        trace = g.hex(32)
        server = g.span(trace, "POST /api/research", 2, at, 90, {"http.route": "/api/research"})
        steps = rng.randint(3, 6)
        calls = [
            g.span(
                trace,
                "messages.create",
                3,
                at + timedelta(seconds=10 * i),
                9,
                g.openinference(
                    "claude-opus-5-5",
                    4000 + 1500 * i,
                    400,
                    "tool_use" if i < steps - 1 else "end_turn",
                    **{"session.id": trace[:8]},
                ),
                server["spanId"],
            )
            for i in range(steps)
        ]
        yield (
            g.line(
                {"service.name": "research-svc"}, [(HTTP_SCOPE, [server]), (OPENINFERENCE, calls)]
            ),
            steps,
        )
    for _ in range(int(rng.gauss(60 if weekday else 10, 6) * scale)):  # doc-summaries
        at = day + timedelta(hours=rng.uniform(8, 19))
        trace = g.hex(32)
        server = g.span(
            trace,
            "POST /api/documents/summarize",
            2,
            at,
            20,
            {"http.route": "/api/documents/summarize"},
        )
        llm = g.span(
            trace,
            "messages.create",
            3,
            at,
            19,
            g.openinference("claude-sonnet-5-5", rng.randint(8000, 30000), rng.randint(500, 1500)),
            server["spanId"],
        )
        yield (
            g.line({"service.name": "docs-svc"}, [(HTTP_SCOPE, [server]), (OPENINFERENCE, [llm])]),
            1,
        )
    for _ in range(int(rng.gauss(300, 20) * scale)):  # ticket-triage
        at = day + timedelta(hours=rng.uniform(0, 24))
        trace = g.hex(32)
        consumer = g.span(
            trace,
            "tickets process",
            5,
            at,
            3,
            {
                "messaging.system": "aws_sqs",
                "messaging.operation.type": "process",
                "messaging.destination.name": "tickets",
            },
        )
        llm = g.span(
            trace,
            "anthropic.chat",
            3,
            at,
            2.5,
            g.openllmetry(
                "claude-haiku-5-5",
                rng.randint(400, 1200),
                rng.randint(20, 80),
                cached=2000,
                **{"traceloop.workflow.name": "ticket-triage"},
            ),
            consumer["spanId"],
        )
        yield g.line({"service.name": "ticket-worker"}, [(OPENLLMETRY, [consumer, llm])]), 1
    cron = {"service.name": "digest-job", "k8s.cronjob.name": "nightly-digest"}
    for _ in range(int(rng.gauss(120, 5) * scale)):  # nightly-digest
        at = day + timedelta(hours=2, minutes=rng.uniform(0, 40))
        llm = g.span(
            g.hex(32),
            "anthropic.chat",
            3,
            at,
            20,
            g.openllmetry("claude-opus-5-5", rng.randint(6000, 20000), rng.randint(800, 2000)),
        )
        yield g.line(cron, [(OPENLLMETRY, [llm])]), 1
    if day.weekday() == 5:  # eval-suite, weekly, already batched
        for _ in range(int(400 * scale)):
            at = day + timedelta(hours=rng.uniform(1, 5))
            raw = {
                "input_tokens": 3000,
                "output_tokens": 500,
                "cache_read_input_tokens": 0,
                "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
                "service_tier": "batch",
            }
            attrs = {
                "gen_ai.system": "anthropic",
                "gen_ai.provider.name": "anthropic",
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "claude-sonnet-5-5",
                "gen_ai.usage.input_tokens": 3000,
                "gen_ai.usage.output_tokens": 500,
                "gen_ai.usage.raw": json.dumps(raw),
                "logfire.span_type": "span",
                "feature": "eval-suite",
            }
            llm = g.span(g.hex(32), "Message with 'claude-sonnet-5-5'", 3, at, 30, attrs)
            yield (
                g.line(
                    {"service.name": "evals", "k8s.job.name": "weekly-evals"}, [(LOGFIRE, [llm])]
                ),
                1,
            )
