"""One settings object: flags > NOWAIT_* environment > nowait.toml > defaults, through the real
CLI; `nowait run` and `nowait simulate` build their configs from it; logging configuration."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from nowait.guard.policy import Capacity, GuardConfig, PollConfig, RetryConfig
from nowait.present.settings import settings_table
from nowait.route.worker import WorkerConfig
from nowait.settings import Settings, keys, load_settings, rows
from nowait.simulate.engine import SimConfig

RPM = "capacity.requests_per_minute"


def config_json(cli: Any, *args: str) -> dict[str, Any]:
    result = cli("config", "--json", *args)
    assert result.code == 0, result.err
    return json.loads(result.out)  # type: ignore[no-any-return]


def table_row(out: str, key: str) -> list[str]:
    """The cells of `key`'s row in `nowait config`'s table."""
    line = next(line for line in out.splitlines() if re.search(rf"[│|]\s*{re.escape(key)}\s", line))
    return [cell.strip() for cell in line.strip("│| ").split("│")]


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Commands here set the root logger's level and handler: put them back after each test."""
    import logging

    from nowait.logs import CHATTY

    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    chatty = {name: logging.getLogger(name).level for name in CHATTY}
    yield
    root.setLevel(level)
    root.handlers[:] = handlers
    for name, old in chatty.items():
        logging.getLogger(name).setLevel(old)


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("NOWAIT_HOME", str(folder))
    return folder


# ---- each source, shown with its source ------------------------------------------------------
@pytest.mark.parametrize("how", ["flag", "env", "home file", "--config file"])
def test_capacity_set_by_each_source_is_shown_with_that_source(
    cli: Any, monkeypatch: pytest.MonkeyPatch, home: Path, tmp_path: Path, how: str
) -> None:
    args: list[str] = []
    where = {"flag": "--rpm", "env": "NOWAIT_CAPACITY__REQUESTS_PER_MINUTE"}.get(how)
    if how == "flag":
        args = ["--rpm", "123"]
    elif how == "env":
        monkeypatch.setenv("NOWAIT_CAPACITY__REQUESTS_PER_MINUTE", "123")
    else:
        file = home / "nowait.toml" if how == "home file" else tmp_path / "elsewhere.toml"
        file.write_text("[capacity]\nrequests_per_minute = 123\n")
        args = [] if how == "home file" else ["--config", str(file)]
        where = str(file)
    got = config_json(cli, *args)
    assert got["settings"][RPM] == {
        "value": 123.0,
        "source": how.rsplit(maxsplit=1)[-1],
        "where": where,
        "env": "NOWAIT_CAPACITY__REQUESTS_PER_MINUTE",
        "flag": "--rpm",
    }
    assert got["settings"]["capacity.concurrency"]["source"] == "default"
    table = cli("config", *args)
    assert table.code == 0, table.err
    assert table_row(table.out, RPM)[1:] == ["123", "flag --rpm" if how == "flag" else got[
        "settings"][RPM]["source"]]  # fmt: skip
    if how.endswith("file"):
        assert f"file: {where}" in table.out


def test_precedence_is_flag_then_environment_then_file_then_default(
    cli: Any, monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    (home / "nowait.toml").write_text("[capacity]\nrequests_per_minute = 70\n")
    monkeypatch.setenv("NOWAIT_CAPACITY__REQUESTS_PER_MINUTE", "80")
    assert config_json(cli, "--rpm", "90")["settings"][RPM]["value"] == 90
    assert config_json(cli)["settings"][RPM]["value"] == 80
    monkeypatch.delenv("NOWAIT_CAPACITY__REQUESTS_PER_MINUTE")
    assert config_json(cli)["settings"][RPM]["value"] == 70
    (home / "nowait.toml").unlink()
    got = config_json(cli)
    assert got["settings"][RPM] | {"where": None} == {
        "value": 50.0, "source": "default", "where": None,
        "env": "NOWAIT_CAPACITY__REQUESTS_PER_MINUTE", "flag": "--rpm",
    }  # fmt: skip
    assert got["file"] is None


def test_every_setting_has_a_row_and_durations_read_as_written(
    cli: Any, monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    (home / "nowait.toml").write_text(
        '[guard]\nmargin = "15m"\ncancel_latency = 90\n[retry]\nmax_delay = "1h"\n'
        '[poll]\nfirst = "0.5"\n'
    )
    monkeypatch.setenv("NOWAIT_STORE", "postgresql://nowait:pw-CANARY-2@db/nowait")
    got = config_json(cli, "--poll", "30s")["settings"]
    assert list(got) == [key for key, _ in keys()]
    assert got["guard.margin"]["value"] == "15m"
    assert got["guard.cancel_latency"]["value"] == "90s"
    assert got["retry.max_delay"]["value"] == "1h"
    assert got["poll.first"] == got["poll.first"] | {"value": "30s", "source": "flag"}
    assert got["store"]["value"] == "postgresql://nowait:***@db/nowait"  # never the password
    env_home = {"value": str(home), "source": "env", "where": "NOWAIT_HOME"}
    assert got["home"] | env_home == got["home"]
    assert "pw-CANARY-2" not in cli("config").out


def test_the_table_reads_in_80_columns() -> None:
    settings = load_settings(
        {"NOWAIT_GUARD__MIN_BATCH_CHANCE": "0.3"}, {"capacity.concurrency": 4}, config=None
    )
    console = Console(width=80, record=True)
    console.print(settings_table(rows(settings), settings.config_file))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    for key, _ in keys():
        assert table_row(text, key)[0] == key  # each setting's name whole, on one line


# ---- bad settings ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[capacity]\nrequests_per_minute = \n", "nowait.toml:2: not TOML"),
        ("[capacity]\nrpm = 5\n", "nowait.toml:2: capacity.rpm: unknown setting (expected one of"),
        ("colour = 'red'\n", "nowait.toml:1: colour: unknown setting"),
        ("[capacity]\n\nconcurrency = 0\n", "nowait.toml:3: capacity.concurrency: got 0 (expected"),
        (
            "[guard]\nmargin = 'soon'\n",
            "nowait.toml:2: guard.margin: got 'soon' (expected a duration such as 90s, 10m or 2h)",
        ),
        (
            "[capacity]\nrequests_per_minute = 'many'\n",
            "nowait.toml:2: capacity.requests_per_minute: got 'many' (expected a number)",
        ),
        ("log_format = 'xml'\n", "nowait.toml:1: log_format: got 'xml' (expected one of"),
    ],
)
@pytest.mark.parametrize("command", [["config"], ["simulate", "trace.jsonl"], ["status"]])
def test_a_bad_file_is_named_with_its_line_and_field(
    cli: Any, home: Path, text: str, expected: str, command: list[str]
) -> None:
    (home / "nowait.toml").write_text(text)
    result = cli(*command)
    assert result.code == 2
    assert f"{home}/{expected}" in result.err and "Traceback" not in result.err


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda tmp: tmp / "missing.toml", "missing.toml: --config: no such file"),
        (lambda tmp: tmp, ": is a folder (expected a TOML file)"),
        (lambda tmp: tmp / "bad.toml", "bad.toml:1: not TOML"),
    ],
)
def test_a_bad_config_option_is_a_clear_error(
    cli: Any, tmp_path: Path, make: Any, expected: str
) -> None:
    (tmp_path / "bad.toml").write_text("= 1\n")
    for command in (["config"], ["run", "requests.jsonl"], ["worker"], ["results"]):
        result = cli(*command, "--config", str(make(tmp_path)))
        assert result.code == 2, command
        assert expected in result.err and "Traceback" not in result.err


def test_bad_flags_and_variables_are_named(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    result = cli("config", "--rpm", "-5")
    expected = "nowait: error: --rpm: got -5.0 (expected a number > 0)"
    assert (result.code, result.err.strip()) == (2, expected)
    result = cli("simulate", "t.jsonl", "--margin", "soon")
    assert result.code == 2 and "--margin: got 'soon' (expected a duration" in result.err
    monkeypatch.setenv("NOWAIT_CAPACITY__CONCURRENCY", "lots")
    result = cli("config")
    assert result.code == 2
    assert "NOWAIT_CAPACITY__CONCURRENCY: got 'lots' (expected a whole number)" in result.err
    monkeypatch.delenv("NOWAIT_CAPACITY__CONCURRENCY")
    monkeypatch.setenv("NOWAIT_LOG_LEVEL", "loud")
    result = cli("config")
    assert result.code == 2 and "NOWAIT_LOG_LEVEL: got 'LOUD'" in result.err


# ---- run and simulate use the same settings --------------------------------------------------
def test_run_and_simulate_build_equal_configs_from_one_settings_object(home: Path) -> None:
    (home / "nowait.toml").write_text(
        "[capacity]\nrequests_per_minute = 7\nconcurrency = 3\nseconds_per_request = 12\n"
        '[guard]\nmargin = "20m"\nmin_batch_chance = 0.4\n[poll]\nfirst = "30s"\n'
        "[retry]\nmax_attempts = 2\n"
    )
    settings = load_settings({"NOWAIT_HOME": str(home)}, {"guard.cancel_latency": "5m"})
    worker, sim = WorkerConfig.from_settings(settings), SimConfig.from_settings(settings)
    assert worker.capacity == sim.capacity == Capacity(7, 50_000, 10_000, 3, 12)
    assert (
        worker.guard == sim.guard == GuardConfig(timedelta(minutes=20), timedelta(minutes=5), 0.4)
    )
    assert worker.poll == sim.poll == PollConfig(30, 1.5, 120)
    assert worker.retry == RetryConfig(2, 2, 600)


def test_the_defaults_are_one_setup_for_run_and_simulate() -> None:
    defaults = Settings()
    assert WorkerConfig.from_settings(defaults) == WorkerConfig()
    assert SimConfig().capacity == WorkerConfig().capacity == Capacity()
    assert SimConfig().guard == GuardConfig() and SimConfig().poll == PollConfig()
    assert SimConfig.from_settings(defaults) == SimConfig()


def write_burst(path: Path, count: int = 20) -> None:
    """`count` requests at once, nobody waiting, each due in two minutes."""
    line = {"model": "claude-haiku-4-5", "input_tokens": 1000, "output_tokens": 200}
    lines = [{"t": 0, **line, "awaited": False, "deadline": 120} for _ in range(count)]
    path.write_text("".join(json.dumps(one) + "\n" for one in lines))


def all_realtime_missed(out: str) -> int:
    cells = table_row(out, "all-realtime")
    missed = next(c for c in cells if re.fullmatch(r"[\d,]+ of [\d,]+", c))  # "3 of 20"
    return int(missed.split(" of ")[0].replace(",", ""))


def test_simulate_runs_with_the_capacity_of_nowait_toml(
    cli: Any, home: Path, tmp_path: Path
) -> None:
    trace = tmp_path / "burst.jsonl"
    write_burst(trace)
    roomy = cli("simulate", str(trace))
    assert roomy.code == 0, roomy.err
    assert "50 requests, 50,000 input and 10,000 output tokens a minute, 8 at once" in roomy.out
    assert all_realtime_missed(roomy.out) == 0  # 20 calls in three waves: about a minute
    (home / "nowait.toml").write_text("[capacity]\nrequests_per_minute = 4\nconcurrency = 2\n")
    tight = cli("simulate", str(trace))
    assert tight.code == 0, tight.err
    assert "4 requests, 50,000 input and 10,000 output tokens a minute, 2 at once" in tight.out
    assert all_realtime_missed(tight.out) > 10  # one start every 15 s: most are late
    flagged = cli("simulate", str(trace), "--rpm", "600", "--concurrency", "20")
    assert "600 requests" in flagged.out and all_realtime_missed(flagged.out) == 0


# ---- logging ---------------------------------------------------------------------------------
SECRET = "sk-ant-api03-NOWAIT-SETTINGS-CANARY-51d2"


def write_requests(path: Path, count: int) -> None:
    with path.open("w") as out:
        for i in range(count):
            params = {
                "model": "claude-haiku-5-5",
                "max_tokens": 8,
                "messages": [{"role": "user", "content": f"item {i}"}],
            }
            out.write(json.dumps({"key": f"k{i}", "params": params, "awaited": i == 0}) + "\n")


def run_on_emulator(cli: Any, tmp_path: Path, *extra: str) -> Any:
    from nowait.clock import SystemClock
    from nowait.emulator import EmulatorConfig, EmulatorServer, Turnaround

    write_requests(tmp_path / "requests.jsonl", 3)
    config = EmulatorConfig(api_keys=frozenset({SECRET}), turnaround=Turnaround(0.1))
    with EmulatorServer(config, SystemClock()) as server:
        return cli(
            "run", str(tmp_path / "requests.jsonl"), "--out", str(tmp_path / "out.jsonl"),
            "--base-url", server.base_url, "--poll", "0.05", *extra,
        )  # fmt: skip


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_json_logs_of_a_run_parse_and_never_hold_the_key(
    cli: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, level: str
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    result = run_on_emulator(cli, tmp_path, "--log-format", "json", "--log-level", level)
    assert result.code == 0, result.err
    assert SECRET not in result.err and SECRET not in result.out
    logged = [json.loads(line) for line in result.err.splitlines() if line.startswith("{")]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in logged)
    ours = [line for line in logged if line["logger"] == "nowait.cli.router"]
    assert ours and ours[0]["requests"] == 3 and ours[0]["level"] == "INFO"  # an `extra` field
    if level == "DEBUG":  # the SDK's own lines, headers and bodies included, come through too
        assert any(line["logger"].startswith(("anthropic", "httpx")) for line in logged)
    else:
        assert all(line["level"] != "DEBUG" for line in logged)


def test_run_logs_warnings_only_by_default(
    cli: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    result = run_on_emulator(cli, tmp_path)
    assert result.code == 0, result.err
    assert "routing 3 requests" not in result.err
    monkeypatch.setenv("NOWAIT_LOG_LEVEL", "info")  # the setting's environment variable
    again = run_on_emulator(cli, tmp_path)
    assert re.search(r" INFO nowait\.cli\.router: run \w+: routing 3 requests", again.err), (
        again.err
    )


# ---- start-up ----------------------------------------------------------------------------------
def test_nowait_config_imports_no_api_database_or_server_library(home: Path) -> None:
    code = (
        "import sys\nfrom nowait.cli import main\n"
        "try:\n    main(['config', '--json'])\nexcept SystemExit as exc:\n    assert not exc.code\n"
        "heavy = [m for m in ('anthropic', 'duckdb', 'uvicorn') if m in sys.modules]\n"
        "print(heavy, file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stderr.strip() == "[]"
    assert json.loads(done.stdout)["settings"]["home"]["value"] == str(home)


def test_log_lines_hide_every_secret_whoever_writes_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import logging

    from nowait.logs import configure_logging

    configure_logging("info", "json", secrets=[SECRET])
    header = {"header": f"x-api-key {SECRET}"}
    logging.getLogger("some.library").info("sent %s", SECRET, extra=header)
    logging.getLogger("nowait.test").debug("below the level")
    configure_logging("WARNING", "text", secrets=[SECRET])  # replaces the handler, not adds one
    logging.getLogger("nowait.test").warning("key=%s", SECRET)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and SECRET not in "".join(err)
    first = json.loads(err[0])
    assert (first["logger"], first["message"], first["header"]) == (
        "some.library", "sent ***", "x-api-key ***",
    )  # fmt: skip
    assert err[1].endswith(" WARNING nowait.test: key=***")


def test_a_store_url_that_is_not_postgres_names_where_it_was_set(
    cli: Any, monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    (home / "nowait.toml").write_text('store = "mysql://nowait:pw-CANARY-3@db/nowait"\n')
    from_file = cli("status")
    assert from_file.code == 2 and f"{home}/nowait.toml: 'mysql://nowait:***@db" in from_file.err
    monkeypatch.setenv("NOWAIT_STORE", "mysql://nowait:pw-CANARY-3@db/other")
    from_env = cli("results")
    assert from_env.code == 2 and "NOWAIT_STORE: 'mysql://nowait:***@db/other'" in from_env.err
    for result in (from_file, from_env):
        assert "pw-CANARY-3" not in result.err and "Traceback" not in result.err
