"""The aggregates whose events the log holds, by kind: importing this module names each of
them and its events by the topics the log holds (domain.base.named_in_the_log runs as
their modules load).

A stored event names its class by topic ("domain.identity:Identity.Created"), which is no
longer a module path once the domain moved into rooms: it resolves only after the class
has registered it. So whatever reads the log imports this first (codec.create_mapper
does); a reader that had loaded only the task and agent modules could not read an
identity's event (`orchestrator events --json` failed so on a log with auth on).
"""

from __future__ import annotations

from typing import Any

from domain.agents.agent import Agent
from domain.identities.identity import AccessLog, Identity
from domain.limits.limit import Limit
from domain.schedules.schedule import Schedule
from domain.tasks.task import Task
from infra import names

BY_KIND: dict[str, Any] = {
    names.AGENT: Agent, names.TASK: Task, names.IDENTITY: Identity,
    names.ACCESS: AccessLog, names.SCHEDULE: Schedule, names.LIMIT: Limit,
}
