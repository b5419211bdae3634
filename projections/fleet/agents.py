"""Agent health: every agent's registration and status, from events and heartbeats."""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

from domain import shared_values
from projections.log_event import LogEvent
from projections.status_counts import StatusCounts

_LIVENESS_BY_EVENT = {
    "Registered": "alive",
    "Reregistered": "alive",
    "Suspected": "suspect",
    "Recovered": "alive",
    "DeclaredDead": "dead",
}

NOT_RUNNING: list[str] = []
# Label values and service names a fleet repeats (a zone, a version, "web"), held once;
# past this many distinct values (a host name per agent fills it), values are kept as they
# come.
MAX_SHARED_STRINGS = 10_000
_shared_strings: dict[str, str] = {}
_NO_META: dict[str, str] = {}  # never mutated, like every shared value
_by_id = attrgetter("agent_id")


@dataclass(slots=True)
class AgentView:
    agent_id: str
    incarnation: int
    capabilities: list[str]
    capacity: int
    labels: dict[str, str]
    services: list[dict[str, Any]]
    registered_at: datetime
    updated_at: datetime
    liveness: str = "alive"
    draining: bool = False
    left: bool = False
    position: int = 0
    registration_event_id: str = ""
    last_event_id: str = ""
    last_heartbeat_at: datetime | None = None
    last_heartbeat_seq: int = 0
    load: float = 0.0
    # Shared while empty: heartbeats replace the list, never change it.
    running: list[str] = field(default_factory=lambda: NOT_RUNNING)
    # The task kinds it runs; empty: any. Shared like capabilities.
    kinds: list[str] = field(default_factory=lambda: NOT_RUNNING)
    # Out of placement until then (epoch seconds), for leaving assignments unaccepted
    # (MarkedUnresponsive), until readmitted; None: not.
    unresponsive_until: float | None = None
    # Its promise to report progress on a running task at least this often; None: none.
    progress_every_s: float | None = None

    @property
    def last_heard_at(self) -> datetime:
        """When this incarnation was last heard from: its newest heartbeat, or else its
        registration."""
        if self.last_heartbeat_at is None or self.last_heartbeat_at < self.registered_at:
            return self.registered_at
        return self.last_heartbeat_at

    @property
    def status(self) -> str:
        if self.left:
            return "left"
        if self.liveness in ("suspect", "dead"):
            return self.liveness
        if self.unresponsive_until is not None:
            return "unresponsive"
        return "draining" if self.draining else "healthy"

    def to_json(self) -> dict[str, Any]:
        return {
            "agent_id": self.agent_id,
            "status": self.status,
            "incarnation": self.incarnation,
            "capabilities": self.capabilities,
            "kinds": self.kinds,
            "capacity": self.capacity,
            "labels": self.labels,
            "services": self.services,
            "registered_at": self.registered_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "last_heartbeat_at": (
                self.last_heartbeat_at.isoformat() if self.last_heartbeat_at else None
            ),
            "load": self.load,
            "running": self.running,
            "position": self.position,
            "unresponsive_until": (
                datetime.fromtimestamp(self.unresponsive_until, UTC).isoformat()
                if self.unresponsive_until is not None else None
            ),
            "progress_every_s": self.progress_every_s,
        }


def _shared(value: str) -> str:
    return shared_values.one_of(_shared_strings, value, MAX_SHARED_STRINGS)


def share_declared(labels: dict[str, str], services: list[dict[str, Any]]) -> None:
    """Replace, in place, the repeated values of an agent's declaration with shared ones:
    the catalog holds the same objects (the event's), so both gain."""
    for key, value in labels.items():
        labels[key] = _shared(value)  # the same keys: iterating stays valid
    for service in services:
        service["name"] = _shared(service["name"])
        if "tags" in service:  # keys are kept as they came: the read API shows them
            service["tags"] = shared_values.capabilities(service["tags"])
        if "meta" in service and not service["meta"]:
            service["meta"] = _NO_META


class AgentHealth:
    """The agent health projection. `apply` is pure state change; no I/O."""

    def __init__(self) -> None:
        self.agents: dict[str, AgentView] = {}
        self.position = 0
        # Told the id of each agent an event changed (the dispatcher's placement index).
        self.on_change: Callable[[str], None] | None = None
        self._counts = StatusCounts(_status)
        self.counts()  # counted from the start: events move the counts from here on
        self._agent_events = 0
        # The kinds some agent runs, as of (the agents dict, agent events applied): made
        # again only after an agent event (a pass over the fleet), not per question.
        self._kinds: tuple[tuple[int, int], frozenset[str], bool] | None = None
        # The unresponsive agents' ids and when each may be readmitted: the leader's
        # timer, without a pass over the fleet.
        self.unresponsive: dict[str, float] = {}
        # The live agents that promised progress reports, and how often.
        self.promised: dict[str, float] = {}

    def reindex(self) -> None:
        """Derive the indexes from the views again (after a snapshot's restore)."""
        self.unresponsive, self.promised = {}, {}
        for view in self.agents.values():
            self._index(view)

    def _index(self, view: AgentView) -> None:
        if view.status == "unresponsive" and view.unresponsive_until is not None:
            self.unresponsive[view.agent_id] = view.unresponsive_until
        else:  # readmitted, or ended (dead, left, a new incarnation)
            self.unresponsive.pop(view.agent_id, None)
        if view.progress_every_s and view.status not in ("dead", "left"):
            self.promised[view.agent_id] = view.progress_every_s
        else:
            self.promised.pop(view.agent_id, None)

    def declares_kind(self, kind: str) -> bool:
        """True if an agent that has not left runs this kind: it declared it, or declared
        no kinds (it runs any)."""
        basis = (id(self.agents), self._agent_events)
        if self._kinds is None or self._kinds[0] != basis:
            kinds: set[str] = set()
            anything = False
            for view in self.agents.values():
                if view.status != "left":
                    kinds.update(view.kinds)
                    anything = anything or not view.kinds
            self._kinds = (basis, frozenset(kinds), anything)
        return self._kinds[2] or kind in self._kinds[1]

    def apply(self, event: LogEvent) -> None:
        if event.kind == "agent":
            self._agent_events += 1
            agents = self.agents
            found = agents.get(event.aggregate_id)
            before = found.status if found is not None else None
            self._apply_agent_event(event)
            found = agents.get(event.aggregate_id)
            self._counts.moved(agents, before, found.status if found is not None else None)
            if self.on_change is not None:
                self.on_change(event.aggregate_id)
        self.position = event.position

    def _apply_agent_event(self, event: LogEvent) -> None:
        data = event.data()
        name = event.name
        if name in ("Registered", "Reregistered"):
            share_declared(data["labels"], data["services"])
            view = AgentView(
                agent_id=event.aggregate_id,
                incarnation=data.get("incarnation", 1),
                capabilities=shared_values.capabilities(data["capabilities"]),
                capacity=data["capacity"],
                labels=shared_values.labels(data["labels"]),
                services=shared_values.services(data["services"]),
                registered_at=event.recorded_at,
                updated_at=event.recorded_at,
                registration_event_id=event.event_id,
                kinds=shared_values.capabilities(data.get("kinds") or ()),
                progress_every_s=data.get("progress_every_s"),
            )
            self.agents[event.aggregate_id] = view
        else:
            found = self.agents.get(event.aggregate_id)
            if found is None:
                return
            view = found
            if name == "DrainStarted":
                view.draining = True
            elif name == "Undrained":
                view.draining = False
            elif name == "ServicesChanged":
                share_declared({}, data["services"])
                view.services = shared_values.services(data["services"])
            elif name == "Deregistered":
                view.left = True
            elif name == "MarkedUnresponsive":
                view.unresponsive_until = data["until"]
            elif name == "Readmitted":
                view.unresponsive_until = None
            view.updated_at = event.recorded_at
        if name in _LIVENESS_BY_EVENT:
            view.liveness = _LIVENESS_BY_EVENT[name]
        self._index(view)
        view.position = event.position
        view.last_event_id = event.event_id

    def apply_heartbeat(
        self, agent_id: str, incarnation: int, seq: int, load: float, running: list[str],
        at: datetime,
    ) -> bool:
        """Record a heartbeat of a live current incarnation; False when it is not one."""
        view = self.agents.get(agent_id)
        if view is None or view.incarnation != incarnation or view.left or view.liveness == "dead":
            if view is not None and _last_before_the_end(view, incarnation, at):
                _take(view, seq, load, running, at)
            return False
        view.last_heartbeat_at = at
        view.last_heartbeat_seq = seq
        view.load = load
        view.running = running or NOT_RUNNING
        return True

    def get(self, agent_id: str) -> AgentView | None:
        return self.agents.get(agent_id)

    def query(
        self,
        status: str | None = None,
        capability: str | None = None,
        labels: dict[str, str] | None = None,
        after: str | None = None,
        limit: int = 0,
    ) -> list[AgentView]:
        """Agents matching every given filter, ordered by id: those after the id `after`,
        at most `limit` of them (0: all). A page costs a pass over the agents but sorts
        only what it returns."""
        found = []
        for view in self.agents.values():
            if after is not None and view.agent_id <= after:
                continue
            if status is not None and view.status != status:
                continue
            if capability is not None and capability not in view.capabilities:
                continue
            if labels and any(view.labels.get(k) != v for k, v in labels.items()):
                continue
            found.append(view)
        if limit and len(found) > limit:
            return heapq.nsmallest(limit, found, key=_by_id)
        return sorted(found, key=_by_id)

    def counts(self) -> dict[str, int]:
        return self._counts.totals(self.agents)


def _status(view: AgentView) -> str:
    return view.status


def _take(view: AgentView, seq: int, load: float, running: list[str], at: datetime) -> None:
    view.last_heartbeat_at = at
    view.last_heartbeat_seq = seq
    view.load = load
    view.running = running or NOT_RUNNING


def _last_before_the_end(view: AgentView, incarnation: int, at: datetime) -> bool:
    """A heartbeat of a dead or departed incarnation, sent before its end and newer than
    the one the view holds: the one the live view last took. A rebuild reads only the
    newest heartbeat per agent, and must show what the lost projection showed. (The time
    of the end is the view's updated_at: nothing changes a dead or departed view later.)"""
    return (view.incarnation == incarnation and (view.left or view.liveness == "dead")
            and at <= view.updated_at
            and (view.last_heartbeat_at is None or at > view.last_heartbeat_at))
