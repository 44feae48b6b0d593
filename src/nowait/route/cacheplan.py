"""Cache-aware batching, the pure part: find the prefixes queued requests share, decide where
planning pays, and place the 1-hour breakpoint (no I/O, no clock).

A prefix is read the way the API (and the emulator's cache key) reads a prompt: tools, then
system blocks, then message blocks, each compared as sorted-key JSON without its
`cache_control`. A request's group is the longest run of whole blocks it shares with another
queued request of its model, its last block (the request's own tail) excluded.

Inside one batch no request reads what another writes (the API runs them in parallel, in no
order; the emulator models exactly that), so a marker pays only when one request of the group
has written the prefix before the rest run: the group is *primed*. Planning then costs one
1-hour write (2x input) and n-1 reads (0.1x) instead of n fresh prefixes.

Prefixes nest: tools and a system prompt shared by every request, then a document shared by
one customer's requests. A group knows the next shorter prefix more requests share (`outer`);
when both levels pay, both are marked (`levels`), so each customer's primer reads the outer
prefix another primer wrote and writes only its own document.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from nowait.settings import CacheMode
from nowait.sort.pricing import PriceTable, Rates
from nowait.types import Tier

MAX_BREAKPOINTS = 4
"""The API's limit of `cache_control` breakpoints in one request (top-level one included)."""
CACHE_MIN_TOKENS = 1024
"""The shortest prefix the API caches for most models (some need more: then a planned marker
is only a no-op write of nothing, never a cost)."""
ONE_HOUR: dict[str, str] = {"type": "ephemeral", "ttl": "1h"}
MARKER_BYTES = len(', "cache_control": {"type": "ephemeral", "ttl": "1h"}') + len(
    '[{"type": "text", "text": }]'
)
"""Bytes a planned marker may add to a request (a text block made of a plain string included)."""
_MARKABLE = frozenset({"text", "image", "document", "tool_use", "tool_result"})


@dataclass(frozen=True)
class Block:
    """One cacheable unit of the prompt, in the order the API reads them."""

    key: str
    tokens: int
    where: tuple[str | int, ...]
    """("tools", i), ("system", i) or ("messages", m, b); a plain string is block 0."""
    marker: str | None
    """The ttl of the user's own `cache_control` on it ("5m" when unset), else None."""


def canonical(value: Any) -> str:
    """Sorted-key JSON without cache markers: what a cache key sees."""
    return json.dumps(_unmarked(value), sort_keys=True, separators=(",", ":"))


def _unmarked(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _unmarked(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [_unmarked(v) for v in value]
    return value


def _tokens(text: str) -> int:
    return math.ceil(len(text) / 4)  # four characters a token, as `prompt_tokens_estimate`


def _block_tokens(block: Any) -> int:
    if isinstance(block, str):
        return _tokens(block)
    if isinstance(block, Mapping) and block.get("type") == "text":
        return _tokens(str(block.get("text", "")))
    return _tokens(canonical(block))


def _marker(value: Any) -> str | None:
    if isinstance(value, Mapping) and isinstance(value.get("cache_control"), Mapping):
        return str(value["cache_control"].get("ttl") or "5m")
    return None


def places(params: Mapping[str, Any]) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """Where each cacheable block of the prompt is, and the block: tools, system, messages
    (a message's plain string is its block 0)."""
    for i, tool in enumerate(params.get("tools") or []):
        yield ("tools", i), tool
    system = params.get("system")
    if isinstance(system, str) and system:
        yield ("system", 0), system
    elif isinstance(system, list):
        for i, block in enumerate(system):
            yield ("system", i), block
    for m, message in enumerate(params.get("messages") or []):
        if not isinstance(message, Mapping):
            continue
        content = message.get("content")
        parts = [content] if isinstance(content, str) else list(content or [])
        for b, block in enumerate(parts):
            yield ("messages", m, b), block


def blocks(params: Mapping[str, Any]) -> list[Block]:
    """The prompt as cacheable blocks: tools, system, then messages."""
    out: list[Block] = []
    messages = params.get("messages") or []
    for where, value in places(params):
        if where[0] == "tools":
            key = canonical(value)
            out.append(Block(key, 20 + _tokens(key), where, _marker(value)))
        elif where[0] == "system":
            out.append(Block(canonical(value), _block_tokens(value), where, _marker(value)))
        else:
            role = messages[int(where[1])].get("role")
            key = canonical({"role": role, "block": value})
            tokens = (4 if where[2] == 0 else 0) + _block_tokens(value)
            out.append(Block(key, tokens, where, _marker(value)))
    return out


def breakpoints(params: Mapping[str, Any]) -> int:
    """Breakpoints the request already has: marked blocks and a top-level one."""
    top = 1 if isinstance(params.get("cache_control"), Mapping) else 0
    return top + sum(1 for _, value in places(params) if _marker(value) is not None)


@dataclass(frozen=True)
class Cut:
    """Where a request's shared prefix ends: `count` blocks, `tokens` long."""

    key: str
    count: int
    tokens: int


def _cuts(model: str, parts: Sequence[Block]) -> list[Cut]:
    """Every prefix of whole blocks but the full prompt, shortest first."""
    digest = hashlib.sha256(model.encode())
    out: list[Cut] = []
    running = 0
    for i, block in enumerate(parts[:-1]):
        digest.update(block.key.encode())
        digest.update(b"\x00")
        running += block.tokens
        out.append(Cut(digest.hexdigest()[:16], i + 1, running))
    return out


@dataclass(frozen=True)
class Level:
    """One shared prefix a marker can end: its key, size, blocks, and how many requests share
    it."""

    prefix: str
    tokens: int
    blocks: int
    shared_by: int


@dataclass(frozen=True)
class Group:
    """Queued requests of one model sharing one prefix (`prefix` "" and 0 tokens: none shared)."""

    model: str
    prefix: str
    tokens: int
    blocks: int
    members: tuple[int, ...]
    """Indices into the requests given to `group`, in their order."""
    outer: Level | None = None
    """The longest shorter prefix that more requests share (tools and system under a
    per-customer document), if any."""

    @property
    def inner(self) -> Level:
        return Level(self.prefix, self.tokens, self.blocks, len(self.members))


def group(requests: Sequence[Mapping[str, Any]]) -> list[Group]:
    """Group requests by the longest prefix each shares with another request of its model.

    Groups come largest prefix first (then by first member); requests that share nothing form
    one group per model with an empty prefix."""
    models = [str(r.get("model", "")) for r in requests]
    return group_cuts(models, [cuts(r) for r in requests])


def too_short(params_json: str) -> bool:
    """Whether no prefix of a request can reach `CACHE_MIN_TOKENS` by the estimate, told from
    its JSON text alone (no parse): ASCII JSON shorter than the minimum at four characters a
    token, with no tools. Each block's estimate is at most its own JSON text over four plus
    the per-block slack the JSON around it pays for, except a tool's fixed 20 tokens (hence no
    tools) and a non-ASCII character a canonical key escapes to six (hence ASCII)."""
    return (
        len(params_json) < CACHE_MIN_TOKENS * 4
        and params_json.isascii()
        and '"tools"' not in params_json
    )


def cuts(params: Mapping[str, Any]) -> list[Cut]:
    """Where a request's prefix could end: after each of its blocks but the last."""
    return _cuts(str(params.get("model", "")), blocks(params))


def group_cuts(models: Sequence[str], cuts: Sequence[Sequence[Cut]]) -> list[Group]:
    """`group` from each request's model and `cuts` (kept by a caller that groups the same
    requests again)."""
    seen = Counter(c.key for per in cuts for c in per)
    found: dict[tuple[str, str], list[int]] = {}
    shape: dict[tuple[str, str], tuple[Cut, Level | None]] = {}
    for index, (model, per) in enumerate(zip(models, cuts, strict=True)):
        shared = [c for c in per if seen[c.key] >= 2]
        cut = shared[-1] if shared else Cut("", 0, 0)
        key = (model, cut.key)
        found.setdefault(key, []).append(index)
        if key not in shape:
            shape[key] = (cut, _outer(shared, seen))
    groups = [
        Group(model, prefix, cut.tokens, cut.count, tuple(m), outer)
        for (model, prefix), m in found.items()
        for cut, outer in [shape[(model, prefix)]]
    ]
    return sorted(groups, key=lambda g: (-g.tokens, g.members[0]))


def _outer(shared: Sequence[Cut], seen: Counter[str]) -> Level | None:
    """The longest of a request's shared cuts before its last that more requests share."""
    if not shared:
        return None
    inner = seen[shared[-1].key]
    for cut in reversed(shared[:-1]):
        if seen[cut.key] > inner:
            return Level(cut.key, cut.tokens, cut.count, seen[cut.key])
    return None


@dataclass(frozen=True)
class PrefixCost:
    """The expected input cost of a group's shared prefix, USD, at the rates given."""

    plain: Decimal
    planned: Decimal

    @property
    def pays(self) -> bool:
        return self.planned < self.plain


def prefix_cost(g: Group, rates: Rates) -> PrefixCost:
    """Plain: every request pays the prefix as fresh input. Planned (primed): one 1-hour write,
    then n-1 reads. Pass batch-scaled rates for batch prices; they scale both alike."""
    per_token = Decimal(g.tokens) / Decimal(1_000_000)
    n = len(g.members)
    plain = n * per_token * rates.input
    if not g.prefix or g.tokens < CACHE_MIN_TOKENS:
        return PrefixCost(plain, plain)
    planned = per_token * (rates.cache_write_1h + (n - 1) * rates.cache_read)
    return PrefixCost(plain, planned)


def plans(g: Group, rates: Rates | None, mode: CacheMode) -> bool:
    """Whether nowait primes and marks this group's own prefix: `auto`, a prefix worth caching,
    and the write premium paid back by the expected reads (an unpriced model: no)."""
    if mode != "auto" or rates is None:
        return False
    return prefix_cost(g, rates).pays


def _level_pays(level: Level, start: int, rates: Rates) -> bool:
    """Whether the tokens of `level` after `start` (a primed outer level's end) are worth a
    1-hour write and its sharers' reads: the whole prefix must reach the cache minimum."""
    if level.tokens <= start or level.tokens < CACHE_MIN_TOKENS:
        return False
    n = level.shared_by  # per token of the part: one write and n-1 reads against n fresh
    return rates.cache_write_1h + (n - 1) * rates.cache_read < n * rates.input


def levels(g: Group, rates: Rates | None, mode: CacheMode) -> tuple[Level, ...]:
    """The prefixes nowait marks for a group, outermost first: the outer one when it pays for
    all who share it, then the group's own when its part past the outer one pays for the
    group; without a paying outer level, the group's own when `plans` says so."""
    if mode != "auto" or rates is None or not g.prefix:
        return ()
    inner = g.inner
    if g.outer is not None and _level_pays(g.outer, 0, rates):
        return (g.outer, inner) if _level_pays(inner, g.outer.tokens, rates) else (g.outer,)
    return (inner,) if _level_pays(inner, 0, rates) else ()


def batch_rates(prices: PriceTable, model: str, prompt_tokens: int) -> Rates | None:
    """A model's batch-tier rates (None: the table does not price it)."""
    price = prices.lookup(model)
    factor = prices.tier_factor(Tier.BATCH)
    if price is None or factor is None:
        return None
    return price.rates_for(prompt_tokens).scaled(factor)


def planned_levels(g: Group, prices: PriceTable, mode: CacheMode) -> tuple[Level, ...]:
    """The levels the router marks for a group: `levels` at its model's batch rates."""
    return levels(g, batch_rates(prices, g.model, g.tokens), mode)


@dataclass(frozen=True)
class Traffic:
    """Prompt tokens by what the batch cache does with them when planned levels run primed:
    sent as fresh input, written for an hour, or read."""

    fresh: int = 0
    written: int = 0
    read: int = 0

    def __add__(self, other: Traffic) -> Traffic:
        return Traffic(
            self.fresh + other.fresh, self.written + other.written, self.read + other.read
        )

    @property
    def cached(self) -> int:
        return self.written + self.read

    @property
    def tokens(self) -> int:
        return self.fresh + self.cached

    def cost(self, rates: Rates) -> Decimal:
        """USD at `rates` (batch-scaled rates give batch prices)."""
        fresh = self.fresh * rates.input
        cached = self.written * rates.cache_write_1h + self.read * rates.cache_read
        return (fresh + cached) / Decimal(1_000_000)


@dataclass(frozen=True)
class GroupCost:
    """One row of the plan at batch prices, plain and as the router runs it (None: the model
    has no price): a prefix group, or a level several groups share (`shared`) whose part of
    the prompt is priced once for all of them while their rows price the rest."""

    group: Group
    """The row's requests and prefix; for a shared level, every request marked at it."""
    prompt_tokens: int
    """The prompt tokens this row prices: a group under a shared level, all but that level's."""
    planned: bool
    """Whether any of the row's tokens are written or read (its own level is marked)."""
    plain: Decimal | None
    with_planning: Decimal | None
    traffic: Traffic = field(default_factory=Traffic)
    parent: str | None = None
    """The prefix of the shared level this group is priced under (None: none)."""
    start: int = 0
    """Where the row's own part of the prefix begins: the parent level's tokens."""
    shared: bool = False
    rates: Rates | None = None
    """The batch rates the row is priced at (its longest prompt picks long-context rates)."""

    @property
    def own_tokens(self) -> int:
        """The prefix tokens this row itself writes and reads (past its parent level)."""
        return max(0, self.group.tokens - self.start)


def group_costs(
    requests: Sequence[Mapping[str, Any]], prices: PriceTable, mode: CacheMode
) -> list[GroupCost]:
    """Each prefix group's input in batches, plain and as the router would run it: every level
    it marks (`planned_levels`, where `placed` finds room) written once by a primer and read
    by every other request marked there; the rest fresh. A marked outer level is a row of its
    own, before the groups that share it.

    Rows come as the router primes: outer levels and groups alone largest prefix first, each
    outer level followed by its groups."""
    sizes = [sum(b.tokens for b in blocks(r)) for r in requests]
    groups = group(requests)
    marked = [planned_levels(g, prices, mode) for g in groups]
    shared = {  # outer levels marked: a row each, priced once for all their groups
        g.outer.prefix: g.outer
        for g, at in zip(groups, marked, strict=True)
        if g.outer is not None and g.outer in at
    }
    levels_of: dict[str, Traffic] = {}
    members_of: dict[str, list[int]] = {}
    model_of: dict[str, str] = {}
    written: set[str] = set()
    rows: list[GroupCost] = []
    for g, at in zip(groups, marked, strict=True):
        own = Traffic()
        parent: Level | None = None
        for i in g.members:
            for level, part in _billed(placed(requests[i], at), sizes[i], written):
                if level is not None and level.prefix in shared:
                    parent = shared[level.prefix]
                    levels_of[level.prefix] = levels_of.get(level.prefix, Traffic()) + part
                    members_of.setdefault(level.prefix, []).append(i)
                    model_of[level.prefix] = g.model
                else:
                    own += part
        start = parent.tokens if parent is not None else 0
        key = parent.prefix if parent is not None else None
        rows.append(_row(g, own, sizes, prices, parent=key, start=start))
    for prefix, traffic in levels_of.items():
        level, members = shared[prefix], tuple(sorted(members_of[prefix]))
        g = Group(model_of[prefix], prefix, level.tokens, level.blocks, members)
        rows.append(_row(g, traffic, sizes, prices, shared=True))
    return _ordered(rows)


def _billed(
    at: Sequence[Level], size: int, written: set[str]
) -> Iterator[tuple[Level | None, Traffic]]:
    """What one request's prompt costs in the cache, level by level (outermost first), then its
    tail (None): the deepest level already written is read with all before it, every deeper
    one written (the emulator's and the API's reading of breakpoints)."""
    read_to = max((n for n, lv in enumerate(at) if lv.prefix in written), default=-1)
    start = 0
    for n, level in enumerate(at):
        part = level.tokens - start
        yield level, Traffic(read=part) if n <= read_to else Traffic(written=part)
        written.add(level.prefix)
        start = level.tokens
    yield None, Traffic(fresh=size - start)


def _row(
    g: Group,
    traffic: Traffic,
    sizes: Sequence[int],
    prices: PriceTable,
    *,
    parent: str | None = None,
    start: int = 0,
    shared: bool = False,
) -> GroupCost:
    rates = batch_rates(prices, g.model, max(sizes[i] for i in g.members))
    plain = with_planning = None
    if rates is not None:
        plain = Traffic(fresh=traffic.tokens).cost(rates)
        with_planning = traffic.cost(rates)
    return GroupCost(
        g, traffic.tokens, traffic.cached > 0, plain, with_planning, traffic,
        parent=parent, start=start, shared=shared, rates=rates,
    )  # fmt: skip


def _ordered(rows: Sequence[GroupCost]) -> list[GroupCost]:
    """Shared levels and groups alone by largest prefix (then first request), each shared
    level followed by its groups in the same order."""

    def order(row: GroupCost) -> tuple[int, int]:
        return -row.group.tokens, row.group.members[0]

    children: dict[str, list[GroupCost]] = {}
    for row in rows:
        if row.parent is not None:
            children.setdefault(row.parent, []).append(row)
    out: list[GroupCost] = []
    for row in sorted((r for r in rows if r.parent is None), key=order):
        out.append(row)
        if row.shared:
            out.extend(sorted(children.get(row.group.prefix, []), key=order))
    return out


def placed(params: Mapping[str, Any], at: Sequence[Level]) -> list[Level]:
    """The levels of `at` that `mark` puts a breakpoint at in `params`, outermost first."""
    return sorted((level for level, _ in _placements(params, at)), key=lambda lv: lv.blocks)


def _placements(
    params: Mapping[str, Any], at: Sequence[Level]
) -> list[tuple[Level, tuple[str | int, ...]]]:
    """Where each level gets its marker, innermost first (it alone lets a request read its
    whole prefix): the user's markers stay where they are, four breakpoints at most, and no
    1-hour marker after a user's 5-minute one (the API requires longer lifetimes first)."""
    parts = [(where, _marker(value)) for where, value in places(params)]  # no keys: cheap
    room = MAX_BREAKPOINTS - breakpoints(params)
    out: list[tuple[Level, tuple[str | int, ...]]] = []
    for level in sorted(at, key=lambda lv: -lv.blocks):
        if room <= 0 or not level.prefix or not 0 < level.blocks <= len(parts):
            continue
        where, marker = parts[level.blocks - 1]
        if marker is not None or any(m == "5m" for _, m in parts[: level.blocks]):
            continue
        out.append((level, where))
        room -= 1
    return out


def mark(params: Mapping[str, Any], at: Group | Sequence[Level]) -> dict[str, Any]:
    """A copy of `params` with a 1-hour breakpoint at the end of each prefix level (a group:
    its own prefix), where it fits (`_placements`)."""
    out = dict(params)  # `_put_marker` copies what it changes
    for _, where in _placements(params, [at.inner] if isinstance(at, Group) else list(at)):
        _put_marker(out, where)
    return out


def _put_marker(params: dict[str, Any], where: tuple[str | int, ...]) -> None:
    """Mark the block at `where`, copying only the containers on the way to it (the caller's
    request is shared, never changed)."""
    if where[0] == "tools":
        tools = params["tools"] = list(params["tools"])
        tools[int(where[1])] = {**tools[int(where[1])], "cache_control": dict(ONE_HOUR)}
        return
    if where[0] == "system":
        system = params["system"]
        holder = [system] if isinstance(system, str) else list(system)
        params["system"], index = holder, int(where[1])
    else:
        messages = params["messages"] = list(params["messages"])
        message = messages[int(where[1])] = dict(messages[int(where[1])])
        content = message["content"]
        holder = [content] if isinstance(content, str) else list(content)
        message["content"], index = holder, int(where[2])
    block = holder[index]
    if isinstance(block, str):
        block = {"type": "text", "text": block}
    if isinstance(block, Mapping) and block.get("type") in _MARKABLE:
        block = {**block, "cache_control": dict(ONE_HOUR)}
    holder[index] = block


PROBE: dict[str, Any] = {"role": "user", "content": "."}
"""A one-token user turn: `count_tokens` needs a message after a prefix of tools or system."""


def counted_prefix(params: Mapping[str, Any], count: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two prompts whose `count_tokens` difference is the size of the first `count` blocks of
    `params`: those blocks and the probe turn, and the probe turn alone."""
    prefix: dict[str, Any] = {"model": params.get("model")}
    left = count
    tools = list(params.get("tools") or [])
    if tools and left > 0:
        prefix["tools"], left = tools[:left], left - min(left, len(tools))
    system = params.get("system")
    parts = [system] if isinstance(system, str) else list(system or [])
    if parts and left > 0:
        kept = parts[:left]
        prefix["system"] = system if isinstance(system, str) else kept
        left -= len(kept)
    messages: list[Any] = []
    for message in params.get("messages") or []:
        if left <= 0 or not isinstance(message, Mapping):
            break
        content = message.get("content")
        blocks_of = [content] if isinstance(content, str) else list(content or [])
        kept = blocks_of[:left]
        messages.append({**message, "content": content if isinstance(content, str) else kept})
        left -= len(kept)
    prefix["messages"] = [*messages, PROBE]
    return prefix, {"model": params.get("model"), "messages": [PROBE]}
