"""Traces for the simulator: one request a line, `t` (seconds from the start), `model`,
`input_tokens`, `output_tokens`, `awaited`, and `deadline` (seconds after arrival, or null).
`generate_trace` and `write_trace` make a seeded, realistic mix (`MIXES`: `default`, and
`deadlines`, a mix of the deadlines a team meets in practice)."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nowait.errors import InputError


@dataclass(frozen=True, slots=True)
class TraceRequest:
    t: float
    model: str
    input_tokens: int
    output_tokens: int
    awaited: bool
    deadline: float | None  # seconds after arrival


def read_trace(path: Path) -> list[TraceRequest]:
    out: list[TraceRequest] = []
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read it: {exc.strerror}", file=path) from None
    with handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                out.append(_parse(path, number, line))
    out.sort(key=lambda r: r.t)
    return out


def _bad(path: Path, number: int, field: str, got: object, expected: str) -> InputError:
    return InputError(f"got {got!r}", file=path, line=number, field=field, expected=expected)


_decode = json.JSONDecoder().decode


def _parse(path: Path, number: int, line: str) -> TraceRequest:
    try:
        row = _decode(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"not JSON ({exc.msg})", file=path, line=number) from None
    if not isinstance(row, dict):
        raise _bad(path, number, "(line)", row, "a JSON object")
    t, model = row.get("t"), row.get("model")
    if not isinstance(t, int | float) or isinstance(t, bool) or t < 0:
        raise _bad(path, number, "t", t, "seconds from the start, ≥ 0")
    if not isinstance(model, str) or not model:
        raise _bad(path, number, "model", model, "a model id")
    tokens = []
    for name in ("input_tokens", "output_tokens"):
        value = row.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise _bad(path, number, name, value, "a whole number ≥ 0")
        tokens.append(value)
    awaited = row.get("awaited", False)
    if not isinstance(awaited, bool):
        raise _bad(path, number, "awaited", awaited, "true or false")
    deadline = row.get("deadline")
    if deadline is not None and (
        not isinstance(deadline, int | float) or isinstance(deadline, bool) or deadline <= 0
    ):
        raise _bad(path, number, "deadline", deadline, "seconds after arrival (> 0), or null")
    return TraceRequest(
        float(t),
        model,
        tokens[0],
        tokens[1],
        awaited,
        float(deadline) if deadline is not None else None,
    )


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
MIXES = {"default": MIX, "deadlines": DEADLINES_MIX}
"""The generator's named mixes (`nowait simulate --generate N --mix NAME`)."""


def _rows(
    requests: int, days: int, seed: int, mix: str = "default"
) -> list[tuple[float, str, int, int, bool, float | None]]:
    """The generated requests as (t, model, in, out, awaited, deadline), in arrival order."""
    rng = random.Random(seed)
    rows: list[tuple[float, str, int, int, bool, float | None]] = []
    kinds = MIXES[mix]
    cumulative = list(itertools.accumulate(m[1] for m in kinds))
    choices, randrange, uniform, gauss = rng.choices, rng.randrange, rng.uniform, rng.gauss
    for _ in range(requests):
        _, _, model, tin, tout, awaited, deadline, (lo, hi) = choices(
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
        rows.append((round(t, 3), model, tokens_in, tokens_out, awaited, due))
    rows.sort(key=lambda r: r[0])
    return rows


def generate_trace(
    requests: int, *, days: int = 7, seed: int = 1, mix: str = "default"
) -> Iterator[dict[str, object]]:
    """A seeded mix of the kinds of work in `MIXES[mix]`, in arrival order."""
    for t, model, tokens_in, tokens_out, awaited, due in _rows(requests, days, seed, mix):
        yield {
            "t": t,
            "model": model,
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
            "awaited": awaited,
            "deadline": due,
        }


def write_trace(
    path: Path, requests: int, *, days: int = 7, seed: int = 1, mix: str = "default"
) -> int:
    with path.open("w", encoding="utf-8") as out:
        count = 0
        for t, model, tokens_in, tokens_out, awaited, due in _rows(requests, days, seed, mix):
            # What json.dumps(row) writes for `generate_trace`'s rows, a few times faster.
            out.write(
                f'{{"t": {t!r}, "model": "{model}", "input_tokens": {tokens_in}, '
                f'"output_tokens": {tokens_out}, "awaited": {"true" if awaited else "false"}, '
                f'"deadline": {"null" if due is None else repr(due)}}}\n'
            )
            count += 1
    return count
