"""Read a large OTLP JSON export (5 M spans by default) and compare with a bare orjson parse.

The export is what a team with the anthropic SDK (which traces itself) and OpenLLMetry gets
from a BatchSpanProcessor: every call is a SERVER, CONSUMER or cron root span with two sibling
CLIENT spans under it, the SDK's `anthropic.messages.create` and OpenLLMetry's `anthropic.chat`
(with prompt and completion content, as OpenLLMetry records by default), 50 traces a line.
It is generated once in a child process, streaming (cached in the temp directory).

Prints, from the same run: the seconds of a bare orjson parse of every line (the baseline, in a
child process before and after nowait), nowait's OTLP read (every call once, with its context),
the whole analysis (read, load into DuckDB, report), the ratio of the read to the baseline, and
the peak RSS of nowait's process and of its decoding workers.

    .venv/bin/python bench/analyze_otlp.py [--spans 5000000]
"""

from __future__ import annotations

import argparse
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

from nowait.analyze.engine import connect, load_records
from nowait.analyze.readers import BadRecords
from nowait.analyze.readers.otlp import read_otlp
from nowait.analyze.records import Record
from nowait.analyze.report import build_report

TRACES_PER_LINE = 50
SPANS_PER_TRACE = 3
START = 1_790_000_000  # 2026-09 (UTC seconds)

ROOTS = {
    "support-web": ('"POST /chat"', 2, '{"key":"http.route","value":{"stringValue":"/chat"}},{"key":"http.request.method","value":{"stringValue":"POST"}},{"key":"user.id","value":{"stringValue":"u%(n)d"}}'),
    "ticket-worker": ('"tickets process"', 5, '{"key":"messaging.system","value":{"stringValue":"aws_sqs"}},{"key":"messaging.destination.name","value":{"stringValue":"tickets"}}'),
    "digest": ('"nightly digest"', 1, ""),
}  # fmt: skip
RESOURCE = '{"attributes":[{"key":"telemetry.sdk.language","value":{"stringValue":"python"}},{"key":"service.name","value":{"stringValue":"%(service)s"}},{"key":"%(k8s)s","value":{"stringValue":"%(service)s"}}]}'
ROOT = '{"traceId":"%(trace)s","spanId":"%(root)s","flags":256,"name":%(name)s,"kind":%(kind)d,"startTimeUnixNano":"%(t0)d","endTimeUnixNano":"%(t3)d","attributes":[%(attrs)s],"status":{"code":0}}'
SDK = '{"traceId":"%(trace)s","spanId":"%(sdk)s","parentSpanId":"%(root)s","flags":256,"name":"anthropic.messages.create","kind":3,"startTimeUnixNano":"%(t1)d","endTimeUnixNano":"%(t2)d","attributes":[{"key":"server.address","value":{"stringValue":"api.anthropic.com"}},{"key":"server.port","value":{"intValue":"443"}},{"key":"gen_ai.provider.name","value":{"stringValue":"anthropic"}},{"key":"gen_ai.operation.name","value":{"stringValue":"chat"}},{"key":"gen_ai.request.model","value":{"stringValue":"claude-sonnet-4-5"}},{"key":"gen_ai.request.max_tokens","value":{"intValue":"1024"}},%(stream)s{"key":"http.request.method","value":{"stringValue":"POST"}},{"key":"http.route","value":{"stringValue":"/v1/messages"}},{"key":"url.scheme","value":{"stringValue":"https"}},{"key":"url.path","value":{"stringValue":"/v1/messages"}},{"key":"url.full","value":{"stringValue":"https://api.anthropic.com/v1/messages"}},{"key":"http.response.status_code","value":{"intValue":"200"}},{"key":"anthropic.request.id","value":{"stringValue":"req_%(msg)s"}},{"key":"gen_ai.response.id","value":{"stringValue":"msg_%(msg)s"}},{"key":"gen_ai.response.model","value":{"stringValue":"claude-sonnet-4-5-20250929"}},{"key":"gen_ai.usage.cache_write.input_tokens","value":{"intValue":"0"}},{"key":"gen_ai.usage.cache_read.input_tokens","value":{"intValue":"%(read)d"}},{"key":"anthropic.usage.cache_creation.ephemeral_5m_input_tokens","value":{"intValue":"0"}},{"key":"anthropic.usage.cache_creation.ephemeral_1h_input_tokens","value":{"intValue":"0"}},{"key":"anthropic.response.service_tier","value":{"stringValue":"standard"}},{"key":"gen_ai.usage.output_tokens","value":{"intValue":"%(out)d"}},{"key":"anthropic.message.stop_reason","value":{"stringValue":"end_turn"}},{"key":"gen_ai.usage.input_tokens","value":{"intValue":"%(input)d"}}],"status":{"code":1}}'
STREAM = '{"key":"gen_ai.request.stream","value":{"boolValue":true}},{"key":"gen_ai.response.time_to_first_chunk","value":{"doubleValue":0.61}},'
OPENLLMETRY = '{"traceId":"%(trace)s","spanId":"%(oll)s","parentSpanId":"%(root)s","flags":256,"name":"anthropic.chat","kind":3,"startTimeUnixNano":"%(t1)d","endTimeUnixNano":"%(t2)d","attributes":[{"key":"gen_ai.provider.name","value":{"stringValue":"anthropic"}},{"key":"gen_ai.operation.name","value":{"stringValue":"chat"}},{"key":"gen_ai.request.model","value":{"stringValue":"claude-sonnet-4-5"}},{"key":"gen_ai.request.max_tokens","value":{"intValue":"1024"}},{"key":"gen_ai.input.messages","value":{"stringValue":"[{\\"role\\": \\"user\\", \\"parts\\": [{\\"type\\": \\"text\\", \\"content\\": \\"Please look at request %(n)d and tell me what the customer needs, briefly and exactly.\\"}]}]"}},{"key":"gen_ai.response.id","value":{"stringValue":"msg_%(msg)s"}},{"key":"gen_ai.usage.input_tokens","value":{"intValue":"%(input)d"}},{"key":"gen_ai.usage.output_tokens","value":{"intValue":"%(out1)d"}},{"key":"gen_ai.usage.total_tokens","value":{"intValue":"%(total)d"}},{"key":"gen_ai.usage.cache_read.input_tokens","value":{"intValue":"%(read)d"}},{"key":"gen_ai.usage.cache_creation.input_tokens","value":{"intValue":"0"}},{"key":"gen_ai.response.model","value":{"stringValue":"claude-sonnet-4-5-20250929"}},{"key":"gen_ai.response.finish_reasons","value":{"arrayValue":{"values":[{"stringValue":"stop"}]}}},{"key":"gen_ai.output.messages","value":{"stringValue":"[{\\"role\\": \\"assistant\\", \\"parts\\": [{\\"type\\": \\"text\\", \\"content\\": \\"The customer asks for a refund of order %(n)d; the order shipped late, so the policy allows it.\\"}], \\"finish_reason\\": \\"stop\\"}]"}}],"status":{"code":0}}'
LINE = '{"resourceSpans":[{"resource":%(resource)s,"scopeSpans":[{"scope":{"name":"%(root_scope)s","version":"0.55b0"},"spans":[%(roots)s]},{"scope":{"name":"com.anthropic.sdk.python","version":"2.15.0"},"spans":[%(sdks)s]},{"scope":{"name":"opentelemetry.instrumentation.anthropic","version":"0.62.4"},"spans":[%(olls)s]}]}]}\n'


def generate(path: Path, spans: int) -> None:
    """Line by line, so memory stays flat whatever the size."""
    rng = random.Random(7)
    services = list(ROOTS)
    partial = path.with_suffix(".partial")
    n = 0
    with partial.open("w") as out:
        while n * SPANS_PER_TRACE < spans:
            service = services[(n // TRACES_PER_LINE) % len(services)]
            name, kind, attrs = ROOTS[service]
            roots, sdks, olls = [], [], []
            for _ in range(TRACES_PER_LINE):
                t0 = (START + rng.randrange(30 * 86400)) * 10**9 + rng.randrange(10**9)
                read = rng.choice((0, 2000, 6000))
                values = {
                    "trace": f"{rng.getrandbits(128):032x}", "root": f"{rng.getrandbits(64):016x}",
                    "sdk": f"{rng.getrandbits(64):016x}", "oll": f"{rng.getrandbits(64):016x}",
                    "msg": f"01{rng.getrandbits(96):024x}", "n": n, "name": name, "kind": kind,
                    "t0": t0, "t1": t0 + 1_000_000, "t2": t0 + 2_400_000_000, "t3": t0 + 2_500_000_000,
                    "read": read, "input": read + 200 + n % 800, "out": 100 + n % 400,
                    "stream": STREAM if service == "support-web" else "",
                }  # fmt: skip
                values["attrs"] = attrs % values
                values["out1"] = values["out"] + (1 if values["stream"] else 0)
                values["total"] = values["input"] + values["out1"]
                roots.append(ROOT % values)
                sdks.append(SDK % values)
                olls.append(OPENLLMETRY % values)
                n += 1
            k8s = "k8s.cronjob.name" if service == "digest" else "k8s.deployment.name"
            out.write(
                LINE
                % {
                    "resource": RESOURCE % {"service": service, "k8s": k8s},
                    "root_scope": "opentelemetry.instrumentation.fastapi",
                    "roots": ",".join(roots),
                    "sdks": ",".join(sdks),
                    "olls": ",".join(olls),
                }
            )
    partial.rename(path)


class Timed:
    """The records of a reader, counting them and the seconds spent producing them."""

    def __init__(self, records: Iterator[Record]) -> None:
        self.records, self.seconds, self.count = records, 0.0, 0

    def __iter__(self) -> Iterator[Record]:
        while True:
            started = time.perf_counter()
            record = next(self.records, None)
            self.seconds += time.perf_counter() - started
            if record is None:
                return
            self.count += 1
            yield record


def bare_parse(path: Path) -> None:
    """The baseline: orjson parses every line, one core, nothing else. Prints seconds and the
    number of spans it saw."""
    started = time.perf_counter()
    spans = 0
    with path.open("rb") as lines:
        for line in lines:
            document = orjson.loads(line)
            spans += sum(
                len(s["spans"]) for r in document["resourceSpans"] for s in r["scopeSpans"]
            )
    print(f"{time.perf_counter() - started:.3f} {spans}")


def child(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=5_000_000)
    parser.add_argument("--target", type=float, default=2.0, help="ratio to beat (exit 1 above)")
    parser.add_argument("--generate", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--parse", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate is not None:
        generate(args.generate, args.spans)
        return 0
    if args.parse is not None:
        bare_parse(args.parse)
        return 0
    path = Path(tempfile.gettempdir()) / f"nowait-bench-otlp-{args.spans}.jsonl"
    if not path.exists():
        started = time.perf_counter()
        child("--generate", str(path), "--spans", str(args.spans))
        print(
            f"generated {path} ({path.stat().st_size / 1e9:.2f} GB) "
            f"in {time.perf_counter() - started:.1f} s"
        )
    # The baseline runs before and after nowait: the machine is shared, so the two show how
    # much the load on it moved during the run; the ratio uses their mean.
    before, spans = child("--parse", str(path)).split()
    started = time.perf_counter()
    bad = BadRecords()
    con = connect("2GB")
    reading = Timed(read_otlp(path, bad))
    load_records(con, reading)  # streamed: the records are never all in memory
    report = build_report(con, bad=bad)
    total = time.perf_counter() - started
    read, records = reading.seconds, reading.count
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    con.close()
    after, _ = child("--parse", str(path)).split()
    baseline = (float(before) + float(after)) / 2
    calls = int(spans) // SPANS_PER_TRACE
    assert report.records == records == calls, (report.records, records, calls)
    ratio = read / baseline
    print(f"spans                          {int(spans):,}  ({path.stat().st_size / 1e9:.2f} GB)")
    print(f"calls (2 sibling spans each)   {calls:,}")
    print(
        f"bare orjson parse (baseline)   {baseline:8.2f} s  (before {float(before):.2f} s, after {float(after):.2f} s)"
    )
    print(f"nowait OTLP read               {read:8.2f} s  ({int(spans) / read:,.0f} spans/s)")
    print(f"nowait analysis, all in        {total:8.2f} s  (the read, then DuckDB load + report)")
    print(f"ratio read / bare parse        {ratio:8.2f}x  (target <= {args.target:g}x)")
    print(
        f"peak RSS                       {peak:8.1f} MiB (+ decoding workers {workers:.1f} MiB each at most)"
    )
    print("verdicts:", ", ".join(f"{w.name}={w.verdict.value}" for w in report.workloads))
    if ratio > args.target:
        print(f"FAIL: {ratio:.2f}x is over the {args.target:g}x target")
        return 1
    print(f"OK: {ratio:.2f}x is within the {args.target:g}x target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
