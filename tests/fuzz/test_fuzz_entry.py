"""The real entry point, in a process of its own: the installed `nowait` script turns bad input
into one line and exit 2, and Ctrl-C at any moment (even while the CLI is still importing)
into one line and exit 130, never a traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = shutil.which("nowait", path=str(Path(sys.executable).parent))
CASES = [  # bytes of a file, the command reading it (FILE stands for its path), the line named
    (b'{"t": 1, "model": "m", "input_tokens": 1, "output_tokens": 1, "deadline": NaN}\n',
     ["simulate", "FILE"], 1),
    (b"workload = [1, 2]\n", ["worksheet", "FILE"], 1),
    ('as_of = 2026-11-24\n[models.x]\nconfirmed = "no"\n'.encode("utf-16"),
     ["prices", "--prices", "FILE"], 1),
    (b"[guard]\nmargin = " + b"9" * 5000 + b"\n", ["config", "--config", "FILE"], 2),
]  # fmt: skip


def nowait(*argv: str, home: Path) -> subprocess.CompletedProcess[str]:
    assert SCRIPT, "the nowait script is installed with the package"
    env = {**os.environ, "NOWAIT_HOME": str(home)}
    return subprocess.run(
        [SCRIPT, *argv], check=False, capture_output=True, text=True, env=env, timeout=60
    )


@pytest.mark.parametrize(("data", "argv", "line"), CASES)
def test_the_script_refuses_bad_input_with_one_line(
    data: bytes, argv: list[str], line: int, tmp_path: Path
) -> None:
    path = tmp_path / "input"
    path.write_bytes(data)
    done = nowait(*[str(path) if a == "FILE" else a for a in argv], home=tmp_path / "home")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"nowait: error: {path}:{line}: "), done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "home").exists()


def test_results_with_a_missing_home_creates_nothing(tmp_path: Path) -> None:
    done = nowait("results", "--home", str(tmp_path / "missing"), home=tmp_path)
    assert done.returncode == 2 and "no nowait home at" in done.stderr
    assert not (tmp_path / "missing").exists()


# Ctrl-C during start-up: the process signals itself the moment a module starts to load (the
# `nowait` package itself, the CLI, a command's libraries: the SDK takes seconds on a cold
# start), then runs the installed `nowait` script as the shell would.
INTERRUPT_ON_IMPORT = """
import importlib.abc, os, runpy, signal, sys

AT, SCRIPT = sys.argv[1], sys.argv[2]

class Interrupt(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == AT:
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, Interrupt())
sys.argv = [SCRIPT, *sys.argv[3:]]
runpy.run_path(SCRIPT, run_name="__main__")
"""


@pytest.mark.parametrize(
    ("module", "argv"),
    [
        ("nowait", ["config"]),
        ("nowait.errors", ["config"]),
        ("typer", ["config"]),
        ("nowait.cli.options", ["config"]),
        ("anthropic", ["run", "requests.jsonl", "--out", "out.jsonl"]),
        ("duckdb", ["analyze", "logs.jsonl"]),
    ],
)
def test_ctrl_c_while_importing_prints_one_line_and_exits_130(
    module: str, argv: list[str], tmp_path: Path
) -> None:
    assert SCRIPT
    # The SDK loads only once the inputs pass their checks: give `run` a valid file.
    request = {"key": "k", "params": {"model": "claude-haiku-4-5", "max_tokens": 8,
                                      "messages": [{"role": "user", "content": "hi"}]}}  # fmt: skip
    (tmp_path / "requests.jsonl").write_text(json.dumps(request) + "\n")
    env = {**os.environ, "NOWAIT_HOME": str(tmp_path), "ANTHROPIC_API_KEY": "test-key"}
    done = subprocess.run(
        [sys.executable, "-c", INTERRUPT_ON_IMPORT, module, SCRIPT, *argv],
        check=False, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert done.returncode == 130, done.stderr
    assert done.stderr == "nowait: interrupted\n"
