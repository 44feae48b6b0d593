"""Cache-aware packing in the worker: jobs of one prefix go out adjacent; with `cache = "auto"`
a group worth it is primed (one request sent alone first) and the rest, sent once the primer's
batch has ended, carry a 1-hour breakpoint so they read what it wrote.

The bookkeeping lives in memory: after a restart a group is primed again (one more write),
and a batch planned before it goes out unmarked (no saving, never a cost).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import orjson

from nowait.route.cacheplan import Cut, Group, batch_rates, cuts, group_cuts, mark, plans
from nowait.route.packing import Member
from nowait.settings import CacheMode
from nowait.sort.pricing import PriceTable
from nowait.store import Job

PRIME_HOLD_LEFT = timedelta(hours=25)
"""Time a job must have left to wait for its group's primer: a batch may take 24 hours, and
a job that cannot afford a second batch goes out at once, unmarked."""


def _can_wait(job: Job, now: datetime) -> bool:
    return job.deadline is None or job.deadline - now >= PRIME_HOLD_LEFT


def _params(member: Member) -> dict[str, Any] | None:
    try:
        params = orjson.loads(member.params_json)
    except orjson.JSONDecodeError:
        return None
    return params if isinstance(params, dict) else None


PRIMED_FOR = timedelta(minutes=50)
"""How long after the last use nowait counts on a 1-hour entry still being there (reads
refresh it when they run, which may be later than planned): after that a group is primed
again rather than have a whole batch write the prefix at twice the input price."""


@dataclass(frozen=True)
class Arranged:
    primers: list[Member]
    """One member a group to send alone first."""
    ready: list[Member]
    """The rest to pack now, each prefix group adjacent."""
    held: set[int]
    """Job ids waiting for their group's primer."""


@dataclass
class Priming:
    mode: CacheMode
    prices: PriceTable
    _primers: dict[str, int] = field(default_factory=dict)
    """Prefix → the planned batch priming it."""
    _primed_at: dict[str, datetime] = field(default_factory=dict)
    """Prefix → when its entry was last known fresh (its primer ended, or a group was sent
    to read it)."""
    _known: dict[int, tuple[str, list[Cut]] | None] = field(default_factory=dict)
    """Job id → its model and cuts, for jobs held for a primer."""
    _marks: dict[str, Group] = field(default_factory=dict)
    """custom_id → the group whose prefix its params get marked at."""

    def arrange(
        self,
        pairs: list[tuple[Job, Member]],
        now: datetime,
        ended: Callable[[int], bool],
    ) -> Arranged:
        """Order one model's members by prefix group; pick primers and hold what waits."""
        if self.mode == "off" or len(pairs) < 2:
            return Arranged([], [m for _, m in pairs], set())
        known = {job.id: self._known.get(job.id) or self._read(m) for job, m in pairs}
        # What cannot be read goes out as it is: the submit's quarantine finds the culprit.
        arranged = Arranged([], [m for job, m in pairs if known[job.id] is None], set())
        pairs = [(job, m) for job, m in pairs if known[job.id] is not None]
        read = [k for job, _ in pairs if (k := known[job.id]) is not None]
        groups = group_cuts([model for model, _ in read], [c for _, c in read])
        for g in groups:
            members = [pairs[i] for i in g.members]
            if not self._pays(g):
                arranged.ready.extend(m for _, m in members)
                continue
            batch = self._primers.get(g.prefix)
            if batch is not None and ended(batch):
                last = self._primed_at.setdefault(g.prefix, now)
                if now - last < PRIMED_FOR:  # primed: every member reads it (and refreshes it)
                    self._primed_at[g.prefix] = now
                    arranged.ready.extend(self._marked(m, g) for _, m in members)
                    continue
                batch = None  # the entry may have lapsed: prime again
                del self._primers[g.prefix], self._primed_at[g.prefix]
            waiting = [p for p in members if _can_wait(p[0], now)]
            arranged.ready.extend(m for job, m in members if not _can_wait(job, now))
            if batch is None:
                if not self._pays(replace(g, members=tuple(range(len(waiting))))):
                    arranged.ready.extend(m for _, m in waiting)
                    continue
                (_, primer), *waiting = waiting
                arranged.primers.append(self._marked(primer, g))
            arranged.held.update(job.id for job, _ in waiting)
        for job, _ in pairs:  # held jobs are grouped again next pass: keep their cuts
            if job.id in arranged.held:
                self._known[job.id] = known[job.id]
            else:
                self._known.pop(job.id, None)
        return arranged

    @staticmethod
    def _read(member: Member) -> tuple[str, list[Cut]] | None:
        params = _params(member)
        return None if params is None else (str(params.get("model", "")), cuts(params))

    def primer_planned(self, member: Member, batch_id: int) -> None:
        g = self._marks.get(member.custom_id)
        if g is not None:
            self._primers[g.prefix] = batch_id

    def _pays(self, g: Group) -> bool:
        return plans(g, batch_rates(self.prices, g.model, g.tokens), self.mode)

    def _marked(self, member: Member, g: Group) -> Member:
        self._marks[member.custom_id] = g
        return Member(member.job_id, member.custom_id, member.params_json, marked=True)

    def params(self, requests: Iterable[tuple[str, str]]) -> Iterator[tuple[str, str]]:
        """The (custom_id, params_json) pairs to send, planned markers added; the stored
        requests are not touched."""
        for custom_id, params_json in requests:
            g = self._marks.get(custom_id)
            if g is None:
                yield custom_id, params_json
            else:
                marked = mark(orjson.loads(params_json), g)
                yield custom_id, orjson.dumps(marked).decode()

    def sent(self, custom_ids: Iterable[str]) -> None:
        """The API holds these requests: their markers are no longer needed."""
        for custom_id in custom_ids:
            self._marks.pop(custom_id, None)
