"""Cache-aware batching against the emulator: the official SDK over HTTP, a real SQLite file."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nowait.clock import FakeClock
from nowait.emulator import Turnaround
from nowait.errors import InputError
from nowait.route.backend import AnthropicBackend, BatchInfo
from nowait.route.cacheplan import (
    CACHE_MIN_TOKENS,
    MAX_BREAKPOINTS,
    blocks,
    breakpoints,
    cuts,
    too_short,
)
from nowait.route.router import Delivery, Router
from nowait.route.worker import WorkerConfig
from nowait.settings import load_settings
from nowait.store import BatchState
from nowait.store.sqlite import SQLiteStore
from nowait.types import Route

MODEL = "claude-haiku-5-5"
SYSTEM = "You label support tickets by product area and urgency. " * 300  # ~4,000 tokens
TOOL = {"name": "label", "description": "record a label", "input_schema": {"type": "object"}}


class SentBackend(AnthropicBackend):
    """The real SDK against the emulator, keeping the batch items it sent (to read the markers)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.sent: list[list[dict[str, Any]]] = []

    def create_batch(self, requests: Iterable[tuple[str, str]]) -> BatchInfo:
        items = list(requests)
        self.sent.append([orjson.loads(params) for _, params in items])
        return super().create_batch(items)


@pytest.fixture
def cached_router(tmp_path: Any, fake_clock: FakeClock, emulator_server: Any) -> Any:
    made: list[Router] = []

    def make(cache: str, **worker: Any) -> tuple[Router, SentBackend]:
        backend = SentBackend(api_key="test-key", base_url=emulator_server.base_url)
        store = SQLiteStore(tmp_path / f"s{len(made)}" / "nowait.db")
        router = Router(
            store=store,
            backend=backend,
            clock=fake_clock,
            worker=WorkerConfig(cache=cache, **worker),
        )
        made.append(router)
        return router, backend

    yield make
    for router in made:
        router.backend.close()  # type: ignore[attr-defined]
        router.store.close()


def ticket(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 32,
        "tools": [TOOL],
        "system": SYSTEM,
        "messages": [{"role": "user", "content": f"Ticket {i}: the export button does nothing."}],
        **extra,
    }


def run(router: Router, requests: list[dict[str, Any]]) -> list[Delivery]:
    for i, params in enumerate(requests):
        router.submit(params, key=f"t{i}")
    received: list[Delivery] = []
    router.run(received.append)
    assert sorted(d.key for d in received) == sorted(f"t{i}" for i in range(len(requests)))
    assert all(d.ok for d in received)
    return received


def usage(d: Delivery) -> dict[str, Any]:
    assert d.message is not None
    return dict(d.message["usage"])


def test_auto_primes_the_group_and_the_rest_read_the_prefix(cached_router: Any) -> None:
    router, backend = cached_router("auto")
    received = run(router, [ticket(i) for i in range(20)])
    assert [len(items) for items in backend.sent] == [1, 19]  # the primer goes alone, first
    reads = [d for d in received if usage(d)["cache_read_input_tokens"] > 0]
    assert len(reads) == 19
    assert all(usage(d)["cache_read_input_tokens"] > 4_000 for d in reads)
    writes = [d for d in received if usage(d)["cache_creation"]["ephemeral_1h_input_tokens"] > 0]
    assert len(writes) == 1
    marked = backend.sent[1][0]
    assert marked["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    stored = orjson.loads(next(iter(router.store.jobs())).params_json)
    assert "cache_control" not in orjson.dumps(stored).decode()  # the stored request is untouched
    assert all(d.message and d.message["type"] == "message" for d in received)


def test_keep_groups_but_adds_no_marker(cached_router: Any) -> None:
    router, backend = cached_router("keep")
    received = run(router, [ticket(i) for i in range(10)])
    assert [len(items) for items in backend.sent] == [10]
    assert all(breakpoints(p) == 0 for items in backend.sent for p in items)
    assert all(usage(d)["cache_read_input_tokens"] == 0 for d in received)


def test_off_changes_nothing(cached_router: Any) -> None:
    router, backend = cached_router("off")
    run(router, [ticket(i) for i in range(5)])
    assert [len(items) for items in backend.sent] == [5]
    assert all(breakpoints(p) == 0 for items in backend.sent for p in items)


def test_the_users_own_markers_are_kept(cached_router: Any) -> None:
    router, backend = cached_router("auto")
    mine = {"type": "ephemeral", "ttl": "1h"}
    tools = [{**TOOL, "cache_control": mine}]
    run(router, [ticket(i, tools=tools) for i in range(6)])
    for items in backend.sent:
        for params in items:
            assert params["tools"][0]["cache_control"] == mine
            assert blocks(params)[0].marker == "1h"
            assert breakpoints(params) == 2  # the user's, and one at the end of the system prompt


def test_four_breakpoints_at_most(cached_router: Any) -> None:
    router, backend = cached_router("auto")
    tools = [
        {**TOOL, "name": f"t{i}", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
        for i in range(4)
    ]
    received = run(router, [ticket(i, tools=tools) for i in range(6)])
    sent = [p for items in backend.sent for p in items]
    assert len(sent) == 6
    assert all(breakpoints(p) == MAX_BREAKPOINTS for p in sent)
    assert all(p["tools"] == tools and p["system"] == SYSTEM for p in sent)
    assert all(d.ok for d in received)


def test_keep_packs_each_prefix_family_into_its_own_batches(cached_router: Any) -> None:
    router, backend = cached_router("keep", max_batch_requests=5)
    other = "You grade essays for clarity and argument. " * 300
    requests = [ticket(i, system=SYSTEM if i % 2 else other) for i in range(10)]
    run(router, requests)  # submitted interleaved
    assert sorted({p["system"] for p in items} == {SYSTEM} for items in backend.sent) == [
        False,
        True,
    ]
    assert all(len({p["system"] for p in items}) == 1 for items in backend.sent)


@pytest.mark.parametrize(
    ("environ", "toml", "expected"),
    [
        ({}, None, "auto"),
        ({"NOWAIT_CACHE": "keep"}, None, "keep"),
        ({}, 'cache = "off"\n', "off"),
        ({"NOWAIT_CACHE": "auto"}, 'cache = "off"\n', "auto"),
    ],
)
def test_the_cache_setting_reaches_the_worker(
    tmp_path: Any, environ: dict[str, str], toml: str | None, expected: str
) -> None:
    config = None
    if toml is not None:
        config = tmp_path / "nowait.toml"
        config.write_text(toml)
    settings = load_settings(environ, config=config)
    assert WorkerConfig.from_settings(settings).cache == expected


def test_a_bad_cache_setting_is_a_clear_error(tmp_path: Any) -> None:
    with pytest.raises(InputError, match="NOWAIT_CACHE: got 'always'"):
        load_settings({"NOWAIT_CACHE": "always"})


@pytest.mark.parametrize(
    ("hours", "sent", "marked"),
    [
        # the prior forecast: a one-request batch ends within 4 h at p95; after that the guard
        # would still batch the rest with 8 h left, not with 2 h: those go at once, unmarked
        (8, [1, 9], 10),
        (2, [10], 0),
        (None, [1, 9], 10),
    ],
)
def test_jobs_wait_for_a_primer_only_while_the_guard_would_still_batch_them(
    cached_router: Any, fake_clock: FakeClock, hours: int | None, sent: list[int], marked: int
) -> None:
    router, backend = cached_router("auto")
    deadline = fake_clock.now() + timedelta(hours=hours) if hours else None
    for i in range(10):
        router.submit(ticket(i), key=f"t{i}", deadline=deadline)
    assert {j.route for j in router.store.jobs()} == {Route.BATCH}
    received: list[Delivery] = []
    router.run(received.append)
    assert len(received) == 10 and all(d.ok for d in received)
    assert [len(items) for items in backend.sent] == sent
    assert sum(breakpoints(p) for items in backend.sent for p in items) == marked
    reads = sum(usage(d)["cache_read_input_tokens"] > 0 for d in received)
    assert reads == (9 if marked else 0)


def test_a_group_is_primed_again_once_its_entry_may_have_lapsed(
    cached_router: Any, fake_clock: FakeClock
) -> None:
    router, backend = cached_router("auto")
    first = run(router, [ticket(i) for i in range(5)])
    fake_clock.advance(20 * 60)  # still fresh: read without a new primer
    for i in range(5, 10):
        router.submit(ticket(i), key=f"t{i}")
    router.run(first.append)
    fake_clock.advance(2 * 3600)  # lapsed: primed again
    for i in range(10, 15):
        router.submit(ticket(i), key=f"t{i}")
    router.run(first.append)
    assert [len(items) for items in backend.sent] == [1, 4, 5, 1, 4]
    reads = [d for d in first if usage(d)["cache_read_input_tokens"] > 0]
    assert len(first) == 15 and len(reads) == 13


def contract(c: int, i: int) -> dict[str, Any]:
    """Tools and the system prompt shared by all; a ~2,000-token document shared by one
    customer's requests; a question of its own."""
    document = f"Contract of customer {c}: " + "clause " * 1_150
    return {
        "model": MODEL,
        "max_tokens": 32,
        "tools": [TOOL],
        "system": SYSTEM,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": document},
                    {"type": "text", "text": f"Question {i}: when does it renew?"},
                ],
            }
        ],
    }


def test_nested_prefixes_are_primed_level_by_level(cached_router: Any) -> None:
    router, backend = cached_router("auto")
    received = run(router, [contract(c, i) for c in range(3) for i in range(6)])
    # one primer writes the shared prefix and its customer's document; the other customers'
    # primers then read the shared prefix and write only their documents; the rest read all
    assert [len(items) for items in backend.sent] == [1, 2, 5, 10]
    assert all(breakpoints(p) == 2 for items in backend.sent for p in items)
    writes = [usage(d)["cache_creation"]["ephemeral_1h_input_tokens"] for d in received]
    shared = sum(b.tokens for b in blocks(contract(0, 0))[:2])
    assert sorted(w for w in writes if w) == [pytest.approx(2_000, rel=0.2)] * 2 + [
        pytest.approx(shared + 2_000, rel=0.1)
    ]
    reads = [usage(d)["cache_read_input_tokens"] for d in received]
    assert sum(r > shared + 1_000 for r in reads) == 15  # the shared prefix and a document
    assert sum(0 < r <= shared + 3 for r in reads) == 2  # the shared prefix (and the preamble)


def image_ticket(i: int) -> dict[str, Any]:
    """A small image (the API counts ~1,500 tokens for it; the estimate sees ~100 characters)."""
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo" * 8},
    }
    question = {"type": "text", "text": f"Ticket {i}: what does the screenshot show?"}
    return {
        "model": MODEL,
        "max_tokens": 32,
        "messages": [{"role": "user", "content": [image, question]}],
    }


@pytest.mark.parametrize(
    ("sizing", "sent", "reads"), [("estimate", [6], 0), ("count_tokens", [1, 5], 5)]
)
def test_count_tokens_sizes_a_prefix_the_estimate_gets_wrong(
    cached_router: Any, emulator_server: Any, sizing: str, sent: list[int], reads: int
) -> None:
    router, backend = cached_router("auto", cache_sizing=sizing)
    received = run(router, [image_ticket(i) for i in range(6)])
    assert [len(items) for items in backend.sent] == sent
    assert sum(usage(d)["cache_read_input_tokens"] > 1_000 for d in received) == reads
    counted = emulator_server.emulator.calls["count_tokens"]
    assert counted == (2 if sizing == "count_tokens" else 0)  # the prefix and the probe, once
    for i in range(6, 12):  # the same prefix again: sized from memory
        router.submit(image_ticket(i), key=f"t{i}")
    router.run(received.append)
    assert emulator_server.emulator.calls["count_tokens"] == counted


@pytest.mark.parametrize("primer", ["in flight", "ended, not collected", "collected"])
def test_a_restart_between_the_primer_and_the_rest_sends_no_second_primer(
    tmp_path: Any, fake_clock: FakeClock, emulator_server: Any, primer: str
) -> None:
    def router_on(backend: SentBackend) -> Router:
        store = SQLiteStore(tmp_path / "nowait.db")
        return Router(store=store, backend=backend, clock=fake_clock, worker=WorkerConfig())

    before = SentBackend(api_key="test-key", base_url=emulator_server.base_url)
    first = router_on(before)
    for i in range(20):
        first.submit(ticket(i), key=f"t{i}")
    emulator_server.emulator.configure(turnaround=Turnaround(120))
    first.worker.run_once()  # the primer goes
    while primer == "collected" and not first.store.batches(BatchState.COLLECTED):
        fake_clock.advance(30)  # until it has ended and its result is stored, then stop
        first.worker.run_once()
    while primer.startswith("ended") and not first.store.batches(BatchState.ENDED):
        fake_clock.advance(30)  # until its end is stored, then stop before collecting
        first.worker.poll_batches()
    assert [len(items) for items in before.sent] == [1]
    first.store.close()
    after = SentBackend(api_key="test-key", base_url=emulator_server.base_url)
    second = router_on(after)
    received: list[Delivery] = []
    second.run(received.append)
    after.close()
    second.store.close()
    before.close()
    assert [len(items) for items in after.sent] == [19]  # no second primer
    assert len(received) == 20 and all(d.ok for d in received)
    assert sum(usage(d)["cache_read_input_tokens"] > 4_000 for d in received) == 19


class CountingStore(SQLiteStore):
    """A real SQLite store that counts how often the batch queue is read."""

    reads = 0

    def due_jobs(self, route: Route, now: Any, limit: int) -> Any:
        if route is Route.BATCH:
            self.reads += 1
        return super().due_jobs(route, now, limit)


def test_held_jobs_are_not_read_again_every_pass(
    tmp_path: Any, fake_clock: FakeClock, emulator_server: Any
) -> None:
    from nowait.route.worker import HELD_RECHECK

    emulator_server.emulator.configure(turnaround=Turnaround(40 * 60))  # a slow primer
    backend = SentBackend(api_key="test-key", base_url=emulator_server.base_url)
    store = CountingStore(tmp_path / "nowait.db")
    router = Router(store=store, backend=backend, clock=fake_clock, worker=WorkerConfig())
    for i in range(20):
        router.submit(ticket(i), key=f"t{i}")
    router.worker.run_once()  # the primer goes, 19 jobs held
    reads = store.reads
    for _ in range(5):  # passes while the primer runs: the queue is not read
        fake_clock.advance(10)
        router.worker.run_once()
    assert store.reads == reads
    router.submit(ticket(0, system="Another prompt altogether."), key="other")
    fake_clock.advance(HELD_RECHECK.total_seconds())
    router.worker.run_once()  # new work is seen within HELD_RECHECK
    assert store.reads > reads
    assert [len(items) for items in backend.sent] == [1, 1]
    received: list[Delivery] = []
    router.run(received.append)  # the primer ends: the rest go at once, marked
    assert [len(items) for items in backend.sent] == [1, 1, 19]
    assert sum(usage(d)["cache_read_input_tokens"] > 4_000 for d in received) == 19
    backend.close()
    store.close()


def test_a_failed_count_falls_back_to_the_estimate(
    cached_router: Any, emulator_server: Any
) -> None:
    router, backend = cached_router("auto", cache_sizing="count_tokens")
    emulator_server.emulator.fail_next(10, status=529, endpoint="count_tokens")
    received = run(router, [image_ticket(i) for i in range(6)])
    assert [len(items) for items in backend.sent] == [6]  # the estimate: too short to cache
    assert all(d.ok for d in received)


_text = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=0x2FF), max_size=3000),
    st.integers(3800, 4100).map(lambda n: "x" * n),  # near the gate's edge
)
_block = st.one_of(
    _text,
    st.builds(lambda t: {"type": "text", "text": t}, _text),
    st.builds(
        lambda d: {"type": "image", "source": {"type": "base64", "data": d}},
        st.text(alphabet="abc+/=", max_size=3000),
    ),
)
_message = st.builds(
    lambda role, blocks: {"role": role, "content": blocks[0] if len(blocks) == 1 else blocks},
    st.sampled_from(["user", "assistant"]),
    st.lists(_block, min_size=1, max_size=4),
)


@settings(max_examples=300, deadline=None)
@given(
    system=st.one_of(
        st.none(),
        _text,
        st.lists(st.builds(lambda t: {"type": "text", "text": t}, _text), max_size=3),
    ),
    messages=st.lists(_message, min_size=1, max_size=6),
    pretty=st.booleans(),
)
def test_a_request_too_short_to_parse_has_no_prefix_worth_caching(
    system: Any, messages: list[dict[str, Any]], pretty: bool
) -> None:
    """The gate that skips parsing short requests never skips one the estimate would cache."""
    import json

    params: dict[str, Any] = {"model": MODEL, "max_tokens": 8, "messages": messages}
    if system is not None:
        params["system"] = system
    text = json.dumps(params, ensure_ascii=False) if pretty else orjson.dumps(params).decode()
    if too_short(text):
        assert all(cut.tokens < CACHE_MIN_TOKENS for cut in cuts(params))


def test_tools_or_escaped_text_are_parsed_however_short() -> None:
    tools = {"model": MODEL, "tools": [{"name": f"t{i}"} for i in range(60)], "messages": []}
    assert not too_short(orjson.dumps(tools).decode())
    assert max(cut.tokens for cut in cuts(tools)) >= CACHE_MIN_TOKENS  # why tools are parsed
    assert not too_short(orjson.dumps({"model": MODEL, "system": "é"}).decode())
