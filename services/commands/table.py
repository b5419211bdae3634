"""Every command endpoint: its name, who its subject names, its model and its handler."""

from __future__ import annotations

from typing import Any

from domain.agents.commands import (
    CatalogQuery,
    DeclareServices,
    DeregisterAgent,
    DrainAgent,
    RegisterAgent,
    RemoveAgent,
    UndrainAgent,
)
from domain.identities.commands import CreateApiToken, CreateIdentity, EnrollAgent, RevokeIdentity
from domain.limits.commands import SetLimit
from domain.schedules.commands import CreateSchedule, ListSchedules, ScheduleRef
from domain.tasks.commands import (
    AgentAssignments,
    CancelTask,
    CompleteTask,
    FailTask,
    ReportProgress,
    SubmitTask,
    TaskResults,
    TaskToken,
)
from infra import names as n
from services.auth.admin import AccessAdmin
from services.auth.gate import AccessGate, revoke_and_remove
from services.commands.catalog import CatalogQueries
from services.commands.limits import LimitService
from services.commands.registry import AgentRegistry
from services.commands.results import TaskResultsQuery
from services.commands.schedules import ScheduleService
from services.commands.service import Command, Handler, Sender
from services.commands.tasks import TaskService

AGENT, CLIENT = Sender.AGENT, Sender.CLIENT


def command_table(registry: AgentRegistry, tasks: TaskService, catalog: CatalogQueries,
                  results: TaskResultsQuery, admin: AccessAdmin,
                  gate: AccessGate, schedules: ScheduleService,
                  limits: LimitService) -> list[Command]:
    # Every command of a named sender passes the gate: a revoked identity's are refused,
    # and an agent's claims (register, services) are held to its enrollment policy.
    def agent(name: str, model: Any, handler: Handler, claims: bool = False) -> Command:
        return Command(name, model, gate.guard(handler, claims), AGENT)

    def client(name: str, model: Any, handler: Handler) -> Command:
        return Command(name, model, gate.guard(handler), CLIENT)

    def identity(name: str, model: Any, handler: Handler) -> Command:
        return client(name, model, gate.in_effect(handler))

    revoke = revoke_and_remove(admin.revoke, registry.remove_revoked, gate)
    return [
        # An agent, about itself: <prefix>.agent.<id>.<name>.
        agent(n.REGISTER, RegisterAgent, registry.register, claims=True),
        agent(n.DEREGISTER, DeregisterAgent, registry.deregister),
        agent(n.ASSIGNMENTS, AgentAssignments, tasks.assignments),
        agent(n.SERVICES, DeclareServices, registry.declare_services, claims=True),
        agent(n.TASK_ACCEPT, TaskToken, tasks.accept),
        agent(n.TASK_PROGRESS, ReportProgress, tasks.progress),
        agent(n.TASK_COMPLETE, CompleteTask, tasks.complete),
        agent(n.TASK_FAIL, FailTask, tasks.fail),
        # Submitters and operators: <prefix>.<name>.<identity>.
        client(n.TASK_SUBMIT, SubmitTask, tasks.submit),
        client(n.TASK_CANCEL, CancelTask, tasks.cancel),
        client(n.TASK_RESULTS, TaskResults, results.results),
        client(n.SCHEDULE_CREATE, CreateSchedule, schedules.create),
        client(n.SCHEDULE_PAUSE, ScheduleRef, schedules.pause),
        client(n.SCHEDULE_RESUME, ScheduleRef, schedules.resume),
        client(n.SCHEDULE_DELETE, ScheduleRef, schedules.delete),
        client(n.SCHEDULE_LIST, ListSchedules, schedules.list),
        client(n.ADMIN_LIMITS_SET, SetLimit, limits.set),
        client(n.ADMIN_DRAIN, DrainAgent, registry.drain),
        client(n.ADMIN_UNDRAIN, UndrainAgent, registry.undrain),
        client(n.ADMIN_DEREGISTER, RemoveAgent, registry.remove),
        identity(n.ADMIN_ENROLL, EnrollAgent, admin.enroll),
        client(n.ADMIN_REVOKE, RevokeIdentity, revoke),  # in effect before the agent leaves
        identity(n.ADMIN_IDENTITY_CREATE, CreateIdentity, admin.create),
        identity(n.ADMIN_TOKEN_CREATE, CreateApiToken, admin.create_api_token),
        # Reads anyone allowed may send: <prefix>.<name>.
        # A revoked reader is refused: its identity is its inbox's (commands.service).
        Command(n.CATALOG_QUERY, CatalogQuery, gate.guard(catalog.query)),
    ]
