"""The official SDK's own generated tests for messages, batches and models (plain and beta;
loose, strict and aiohttp variants) against `nowait emulator --contract`.

`scripts/fetch-sdk-suite` (run by `scripts/test`) puts the SDK's sdist in `.cache/sdk`; this
test downloads nothing. The tests run in a subprocess with the sdist's own `anthropic` source
on `PYTHONPATH`, so the client is exactly the version the tests were written for.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

SDK_VERSION = "2.13.0"
SDK_DIR = Path(__file__).resolve().parents[2] / ".cache" / "sdk" / f"anthropic-{SDK_VERSION}"
SUITE = (
    "tests/api_resources/test_messages.py",
    "tests/api_resources/messages/test_batches.py",
    "tests/api_resources/test_models.py",
    "tests/api_resources/beta/test_messages.py",
    "tests/api_resources/beta/messages/test_batches.py",
    "tests/api_resources/beta/test_models.py",
)
VARIANTS = ("loose", "strict", "aiohttp")


def run_suite(base_url: str, junit: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "NOWAIT_"))}
    env |= {"TEST_API_BASE_URL": base_url, "PYTHONPATH": str(SDK_DIR / "src")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",  # theirs asks for pytest-xdist (-n auto); one process is enough
            "-p",
            "tests._alias_httpx",
            f"--junitxml={junit}",
            *SUITE,
        ],
        cwd=SDK_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def outcomes(junit: Path) -> dict[str, Counter[str]]:
    """Outcome counts by variant (the test id's parameter: loose, strict or aiohttp; "other"
    for the few tests parametrized otherwise)."""
    by_variant: dict[str, Counter[str]] = {}
    for case in ET.parse(junit).iter("testcase"):
        name = case.get("name", "")
        variant = name[name.rfind("[") + 1 : -1] if name.endswith("]") else ""
        variant = variant if variant in VARIANTS else "other"
        tags = {child.tag for child in case}
        outcome = next((t for t in ("failure", "error", "skipped") if t in tags), "passed")
        by_variant.setdefault(variant, Counter())[outcome] += 1
    return by_variant


@pytest.mark.slow
def test_the_sdks_own_suite_passes_on_the_contract_emulator(
    emulator_process: Any, tmp_path: Path
) -> None:
    if not (SDK_DIR / SUITE[0]).exists():
        pytest.fail(f"the SDK's suite is not in {SDK_DIR}: run scripts/fetch-sdk-suite")
    junit = tmp_path / "sdk-suite.xml"
    with emulator_process("--contract") as emulator:
        run = run_suite(emulator.base_url, junit)
        log = emulator.log_text()
    counts = outcomes(junit)
    summary = ", ".join(f"{v}: {dict(c)}" for v, c in sorted(counts.items()))
    print(f"SDK {SDK_VERSION} suite on the emulator: {summary}")
    failed = sum(c["failure"] + c["error"] for c in counts.values())
    assert run.returncode == 0 and failed == 0, run.stdout[-6000:] + run.stderr[-2000:]
    for variant in VARIANTS:  # every variant ran, and enough of it to mean something
        assert counts[variant]["passed"] >= 80, summary
    assert sum(c["passed"] for c in counts.values()) >= 450, summary
    assert "socket.send() raised exception" not in log
    assert "Traceback" not in log, log[-3000:]
