"""Every Python block of the README runs as written, importing only nowait's public API."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
PUBLIC = {"nowait", "nowait.testing"}


def python_blocks() -> list[tuple[int, str]]:
    text = README.read_text("utf-8")
    blocks = []
    for match in re.finditer(r"^```python\n(.*?)^```$", text, flags=re.S | re.M):
        blocks.append((text.count("\n", 0, match.start()) + 1, match.group(1)))
    return blocks


def test_the_readme_has_python_examples() -> None:
    assert len(python_blocks()) >= 2


@pytest.mark.parametrize(
    ("line", "code"), python_blocks(), ids=lambda v: f"README:{v}" if isinstance(v, int) else ""
)
def test_readme_block_runs(line: int, code: str, tmp_path: Path) -> None:
    nowait_imports = [
        node.module
        for node in ast.walk(ast.parse(code))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nowait")
    ]
    assert set(nowait_imports) <= PUBLIC, f"README:{line} imports internals: {nowait_imports}"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"README:{line} failed:\n{done.stderr[-3000:]}"
