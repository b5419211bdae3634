"""What the read API shows of an event: everything but a fencing token's value.

A token is a task attempt's proof of assignment. The read API answers read tokens,
which are not agents: it shows a fingerprint in its place, enough to tell attempts
apart (the same token, the same fingerprint) and useless as a token. Auditors reading
the log itself see the events as stored.
"""

from __future__ import annotations

import hashlib
from typing import Any

SECRET_FIELDS = frozenset({"token"})


def fingerprint(token: str) -> str:
    return "fp-" + hashlib.sha256(token.encode()).hexdigest()[:12]


def redacted(value: Any) -> Any:
    """`value` (JSON: dicts, lists, scalars) with every token field's value replaced by
    its fingerprint; values without one are returned as they are, not copied."""
    if isinstance(value, dict):
        if not any(isinstance(v, dict | list) or k in SECRET_FIELDS for k, v in value.items()):
            return value
        return {k: (fingerprint(v) if k in SECRET_FIELDS and isinstance(v, str) and v
                    else redacted(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(v) for v in value]
    return value


def event_json(event: Any) -> dict[str, Any]:
    """A RecordedEvent as the read API shows it."""
    shown: dict[str, Any] = event.to_json()
    shown["data"] = redacted(shown["data"])
    return shown
