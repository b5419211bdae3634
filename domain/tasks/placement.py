"""Where a task goes: pure functions of the candidates, their loads and a strategy."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

# Labels a task's selector (or prefer) names, as sorted (label, value) pairs.
Selector = tuple[tuple[str, str], ...]


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
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def free(self) -> int:
        return self.capacity - self.load

    def runs(self, kind: str | None) -> bool:
        """True if the agent runs tasks of this kind (None: the kind does not matter)."""
        return kind is None or not self.kinds or kind in self.kinds

    def matches(self, selector: Selector) -> bool:
        """True if the agent has every label the selector names, with that value."""
        labels = self.labels
        return all(labels.get(label) == value for label, value in selector)


def is_eligible(candidate: Candidate, requires: Iterable[str], kind: str | None = None,
                selector: Selector = ()) -> bool:
    """Healthy (so neither draining, suspect nor dead), capable, runs the kind, has the
    labels, has room."""
    return (
        candidate.status == "healthy"
        and candidate.free > 0
        and candidate.capabilities.issuperset(requires)
        and candidate.runs(kind)
        and candidate.matches(selector)
    )


def preferring(selector: Selector, prefer: Selector) -> Selector:
    """The selector an agent with the preferred labels too matches: tried first."""
    return tuple(sorted(set(selector) | set(prefer)))


def choose(
    candidates: Sequence[Candidate],
    requires: Iterable[str],
    strategy: Strategy = Strategy.LEAST_LOADED,
    after: str = "",
    exclude: frozenset[str] = frozenset(),
    kind: str | None = None,
    selector: Selector = (),
    prefer: Selector = (),
) -> Candidate | None:
    """The agent a task should go to, or None if no agent can take it now.

    `after` is the round-robin cursor: the agent id chosen last time.
    `kind` is the task's kind: agents that declared the kinds they run get only those.
    `exclude` names agents the task must not go back to (e.g. one that let it time out),
    unless no other agent can take it.
    `selector` names labels the agent must have; `prefer`, labels that rank the agents
    having them before the others.
    """
    needed = frozenset(requires)
    eligible = [c for c in candidates if is_eligible(c, needed, kind, selector)]
    if prefer:
        wanted = preferring(selector, prefer)
        eligible = [c for c in eligible if c.matches(wanted)] or eligible
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


# Why a task waits, in the order placement checks an agent: each agent is counted under
# the first check it fails, so the counts add up to the agents that have not left.
NO_AGENTS = "no_agents"
NO_CAPABILITY = "no_capability"
KIND_NOT_RUN = "kind_not_run"
NO_LABELS = "selector_unmatched"
NOT_HEALTHY = "not_healthy"
DRAINING = "draining"
AT_CAPACITY = "at_capacity"
PLACEABLE = "placeable"


@dataclass(frozen=True)
class WaitReason:
    """One reason no agent takes a task, and how many agents it applies to."""

    code: str
    message: str
    count: int  # the agents it rules out; for `placeable`, those that could take the task


def why_waiting(candidates: Iterable[Candidate], requires: Iterable[str],
                kind: str | None = None, selector: Selector = ()) -> list[WaitReason]:
    """Why no agent takes a task with these requirements now, by reason and count."""
    needed = frozenset(requires)
    present = [c for c in candidates if c.status != "left"]
    if not present and not needed:
        return [WaitReason(NO_AGENTS, "no agent is registered", 0)]
    buckets: dict[str, list[Candidate]] = {}
    for candidate in present:
        buckets.setdefault(_first_refusal(candidate, needed, kind, selector),
                           []).append(candidate)
    live = [c for c in present if c.status != "dead"]
    reasons = []
    missing = sorted(needed - frozenset().union(*(c.capabilities for c in live)))
    lacking = len(buckets.get(NO_CAPABILITY, []))
    if missing or lacking:
        message = (f"no live agent has {_capabilities(missing)}" if missing
                   else f"{_agents(lacking)} {'lacks' if lacking == 1 else 'lack'} "
                        f"{_capabilities(sorted(needed))}")
        reasons.append(WaitReason(NO_CAPABILITY, message, lacking))
    if buckets.get(KIND_NOT_RUN):
        count = len(buckets[KIND_NOT_RUN])
        anyone = any(c.capabilities >= needed and c.runs(kind) for c in live)
        message = (f"{_agents(count, 'capable ')} {'does' if count == 1 else 'do'} not run "
                   f"kind {kind}" if anyone else
                   f"no live {'capable ' if needed else ''}agent runs kind {kind}")
        reasons.append(WaitReason(KIND_NOT_RUN, message, count))
    if buckets.get(NO_LABELS):
        count = len(buckets[NO_LABELS])
        wanted = ", ".join(f"{label}={value}" for label, value in selector)
        reasons.append(WaitReason(NO_LABELS, f"selector {wanted} excludes "
                                             f"{_agents(count, 'capable ')}", count))
    if buckets.get(NOT_HEALTHY):
        unhealthy = buckets[NOT_HEALTHY]
        statuses = sorted({c.status for c in unhealthy}, key=lambda s: (s != "suspect", s))
        detail = ", ".join(f"{sum(c.status == s for c in unhealthy)} {s}" for s in statuses)
        reasons.append(WaitReason(NOT_HEALTHY, f"{_agents(len(unhealthy), 'capable ', True)} "
                                               f"not healthy ({detail})", len(unhealthy)))
    for code, state in ((DRAINING, "draining"), (AT_CAPACITY, "at capacity")):
        if buckets.get(code):
            count = len(buckets[code])
            reasons.append(WaitReason(code, f"{_agents(count, 'capable ', True)} {state}",
                                      count))
    if buckets.get(PLACEABLE):
        count = len(buckets[PLACEABLE])
        reasons.append(WaitReason(PLACEABLE, f"{_agents(count)} can take it now", count))
    return reasons


def _first_refusal(candidate: Candidate, needed: frozenset[str], kind: str | None,
                   selector: Selector = ()) -> str:
    if not candidate.capabilities.issuperset(needed):
        return NO_CAPABILITY
    if not candidate.runs(kind):
        return KIND_NOT_RUN
    if not candidate.matches(selector):
        return NO_LABELS
    if candidate.status not in ("healthy", "draining"):
        return NOT_HEALTHY
    if candidate.status == "draining":
        return DRAINING
    if candidate.free <= 0:
        return AT_CAPACITY
    return PLACEABLE


def _agents(count: int, adjective: str = "", verb: bool = False) -> str:
    """'1 capable agent is', '3 capable agents are' (or without the verb)."""
    noun = f"{count} {adjective}agent{'' if count == 1 else 's'}"
    return f"{noun} {'is' if count == 1 else 'are'}" if verb else noun


def _capabilities(names: Sequence[str]) -> str:
    return f"capabilit{'y' if len(names) == 1 else 'ies'} {', '.join(names)}"
