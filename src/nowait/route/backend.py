"""The one seam to the API, and the only module that imports `anthropic`.

The router talks to a `Backend` in nowait's own types; `AnthropicBackend` implements it with
the official SDK. The SDK's own retries are off: retries are nowait's decision (`policy`),
timed on nowait's clock, and every failure arrives classified as retryable or permanent.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, Literal, Protocol, TypeVar

import anthropic
import httpx2
import orjson
from anthropic.types.message_create_params import MessageCreateParamsNonStreaming
from anthropic.types.messages import MessageBatch
from pydantic import TypeAdapter, ValidationError

from nowait.errors import ConfigError, InputError, PermanentBackendError, RetryableBackendError
from nowait.ratelimits import RateLimits, read_rate_limits, read_retry_after
from nowait.route.params import INT_LIMIT, valid_utf8
from nowait.types import BATCH_STATUSES, RESULT_TYPES, BatchStatus, ResultType, Tier, Usage

log = logging.getLogger(__name__)

T = TypeVar("T")
log = logging.getLogger(__name__)
REQUEST_COUNTS = ("processing", "succeeded", "errored", "canceled", "expired")


class AuthError(ConfigError):
    """The API refused the credentials (401/403): a setting to fix, not a request's fate.

    Not a `BackendError`, so no retry or failure handler turns it into job outcomes: it stops
    the worker with every job left where it was."""


@dataclass(frozen=True)
class MessageOutcome:
    message_json: str
    usage: Usage
    tier: Tier
    limits: RateLimits | None = None
    """The rate-limit headers of the answer (None: it had none)."""


@dataclass(frozen=True)
class BatchInfo:
    id: str
    status: BatchStatus
    request_total: int
    created_at: datetime
    ended_at: datetime | None
    counts: Mapping[str, int] | None = None
    """The API's `request_counts` (processing, succeeded, errored, canceled, expired)."""
    limits: RateLimits | None = None
    """The rate-limit headers of the response that told it (a listed batch: its page's)."""


@dataclass(frozen=True)
class ResultLine:
    custom_id: str
    kind: ResultType | Literal["unreadable"]  # unreadable: nowait could not read the line
    message: MessageOutcome | None = None
    error_type: str | None = None
    error_message: str | None = None


class Backend(Protocol):
    def create_message(self, params: dict[str, Any]) -> MessageOutcome: ...

    def create_batch(self, requests: Iterable[tuple[str, str]]) -> BatchInfo:
        """Create a batch from (custom_id, params_json) pairs."""
        ...

    def retrieve_batch(self, batch_id: str) -> BatchInfo: ...

    def list_batches(self, limit: int = 100) -> Iterator[BatchInfo]:
        """Every batch of the account, newest first, fetched `limit` a page as iterated: stop
        iterating once they are old enough."""
        ...

    def cancel_batch(self, batch_id: str) -> BatchInfo: ...

    def batch_results(self, batch_id: str) -> Iterator[ResultLine]: ...

    def count_tokens(self, params: Mapping[str, Any]) -> int:
        """The API's input token count of a prompt (`messages.count_tokens`)."""
        ...


COUNTED_FIELDS = ("model", "messages", "system", "tools", "tool_choice", "thinking")
"""The request fields `count_tokens` takes that decide a prompt's size."""


class AnthropicBackend:
    """`Backend` over the official SDK. The key stays inside the SDK client, never in errors."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        auth_token: str | None = None,
        base_url: str | None = None,
        timeout: float = 600.0,
        client: anthropic.Anthropic | None = None,
    ) -> None:
        self._client = client or anthropic.Anthropic(
            api_key=api_key,
            auth_token=auth_token,
            base_url=base_url,
            max_retries=0,
            timeout=timeout,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> AnthropicBackend:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # Every call goes through `with_raw_response`, for the rate-limit headers of its answer.
    def create_message(self, params: dict[str, Any]) -> MessageOutcome:
        # The API's own JSON, as a batch result line carries it: the same fields on both tiers
        # (the SDK's model would add its optional fields as nulls: `container`, `citations`).
        raw = _call(lambda: self._client.messages.with_raw_response.create(**params))
        return _outcome(orjson.loads(raw.http_response.content), read_rate_limits(raw.headers))

    def create_batch(self, requests: Iterable[tuple[str, str]]) -> BatchInfo:
        # The SDK's `batches.create` would copy and serialize 100,000 parsed requests again;
        # its client posts the stored JSON as it is (`batch_body`), its errors unchanged.
        body = batch_body(requests)
        response = _call(
            lambda: self._client.post(
                "/v1/messages/batches",
                cast_to=httpx2.Response,
                content=body,
                options={"headers": {"Content-Type": "application/json"}},
            )
        )
        batch = MessageBatch.construct(**orjson.loads(response.content))  # as the SDK parses it
        return _info(batch, read_rate_limits(response.headers))

    def retrieve_batch(self, batch_id: str) -> BatchInfo:
        raw = _call(lambda: self._client.messages.batches.with_raw_response.retrieve(batch_id))
        return _info(raw.parse(), read_rate_limits(raw.headers))

    def list_batches(self, limit: int = 100) -> Iterator[BatchInfo]:
        try:  # the page iterates on (after_id) when one runs out; the first page's headers
            raw = self._client.messages.batches.with_raw_response.list(limit=limit)
            limits = read_rate_limits(raw.headers)
            for batch in raw.parse():
                yield _info(batch, limits)
        except anthropic.APIError as exc:
            raise _classified(exc) from None

    def cancel_batch(self, batch_id: str) -> BatchInfo:
        raw = _call(lambda: self._client.messages.batches.with_raw_response.cancel(batch_id))
        return _info(raw.parse(), read_rate_limits(raw.headers))

    def count_tokens(self, params: Mapping[str, Any]) -> int:
        fields = {k: params[k] for k in COUNTED_FIELDS if k in params}
        raw = _call(lambda: self._client.messages.with_raw_response.count_tokens(**fields))
        return int(raw.parse().input_tokens)

    def batch_results(self, batch_id: str) -> Iterator[ResultLine]:
        """Streams the results file line by line: plain JSON, no model objects, bounded memory."""
        try:
            with self._client.messages.batches.with_streaming_response.results(
                batch_id
            ) as response:
                for text in response.iter_lines():
                    if text.strip():
                        yield from _read_line(text)
        except anthropic.APIError as exc:
            raise _classified(exc) from None


EXTRA_BODY = "extra_body"
"""The params key holding provider extras: fields the SDK does not know, forwarded as they
are (`messages.create(extra_body=...)` in real time, merged into the params in a batch)."""


def batch_params(params_json: str) -> dict[str, Any]:
    """A stored request as a batch item's `params`: its extras merged in, as the SDK's
    `extra_body` does for a real-time call."""
    params: dict[str, Any] = orjson.loads(params_json)
    extra = params.pop(EXTRA_BODY, None)
    return {**params, **extra} if extra else params


def batch_body(requests: Iterable[tuple[str, str]]) -> bytes:
    """The create call's JSON body from (custom_id, params_json) pairs. Each stored request is
    read (what is not a JSON object raises, for the worker's quarantine to name) and spliced
    in as stored; only one with extras is serialized again, merged (`batch_params`)."""
    body = bytearray(b'{"requests":[')
    for index, (custom_id, params_json) in enumerate(requests):
        params = orjson.loads(params_json)
        if not isinstance(params, dict):
            raise TypeError(f"the stored request of {custom_id} is not a JSON object")
        spliced = (
            batch_params(params_json) if EXTRA_BODY in params else orjson.Fragment(params_json)
        )
        if index:
            body += b","
        body += orjson.dumps({"custom_id": custom_id, "params": spliced})
    body += b"]}"
    return bytes(body)


def _read_line(text: str) -> Iterator[ResultLine]:
    """One results line; one that cannot be read is logged and yields an `unreadable` line
    for its job when its custom_id can be found, so the rest of the file still lands."""
    try:
        entry = orjson.loads(text)  # a 100,000-line file: the fast parser
        yield _line(str(entry["custom_id"]), entry["result"])
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as exc:
        found = re.search(r'"custom_id"\s*:\s*"([A-Za-z0-9_-]{1,64})"', text)
        log.error("unreadable batch result line (%s): %.200s", exc, text)
        if found:
            yield ResultLine(found.group(1), "unreadable", error_message=str(exc))


# ---- the door: requests checked against the SDK's own request type -------------------------
KNOWN_PARAMS = frozenset(
    MessageCreateParamsNonStreaming.__required_keys__
    | MessageCreateParamsNonStreaming.__optional_keys__
)
_TYPE_TAG = re.compile(r"[a-z_][a-z0-9_]*")
_TYPE_NAMES = frozenset({"str", "int", "float", "bool", "list", "dict", "none"})


@cache
def _params_adapter() -> TypeAdapter[MessageCreateParamsNonStreaming]:
    return TypeAdapter(MessageCreateParamsNonStreaming)


def check_params(params: Mapping[str, Any]) -> None:
    """Refuse a request the SDK would not send as it is: an unknown parameter, or a value not
    of the SDK's type (`MessageCreateParamsNonStreaming`, the same for both routes). Raises
    `InputError` naming the field (`params.…`)."""
    for key in params:
        if key not in KNOWN_PARAMS and key != EXTRA_BODY:
            raise InputError(
                f"unknown parameter {key!r} (anthropic {anthropic.__version__} does not take it);"
                f" to send a provider extra anyway, put it under params.{EXTRA_BODY}, which"
                " nowait forwards on both routes",
                field=f"params.{key}",
                expected="a Messages API parameter",
            )
    extra = params.get(EXTRA_BODY)
    if extra is not None and not isinstance(extra, Mapping):
        raise InputError(f"got {type(extra).__name__}", field=f"params.{EXTRA_BODY}",
                         expected="an object of extra request fields")  # fmt: skip
    known = {k: v for k, v in params.items() if k != EXTRA_BODY}
    try:
        _drain(_params_adapter().validate_python(known, strict=True), known, ())
    except ValidationError as exc:
        raise _type_error(exc, ()) from None


_PLAIN_KEYS = (
    frozenset({"model", "max_tokens", "messages"}),
    frozenset({"model", "max_tokens", "messages", "system"}),
)
_ROLES = frozenset({"user", "assistant"})
_MESSAGE_KEYS = frozenset({"role", "content"})


def plain_request(params: Mapping[str, Any]) -> bool:
    """Whether `params` has the common shape, which surely passes both the strict-JSON walk
    and the SDK's type (`check_params`): model, max_tokens, optional system text, and
    messages each exactly a role and text content, of the exact built-in types. Anything
    else answers False, and the full checks decide (and name the field): the door's fast
    path, ~5 times cheaper than the SDK's validator."""
    if type(params) is not dict or params.keys() not in _PLAIN_KEYS:
        return False
    model, max_tokens, messages = params["model"], params["max_tokens"], params["messages"]
    system = params.get("system", "")
    if not (
        type(model) is str and type(system) is str and valid_utf8(model) and valid_utf8(system)
        and type(max_tokens) is int and -INT_LIMIT <= max_tokens < INT_LIMIT
        and type(messages) is list
    ):  # fmt: skip
        return False
    for message in messages:
        if type(message) is not dict or message.keys() != _MESSAGE_KEYS:
            return False
        role, content = message["role"], message["content"]
        if type(role) is not str or role not in _ROLES or type(content) is not str:
            return False
        if not valid_utf8(content):
            return False
    return True


_LEAVES = frozenset({str, int, float, bool, type(None)})


def _drain(value: Any, source: Any, path: tuple[str | int, ...]) -> None:
    """Walk a validated request beside its source: the SDK types some fields `Iterable`,
    which pydantic checks lazily, item by item, as they are iterated, and which any iterable
    passes, an object's keys included; in JSON only a list is one. (Leaves, nearly every
    value, are skipped before their path is built.)"""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if type(item) not in _LEAVES:
                inner = source.get(key) if isinstance(source, Mapping) else None
                _drain(item, inner, (*path, key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            if type(item) not in _LEAVES:
                _drain(item, _at(source, index), (*path, index))
    elif hasattr(value, "__next__"):
        if not isinstance(source, list | tuple):
            raise InputError(
                f"got {type(source).__name__}", field=".".join(["params", *map(str, path)]),
                expected="a list",
            )  # fmt: skip
        index = 0
        while True:
            try:
                item = next(value)
            except StopIteration:
                return
            except ValidationError as exc:
                raise _type_error(exc, path) from None
            _drain(item, _at(source, index), (*path, index))
            index += 1


def _at(source: Any, index: int) -> Any:
    return source[index] if isinstance(source, list | tuple) and index < len(source) else None


def _type_error(exc: ValidationError, path: tuple[str | int, ...]) -> InputError:
    """The first problem pydantic found, at its field (union branch names left out)."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    where = [str(p) for p in (*path, *first["loc"]) if not _is_type_tag(p)]
    more = f" (and {len(errors) - 1} other mismatch{'es' if len(errors) > 2 else ''})"
    return InputError(
        first["msg"] + (more if len(errors) > 1 else ""),
        field=".".join(["params", *where]),
        expected=f"the Messages API's type (anthropic {anthropic.__version__})",
    )


def _is_type_tag(part: object) -> bool:
    """Union errors put the branch's type name in the location: `TextBlockParam`, `str`."""
    return isinstance(part, str) and (not _TYPE_TAG.fullmatch(part) or part in _TYPE_NAMES)


def _line(custom_id: str, result: dict[str, Any]) -> ResultLine:
    kind = RESULT_TYPES.get(result.get("type"))
    if kind is None:  # a result type the API adds later: reported, not guessed
        said = f"the API returned a result of type {result.get('type')!r}, unknown to nowait"
        log.warning("batch result %s: %s", custom_id, said)
        return ResultLine(
            custom_id, "errored", error_type="unknown_result_type", error_message=said
        )
    if kind == "succeeded":
        return ResultLine(custom_id, kind, message=_outcome(result["message"]))
    if kind == "errored":
        error = (result.get("error") or {}).get("error") or {}
        return ResultLine(
            custom_id, kind, error_type=error.get("type"), error_message=error.get("message")
        )
    return ResultLine(custom_id, kind)


def _outcome(message: dict[str, Any], limits: RateLimits | None = None) -> MessageOutcome:
    usage = message.get("usage") or {}
    tier = Tier.from_api(usage.get("service_tier"))
    if tier is Tier.UNKNOWN:
        log.warning(
            "the API billed %s on service tier %r, which nowait does not know:"
            " priced at standard rates",
            message.get("id"),
            usage.get("service_tier"),
        )
    return MessageOutcome(orjson.dumps(message).decode(), Usage.from_api(usage), tier, limits)


def _info(batch: Any, limits: RateLimits | None = None) -> BatchInfo:
    counts = {name: getattr(batch.request_counts, name) for name in REQUEST_COUNTS}
    return BatchInfo(
        batch.id,
        _status(batch.id, batch.processing_status),
        sum(counts.values()),
        batch.created_at,
        batch.ended_at,
        counts,
        limits,
    )


def _status(batch_id: str, value: object) -> BatchStatus:
    """A status the API adds later is polled on as in progress (the guard still cancels in
    time), and logged."""
    status = BATCH_STATUSES.get(value)
    if status is not None:
        return status
    log.warning("batch %s has an unknown processing_status %r: treated as in progress",
                batch_id, value)  # fmt: skip
    return "in_progress"


def _call(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except anthropic.APIError as exc:
        raise _classified(exc) from None


def _classified(exc: anthropic.APIError) -> Exception:
    """Map an SDK error to nowait's kinds, keeping the API's words and nothing secret."""
    error = _kind_of(exc)
    log.debug("API call failed: %s: %s", type(error).__name__, error)
    return error


def _kind_of(exc: anthropic.APIError) -> Exception:
    if isinstance(exc, anthropic.APIConnectionError):
        return RetryableBackendError(f"cannot reach the API: {type(exc).__name__}")
    if isinstance(exc, anthropic.APIStatusError):
        headers = exc.response.headers
        return status_error(
            exc.status_code, _api_message(exc), read_retry_after(headers), read_rate_limits(headers)
        )
    return PermanentBackendError(f"API error: {type(exc).__name__}")


def status_error(
    status: int,
    message: str,
    retry_after: float | None = None,
    limits: RateLimits | None = None,
) -> Exception:
    """The nowait error for an API error status: the one classification every `Backend` uses."""
    if status in (401, 403):
        return AuthError(
            f"the API refused the credentials ({message}); check ANTHROPIC_API_KEY."
            " Nothing was marked failed: run again with the right key to carry on"
        )
    if status in (408, 409, 429) or status >= 500:
        return RetryableBackendError(message, status=status, retry_after=retry_after, limits=limits)
    return PermanentBackendError(message, status=status)


def _api_message(exc: anthropic.APIStatusError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    found = body.get("error")
    error: dict[str, Any] = found if isinstance(found, dict) else {}
    kind = error.get("type", "error")
    return f"{exc.status_code} {kind}: {error.get('message', '')}".strip()
