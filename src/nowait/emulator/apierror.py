"""API errors as the real service sends them: status, `error.type`, message, envelope."""

from __future__ import annotations

from typing import Any

STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


class ApiError(Exception):
    """An error response; raised anywhere in a handler, rendered by the app."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.type = STATUS_TYPES.get(status, "api_error")
        self.message = message
        self.headers = headers or {}


def envelope(error_type: str, message: str, request_id: str | None) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": request_id,
    }


def invalid(message: str) -> ApiError:
    return ApiError(400, message)
