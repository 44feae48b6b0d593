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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NoReturn

from nowait.errors import InputError
from nowait.files import path_kind
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
class ByteLine:
    """One line of a byte stream: its 1-based number, the byte offset it starts at, its bytes
    (with the line ending)."""

    number: int
    offset: int
    data: bytes


@dataclass(frozen=True, slots=True)
class TextLine:
    """One line of a text file: its 1-based number, the byte offset it starts at, its text
    (without the line ending)."""

    number: int
    offset: int
    text: str


# --- paths ---------------------------------------------------------------------------------


def check_input_file(path: Path, field: str | None = None, expected: str = "a file") -> None:
    """`path` names a readable file (not a folder); else `InputError` naming it and the flag
    (`field`; None for an argument)."""
    kind = path_kind(path, field)
    if kind == "missing":
        raise InputError("no such file", file=path, field=field, expected=expected)
    if kind == "folder":
        raise InputError("is a folder", file=path, field=field, expected=expected)
    if not os.access(path, os.R_OK):
        raise InputError("not readable", file=path, field=field, expected=expected)


def _open_binary(path: Path, field: str | None, expected: str = "a file") -> IO[bytes]:
    check_input_file(path, field, expected)
    try:
        return path.open("rb")
    except OSError as exc:
        raise InputError(f"cannot read it: {exc.strerror}", file=path, field=field) from None


# --- decoding ------------------------------------------------------------------------------


def read_text(
    path: Path, field: str | None = None, *, max_bytes: int | None = None, expected: str = "a file"
) -> str:
    """The whole file as text: UTF-8, a leading byte-order mark dropped. Anything else raises
    `InputError` naming the file, line and byte offset (`expected`: what the file should be)."""
    with _open_binary(path, field, expected) as handle:
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
        for line in scan_byte_lines(handle, path, max_line_bytes=max_line_bytes):
            if isinstance(line, InputError):
                yield line
                continue
            try:
                text = decode_text(line.data, file=path, line=line.number, offset=line.offset)
            except InputError as exc:
                yield exc
                continue
            yield TextLine(line.number, line.offset, text.rstrip("\r\n"))


def scan_byte_lines(
    stream: IO[bytes], path: Path, *, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[ByteLine | InputError]:
    """Every line of an open byte stream (a file, or a decompressed archive of `path`): a
    `ByteLine`, or in place of a line over the limit the `InputError` naming it (the line is
    skipped without being held in memory)."""
    offset = 0
    for number in range(1, sys.maxsize):
        data = stream.readline(max_line_bytes + 1)
        if not data:
            return
        start, offset = offset, offset + len(data)
        if len(data) > max_line_bytes and not data.endswith(b"\n"):
            offset += _skip_line(stream)
            yield InputError(
                f"line longer than {max_line_bytes:,} bytes (at byte offset {start:,})",
                file=path, line=number, expected="a shorter line",
            )  # fmt: skip
            continue
        yield ByteLine(number, start, data)


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


def _strict_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys all differ: which of two values was meant is unknown."""
    made: dict[str, Any] = {}
    for key, value in pairs:
        if key in made:
            raise _Refused(f"duplicate key {key!r}")
        made[key] = value
    return made


# NaN, Infinity and 1e999 are parsed, then refused by `_check_values`, which names the field.
_STRICT_JSON = json.JSONDecoder(object_pairs_hook=_strict_object, parse_int=_int)


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
    problem = _first_bad_value(value, [], 0)
    if problem is not None:
        field, reason, expected = problem
        raise InputError(reason, file=file, line=line, field=field, expected=expected)
    return value


INT_BITS = 64
"""Integers beyond 64 bits are refused everywhere: no count, price or time nowait reads comes
near, and most JSON parsers (the API's too) do not keep them exact."""
_INT_LIMIT = 2 ** (INT_BITS - 1)


def _first_bad_value(value: Any, path: list[str], depth: int) -> tuple[str, str, str] | None:
    """(field, reason, expected) of the first value outside the limits: nesting, a 64-bit
    integer, a finite float, valid Unicode text (no lone surrogate); None if all are fine."""
    if depth > MAX_NESTING:
        return ".".join(path), f"nested deeper than {MAX_NESTING} levels", "less nesting"
    if isinstance(value, dict):
        items: Iterable[tuple[Any, Any]] = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return _bad_scalar(value, path)
    for key, item in items:
        path.append(str(key))
        problem = _bad_scalar(key, path) if isinstance(key, str) else None
        problem = problem or _first_bad_value(item, path, depth + 1)
        path.pop()
        if problem is not None:
            return problem
    return None


def _bad_scalar(value: Any, path: list[str]) -> tuple[str, str, str] | None:
    field = ".".join(path)
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and not -_INT_LIMIT <= value < _INT_LIMIT:
        return field, f"an integer of {value.bit_length()} bits", f"a {INT_BITS}-bit integer"
    if isinstance(value, float) and not math.isfinite(value):
        return field, f"got {value!r}", "a finite number"
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            surrogate = value[exc.start]
            return field, f"invalid Unicode: lone surrogate {surrogate!r}", "valid Unicode text"
    return None


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
    """`text` as TOML within the limits; errors name the file and line (where the key is
    written plainly enough to be found: `toml_line_of`)."""
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = re.search(r"\(at line (\d+), column (\d+)\)$", message)
        reason = message[: found.start()].strip() if found else message
        line = int(found.group(1)) if found else None
        column = f" at column {found.group(2)}" if found else ""
        if reason.endswith("(at end of document)"):  # found open at the end: name that line
            reason = reason.removesuffix("(at end of document)") + "at the end of the file"
            line = max(1, text.count("\n") + (not text.endswith("\n")))
        raise InputError(f"not TOML: {reason}{column}", file=file, line=line) from None
    except ValueError as exc:  # int() of an integer beyond Python's digit limit
        if "digits" not in str(exc):
            raise InputError(f"not TOML: {exc}", file=file) from None
        line = _first_line_matching(text, rf"\d{{{MAX_INT_DIGITS + 1}}}")
        too_long = f"an integer of more than {MAX_INT_DIGITS:,} digits"
        raise InputError(too_long, file=file, line=line, expected="a 64-bit integer") from None
    except RecursionError:
        raise _too_deep(file, _deepest_line(text)) from None
    problem = _first_bad_value(values, [], 0)
    if problem is not None:
        field, reason, expected = problem
        line = toml_line_of(text, field)
        raise InputError(reason, file=file, line=line, field=field or None, expected=expected)
    return values


def _first_line_matching(text: str, pattern: str) -> int | None:
    found = re.search(pattern, text)
    return text.count("\n", 0, found.start()) + 1 if found else None


def _deepest_line(text: str) -> int | None:
    """The first line opening more arrays and tables than `MAX_NESTING` (where a TOML value
    nests too deeply: it must start on one line)."""
    for number, line in enumerate(text.splitlines(), start=1):
        if line.count("[") + line.count("{") > MAX_NESTING:
            return number
    return None


def toml_line_of(text: str, key: str) -> int | None:
    """The line of dotted `key` (list items by index: `workload.1.model`) in a TOML text, when
    it is written plainly: `[group]` or `[[group]]` then `name =`, `group.name =`, or the
    `[key]` header itself. A key not found so points at its nearest parent that is; None when
    none is. Only to point at the line in an error."""
    parts = key.split(".")
    while parts:
        found = _toml_line(text.splitlines(), parts)
        if found is not None:
            return found
        parts = parts[:-1]
    return None


_HEADER = re.compile(r"\s*(\[\[?)\s*([\w.\"' -]+?)\s*\]\]?")


def _toml_line(lines: list[str], parts: list[str]) -> int | None:
    *groups, name = parts
    want_section, section = ".".join(groups), ""
    arrays: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        header = _HEADER.match(line)
        if header:
            section = re.sub(r"\s*\.\s*", ".", header.group(2)).replace('"', "").replace("'", "")
            if header.group(1) == "[[":
                arrays[section] = arrays.get(section, -1) + 1
                section = f"{section}.{arrays[section]}"
            else:  # a table inside the latest item of an array of tables
                array = max((a for a in arrays if section.startswith(a + ".")), default=None)
                if array is not None:
                    section = f"{array}.{arrays[array]}{section[len(array) :]}"
            if section == ".".join(parts):
                return number
            continue
        if section == want_section and re.match(rf"\s*[\"']?{re.escape(name)}[\"']?\s*=", line):
            return number
        dotted = re.escape(".".join(parts))
        if groups and not section and re.match(rf"\s*{dotted}\s*=", line):
            return number
    return None


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
    return parse_toml(read_text(path, field, expected="a TOML file"), file=path)
