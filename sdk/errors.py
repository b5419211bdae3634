"""What the SDK raises when the orchestrator refuses a command, and what a task handler
raises to fail its task."""

from __future__ import annotations

from typing import Any


class CommandError(Exception):
    """The orchestrator refused a command; `code` is the protocol's error code."""

    def __init__(self, code: str, message: str, details: list[Any] | None = None,
                 retry_after_s: float | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details or []
        self.retry_after_s = retry_after_s  # `overloaded`: when to try again


class TaskFailed(Exception):
    """Raised by a task handler to fail its task; `retryable=False` dead-letters it."""

    def __init__(self, error: str, retryable: bool = True) -> None:
        super().__init__(error)
        self.retryable = retryable
