"""The reading layer: every way a file can be unreadable ends in an `InputError` naming the
file, the line or byte offset and what was expected."""

from __future__ import annotations

import codecs
import os
from pathlib import Path

import pytest

from nowait.errors import InputError
from nowait.files import check_existing_dir, check_output_dir
from nowait.reading import (
    MAX_INT_DIGITS,
    MAX_NESTING,
    TextLine,
    check_input_file,
    iter_text_lines,
    parse_json,
    parse_toml,
    read_json_lines,
    read_text,
    read_toml,
    scan_text_lines,
)


def write(tmp_path: Path, data: bytes, name: str = "in.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- paths ---------------------------------------------------------------------------------


def test_input_file_missing_folder_unreadable(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file") as missing:
        check_input_file(tmp_path / "nope", "--prices")
    assert missing.value.field == "--prices"
    with pytest.raises(InputError, match="is a folder"):
        check_input_file(tmp_path, "--prices")
    locked = write(tmp_path, b"x")
    locked.chmod(0)
    try:
        if not os.access(locked, os.R_OK):  # root reads anything
            with pytest.raises(InputError, match="not readable"):
                check_input_file(locked, "--prices")
    finally:
        locked.chmod(0o600)
    check_input_file(locked, "--prices")


def test_output_dir(tmp_path: Path) -> None:
    check_output_dir(tmp_path, "--home")
    check_output_dir(tmp_path / "new" / "deeper", "--home")  # created later
    afile = write(tmp_path, b"")
    with pytest.raises(InputError, match="is a file") as error:
        check_output_dir(afile, "--home")
    assert error.value.field == "--home"
    with pytest.raises(InputError, match="is a file"):
        check_output_dir(afile / "below", "--home")


def test_existing_dir_is_never_created(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(InputError, match=f"no nowait home at {missing}"):
        check_existing_dir(missing, "--home", "nowait home")
    assert not missing.exists()
    with pytest.raises(InputError, match="is a file"):
        check_existing_dir(write(tmp_path, b""), "--home", "nowait home")
    check_existing_dir(tmp_path, "--home", "nowait home")


# --- decoding ------------------------------------------------------------------------------


def test_utf8_with_and_without_bom(tmp_path: Path) -> None:
    assert read_text(write(tmp_path, "é\n".encode())) == "é\n"
    assert read_text(write(tmp_path, codecs.BOM_UTF8 + "é\n".encode())) == "é\n"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
def test_utf16_and_utf32_are_named(tmp_path: Path, encoding: str) -> None:
    path = write(tmp_path, "a = 1\n".encode(encoding))
    with pytest.raises(InputError, match="at byte") as error:
        read_text(path)
    assert error.value.file == str(path)
    assert error.value.expected == "UTF-8 text"
    assert "UTF-" in str(error.value) or "NUL" in str(error.value)


def test_invalid_byte_names_offset_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, b"ok\nfine\nbad \xff here\n")
    with pytest.raises(InputError) as error:
        read_text(path)
    assert error.value.line == 3
    assert "byte 0xff at byte offset 12" in str(error.value)
    assert str(error.value).startswith(f"{path}:3: ")


def test_size_limit(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="larger than 4 bytes"):
        read_text(write(tmp_path, b"12345"), max_bytes=4)


def test_lines_stream_with_numbers_and_offsets(tmp_path: Path) -> None:
    path = write(tmp_path, codecs.BOM_UTF8 + b"one\r\n\ntwo\nthree")
    assert list(iter_text_lines(path)) == [
        TextLine(1, 0, "one"),
        TextLine(2, 8, ""),
        TextLine(3, 9, "two"),
        TextLine(4, 13, "three"),
    ]


def test_scan_reports_each_bad_line_and_goes_on(tmp_path: Path) -> None:
    path = write(tmp_path, b"a\n" + b"x" * 50 + b"\n\xc3(\nb\n")
    entries = list(scan_text_lines(path, max_line_bytes=10))
    assert isinstance(entries[0], TextLine)
    assert isinstance(entries[1], InputError) and entries[1].line == 2
    assert "longer than 10 bytes" in str(entries[1])
    assert isinstance(entries[2], InputError) and entries[2].line == 3
    assert "at byte offset 53" in str(entries[2])
    assert entries[3] == TextLine(4, 56, "b")
    with pytest.raises(InputError, match="longer than"):
        list(iter_text_lines(path, max_line_bytes=10))


def test_utf16_lines_name_the_first_line(tmp_path: Path) -> None:
    path = write(tmp_path, '{"a": 1}\n'.encode("utf-16"))
    with pytest.raises(InputError, match="UTF-16") as error:
        list(iter_text_lines(path, "--requests"))
    assert error.value.line == 1


# --- parsing -------------------------------------------------------------------------------


def test_json_ok() -> None:
    assert parse_json('{"a": [1, 2.5, null, true]}', file="f") == {"a": [1, 2.5, None, True]}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"a": NaN}', "NaN is not a finite number"),
        ('{"a": -Infinity}', "-Infinity is not a finite number"),
        ('{"a": 1e999}', "1e999 is not a finite number"),
        ('{"a": 1, "a": 2}', "duplicate key 'a'"),
        ('{"a": ' + "9" * (MAX_INT_DIGITS + 1) + "}", f"{MAX_INT_DIGITS + 1:,} digits"),
        ('{"a": "\\ud800"}', "lone surrogate"),
    ],
)
def test_json_refused_values(text: str, reason: str) -> None:
    with pytest.raises(InputError, match=reason) as error:
        parse_json(text, file="in.jsonl", line=7)
    assert str(error.value).startswith("in.jsonl:7: ")


def test_json_syntax_names_line_and_column() -> None:
    with pytest.raises(InputError, match="at column 6") as error:
        parse_json('{"a":}', file="in.jsonl", line=3)
    assert error.value.line == 3
    with pytest.raises(InputError) as whole:
        parse_json('{\n"a":\n}', file="in.json")
    assert whole.value.line == 3


@pytest.mark.parametrize("depth", [MAX_NESTING + 1, 100_000])
def test_json_depth(depth: int) -> None:
    with pytest.raises(InputError, match=f"deeper than {MAX_NESTING}"):
        parse_json("[" * depth + "]" * depth, file="f", line=1)
    with pytest.raises(InputError, match=f"deeper than {MAX_NESTING}"):
        parse_json('{"a":' * depth + "1" + "}" * depth, file="f", line=1)


def test_json_depth_at_the_limit_and_brackets_in_strings() -> None:
    text = "[" * MAX_NESTING + "]" * MAX_NESTING
    assert parse_json(text, file="f") is not None
    assert parse_json(f'["{"[" * 5000}"]', file="f") == ["[" * 5000]


def test_toml_ok_and_errors_name_the_line() -> None:
    assert parse_toml('a = 1\n[b]\nc = "x"\n', file="p.toml") == {"a": 1, "b": {"c": "x"}}
    with pytest.raises(InputError, match="column") as error:
        parse_toml("a = 1\nb = \n", file="p.toml")
    assert error.value.line == 2
    assert str(error.value).startswith("p.toml:2: not TOML")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("a = nan", "nan is not a finite number"),
        ("a = -inf", "-inf is not a finite number"),
        ("a = 1e999", "1e999 is not a finite number"),
        ("a = " + "9" * (MAX_INT_DIGITS + 1), "more than"),
        ("a = " + "9" * 30, "64-bit"),
        ("a = " + "[" * 100_000 + "]" * 100_000, "deeper than"),
        ("a = " + "[" * (MAX_NESTING + 1) + "]" * (MAX_NESTING + 1), "deeper than"),
        ("a = " + "{b = " * 5000 + "1" + "}" * 5000, "deeper than"),
    ],
)
def test_toml_refused_values(text: str, reason: str) -> None:
    with pytest.raises(InputError, match=reason) as error:
        parse_toml(text, file="p.toml")
    assert error.value.file == "p.toml"


def test_file_helpers(tmp_path: Path) -> None:
    jsonl = write(tmp_path, b'{"a": 1}\n\n[\n{"b": NaN}\n', "in.jsonl")
    entries = list(read_json_lines(jsonl))
    assert entries[0] == (TextLine(1, 0, '{"a": 1}'), {"a": 1})
    assert [e.line for e in entries[1:] if isinstance(e, InputError)] == [3, 4]
    assert read_toml(write(tmp_path, b"x = 2\n", "c.toml")) == {"x": 2}
    with pytest.raises(InputError, match="no such file"):
        read_toml(tmp_path / "none.toml", "--config")
