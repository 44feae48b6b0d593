"""Shared parts of the fuzz suite: hypothesis settings, a per-case time limit, the CLI run
in-process, and byte-level corruptions every reader must refuse.

Every case feeds a malformed input and asserts nowait's one error contract: an `InputError`
(exit 2 through the CLI) naming the file and the line or byte offset, never another exception,
never a hang, never a store touched."""

from __future__ import annotations

import io
import os
import re
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from nowait.cli import main
from nowait.errors import InputError

READER_EXAMPLES = 1000
"""Malformed inputs per reader, fed to the reader itself (about a millisecond each)."""
CLI_EXAMPLES = 40
"""Of the same inputs, fed through `nowait.cli.main` in-process (tens of milliseconds each)."""
CASE_SECONDS = 10.0
"""No single case may take longer: a hang fails the case instead of the suite's timeout."""

FUZZ = settings(
    max_examples=READER_EXAMPLES,
    deadline=None,
    derandomize=True,  # the same cases on every machine and every run
    database=None,
    suppress_health_check=list(HealthCheck),
)
CLI_FUZZ = settings(FUZZ, max_examples=CLI_EXAMPLES)


class Hang(BaseException):
    """A case ran past `CASE_SECONDS` (a BaseException: no `except Exception` swallows it)."""


@contextmanager
def time_limit(seconds: float = CASE_SECONDS) -> Iterator[None]:
    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"a case ran past {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def refused(read: Callable[[], object]) -> InputError:
    """The `InputError` a reader raises on a malformed input; anything else fails the case
    (another exception propagates with its traceback: that is the finding)."""
    with time_limit():
        try:
            read()
        except InputError as exc:
            return exc
    raise AssertionError("a malformed input was accepted")


def assert_names(error: InputError | str, path: Path, line: int | None) -> None:
    """The message starts with the file and, if `line` is known, that line; else with some
    line, or it names a byte offset."""
    text = str(error).removeprefix("nowait: error: ")
    assert text.startswith(f"{path}:"), text
    if line is not None:
        assert text.startswith(f"{path}:{line}: "), text
    else:
        assert re.match(rf"{re.escape(str(path))}:\d+: ", text) or "byte offset" in text, text


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str


def run_cli(*argv: str, env: dict[str, str] | None = None) -> Outcome:
    """`nowait ARGV...` in-process through `nowait.cli.main`, the real error boundary, within
    the time limit; `env`: variables set for this run only."""
    out, err = io.StringIO(), io.StringIO()
    saved = {name: os.environ.get(name) for name in env or {}}
    os.environ.update(env or {})
    code = 0
    try:
        with time_limit(), redirect_stdout(out), redirect_stderr(err):
            main(list(argv))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return Outcome(code, out.getvalue(), err.getvalue())


def assert_refused(result: Outcome, path: Path, line: int | None) -> None:
    """Exit 2, one clear message naming the file and line, no traceback."""
    assert result.code == 2, (result.code, result.err)
    assert "Traceback" not in result.err, result.err
    assert result.err.startswith("nowait: error: "), result.err
    assert_names(result.err.strip(), path, line)


def files_in(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


# --- byte-level corruption -----------------------------------------------------------------

INVALID_UTF8 = [
    b"\xff", b"\xfe", b"\x80", b"\xbf", b"\xc0\xaf", b"\xc3(", b"\xe2\x82(", b"\xed\xa0\x80",
    b"\xf8\x88\x80\x80\x80", b"\xf4\x90\x80\x80", b"\xe2\x82",
]  # fmt: skip
BOM_UTF8 = b"\xef\xbb\xbf"


@st.composite
def undecodable(draw: st.DrawFn, good: bytes) -> tuple[bytes, int]:
    """`good` (ASCII text) made undecodable: invalid UTF-8 bytes or a NUL somewhere, UTF-16 or
    UTF-32 with or without a byte-order mark, maybe behind a UTF-8 byte-order mark (which
    alone is fine). Returns the bytes and the line of the first bad byte."""
    kind = draw(st.sampled_from(["invalid", "nul", "utf-16", "utf-16-le", "utf-16-be", "utf-32"]))
    if kind.startswith("utf-"):
        return good.decode().encode(kind), 1
    position = draw(st.integers(0, len(good)))
    bad = b"\0" if kind == "nul" else draw(st.sampled_from(INVALID_UTF8))
    data = good[:position] + bad + good[position:]
    line = good.count(b"\n", 0, position) + 1
    return (BOM_UTF8 + data if draw(st.booleans()) else data), line


# --- values strict readers refuse wherever they stand --------------------------------------

nonfinite_json = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e400", "1E309"])
huge_int = st.one_of(
    st.integers(20, 60).map(lambda n: "9" * n),  # beyond 64 bits
    st.integers(4_301, 9_000).map(lambda n: "-" * (n % 2) + "9" * n),  # beyond Python's limit
)
deep_json = st.integers(101, 100_000).flatmap(
    lambda n: st.sampled_from(["[" * n + "]" * n, '{"a": ' * n + "1" + "}" * n])
)
lone_surrogate = st.integers(0xD800, 0xDFFF).map(lambda c: f'"a\\u{c:04x}b"')
bad_json_value = st.one_of(nonfinite_json, huge_int, deep_json, lone_surrogate)

nonfinite_toml = st.sampled_from(["nan", "+nan", "-nan", "inf", "+inf", "-inf", "1e999"])
deep_toml = st.integers(101, 100_000).map(lambda n: "[" * n + "]" * n)
bad_toml_value = st.one_of(nonfinite_toml, huge_int, deep_toml)
