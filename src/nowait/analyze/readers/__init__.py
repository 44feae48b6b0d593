"""Readers: one per log format, each yielding `Record`s and reporting bad input by file and
line. `detect` picks the format from a file's first bytes; `--format` overrides it."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from nowait.analyze.records import Record
from nowait.errors import InputError


@dataclass
class BadRecords:
    """Malformed input seen while reading: counted, and the first few kept for the report."""

    count: int = 0
    examples: list[str] = field(default_factory=list)
    skip: bool = False

    def add(self, path: Path, line: int, message: str) -> None:
        self.count += 1
        where = f"{path}:{line}: {message}"
        if len(self.examples) < 20:
            self.examples.append(where)
        if not self.skip:
            raise InputError(
                message + " (use --skip-bad to skip bad records)", file=path, line=line
            )


Reader = Callable[[Path, BadRecords], Iterator[Record]]


def open_text(path: Path) -> IO[str]:
    """A text stream of the file, gunzipped when it is gzip."""
    try:
        with path.open("rb") as probe:
            gzipped = probe.read(2) == b"\x1f\x8b"
        if gzipped:
            return gzip.open(path, "rt", encoding="utf-8", errors="replace")
        return path.open(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"cannot read it: {exc.strerror}", file=path) from None


def json_objects(path: Path, bad: BadRecords) -> Iterator[tuple[int, Any]]:
    """(line, object) from a JSON Lines file or a JSON document holding an array."""
    with open_text(path) as text:
        first = text.read(1)
        while first and first.isspace():
            first = text.read(1)
        if first == "[" or (first == "{" and _is_document(path)):
            try:
                document = json.loads(first + text.read())
            except json.JSONDecodeError as exc:
                bad.add(path, exc.lineno, f"not valid JSON ({exc.msg})")
                return
            items = document if isinstance(document, list) else [document]
            yield from enumerate(items, start=1)
            return
        number = 0
        for number, line in enumerate(_prepend(first, text), start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                bad.add(path, number, f"not valid JSON ({exc.msg})")


def _prepend(first: str, text: IO[str]) -> Iterator[str]:
    line = first + text.readline()
    while line:
        yield line
        line = text.readline()


def _is_document(path: Path) -> bool:
    """A `{...}` file is one JSON document (not JSON Lines) when its first line does not parse."""
    with open_text(path) as text:
        line = text.readline()
    try:
        json.loads(line)
    except json.JSONDecodeError:
        return True
    return False


def number(value: Any) -> int:
    """OTLP sends 64-bit ints as strings; others send numbers, floats or nothing."""
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        raise ValueError("a boolean is not a token count")
    result = int(float(value))
    if result < 0:
        raise ValueError(f"negative count {value!r}")
    return result
