"""What nowait writes is private: the home folder 0700, a new results file 0600."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from nowait.emulator import EmulatorServer
from nowait.errors import InputError
from nowait.files import check_output_file

LINE = (
    '{"key": "a", "awaited": true, "params": {"model": "claude-haiku-5-5", "max_tokens": 8,'
    ' "messages": [{"role": "user", "content": "hi"}]}}\n'
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def requests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    path = tmp_path / "r.jsonl"
    path.write_text(LINE)
    return path


def test_new_home_and_results_are_owner_only(tmp_path: Path, cli: Any, requests: Path) -> None:
    home, out = tmp_path / "fresh" / "home", tmp_path / "out.jsonl"
    with EmulatorServer() as server:
        result = cli("run", str(requests), "--home", str(home), "--out", str(out),
                     "--base-url", server.base_url)  # fmt: skip
    assert result.code == 0, result.err
    assert mode(home) == 0o700
    assert mode(home / "nowait.db") == 0o600
    assert mode(out) == 0o600


def test_an_existing_results_file_keeps_its_mode(tmp_path: Path, cli: Any, requests: Path) -> None:
    out = tmp_path / "shared.jsonl"
    out.touch()
    out.chmod(0o644)
    with EmulatorServer() as server:
        result = cli("run", str(requests), "--home", str(tmp_path / "h"), "--out", str(out),
                     "--base-url", server.base_url)  # fmt: skip
    assert result.code == 0, result.err
    assert mode(out) == 0o644 and out.read_text().count("\n") == 1


@pytest.mark.parametrize("shape", ["folder", "missing-parent"])
def test_an_output_path_with_nowhere_to_write_is_named(tmp_path: Path, shape: str) -> None:
    path = tmp_path if shape == "folder" else tmp_path / "no" / "out.jsonl"
    with pytest.raises(InputError, match="--out"):
        check_output_file(path, "--out")
