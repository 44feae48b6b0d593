"""Fuzz: every path flag is checked before any work starts. A folder where a file goes, a
file where a folder goes, a path under a file, a missing folder, a name too long for the
system: exit 2 naming the flag and the path, no traceback, nothing created, no store touched.

The four checks every flag goes through get 1,000 generated paths each; each flag then gets a
sample through `nowait.cli.main`."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from fuzzkit import FUZZ, files_in, refused, run_cli
from hypothesis import given, settings
from hypothesis import strategies as st

from nowait.files import check_existing_dir, check_output_dir, check_output_file
from nowait.reading import check_input_file
from router_helpers import ask

PATH_FUZZ = settings(FUZZ, max_examples=15)
"""Generated paths per flag through the CLI (the checks themselves get 1,000 each)."""
names = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="/\0"), min_size=1, max_size=24
).filter(lambda n: n not in (".", ".."))


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sandbox: `afile` (a file), `adir` (an empty folder), `trace.jsonl` and
    `requests.jsonl` (good inputs for the flags that need one)."""
    made = tmp_path_factory.mktemp("paths-fuzz")
    (made / "afile").write_text("x")
    (made / "adir").mkdir()
    row = {"t": 1.0, "model": "claude-haiku-5-5", "input_tokens": 9, "output_tokens": 9}
    (made / "trace.jsonl").write_text(json.dumps(row) + "\n")
    (made / "requests.jsonl").write_text(json.dumps({"key": "a", "params": ask(0)}) + "\n")
    return made


def missing(base: Path) -> st.SearchStrategy[Path]:
    return st.one_of(names.map(lambda n: base / n), names.map(lambda n: base / "gone" / n))


def folder(base: Path) -> st.SearchStrategy[Path]:
    return st.one_of(st.just(base / "adir"), st.just(base), st.just(base / "adir" / "."))


def under_a_file(base: Path) -> st.SearchStrategy[Path]:
    return names.map(lambda n: base / "afile" / n)


def too_long(base: Path) -> st.SearchStrategy[Path]:
    return st.integers(256, 1200).map(lambda n: base / ("x" * n))


def a_file(base: Path) -> st.SearchStrategy[Path]:
    return st.just(base / "afile")


BAD_FOR = {  # what each kind of flag must refuse
    "input file": lambda b: st.one_of(missing(b), folder(b), under_a_file(b), too_long(b)),
    "output file": lambda b: st.one_of(
        folder(b), under_a_file(b), too_long(b), names.map(lambda n: b / "gone" / n)
    ),
    "output folder": lambda b: st.one_of(a_file(b), under_a_file(b), too_long(b)),
    "existing folder": lambda b: st.one_of(missing(b), a_file(b), under_a_file(b), too_long(b)),
}
CHECKS: dict[str, Callable[[Path, str], None]] = {
    "input file": check_input_file,
    "output file": check_output_file,
    "output folder": check_output_dir,
    "existing folder": lambda path, field: check_existing_dir(path, field, "nowait home"),
}


def names_the_path(message: str, path: Path, base: Path) -> bool:
    """The message names `path` or the part of it that is wrong (a file on its way)."""
    return any(str(p) in message for p in [path, *path.parents] if len(p.parts) >= len(base.parts))


@pytest.mark.parametrize("kind", sorted(CHECKS))
def test_every_check_refuses_every_bad_path(kind: str, base: Path) -> None:
    before = files_in(base)

    @FUZZ
    @given(path=BAD_FOR[kind](base))
    def check(path: Path) -> None:
        error = refused(lambda: CHECKS[kind](path, "--flag"))
        assert error.field == "--flag" and names_the_path(str(error), path, base), str(error)

    check()
    assert files_in(base) == before


def flag_runs(base: Path) -> dict[str, tuple[str, Callable[[Path], list[str]]]]:
    """Each path flag: the kind of path it takes, and a command line that gives it `path`."""
    trace, requests = str(base / "trace.jsonl"), str(base / "requests.jsonl")
    out = str(base / "out.jsonl")
    return {
        "--prices": ("input file", lambda p: ["prices", "--prices", str(p)]),
        "--config": ("input file", lambda p: ["config", "--config", str(p)]),
        "worksheet FILE": ("input file", lambda p: ["worksheet", str(p)]),
        "simulate TRACE": ("input file", lambda p: ["simulate", str(p)]),
        "run REQUESTS": ("input file", lambda p: ["run", str(p), "--out", out]),
        "simulate --generate": ("output file", lambda p: ["simulate", str(p), "--generate", "10"]),
        "simulate --html": ("output file", lambda p: ["simulate", trace, "--html", str(p)]),
        "worksheet --template": ("output file", lambda p: ["worksheet", "--template", str(p)]),
        "run --out": ("output file", lambda p: ["run", requests, "--out", str(p)]),
        "demo --out": ("output folder", lambda p: ["demo", "--out", str(p)]),
        "run --home": (
            "output folder",
            lambda p: ["run", requests, "--out", out, "--home", str(p)],
        ),
        "status --home": ("existing folder", lambda p: ["status", "--home", str(p)]),
        "results --home": ("existing folder", lambda p: ["results", "--home", str(p)]),
    }


FLAGS = sorted(flag_runs(Path("/")))


@pytest.mark.parametrize("flag", FLAGS)
def test_every_path_flag_is_checked_before_any_work(
    flag: str, base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    kind, argv = flag_runs(base)[flag]
    home = Path(os.environ["NOWAIT_HOME"])
    before = files_in(base) | files_in(home)

    @PATH_FUZZ
    @given(path=BAD_FOR[kind](base))
    def check(path: Path) -> None:
        result = run_cli(*argv(path))
        assert result.code == 2, (result.code, result.err)
        assert "Traceback" not in result.err and result.err.startswith("nowait: error: ")
        assert names_the_path(result.err, path, base), result.err
        assert files_in(base) | files_in(home) == before

    check()


def test_nowait_prices_variable_naming_a_folder(base: Path) -> None:
    result = run_cli("prices", env={"NOWAIT_PRICES": str(base / "adir")})
    assert result.code == 2 and "NOWAIT_PRICES" in result.err and "is a folder" in result.err


def test_a_folder_without_a_store_is_not_a_home(base: Path) -> None:
    """`status` and `results` only read: an empty folder is refused, and stays empty."""
    for command in ("status", "results"):
        result = run_cli(command, "--home", str(base / "adir"))
        assert result.code == 2 and f"no nowait store in {base / 'adir'}" in result.err
    assert list((base / "adir").iterdir()) == []
