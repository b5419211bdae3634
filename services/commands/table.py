"""Every command endpoint: its name, who its subject names, its model and its handler."""

from __future__ import annotations

from domain.agent_commands import (
    CatalogQuery,
    DeclareServices,
    DeregisterAgent,
    DrainAgent,
    RegisterAgent,
    RemoveAgent,
)
from domain.identity_commands import CreateApiToken, CreateIdentity, EnrollAgent, RevokeIdentity
from domain.task_commands import (
    AgentAssignments,
    CancelTask,
    CompleteTask,
    FailTask,
    ReportProgress,
    SubmitTask,
    TaskToken,
)
from infra import names as n
from services.auth.admin import AccessAdmin
from services.commands.catalog import CatalogQueries
from services.commands.registry import AgentRegistry
from services.commands.service import Command, Sender
from services.commands.tasks import TaskService

AGENT, CLIENT = Sender.AGENT, Sender.CLIENT


def command_table(registry: AgentRegistry, tasks: TaskService, catalog: CatalogQueries,
                  admin: AccessAdmin) -> list[Command]:
    return [
        # An agent, about itself: <prefix>.agent.<id>.<name>.
        Command(n.REGISTER, RegisterAgent, registry.register, AGENT),
        Command(n.DEREGISTER, DeregisterAgent, registry.deregister, AGENT),
        Command(n.ASSIGNMENTS, AgentAssignments, tasks.assignments, AGENT),
        Command(n.SERVICES, DeclareServices, registry.declare_services, AGENT),
        Command(n.TASK_ACCEPT, TaskToken, tasks.accept, AGENT),
        Command(n.TASK_PROGRESS, ReportProgress, tasks.progress, AGENT),
        Command(n.TASK_COMPLETE, CompleteTask, tasks.complete, AGENT),
        Command(n.TASK_FAIL, FailTask, tasks.fail, AGENT),
        # Submitters and operators: <prefix>.<name>.<identity>.
        Command(n.TASK_SUBMIT, SubmitTask, tasks.submit, CLIENT),
        Command(n.TASK_CANCEL, CancelTask, tasks.cancel, CLIENT),
        Command(n.ADMIN_DRAIN, DrainAgent, registry.drain, CLIENT),
        Command(n.ADMIN_DEREGISTER, RemoveAgent, registry.remove, CLIENT),
        Command(n.ADMIN_ENROLL, EnrollAgent, admin.enroll, CLIENT),
        Command(n.ADMIN_REVOKE, RevokeIdentity, admin.revoke, CLIENT),
        Command(n.ADMIN_IDENTITY_CREATE, CreateIdentity, admin.create, CLIENT),
        Command(n.ADMIN_TOKEN_CREATE, CreateApiToken, admin.create_api_token, CLIENT),
        # Reads anyone allowed may send: <prefix>.<name>.
        Command(n.CATALOG_QUERY, CatalogQuery, catalog.query),
    ]
