"""Traces for the simulator: one request a line, `t` (seconds from the start), `model`,
`input_tokens`, `output_tokens`, `awaited`, and `deadline` (seconds after arrival, or null);
optionally `prefix` (an id naming a cacheable prompt prefix the request shares) with
`prefix_tokens` (its size, part of `input_tokens`).
`generate_trace` and `write_trace` make a seeded, realistic mix (`MIXES`: `default`, and
`deadlines`, a mix of the deadlines a team meets in practice)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from nowait.durations import MAX_DURATION
from nowait.errors import InputError
from nowait.reading import read_json_lines


@dataclass(frozen=True, slots=True)
class TraceRequest:
    t: float
    model: str
    input_tokens: int
    output_tokens: int
    awaited: bool
    deadline: float | None  # seconds after arrival
    prefix: str | None = None
    """The shared prompt prefix this request starts with (None: none)."""
    prefix_tokens: int = 0
    """Its size in tokens, counted in `input_tokens`."""


MAX_TRACE_SECONDS = MAX_DURATION.total_seconds()
"""Latest arrival `t` and longest `deadline` a trace may hold (400 days, `MAX_DURATION`)."""
MAX_TRACE_TOKENS = 10_000_000
"""Most tokens one request may claim (far above any model's context window)."""


def read_trace(path: Path, on_bytes: Callable[[int], None] | None = None) -> list[TraceRequest]:
    """Every request of the trace, by arrival; the first bad line raises its `InputError`.
    A trace without a request is refused: a simulation of nothing would print all zeros.
    `on_bytes(n)`: `n` more bytes of the file read (progress within the file)."""
    out: list[TraceRequest] = []
    read = 0
    for entry in read_json_lines(path):
        if isinstance(entry, InputError):
            raise entry
        line, row = entry
        out.append(_parse(path, line.number, row))
        if on_bytes is not None and line.offset > read:
            on_bytes(line.offset - read)
            read = line.offset
    if on_bytes is not None:  # the last line, to the end of the file
        on_bytes(max(0, path.stat().st_size - read))
    if not out:
        raise InputError("0 requests in the trace", file=path, expected="one JSON object a line")
    out.sort(key=lambda r: r.t)
    return out


def _bad(path: Path, number: int, field: str, got: object, expected: str) -> InputError:
    return InputError(f"got {got!r}", file=path, line=number, field=field, expected=expected)


def _seconds(value: object, *, above_zero: bool) -> float | None:
    """`value` as seconds if it is a number in range: ≥ 0 (or > 0), at most
    `MAX_TRACE_SECONDS`; None otherwise."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    in_range = (value > 0 if above_zero else value >= 0) and value <= MAX_TRACE_SECONDS
    return float(value) if in_range else None


def _tokens(value: object) -> int | None:
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    return value if 0 <= value <= MAX_TRACE_TOKENS else None


def _parse(path: Path, number: int, row: object) -> TraceRequest:
    if not isinstance(row, dict):
        raise _bad(path, number, "(line)", row, "a JSON object")
    t, model = _seconds(row.get("t"), above_zero=False), row.get("model")
    if t is None:
        raise _bad(path, number, "t", row.get("t"), "seconds from the start, 0 to 400 days")
    if not isinstance(model, str) or not model:
        raise _bad(path, number, "model", model, "a model id")
    tokens = []
    for name in ("input_tokens", "output_tokens"):
        count = _tokens(row.get(name))
        if count is None:
            expected = f"a whole number, 0 to {MAX_TRACE_TOKENS:,}"
            raise _bad(path, number, name, row.get(name), expected)
        tokens.append(count)
    awaited = row.get("awaited", False)
    if not isinstance(awaited, bool):
        raise _bad(path, number, "awaited", awaited, "true or false")
    given = row.get("deadline")
    deadline = _seconds(given, above_zero=True)
    if given is not None and deadline is None:
        expected = "seconds after arrival (> 0, at most 400 days), or null"
        raise _bad(path, number, "deadline", given, expected)
    prefix, prefix_tokens = _prefix(path, number, row, tokens[0])
    return TraceRequest(t, model, tokens[0], tokens[1], awaited, deadline, prefix, prefix_tokens)


def _prefix(path: Path, number: int, row: dict[str, object], inputs: int) -> tuple[str | None, int]:
    """`prefix` and `prefix_tokens`: both or neither; the prefix is part of the input."""
    prefix, given = row.get("prefix"), row.get("prefix_tokens")
    if prefix is None and given is None:
        return None, 0
    if not isinstance(prefix, str) or not prefix:
        raise _bad(path, number, "prefix", prefix, "an id of the shared prompt prefix (text)")
    count = _tokens(given)
    if count is None or count > inputs:
        expected = f"a whole number, 0 to the request's input_tokens ({inputs:,})"
        raise _bad(path, number, "prefix_tokens", given, expected)
    return prefix, count


MIX = (
    # name, share, model, input, output, awaited, deadline seconds (None = no deadline), hours
    ("interactive chat", 0.30, "claude-sonnet-5-5", 900, 350, True, 60.0, (8, 19)),
    ("nightly jobs", 0.20, "claude-opus-5-5", 8_000, 1_500, False, "08:00", (1, 2)),
    ("backlog", 0.30, "claude-haiku-5-5", 2_000, 200, False, 48 * 3600.0, (0, 24)),
    (
        "user-triggered, not awaited",
        0.20,
        "claude-sonnet-5-5",
        6_000,
        800,
        False,
        3 * 3600.0,
        (8, 19),
    ),
)


DEADLINES_MIX = (
    # Deadlines close to the guard's limits: overnight reports queued from midnight to 06:00,
    # all due at 08:00; exports due two hours after the click; a 50-minute SLA; a backlog with
    # two days; chat someone waits on.
    ("awaited chat", 0.30, "claude-sonnet-5-5", 900, 350, True, 60.0, (8, 19)),
    ("overnight reports", 0.20, "claude-opus-5-5", 8_000, 1_500, False, "08:00", (0, 6)),
    ("exports", 0.15, "claude-sonnet-5-5", 4_000, 1_000, False, 2 * 3600.0, (8, 19)),
    ("50-minute SLA", 0.10, "claude-haiku-5-5", 3_000, 500, False, 50 * 60.0, (8, 19)),
    ("backlog", 0.25, "claude-haiku-5-5", 2_000, 200, False, 48 * 3600.0, (0, 24)),
)
CACHE_MIX = (
    # The deadlines of `MIX` with the prompt prefixes teams share: a ticket tagger's system
    # prompt and tools (4,000 tokens before a 300-token ticket), a nightly digest's
    # instructions (7,200 tokens). For `nowait simulate`'s cache policies.
    ("awaited chat", 0.30, "claude-sonnet-5-5", 900, 350, True, 60.0, (8, 19)),
    ("ticket tagging", 0.45, "claude-haiku-5-5", 300, 100, False, 24 * 3600.0, (0, 24)),
    ("nightly digest", 0.25, "claude-sonnet-5-5", 4_800, 900, False, "08:00", (1, 2)),
)
PREFIXES = {"ticket tagging": ("tagger", 4_000), "nightly digest": ("digest", 7_200)}
"""The shared prefix (id, tokens) of a kind of work; its `input` is then the unique tail."""
MIXES = {"default": MIX, "deadlines": DEADLINES_MIX, "cache": CACHE_MIX}
"""The generator's named mixes (`nowait simulate --generate N --mix NAME`)."""

Row = tuple[float, str, int, int, bool, float | None, str | None, int]
"""(t, model, in, out, awaited, deadline, prefix, prefix tokens)."""


def _rows(requests: int, days: int, seed: int, mix: str = "default") -> list[Row]:
    """The generated requests, in arrival order."""
    rng = random.Random(seed)
    rows: list[Row] = []
    kinds = MIXES[mix]
    cumulative = list(itertools.accumulate(m[1] for m in kinds))
    choices, randrange, uniform, gauss = rng.choices, rng.randrange, rng.uniform, rng.gauss
    for _ in range(requests):
        name, _, model, tin, tout, awaited, deadline, (lo, hi) = choices(
            kinds, cum_weights=cumulative
        )[0]
        day = randrange(days)
        t = day * 86400 + uniform(lo, hi) * 3600
        if deadline == "08:00":
            due: float | None = round(day * 86400 + 8 * 3600 - t, 3)
        else:
            due = round(float(deadline), 3) if deadline is not None else None
        tokens_in = max(1, int(gauss(tin, tin / 4)))
        tokens_out = max(1, int(gauss(tout, tout / 4)))
        prefix, shared = PREFIXES.get(name, (None, 0))
        rows.append(
            (round(t, 3), model, tokens_in + shared, tokens_out, awaited, due, prefix, shared)
        )
    rows.sort(key=lambda r: r[0])
    return rows


def generate_trace(
    requests: int, *, days: int = 7, seed: int = 1, mix: str = "default"
) -> Iterator[dict[str, object]]:
    """A seeded mix of the kinds of work in `MIXES[mix]`, in arrival order."""
    for t, model, tokens_in, tokens_out, awaited, due, prefix, shared in _rows(
        requests, days, seed, mix
    ):
        row: dict[str, object] = {
            "t": t,
            "model": model,
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
            "awaited": awaited,
            "deadline": due,
        }
        if prefix is not None:
            row.update(prefix=prefix, prefix_tokens=shared)
        yield row


def write_trace(
    path: Path, requests: int, *, days: int = 7, seed: int = 1, mix: str = "default"
) -> int:
    with path.open("w", encoding="utf-8") as out:
        count = 0
        for t, model, tokens_in, tokens_out, awaited, due, prefix, shared in _rows(
            requests, days, seed, mix
        ):
            # What json.dumps(row) writes for `generate_trace`'s rows, a few times faster.
            cached = "" if prefix is None else f', "prefix": "{prefix}", "prefix_tokens": {shared}'
            out.write(
                f'{{"t": {t!r}, "model": "{model}", "input_tokens": {tokens_in}, '
                f'"output_tokens": {tokens_out}, "awaited": {"true" if awaited else "false"}, '
                f'"deadline": {"null" if due is None else repr(due)}{cached}}}\n'
            )
            count += 1
    return count
