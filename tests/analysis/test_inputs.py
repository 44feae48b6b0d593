"""Analyze inputs as they reach nowait: compressed or not, decodable or not, values that mean
something or not, large or empty. Each fault is a clear error (file, line or byte offset),
exit 2, and both LiteLLM paths (JSON in Python, CSV in SQL) judge a row alike."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path
from typing import Any

import pytest
import zstandard

from nowait.analyze.detect import detect
from nowait.analyze.engine import connect, load
from nowait.analyze.readers import BadRecords
from nowait.errors import InputError

SAMPLES = Path(__file__).parent / "samples"
LANGFUSE = (SAMPLES / "langfuse.jsonl").read_bytes()
LITELLM: list[dict[str, Any]] = json.loads((SAMPLES / "litellm.json").read_text())


def litellm_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in row.items()}
        )
    return out.getvalue()


def totals(path: Path, fmt: str | None, *, skip: bool = False) -> tuple[int, int, int, int]:
    """(requests, uncached input, output, bad records) as the engine loads the file."""
    con, bad = connect(), BadRecords(skip=skip)
    load(con, [path], fmt=fmt, bad=bad)
    row = con.execute(
        "SELECT sum(request_count), sum(input_uncached), sum(output_tokens) FROM records"
    ).fetchone()
    assert row is not None
    return int(row[0] or 0), int(row[1] or 0), int(row[2] or 0), bad.count


def test_gzip_and_zstd_are_opened_before_detection(tmp_path: Path, cli: Any) -> None:
    plain = tmp_path / "observations.jsonl"
    plain.write_bytes(LANGFUSE)
    packed = {
        "gz": gzip.compress(LANGFUSE),
        "zst": zstandard.ZstdCompressor().compress(LANGFUSE),
        "zst2": zstandard.ZstdCompressor().compress(LANGFUSE[:400])
        + zstandard.ZstdCompressor().compress(LANGFUSE[400:]),  # two frames
    }
    for suffix, data in packed.items():
        path = tmp_path / f"export.{suffix}"  # the name says nothing: the bytes do
        path.write_bytes(data)
        assert detect(path) == "langfuse"
        assert totals(path, None) == totals(plain, None)
    csv_path = tmp_path / "spend.bin"
    csv_path.write_bytes(gzip.compress(litellm_csv(LITELLM).encode()))
    assert detect(csv_path) == "litellm-csv"


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_a_truncated_or_corrupt_archive_is_a_clear_error(
    tmp_path: Path, cli: Any, kind: str
) -> None:
    data = LANGFUSE * 50
    archive = gzip.compress(data) if kind == "gzip" else zstandard.ZstdCompressor().compress(data)
    cut = tmp_path / "cut.bin"
    cut.write_bytes(archive[: len(archive) // 2])
    result = cli("analyze", str(cut))
    assert result.code == 2, result.err  # not 130 "interrupted": EOFError is caught
    assert f"{cut}: its {kind} data ends early: the file is truncated" in result.err
    assert "Traceback" not in result.err
    broken = tmp_path / "broken.bin"
    broken.write_bytes(archive[:30] + bytes(b ^ 0x5A for b in archive[30:60]) + archive[60:])
    result = cli("analyze", str(broken))
    assert result.code == 2 and f"{broken}: its {kind} data" in result.err, result.err


def test_text_that_is_not_utf8_names_line_and_byte_offset(tmp_path: Path, cli: Any) -> None:
    path = tmp_path / "observations.jsonl"
    first = LANGFUSE.splitlines(keepends=True)[0]
    path.write_bytes(first + b'{"id": "\xff"}\n' + first)
    result = cli("analyze", str(path))
    assert result.code == 2
    assert f"{path}:2: not UTF-8: byte 0xff at byte offset {len(first) + 8}" in result.err
    assert "--skip-bad" in result.err
    assert totals(path, None, skip=True)[3] == 1  # skipped and counted: a bad record
    utf16 = tmp_path / "utf16.jsonl"
    utf16.write_bytes(LANGFUSE.decode().encode("utf-16"))
    result = cli("analyze", str(utf16))
    assert result.code == 2 and "UTF-16 text" in result.err and str(utf16) in result.err


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"[" * 5000 + b"]" * 5000, "nested deeper than 100 levels"),
        (b"9" * 4400, "an integer of 4,400 digits"),
        (b"NaN", "got nan (expected a finite number)"),
        (b"Infinity", "got inf (expected a finite number)"),
        (b"1" + b"0" * 30, "an integer of 100 bits (expected a 64-bit integer)"),
        (b"1" + b"0" * 17, "larger than 1,000,000,000,000,000"),
    ],
)
def test_limits_are_clear_errors(tmp_path: Path, cli: Any, raw: bytes, message: str) -> None:
    good = json.loads(LANGFUSE.splitlines()[0])
    good["usage_details"]["output"] = "__X__"
    path = tmp_path / "observations.jsonl"
    path.write_bytes(LANGFUSE + json.dumps(good).encode().replace(b'"__X__"', raw) + b"\n")
    result = cli("analyze", str(path))
    assert result.code == 2 and "Traceback" not in result.err
    assert f"{path}:2: " in result.err and message in result.err, result.err


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("startTime", True, "startTime: True is not a time"),
        ("startTime", -1, "startTime: -1 is not a plausible time"),
        ("startTime", "1970-01-01T00:00:00Z", "not a plausible time"),
        ("startTime", "2150-01-01T00:00:00Z", "not a plausible time"),
        ("prompt_tokens", -5, "negative"),
        ("completion_tokens", 10**17, "larger than"),
        ("spend", "NaN", "not an amount of money"),
        ("spend", -1, "not an amount of money"),
    ],
)
def test_both_litellm_paths_refuse_the_same_rows(
    tmp_path: Path, field: str, value: object, message: str
) -> None:
    rows = [LITELLM[0], {**LITELLM[0], "request_id": "bad", field: value}, LITELLM[0]]
    as_json = tmp_path / "spend.json"
    as_json.write_text(json.dumps(rows))
    as_csv = tmp_path / "spend.csv"
    as_csv.write_text(litellm_csv(rows))
    for path, fmt in ((as_json, "litellm"), (as_csv, "litellm-csv")):
        with pytest.raises(InputError, match=r"spend\.(json|csv):\d+: ") as caught:
            totals(path, fmt)
        assert (message in str(caught.value)) or fmt == "litellm-csv", str(caught.value)
    # Skipped, both paths keep the two good rows and count one bad row.
    assert totals(as_json, "litellm", skip=True) == totals(as_csv, "litellm-csv", skip=True)
    assert totals(as_csv, "litellm-csv", skip=True)[0::3] == (2, 1)


def test_the_csv_path_names_the_line_of_a_row_it_refuses(tmp_path: Path) -> None:
    rows = [LITELLM[0], LITELLM[0], {**LITELLM[0], "prompt_tokens": -5}]
    path = tmp_path / "spend.csv"
    path.write_text(litellm_csv(rows))
    with pytest.raises(InputError, match=r"spend\.csv:4: prompt_tokens: negative count"):
        totals(path, "litellm-csv")


def test_a_prompt_smaller_than_its_cache_tokens_is_read_alike_on_both_paths(
    tmp_path: Path,
) -> None:
    row = {**LITELLM[0], "prompt_tokens": 10}  # the usage object holds more cache tokens
    as_json, as_csv = tmp_path / "spend.json", tmp_path / "spend.csv"
    as_json.write_text(json.dumps([row]))
    as_csv.write_text(litellm_csv([row]))
    assert totals(as_json, "litellm") == totals(as_csv, "litellm-csv")
    assert totals(as_csv, "litellm-csv")[1] == 10


def test_detection_reads_a_whole_first_record_however_long(tmp_path: Path) -> None:
    first = json.loads(LANGFUSE.splitlines()[0])
    first["metadata"] = {"pad": "x" * 3_000_000}  # far past any fixed window
    path = tmp_path / "observations.jsonl"
    path.write_text(json.dumps(first) + "\n")
    assert detect(path) == "langfuse"
    pretty = tmp_path / "usage.json"  # a pretty-printed document is one record
    pretty.write_text(json.dumps(json.loads((SAMPLES / "usage-report.json").read_text()), indent=4))
    assert detect(pretty) == "anthropic-usage"


def test_empty_input_is_never_a_silent_table(tmp_path: Path, cli: Any) -> None:
    for name, text in (("empty.jsonl", ""), ("blank.jsonl", "\n \n"), ("none.json", "[]")):
        path = tmp_path / name
        path.write_text(text)
        result = cli("analyze", str(path))
        assert result.code == 2 and f"{path}: empty: 0 records" in result.err, result.err
    other = tmp_path / "gpt.json"
    other.write_text(json.dumps([{**LITELLM[0], "model": "gpt-5", "custom_llm_provider": "x"}]))
    good = tmp_path / "observations.jsonl"
    good.write_bytes(LANGFUSE)
    result = cli("analyze", str(other), str(good), "--json")
    assert result.code == 0
    assert f"nowait: warning: 0 records in {other}" in result.err
    assert json.loads(result.out)["records"] == 1


def test_a_database_that_is_not_a_nowait_store_is_refused_untouched(
    tmp_path: Path, cli: Any
) -> None:
    import sqlite3
    from contextlib import closing

    other = tmp_path / "other.db"
    with closing(sqlite3.connect(other)) as db:
        db.execute("CREATE TABLE t (a)")
        db.commit()
    before = other.read_bytes()
    result = cli("analyze", str(other))
    assert result.code == 2 and f"{other}: a SQLite database, but not a nowait store" in result.err
    assert other.read_bytes() == before  # nowait's tables were not added to it
    torn = tmp_path / "torn.db"
    torn.write_bytes(before[:100])
    result = cli("analyze", str(torn))
    assert result.code == 2 and f"{torn}: not a readable SQLite database" in result.err
