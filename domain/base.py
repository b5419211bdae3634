"""Aggregate and event base classes for aggregates identified by strings (agent ids)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventsourcing.domain import (
    BaseAggregate,
    CanInitAggregate,
    CanMutateAggregate,
    MetaDomainEvent,
)
from eventsourcing.utils import get_topic, register_topic, resolve_topic


@dataclass(frozen=True)
class StrIdEvent(CanMutateAggregate[str], metaclass=MetaDomainEvent):
    """An event of an aggregate whose id is a protocol identifier, not a UUID."""

    originator_id: str
    originator_version: int
    timestamp: datetime


@dataclass(frozen=True)
class StrIdCreated(CanInitAggregate[str], StrIdEvent):
    originator_topic: str


# The event that lets a bounded log cut an aggregate's older events: it holds the
# aggregate's whole state, so a history that begins with it reads as the full one did.
CARRIED_FORWARD = "CarriedForward"


@dataclass(frozen=True)
class StrIdCarriedForward(StrIdEvent):
    """The aggregate's state as it stands, recorded as its next event (not a change of
    it): applied to the aggregate it leaves it as it was; applied to nothing, at the head
    of a history whose older events were cut, it makes the aggregate from `state`."""

    state: dict[str, Any]

    def apply(self, aggregate: Any) -> None:
        aggregate._carried_on = self.timestamp  # the history need not go further back
        aggregate._carried_version = self.originator_version

    def mutate(self, aggregate: Any) -> Any:
        if aggregate is not None:
            return super().mutate(aggregate)
        cls = resolve_topic(get_topic(type(self)).rpartition(".")[0])
        state = dict(self.state)
        state["_id"] = self.originator_id
        state["_version"] = self.originator_version
        state["_modified_on"] = self.timestamp
        state["_pending_events"] = []
        state["_carried_on"] = self.timestamp
        state["_carried_version"] = self.originator_version
        made = object.__new__(cls)
        object.__setattr__(made, "__dict__", state)
        made.restored()
        return made


def anchored_on(aggregate: BaseAggregate[str]) -> datetime:
    """When the aggregate's history last began anew: its creation, or its latest state
    carried forward. Events before it may be cut."""
    carried: datetime | None = getattr(aggregate, "_carried_on", None)
    return carried if carried is not None else aggregate.created_on


def events_since_anchor(aggregate: BaseAggregate[str]) -> int:
    """How many events follow the one a load of the aggregate begins with (its creation,
    or its latest state carried forward): what a load reads beyond that one."""
    anchor: int = getattr(aggregate, "_carried_version", 1)  # 1: its creation
    return aggregate.version - anchor


def carried_state(aggregate: BaseAggregate[str]) -> dict[str, Any]:
    """What a CarriedForward event holds: the aggregate's attributes, less those the
    event itself stands for (id, version, time of change) and its unsaved events."""
    state = dict(vars(aggregate))
    for own in ("_id", "_version", "_modified_on", "_pending_events", "_carried_version"):
        state.pop(own, None)
    return state


class StrIdAggregate(BaseAggregate[str]):
    """Base of aggregates keyed by protocol identifiers, which appear in event subjects."""

    class Event(StrIdEvent):
        pass

    class Created(Event, StrIdCreated):
        pass

    class CarriedForward(Event, StrIdCarriedForward):
        pass

    def restored(self) -> None:
        """Made from carried state: put back what JSON does not keep (tuples)."""

    def carry_forward(self) -> None:
        """Record the aggregate's state as its next event (see StrIdCarriedForward)."""
        self.trigger_event(self.CarriedForward, state=carried_state(self))



def named_in_the_log(aggregate: type[StrIdAggregate], topic: str) -> None:
    """Name the aggregate and its events in the log by `topic` ("domain.task:Task") and
    `<topic>.<event>`, whatever module holds the class.

    A stored event names its class by topic, forever; eventsourcing makes a class's
    topic from its module path unless the class has a `TOPIC`. So the topics the log has
    always held are set here once, on the aggregate and on each of its event classes (each
    its own: a subclass would inherit its parent's), and registered for reading: modules
    may move without a stored event changing its meaning (tests/unit/test_log_topics.py).
    """
    aggregate.TOPIC = topic  # type: ignore[attr-defined]
    register_topic(topic, aggregate)
    for name, value in list(vars(aggregate).items()):
        if isinstance(value, type) and issubclass(value, StrIdEvent):
            value.TOPIC = f"{topic}.{name}"  # type: ignore[attr-defined]
            register_topic(value.TOPIC, value)  # type: ignore[attr-defined]
