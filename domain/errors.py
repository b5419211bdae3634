"""Coded refusals: every refused command becomes one of these, and writes nothing."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    INVALID_REQUEST = "invalid_request"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    STALE_TOKEN = "stale_token"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNAUTHORIZED = "unauthorized"
    UNAVAILABLE = "unavailable"
    OVERLOADED = "overloaded"
    INTERNAL = "internal"


class CommandRefused(Exception):
    """A command the orchestrator will not carry out, with the code a client sees."""

    def __init__(
        self, code: ErrorCode, message: str, details: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or []

    def to_reply(self) -> dict[str, Any]:
        return {
            "ok": False,
            "error": {"code": str(self.code), "message": self.message, "details": self.details},
        }


class Overloaded(CommandRefused):
    """A submit past an admission bound: nothing is written; try again after a while."""

    def __init__(self, bound: str, message: str, retry_after_s: float) -> None:
        super().__init__(ErrorCode.OVERLOADED, message)
        self.bound = bound  # which bound it reached: a submitter's, or the total
        self.retry_after_s = retry_after_s

    def to_reply(self) -> dict[str, Any]:
        reply = super().to_reply()
        reply["error"]["retry_after_s"] = self.retry_after_s
        return reply
