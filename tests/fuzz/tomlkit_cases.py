"""Malformed TOML documents made from a valid one, each with the line its error must name:
syntax broken on a line, a key written twice, or one value replaced by a bad one."""

from __future__ import annotations

import re

from fuzzkit import bad_toml_value
from hypothesis import strategies as st

_ASSIGNMENT = re.compile(r"^\s*([\w\"'.-]+)\s*=")
GARBAGE = ["= 1", "key =", "x = 1 2", "x = 'a", "[a", "[[", "x = tru", "x = 2026-13-45",
           'x = "\\q"', "x = 0x", "x = 1__0", "a.=1"]  # fmt: skip


def assignments(lines: list[str]) -> list[int]:
    """Indexes of the `key = value` lines (not comments, headers, blank lines)."""
    return [i for i, line in enumerate(lines) if _ASSIGNMENT.match(line)]


def key_of(line: str) -> str:
    match = _ASSIGNMENT.match(line)
    assert match
    return match.group(1).strip("\"'")


@st.composite
def broken_toml(
    draw: st.DrawFn, good: str, wrong: dict[str, list[str]]
) -> tuple[bytes, int | None]:
    """`good` with one fault, and the line its error must name (None: some line, as a string
    left open is found where it ends, maybe at the end of the file). `wrong` gives, per key
    name, values that key must refuse (the wrong type, out of range); values no reader takes
    (nan, huge, deep) go anywhere."""
    lines = good.splitlines()
    spots = assignments(lines)
    family = draw(st.sampled_from(["garbage", "twice", "unterminated", "wrong", "value"]))
    if family == "garbage":
        at = draw(st.integers(0, len(lines)))
        lines.insert(at, draw(st.sampled_from(GARBAGE)))
        return "\n".join(lines).encode() + b"\n", None
    at = draw(st.sampled_from(spots))
    if family == "twice":  # a key written twice: TOML forbids it
        lines.insert(at + 1, lines[at])
        return "\n".join(lines).encode() + b"\n", at + 2
    if family == "unterminated":
        lines[at] = lines[at].split("=", 1)[0] + '= "never closed'
        return "\n".join(lines).encode() + b"\n", None
    known = [i for i in spots if key_of(lines[i]) in wrong]
    if family == "wrong" and known:
        at = draw(st.sampled_from(known))
        value = draw(st.sampled_from(wrong[key_of(lines[at])]))
    else:
        value = draw(bad_toml_value)
    lines[at] = lines[at].split("=", 1)[0] + "= " + value
    return "\n".join(lines).encode() + b"\n", at + 1
