"""The Python SDK: agents (AgentClient) and the programs that give them work (Client)."""

from sdk.agent import AgentClient, CommandError, TaskContext, TaskFailed
from sdk.client import Client
from sdk.credentials import load_or_create_seed
from sdk.results import TaskCancelled, TaskDeadLettered, TaskError, TaskHandle, TaskOutcome

__all__ = ["AgentClient", "Client", "CommandError", "TaskCancelled", "TaskContext",
           "TaskDeadLettered", "TaskError", "TaskFailed", "TaskHandle", "TaskOutcome",
           "load_or_create_seed"]
