"""Why an orchestrator will not start: said in one line, with the setting to change."""

from __future__ import annotations


class CannotStart(RuntimeError):
    """A start refused for a reason the user can fix (the message says how)."""
