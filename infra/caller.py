"""Who the work in hand is for: the identity that sent the command being handled.

A context variable, so that every event appended while handling a command records its
sender without each handler passing it along; the orchestrator's own decisions (deaths,
placements, moves) run outside any command and record the orchestrator.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from types import MappingProxyType

ORCHESTRATOR = "orchestrator"

current_identity: ContextVar[str] = ContextVar("orch_identity", default=ORCHESTRATOR)

# Events the orchestrator decides in the course of another's command, recorded as its own:
# a submit placed at once appends the submitter's Submitted and the orchestrator's
# Assigned (services.commands.tasks.TaskService.submit).
decided_by_orchestrator: ContextVar[frozenset[str]] = ContextVar(
    "orch_own_decisions", default=frozenset())

# Events of the command in hand caused otherwise than the command, by event name: a
# placement made with its submit is caused by the dispatcher's decision, which names the
# board position it was decided at and its place among the term's decisions.
decision_causes: ContextVar[Mapping[str, str]] = ContextVar(
    "orch_decision_causes", default=MappingProxyType({}))

# The command in hand comes with an admin API token (the dashboard's actions, over HTTP):
# its holder acts as an operator does, on any task, whatever roles its identity has.
admin_token: ContextVar[bool] = ContextVar("orch_admin_token", default=False)
