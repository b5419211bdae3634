"""The Python agent SDK."""

from sdk.agent import AgentClient, CommandError, TaskContext, TaskFailed
from sdk.credentials import load_or_create_seed

__all__ = ["AgentClient", "CommandError", "TaskContext", "TaskFailed", "load_or_create_seed"]
