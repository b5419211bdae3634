"""The service catalog: every service's instances, with the health of their agents."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from domain import shared_values
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
        elif name in _LIVENESS or name == "DrainStarted":
            before = entry.status
            entry.liveness = _LIVENESS.get(name, entry.liveness)
            entry.draining = entry.draining or name == "DrainStarted"
            if entry.status != before:
                self.changed |= {s["name"] for s in entry.services}

    def add(self, entry: AgentEntry) -> None:
        """Enter an agent and the instances of the services it declares."""
        self.agents[entry.agent_id] = entry
        for service in entry.services:
            self.by_service.setdefault(service["name"], set()).add(entry.agent_id)
            self.changed.add(service["name"])

    def _forget(self, agent_id: str) -> None:
        entry = self.agents.pop(agent_id, None)
        if entry is None:
            return
        for service in entry.services:
            holders = self.by_service.get(service["name"], set())
            holders.discard(agent_id)
            if not holders:
                self.by_service.pop(service["name"], None)
            self.changed.add(service["name"])

    def seed(self, instances: list[dict[str, Any]], position: int) -> None:
        """Start from a query's answer (instances of one service) rather than the log."""
        liveness = {"healthy": "alive", "draining": "alive", "suspect": "suspect",
                    "dead": "dead"}
        for instance in instances:
            entry = self.agents.get(instance["agent_id"])
            if entry is None:
                entry = AgentEntry(instance["agent_id"], 0, instance["labels"], [],
                                   liveness[instance["status"]],
                                   instance["status"] == "draining")
                self.agents[entry.agent_id] = entry
            entry.services = [*entry.services, {k: instance[k] for k in  # never mutated
                              ("address", "port", "tags", "meta")} |
                              {"name": instance["service"]}]
            self.by_service.setdefault(instance["service"], set()).add(entry.agent_id)
        self.position = position

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
                entry = self.agents[agent_id]
                if labels and any(entry.labels.get(k) != v for k, v in labels.items()):
                    continue
                for declared in entry.services:
                    if declared["name"] != name:
                        continue
                    if tags and not set(tags) <= set(declared["tags"]):
                        continue
                    instance = instance_json(entry, declared)
                    if healthy_only and not instance["healthy"]:
                        continue
                    found.append(instance)
        return found

    def services(self) -> dict[str, dict[str, Any]]:
        """Each service with its instance counts and tags."""
        summary: dict[str, dict[str, Any]] = {}
        for instance in self.instances():
            entry = summary.setdefault(instance["service"],
                                       {"instances": 0, "healthy": 0, "tags": set()})
            entry["instances"] += 1
            entry["healthy"] += int(instance["healthy"])
            entry["tags"] |= set(instance["tags"])
        return {name: {**s, "tags": sorted(s["tags"])} for name, s in sorted(summary.items())}
