"""The Python agent SDK."""

from sdk.agent import AgentClient, CommandError

__all__ = ["AgentClient", "CommandError"]
