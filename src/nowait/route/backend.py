"""The one seam to the API, and the only module that imports `anthropic`.

The router talks to a `Backend` in nowait's own types; `AnthropicBackend` implements it with
the official SDK. The SDK's own retries are off: retries are nowait's decision (`policy`),
timed on nowait's clock, and every failure arrives classified as retryable or permanent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

import anthropic
import orjson

from nowait.errors import ConfigError, PermanentBackendError, RetryableBackendError
from nowait.types import BATCH_STATUSES, RESULT_TYPES, BatchStatus, ResultType, Tier, Usage

T = TypeVar("T")
log = logging.getLogger(__name__)
REQUEST_COUNTS = ("processing", "succeeded", "errored", "canceled", "expired")
RETRYABLE_LINE_ERRORS = frozenset(
    {"overloaded_error", "api_error", "rate_limit_error", "timeout_error"}
)


class AuthError(ConfigError):
    """The API refused the credentials (401/403): a setting to fix, not a request's fate.

    Not a `BackendError`, so no retry or failure handler turns it into job outcomes: it stops
    the worker with every job left where it was."""


@dataclass(frozen=True)
class MessageOutcome:
    message_json: str
    usage: Usage
    tier: Tier


@dataclass(frozen=True)
class BatchInfo:
    id: str
    status: BatchStatus
    request_total: int
    created_at: datetime
    ended_at: datetime | None
    counts: Mapping[str, int] | None = None
    """The API's `request_counts` (processing, succeeded, errored, canceled, expired)."""


@dataclass(frozen=True)
class ResultLine:
    custom_id: str
    kind: ResultType
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

    def create_message(self, params: dict[str, Any]) -> MessageOutcome:
        message = _call(lambda: self._client.messages.create(**params))
        return _outcome(message.model_dump(mode="json"))

    def create_batch(self, requests: Iterable[tuple[str, str]]) -> BatchInfo:
        body = [{"custom_id": cid, "params": orjson.loads(params)} for cid, params in requests]
        return _info(_call(lambda: self._client.messages.batches.create(requests=body)))  # type: ignore[arg-type]

    def retrieve_batch(self, batch_id: str) -> BatchInfo:
        return _info(_call(lambda: self._client.messages.batches.retrieve(batch_id)))

    def list_batches(self, limit: int = 100) -> Iterator[BatchInfo]:
        try:  # the SDK's page iterator fetches the next page (after_id) when one runs out
            for batch in self._client.messages.batches.list(limit=limit):
                yield _info(batch)
        except anthropic.APIError as exc:
            raise _classified(exc) from None

    def cancel_batch(self, batch_id: str) -> BatchInfo:
        return _info(_call(lambda: self._client.messages.batches.cancel(batch_id)))

    def batch_results(self, batch_id: str) -> Iterator[ResultLine]:
        """Streams the results file line by line: plain JSON, no model objects, bounded memory."""
        try:
            with self._client.messages.batches.with_streaming_response.results(
                batch_id
            ) as response:
                for text in response.iter_lines():
                    if text.strip():
                        entry = orjson.loads(text)  # a 100,000-line file: the fast parser
                        yield _line(str(entry["custom_id"]), entry["result"])
        except anthropic.APIError as exc:
            raise _classified(exc) from None


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


def _outcome(message: dict[str, Any]) -> MessageOutcome:
    usage = message.get("usage") or {}
    tier = Tier.from_api(usage.get("service_tier"))
    if tier is Tier.UNKNOWN:
        log.warning(
            "the API billed %s on service tier %r, which nowait does not know:"
            " priced at standard rates",
            message.get("id"),
            usage.get("service_tier"),
        )
    return MessageOutcome(orjson.dumps(message).decode(), Usage.from_api(usage), tier)


def _info(batch: Any) -> BatchInfo:
    counts = {name: getattr(batch.request_counts, name) for name in REQUEST_COUNTS}
    return BatchInfo(
        batch.id,
        _status(batch.id, batch.processing_status),
        sum(counts.values()),
        batch.created_at,
        batch.ended_at,
        counts,
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
        return status_error(exc.status_code, _api_message(exc), _retry_after(exc))
    return PermanentBackendError(f"API error: {type(exc).__name__}")


def status_error(status: int, message: str, retry_after: float | None = None) -> Exception:
    """The nowait error for an API error status: the one classification every `Backend` uses."""
    if status in (401, 403):
        return AuthError(
            f"the API refused the credentials ({message}); check ANTHROPIC_API_KEY."
            " Nothing was marked failed: run again with the right key to carry on"
        )
    if status in (408, 409, 429) or status >= 500:
        return RetryableBackendError(message, status=status, retry_after=retry_after)
    return PermanentBackendError(message, status=status)


def _api_message(exc: anthropic.APIStatusError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    found = body.get("error")
    error: dict[str, Any] = found if isinstance(found, dict) else {}
    kind = error.get("type", "error")
    return f"{exc.status_code} {kind}: {error.get('message', '')}".strip()


def _retry_after(exc: anthropic.APIStatusError) -> float | None:
    value = exc.response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
