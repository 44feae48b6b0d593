"""Commands that make no API call start without the SDK, DuckDB or the emulator's server, and
the help reads as people expect (`-h`, `--version`, flags shown as flags)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("anthropic", "duckdb", "uvicorn", "starlette", "fastapi")
WORKSHEET = Path(__file__).resolve().parents[2] / "src/nowait/data/example-worksheet.toml"

# Runs the CLI in a fresh interpreter, then reports which heavy libraries it loaded.
PROBE = """
import json, sys
from nowait.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
heavy = [name for name in {heavy!r} if name in sys.modules]
print(json.dumps({{"code": code, "heavy": heavy}}), file=sys.stderr)
"""


def loaded(*args: str, home: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *args],
        capture_output=True, text=True, timeout=60, check=False,
        env={"NOWAIT_HOME": str(home), "PATH": ""},
    )  # fmt: skip
    result: dict[str, object] = json.loads(done.stderr.strip().splitlines()[-1])
    return result


def test_importing_the_cli_loads_no_heavy_library() -> None:
    code = f"import sys, nowait.cli; print([m for m in {HEAVY!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "args",
    [("--help",), ("-h",), ("--version",), ("prices",), ("config",), ("config", "--json"),
     ("worksheet", str(WORKSHEET)), ("run", "--help"), ("analyze", "--help"),
     ("emulator", "--help"), ("simulate", "--help"), ("status", "-h")],
    ids=" ".join,
)  # fmt: skip
def test_commands_without_api_calls_load_no_heavy_library(
    args: tuple[str, ...], tmp_path: Path
) -> None:
    assert loaded(*args, home=tmp_path) == {"code": 0, "heavy": []}


def test_version_and_short_help(cli: object) -> None:
    from nowait import __version__

    version = cli("--version")  # type: ignore[operator]
    assert version.code == 0 and version.out.strip() == f"nowait {__version__}"
    short = cli("-h")  # type: ignore[operator]
    assert short.code == 0 and "Commands:" in short.out and "worksheet" in short.out


def test_boolean_flags_show_as_flags(cli: object) -> None:
    for command, flag in (("status", "--json"), ("run", "--skip-bad"), ("prices", "--json")):
        text = cli(command, "--help").out  # type: ignore[operator]
        line = next(x for x in text.splitlines() if x.strip().startswith(flag))
        assert "<bool>" not in line, line
        assert "<bool>" not in text and "-h, --help" in text
