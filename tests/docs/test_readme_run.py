"""The README's routing example, run as written (on a free port): the emulator in the
background, then `nowait run` on the bundled requests. It ends well within two minutes and
says what it waits on throughout."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BIN = Path(sys.executable).parent


def routing_example() -> tuple[list[str], list[str], dict[str, str]]:
    """The emulator command, the run command and the run's environment, from the README's
    first bash block that starts `nowait emulator` and then `nowait run`."""
    for block in re.findall(r"^```bash\n(.*?)^```$", README.read_text("utf-8"), re.S | re.M):
        lines = [line.split("#", 1)[0].strip() for line in block.splitlines()]
        emulator = next((x for x in lines if x.startswith("nowait emulator")), None)
        run = next((x for x in lines if " nowait run " in f" {x} "), None)
        if emulator and run:
            words = shlex.split(run)
            env = dict(w.split("=", 1) for w in words if "=" in w and not w.startswith("-"))
            command = [w for w in words if not ("=" in w and not w.startswith("-"))]
            return shlex.split(emulator.rstrip("&").strip()), command, env
    raise AssertionError("the README has no routing example")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, "the emulator exited"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError("the emulator did not listen")


@pytest.fixture
def example(tmp_path: Path) -> Iterator[tuple[list[str], dict[str, str]]]:
    """The emulator of the example running on a free port; yields the run command (pointed at
    that port) and its environment."""
    emulator, run, env = routing_example()
    assert "--time-scale" in emulator, "the example must end in seconds, not minutes"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    run = [re.sub(r"http://127\.0\.0\.1:\d+", base, w) for w in run]
    assert base in run
    server = subprocess.Popen(
        [str(BIN / emulator[0]), *emulator[1:], "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port, server)
        yield [str(BIN / run[0]), *run[1:]], {**os.environ, **env, "NOWAIT_HOME": str(tmp_path)}
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)


def test_the_readme_routing_example_ends_in_under_two_minutes_showing_progress(
    example: tuple[list[str], dict[str, str]], tmp_path: Path
) -> None:
    command, env = example
    started = time.monotonic()
    done = subprocess.run(
        [*command, "--out", str(tmp_path / "results.jsonl")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]
    assert took < 120
    lines = done.stderr.splitlines()
    created = [x for x in lines if re.match(r"batch msgbatch_\w+: created, [\d,]+ requests", x)]
    assert created, done.stderr
    assert all("forecast end" in x for x in created)
    assert any(x.endswith("results collected") for x in lines)
    assert any(x.startswith("done: results 210/210") for x in lines)
    assert "Receipt" in done.stdout
    assert_same_fields_on_both_tiers(tmp_path / "results.jsonl")


def fields(value: object, prefix: str = "") -> set[str]:
    if isinstance(value, dict):
        return {f"{prefix}{k}" for k in value} | {
            f for k, v in value.items() for f in fields(v, f"{prefix}{k}.")
        }
    if isinstance(value, list):
        return {f for v in value for f in fields(v, prefix)}
    return set()


def assert_same_fields_on_both_tiers(results: Path) -> None:
    """A result's JSON has the same fields whichever tier answered it (no nulls on one only)."""
    by_tier: dict[str, set[str]] = {}
    for line in results.read_text("utf-8").splitlines():
        result = json.loads(line)
        by_tier.setdefault(result["tier"], set()).update(fields(result))
    assert set(by_tier) == {"standard", "batch"}
    assert by_tier["standard"] == by_tier["batch"]
