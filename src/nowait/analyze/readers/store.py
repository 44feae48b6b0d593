"""nowait's own store (`nowait.db`): every routed request with its workload, route and usage."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from nowait.analyze.readers import BadRecords
from nowait.analyze.records import Record
from nowait.store.sqlite import SQLiteStore


def read_store(path: Path, bad: BadRecords) -> Iterator[Record]:
    store = SQLiteStore(path)
    try:
        for job in store.jobs():
            if job.usage is None:
                continue
            usage = job.usage
            yield Record(
                source="nowait",
                producer="nowait-store",
                record_id=job.key,
                start_time=job.created_at,
                model=job.model,
                stream=False,
                service_tier=job.tier.value if job.tier else None,
                input_uncached=usage.input_tokens,
                cache_read=usage.cache_read_tokens,
                cache_write_5m=usage.cache_write_5m_tokens,
                cache_write_1h=usage.cache_write_1h_tokens,
                output_tokens=usage.output_tokens,
                token_rule="anthropic usage object",
                feature=job.workload,
                trigger="script",
                awaited=job.awaited,
                needed_within_s=(job.deadline - job.created_at).total_seconds()
                if job.deadline is not None
                else None,
                file=str(path),
                line=job.id,
            )
    finally:
        store.close()
