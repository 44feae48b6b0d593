"""One settings object for every command, and where each of its values came from.

Sources, highest first: command-line flags, then `NOWAIT_*` environment variables, then a TOML
file (`--config FILE`, else `$NOWAIT_HOME/nowait.toml` when it exists), then the defaults below.
`load_settings` takes the environment as an explicit mapping: the CLI passes `os.environ`, and
nothing below the CLI reads it.

Environment names: `NOWAIT_` and the setting's name, groups joined by a double underscore:
`NOWAIT_STORE`, `NOWAIT_HOME`, `NOWAIT_PRICES`, `NOWAIT_LOG_LEVEL`,
`NOWAIT_CAPACITY__REQUESTS_PER_MINUTE`, `NOWAIT_GUARD__MARGIN`, ... The file uses the same names,
one table per group (`[capacity]`, `[guard]`, `[poll]`, `[retry]`).

Durations are written as people write them (`90s`, `10m`, `2h`) or as a number of seconds.
The defaults are the ones the config objects of `guard` and `route` have on their own
(`Capacity()`, `GuardConfig()`, ...); the tests hold them equal.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)
from pydantic_settings.sources.utils import parse_env_vars

from nowait.durations import (
    MAX_DURATION_TEXT,
    DurationOutOfRange,
    duration_from_seconds,
    format_duration,
    parse_duration,
)
from nowait.errors import InputError
from nowait.files import path_kind
from nowait.reading import parse_toml, read_text, toml_line_of

CONFIG_NAME = "nowait.toml"
CONFIG_MAX_BYTES = 1_000_000
"""A settings file is a few hundred bytes; a larger one is not a settings file."""
ENV_PREFIX = "NOWAIT_"
DURATION_TEXT = "a duration such as 90s, 10m or 2h"


def _duration(value: object) -> timedelta:
    """`10m`, `90s`, `2h`, or a number of seconds (a number or its text) → timedelta ≥ 0,
    at most `durations.MAX_DURATION`."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(DURATION_TEXT)
    try:
        seconds = float(value)
    except ValueError:  # text such as 10m
        seconds = None
    except OverflowError:  # an int beyond any float
        seconds = math.inf
    if seconds is not None and seconds < 0:
        raise ValueError(DURATION_TEXT + ", not negative")
    try:
        if seconds is None:
            return parse_duration(str(value))
        return duration_from_seconds(seconds)
    except DurationOutOfRange:
        raise ValueError(f"{DURATION_TEXT}, {MAX_DURATION_TEXT}") from None
    except ValueError:
        raise ValueError(DURATION_TEXT) from None


def _positive_duration(value: object) -> timedelta:
    delta = _duration(value)
    if delta <= timedelta(0):
        raise ValueError(DURATION_TEXT + ", more than 0")
    return delta


def _no_bool(value: object) -> object:
    """Refuse true/false where a number goes (pydantic would read them as 1 and 0)."""
    if isinstance(value, bool):
        raise ValueError("a number, not true or false")
    return value


Number = Annotated[float, BeforeValidator(_no_bool)]
Count = Annotated[int, BeforeValidator(_no_bool)]
Duration = Annotated[timedelta, BeforeValidator(_duration)]
PositiveDuration = Annotated[timedelta, BeforeValidator(_positive_duration)]
LogLevel = Annotated[
    Literal["DEBUG", "INFO", "WARNING", "ERROR"],
    BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v),
]


CacheMode = Literal["auto", "keep", "off"]
CacheSizing = Literal["estimate", "count_tokens"]
"""How batches use prompt caching: `auto` groups jobs of one prefix, primes it and adds a
1-hour breakpoint; `keep` only groups (the user's markers as they are); `off` neither."""


class _Group(BaseModel):
    # NaN and infinity pass `gt=0`: refused here, whatever the source (flag, variable, file).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class PollSettings(_Group):
    first: PositiveDuration = Field(default=timedelta(seconds=10), description="first batch poll")
    factor: Number = Field(default=1.5, ge=1, le=100, description="each poll interval × this")
    longest: PositiveDuration = Field(
        default=timedelta(minutes=2), description="longest poll interval"
    )


class CapacitySettings(_Group):
    """The account's real-time limits, per model. The default is about Anthropic's entry tier,
    so a plan made with it holds on any real account; raise it to your account's limits."""

    requests_per_minute: Number = Field(default=50.0, gt=0, le=1e9, description="requests a minute")
    input_tokens_per_minute: Number = Field(
        default=50_000.0, gt=0, le=1e15, description="input tokens a minute"
    )
    output_tokens_per_minute: Number = Field(
        default=10_000.0, gt=0, le=1e15, description="output tokens a minute"
    )
    concurrency: Count = Field(default=8, ge=1, le=10_000, description="real-time calls at once")
    seconds_per_request: Number = Field(
        default=20.0, gt=0, le=86_400, description="seconds one call takes"
    )


class GuardSettings(_Group):
    margin: Duration = Field(default=timedelta(minutes=10), description="slack before a deadline")
    cancel_latency: Duration = Field(
        default=timedelta(minutes=2), description="cancel call to ended"
    )
    min_batch_chance: Number = Field(default=0.2, ge=0, le=1, description="least chance to batch")


class RetrySettings(_Group):
    max_attempts: Count = Field(default=5, ge=1, le=1_000, description="tries per request")
    base_delay: Duration = Field(default=timedelta(seconds=2), description="first retry delay")
    max_delay: Duration = Field(default=timedelta(minutes=10), description="longest retry delay")


@dataclass(frozen=True)
class Source:
    kind: Literal["flag", "env", "file", "default"]
    where: str = ""
    """The flag, the environment variable or the file."""

    def __str__(self) -> str:
        return f"{self.kind} {self.where}".strip()


DEFAULT = Source("default")


# What a source contributes: flags and the file are plain nested dicts; the environment is read
# by pydantic-settings' own source from the mapping `load_settings` was given.
_LOADING: ContextVar[tuple[Mapping[str, str], dict[str, Any]]] = ContextVar(
    "_LOADING", default=({}, {})
)


class Settings(BaseSettings):
    """Every setting of nowait's route and simulate commands. `Settings()` is the defaults;
    `load_settings` is how the CLI reads flags, environment and file."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_ignore_empty=True,
        extra="forbid",
        frozen=True,
    )

    home: Path | None = Field(default=None, description="data directory")
    store: str | None = Field(default=None, description="postgresql://… URL (none: SQLite in home)")
    prices: Path | None = Field(default=None, description="price file overriding the bundled one")
    log_level: LogLevel | None = Field(default=None, description="log level (none: the command's)")
    log_format: Literal["text", "json"] = Field(
        default="text", description="log lines: text or json"
    )
    cache: CacheMode = Field(
        default="auto", description="cache planning: auto (prime and mark), keep (group), off"
    )
    cache_sizing: CacheSizing = Field(
        default="estimate",
        description="shared prefix sizes for cache planning: estimate (no call) or"
        " count_tokens (one API count per prefix)",
    )
    poll: PollSettings = PollSettings()
    capacity: CapacitySettings = CapacitySettings()
    guard: GuardSettings = GuardSettings()
    retry: RetrySettings = RetrySettings()

    _sources: dict[str, Source] = PrivateAttr(default_factory=dict)
    _file: Path | None = PrivateAttr(default=None)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        environ, file_values = _LOADING.get()
        return (
            init_settings,
            _EnvironSource(settings_cls, environ),
            _ValuesSource(settings_cls, file_values),
        )

    @property
    def config_file(self) -> Path | None:
        """The TOML file these settings were read from; None: there was none."""
        return self._file

    def source(self, key: str) -> Source:
        """Where the value of `key` (`capacity.concurrency`) came from."""
        return self._sources.get(key, DEFAULT)


class _EnvironSource(EnvSettingsSource):
    """pydantic-settings' environment source, on a given mapping instead of `os.environ`."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


class _ValuesSource(PydanticBaseSettingsSource):
    """A nested dict as a source, unknown keys included (validation names them)."""

    def __init__(self, settings_cls: type[BaseSettings], values: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self.values = values

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.values)


FLAGS = {
    "home": "--home",
    "store": "--store",
    "prices": "--prices",
    "log_level": "--log-level",
    "log_format": "--log-format",
    "cache": "--cache",
    "poll.first": "--poll",
    "capacity.requests_per_minute": "--rpm",
    "capacity.input_tokens_per_minute": "--itpm",
    "capacity.output_tokens_per_minute": "--otpm",
    "capacity.concurrency": "--concurrency",
    "guard.margin": "--margin",
    "guard.cancel_latency": "--cancel-latency",
    "guard.min_batch_chance": "--min-batch-chance",
}
"""The command-line flag of each setting that has one."""

# What a setting left unset means, for people (`nowait config`).
UNSET_MEANS = {
    "store": "SQLite in home",
    "prices": "the bundled table",
    "log_level": "worker INFO, run WARNING",
}


def env_name(key: str) -> str:
    """`capacity.concurrency` → `NOWAIT_CAPACITY__CONCURRENCY`."""
    return ENV_PREFIX + key.replace(".", "__").upper()


def keys(model: type[BaseModel] = Settings, prefix: str = "") -> Iterator[tuple[str, FieldInfo]]:
    """Every setting's dotted key and field, groups flattened, in declaration order."""
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from keys(annotation, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", field


def default_home(environ: Mapping[str, str]) -> Path:
    """`$NOWAIT_HOME`, else `$XDG_DATA_HOME/nowait`, else `~/.local/share/nowait`."""
    if environ.get("NOWAIT_HOME"):
        return Path(environ["NOWAIT_HOME"])
    home = environ.get("HOME")
    base = environ.get("XDG_DATA_HOME") or str(
        (Path(home) if home else Path.home()) / ".local" / "share"
    )
    return Path(base) / "nowait"


_Layer = tuple[dict[str, Any], Callable[[str], Source]]
"""A source's values, and how to name the source of one of them."""


def load_settings(
    environ: Mapping[str, str],
    flags: Mapping[str, object] | None = None,
    config: Path | None = None,
) -> Settings:
    """The effective settings: `flags` (dotted keys, None: not given) over the `NOWAIT_*`
    variables of `environ`, over the TOML file (`config`, else `nowait.toml` in the home when
    there is one), over the defaults. Each value's source is kept (`Settings.source`).

    Bad values, unknown keys and unreadable files raise `InputError` naming the flag, the
    variable or the file (with the line where it can be found) and the setting."""
    flag_values = {k: v for k, v in (flags or {}).items() if v is not None}
    try:
        env_values = _EnvironSource(Settings, environ)()
    except SettingsError as exc:  # a group's variable that is not a JSON object
        group = re.search(r'field "(\w+)"', str(exc))
        field = env_name(group.group(1)) if group else None
        raise InputError("not valid JSON", field=field, expected="a JSON object") from None
    home = flag_values.get("home") or env_values.get("home")
    path = config or Path(str(home) if home else default_home(environ)) / CONFIG_NAME
    found = config is not None or path_kind(path, "home") != "missing"
    text = _read_config(path, "--config" if config else None) if found else None
    file_values = _parse_config(path, text) if text is not None else {}
    layers: tuple[_Layer, ...] = (
        (_nest(flag_values), lambda key: Source("flag", FLAGS.get(key, key))),
        (env_values, lambda key: Source("env", _env_var(key, environ))),
        (file_values, lambda key: Source("file", str(path))),
    )
    token = _LOADING.set((environ, file_values))
    try:
        settings = Settings(**layers[0][0])
    except ValidationError as exc:
        raise _input_error(exc.errors()[0], layers, path, text) from None
    finally:
        _LOADING.reset(token)
    if settings.home is None:
        settings = settings.model_copy(update={"home": default_home(environ)})
    settings._file = path if text is not None else None
    for key, _ in keys():
        for values, source_of in layers:
            if _has(values, key):
                settings._sources[key] = source_of(key)
                break
    return settings


def _read_config(path: Path, field: str | None) -> str:
    return read_text(path, field, max_bytes=CONFIG_MAX_BYTES, expected="a TOML file")


def _parse_config(path: Path, text: str) -> dict[str, Any]:
    """The file's values; relative paths in it are relative to the file's folder."""
    values = parse_toml(text, file=path)
    for key in ("home", "prices"):
        if isinstance(values.get(key), str):
            values[key] = str(path.parent / Path(values[key]).expanduser())
    return values


def _nest(flat: Mapping[str, object]) -> dict[str, Any]:
    """`{"capacity.concurrency": 4}` → `{"capacity": {"concurrency": 4}}`."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        *groups, name = key.split(".")
        target = nested
        for group in groups:
            target = target.setdefault(group, {})
        target[name] = value
    return nested


def _has(values: Mapping[str, Any], key: str) -> bool:
    *groups, name = key.split(".")
    for group in groups:
        inner = values.get(group)
        if not isinstance(inner, Mapping):
            return False
        values = inner
    return name in values


def _env_var(key: str, environ: Mapping[str, str]) -> str:
    """The variable that set `key`: its own, or its group's (a JSON object)."""
    upper = {name.upper() for name in environ}
    own = env_name(key)
    return own if own in upper or "." not in key else env_name(key.split(".", maxsplit=1)[0])


_EXPECTED = {
    "float_parsing": "a number",
    "float_type": "a number",
    "finite_number": "a finite number",
    "int_parsing": "a whole number",
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "string_type": "text",
    "path_type": "a path",
    "bool_parsing": "true or false",
    "model_type": "a table of settings",
    "dict_type": "a table of settings",
}


def _expected(error: Mapping[str, Any]) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    bounds = {"greater_than": ">", "greater_than_equal": "≥", "less_than_equal": "≤"}
    if kind in bounds:
        limit = next(iter(ctx.values()))
        return f"a number {bounds[kind]} {limit:g}"
    if kind == "literal_error":
        return "one of " + str(ctx.get("expected", ""))
    if kind == "value_error":
        return str(error["msg"]).removeprefix("Value error, ")
    return _EXPECTED.get(kind, str(error["msg"]))


def _input_error(
    error: Mapping[str, Any],
    layers: tuple[_Layer, ...],
    path: Path,
    text: str | None,
) -> InputError:
    """A validation error worded for people, at the source the bad value came from."""
    key = ".".join(str(part) for part in error["loc"])
    source = next((source_of(key) for values, source_of in layers if _has(values, key)), DEFAULT)
    unknown = error["type"] == "extra_forbidden"
    reason = "unknown setting" if unknown else f"got {error['input']!r}"
    expected = _known(key) if unknown else _expected(error)
    if source.kind == "file":
        line = toml_line_of(text or "", key)
        return InputError(reason, file=path, line=line, field=key, expected=expected)
    field = source.where if source.kind in ("flag", "env") else key
    return InputError(reason, field=field, expected=expected)


def _known(key: str) -> str:
    """The settings that do exist where `key` was written."""
    group = key.rpartition(".")[0]
    fields = Settings.model_fields
    if group in fields and _is_group(fields[group]):
        model = fields[group].annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        return "one of " + ", ".join(model.model_fields)
    names = [f"[{k}]" if _is_group(f) else k for k, f in fields.items()]
    return "one of " + ", ".join(names)


def _is_group(field: FieldInfo) -> bool:
    return isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)


@dataclass(frozen=True)
class Row:
    """One setting for people and machines (`nowait config`)."""

    key: str
    value: object
    """As the file would spell it: durations `10m`, paths as text, None when unset."""
    text: str
    """For the table: the value, or what leaving it unset means."""
    source: Source
    env: str
    flag: str | None
    description: str


def rows(settings: Settings) -> list[Row]:
    """Every effective value with its source, in declaration order."""
    found = []
    for key, field in keys():
        value: object = settings
        for part in key.split("."):
            value = getattr(value, part)
        if isinstance(value, timedelta):
            value = format_duration(value)
        elif isinstance(value, Path):
            value = str(value)
        text = UNSET_MEANS.get(key, "none") if value is None else f"{value}"
        if isinstance(value, float) and value.is_integer():
            text = f"{value:,.0f}"
        elif isinstance(value, int):
            text = f"{value:,}"
        found.append(
            Row(
                key, value, text, settings.source(key), env_name(key), FLAGS.get(key),
                field.description or "",
            )
        )  # fmt: skip
    return found
