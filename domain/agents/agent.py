"""The Agent aggregate: registration, incarnations, draining, and its health decisions."""

from __future__ import annotations

from typing import Any

from eventsourcing.domain import event

from domain import shared_values
from domain.base import StrIdAggregate, named_in_the_log
from domain.errors import CommandRefused, ErrorCode

ALIVE = "alive"
SUSPECT = "suspect"
DEAD = "dead"
UNRESPONSIVE = "unresponsive"


class Agent(StrIdAggregate):
    """One agent over all its incarnations. Events name what happened to it."""

    # Out of placement for leaving its work undone (a gray failure: it heartbeats but
    # does not work). Class defaults: aggregates snapshotted before these existed.
    unresponsive = False
    progress_every_s: float | None = None

    @staticmethod
    def create_id(agent_id: str) -> str:
        return agent_id

    @event("Registered")
    def __init__(
        self,
        agent_id: str,
        capabilities: list[str],
        capacity: int,
        labels: dict[str, str],
        services: list[dict[str, Any]],
        kinds: list[str] | None = None,  # absent from events recorded before kinds existed
        instance_id: str | None = None,
        progress_every_s: float | None = None,  # absent before agents could promise it
    ) -> None:
        self.incarnation = 1
        self.instance_id = instance_id
        self._declare(capabilities, capacity, labels, services, kinds)
        self.progress_every_s = progress_every_s

    def _declare(
        self,
        capabilities: list[str],
        capacity: int,
        labels: dict[str, str],
        services: list[dict[str, Any]],
        kinds: list[str] | None,
    ) -> None:
        self.capabilities = shared_values.capabilities(capabilities)
        self.kinds = shared_values.capabilities(kinds or ())
        self.capacity = capacity
        self.labels = shared_values.labels(dict(labels))
        self.services = shared_values.services(list(services))
        self.liveness = ALIVE
        self.draining = False
        self.left = False
        self.unresponsive = False

    # --- guards -----------------------------------------------------------------

    def check_incarnation(self, incarnation: int) -> None:
        if incarnation != self.incarnation:
            raise CommandRefused(
                ErrorCode.CONFLICT,
                f"agent {self.id} is at incarnation {self.incarnation}, not {incarnation}",
            )

    def check_has_not_left(self) -> None:
        if self.left:
            raise CommandRefused(ErrorCode.CONFLICT, f"agent {self.id} has deregistered")

    def check_is_not_dead(self) -> None:
        if self.liveness == DEAD:
            raise CommandRefused(
                ErrorCode.CONFLICT, f"agent {self.id} was declared dead; register again"
            )

    def check_not_held_by_a_live_incarnation(
        self, silent_for_s: float | None, suspect_after_s: float, instance_id: str | None
    ) -> None:
        """Refuse a registration that would take the id from another process still heard
        from (the same process, by its instance id, may register again).

        `silent_for_s` is how long ago the current incarnation was last heard from (its
        newest heartbeat, or its registration if none came yet); None if unknown here.
        """
        if self.left or self.liveness != ALIVE or silent_for_s is None:
            return
        if instance_id is not None and instance_id == self.instance_id:
            return
        if silent_for_s >= suspect_after_s:
            return  # its process is gone as far as the detector can tell
        raise CommandRefused(
            ErrorCode.CONFLICT,
            f"agent {self.id} is held by incarnation {self.incarnation}, last heard from "
            f"{silent_for_s:.1f}s ago: stop that process (or give this one another id), "
            f"wait until it is silent for {suspect_after_s}s, or register with "
            f"\"replace\": true to take over",
            [{"field": "agent_id", "type": "live_incarnation",
              "problem": f"incarnation {self.incarnation} heard from "
                         f"{silent_for_s:.3f}s ago"}],
        )

    def check_is_dead(self) -> None:
        if self.liveness != DEAD:
            raise CommandRefused(ErrorCode.CONFLICT, f"agent {self.id} is not dead")

    @property
    def status(self) -> str:
        """The status an operator sees: left, dead, suspect, unresponsive, draining or
        healthy."""
        if self.left:
            return "left"
        if self.liveness in (DEAD, SUSPECT):
            return self.liveness
        if self.unresponsive:
            return UNRESPONSIVE
        return "draining" if self.draining else "healthy"

    # --- commands ---------------------------------------------------------------

    def reregister(
        self,
        capabilities: list[str],
        capacity: int,
        labels: dict[str, str],
        services: list[dict[str, Any]],
        kinds: list[str] | None = None,
        instance_id: str | None = None,
        progress_every_s: float | None = None,
    ) -> None:
        """A new incarnation: the agent restarted, or came back after death or leave."""
        self._reregistered(
            incarnation=self.incarnation + 1,
            capabilities=capabilities,
            capacity=capacity,
            labels=labels,
            services=services,
            kinds=list(kinds or ()),
            instance_id=instance_id,
            progress_every_s=progress_every_s,
        )

    @event("Reregistered")
    def _reregistered(
        self,
        incarnation: int,
        capabilities: list[str],
        capacity: int,
        labels: dict[str, str],
        services: list[dict[str, Any]],
        kinds: list[str] | None = None,
        instance_id: str | None = None,
        progress_every_s: float | None = None,
    ) -> None:
        self.incarnation = incarnation
        self.instance_id = instance_id
        self._declare(capabilities, capacity, labels, services, kinds)
        self.progress_every_s = progress_every_s

    def drain(self) -> bool:
        """Stop new work; False when already draining (nothing to record)."""
        self.check_has_not_left()
        self.check_is_not_dead()
        if self.draining:
            return False
        self._drain_started(incarnation=self.incarnation)
        return True

    @event("DrainStarted")
    def _drain_started(self, incarnation: int) -> None:
        self.draining = True

    def undrain(self) -> bool:
        """Take new work again after a drain; False when not draining (nothing to record)."""
        self.check_has_not_left()
        self.check_is_not_dead()
        if not self.draining:
            return False
        self._undrained(incarnation=self.incarnation)
        return True

    @event("Undrained")
    def _undrained(self, incarnation: int) -> None:
        self.draining = False

    def deregister(self, incarnation: int, reason: str = "requested") -> bool:
        """Leave for good; False when this incarnation already left."""
        self.check_incarnation(incarnation)
        if self.left:
            return False
        self._deregistered(incarnation=incarnation, reason=reason)
        return True

    @event("Deregistered")
    def _deregistered(self, incarnation: int, reason: str) -> None:
        self.left = True

    def change_services(self, services: list[dict[str, Any]]) -> bool:
        """Replace the services the agent offers; False when nothing changes."""
        self.check_has_not_left()
        self.check_is_not_dead()
        if services == self.services:
            return False
        self._services_changed(incarnation=self.incarnation, services=services)
        return True

    @event("ServicesChanged")
    def _services_changed(self, incarnation: int, services: list[dict[str, Any]]) -> None:
        self.services = shared_values.services(list(services))

    def suspect(
        self, incarnation: int, silence_s: float, suspect_after_s: float, last_heartbeat_seq: int
    ) -> None:
        """No heartbeat for suspect_after: not yet dead, no longer trusted with new work."""
        self.check_incarnation(incarnation)
        self.check_has_not_left()
        if self.liveness != ALIVE:
            raise CommandRefused(ErrorCode.CONFLICT, f"agent {self.id} is {self.liveness}")
        self._suspected(
            incarnation=incarnation,
            silence_s=silence_s,
            suspect_after_s=suspect_after_s,
            last_heartbeat_seq=last_heartbeat_seq,
        )

    @event("Suspected")
    def _suspected(
        self, incarnation: int, silence_s: float, suspect_after_s: float, last_heartbeat_seq: int
    ) -> None:
        self.liveness = SUSPECT

    def declare_dead(
        self, incarnation: int, silence_s: float, dead_after_s: float, last_heartbeat_seq: int
    ) -> None:
        """The missed-heartbeat decision: this incarnation is gone and its work must move."""
        self.check_incarnation(incarnation)
        self.check_has_not_left()
        self.check_is_not_dead()
        self._declared_dead(
            incarnation=incarnation,
            silence_s=silence_s,
            dead_after_s=dead_after_s,
            last_heartbeat_seq=last_heartbeat_seq,
        )

    @event("DeclaredDead")
    def _declared_dead(
        self, incarnation: int, silence_s: float, dead_after_s: float, last_heartbeat_seq: int
    ) -> None:
        self.liveness = DEAD

    def recover(self, incarnation: int, last_heartbeat_seq: int) -> None:
        """A suspect agent heartbeats again before its dead deadline."""
        self.check_incarnation(incarnation)
        self.check_has_not_left()
        if self.liveness != SUSPECT:
            raise CommandRefused(ErrorCode.CONFLICT, f"agent {self.id} is not suspect")
        self._recovered(incarnation=incarnation, last_heartbeat_seq=last_heartbeat_seq)

    @event("Recovered")
    def _recovered(self, incarnation: int, last_heartbeat_seq: int) -> None:
        self.liveness = ALIVE

    # --- gray failure: heartbeats, but its work left undone --------------------------

    def mark_unresponsive(self, incarnation: int, reason: str, tasks: list[str], streak: int,
                          hold_s: float, until: float) -> None:
        """Out of placement until `until` (epoch seconds): it left `streak` assignments
        in a row undone for `reason` (unaccepted, or without the progress it promised),
        the last ones being `tasks` (task ids)."""
        self.check_incarnation(incarnation)
        self.check_has_not_left()
        self.check_is_not_dead()
        if self.unresponsive:
            raise CommandRefused(ErrorCode.CONFLICT, f"agent {self.id} is unresponsive")
        self._marked_unresponsive(incarnation=incarnation, reason=reason, tasks=tasks,
                                  streak=streak, hold_s=hold_s, until=until)

    @event("MarkedUnresponsive")
    def _marked_unresponsive(self, incarnation: int, reason: str, tasks: list[str],
                             streak: int,
                             hold_s: float, until: float) -> None:
        self.unresponsive = True

    def readmit(self, incarnation: int, until: float) -> None:
        """Back in placement once its hold (till `until`) is over: one more assignment
        left undone takes it out again, for longer; its work ends the streak."""
        self.check_incarnation(incarnation)
        self.check_has_not_left()
        self.check_is_not_dead()
        if not self.unresponsive:
            raise CommandRefused(ErrorCode.CONFLICT, f"agent {self.id} is not unresponsive")
        self._readmitted(incarnation=incarnation, until=until)

    @event("Readmitted")
    def _readmitted(self, incarnation: int, until: float) -> None:
        self.unresponsive = False


named_in_the_log(Agent, "domain.agent:Agent")
