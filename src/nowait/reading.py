"""Reading the files users hand nowait, with one error contract.

Every reader opens, decodes and parses through these helpers, so a bad file always ends in an
`InputError` naming the flag or file, the line (or byte offset) and what was expected, never in
a Python exception. The limits are documented constants:

- text is UTF-8 (a leading UTF-8 byte-order mark is dropped); UTF-16/32, NUL bytes and invalid
  bytes are refused with their byte offset and line;
- a line of a line-based file is at most `MAX_LINE_BYTES` long;
- JSON and TOML nest at most `MAX_NESTING` levels, integers have at most `MAX_INT_DIGITS`
  digits (Python's own conversion limit), and floats are finite (no NaN, no Infinity, no 1e999).

A shared basic: it knows nothing of what the files mean.
"""

from __future__ import annotations

import codecs
import json
import math
import os
import re
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NoReturn

from nowait.errors import InputError
from nowait.limits import MESSAGES_MAX_BYTES, NESTING_MAX_DEPTH

MAX_NESTING = NESTING_MAX_DEPTH
"""Deepest nesting of arrays and objects (tables) nowait reads in any file: 100 levels, far more
than any request, worksheet, price file or trace holds."""
MAX_INT_DIGITS = sys.get_int_max_str_digits() or 4300
"""Longest integer read, in digits: Python's own string-to-int limit (4,300 by default)."""
MAX_LINE_BYTES = 2 * MESSAGES_MAX_BYTES
"""Longest line of a line-based file (64 MB): a request of the API's largest size, with room
for the JSON escapes around it."""

_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),  # before UTF-16: its BOM starts with UTF-16's
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)
_UTF8 = "UTF-8 text"


@dataclass(frozen=True, slots=True)
class TextLine:
    """One line of a text file: its 1-based number, the byte offset it starts at, its text
    (without the line ending)."""

    number: int
    offset: int
    text: str


# --- paths ---------------------------------------------------------------------------------


def check_input_file(path: Path, field: str | None = None) -> None:
    """`path` names a readable file (not a folder); else `InputError` naming the flag."""
    if not path.exists():
        raise InputError(f"{path}: no such file", field=field, expected="an existing file")
    if path.is_dir():
        raise InputError(f"{path} is a folder", field=field, expected="a file")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path} is not readable", field=field, expected="a readable file")


def _open_binary(path: Path, field: str | None) -> IO[bytes]:
    check_input_file(path, field)
    try:
        return path.open("rb")
    except OSError as exc:
        raise InputError(f"cannot read it: {exc.strerror}", file=path, field=field) from None


# --- decoding ------------------------------------------------------------------------------


def read_text(path: Path, field: str | None = None, *, max_bytes: int | None = None) -> str:
    """The whole file as text: UTF-8, a leading byte-order mark dropped. Anything else raises
    `InputError` naming the file, line and byte offset."""
    with _open_binary(path, field) as handle:
        data = handle.read() if max_bytes is None else handle.read(max_bytes + 1)
    if max_bytes is not None and len(data) > max_bytes:
        raise InputError(f"larger than {max_bytes:,} bytes", file=path, expected="a smaller file")
    return decode_text(data, file=path)


def decode_text(data: bytes, *, file: str | Path, line: int = 1, offset: int = 0) -> str:
    """`data` (a file, or one of its lines starting at `line` and byte `offset`) as text."""
    if offset == 0:
        for bom, name in _BOMS:
            if data.startswith(bom):
                raise InputError(
                    f"{name} text (a {name} byte-order mark at byte offset 0)",
                    file=file, line=line, expected=_UTF8,
                )  # fmt: skip
        stripped = data.removeprefix(codecs.BOM_UTF8)
        offset, data = len(data) - len(stripped), stripped
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        _refuse_bytes(data, exc.start, f"byte 0x{data[exc.start]:02x}", file, line, offset)
    nul = text.find("\0")
    if nul >= 0:
        at = len(text[:nul].encode("utf-8"))
        _refuse_bytes(data, at, "a NUL byte (UTF-16 text?)", file, line, offset)
    return text


def _refuse_bytes(
    data: bytes, at: int, what: str, file: str | Path, line: int, offset: int
) -> NoReturn:
    number = line + data.count(b"\n", 0, at)
    raise InputError(
        f"not UTF-8: {what} at byte offset {offset + at:,}", file=file, line=number, expected=_UTF8
    )


def scan_text_lines(
    path: Path, field: str | None = None, *, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[TextLine | InputError]:
    """Every line of the file, streamed: a `TextLine`, or in its place the `InputError` saying
    why it cannot be read (not UTF-8, too long), so a caller can report every bad line. A file
    that cannot be opened raises."""
    with _open_binary(path, field) as handle:
        offset = 0
        for number in range(1, sys.maxsize):
            raw = handle.readline(max_line_bytes + 1)
            if not raw:
                return
            start, offset = offset, offset + len(raw)
            if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
                offset += _skip_line(handle)
                yield InputError(
                    f"line longer than {max_line_bytes:,} bytes",
                    file=path, line=number, expected="a shorter line",
                )  # fmt: skip
                continue
            try:
                text = decode_text(raw, file=path, line=number, offset=start)
            except InputError as exc:
                yield exc
                continue
            yield TextLine(number, start, text.rstrip("\r\n"))
    return


def iter_text_lines(
    path: Path, field: str | None = None, *, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[TextLine]:
    """Every line of the file, streamed; the first line that cannot be read raises."""
    for entry in scan_text_lines(path, field, max_line_bytes=max_line_bytes):
        if isinstance(entry, InputError):
            raise entry
        yield entry


def _skip_line(handle: IO[bytes]) -> int:
    """Read past the rest of an over-long line without holding it; the bytes skipped."""
    skipped = 0
    while chunk := handle.readline(1 << 20):
        skipped += len(chunk)
        if chunk.endswith(b"\n"):
            break
    return skipped


# --- parsing -------------------------------------------------------------------------------


class _Refused(ValueError):
    """A value the limits refuse, raised from inside a parser's hook."""


def _int(text: str) -> int:
    digits = len(text.lstrip("-+"))
    if digits > MAX_INT_DIGITS:
        raise _Refused(f"an integer of {digits:,} digits (at most {MAX_INT_DIGITS:,})")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"{text[:40]} is not a finite number")
    return value


def _constant(name: str) -> NoReturn:
    raise _Refused(f"{name} is not a finite number")


def _strict_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys all differ: which of two values was meant is unknown."""
    made: dict[str, Any] = {}
    for key, value in pairs:
        if key in made:
            raise _Refused(f"duplicate key {key!r}")
        made[key] = value
    return made


_STRICT_JSON = json.JSONDecoder(
    object_pairs_hook=_strict_object,
    parse_int=_int,
    parse_float=_finite_float,
    parse_constant=_constant,
)


def parse_json(text: str, *, file: str | Path, line: int | None = None) -> Any:
    """`text` as strict JSON within the limits. `line`: the line `text` is in a line-based
    file (errors then name it and a column); None: `text` is the whole file."""
    where = line if line is not None else 1
    if text.count("[") + text.count("{") > MAX_NESTING:  # cheap: most text stays below
        _check_json_depth(text, file, where)
    try:
        value = _STRICT_JSON.decode(text)
    except json.JSONDecodeError as exc:
        at = exc.lineno + where - 1
        raise InputError(
            f"not JSON ({exc.msg} at column {exc.colno})", file=file, line=at, expected="JSON"
        ) from None
    except _Refused as exc:
        raise InputError(f"not strict JSON: {exc}", file=file, line=line) from None
    except RecursionError:  # unreachable after the depth check; kept as the last guard
        raise _too_deep(file, line) from None
    if _SURROGATE_ESCAPE.search(text):  # rare: only then walk the strings
        _check_unicode(value, file, line)
    return value


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _check_unicode(value: Any, file: str | Path, line: int | None) -> None:
    """Refuse a lone surrogate (`"\\ud800"`): text no file or terminal can hold."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise InputError(
                    f"not strict JSON: lone surrogate {item[exc.start]!r} in a string",
                    file=file, line=line, expected="valid Unicode text",
                ) from None  # fmt: skip


def _too_deep(file: str | Path, line: int | None) -> InputError:
    return InputError(
        f"nested deeper than {MAX_NESTING} levels", file=file, line=line, expected="less nesting"
    )


_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]')


def _check_json_depth(text: str, file: str | Path, line: int) -> None:
    """Refuse nesting beyond `MAX_NESTING` before the parser recurses into it."""
    depth = 0
    for token in _JSON_TOKENS.finditer(text):
        char = token.group()
        if char in "[{":
            depth += 1
            if depth > MAX_NESTING:
                raise _too_deep(file, line + text.count("\n", 0, token.start()))
        elif char in "]}":
            depth -= 1


def parse_toml(text: str, *, file: str | Path) -> dict[str, Any]:
    """`text` as TOML within the limits; errors name the file and line."""
    try:
        values = tomllib.loads(text, parse_float=_finite_float)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = re.search(r"\(at line (\d+), column (\d+)\)$", message)
        reason = message[: found.start()].strip() if found else message
        line = int(found.group(1)) if found else None
        column = f" at column {found.group(2)}" if found else ""
        raise InputError(f"not TOML: {reason}{column}", file=file, line=line) from None
    except _Refused as exc:
        raise InputError(f"not TOML nowait reads: {exc}", file=file) from None
    except ValueError as exc:  # int() of an integer beyond Python's digit limit
        too_long = f"an integer of more than {MAX_INT_DIGITS:,} digits"
        why = too_long if "digits" in str(exc) else str(exc)
        raise InputError(f"not TOML nowait reads: {why}", file=file) from None
    except RecursionError:
        raise _too_deep(file, None) from None
    _check_toml_values(values, file)
    return values


def _check_toml_values(values: dict[str, Any], file: str | Path) -> None:
    """Depth and integer size of parsed TOML (tomllib bounds neither)."""
    stack: list[tuple[Any, int, str]] = [(values, 0, "")]
    while stack:
        value, depth, field = stack.pop()
        if depth > MAX_NESTING:
            raise _too_deep(file, None)
        if isinstance(value, dict):
            stack.extend((v, depth + 1, f"{field}.{k}".lstrip(".")) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, depth + 1, f"{field}.{i}") for i, v in enumerate(value))
        elif isinstance(value, int) and not -(2**63) <= value < 2**63:
            raise InputError(
                f"an integer of {value.bit_length()} bits",
                file=file, field=field or None, expected="a 64-bit integer, as TOML allows",
            )  # fmt: skip


def read_json_lines(
    path: Path, field: str | None = None
) -> Iterator[tuple[TextLine, Any] | InputError]:
    """Each non-blank line of a JSON Lines file parsed, or the `InputError` in its place."""
    for entry in scan_text_lines(path, field):
        if isinstance(entry, InputError):
            yield entry
        elif entry.text.strip():
            try:
                yield entry, parse_json(entry.text, file=path, line=entry.number)
            except InputError as exc:
                yield exc


def read_toml(path: Path, field: str | None = None) -> dict[str, Any]:
    """A TOML file, opened, decoded and parsed with the limits."""
    return parse_toml(read_text(path, field), file=path)
