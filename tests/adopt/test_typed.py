"""mypy (strict) sees the drop-in client's two return types: a `Message` for an ordinary call,
a `Handle` for a call with nowait's keywords, and refuses to mix them up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def mypy(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mypy", "--strict", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip


def test_the_typed_examples_pass_mypy_strict() -> None:
    done = mypy(Path(__file__).with_name("typed_examples.py"))
    assert done.returncode == 0, done.stdout


def test_mypy_refuses_a_handle_taken_for_a_message(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.py"
    wrong.write_text(
        "import nowait\n"
        "from anthropic.types import Message\n"
        "def f(client: nowait.Anthropic) -> Message:\n"
        "    return client.messages.create(model='claude-haiku-5-5', max_tokens=8,\n"
        "                                  messages=[], deadline='6h')\n"
    )
    done = mypy(wrong)
    assert done.returncode == 1
    assert 'Incompatible return value type (got "Handle", expected "Message")' in done.stdout
