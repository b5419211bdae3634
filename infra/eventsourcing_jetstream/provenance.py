"""Where an event of the orchestrator's log came from: its position and causal headers.

An auditor's projection receives the orchestrator's own domain event classes; what the
log knows about each event besides its state (who caused it, which command chain it
belongs to, when it was stored) rides on the event as its `provenance` attribute, read
with `provenance_of(event)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Notification, StoredEvent

from infra.log.format.codec import LogMapper

# The attribute the mapper sets on each event read from the log. No event of domain/ has
# a field of this name; the library keeps an event's attributes in its __dict__, as here.
PROVENANCE = "provenance"


@dataclass(frozen=True)
class Provenance:
    """An event's place in the orchestrator's log and the headers it was recorded with."""

    position: int  # the stream sequence: also the notification id and the tracking id
    subject: str
    event_id: str
    causation_id: str | None
    correlation_id: str | None
    # Who sent the command that caused the event ("orchestrator" for its own decisions;
    # None in events recorded before identities were).
    identity: str | None
    recorded_at: datetime


@dataclass(frozen=True)
class LogNotification(Notification):
    """A notification of the orchestrator's log, with its provenance."""

    provenance: Provenance


class ProvenanceMapper(LogMapper):
    """The orchestrator's mapper, which also sets each logged event's provenance."""

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[str]:
        # Decoding (the log's compact forms and the long ones, whatever the transcoder)
        # and upcasting, by class_version, are the orchestrator's event store's own.
        domain_event: DomainEventProtocol[str] = super().to_domain_event(stored_event)
        if isinstance(stored_event, LogNotification):
            vars(domain_event)[PROVENANCE] = stored_event.provenance
        return domain_event


def provenance_of(domain_event: object) -> Provenance:
    """The provenance of an event read from the orchestrator's log."""
    found = vars(domain_event).get(PROVENANCE)
    if not isinstance(found, Provenance):
        raise LookupError(
            f"{type(domain_event).__qualname__} was not read from the orchestrator's log "
            "(only OrchestratorLog's notifications carry a provenance)"
        )
    return found
