"""Where a task goes: pure functions of the candidates, their loads and a strategy."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum


class Strategy(StrEnum):
    LEAST_LOADED = "least_loaded"
    ROUND_ROBIN = "round_robin"
    BIN_PACK = "bin_pack"


@dataclass(frozen=True)
class Candidate:
    """An agent as placement sees it."""

    agent_id: str
    incarnation: int
    capabilities: frozenset[str]
    capacity: int
    load: int
    status: str
    # The task kinds the agent runs; empty means any kind.
    kinds: frozenset[str] = frozenset()

    @property
    def free(self) -> int:
        return self.capacity - self.load

    def runs(self, kind: str | None) -> bool:
        """True if the agent runs tasks of this kind (None: the kind does not matter)."""
        return kind is None or not self.kinds or kind in self.kinds


def is_eligible(candidate: Candidate, requires: Iterable[str], kind: str | None = None) -> bool:
    """Healthy (so neither draining, suspect nor dead), capable, runs the kind, has room."""
    return (
        candidate.status == "healthy"
        and candidate.free > 0
        and candidate.capabilities.issuperset(requires)
        and candidate.runs(kind)
    )


def choose(
    candidates: Sequence[Candidate],
    requires: Iterable[str],
    strategy: Strategy = Strategy.LEAST_LOADED,
    after: str = "",
    exclude: frozenset[str] = frozenset(),
    kind: str | None = None,
) -> Candidate | None:
    """The agent a task should go to, or None if no agent can take it now.

    `after` is the round-robin cursor: the agent id chosen last time.
    `kind` is the task's kind: agents that declared the kinds they run get only those.
    `exclude` names agents the task must not go back to (e.g. one that let it time out),
    unless no other agent can take it.
    """
    needed = frozenset(requires)
    eligible = [c for c in candidates if is_eligible(c, needed, kind)]
    preferred = [c for c in eligible if c.agent_id not in exclude] or eligible
    if not preferred:
        return None
    if strategy == Strategy.ROUND_ROBIN:
        ordered = sorted(preferred, key=lambda c: c.agent_id)
        return next((c for c in ordered if c.agent_id > after), ordered[0])
    if strategy == Strategy.BIN_PACK:
        return min(preferred, key=lambda c: (c.free, c.agent_id))
    return min(preferred, key=lambda c: (c.load / c.capacity, c.load, c.agent_id))


def queue_key(priority: int, submitted_position: int) -> tuple[int, int]:
    """Pending tasks are served by priority (higher first), then age (older first)."""
    return (-priority, submitted_position)
