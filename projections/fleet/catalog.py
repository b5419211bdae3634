"""The service catalog: every service's instances, with the health of their agents."""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

from domain import shared_values
from projections.fleet.service_counts import ServiceCounts
from projections.log_event import LogEvent

# An instance is discoverable as healthy while its agent is healthy or draining: a
# draining agent takes no new tasks, but the services it runs still answer.
_HEALTHY = frozenset({"healthy", "draining"})
_LIVENESS = {"Suspected": "suspect", "DeclaredDead": "dead", "Recovered": "alive",
             "Registered": "alive", "Reregistered": "alive"}


@dataclass(slots=True)
class AgentEntry:
    agent_id: str
    incarnation: int
    labels: dict[str, str]
    services: list[dict[str, Any]]
    liveness: str = "alive"
    draining: bool = False

    @property
    def status(self) -> str:
        if self.liveness in ("suspect", "dead"):
            return self.liveness
        return "draining" if self.draining else "healthy"


def instance_json(entry: AgentEntry, service: dict[str, Any]) -> dict[str, Any]:
    return {
        "service": service["name"],
        "agent_id": entry.agent_id,
        "address": service["address"],
        "port": service["port"],
        "tags": service["tags"],
        "meta": service["meta"],
        "labels": entry.labels,
        "status": entry.status,
        "healthy": entry.status in _HEALTHY,
    }


class Catalog:
    """The catalog projection. `apply` is pure state change; no I/O.

    `changed` names the services whose instances the last applied event changed, for
    the change feed.
    """

    def __init__(self) -> None:
        self.agents: dict[str, AgentEntry] = {}
        self.by_service: dict[str, set[str]] = {}
        self.position = 0
        self.changed: set[str] = set()
        self._counts = ServiceCounts()

    def apply(self, event: LogEvent) -> None:
        if self.changed:  # a new set only when the last event changed something
            self.changed = set()
        if event.kind == "agent":
            self._apply_agent_event(event)
        self.position = event.position

    def _apply_agent_event(self, event: LogEvent) -> None:
        name, agent_id = event.name, event.aggregate_id
        data = event.data()
        entry = self.agents.get(agent_id)
        if name in ("Registered", "Reregistered"):
            self._forget(agent_id)
            entry = AgentEntry(agent_id, data.get("incarnation", 1),
                               shared_values.labels(data["labels"]),
                               shared_values.services(data["services"]))
            self.add(entry)
            return
        if entry is None:
            return
        if name == "ServicesChanged":
            self._forget(agent_id)
            entry.services = shared_values.services(data["services"])
            self.add(entry)
        elif name == "Deregistered":
            self._forget(agent_id)
        elif name in _LIVENESS or name in ("DrainStarted", "Undrained"):
            before = entry.status
            entry.liveness = _LIVENESS.get(name, entry.liveness)
            entry.draining = name == "DrainStarted" or (entry.draining and name != "Undrained")
            if entry.status != before:
                self.changed |= {s["name"] for s in entry.services}
                if (before in _HEALTHY) != (entry.status in _HEALTHY):
                    self._counts.health_changed(entry.services, entry.status in _HEALTHY)

    def add(self, entry: AgentEntry) -> None:
        """Enter an agent and the instances of the services it declares."""
        self.agents[entry.agent_id] = entry
        healthy = entry.status in _HEALTHY
        for service in entry.services:
            self.by_service.setdefault(service["name"], set()).add(entry.agent_id)
            self.changed.add(service["name"])
            self._counts.entered(service, healthy)

    def _forget(self, agent_id: str) -> None:
        entry = self.agents.pop(agent_id, None)
        if entry is None:
            return
        healthy = entry.status in _HEALTHY
        for service in entry.services:
            self._counts.entered(service, healthy, sign=-1)
            holders = self.by_service.get(service["name"], set())
            holders.discard(agent_id)
            if not holders:
                self.by_service.pop(service["name"], None)
            self.changed.add(service["name"])

    # --- reads ------------------------------------------------------------------

    def instances(
        self,
        service: str | None = None,
        tags: list[str] | None = None,
        labels: dict[str, str] | None = None,
        healthy_only: bool = False,
    ) -> list[dict[str, Any]]:
        """Instances matching every given filter, ordered by service then agent."""
        names = [service] if service is not None else sorted(self.by_service)
        found = []
        for name in names:
            for agent_id in sorted(self.by_service.get(name, ())):
                found += self._matching(agent_id, name, tags, labels, healthy_only)
        return found

    def instances_page(
        self,
        service: str,
        after: str | None,
        limit: int,
        tags: list[str] | None = None,
        labels: dict[str, str] | None = None,
        healthy_only: bool = False,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The matching instances of the first `limit` agents (by id) after `after`, and
        the id to ask `after` for the next page (None on the last); an agent's instances
        are never split between pages. The page's agents are picked without sorting all
        of the service's holders: one pass over them per `limit` agents considered (a
        service every agent of 500,000 offers took 0.3 s a request to sort)."""
        holders = self.by_service.get(service, set())
        found: list[dict[str, Any]] = []
        agents = 0
        cursor = after
        while True:
            batch = heapq.nsmallest(
                limit + 1, holders if cursor is None else (a for a in holders if a > cursor))
            for agent_id in batch:
                matching = self._matching(agent_id, service, tags, labels, healthy_only)
                if not matching:
                    continue
                if agents == limit:  # one more agent matches: the page ends before it
                    return found, found[-1]["agent_id"]
                found += matching
                agents += 1
            if len(batch) <= limit:
                return found, None
            cursor = batch[-1]

    def _matching(self, agent_id: str, name: str, tags: list[str] | None,
                  labels: dict[str, str] | None, healthy_only: bool) -> list[dict[str, Any]]:
        """The agent's instances of service `name` that match the filters."""
        entry = self.agents[agent_id]
        if labels and any(entry.labels.get(k) != v for k, v in labels.items()):
            return []
        if healthy_only and entry.status not in _HEALTHY:
            return []
        return [instance_json(entry, declared) for declared in entry.services
                if declared["name"] == name and (not tags or set(tags) <= set(declared["tags"]))]

    def services(self) -> dict[str, dict[str, Any]]:
        """Each service with its instance counts and tags."""
        return self._counts.summary()
