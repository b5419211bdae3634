"""The Python SDK: agents (AgentClient) and the programs that give them work (Client)."""

from sdk.agent import AgentClient, CommandError, TaskContext, TaskFailed
from sdk.client import (
    Client,
    TaskCancelled,
    TaskDeadLettered,
    TaskError,
    TaskHandle,
    TaskOutcome,
)
from sdk.credentials import load_or_create_seed

__all__ = ["AgentClient", "Client", "CommandError", "TaskCancelled", "TaskContext",
           "TaskDeadLettered", "TaskError", "TaskFailed", "TaskHandle", "TaskOutcome",
           "load_or_create_seed"]
