"""The Python agent SDK."""

from sdk.agent import AgentClient, CommandError, TaskContext, TaskFailed

__all__ = ["AgentClient", "CommandError", "TaskContext", "TaskFailed"]
