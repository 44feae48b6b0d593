"""Readers: one per log format, each yielding `Record`s and reporting bad input by file and
line. `detect` picks the format from a file's first record; `--format` overrides it.

`open_input` is the one place an analyze input is opened: gzip and zstd are decompressed
(recognised by their magic bytes, whatever the name), and a corrupt or truncated archive is an
`InputError` naming the file. Decoding and parsing go through `nowait.reading`: UTF-8 only,
strict JSON within its limits, errors with line and byte offset (of the decompressed text).
A record that cannot be read is a bad record: an error, or skipped and counted with
`--skip-bad`. A whole JSON document that cannot be read is an error either way.
"""

from __future__ import annotations

import gzip
import io
import math
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal, cast

import zstandard

from nowait.analyze.records import Record
from nowait.errors import InputError
from nowait.reading import (
    ByteLine,
    check_input_file,
    decode_text,
    parse_json,
    scan_byte_lines,
)


@dataclass
class BadRecords:
    """Malformed input seen while reading: counted, and the first few kept for the report."""

    count: int = 0
    examples: list[str] = field(default_factory=list)
    skip: bool = False
    advise: bool = True  # say that --skip-bad would skip the record (not for detection)

    def add(self, path: Path, line: int | None, message: str, expected: str | None = None) -> None:
        self.count += 1
        error = InputError(message, file=path, line=line, expected=expected)
        if len(self.examples) < 20:
            self.examples.append(str(error))
        if not self.skip:
            advice = "; --skip-bad skips bad records" if self.advise else ""
            raise InputError(
                f"{error.reason}{f' (expected {expected})' if expected else ''}{advice}",
                file=path,
                line=line,
            )

    def add_error(self, path: Path, error: InputError) -> None:
        """A record that `nowait.reading` could not decode or parse."""
        self.add(path, error.line, error.reason, error.expected)


Reader = Callable[[Path, BadRecords], Iterator[Record]]
RECORD_ERRORS = (ValueError, TypeError, KeyError, AttributeError, ArithmeticError)
"""What turning a malformed record into a `Record` raises: a bad record, not a crash."""

# ---- opening -------------------------------------------------------------------------------

Compression = Literal["none", "gzip", "zstd"]
MAGIC: dict[bytes, Compression] = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd"}
BUFFER = 1 << 20


def compression_of(path: Path) -> Compression:
    """How the file is compressed, from its first bytes; the file is checked readable."""
    check_input_file(path)
    try:
        with path.open("rb") as probe:
            head = probe.read(4)
    except OSError as exc:
        raise InputError(f"cannot read it: {exc.strerror}", file=path) from None
    return next((kind for magic, kind in MAGIC.items() if head.startswith(magic)), "none")


def open_input(path: Path) -> IO[bytes]:
    """The file's bytes, decompressed when it is gzip or zstd, buffered."""
    kind = compression_of(path)
    try:
        raw = path.open("rb", buffering=BUFFER)
    except OSError as exc:
        raise InputError(f"cannot read it: {exc.strerror}", file=path) from None
    if kind == "none":
        return raw
    inner: IO[bytes]
    if kind == "gzip":
        inner = cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))
    else:
        inner = cast(IO[bytes], _Zstd(raw))
    return io.BufferedReader(_Decompressed(inner, raw, path, kind), buffer_size=BUFFER)


def stored_tell(stream: IO[bytes]) -> Callable[[], int]:
    """How far into the stored file a stream of `open_input` has read (for an archive, its
    compressed bytes): progress against the file's size."""
    inner = getattr(stream, "raw", None)
    return inner.stored_tell if isinstance(inner, _Decompressed) else stream.tell


class _Decompressed(io.RawIOBase):
    """A decompressing stream whose every failure is an `InputError` naming the file: a
    truncated gzip raises `EOFError`, which the CLI framework would take for Ctrl-D."""

    def __init__(self, inner: IO[bytes], raw: IO[bytes], path: Path, kind: str) -> None:
        self._inner, self._raw, self._path, self._kind = inner, raw, path, kind

    def stored_tell(self) -> int:
        return self._raw.tell()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            return int(self._inner.readinto(buffer))  # type: ignore[attr-defined]
        except EOFError:
            raise self._broken("ends early: the file is truncated") from None
        except (OSError, zlib.error, zstandard.ZstdError) as exc:
            raise self._broken(f"is corrupt ({exc})") from None

    def _broken(self, what: str) -> InputError:
        return InputError(
            f"its {self._kind} data {what}",
            file=self._path,
            expected=f"a complete {self._kind} file",
        )

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._raw.close()
            super().close()


class _Zstd(io.RawIOBase):
    """zstd frames one after another; unlike `zstandard`'s stream reader, a file that ends
    inside a frame raises `EOFError` (as gzip does) instead of ending quietly."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._frame = zstandard.ZstdDecompressor().decompressobj()
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = self._frame.unused_data or self._raw.read(BUFFER)
            if self._frame.eof:
                if not chunk:
                    return 0
                self._frame = zstandard.ZstdDecompressor().decompressobj()
            elif not chunk:
                raise EOFError("a zstd frame ends early")
            self._pending = memoryview(self._frame.decompress(chunk))
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


# ---- lines and JSON ------------------------------------------------------------------------


def text_lines(path: Path, bad: BadRecords) -> Iterator[tuple[int, str]]:
    """(line number, text with its line ending) of every line that decodes; a line that does
    not is a bad record."""
    with open_input(path) as stream:
        for entry in scan_byte_lines(stream, path):
            if isinstance(entry, InputError):
                bad.add_error(path, entry)
                continue
            try:
                yield entry.number, _decode(entry, path)
            except InputError as exc:
                bad.add_error(path, exc)


def _decode(line: ByteLine, path: Path) -> str:
    return decode_text(line.data, file=path, line=line.number, offset=line.offset)


def json_objects(path: Path, bad: BadRecords) -> Iterator[tuple[int, Any]]:
    """(line, value) from a JSON Lines file, or from a JSON document holding an array (each
    element; its line is the document's first) or one object."""
    with open_input(path) as stream:
        lines = scan_byte_lines(stream, path)
        for entry in lines:
            if isinstance(entry, InputError):
                bad.add_error(path, entry)
                continue
            if not entry.data.strip(b" \t\r\n\xef\xbb\xbf"):
                continue
            document, value = _first_line(entry, path)
            if document:
                yield from _document(entry, stream, path, bad)
                return
            if isinstance(value, InputError):
                bad.add_error(path, value)
            else:
                yield entry.number, value
            break
        for entry in lines:
            if isinstance(entry, InputError):
                bad.add_error(path, entry)
            elif entry.data.strip():
                yield from _json_line(entry, path, bad)


def _json_line(line: ByteLine, path: Path, bad: BadRecords) -> Iterator[tuple[int, Any]]:
    try:
        yield line.number, parse_json(_decode(line, path), file=path, line=line.number)
    except InputError as exc:
        bad.add_error(path, exc)


def _first_line(first: ByteLine, path: Path) -> tuple[bool, Any]:
    """Whether the first non-blank line opens a JSON document (an array, or an object spread
    over several lines) rather than being a line of JSON Lines; if it is one, its value (or
    the `InputError` saying why it has none), parsed once however long the line."""
    text = first.data.lstrip(b" \t\r\n\xef\xbb\xbf")
    if text.startswith(b"["):
        return True, None
    try:
        return False, parse_json(_decode(first, path), file=path, line=first.number)
    except InputError as exc:  # a whole line that is a broken record is JSON Lines still
        opens = text.startswith(b"{") and not text.rstrip().endswith(b"}")
        return opens, exc


def _document(
    first: ByteLine, stream: IO[bytes], path: Path, bad: BadRecords
) -> Iterator[tuple[int, Any]]:
    data = first.data + stream.read()
    try:
        text = decode_text(data, file=path, line=first.number, offset=first.offset)
        document = parse_json(text, file=path, line=first.number)
    except InputError as exc:
        bad.add_error(path, exc)
        return
    items = document if isinstance(document, list) else [document]
    for item in items:
        yield first.number, item


# ---- values by meaning ---------------------------------------------------------------------

MAX_COUNT = 10**15
"""The largest token or request count a record may hold (a million billion: far beyond any
real call or day, and sums of millions of them still fit the engine's integers)."""
EARLIEST = datetime(2020, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
"""Timestamps outside [EARLIEST, LATEST) are not when a Claude call happened: a misread."""


def number(value: Any, field: str | None = None) -> int:
    """A count: OTLP sends 64-bit ints as strings; others send numbers, floats or nothing."""
    try:
        return _count(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{field}: {exc}" if field else str(exc)) from None


def _count(value: Any) -> int:
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        raise ValueError("a boolean is not a token count")
    if isinstance(value, str) and len(value) > 24:
        raise ValueError(f"{value[:24]}… is not a count")
    if isinstance(value, int):
        result = value
    elif isinstance(value, float | str):
        as_float = float(value)
        if not math.isfinite(as_float):
            raise ValueError(f"{value!r} is not a count")
        result = int(as_float)
    else:
        raise ValueError(f"{value!r} is not a count")
    if result < 0:
        raise ValueError(f"negative count {value!r}")
    if result > MAX_COUNT:
        raise ValueError(f"count {value!r} is larger than {MAX_COUNT:,}")
    return result


def money(value: Any, field: str | None = None) -> float | None:
    """A reported cost in dollars: finite and not negative; None when absent."""
    if value is None or value == "":
        return None
    amount = float(value) if isinstance(value, int | float | str) else math.nan
    if isinstance(value, bool) or not math.isfinite(amount) or amount < 0:
        where = f"{field}: " if field else ""
        raise ValueError(f"{where}{value!r} is not an amount of money (finite, not negative)")
    return amount


def seconds(value: Any) -> float:
    """A duration in seconds: a finite number, not negative."""
    result = float(value) if isinstance(value, int | float | str) else math.nan
    if isinstance(value, bool) or not math.isfinite(result) or result < 0:
        raise ValueError(f"{value!r} is not a duration (finite, not negative)")
    return result


def plausible(moment: datetime, value: Any) -> datetime:
    """`moment` when it lies between 2020 and 2100; a misread value otherwise."""
    if not EARLIEST <= moment < LATEST:
        raise ValueError(f"{value!r} is not a plausible time (expected 2020 to 2100)")
    return moment


def epoch_seconds(value: int | float) -> datetime:
    """A time from epoch seconds, checked plausible before it is converted."""
    if not math.isfinite(value) or not EARLIEST.timestamp() <= value < LATEST.timestamp():
        raise ValueError(f"{value!r} is not a plausible time (expected 2020 to 2100)")
    return datetime.fromtimestamp(float(value), tz=UTC)
