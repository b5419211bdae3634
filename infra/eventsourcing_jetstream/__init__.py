"""eventsourcing persistence on JetStream: `PERSISTENCE_MODULE=infra.eventsourcing_jetstream`."""

# With `ORCH_NATS_URL` in the application's environment, an eventsourcing Application (and
# its projection runners) records its events, snapshots and tracking records in a stream
# of its own, named after the application (see `names`). `OrchestratorLog` reads the
# orchestrator's own log, read-only, for auditors' projections (orchestrator_log).

from infra.eventsourcing_jetstream.factory import JetStreamFactory
from infra.eventsourcing_jetstream.log_errors import OrchestratorLogError, ReadOnlyLogError
from infra.eventsourcing_jetstream.orchestrator_log import OrchestratorLog
from infra.eventsourcing_jetstream.provenance import Provenance, provenance_of
from infra.eventsourcing_jetstream.recorders import (
    JetStreamAggregateRecorder,
    JetStreamApplicationRecorder,
    JetStreamProcessRecorder,
    JetStreamRecorder,
    JetStreamTrackingRecorder,
)
from infra.eventsourcing_jetstream.subscription import JetStreamSubscription

# The name eventsourcing's own persistence modules give their factory.
Factory = JetStreamFactory

__all__ = [
    "Factory",
    "JetStreamAggregateRecorder",
    "JetStreamApplicationRecorder",
    "JetStreamFactory",
    "JetStreamProcessRecorder",
    "JetStreamRecorder",
    "JetStreamSubscription",
    "JetStreamTrackingRecorder",
    "OrchestratorLog",
    "OrchestratorLogError",
    "Provenance",
    "ReadOnlyLogError",
    "provenance_of",
]
