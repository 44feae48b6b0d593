"""A deterministic stand-in for Claude: same request and seed, same answer and the same usage.

Token counts come from the prompt text (about four characters a token, the usual rule of
thumb), so `count_tokens`, the usage of a real-time call and the usage of the same request in
a batch all agree. Prompt caching follows the API's rules closely enough for cost tests:
`cache_control` breakpoints on tools, system and message blocks (or one top-level automatic
breakpoint), 5-minute and 1-hour lifetimes, reads refresh the lifetime, prefixes shorter than
the minimum are not cached.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from nowait.emulator.schemagen import instance

TTL_SECONDS = {"5m": 300, "1h": 3600}

_WORDS = [
    "the",
    "batch",
    "window",
    "fits",
    "this",
    "work",
    "because",
    "nobody",
    "waits",
    "on",
    "it",
    "and",
    "the",
    "result",
    "is",
    "read",
    "later",
    "so",
    "it",
    "runs",
    "at",
    "half",
    "price",
    "while",
    "the",
    "deadline",
    "still",
    "holds",
    "with",
    "margin",
    "to",
    "spare",
    "for",
    "every",
    "request",
    "in",
    "the",
    "queue",
    "summary",
    "report",
    "digest",
    "insight",
    "review",
    "enrichment",
    "label",
    "score",
]


def text_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def canonical(value: Any) -> str:
    """JSON with sorted keys and no cache markers: what a cache key sees."""
    return json.dumps(_without_cache_control(value), sort_keys=True, separators=(",", ":"))


def _without_cache_control(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _without_cache_control(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [_without_cache_control(v) for v in value]
    return value


def block_tokens(block: Any) -> int:
    if isinstance(block, str):
        return text_tokens(block)
    if not isinstance(block, Mapping):
        return text_tokens(str(block))
    kind = block.get("type")
    if kind == "text":
        return text_tokens(str(block.get("text", "")))
    if kind in ("image", "document") and not _is_text_source(block):
        return 1_500
    return text_tokens(canonical(block))


def _is_text_source(block: Mapping[str, Any]) -> bool:
    source = block.get("source")
    return isinstance(source, Mapping) and source.get("type") == "text"


@dataclass(frozen=True)
class Segment:
    """One cacheable unit of the prompt, in the order the API reads them."""

    key: str
    tokens: int
    ttl: str | None


def segments(params: Mapping[str, Any]) -> list[Segment]:
    """The prompt as segments: a fixed preamble, tools, system blocks, then message blocks."""
    out = [Segment("preamble", 3, None)]
    for tool in params.get("tools") or []:
        out.append(_segment(tool, 20 + text_tokens(canonical(tool))))
    system = params.get("system")
    if isinstance(system, str) and system:
        out.append(_segment(system, text_tokens(system)))
    elif isinstance(system, list):
        out.extend(_segment(b, block_tokens(b)) for b in system)
    for message in params.get("messages") or []:
        content = message.get("content") if isinstance(message, Mapping) else None
        role = message.get("role") if isinstance(message, Mapping) else None
        blocks = [content] if isinstance(content, str) else list(content or [])
        for i, block in enumerate(blocks):
            overhead = 4 if i == 0 else 0
            out.append(_segment({"role": role, "block": block}, overhead + block_tokens(block)))
    auto = params.get("cache_control")
    if isinstance(auto, Mapping) and len(out) > 1 and out[-1].ttl is None:
        out[-1] = Segment(out[-1].key, out[-1].tokens, str(auto.get("ttl") or "5m"))
    return out


def _segment(value: Any, tokens: int) -> Segment:
    marker = None
    if isinstance(value, Mapping):
        inner = value.get("block", value)
        if isinstance(inner, Mapping) and isinstance(inner.get("cache_control"), Mapping):
            marker = str(inner["cache_control"].get("ttl") or "5m")
    return Segment(canonical(value), tokens, marker)


def _after(at: datetime, ttl: str) -> datetime:
    return at + timedelta(seconds=TTL_SECONDS[ttl])


def count_tokens(params: Mapping[str, Any]) -> int:
    return sum(s.tokens for s in segments(params))


class CacheOwner(Protocol):
    """The batch behind a batch-tier entry: its writes land only if they happen before it ends."""

    @property
    def id(self) -> str: ...

    def ended_at(self) -> datetime: ...


@dataclass
class _Entry:
    tokens: int
    written_at: datetime
    expires_at: datetime
    ttl: str
    owner: CacheOwner | None
    read_until: datetime | None = None
    """Lifetime given by reads, which refresh it."""

    def live_at(self, at: datetime) -> bool:
        expires = self.expires_at
        if self.owner is not None:
            # Read lazily, so a later cancel (or expiry) undoes writes of requests it cut off.
            ended = self.owner.ended_at()
            if self.written_at > ended:
                return False
            expires = min(expires, _after(ended, self.ttl))
        if self.read_until is not None:
            expires = max(expires, self.read_until)
        return self.written_at <= at < expires

    def refresh(self, at: datetime) -> None:
        self.read_until = max(self.read_until or at, _after(at, self.ttl))


@dataclass(frozen=True)
class CacheUsage:
    input_tokens: int
    cache_read: int
    cache_write_5m: int
    cache_write_1h: int


class PromptCache:
    """Prefix cache of one tier. Batch entries remember their batch, which cannot read them.

    Each prefix keeps one entry per writer (None: the real-time tier, else a batch id). Batch
    requests are planned at creation for the moment they will finish, so a batch's entry is
    its earliest write, refreshed by its later ones; it counts only if that write landed.
    """

    def __init__(self, min_tokens: int) -> None:
        self.min_tokens = min_tokens
        self._entries: dict[str, dict[str | None, _Entry]] = {}

    def apply(
        self, model: str, parts: Sequence[Segment], at: datetime, owner: CacheOwner | None = None
    ) -> CacheUsage:
        """Look up the longest cached prefix at `at`, write the rest, and report the tokens."""
        breakpoints = [i for i, s in enumerate(parts) if s.ttl in TTL_SECONDS]
        if not breakpoints:  # nothing to look up or write: skip hashing the prompt
            return CacheUsage(sum(s.tokens for s in parts), 0, 0, 0)
        hashes, cumulative = self._prefixes(model, parts)
        read_at = -1
        for i in reversed(breakpoints):
            entry = self._readable(hashes[i], at, owner)
            if entry is not None:
                entry.refresh(at)
                read_at = i
                break
        read = cumulative[read_at] if read_at >= 0 else 0
        written = {"5m": 0, "1h": 0}
        done = read
        for i in breakpoints:
            if i <= read_at or cumulative[i] < self.min_tokens:
                continue
            ttl = parts[i].ttl or "5m"
            written[ttl] += cumulative[i] - done
            done = cumulative[i]
            self._write(hashes[i], _Entry(cumulative[i], at, _after(at, ttl), ttl, owner))
        total = cumulative[-1] if cumulative else 0
        return CacheUsage(total - done, read, written["5m"], written["1h"])

    def _readable(self, key: str, at: datetime, owner: CacheOwner | None) -> _Entry | None:
        """A live entry of another writer: a batch never reads its own requests' writes."""
        mine = owner.id if owner is not None else None
        for writer, entry in self._entries.get(key, {}).items():
            if (owner is None or writer != mine) and entry.live_at(at):
                return entry
        return None

    def _write(self, key: str, entry: _Entry) -> None:
        writers = self._entries.setdefault(key, {})
        writer = entry.owner.id if entry.owner is not None else None
        old = writers.get(writer)
        if writer is not None and old is not None:
            entry.written_at = min(old.written_at, entry.written_at)
            entry.expires_at = max(old.expires_at, entry.expires_at)
            entry.read_until = old.read_until
        writers[writer] = entry

    @staticmethod
    def _prefixes(model: str, parts: Sequence[Segment]) -> tuple[list[str], list[int]]:
        digest = hashlib.sha256(model.encode())
        hashes: list[str] = []
        cumulative: list[int] = []
        running = 0
        for part in parts:
            digest.update(part.key.encode())
            hashes.append(digest.copy().hexdigest())
            running += part.tokens
            cumulative.append(running)
        return hashes, cumulative


@dataclass(frozen=True)
class Answer:
    """What the fake model says, before usage is attached."""

    content: list[dict[str, Any]]
    stop_reason: str
    stop_sequence: str | None
    output_tokens: int


def request_digest(seed: int, params: Mapping[str, Any]) -> bytes:
    body = {k: params.get(k) for k in ("model", "messages", "system", "tools", "max_tokens")}
    return hashlib.sha256(f"{seed}:{canonical(body)}".encode()).digest()


def answer(params: Mapping[str, Any], digest: bytes, length_range: tuple[int, int]) -> Answer:
    """The fake model's reply: a tool call when one is forced (input valid against the tool's
    `input_schema`), JSON valid against a requested output schema, else text; within limits."""
    rng = random.Random(digest)
    max_tokens = int(params.get("max_tokens") or 0)
    tool = _forced_tool(params, rng)
    if tool is not None and max_tokens > 0:
        name = str(tool.get("name"))
        block = {
            "type": "tool_use",
            "id": "toolu_" + ids_from(rng),
            "name": name,
            "input": _tool_input(tool, digest),
        }
        cost = 10 + text_tokens(canonical(block))
        if cost > max_tokens:  # the API cuts the call off: a truncated tool_use, billed to the cap
            return Answer([block], "max_tokens", None, max_tokens)
        return Answer([block], "tool_use", None, cost)
    if max_tokens == 0:  # cache pre-warming: nothing generated
        return Answer([], "end_turn" if rng.randint(*length_range) <= 0 else "max_tokens", None, 0)
    schema = output_schema(params)
    if schema is not None:
        return _structured(schema, digest, max_tokens)
    natural = rng.randint(*length_range)
    words = [_WORDS[rng.randrange(len(_WORDS))] for _ in range(min(natural, max_tokens))]
    text = " ".join(words)
    stop_reason = "end_turn" if natural <= max_tokens else "max_tokens"
    stop_sequence = None
    for candidate in params.get("stop_sequences") or []:
        at = text.find(candidate) if candidate else -1
        if at >= 0:
            text, stop_reason, stop_sequence = text[:at], "stop_sequence", candidate
            words = text.split()
            break
    # Generating even an empty text (a stop sequence first) costs a token: never 0.
    return Answer([{"type": "text", "text": text}], stop_reason, stop_sequence, max(1, len(words)))


def output_schema(params: Mapping[str, Any]) -> Any:
    """The JSON schema of `output_config.format` (or the beta's `output_format`), if any."""
    config = params.get("output_config")
    for fmt in (
        config.get("format") if isinstance(config, Mapping) else None,
        params.get("output_format"),
    ):
        if isinstance(fmt, Mapping) and fmt.get("type") == "json_schema":
            return fmt.get("schema")
    return None


def _structured(schema: Any, digest: bytes, max_tokens: int) -> Answer:
    """A JSON answer; cut off mid-value (as the API would) when `max_tokens` is too small."""
    text = json.dumps(instance(schema, digest))
    tokens = max(1, text_tokens(text))
    if tokens > max_tokens:
        return Answer(
            [{"type": "text", "text": text[: 4 * max_tokens]}], "max_tokens", None, max_tokens
        )
    return Answer([{"type": "text", "text": text}], "end_turn", None, tokens)


def _tool_input(tool: Mapping[str, Any], digest: bytes) -> Any:
    schema = tool.get("input_schema")
    value = instance(schema, digest) if isinstance(schema, Mapping) else {}
    return value if isinstance(value, dict) else {}  # a tool's input is always an object


def _forced_tool(params: Mapping[str, Any], rng: random.Random) -> Mapping[str, Any] | None:
    """The tool the request makes the model call: named by `tool`, chosen by the model (here:
    drawn from the seed) under `any`; None when the model may answer in text."""
    tools = [t for t in params.get("tools") or [] if isinstance(t, Mapping) and t.get("name")]
    choice = params.get("tool_choice")
    if not tools or not isinstance(choice, Mapping):
        return None
    if choice.get("type") == "tool":
        named = [t for t in tools if t.get("name") == choice.get("name")]
        return named[0] if named else {"name": choice.get("name")}
    if choice.get("type") == "any":
        return tools[rng.randrange(len(tools))]
    return None


_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def ids_from(rng: random.Random) -> str:
    """The 24-character tail of an API id (`01` + 22 base58 characters)."""
    return "01" + "".join(rng.choice(_ALPHABET) for _ in range(22))


def new_id(prefix: str, rng: random.Random) -> str:
    return f"{prefix}_{ids_from(rng)}"


def words_in_chunks(text: str, size: int = 4) -> Iterator[str]:
    """Split text into streaming deltas of a few words, keeping the spaces."""
    words = text.split(" ")
    for i in range(0, len(words), size):
        chunk = " ".join(words[i : i + size])
        yield chunk if i == 0 else " " + chunk
