"""Aggregate and event base classes for aggregates identified by strings (agent ids)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from eventsourcing.domain import (
    BaseAggregate,
    CanInitAggregate,
    CanMutateAggregate,
    MetaDomainEvent,
)


@dataclass(frozen=True)
class StrIdEvent(CanMutateAggregate[str], metaclass=MetaDomainEvent):
    """An event of an aggregate whose id is a protocol identifier, not a UUID."""

    originator_id: str
    originator_version: int
    timestamp: datetime


@dataclass(frozen=True)
class StrIdCreated(CanInitAggregate[str], StrIdEvent):
    originator_topic: str


class StrIdAggregate(BaseAggregate[str]):
    """Base of aggregates keyed by protocol identifiers, which appear in event subjects."""

    class Event(StrIdEvent):
        pass

    class Created(Event, StrIdCreated):
        pass
