"""One exception root for everything nowait raises on purpose.

    NowaitError
    ├── InputError            bad user input (file, line, field): CLI exit code 2
    ├── ConfigError           bad settings or environment: exit code 2
    ├── StoreError            the store could not do what was asked
    ├── IllegalTransition     a job state move the state machine forbids
    └── BackendError          the API answered with an error or not at all
        ├── RetryableBackendError   rate limited, overloaded, 5xx, network: try again later
        └── PermanentBackendError   invalid request, auth, not found: retrying will not help

The retry policy reads this classification and nothing else. Messages never contain secrets.
"""

from __future__ import annotations

from pathlib import Path

from nowait.ratelimits import RateLimits


class NowaitError(Exception):
    """nowait failed."""

    exit_code = 1

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class InputError(NowaitError):
    """Bad input."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
        expected: str | None = None,
    ) -> None:
        self.file = str(file) if file is not None else None
        self.line = line
        self.field = field
        self.expected = expected
        self.reason = message
        super().__init__(self._format())

    def _format(self) -> str:
        where = ""
        if self.file is not None:
            where = self.file + (f":{self.line}" if self.line is not None else "") + ": "
        elif self.line is not None:
            where = f"line {self.line}: "
        field = f"{self.field}: " if self.field else ""
        expected = f" (expected {self.expected})" if self.expected else ""
        return f"{where}{field}{self.reason}{expected}"


class ConfigError(NowaitError):
    """Bad configuration."""

    exit_code = 2


class StoreError(NowaitError):
    """The store failed."""


class IllegalTransition(NowaitError):
    """A job state move that the state machine forbids."""


class BackendError(NowaitError):
    """The API call failed."""

    def __init__(self, message: str | None = None, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class RetryableBackendError(BackendError):
    """The API call failed for a reason that may pass (rate limit, overload, 5xx, network)."""

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        limits: RateLimits | None = None,
    ) -> None:
        self.retry_after = retry_after
        self.limits = limits
        """The rate-limit headers of the refusal, when it had them (a 429 does)."""
        super().__init__(message, status=status)


class PermanentBackendError(BackendError):
    """The API rejected the call; sending it again will not help."""
