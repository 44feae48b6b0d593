"""Cache-aware packing in the worker: jobs of one prefix go out adjacent; with `cache = "auto"`
a group worth it is primed (one request sent alone first) and the rest, sent once the primer's
batch has ended, carry a 1-hour breakpoint at each paying prefix level so they read what it
wrote.

Priming is done with a batch, never a real-time call: the API keeps the Message Batches cache
apart from the Messages cache (a prefix a real-time call wrote is not read by a batch; the
emulator models this), so only a batch can write what a batch reads. A job waits for its
group's primer when the deadline guard would still send it as a batch once the primer's batch
has ended (the forecast's 95th percentile for a one-request batch, `can_wait`); a job that
cannot wait goes at once, marked only at levels already primed.

What was primed is known in memory and, after a restart, read back from the store: jobs of
batches that ended within `PRIMED_FOR` and wrote or read a 1-hour entry say their prefix is
warm, and an open batch holding a member of a group is waited for as that group's primer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import orjson

from nowait.errors import BackendError
from nowait.route.cacheplan import (
    Cut,
    Group,
    Level,
    counted_prefix,
    cuts,
    group_cuts,
    mark,
    planned_levels,
    too_short,
)
from nowait.route.packing import Member
from nowait.settings import CacheMode
from nowait.sort.pricing import PriceTable
from nowait.store import Job

PRIMED_FOR = timedelta(minutes=50)
"""How long after the last use nowait counts on a 1-hour entry still being there (reads
refresh it when they run, which may be later than planned): after that a group is primed
again rather than have a whole batch write the prefix at twice the input price."""

RESTORED = -1
"""The primer batch of a prefix known warm from the store (it ended before a restart)."""

Waits = Callable[[Job, int], bool]
"""Whether a job can wait for `rounds` primer batches before its own goes (`can_wait`)."""
Counter = Callable[[dict[str, Any]], int]
"""The API's `count_tokens` of a prompt."""
CacheHistory = Callable[[datetime], Iterable[tuple[str, int, datetime]]]
"""`Store.cached_prefixes`: (params_json, cached prefix tokens, batch ended_at) of batch jobs
that wrote or read a cache entry in batches ended since a moment."""


def can_wait(
    deadline: datetime | None,
    now: datetime,
    rounds: int,
    primer_wait: timedelta,
    batches_at: Callable[[datetime], bool],
) -> bool:
    """Whether a job can be held for `rounds` primer batches, each forecast to take
    `primer_wait`: no deadline, or the guard would still send it as a batch then
    (`batches_at(moment)`: `guard.policy.worth_batching` at that moment)."""
    if deadline is None or rounds <= 0:
        return True
    return batches_at(now + rounds * primer_wait)


def _params(member: Member) -> dict[str, Any] | None:
    try:
        params = orjson.loads(member.params_json)
    except orjson.JSONDecodeError:
        return None
    return params if isinstance(params, dict) else None


@dataclass(frozen=True)
class Arranged:
    primers: list[Member]
    """One member a prefix level to prime, to send alone first."""
    ready: list[Member]
    """The rest to pack now, each prefix group adjacent."""
    held: set[int]
    """Job ids waiting for their group's primer."""
    priming: set[str] = field(default_factory=set)
    """Prefixes the primers chosen so far write."""


@dataclass
class Priming:
    mode: CacheMode
    prices: PriceTable
    count: Counter | None = None
    """Size shared prefixes with the API's `count_tokens` (None: the guard's estimate)."""
    history: CacheHistory | None = None
    """Where warm prefixes are read back from after a restart (None: nowhere)."""
    open_members: Callable[[], Iterable[tuple[int, str]]] | None = None
    """(batch id, params_json) of the open batches' requests, read once after a restart."""
    _primers: dict[str, int] = field(default_factory=dict)
    """Prefix → the batch priming it (`RESTORED`: one that ended before a restart)."""
    _primed_at: dict[str, datetime] = field(default_factory=dict)
    """Prefix → when its entry was last known fresh (its primer ended, or a group was sent
    to read it)."""
    _unverified: set[int] = field(default_factory=set)
    """Open batches found after a restart: whether they wrote a prefix is read from the store
    once they end."""
    _restored: bool = False
    _known: dict[int, tuple[str, list[Cut]] | None] = field(default_factory=dict)
    """Job id → its model and cuts, for jobs held for a primer."""
    _sizes: dict[str, int] = field(default_factory=dict)
    """Prefix → its `count_tokens` size."""
    _marks: dict[str, tuple[Level, ...]] = field(default_factory=dict)
    """custom_id → the prefix levels its params get marked at."""
    _awaited: set[str] = field(default_factory=set)
    """Prefixes jobs held this planning pass wait for."""

    def new_pass(self) -> None:
        """A planning pass starts: what held jobs wait for is found again."""
        self._awaited.clear()

    def awaited_batches(self) -> set[int]:
        """The primer batches the jobs held in the last planning pass wait for."""
        return {b for p in self._awaited if (b := self._primers.get(p, RESTORED)) != RESTORED}

    def arrange(
        self,
        pairs: list[tuple[Job, Member]],
        now: datetime,
        ended: Callable[[int], bool],
        waits: Waits = lambda job, rounds: True,
    ) -> Arranged:
        """Order one model's members by prefix group; pick primers and hold what waits."""
        if self.mode == "off" or len(pairs) < 2:
            return Arranged([], [m for _, m in pairs], set())
        self._restore(now)
        arranged = Arranged([], [], set())
        if self.count is None:  # sized by the estimate: a short request is never worth parsing
            arranged.ready.extend(m for _, m in pairs if too_short(m.params_json))
            pairs = [(job, m) for job, m in pairs if not too_short(m.params_json)]
        known = {job.id: self._known.get(job.id) or self._read(m) for job, m in pairs}
        # What cannot be read goes out as it is: the submit's quarantine finds the culprit.
        arranged.ready.extend(m for job, m in pairs if known[job.id] is None)
        pairs = [(job, m) for job, m in pairs if known[job.id] is not None]
        read = [k for job, _ in pairs if (k := known[job.id]) is not None]
        for g in group_cuts([model for model, _ in read], [c for _, c in read]):
            self._arrange_group(g, [pairs[i] for i in g.members], now, ended, waits, arranged)
        for job, _ in pairs:  # held jobs are grouped again next pass: keep their cuts
            if job.id in arranged.held:
                self._known[job.id] = known[job.id]
            else:
                self._known.pop(job.id, None)
        return arranged

    def _arrange_group(
        self,
        g: Group,
        members: list[tuple[Job, Member]],
        now: datetime,
        ended: Callable[[int], bool],
        waits: Waits,
        arranged: Arranged,
    ) -> None:
        planned = self._levels(g, members[0][1])
        if not planned:
            arranged.ready.extend(m for _, m in members)
            return
        warm = [lv for lv in planned if self._warm(lv.prefix, now, ended)]
        if planned[-1] in warm:  # primed: every member reads it (and refreshes it)
            for lv in planned:
                self._primed_at[lv.prefix] = now
            arranged.ready.extend(self._marked(m, planned) for _, m in members)
            return
        cold = [lv for lv in planned if lv not in warm]
        waiting: list[tuple[Job, Member]] = []
        for job, member in members:
            if waits(job, len(cold)):
                waiting.append((job, member))
            else:  # goes now, reading what is already primed
                arranged.ready.append(self._marked(member, warm))
        if cold[0].prefix in self._primers or cold[0].prefix in arranged.priming:  # being primed
            arranged.held.update(job.id for job, _ in waiting)
            self._awaited.add(cold[0].prefix)
            return
        fewer = replace(g, members=tuple(range(len(waiting))))
        still = {lv.prefix for lv in self._levels(fewer, members[0][1])}
        if not waiting or cold[0].prefix not in still:
            arranged.ready.extend(self._marked(m, warm) for _, m in waiting)
            return
        (_, primer), *rest = waiting
        arranged.primers.append(self._marked(primer, planned))
        arranged.priming.update(lv.prefix for lv in cold)
        arranged.held.update(job.id for job, _ in rest)
        self._awaited.add(cold[0].prefix)

    def _levels(self, g: Group, member: Member) -> tuple[Level, ...]:
        """The group's paying levels, sized by `count_tokens` when allowed."""
        if self.mode != "auto" or not g.prefix:
            return ()
        if self.count is not None:
            params = _params(member)
            if params is not None:
                outer = g.outer and replace(g.outer, tokens=self._size(g.outer, params))
                g = replace(g, tokens=self._size(g.inner, params), outer=outer)
        return planned_levels(g, self.prices, self.mode)

    def _size(self, level: Level, params: dict[str, Any]) -> int:
        if level.prefix not in self._sizes and self.count is not None:
            with_prefix, probe = counted_prefix(params, level.blocks)
            try:
                self._sizes[level.prefix] = self.count(with_prefix) - self.count(probe)
            except BackendError:  # a refused or failed count: the estimate, asked again later
                return level.tokens
        return self._sizes.get(level.prefix, level.tokens)

    def _warm(self, prefix: str, now: datetime, ended: Callable[[int], bool]) -> bool:
        batch = self._primers.get(prefix)
        if batch is None or (batch != RESTORED and not ended(batch)):
            return False
        if batch in self._unverified:  # found open after a restart: did it write the prefix?
            self._unverified.discard(batch)
            for key in [k for k, b in self._primers.items() if b == batch]:
                del self._primers[key]  # known again from the store, or primed again
            self._read_history(now)
            return self._warm(prefix, now, ended)
        last = self._primed_at.setdefault(prefix, now)
        if now - last < PRIMED_FOR:
            return True
        del self._primers[prefix], self._primed_at[prefix]  # may have lapsed: prime again
        return False

    def _restore(self, now: datetime) -> None:
        """Once, after a (re)start: what the store says is warm or being primed."""
        if self._restored:
            return
        self._restored = True
        self._read_history(now)
        for batch_id, params_json in self.open_members() if self.open_members else ():
            params = _params(Member(0, "", params_json))
            for cut in cuts(params) if params is not None else ():
                if cut.key not in self._primers:
                    self._primers[cut.key] = batch_id
                    self._unverified.add(batch_id)

    def _read_history(self, now: datetime) -> None:
        """Prefixes jobs of recently ended batches wrote or read: every cut of theirs up to
        the tokens the API reported as cached (estimates never exceed the API's count)."""
        rows = self.history(now - PRIMED_FOR) if self.history else ()
        for params_json, cached, ended_at in rows:
            params = _params(Member(0, "", params_json))
            for cut in cuts(params) if params is not None else ():
                if cut.tokens > cached or self._primers.get(cut.key, RESTORED) != RESTORED:
                    continue
                self._primers[cut.key] = RESTORED
                self._primed_at[cut.key] = max(ended_at, self._primed_at.get(cut.key, ended_at))

    @staticmethod
    def _read(member: Member) -> tuple[str, list[Cut]] | None:
        params = _params(member)
        return None if params is None else (str(params.get("model", "")), cuts(params))

    def primer_planned(self, member: Member, batch_id: int) -> None:
        for level in self._marks.get(member.custom_id, ()):
            if level.prefix not in self._primers:  # the levels it primes, not those it reads
                self._primers[level.prefix] = batch_id
                self._primed_at.pop(level.prefix, None)

    def _marked(self, member: Member, at: Sequence[Level]) -> Member:
        if not at:
            return member
        self._marks[member.custom_id] = tuple(at)
        return Member(member.job_id, member.custom_id, member.params_json, markers=len(at))

    def params(self, requests: Iterable[tuple[str, str]]) -> Iterator[tuple[str, str]]:
        """The (custom_id, params_json) pairs to send, planned markers added; the stored
        requests are not touched."""
        for custom_id, params_json in requests:
            at = self._marks.get(custom_id)
            if at is None:
                yield custom_id, params_json
            else:
                marked = mark(orjson.loads(params_json), at)
                yield custom_id, orjson.dumps(marked).decode()

    def sent(self, custom_ids: Iterable[str]) -> None:
        """The API holds these requests: their markers are no longer needed."""
        for custom_id in custom_ids:
            self._marks.pop(custom_id, None)
