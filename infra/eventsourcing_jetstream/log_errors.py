"""The coded errors of the read-only orchestrator log."""

from __future__ import annotations

from eventsourcing.persistence import PersistenceError, ProgrammingError


class OrchestratorLogError(PersistenceError):
    """Something the orchestrator log's reader refuses; `code` says what, for programs."""

    code = "orchestrator_log"


class ReadOnlyLogError(OrchestratorLogError, ProgrammingError):
    """A write to the orchestrator's log: only the orchestrator writes its log."""

    code = "read_only"


class LogSettingsError(OrchestratorLogError):
    """Settings missing or wrong: which ones, and what they should be."""

    code = "invalid_settings"


class LogNotFoundError(OrchestratorLogError):
    """No orchestrator log of that prefix on that NATS."""

    code = "log_not_found"


class AggregateIdError(OrchestratorLogError):
    """An aggregate id that names no single aggregate of the log."""

    code = "invalid_aggregate_id"


def read_only(what: str) -> ReadOnlyLogError:
    """The refusal of a write (`what` names it)."""
    return ReadOnlyLogError(
        f"{what}: the orchestrator's log is read-only here; only the orchestrator "
        "records its events (send it a command instead)"
    )
