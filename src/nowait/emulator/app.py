"""The HTTP face of the emulator: the routes of the Messages, Message Batches and Models APIs.

Every response carries a `request-id` header; every error uses the API's envelope. A
`?beta=true` query (sent by 0.x/1.x SDKs) is ignored on every route.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from nowait.clock import Clock
from nowait.emulator.apierror import ApiError, envelope, invalid
from nowait.emulator.batches import Batch
from nowait.emulator.config import EmulatorConfig
from nowait.emulator.fakemodel import ids_from, words_in_chunks
from nowait.emulator.models import lifecycle_filter, model_info, ordered
from nowait.emulator.paging import page_query, paginate
from nowait.emulator.state import Emulator
from nowait.emulator.validation import check_depth, check_version

Handler = Callable[[Request, "_Call"], Awaitable[Response]]
_ids = random.Random()
_log = logging.getLogger(__name__)
FAULT_MESSAGES = {
    429: "Rate limited",
    500: "Internal server error",
    529: "Overloaded",
}


class _Call:
    """What every handler needs: the emulator, the API version, betas, the request id."""

    def __init__(
        self, emulator: Emulator, version: str, betas: frozenset[str], request_id: str
    ) -> None:
        self.emulator = emulator
        self.version = version
        self.betas = betas
        self.request_id = request_id


def create_app(config: EmulatorConfig | None = None, clock: Clock | None = None) -> Starlette:
    """The ASGI app. Its knob handle is `app.state.emulator`."""
    emulator = Emulator(config, clock)

    def route(path: str, name: str, handler: Handler, method: str) -> Route:
        async def endpoint(request: Request) -> Response:
            return await _serve(request, emulator, name, handler)

        return Route(path, endpoint, methods=[method])

    app = Starlette(
        routes=[
            route("/v1/messages", "messages", _messages, "POST"),
            route("/v1/messages/count_tokens", "count_tokens", _count_tokens, "POST"),
            route("/v1/messages/batches", "batches.create", _create_batch, "POST"),
            route("/v1/messages/batches", "batches.list", _list_batches, "GET"),
            route("/v1/messages/batches/{batch_id}", "batches.retrieve", _retrieve_batch, "GET"),
            route("/v1/messages/batches/{batch_id}", "batches.delete", _delete_batch, "DELETE"),
            route(
                "/v1/messages/batches/{batch_id}/cancel", "batches.cancel", _cancel_batch, "POST"
            ),
            route("/v1/messages/batches/{batch_id}/results", "batches.results", _results, "GET"),
            route("/v1/models", "models.list", _list_models, "GET"),
            route("/v1/models/{model_id}", "models.retrieve", _retrieve_model, "GET"),
        ]
    )
    app.add_exception_handler(404, _not_found)
    app.add_exception_handler(405, _not_found)
    app.state.emulator = emulator
    return app


async def _serve(request: Request, emulator: Emulator, name: str, handler: Handler) -> Response:
    request_id = "req_" + ids_from(_ids)
    emulator.calls[name] += 1
    try:
        _authenticate(request, emulator)
        version = check_version(request.headers.get("anthropic-version"))
        betas = frozenset(
            b.strip() for b in request.headers.get("anthropic-beta", "").split(",") if b.strip()
        )
        fault = emulator.take_fault(name)
        if fault is not None and not fault.midstream:
            headers = (
                {"retry-after": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
            )
            raise ApiError(fault.status, FAULT_MESSAGES.get(fault.status, "Error"), headers=headers)
        response = await handler(request, _Call(emulator, version, betas, request_id))
        if fault is not None and isinstance(response, StreamingResponse):
            response = _midstream_failure(request_id)
        if not any(h.startswith("anthropic-ratelimit-") for h in response.headers):
            response.headers.update(emulator.limit_headers())  # the API states them on every call
    except ApiError as error:
        response = _error_response(error, request_id)
    except ClientDisconnect:  # the client went away mid-request (killed, timed out): no bug
        _log.info("%s %s: the client disconnected (%s)", request.method, request.url.path,
                  request_id)  # fmt: skip
        response = _error_response(ApiError(400, "Client disconnected"), request_id)
    except Exception:  # an emulator bug must still look like the API: envelope, request-id
        _log.exception("%s %s failed (%s)", request.method, request.url.path, request_id)
        response = _error_response(ApiError(500, "Internal server error"), request_id)
    response.headers["request-id"] = request_id
    return response


def _error_response(error: ApiError, request_id: str) -> Response:
    return JSONResponse(
        envelope(error.type, error.message, request_id), error.status, headers=error.headers
    )


def _authenticate(request: Request, emulator: Emulator) -> None:
    key = request.headers.get("x-api-key")
    if key is None:
        auth = request.headers.get("authorization", "")
        key = auth[7:].strip() if auth.lower().startswith("bearer ") else None
    allowed = emulator.config.api_keys
    if not key:
        raise ApiError(401, "x-api-key header is required")
    if allowed is not None and key not in allowed:
        raise ApiError(401, "invalid x-api-key")


async def _not_found(request: Request, exc: Exception) -> Response:
    request_id = "req_" + ids_from(_ids)
    body = envelope(
        "not_found_error", f"Not found: {request.method} {request.url.path}", request_id
    )
    return JSONResponse(body, 404, headers={"request-id": request_id})


async def _json_body(request: Request, limit: int) -> Any:
    """The parsed body. Too big: a 413 before reading when `Content-Length` says so, else once
    the bytes pass the limit (read on, holding nothing, so the client reads the answer)."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdecimal() and int(declared) > limit:
        raise _too_large(limit)
    size = 0
    chunks: list[bytes] = []
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        else:
            chunks.clear()
    if size > limit:
        raise _too_large(limit)
    try:
        body = json.loads(b"".join(chunks) or b"null")
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise invalid(f"body: Invalid JSON: {reason}") from None
    check_depth(body)
    return body


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"Request exceeds the maximum allowed number of bytes ({limit}).")


# ---- messages -------------------------------------------------------------------------------
async def _messages(request: Request, call: _Call) -> Response:
    emulator = call.emulator
    params = emulator.check_message(
        await _json_body(request, emulator.config.max_messages_bytes), call.version
    )
    headers = emulator.admit(params)
    delay = _real_seconds(emulator.clock, emulator.config.realtime_latency)
    if delay > 0:
        await anyio.sleep(delay)
    message, more = emulator.run_message(params, call.betas)
    headers.update(more)
    if params.get("stream"):
        return StreamingResponse(
            _paced(_sse(message)), media_type="text/event-stream", headers=headers
        )
    return JSONResponse(message, headers=headers)


def _real_seconds(clock: Clock, emulated: float) -> float:
    """Real seconds to wait for `emulated` seconds: none on a fake clock, less on a fast one."""
    if emulated <= 0 or type(clock).__name__ == "FakeClock":
        return 0.0
    return emulated / float(getattr(clock, "scale", 1.0))


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


async def _paced(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    """Yield to the event loop between chunks, so a client that hangs up is noticed at once and
    the stream stops (without it, every remaining chunk is written to a dead socket)."""
    for chunk in chunks:
        yield chunk
        await anyio.sleep(0)


def _sse(message: dict[str, Any]) -> Iterator[bytes]:
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
    start["usage"] = {**usage, "output_tokens": 1}
    yield _event("message_start", {"type": "message_start", "message": start})
    yield _event("ping", {"type": "ping"})
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            yield _event(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": ""},
                },
            )
            for piece in words_in_chunks(block["text"]):
                delta = {"type": "text_delta", "text": piece}
                yield _event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
        else:
            yield _event(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {**block, "input": {}},
                },
            )
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block.get("input", {}))}
            yield _event(
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": delta},
            )
        yield _event("content_block_stop", {"type": "content_block_stop", "index": index})
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]}
    final_usage = {
        k: usage[k]
        for k in (
            "input_tokens",
            "output_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
        )
    }
    yield _event("message_delta", {"type": "message_delta", "delta": delta, "usage": final_usage})
    yield _event("message_stop", {"type": "message_stop"})


def _midstream_failure(request_id: str) -> Response:
    events = [
        _event("ping", {"type": "ping"}),
        _event("error", envelope("overloaded_error", "Overloaded", request_id)),
    ]
    return StreamingResponse(_paced(events), media_type="text/event-stream")


async def _count_tokens(request: Request, call: _Call) -> Response:
    body = await _json_body(request, call.emulator.config.max_messages_bytes)
    params = call.emulator.check_message(
        {"max_tokens": 1, **body} if isinstance(body, dict) else body, call.version
    )
    return JSONResponse({"input_tokens": call.emulator.count_message_tokens(params)})


# ---- batches --------------------------------------------------------------------------------
def _origin(request: Request, emulator: Emulator) -> str:
    if emulator.config.public_base_url:
        return emulator.config.public_base_url.rstrip("/")
    return f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"


def _batch_response(request: Request, call: _Call, batch: Batch) -> Response:
    return JSONResponse(batch.to_json(call.emulator.clock.now(), _origin(request, call.emulator)))


async def _create_batch(request: Request, call: _Call) -> Response:
    body = await _json_body(request, call.emulator.config.max_batch_bytes)
    batch = await anyio.to_thread.run_sync(
        call.emulator.create_batch, body, call.version, call.betas
    )
    response = _batch_response(request, call, batch)
    response.headers.update(call.emulator.limit_headers(_first_model(body)))
    return response


def _first_model(body: Any) -> str | None:
    """The model of a created batch's first request (nowait packs one model a batch)."""
    try:
        return str(body["requests"][0]["params"]["model"])
    except (KeyError, IndexError, TypeError):
        return None


async def _retrieve_batch(request: Request, call: _Call) -> Response:
    return _batch_response(request, call, call.emulator.get_batch(request.path_params["batch_id"]))


async def _cancel_batch(request: Request, call: _Call) -> Response:
    return _batch_response(
        request, call, call.emulator.cancel_batch(request.path_params["batch_id"])
    )


async def _delete_batch(request: Request, call: _Call) -> Response:
    batch_id = request.path_params["batch_id"]
    call.emulator.delete_batch(batch_id)
    return JSONResponse({"id": batch_id, "type": "message_batch_deleted"})


async def _list_batches(request: Request, call: _Call) -> Response:
    page = page_query(request.query_params)
    batches = call.emulator.list_batches()
    chosen, has_more = paginate(
        batches, [b.id for b in batches], page, any_cursor=call.emulator.config.contract_mode
    )
    now, origin = call.emulator.clock.now(), _origin(request, call.emulator)
    return _page_response([b.to_json(now, origin) for b in chosen], has_more)


def _page_response(data: list[dict[str, Any]], has_more: bool) -> Response:
    first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
    return JSONResponse({"data": data, "has_more": has_more, "first_id": first, "last_id": last})


async def _results(request: Request, call: _Call) -> Response:
    emulator = call.emulator
    batch = emulator.results_batch(request.path_params["batch_id"])
    lines = batch.result_lines(emulator.config.shuffle_results, emulator.config.output_tokens)
    return StreamingResponse(lines, media_type="application/x-jsonl")


# ---- models ---------------------------------------------------------------------------------
async def _list_models(request: Request, call: _Call) -> Response:
    page = page_query(request.query_params)
    wanted = lifecycle_filter(
        [*request.query_params.getlist("lifecycle[]"), *request.query_params.getlist("lifecycle")]
    )
    infos = [model_info(m) for m in ordered(call.emulator.config.models)]
    infos = [info for info in infos if info["lifecycle"] in wanted]
    chosen, has_more = paginate(
        infos, [i["id"] for i in infos], page, any_cursor=call.emulator.config.contract_mode
    )
    return _page_response(chosen, has_more)


async def _retrieve_model(request: Request, call: _Call) -> Response:
    model_id = request.path_params["model_id"]
    if model_id not in call.emulator.config.models and not call.emulator.config.contract_mode:
        raise ApiError(404, f"model: {model_id}")
    return JSONResponse(model_info(model_id))
